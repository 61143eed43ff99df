"""HR, PR, QRS and QT from cardiologists' wave annotations (LUDB): the reference labels are held to.

Definition, for one record annotated lead by lead:

* per lead, per annotated QRS complex (the "beat"): PR = QRS onset - onset of the P wave before it
  (after the previous QRS), QRS = QRS offset - QRS onset, QT = offset of the T wave after it
  (before the next QRS) - QRS onset; a beat lacking a needed mark gives no value;
* per lead, the median over its beats; per record, the median of those over the leads that have
  one;
* HR = 60 * fs / RR, with RR per lead the median interval between consecutive annotated QRS
  peaks, and the median of those over the leads.

An interval no lead has (no P waves in atrial fibrillation) is NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ecgtransfer.features.vocabulary import INTERVALS, column

__all__ = ["INTERVALS", "annotated_waves", "annotated_beats", "reference_intervals",
           "ludb_reference", "ludb_beats", "agreement"]

# A QRS peak is marked with its beat's WFDB label: LUDB marks every one N; the QT Database
# marks each with its type (N, B bundle branch block, A atrial premature, V ventricular, Q
# unclassifiable, ...).
_BEATS = "NLRBAaJSVrFejnE/fQ?"
_WAVES = {"p": "P", "t": "T", **{beat: "QRS" for beat in _BEATS}}


def _wave_table(samples: np.ndarray, symbols) -> tuple[np.ndarray, np.ndarray]:
    """Wave kinds (``p``/``N``/``t``) and ``(n, 3)`` float onset, peak, offset positions."""
    samples = np.asarray(samples, dtype=float)
    symbols = np.asarray([str(s) for s in symbols], dtype=object)
    at = np.flatnonzero(np.isin(symbols, list(_WAVES)))
    before, after = at - 1, at + 1
    has_on = (before >= 0) & (symbols[np.maximum(before, 0)] == "(")
    has_off = (after < len(symbols)) & (symbols[np.minimum(after, len(symbols) - 1)] == ")")
    pos = np.column_stack([np.where(has_on, samples[np.maximum(before, 0)], np.nan), samples[at],
                           np.where(has_off, samples[np.minimum(after, len(samples) - 1)], np.nan)])
    return symbols[at], pos.reshape(-1, 3)


def annotated_waves(samples: np.ndarray, symbols) -> pd.DataFrame:
    """The waves of one lead's annotation: one row per peak mark, with its onset and offset.

    Parameters
    ----------
    samples : array of int
        Mark positions, ascending.
    symbols : sequence of str
        ``(`` onset, ``p``/``N``/``t`` peak of a P, QRS or T wave, ``)`` offset.

    Returns
    -------
    pandas.DataFrame
        Columns ``wave`` (``P``, ``QRS``, ``T``), ``onset``, ``peak``, ``offset`` (float sample
        positions; NaN where the mark next to the peak is not an onset/offset).
    """
    kinds, pos = _wave_table(samples, symbols)
    table = pd.DataFrame(pos, columns=["onset", "peak", "offset"])
    table.insert(0, "wave", [_WAVES[k] for k in kinds])
    return table


def _median(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else np.nan


def _pick(waves: np.ndarray, idx: np.ndarray, column: int, keep) -> np.ndarray:
    """``waves[idx, column]`` where ``idx`` is in range and ``keep(peak)`` holds, else NaN."""
    if not len(waves):
        return np.full(len(idx), np.nan)
    safe = np.clip(idx, 0, len(waves) - 1)
    ok = (idx >= 0) & (idx < len(waves)) & keep(waves[safe, 1])
    return np.where(ok, waves[safe, column], np.nan)


def _lead_values(samples: np.ndarray, symbols) -> dict[str, float]:
    """Per-lead medians over beats, in samples: rr, pr, qrs, qt; and the number of beats."""
    kinds, pos = _wave_table(samples, symbols)
    qrs, p, t = pos[np.isin(kinds, list(_BEATS))], pos[kinds == "p"], pos[kinds == "t"]
    peaks = qrs[:, 1]
    before = np.concatenate([[-np.inf], peaks[:-1]])
    after = np.concatenate([peaks[1:], [np.inf]])
    # the last P wave after the previous QRS peak, the first T wave before the next one
    ip = np.searchsorted(p[:, 1], peaks) - 1
    p_on = _pick(p, ip, 0, lambda peak: peak > before)
    it = np.searchsorted(t[:, 1], peaks, side="right")
    t_off = _pick(t, it, 2, lambda peak: peak < after)
    return {"rr": _median(np.diff(peaks)), "pr": _median(qrs[:, 0] - p_on),
            "qrs": _median(qrs[:, 2] - qrs[:, 0]), "qt": _median(t_off - qrs[:, 0]),
            "beats": len(qrs)}


def reference_intervals(annotations: Mapping[str, tuple[np.ndarray, object]], fs: float) -> dict:
    """The reference HR, PR, QRS and QT of one record from its per-lead annotations.

    Parameters
    ----------
    annotations : mapping of lead name to (samples, symbols)
        Each annotated lead's marks (see :func:`annotated_waves`).
    fs : float
        Sampling rate of the positions, Hz.

    Returns
    -------
    dict
        ``hr_bpm, pr_ms, qrs_ms, qt_ms`` (NaN where no lead has a value), ``n_beats`` (median
        annotated QRS complexes per lead) and ``n_leads`` (leads with annotations).
    """
    per_lead = pd.DataFrame([_lead_values(s, y) for s, y in annotations.values()])
    if per_lead.empty:
        per_lead = pd.DataFrame(columns=["rr", "pr", "qrs", "qt", "beats"], dtype=float)
    med = per_lead.median(skipna=True)
    to_ms = 1000.0 / float(fs)
    rr = med.get("rr", np.nan)
    return {column("hr"): 60.0 * fs / rr if rr > 0 else np.nan,
            **{column(k): med.get(k, np.nan) * to_ms for k in ("pr", "qrs", "qt")},
            "n_beats": float(med.get("beats", 0) or 0), "n_leads": int(len(per_lead))}


def ludb_reference(folder: str | Path, records: Sequence[str] | None = None) -> pd.DataFrame:
    """The reference intervals of LUDB records (:func:`reference_intervals` on each record's
    12 annotated leads).

    Parameters
    ----------
    folder : path
        LUDB's ``data/`` folder.
    records : sequence of str, optional
        Record names (default: every record found).

    Returns
    -------
    pandas.DataFrame
        Indexed by record name: ``hr_bpm, pr_ms, qrs_ms, qt_ms, n_beats, n_leads``.
    """
    from ecgtransfer.data.ludb import read_ludb_annotations
    from ecgtransfer.data.wfdb_io import find_records, record_fs

    folder = Path(folder)
    names = list(records) if records is not None else find_records(folder)
    rows = {}
    for name in names:
        ann = read_ludb_annotations(folder / name, record_id=name)
        fs = record_fs(folder / name, record_id=name)
        rows[name] = reference_intervals({k: (a.samples, a.symbols) for k, a in ann.items()}, fs)
    return pd.DataFrame.from_dict(rows, orient="index")


def annotated_beats(annotations: Mapping[str, tuple[np.ndarray, object]]) -> pd.DataFrame:
    """Every lead's annotated beats: each annotated QRS with the P wave just before it and the
    T wave just after it (when those are annotated). One row per lead and QRS; which rows of
    different leads are the same beat is left to the caller, by ``peak`` (:func:`ludb_beats`).

    Returns
    -------
    pandas.DataFrame
        ``lead, peak, p_on, p_off, qrs_on, qrs_off, t_on, t_off`` (samples; NaN where a mark
        is not annotated).
    """
    rows = []
    for lead, (samples, symbols) in annotations.items():
        w = annotated_waves(samples, symbols)
        wave = w["wave"].to_numpy()
        on, peak, off = (w[c].to_numpy() for c in ("onset", "peak", "offset"))
        for i in np.flatnonzero(wave == "QRS"):
            p = i > 0 and wave[i - 1] == "P"
            t = i + 1 < len(w) and wave[i + 1] == "T"
            rows.append({"lead": lead, "peak": peak[i],
                         "p_on": on[i - 1] if p else np.nan, "p_off": off[i - 1] if p else np.nan,
                         "qrs_on": on[i], "qrs_off": off[i],
                         "t_on": on[i + 1] if t else np.nan, "t_off": off[i + 1] if t else np.nan})
    return pd.DataFrame(rows, columns=["lead", "peak", "p_on", "p_off", "qrs_on", "qrs_off",
                                       "t_on", "t_off"])


def ludb_beats(path: str | Path, r_peaks: np.ndarray, fs: float,
               tolerance_s: float = 0.1) -> pd.DataFrame:
    """The cardiologists' marks of the beats at ``r_peaks``: for each, the median over the 12
    leads' annotations of the QRS whose peak lies within ``tolerance_s`` of it.

    Parameters
    ----------
    path : path
        The LUDB record without extension (``.../data/17``).
    r_peaks : array of float
        Beat positions at ``fs`` (a delineator's R peaks).
    fs : float
        The rate of ``r_peaks``; the result is at the same rate.

    Returns
    -------
    pandas.DataFrame
        One row per R peak: ``p_on, p_off, qrs_on, qrs_off, t_on, t_off`` at ``fs`` (NaN where no
        lead annotates the beat or the mark), and ``n_leads``.
    """
    from ecgtransfer.data.ludb import read_ludb_annotations
    from ecgtransfer.data.wfdb_io import record_fs

    ann = read_ludb_annotations(path)
    scale = fs / record_fs(path)
    beats = annotated_beats({k: (a.samples, a.symbols) for k, a in ann.items()})
    marks = ["p_on", "p_off", "qrs_on", "qrs_off", "t_on", "t_off"]
    rows = []
    for r in np.asarray(r_peaks, dtype=float):
        near = beats[(beats["peak"] * scale - r).abs() <= tolerance_s * fs]
        rows.append({**{m: near[m].median() * scale if near[m].notna().any() else np.nan
                        for m in marks}, "n_leads": len(near)})
    return pd.DataFrame(rows, columns=[*marks, "n_leads"])


def agreement(estimate: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """MAE, bias (estimate - reference) and coverage per interval, over the records that have a
    reference value; both tables indexed by record.

    Returns
    -------
    pandas.DataFrame
        One row per interval of :data:`INTERVALS`: ``mae, bias, coverage`` (share of those records
        the estimate has a value for) and ``records``.
    """
    rows = {}
    for col in INTERVALS:
        has = reference[col].notna()
        diff = (estimate[col].reindex(reference.index).astype(float) - reference[col])[has]
        rows[col] = {"mae": diff.abs().mean(), "bias": diff.mean(),
                     "coverage": diff.notna().mean(), "records": int(has.sum())}
    return pd.DataFrame(rows).T
