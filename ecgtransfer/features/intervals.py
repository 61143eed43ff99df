"""HR, PR, QRS and QT of one ECG with NeuroKit2: the labeller behind ``ecgtransfer label``.

Two methods (``method=``, a field of :class:`LabellerConfig`) share every step but the
delineation (5), so they differ only in where the wave boundaries are put. What NeuroKit2 does:

* ``"ecgtransfer"`` (default): ``nk.ecg_clean`` on each lead and ``nk.ecg_findpeaks`` on each lead
  with each of ``peak_methods`` for the R-peak vote; the vote, the median beats and the wave
  boundaries are ours.
* ``"neurokit"``: the same, plus ``nk.ecg_delineate(..., method="prominence")`` (Emrich et al.,
  EUSIPCO 2024) on each of the 12 cleaned leads for the wave boundaries.

How a record is measured (every step justified by ``benchmarks/bench_label.py`` against LUDB's
cardiologists; ``docs/labels.md`` has the figures):

1. **Checks.** A record shorter than ``min_duration_s``, or with a lead that is missing, gets NaN
   for every interval with that reason. A lead that holds NaN, is flat or saturated is left out
   (``dropped_leads`` names it and why) and the record measured on the others, unless fewer than
   half of its leads are good: then every interval is NaN, ``too few good leads``. Other rates are
   resampled to ``fs`` (500 Hz).
2. **Cleaning.** ``nk.ecg_clean`` on each of the 8 leads (I, II, V1-V6); III, aVR, aVL and aVF are
   derived from the cleaned I and II, so 12 leads are delineated as the cardiologists did.
3. **R peaks agreed across leads.** ``nk.ecg_findpeaks`` with several methods on each of the 8 leads;
   a beat is a time where more than half of those (lead, method) detections fall within
   ``vote_tolerance_s``, placed at their median. One lead's T waves taken for R peaks are outvoted.
4. **Templates.** Per lead, the median beat over the beats aligned at the agreed peaks: noise and
   ectopic beats do not move a median.
5. **Delineation**, per lead, into that lead's PR, QRS and QT (samples).

   ``"ecgtransfer"``, on each lead's template:
   QRS onset/offset: where the smoothed absolute slope stays below a fraction of the QRS's
   steepest slope for ``qrs_quiet_s``, searched outwards from the steepest slopes before and after R.
   T offset: the trapezium-area method (Zhang et al., IEEE TBME 2006) after the T wave's steepest
   return to baseline. P onset: the tangent at the P wave's steepest slope, met with the level
   before it.

   ``"neurokit"``, on each lead's whole cleaned signal: ``nk.ecg_delineate`` at the agreed peaks
   gives per beat ``ECG_P_Onsets``, ``ECG_R_Onsets``, ``ECG_R_Offsets`` and ``ECG_T_Offsets``; the
   lead's value is the median over the whole beats (those the templates use) of the per-beat
   intervals, as LUDB's reference takes it per lead. Of NeuroKit2's methods, ``"peak"`` gives no
   QRS onset or offset, so it cannot measure PR, QRS or QT as defined here; ``"dwt"``, ``"cwt"``
   and ``"prominence"`` give all four marks, and ``"prominence"`` is the closest to LUDB
   (``docs/labels.md``, "Methods").
6. **Fusion.** Per lead PR = QRS onset - P onset, QRS = offset - onset, QT = T offset - QRS onset;
   the record's value is the median over the 12 leads, as LUDB's reference is built.
   HR = 60 / median RR of the agreed peaks.
7. **No P wave.** PR is NaN when the beats' P-wave windows do not repeat (median correlation with the
   template below ``p_wave_min_correlation``): atrial fibrillation and flutter.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ecgtransfer.config import ConfigError, check, setting
from ecgtransfer.data.leads import canonical_lead, measured_lead_names
from ecgtransfer.data.transforms import resample
from ecgtransfer.features.vocabulary import INTERVALS, status_column

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LABEL_COLUMNS", "LABELLER_VERSION", "LabellerConfig", "METHODS", "OPTIONAL_COLUMNS",
           "STATUS_COLUMNS", "ecg_intervals", "ecg_waves", "unmeasured", "wave_marks",
           "WAVE_COLUMNS"]

# Bumped whenever the algorithm changes what it computes: part of the config hash.
LABELLER_VERSION = 4
STATUS_COLUMNS: tuple[str, ...] = tuple(status_column(c) for c in INTERVALS)
LABEL_COLUMNS: tuple[str, ...] = ("record_id", *INTERVALS, "n_beats", "quality", "leads",
                                  "dropped_leads", *STATUS_COLUMNS)
"""A label file's columns. ``leads`` (the recorded leads measured, space-separated) is new in
labeller version 2, ``dropped_leads`` (each lead left out and why, ``; ``-separated) in version
3, ``quality`` (how alike the beats are, see :class:`LabellerConfig`'s ``min_quality``) in
version 4; they are optional when a file is read."""
OPTIONAL_COLUMNS: tuple[str, ...] = ("leads", "dropped_leads", "quality")
"""Columns a label file of an earlier labeller version may lack."""
MIN_FS = 100.0
"""The lowest sampling rate measured (Hz); ``docs/labels.md`` states the accuracy at 100 Hz."""
OK = "ok"
FEW_LEADS = 3
"""With this many delineated leads or fewer, the QT's median over leads is weighted by each
lead's T-wave amplitude (a Holter's two leads: no majority outvotes a lead with a flat T)."""
METHODS: tuple[str, ...] = ("ecgtransfer", "neurokit")
"""Delineation methods of :func:`ecg_intervals`; the first is the default."""
# nk.ecg_delineate's method behind method="neurokit": part of that method's config hash.
NEUROKIT_DELINEATOR = "prominence"


def _check_method(method: Any) -> str:
    name = str(method).strip().lower()
    if name not in METHODS:
        raise ValueError(f"unknown labeller method {method!r}; choose from {', '.join(METHODS)}")
    return name


@dataclass(frozen=True)
class LabellerConfig:
    """Settings of the labeller. Their hash keys label files (see :meth:`config_hash`); each
    field's help says what it does."""

    method: str = setting(METHODS[0], "how waves are delineated: ecgtransfer (slope "
                          "thresholds, Zhang's area method and a tangent on each lead's median "
                          "beat) or neurokit (nk.ecg_delineate, prominence, on each lead, per "
                          "beat); everything else is shared", choices=METHODS)
    leads: tuple[str, ...] = setting((), "the leads to measure, by name (case-insensitive); empty: "
                                     "every lead the record has", metavar="LIST")
    fs: float = setting(500.0, "rate records are resampled to before measuring", unit="Hz")
    despike_s: float = setting(0.010, "a running median this wide removes pacing spikes before "
                               "cleaning", unit="s")
    peak_methods: tuple[str, ...] = setting(
        ("kalidas2017", "rodrigues2021", "neurokit"), "nk.ecg_findpeaks methods that vote on R "
        "peaks, each run on each of the 8 leads", metavar="LIST")
    vote_tolerance_s: float = setting(0.05, "detections this close count as the same beat",
                                      unit="s")
    min_rr_s: float = setting(0.25, "shortest RR interval accepted (0.25 s: 240 bpm)", unit="s")
    min_beats: int = setting(3, "fewest beats a template is built from")
    min_duration_s: float = setting(2.0, "shorter records are not measured", unit="s")
    flat_mv: float = setting(0.02, "a lead whose peak-to-peak amplitude is below this is flat",
                             unit="mV")
    saturation_s: float = setting(0.2, "a lead at its own maximum or minimum this long in all "
                                  "(plateaus of 3 samples or more) is saturated", unit="s")
    qrs_onset_fraction: float = setting(0.10, "QRS onset: the slope falls below this fraction "
                                        "of the QRS's steepest slope ...")
    qrs_offset_fraction: float = setting(0.06, "QRS offset: the same fraction after R ...")
    qrs_return_fraction: float = setting(0.2, "... and the signal is back within this fraction "
                                         "of the QRS's amplitude of the level before it (1: "
                                         "no such condition)")
    qrs_quiet_s: float = setting(0.012, "... and stays there this long", unit="s")
    slope_smoothing_s: float = setting(0.010, "moving-average width applied to the absolute "
                                       "slope", unit="s")
    t_peak_fraction: float = setting(0.7, "the T wave is the first wave after the QRS (away "
                                     "from the PR level) at least this fraction of the "
                                     "largest one there: a U wave or the next P wave is not "
                                     "taken for it")
    t_area_window_s: float = setting(0.12, "trapezium-area window after the T wave's steepest "
                                     "point (Zhang's t_r)", unit="s")
    p_wave_min_correlation: float = setting(0.7, "PR is measured only where the beats' P-wave "
                                            "windows correlate at least this well with the "
                                            "template (median over beats and leads)")
    min_quality: float = setting(0.25, "a record (or window) whose beats correlate less than "
                                 "this with the mean of their other beats, from 0.05 s before R to the T "
                                 "wave (median over beats and leads: the quality column), is "
                                 "noise: every interval abstains")
    window_s: float = setting(0.0, "label files: measure records in windows this long, each a "
                              "row of a windows table, plus a beat table and a per-record "
                              "summary (0: each record whole)", unit="s")
    step_s: float = setting(0.0, "label files: windows start this far apart (0: window_s, "
                            "windows that do not overlap)", unit="s")

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", _check_method(self.method))
        except ValueError as exc:
            raise ConfigError(f"method: {exc}", "method") from None
        object.__setattr__(self, "peak_methods", tuple(self.peak_methods))
        leads = (self.leads,) if isinstance(self.leads, str) else tuple(self.leads or ())
        object.__setattr__(self, "leads", tuple(canonical_lead(name) for name in leads))
        check(not self.peak_methods, "peak_methods", "at least one method is needed")
        for f in fields(LabellerConfig):  # a stage config extends it with its own fields
            value = getattr(self, f.name)
            if f.name in ("window_s", "step_s"):
                check(not (np.isfinite(value) and value >= 0), f.name,
                      f"must be 0 or a positive number, got {value!r}")
            else:
                check(f.name not in ("method", "peak_methods", "leads")
                      and not (np.isfinite(value) and value > 0),
                      f.name, f"must be a positive number, got {value!r}")
        check(self.step_s > 0 and not self.window_s > 0, "step_s",
              "needs window_s (windows to step between)")
        check(self.window_s > 0 and self.window_s < self.min_duration_s, "window_s",
              f"must be at least min_duration_s ({self.min_duration_s:g} s)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LabellerConfig":
        """Build a config from a mapping, refusing unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown labeller setting {unknown[0]!r}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able values."""
        out = asdict(self)
        out["peak_methods"] = list(self.peak_methods)
        out["leads"] = list(self.leads)
        return out

    def config_hash(self) -> str:
        """12 hex digits identifying what this labeller computes.

        Covers the settings, :data:`LABELLER_VERSION` and the NeuroKit2 version: labels made by
        another NeuroKit2 are another labelling. A method other than the default adds its name
        (and, for ``"neurokit"``, :data:`NEUROKIT_DELINEATOR`).
        """
        settings = self.to_dict()
        method = settings.pop("method")
        key: dict[str, Any] = {"labeller": LABELLER_VERSION, "neurokit2": neurokit2_version(),
                               "config": settings}
        if method != METHODS[0]:
            key["method"] = method
        if method == "neurokit":
            key["delineator"] = NEUROKIT_DELINEATOR
        text = json.dumps(key, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def neurokit2_version() -> str:
    """The installed NeuroKit2's version, read without importing it (that takes 2 s)."""
    from importlib.metadata import version

    return version("neurokit2")


def unmeasured(record_id: str, reason: str, n_beats: float = np.nan,
               leads: Sequence[str] = (), dropped: Sequence[str] = ()) -> dict[str, Any]:
    """A result row with every interval NaN for one reason."""
    row: dict[str, Any] = {"record_id": record_id, **dict.fromkeys(INTERVALS, np.nan),
                           "n_beats": n_beats, "quality": np.nan, "leads": " ".join(leads),
                           "dropped_leads": "; ".join(dropped)}
    row.update(dict.fromkeys(STATUS_COLUMNS, reason))
    return row


_DERIVED = ("III", "aVR", "aVL", "aVF")


def _with_derived_limb_leads(clean: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The cleaned leads, plus III, aVR, aVL and aVF computed from I and II where the record has
    I and II but not them (as the cardiologists delineate all 12)."""
    at = {name: i for i, name in enumerate(names)}
    if not {"I", "II"} <= set(at):
        return clean
    i, ii = clean[at["I"]], clean[at["II"]]
    formula = {"III": ii - i, "aVR": -(i + ii) / 2, "aVL": i - ii / 2, "aVF": ii - i / 2}
    extra = [formula[name] for name in _DERIVED if name not in at]
    return np.vstack([clean, extra]) if extra else clean


def _lead_problem(name: str, x: np.ndarray, fs: float, cfg: LabellerConfig) -> str | None:
    """Why a lead cannot be used, or None."""
    bad = ~np.isfinite(x)
    if bad.any():
        return f"{int(bad.sum())} NaN sample(s) in lead {name}"
    if np.ptp(x) < cfg.flat_mv:
        return f"flat lead {name} (peak-to-peak {np.ptp(x) * 1000:.0f} uV)"
    for extreme in (x.max(), x.min()):
        at = np.r_[False, x == extreme, False].astype(np.int8)
        edges = np.flatnonzero(np.diff(at))
        runs = edges[1::2] - edges[::2]
        pinned = runs[runs >= 3].sum() / fs  # plateaus, not a sample or two at a rounded peak
        if pinned >= cfg.saturation_s:
            return (f"saturated lead {name} ({pinned * 1000:.0f} ms at {extreme:.3f} mV, "
                    f">= {cfg.saturation_s * 1000:.0f} ms)")
    return None


def _clean(signal: np.ndarray, fs: float) -> np.ndarray:
    from ecgtransfer.features import fast

    return fast.ecg_clean(signal, fs)


def _agreed_peaks(clean: np.ndarray, fs: float, cfg: LabellerConfig) -> np.ndarray:
    """R peaks that more than half of the (lead, method) detections agree on.

    A detection that found fewer than half as many peaks as the median detection failed on its
    lead (NeuroKit2's ``neurokit`` method finds none on some paced leads): it abstains instead of
    voting "no beat" everywhere, which with two leads would outvote every beat.
    """
    import scipy.signal

    from ecgtransfer.features import fast

    n = clean.shape[1]
    half = int(round(cfg.vote_tolerance_s * fs))
    found = []
    for method in cfg.peak_methods:
        for peaks in fast.find_peaks(clean, fs, method):
            peaks = np.unique(np.asarray(peaks, dtype=np.int64))
            found.append(peaks[(peaks >= 0) & (peaks < n)])
    typical = float(np.median([len(p) for p in found])) if found else 0.0
    voting = [p for p in found if len(p) >= typical / 2] if typical > 0 else []
    votes = np.zeros(n + 1, dtype=np.int32)
    for peaks in voting:
        # +1 over [p - half, p + half], counted once per (lead, method)
        cover = np.zeros(n + 1, dtype=np.int32)
        np.add.at(cover, np.clip(peaks - half, 0, n), 1)
        np.add.at(cover, np.clip(peaks + half + 1, 0, n), -1)
        votes += np.cumsum(cover) > 0
    padded = np.r_[0, votes[:n], 0]
    centres, _ = scipy.signal.find_peaks(padded, height=len(voting) / 2 + 1e-9,
                                         distance=max(int(cfg.min_rr_s * fs), 1), plateau_size=1)
    centres -= 1
    allp = np.sort(np.concatenate(voting)) if voting else np.zeros(0, np.int64)
    out = []
    for c in centres:
        lo, hi = np.searchsorted(allp, [c - half, c + half + 1])
        out.append(int(np.median(allp[lo:hi])))
    return np.unique(np.asarray(out, dtype=np.int64))


def _runs(low: np.ndarray, m: int, *, ending: bool) -> np.ndarray:
    """True where ``m`` consecutive True values end (``ending``) or start at that sample."""
    x = low if ending else low[::-1]
    count = np.convolve(x.astype(np.int32), np.ones(m, np.int32), "full")[: len(x)] >= m
    return count if ending else count[::-1]


def _first_large_peak(magnitude: np.ndarray, fraction: float) -> int:
    """The earliest local maximum of ``magnitude`` that reaches ``fraction`` of its largest
    value (the largest value's position when none does, or for ``fraction`` 1)."""
    import scipy.signal

    top = int(np.argmax(magnitude))
    if fraction >= 1:
        return top
    peaks, _ = scipy.signal.find_peaks(magnitude, height=fraction * magnitude[top])
    return int(peaks[0]) if len(peaks) and peaks[0] < top else top


def _delineate_templates(tpl: np.ndarray, r: int, fs: float, rr: float,
                         cfg: LabellerConfig) -> np.ndarray:
    """Per lead P onset, QRS onset, QRS offset, T offset of templates, samples relative to R."""
    import scipy.ndimage

    out = np.full((len(tpl), 4), np.nan)
    slope = np.gradient(tpl, axis=-1)
    smooth = scipy.ndimage.uniform_filter1d(np.abs(slope), max(int(cfg.slope_smoothing_s * fs), 1),
                                            axis=-1)
    w = int(0.15 * fs)
    quiet = max(int(cfg.qrs_quiet_s * fs), 1)
    n = tpl.shape[1]
    for lead, (x, dx, sx) in enumerate(zip(tpl, slope, smooth)):
        seg = sx[r - w: r + w + 1]
        top = seg.max()
        if not top > 0:
            continue
        i1, i2 = int(np.argmax(seg[: w + 1])), w + int(np.argmax(seg[w:]))
        on = np.flatnonzero(_runs(seg < cfg.qrs_onset_fraction * top, quiet, ending=True)[: i1 + 1])
        off = np.flatnonzero(_runs(seg < cfg.qrs_offset_fraction * top, quiet, ending=False)[i2:])
        qon = r - w + (on[-1] if len(on) else 0)
        base = float(np.median(x[max(qon - int(0.02 * fs), 0): qon + 1]))
        if len(off) and cfg.qrs_return_fraction < 1:
            # A slurred terminal wave (the broad S of a bundle branch block) is slow next to the
            # QRS's steepest slope: the QRS does not end while the signal is still far out on
            # it, unless it never comes back (an ST shift): then the first quiet place stands.
            amp = float(np.ptp(x[r - w: r + w + 1]))
            back = np.abs(x[r - w + i2 + off] - base) <= cfg.qrs_return_fraction * amp
            if back.any():
                off = off[np.argmax(back):]
        qoff = r - w + i2 + (off[0] if len(off) else 2 * w - i2)
        out[lead, 1:3] = qon - r, qoff - r

        # T wave: its peak is the largest excursion from the PR level after the QRS
        t_lo, t_hi = qoff + int(0.06 * fs), min(r + int(min(0.7 * rr, 0.65 * fs)), n - 1)
        if t_hi - t_lo > int(0.05 * fs):
            tp = t_lo + _first_large_peak(np.abs(x[t_lo:t_hi] - base), cfg.t_peak_fraction)
            sign = np.sign(x[tp] - base)
            end = min(tp + int(0.2 * fs), t_hi)
            if end - tp > 2:
                ts = tp + int(np.argmin(dx[tp:end] * sign))  # steepest return to baseline
                tr = min(ts + int(cfg.t_area_window_s * fs), t_hi + int(0.1 * fs), n - 1)
                ti = np.arange(ts, tr)
                if len(ti):
                    area = 0.5 * (x[ts] - x[ti]) * (2 * tr - ti - ts)
                    out[lead, 3] = ti[int(np.argmax(np.abs(area)))] - r

    # The previous beat's T wave ends here (relative to R): at high rates the P wave follows it
    # closely, and a P search reaching back into it takes the T wave's descent for the P onset.
    t_end = _median(out[:, 3])
    prev_t_end = r + int(round(t_end - rr)) if np.isfinite(t_end) else 0
    for lead, (x, dx) in enumerate(zip(tpl, slope)):
        qon = r + out[lead, 1]
        if not np.isfinite(qon):
            continue
        qon = int(qon)
        # P wave: the largest excursion before the QRS, from a line through the window's ends
        p_lo = max(qon - int(min(0.3 * fs, 0.5 * rr)), prev_t_end, 0)
        p_hi = qon - int(0.04 * fs)
        if p_hi - p_lo > int(0.04 * fs):
            y = x[p_lo:p_hi] - np.linspace(x[p_lo], x[p_hi - 1], p_hi - p_lo)
            pp = p_lo + int(np.argmax(np.abs(y)))
            sign = np.sign(y[pp - p_lo])
            lo = max(pp - int(0.1 * fs), p_lo)
            if pp - lo > 2:
                ps = lo + int(np.argmax(dx[lo:pp] * sign))  # steepest rise towards the peak
                if dx[ps] != 0:
                    out[lead, 0] = ps + (x[lo] - x[ps]) / dx[ps] - r
    return out


def _wave_edges(tpl: np.ndarray, marks: np.ndarray, r: int, fs: float) -> np.ndarray:
    """Per lead P offset and T onset of templates (samples relative to R), from the marks of
    :func:`_delineate_templates`: the tangent at the P wave's steepest return, met with the
    P onset's level; the tangent at the T wave's steepest approach, met with the J point's level.
    NaN where the P onset or the T offset is."""
    out = np.full((len(tpl), 2), np.nan)
    slope = np.gradient(tpl, axis=-1)
    for lead, (x, dx, (p_on, q_on, q_off, t_off)) in enumerate(zip(tpl, slope, marks)):
        if np.isfinite(p_on) and np.isfinite(q_on):
            # a P onset found before the template's start (a slow rate's long PR) is clipped
            lo, hi = max(int(round(r + p_on)), 0), int(r + q_on) - max(int(0.01 * fs), 1)
            if hi - lo > 3:
                level = x[lo]
                pp = lo + int(np.argmax(np.abs(x[lo:hi] - level)))
                sign = np.sign(x[pp] - level)
                if hi - pp > 2:
                    ps = pp + int(np.argmax(-dx[pp:hi] * sign))  # steepest return
                    end = ps + (level - x[ps]) / dx[ps] if dx[ps] != 0 else hi
                    out[lead, 0] = float(np.clip(end, pp, r + q_on)) - r
        if np.isfinite(q_off) and np.isfinite(t_off):
            lo, hi = int(r + q_off), min(int(round(r + t_off)), tpl.shape[1] - 1)
            if hi - lo > 3:
                level = x[lo]
                skip = max(int(0.04 * fs), 1)  # the T peak lies past the J point
                a = lo + skip if hi - lo > skip + 1 else lo
                tp = a + int(np.argmax(np.abs(x[a:hi] - level)))
                sign = np.sign(x[tp] - level)
                if tp - lo > 2:
                    ts = lo + int(np.argmax(dx[lo:tp] * sign))  # steepest approach
                    start = ts - (x[ts] - level) / dx[ts] if dx[ts] != 0 else lo
                    out[lead, 1] = float(np.clip(start, lo, tp)) - r
    return out


def _ecgtransfer_intervals(pos: np.ndarray) -> tuple[np.ndarray, float]:
    """Per lead PR, QRS, QT (samples) from the templates' marks (:func:`_delineate_templates`);
    QRS onset relative to R over leads."""
    per_lead = np.column_stack([pos[:, 1] - pos[:, 0], pos[:, 2] - pos[:, 1],
                                pos[:, 3] - pos[:, 1]])
    return per_lead, _median(pos[:, 1])


_NK_MARKS = ("ECG_P_Onsets", "ECG_R_Onsets", "ECG_R_Offsets", "ECG_T_Offsets")


def _nk_marks(waves: dict, key: str, n: int) -> np.ndarray:
    """One ``nk.ecg_delineate`` list as ``n`` floats, one per R peak.

    NeuroKit2 0.2.13 drops marks at sample 0 or below from its lists, which shortens a list at
    its start (the first beats); NaN takes their place so that beats stay aligned.
    """
    values = np.asarray(waves.get(key, []), dtype=float)
    if len(values) > n:
        return np.full(n, np.nan)
    return np.r_[np.full(n - len(values), np.nan), values]


def _neurokit_intervals(twelve: np.ndarray, peaks: np.ndarray, whole: np.ndarray, before: int,
                        after: int, fs: float) -> tuple[np.ndarray, float]:
    """Per lead PR, QRS, QT (samples): medians over the whole beats of ``nk.ecg_delineate``'s
    per-beat intervals; and the QRS onset relative to R (median over beats, then leads)."""
    import neurokit2 as nk

    keep = np.isin(peaks, whole)
    per_lead = np.full((len(twelve), 3), np.nan)
    onsets = np.full(len(twelve), np.nan)
    for lead, x in enumerate(twelve):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, waves = nk.ecg_delineate(x, peaks, sampling_rate=fs,
                                            method=NEUROKIT_DELINEATOR)
        except Exception:  # a lead NeuroKit2 cannot delineate gives no value
            continue
        marks = np.column_stack([_nk_marks(waves, k, len(peaks)) for k in _NK_MARKS])
        marks = marks[keep] - peaks[keep, None]
        marks[(marks < -before) | (marks > after)] = np.nan  # a mark outside its own beat
        p_on, q_on, q_off, t_off = marks.T
        per_lead[lead] = _median(q_on - p_on), _median(q_off - q_on), _median(t_off - q_on)
        onsets[lead] = _median(q_on)
    return per_lead, _median(onsets)


def _window_correlation(beats: np.ndarray, tpl: np.ndarray, lo: int, hi: int) -> float:
    """Median correlation of each beat's window ``lo:hi`` with the template's, over beats and
    leads (the P wave's window for PR; QRS to T for the record's quality)."""
    seg = beats[:, :, lo:hi] - beats[:, :, lo:hi].mean(-1, keepdims=True)
    ref = tpl[:, None, lo:hi] - tpl[:, None, lo:hi].mean(-1, keepdims=True)
    num = (seg * ref).sum(-1)
    den = np.sqrt((seg ** 2).sum(-1) * (ref ** 2).sum(-1)) + 1e-12
    return float(np.median(num / den))


def _quality(beats: np.ndarray, lo: int, hi: int) -> float:
    """How alike the beats are: the median over beats and leads of each beat's correlation, in
    the window ``lo:hi``, with the mean of the other beats (a beat is not compared with a
    template it is part of, so a few beats of noise do not look alike)."""
    seg = beats[:, :, lo:hi] - beats[:, :, lo:hi].mean(-1, keepdims=True)
    n = seg.shape[1]
    others = (seg.sum(1, keepdims=True) - seg) / max(n - 1, 1)
    num = (seg * others).sum(-1)
    den = np.sqrt((seg ** 2).sum(-1) * (others ** 2).sum(-1)) + 1e-12
    return float(np.median(num / den))


def _t_amplitudes(tpl: np.ndarray, marks: np.ndarray, r: int, fs: float) -> np.ndarray:
    """Per lead, the T wave's largest excursion (mV) from the level before the QRS, between
    the QRS offset and the T offset of :func:`_delineate_templates`'s ``marks``."""
    out = np.zeros(len(tpl))
    for lead, (x, (_, q_on, q_off, t_off)) in enumerate(zip(tpl, marks)):
        if not np.isfinite([q_on, q_off, t_off]).all():
            continue
        on, lo, hi = int(r + q_on), int(r + q_off), min(int(r + t_off), tpl.shape[1] - 1)
        if hi > lo:
            base = float(np.median(x[max(on - int(0.02 * fs), 0): on + 1]))
            out[lead] = float(np.max(np.abs(x[lo:hi + 1] - base)))
    return out


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The median of ``values`` weighted by ``weights`` (the plain median where the weights
    are all zero); NaN values left out."""
    ok = np.isfinite(values) & np.isfinite(weights)
    values, weights = values[ok], weights[ok]
    if not len(values):
        return np.nan
    if not weights.sum() > 0:
        return float(np.median(values))
    order = np.argsort(values)
    values, cum = values[order], np.cumsum(weights[order])
    half = cum[-1] / 2
    k = int(np.searchsorted(cum, half))
    if np.isclose(cum[k], half) and k + 1 < len(values):  # exactly between two: their mean
        return float((values[k] + values[k + 1]) / 2)
    return float(values[k])


def _median(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else np.nan


def ecg_intervals(signal: np.ndarray, fs: float, leads: Sequence[str], *, record_id: str = "",
                  config: LabellerConfig | None = None,
                  method: str | None = None) -> dict[str, Any]:
    """Measure HR, PR, QRS and QT of one record.

    Parameters
    ----------
    signal : numpy.ndarray
        ``(n_leads, n_samples)`` mV.
    fs : float
        Sampling rate, Hz; other rates than ``config.fs`` are resampled.
    leads : sequence of str
        Names of ``signal``'s rows, any of the 12 standard leads (case-insensitive; MLI, MLII,
        MLIII are I, II, III) or other names; every row is measured, or ``config.leads`` of them.
    record_id : str
        Copied into the result.
    config : LabellerConfig, optional
        Defaults to ``LabellerConfig()``.
    method : {"ecgtransfer", "neurokit"}, optional
        Overrides ``config.method``: how the waves are delineated (see the module's notes).

    Returns
    -------
    dict
        ``record_id, hr_bpm, pr_ms, qrs_ms, qt_ms, n_beats``, ``leads`` (the recorded leads
        measured, space-separated), ``dropped_leads`` (each lead left out and why: flat,
        saturated or holding NaN) and ``hr_status, pr_status, qrs_status, qt_status``: ``"ok"``,
        or why the value is NaN. Never raises on bad signals.

    Raises
    ------
    ValueError
        An unknown ``method``, naming it and the known ones.
    """
    return _measure(signal, fs, leads, record_id, config, method)[0]


def _measure(signal: np.ndarray, fs: float, leads: Sequence[str], record_id: str,
             config: LabellerConfig | None, method: str | None,
             detail: bool = False) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """:func:`ecg_intervals`'s row, and with ``detail`` what it was measured from: the agreed
    R peaks, the templates and their marks (None when the record was not measured that far)."""
    import scipy.ndimage

    cfg = config or LabellerConfig()
    if method is not None:
        cfg = replace(cfg, method=method)
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] != len(leads):
        return unmeasured(record_id, f"signal of shape {signal.shape} does not match "
                                     f"{len(leads)} leads"), None
    # Holter leads are measured as the standard lead they resemble (CM5 as V5), unnamed ones
    # as generic leads; the label's leads column shows both (CM5=V5, unnamed:0)
    names, shown = measured_lead_names(list(leads))
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        return unmeasured(record_id, f"lead {twice[0]} appears twice"), None
    if cfg.leads:
        lookup: dict[str, int] = {}
        for i, (name, own, show) in enumerate(zip(names, leads, shown)):
            for key in (name, canonical_lead(own), show):
                lookup.setdefault(key.lower(), i)
        missing = [name for name in cfg.leads if name.lower() not in lookup]
        if missing:
            return unmeasured(record_id, f"missing lead(s) {', '.join(missing)}"), None
        rows = [lookup[name.lower()] for name in cfg.leads]
    else:
        rows = list(range(len(names)))
    if not rows:
        return unmeasured(record_id, "no leads"), None
    names, shown = [names[i] for i in rows], [shown[i] for i in rows]
    if not fs >= MIN_FS:
        return unmeasured(record_id, f"sampling rate {fs!r} Hz is below {MIN_FS:g} Hz"), None
    x = signal[rows]
    seconds = x.shape[1] / fs
    if seconds < cfg.min_duration_s:
        return unmeasured(record_id,
                          f"too short ({seconds:.2f} s < {cfg.min_duration_s:g} s)"), None
    # a lead that is flat, saturated or holds NaN (a loose electrode) is left out, and the
    # record measured on the others, as long as at least half of its leads are good
    problems = [_lead_problem(name, lead, fs, cfg) for name, lead in zip(shown, x)]
    dropped = [p for p in problems if p]
    good = [i for i, p in enumerate(problems) if not p]
    if len(good) < max(1, -(-len(names) // 2)):
        if len(names) == 1:
            return unmeasured(record_id, dropped[0]), None
        more = f" and {len(dropped) - 2} more" if len(dropped) > 2 else ""
        return unmeasured(record_id, f"too few good leads ({len(good)} of {len(names)}): "
                                     f"{'; '.join(dropped[:2])}{more}",
                          dropped=dropped), None
    if dropped:
        x, names, shown = x[good], [names[i] for i in good], [shown[i] for i in good]
    if fs != cfg.fs:
        x, fs = resample(x, fs, cfg.fs).astype(np.float64), cfg.fs

    # A pacemaker's spike lasts a millisecond or two; the cleaning's 20 ms moving average would
    # spread it over the QRS onset. A median over despike_s removes anything that brief first.
    width = int(round(cfg.despike_s * fs)) | 1
    clean = _clean(scipy.ndimage.median_filter(x, size=(1, width), mode="nearest")
                   if width > 1 else x, fs)
    # III, aVR, aVL and aVF are I and II combined: they vote no more than I and II do
    limb = {"I", "II"} <= set(names)
    voters = [i for i, name in enumerate(names) if not (limb and name in _DERIVED)]
    peaks = _agreed_peaks(clean[voters], fs, cfg)
    if len(peaks) < 2:
        return unmeasured(record_id, f"too few beats ({len(peaks)} R peak(s) agreed across leads)",
                          n_beats=float(len(peaks)), leads=shown, dropped=dropped), None
    rr = float(np.median(np.diff(peaks)))
    row = unmeasured(record_id, OK, n_beats=float(len(peaks)), leads=shown, dropped=dropped)
    row["hr_bpm"] = 60.0 * fs / rr

    measured = _with_derived_limb_leads(clean, names)
    before, after = int(0.4 * fs), int(0.7 * fs)
    whole = peaks[(peaks >= before) & (peaks + after <= clean.shape[1])]
    if len(whole) < cfg.min_beats:
        reason = f"too few beats ({len(whole)} whole beat(s) < {cfg.min_beats})"
        row.update({c: reason for c in STATUS_COLUMNS[1:]})
        return row, None
    beats = np.stack([measured[:, p - before: p + after] for p in whole], axis=1)  # lead, beat, t
    tpl = np.median(beats, axis=1)
    # noise: beats that do not repeat (movement, electrode noise, peaks found in noise) are not
    # measured; the window runs from before the QRS to the T wave at this heart rate
    quality = _quality(beats, before - int(0.05 * fs), before + int(min(0.45 * fs, 0.8 * rr)))
    row["quality"] = quality
    if not quality >= cfg.min_quality:
        reason = (f"noise (beats correlate {quality:.2f} with each other < "
                  f"{cfg.min_quality:g})")
        row.update({c: reason for c in STATUS_COLUMNS})
        row["hr_bpm"] = np.nan
        return row, None
    marks = None
    if cfg.method == "ecgtransfer":
        marks = _delineate_templates(tpl, before, fs, rr, cfg)
        per_lead, onset = _ecgtransfer_intervals(marks)
    elif cfg.method == "neurokit":
        per_lead, onset = _neurokit_intervals(measured, peaks, whole, before, after, fs)
    else:  # LabellerConfig refuses other names; a method added to METHODS must be added here
        raise ValueError(f"labeller method {cfg.method!r} has no delineator")
    ms = 1000.0 / fs
    qt = _median(per_lead[:, 2])
    if marks is not None and len(marks) <= FEW_LEADS:
        # too few leads for a median to outvote a lead whose T wave is small (it ends anywhere):
        # the leads are weighted by their T wave's size
        qt = _weighted_median(per_lead[:, 2], _t_amplitudes(tpl, marks, before, fs))
    values = {"pr_ms": _median(per_lead[:, 0]) * ms, "qrs_ms": _median(per_lead[:, 1]) * ms,
              "qt_ms": qt * ms}
    qon = before + onset
    if np.isfinite(qon):
        lo = max(int(qon) - int(min(0.3 * fs, 0.5 * rr)), 0)
        corr = _window_correlation(beats, tpl, lo, int(qon) - int(0.02 * fs))
        if not corr >= cfg.p_wave_min_correlation:
            values["pr_ms"] = np.nan
            row["pr_status"] = (f"no P wave (P windows correlate {corr:.2f} < "
                                f"{cfg.p_wave_min_correlation:g} across beats)")
    for name, value in values.items():
        status = name.split("_")[0] + "_status"
        if row[status] == OK and not (np.isfinite(value) and value > 0):
            row[status] = "not measurable on any lead"
            value = np.nan
        row[name] = value if row[status] == OK else np.nan
    if not detail:
        return row, None
    if marks is None:  # another method delineated the intervals; the waves are the templates'
        marks = _delineate_templates(tpl, before, fs, rr, cfg)
    return row, {"peaks": peaks, "fs": fs, "rr": rr, "before": before, "templates": tpl,
                 "marks": np.column_stack([marks, _wave_edges(tpl, marks, before, fs)]),
                 "beats": beats, "whole": whole}


WAVE_COLUMNS: tuple[str, ...] = ("r", "p_on", "p_off", "qrs_on", "qrs_off", "t_on", "t_off")
"""A beat table's columns (:func:`ecg_waves`): sample positions at the record's own rate."""


def ecg_waves(signal: np.ndarray, fs: float, leads: Sequence[str], *, record_id: str = "",
              config: LabellerConfig | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The labeller's fiducial points of every beat of one record, with its intervals.

    The beats are the R peaks agreed across leads (step 3 of the module's notes). Their wave
    boundaries are the templates' (step 5, ``"ecgtransfer"`` delineation, the median over the
    leads of each boundary) placed at each beat's R peak, plus the P offset and T onset found the
    same way (tangents at the P wave's steepest return and the T wave's steepest approach). The
    T onset and offset then follow each beat's own T wave: they move by the shift (within
    ±60 ms, :data:`T_LAG_S`) that best aligns the beat's ST-T segment with the template's, so a
    beat's QT follows its repolarisation (version 4); its P and QRS marks stay the template's.
    Where the labeller finds no P wave (PR is NaN: atrial fibrillation, flutter), the P marks
    are NaN.

    Parameters
    ----------
    signal, fs, leads, record_id, config
        As :func:`ecg_intervals`.

    Returns
    -------
    beats : pandas.DataFrame
        One row per beat, :data:`WAVE_COLUMNS`, float sample positions at ``fs`` (NaN where a
        mark was not found); empty when the record could not be delineated.
    intervals : dict
        :func:`ecg_intervals`'s row for the same record (its status columns say why ``beats``
        is empty).
    """
    import pandas as pd

    row, table = wave_marks(signal, fs, leads, record_id=record_id, config=config)
    return pd.DataFrame(table, columns=list(WAVE_COLUMNS)), row


def wave_marks(signal: np.ndarray, fs: float, leads: Sequence[str], *, record_id: str = "",
               config: LabellerConfig | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`ecg_waves` without pandas: the intervals row, and the beat marks as a
    ``(n_beats, 7)`` float array in :data:`WAVE_COLUMNS` order (0 rows when the record could not
    be delineated)."""
    row, detail = _measure(signal, fs, leads, record_id, config, None, detail=True)
    if detail is None:
        return row, np.zeros((0, len(WAVE_COLUMNS)))
    marks = detail["marks"]
    rel = np.array([_median(marks[:, k]) for k in (0, 4, 1, 2, 5, 3)])
    if len(marks) <= FEW_LEADS:  # the T offset as the QT's: leads weighted by their T wave
        rel[5] = _weighted_median(marks[:, 3], _t_amplitudes(detail["templates"], marks[:, :4],
                                                             detail["before"], detail["fs"]))
    if not np.isfinite(row["pr_ms"]):
        rel[:2] = np.nan  # no P wave
    scale = fs / detail["fs"]
    peaks = detail["peaks"].astype(float)
    table = np.column_stack([peaks, peaks[:, None] + rel[None, :]])
    # each beat's own T wave: the template's T onset and offset moved by how far the beat's
    # T wave lies from the template's (beat-to-beat QT follows it)
    lags = _t_lags(detail, rel)
    table[:, 5:7] += lags[:, None]
    return row, table * scale


T_LAG_S = 0.06
"""The farthest a beat's T wave is followed from its median beat's (s), either way."""


def _t_lags(detail: dict[str, Any], rel: np.ndarray) -> np.ndarray:
    """Per R peak, the shift (samples) that best aligns the beat's T wave with its median beat's
    (summed correlation over leads, from the QRS offset to 40 ms past the T offset, shifts within
    :data:`T_LAG_S`); 0 for a beat not wholly inside the record and where the template has no T
    offset."""
    peaks, whole, beats, tpl = (detail[k] for k in ("peaks", "whole", "beats", "templates"))
    r, fs = detail["before"], detail["fs"]
    out = np.zeros(len(peaks))
    q_off, t_off = rel[3], rel[5]
    if not (np.isfinite(q_off) and np.isfinite(t_off)) or not len(whole):
        return out
    span = int(T_LAG_S * fs)
    lo, hi = int(r + q_off), int(r + t_off + 0.04 * fs)
    lo, hi = max(lo, span), min(hi, tpl.shape[1] - span)
    if hi - lo < int(0.05 * fs):
        return out
    ref = tpl[:, lo:hi] - tpl[:, lo:hi].mean(-1, keepdims=True)
    shifts = np.arange(-span, span + 1)
    # correlation of each shifted beat segment with the template's, its mean taken off: ref has
    # none, so the numerator needs no centring, and the segments' sums of squares come from
    # running sums (no (lead, beat, shift, time) copy)
    part = beats[:, :, lo - span: hi + span]
    windows = np.lib.stride_tricks.sliding_window_view(part, hi - lo, axis=-1)  # l, b, s, t
    num = np.einsum("lbst,lt->bs", windows, ref)
    run1 = np.concatenate([np.zeros(part.shape[:2] + (1,)), np.cumsum(part, -1)], -1)
    run2 = np.concatenate([np.zeros(part.shape[:2] + (1,)), np.cumsum(part ** 2, -1)], -1)
    width = hi - lo
    s1 = run1[..., width:] - run1[..., :-width]
    s2 = run2[..., width:] - run2[..., :-width]
    energy = np.maximum(s2 - s1 ** 2 / width, 0.0).sum(0)  # beat, shift
    den = np.sqrt(energy * float((ref ** 2).sum())) + 1e-12
    best = shifts[np.argmax(num / den, axis=1)]
    out[np.searchsorted(peaks, whole)] = best
    return out
