"""Interval-warped ECGs: a record's PR, QRS, QT and heart rate changed beat by beat.

A record's beats are cut where nothing happens, half-way between one beat's T offset and the
next beat's P onset (its QRS onset where it has no P wave), and each beat is stretched or
shrunk by a smooth, monotone time warp whose knots are the labeller's fiducial points
(:func:`ecgtransfer.features.intervals.ecg_waves`): every lead moves with the same warp, so the
leads stay in step and the amplitudes are the record's own. Per beat:

* **PR**: the PR segment (P offset to QRS onset) takes the change; the P wave (atrial
  conduction) keeps its length, so a PR shorter than the record's P wave plus
  :data:`MIN_PR_SEGMENT_S` is refused.
* **QRS**: a wider QRS gives :data:`TERMINAL_SHARE` of the extra time to its terminal part (R
  peak to QRS offset), the slow, slurred end of a bundle branch block, and the rest to its
  start; a narrower one shrinks both parts alike.
* **QT**: the ST-T segment (QRS offset to T offset) takes what the QT gains beyond the QRS.
* **Heart rate**: every RR interval is scaled by the same factor; the T-P segment (the warp's
  cut) takes whatever the beat's own changes leave, and must keep :data:`MIN_TP_S`.

Between two knots the warp's rate is constant, and at each knot it changes over
:data:`SMOOTH_S` (the piecewise-linear map's corners rounded), so the segments between fiducial
points are stretched evenly and the signal has no corners at the knots. A faster rate needs more beats than the record holds: the beats are then played again from
the first, the join (between two T-P segments) smoothed by a ramp over the next T-P half.

The requested intervals are what the stage asks for; the labels are what the labeller measures
again on the warped record (:mod:`ecgtransfer.features.augment`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["INTERVALS", "NotWarpable", "QT_RR", "Request", "Ranges", "WarpError", "draw_request",
           "longest_pr_ms", "qt_from_qtc", "qtc_from_qt", "warp_record", "WARP_VERSION"]

WARP_VERSION = 2
"""The warp's own version, with how the stage aims it: part of a warped store's identity (2: the
first warp asks through the labeller's usual gain, corrections step between attempts)."""

INTERVALS: tuple[str, ...] = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms")
"""The intervals a request sets, in the labeller's column names."""

MIN_PR_SEGMENT_S = 0.04
"""The shortest PR segment (P offset to QRS onset) a shorter PR leaves (s): a short PR without
pre-excitation keeps a PR segment, and the labeller's P search ends 40 ms before the QRS (with
10 ms, requests of PR 90-115 ms were measured 150-220). A record whose own segment is shorter
keeps its own as the floor."""
MIN_QRS_S = 0.04
"""The narrowest QRS a warp makes (s)."""
MIN_ST_T_S = 0.08
"""The shortest ST-T segment (QRS offset to T offset) a warp makes (s)."""
MIN_TP_S = 0.01
"""The shortest T-P segment (T offset to the next P onset) a warp makes (s): a faster rate with
a long PR and QT that leaves less is refused, not overlapped."""
TERMINAL_SHARE = 0.6
"""Of the time a wider QRS gains, the share its terminal part (R peak to QRS offset) takes."""
MIN_PIECES = 3
"""Beats (between two usable beats) a record needs to be warped."""


class WarpError(ValueError):
    """A record this request cannot be made from; ``str(exc)`` is the one-line reason."""


class NotWarpable(WarpError):
    """A record no request can be made from (too few delineated beats)."""


# ---- QT and RR -------------------------------------------------------------------------------
def _fridericia(qtc_ms: float, rr_s: float) -> float:
    return qtc_ms * rr_s ** (1 / 3)


def _bazett(qtc_ms: float, rr_s: float) -> float:
    return qtc_ms * rr_s ** 0.5


def _framingham(qtc_ms: float, rr_s: float) -> float:
    return qtc_ms - 154.0 * (1.0 - rr_s)


QT_RR = {"fridericia": _fridericia, "bazett": _bazett, "framingham": _framingham}
"""QT (ms) from a corrected QT (ms) and the RR interval (s), by relation: Fridericia
(QT = QTc RR^1/3), Bazett (QT = QTc RR^1/2), Framingham (QT = QTc - 154 (1 - RR))."""


def qt_from_qtc(qtc_ms: float, rr_s: float, relation: str = "fridericia") -> float:
    """The QT (ms) at RR ``rr_s`` (s) of a corrected QT, by ``relation`` (:data:`QT_RR`)."""
    return float(QT_RR[relation](float(qtc_ms), float(rr_s)))


def qtc_from_qt(qt_ms: float, rr_s: float, relation: str = "fridericia") -> float:
    """The corrected QT (ms) of a QT measured at RR ``rr_s`` (s), by ``relation``."""
    if relation == "framingham":
        return float(qt_ms) + 154.0 * (1.0 - float(rr_s))
    return float(qt_ms) / (QT_RR[relation](1.0, float(rr_s)))


# ---- what is asked ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """The intervals one warped record is asked to have; NaN leaves that interval as it is."""

    hr_bpm: float = math.nan
    pr_ms: float = math.nan
    qrs_ms: float = math.nan
    qt_ms: float = math.nan

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in INTERVALS}


