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

from typing import Mapping

import numpy as np
import pandas as pd

__all__ = ["INTERVALS", "annotated_waves", "reference_intervals"]

INTERVALS: tuple[str, ...] = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms")
_WAVES = {"p": "P", "N": "QRS", "t": "T"}


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
    qrs, p, t = pos[kinds == "N"], pos[kinds == "p"], pos[kinds == "t"]
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
    return {"hr_bpm": 60.0 * fs / rr if rr > 0 else np.nan,
            "pr_ms": med.get("pr", np.nan) * to_ms, "qrs_ms": med.get("qrs", np.nan) * to_ms,
            "qt_ms": med.get("qt", np.nan) * to_ms,
            "n_beats": float(med.get("beats", 0) or 0), "n_leads": int(len(per_lead))}
