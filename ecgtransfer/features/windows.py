"""Long recordings labelled in windows: a row per window, a row per beat, a summary per record.

A 15-minute or 24-hour Holter record is too long to be one median beat: heart rate and QT move,
noise comes and goes, a lead comes loose for an hour. With ``window_s`` set in the labeller's
config, :func:`label_windows` reads a record window by window (through a ``read(start, stop)``
callable, so memory stays flat in the record's length) and measures each window as
:func:`~ecgtransfer.features.intervals.ecg_intervals` measures a record: its own R-peak vote,
templates, quality score (noise abstains with its reason), dropped leads. It yields each
window's row (:data:`WINDOW_COLUMNS`: the record, start and end time, the intervals with their
status) and its beats (:data:`BEAT_COLUMNS`: each beat's time, wave boundaries and intervals);
:class:`Summary` folds the windows into the record's row of the label file (the median of each
interval over the windows that measured it).

A beat's boundaries are its window's template boundaries placed at the beat's own R peak, its T
onset and offset moved with its own T wave (as :func:`~ecgtransfer.features.intervals.ecg_waves`):
a beat's QT follows it, its PR and QRS are its window's.
With overlapping windows (``step_s < window_s``) each beat is reported once, by the window whose
middle it lies in.

This module computes; the label file layer (:mod:`ecgtransfer.features.labels`) writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ecgtransfer.features.intervals import (LABEL_COLUMNS, OK, STATUS_COLUMNS, LabellerConfig,
                                            unmeasured, wave_marks)
from ecgtransfer.features.vocabulary import INTERVALS

__all__ = ["BEAT_COLUMNS", "Summary", "WINDOW_COLUMNS", "label_windows", "window_bounds"]

WINDOW_COLUMNS: tuple[str, ...] = ("record_id", "start_s", "end_s", *LABEL_COLUMNS[1:])
"""A windows table's columns: the label file's, after the record its window's start and end
(seconds from the record's start)."""
BEAT_COLUMNS: tuple[str, ...] = ("record_id", "time_s", "p_on_s", "p_off_s", "qrs_on_s",
                                 "qrs_off_s", "t_on_s", "t_off_s", "rr_ms", "pr_ms", "qrs_ms",
                                 "qt_ms")
"""A beat table's columns: the R peak's time, the wave boundaries (seconds from the record's
start; NaN where not found, P marks NaN where the window has no P wave), the RR interval before
the beat and the beat's PR, QRS and QT (ms)."""


def window_bounds(n_samples: int, fs: float, window_s: float,
                  step_s: float = 0.0, min_s: float = 0.0) -> list[tuple[int, int]]:
    """Sample ranges ``(start, stop)`` of the windows of a record.

    Windows of ``window_s`` start every ``step_s`` (0: ``window_s``) from the record's start;
    what the last whole window leaves is one more, shorter window ``(start, n_samples)`` if that
    stretch is at least ``min_s`` long (else its beats belong to the last whole window). A record
    shorter than one window is one window.
    """
    width = max(int(round(window_s * fs)), 1)
    step = max(int(round((step_s or window_s) * fs)), 1)
    if n_samples <= width:
        return [(0, int(n_samples))]
    starts = range(0, int(n_samples) - width + 1, step)
    out = [(a, a + width) for a in starts]
    tail = starts[-1] + step
    if n_samples - out[-1][1] >= max(min_s * fs, 1) and tail < n_samples:
        out.append((tail, int(n_samples)))
    return out


def label_windows(read: Callable[[int, int], np.ndarray], n_samples: int, fs: float,
                  leads: Sequence[str], record_id: str,
                  config: LabellerConfig) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Measure a record window by window.

    Parameters
    ----------
    read : callable
        ``read(start, stop)`` returns samples ``start:stop`` as ``(n_leads, stop - start)`` mV
        (a :class:`~ecgtransfer.data.wfdb_io.RecordReader`'s ``read``, or a slice of a store's
        memory-mapped signal); an exception with a ``reason`` (a ``RecordError``) makes that
        window's row unmeasured with it.
    n_samples, fs, leads, record_id
        The record's length (samples), rate (Hz), lead names and name.
    config : LabellerConfig
        ``window_s`` and ``step_s`` place the windows (``window_s`` 0: the whole record as one).

    Yields
    ------
    window : dict
        The window's row, :data:`WINDOW_COLUMNS`.
    beats : numpy.ndarray
        ``(n, len(BEAT_COLUMNS) - 1)`` float, the window's beats in :data:`BEAT_COLUMNS` order
        after ``record_id``.
    """
    window_s = config.window_s or n_samples / fs
    step = (config.step_s or window_s) * fs
    width = window_s * fs
    previous_r = np.nan
    bounds = window_bounds(n_samples, fs, window_s, config.step_s, config.min_duration_s)
    for k, (start, stop) in enumerate(bounds):
        times = {"start_s": start / fs, "end_s": stop / fs}
        try:
            x = read(start, stop)
        except Exception as exc:  # noqa: BLE001 - one window of a long record must not stop it
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            yield {"record_id": record_id, **times, **unmeasured(record_id, reason)}, \
                _no_beats()
            continue
        row, marks = wave_marks(x, fs, leads, record_id=record_id, config=config)
        window = {"record_id": record_id, **times, **{key: value for key, value in row.items()
                                                       if key != "record_id"}}
        # each beat once: the one whose R peak lies in this window's middle step
        margin = (width - step) / 2
        lo = 0.0 if start == 0 else margin
        hi = np.inf if k == len(bounds) - 1 else margin + step
        r = marks[:, 0] if len(marks) else np.zeros(0)
        keep = (r >= lo) & (r < hi)
        if row["qrs_status"] != OK:  # a window that was not delineated gives no beats
            keep[:] = False
        beats = _beat_rows(marks[keep], start, fs, previous_r)
        if len(beats):
            previous_r = beats[-1, 0]
        yield window, beats


def _no_beats() -> np.ndarray:
    return np.zeros((0, len(BEAT_COLUMNS) - 1))


def _beat_rows(marks: np.ndarray, start: int, fs: float, previous_r: float) -> np.ndarray:
    """Beat table rows (without ``record_id``) from :data:`WAVE_COLUMNS` marks of a window."""
    if not len(marks):
        return _no_beats()
    t = (marks + start) / fs  # r, p_on, p_off, qrs_on, qrs_off, t_on, t_off
    rr = np.diff(np.r_[previous_r, t[:, 0]]) * 1000.0
    pr = (t[:, 3] - t[:, 1]) * 1000.0
    qrs = (t[:, 4] - t[:, 3]) * 1000.0
    qt = (t[:, 6] - t[:, 3]) * 1000.0
    return np.column_stack([t, rr, pr, qrs, qt])


@dataclass
class Summary:
    """A record's row of the label file, folded from its windows: each interval the median over
    the windows that measured it, ``n_beats`` their sum, ``quality`` the median; ``dropped_leads``
    counts the windows each lead was left out of. Holds a few numbers per window, never signals.
    """

    record_id: str
    values: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in INTERVALS})
    qualities: list[float] = field(default_factory=list)
    n_beats: float = 0.0
    n_windows: int = 0
    leads: str = ""
    dropped: dict[str, int] = field(default_factory=dict)
    first_reason: dict[str, str] = field(default_factory=dict)

    def add(self, window: dict[str, Any]) -> None:
        """Take one window's row into the summary."""
        self.n_windows += 1
        for col, status in zip(INTERVALS, STATUS_COLUMNS):
            if window[status] == OK and np.isfinite(window[col]):
                self.values[col].append(float(window[col]))
            else:
                self.first_reason.setdefault(col, str(window[status]))
        if np.isfinite(window.get("n_beats", np.nan)):
            self.n_beats += float(window["n_beats"])
        if np.isfinite(window.get("quality", np.nan)):
            self.qualities.append(float(window["quality"]))
        if window.get("leads") and not self.leads:
            self.leads = str(window["leads"])
        for reason in filter(None, str(window.get("dropped_leads") or "").split("; ")):
            what = reason.split(" (")[0]
            self.dropped[what] = self.dropped.get(what, 0) + 1

    def row(self) -> dict[str, Any]:
        """The record's label row (:data:`~ecgtransfer.features.intervals.LABEL_COLUMNS`)."""
        dropped = [f"{what} in {k} of {self.n_windows} windows"
                   for what, k in self.dropped.items()]
        out = unmeasured(self.record_id, OK, n_beats=self.n_beats, dropped=dropped)
        out["leads"] = self.leads
        out["quality"] = float(np.median(self.qualities)) if self.qualities else np.nan
        for col, status in zip(INTERVALS, STATUS_COLUMNS):
            if self.values[col]:
                out[col] = float(np.median(self.values[col]))
            else:
                reason = self.first_reason.get(col, "no windows")
                out[status] = (f"no window measured it ({self.n_windows} windows; first: "
                               f"{reason})")
        return out