@dataclass(frozen=True)
class Ranges:
    """Where requests are drawn from: uniform over each range, QT from a uniform corrected QT
    at the drawn rate (``qt_rr``) and kept only inside ``qt_ms``; ``change`` names the intervals
    that are drawn (the others keep the record's own; a kept QT follows a changed rate through
    the record's own corrected QT)."""

    hr_bpm: tuple[float, float] = (35.0, 160.0)
    pr_ms: tuple[float, float] = (80.0, 300.0)
    qrs_ms: tuple[float, float] = (60.0, 180.0)
    qtc_ms: tuple[float, float] = (350.0, 560.0)
    qt_ms: tuple[float, float] = (240.0, 560.0)
    qt_rr: str = "fridericia"
    change: tuple[str, ...] = INTERVALS


def draw_request(rng: np.random.Generator, measured: Mapping[str, float], ranges: Ranges,
                 table: np.ndarray | None = None,
                 room: Callable[[Request], float] | None = None) -> Request | None:
    """One request for a record whose labeller row is ``measured``: from ``ranges``, or a row of
    ``table`` (``(n, 4)`` HR, PR, QRS, QT of another store's labels) when given. None when the
    drawn QT falls outside ``ranges.qt_ms``, or no PR in its range fits (the caller draws
    again).

    ``room``, when given, is the longest PR (ms) that fits the record at a request's rate and QT
    (:func:`longest_pr_ms`): the PR is then drawn from the part of its range below it, so fast
    rates are not lost to long PRs that cannot fit before them."""
    if table is not None:
        row = table[int(rng.integers(len(table)))]
        values = dict(zip(INTERVALS, map(float, row)))
        return Request(**{k: values[k] if k in ranges.change else math.nan for k in INTERVALS})
    hr_draw = float(rng.uniform(*ranges.hr_bpm))
    pr_u = float(rng.uniform())
    qrs_draw = float(rng.uniform(*ranges.qrs_ms))
    qtc = float(rng.uniform(*ranges.qtc_ms))
    hr = hr_draw if "hr_bpm" in ranges.change else float(measured["hr_bpm"])
    if "qt_ms" in ranges.change:
        qt = qt_from_qtc(qtc, 60.0 / hr, ranges.qt_rr)
        if not ranges.qt_ms[0] <= qt <= ranges.qt_ms[1]:
            return None
    elif "hr_bpm" in ranges.change:  # the record's own QTc at the new rate
        own = qtc_from_qt(measured["qt_ms"], 60.0 / measured["hr_bpm"], ranges.qt_rr)
        qt = qt_from_qtc(own, 60.0 / hr, ranges.qt_rr)
    else:
        qt = math.nan
    request = Request(hr_bpm=hr if "hr_bpm" in ranges.change else math.nan,
                      qrs_ms=qrs_draw if "qrs_ms" in ranges.change else math.nan, qt_ms=qt)
    if "pr_ms" not in ranges.change:
        return request
    lo, hi = ranges.pr_ms
    if room is not None:
        longest = room(request)
        if np.isfinite(longest):
            hi = min(hi, longest)
    if hi < lo:
        return None
    return replace(request, pr_ms=lo + pr_u * (hi - lo))


# ---- the warp --------------------------------------------------------------------------------
_R, _P_ON, _P_OFF, _Q_ON, _Q_OFF, _T_ON, _T_OFF = range(7)  # WAVE_COLUMNS


