"""Where the waves of a record lie, sample by sample, from the labeller's fiducial points; and
the segments (one wave of one beat on one lead) that occlusion removes and the faithfulness
curves rank.

A sample is in the P wave (P onset to P offset), the PR segment (P offset to QRS onset), the QRS
complex, the ST segment (QRS offset to T onset), the T wave (T onset to T offset), or none of
them (``other``: the TP segment, beats the labeller did not delineate, padding).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["WAVES", "OTHER", "DEFINING_WAVES", "wave_labels", "wave_segments"]

WAVES: tuple[str, ...] = ("p", "pr", "qrs", "st", "t")
"""The parts of a beat, in order; a sample's label is its index here, or :data:`OTHER`."""
OTHER = len(WAVES)
"""The label of a sample outside every delineated wave."""
_BOUNDS = (("p_on", "p_off"), ("p_off", "qrs_on"), ("qrs_on", "qrs_off"), ("qrs_off", "t_on"),
           ("t_on", "t_off"))
DEFINING_WAVES: dict[str, tuple[str, ...]] = {
    "hr": ("qrs",), "pr": ("p", "pr"), "qrs": ("qrs",), "qt": ("qrs", "st", "t")}
"""The parts of the beat each interval is measured over (HR: from one R peak to the next)."""


def wave_labels(beats: pd.DataFrame, n_samples: int) -> np.ndarray:
    """Each sample's part of the beat.

    Parameters
    ----------
    beats : pandas.DataFrame
        :func:`ecgtransfer.features.intervals.ecg_waves`'s table, sample positions at the rate
        of the signal being labelled.
    n_samples : int
        The signal's length.

    Returns
    -------
    numpy.ndarray
        ``(n_samples,)`` int8: an index into :data:`WAVES`, or :data:`OTHER`. Beats are laid
        down in time order, so where a fast rhythm puts a P wave on the previous T wave, the
        later beat's P wins.
    """
    labels = np.full(n_samples, OTHER, dtype=np.int8)
    for beat in beats.itertuples(index=False):
        for k, (lo, hi) in enumerate(_BOUNDS):
            a, b = getattr(beat, lo), getattr(beat, hi)
            if np.isfinite(a) and np.isfinite(b) and b > a:
                labels[max(int(round(a)), 0): max(min(int(round(b)), n_samples), 0)] = k
    return labels


def wave_segments(labels: np.ndarray, n_leads: int,
                  max_other: int | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Split every lead into runs of one label: the units occlusion removes.

    Parameters
    ----------
    labels : numpy.ndarray
        :func:`wave_labels` of the record (the same for every lead: the labeller's marks are
        the median over the leads).
    n_leads : int
    max_other : int, optional
        Cut runs of :data:`OTHER` longer than this many samples into pieces (a record without
        beats is then occluded in windows, not as one block).

    Returns
    -------
    mask : numpy.ndarray
        ``(n_leads, n_samples)`` int64 segment numbers, 0 upwards (Captum's ``feature_mask``).
    segments : pandas.DataFrame
        One row per segment number: ``lead`` (row of the signal), ``wave`` (a name of
        :data:`WAVES` or ``"other"``), ``start``, ``stop`` (samples).
    """
    labels = np.asarray(labels)
    n = len(labels)
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts, stops = np.r_[0, edges], np.r_[edges, n]
    runs = []
    for a, b in zip(starts, stops):
        step = max_other if (labels[a] == OTHER and max_other) else b - a
        runs += [(c, min(c + step, b)) for c in range(a, b, step)]
    mask = np.empty((n_leads, n), dtype=np.int64)
    rows = []
    for lead in range(n_leads):
        for a, b in runs:
            mask[lead, a:b] = len(rows)
            label = int(labels[a])
            rows.append((lead, WAVES[label] if label < OTHER else "other", a, b))
    return mask, pd.DataFrame(rows, columns=["lead", "wave", "start", "stop"])