@dataclass
class _Plan:
    """Input knots and output durations of the pieces of one pass over the usable beats."""

    knots_in: np.ndarray  # (n_knots,) input sample positions, increasing
    knots_out: np.ndarray  # (n_knots,) output positions, increasing, from 0
    ramp: float  # output samples over which a replayed pass's join is smoothed


def _usable(marks: np.ndarray, has_p: bool) -> tuple[int, int]:
    """First and one-past-last beat of the longest run of consecutive delineated beats whose
    marks are in order and do not overlap the next beat's."""
    cols = [_P_ON, _P_OFF, _Q_ON, _R, _Q_OFF, _T_OFF] if has_p else [_Q_ON, _R, _Q_OFF, _T_OFF]
    m = marks[:, cols]
    ok = np.isfinite(m).all(axis=1)
    with np.errstate(invalid="ignore"):
        ok &= (np.diff(m, axis=1) > 0).all(axis=1)
    link = np.zeros(len(marks), bool)  # beat k joins beat k + 1
    if len(marks) > 1:
        with np.errstate(invalid="ignore"):
            link[:-1] = ok[:-1] & ok[1:] & (m[1:, 0] > m[:-1, -1])
    best, start = (0, 0), None
    for k in range(len(marks)):
        if ok[k] and start is None:
            start = k
        if start is not None and not (k < len(marks) - 1 and link[k]):
            if ok[k] and k + 1 - start > best[1] - best[0]:
                best = (start, k + 1)
            start = None
    return best


@dataclass
class _Frame:
    """A record's usable beats and what a request moves, in samples."""

    has_p: bool
    beats: np.ndarray  # the usable run of the marks
    start: np.ndarray  # each beat's P onset (QRS onset without P waves)
    rr: np.ndarray  # R to next R
    tp: np.ndarray  # T offset to the next beat's start
    scale: float  # every RR interval's factor
    d_pr: float
    d_qrs: float
    d_qt: float


def _frame(marks: np.ndarray, fs: float, measured: Mapping[str, float],
           request: Request) -> _Frame:
    has_p = bool(np.isfinite(measured.get("pr_ms", math.nan))
                 and np.isfinite(marks[:, [_P_ON, _P_OFF]]).any())
    lo, hi = _usable(marks, has_p)
    if hi - lo < MIN_PIECES + 2:
        raise NotWarpable(f"{hi - lo} consecutive delineated beats, a warp needs "
                          f"{MIN_PIECES + 2}")
    b = marks[lo:hi]
    ms = fs / 1000.0

    def delta(key: str) -> float:
        want, have = float(getattr(request, key)), float(measured.get(key, math.nan))
        if not np.isfinite(want):
            return 0.0
        if not np.isfinite(have):
            raise WarpError(f"{key.split('_')[0].upper()} is not measured on the record, so it "
                            "cannot be moved")
        return (want - have) * ms

    if not has_p and np.isfinite(request.pr_ms):
        raise WarpError("no P wave (PR not measured), so PR cannot be moved")
    scale = 1.0
    if np.isfinite(request.hr_bpm):
        have = float(measured.get("hr_bpm", math.nan))
        if not np.isfinite(have):
            raise WarpError("HR is not measured on the record, so it cannot be moved")
        scale = have / float(request.hr_bpm)  # every RR interval by the same factor
    start = b[:, _P_ON] if has_p else b[:, _Q_ON]
    return _Frame(has_p, b, start, np.diff(b[:, _R]), start[1:] - b[:-1, _T_OFF], scale,
                  delta("pr_ms") if has_p else 0.0, delta("qrs_ms"), delta("qt_ms"))


def longest_pr_ms(marks: np.ndarray, fs: float, measured: Mapping[str, Any],
                  request: Request) -> float:
    """The longest PR (ms) that leaves every T-P segment :data:`MIN_TP_S` at the request's
    rate and QT (its own PR left out); NaN where the record has no P wave or cannot be warped."""
    try:
        f = _frame(np.asarray(marks, dtype=float), float(fs), measured,
                   replace(request, pr_ms=math.nan))
    except WarpError:
        return math.nan
    if not f.has_p:
        return math.nan
    free = f.scale * f.rr - f.rr + f.tp - f.d_qt
    return float(measured["pr_ms"]) + float(free.min() - MIN_TP_S * fs) * 1000.0 / fs


def _plan(marks: np.ndarray, fs: float, measured: Mapping[str, float], request: Request) -> _Plan:
    f = _frame(marks, fs, measured, request)
    has_p, b, start, rr, tp, scale = f.has_p, f.beats, f.start, f.rr, f.tp, f.scale
    d_pr, d_qrs, d_qt = f.d_pr, f.d_qrs, f.d_qt
    ms = fs / 1000.0
    cut = 0.5 * (b[:-1, _T_OFF] + start[1:])  # between beat k and k + 1
    tp_new = scale * rr - rr + tp - d_pr - d_qt
    if tp_new.min() < MIN_TP_S * fs:
        raise WarpError(f"T-P segment of {tp_new.min() / ms:.0f} ms at this rate, PR and QT "
                        f"(at least {MIN_TP_S * 1000:.0f})")

    # pieces are beats 1 .. n-2 of the run, each from its cut before to its cut after
    p = b[1:-1]
    h1 = (start[1:-1] - cut[:-1]) * tp_new[:-1] / tp[:-1]
    h2 = (cut[1:] - p[:, _T_OFF]) * tp_new[1:] / tp[1:]
    qrs = p[:, _Q_OFF] - p[:, _Q_ON]
    q1, q2 = p[:, _R] - p[:, _Q_ON], p[:, _Q_OFF] - p[:, _R]
    if d_qrs >= 0:
        q1n, q2n = q1 + (1 - TERMINAL_SHARE) * d_qrs, q2 + TERMINAL_SHARE * d_qrs
    else:
        shrink = (qrs + d_qrs) / qrs
        q1n, q2n = q1 * shrink, q2 * shrink
    if (q1n + q2n).min() < MIN_QRS_S * fs:
        raise WarpError(f"QRS of {(q1n + q2n).min() / ms:.0f} ms (at least "
                        f"{MIN_QRS_S * 1000:.0f})")
    st_t = p[:, _T_OFF] - p[:, _Q_OFF] + d_qt - d_qrs
    if st_t.min() < MIN_ST_T_S * fs:
        raise WarpError(f"ST-T of {st_t.min() / ms:.0f} ms: QT too short for the QRS (at least "
                        f"{MIN_ST_T_S * 1000:.0f} ms between QRS offset and T offset)")
    if has_p:
        pw, seg = p[:, _P_OFF] - p[:, _P_ON], p[:, _Q_ON] - p[:, _P_OFF]
        seg_n = seg + d_pr
        if seg_n.min() < min(MIN_PR_SEGMENT_S * fs, seg.min()):
            raise WarpError(f"PR leaves a PR segment of {seg_n.min() / ms:.0f} ms after the "
                            f"record's P wave of {pw.max() / ms:.0f} ms (at least "
                            f"{MIN_PR_SEGMENT_S * 1000:.0f}; the P wave is not shortened)")
        knots = [cut[:-1], p[:, _P_ON], p[:, _P_OFF], p[:, _Q_ON], p[:, _R], p[:, _Q_OFF],
                 p[:, _T_OFF]]
        spans = [h1, pw, seg_n, q1n, q2n, st_t, h2]
    else:
        knots = [cut[:-1], p[:, _Q_ON], p[:, _R], p[:, _Q_OFF], p[:, _T_OFF]]
        spans = [h1, q1n, q2n, st_t, h2]
    knots_in = np.append(np.column_stack(knots).ravel(), cut[-1])
    knots_out = np.concatenate([[0.0], np.cumsum(np.column_stack(spans).ravel())])
    return _Plan(knots_in, knots_out, ramp=float(h1[0]))


SMOOTH_S = 0.008
"""The warp's rate (input samples per output sample) is constant inside each segment between
two fiducial points and changes over this long at each of them (two passes of a moving average
of the piecewise-linear map; s)."""


def _smooth_map(plan: _Plan, fs: float):
    """Output position -> input position over one pass: the piecewise-linear map through the
    knots, its corners rounded over :data:`SMOOTH_S`. Each segment keeps its own rate: a smooth
    spline through the knots instead (PCHIP) slows the warp near each knot and hurries it between
    them, which moved the T wave's end by 15 ms at a halved heart rate."""
    import scipy.ndimage

    grid = np.arange(int(math.ceil(plan.knots_out[-1])) + 1, dtype=float)
    linear = np.interp(grid, plan.knots_out, plan.knots_in)
    width = max(int(round(SMOOTH_S * fs)), 1)
    smooth = scipy.ndimage.uniform_filter1d(linear, width, mode="nearest")
    smooth = scipy.ndimage.uniform_filter1d(smooth, width, mode="nearest")
    return lambda t: np.interp(t, grid, smooth)


def _sample(signal: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``signal`` (leads, n) at fractional sample positions ``t``, linearly interpolated."""
    t = np.clip(t, 0, signal.shape[1] - 1)
    i = np.minimum(t.astype(np.int64), signal.shape[1] - 2)
    frac = (t - i).astype(signal.dtype)
    return signal[:, i] * (1 - frac) + signal[:, i + 1] * frac


def warp_record(signal: np.ndarray, fs: float, marks: np.ndarray, measured: Mapping[str, Any],
                request: Request) -> np.ndarray:
    """One record warped to the requested intervals, as long as the original.

    Parameters
    ----------
    signal : numpy.ndarray
        ``(n_leads, n_samples)`` mV.
    fs : float
        Its sampling rate, Hz.
    marks : numpy.ndarray
        Its beat marks at ``fs``: :func:`~ecgtransfer.features.intervals.wave_marks`'s table,
        ``(n_beats, 7)`` in :data:`~ecgtransfer.features.intervals.WAVE_COLUMNS` order.
    measured : mapping
        Its labeller row (``hr_bpm``, ``pr_ms``, ``qrs_ms``, ``qt_ms``): a request moves each
        interval by the difference between what is asked and what was measured.
    request : Request
        NaN leaves an interval as it is.

    Returns
    -------
    numpy.ndarray
        ``(n_leads, n_samples)``, the signal's dtype; it starts in the T-P segment before the
        record's second usable beat.

    Raises
    ------
    WarpError
        Too few delineated beats, an interval the record does not have, or a request that leaves
        a wave shorter than its floor (the ``MIN_*`` constants); one line.
    """
    signal = np.asarray(signal)
    plan = _plan(np.asarray(marks, dtype=float), float(fs), measured, request)
    warp = _smooth_map(plan, float(fs))
    length = float(plan.knots_out[-1])
    j = np.arange(signal.shape[1], dtype=float)
    rounds = np.floor(j / length)
    local = j - rounds * length
    out = _sample(signal, warp(local))
    first, last = _sample(signal, plan.knots_in[[0, -1]]).T
    # a replay starts where the last pass ended and returns to the signal over a ramp
    ramp = np.clip(1.0 - local / max(plan.ramp, 1.0), 0.0, 1.0) * (rounds > 0)
    out += (last - first)[:, None] * ramp.astype(out.dtype)
    return out.astype(signal.dtype, copy=False)


def request_problem(ranges: Ranges) -> str | None:
    """What makes ``ranges`` impossible, as ``"key: why"``, or None."""
    for key in ("hr_bpm", "pr_ms", "qrs_ms", "qtc_ms", "qt_ms"):
        lo, hi = getattr(ranges, key)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0:
            return f"{key}: a range of two positive numbers, got [{lo}, {hi}]"
        if lo > hi:
            return f"{key}: low {lo:g} is above high {hi:g}"
    if ranges.qt_ms[1] <= ranges.qrs_ms[0] + MIN_ST_T_S * 1000:
        return (f"qt_ms: every QT ({ranges.qt_ms[0]:g}-{ranges.qt_ms[1]:g} ms) is shorter than "
                f"the narrowest QRS ({ranges.qrs_ms[0]:g} ms) plus an ST-T of "
                f"{MIN_ST_T_S * 1000:.0f} ms")
    if ranges.qt_rr not in QT_RR:
        return f"qt_rr: one of {', '.join(QT_RR)}, got {ranges.qt_rr!r}"
    unknown = [c for c in ranges.change if c not in INTERVALS]
    if unknown or not ranges.change:
        return f"change: some of {', '.join(INTERVALS)}, got {list(ranges.change)}"
    return None


def summarise_errors(requested: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Median and 95th percentile of |measured - requested| over the records where both are
    numbers, and how many were."""
    r, m = np.asarray(requested, float), np.asarray(measured, float)
    ok = np.isfinite(r) & np.isfinite(m)
    err = np.abs(m[ok] - r[ok])
    if not len(err):
        return {"n": 0, "median": math.nan, "p95": math.nan}
    return {"n": int(len(err)), "median": float(np.median(err)),
            "p95": float(np.percentile(err, 95))}
