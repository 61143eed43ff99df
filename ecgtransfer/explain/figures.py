"""Figures of ``ecgtransfer explain``: a record on standard ECG paper with the attributions under
each lead, the share of attribution per wave, and the faithfulness curves.

Made without pyplot, as :mod:`ecgtransfer.plots` makes its figures.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ecgtransfer.explain.waves import OTHER, WAVES

__all__ = ["ecg_paper", "wave_share_bars", "faithfulness_curves", "Pages", "MM_PER_S",
           "MM_PER_MV"]

MM_PER_S = 25.0
"""Paper speed."""
MM_PER_MV = 10.0
"""Gain."""
_WAVE_COLOURS = {"p": "#1f77b4", "pr": "#aec7e8", "qrs": "#d62728", "st": "#ffbb78",
                 "t": "#2ca02c", "other": "#ffffff"}
_LEAD_MM = 28.0  # vertical room of a trace
_BAND_MM = 4.0   # height of one attribution band


def _paper_grid(ax, width_mm: float, height_mm: float) -> None:
    for step, colour, lw in ((1.0, "#f6c8c8", 0.3), (5.0, "#e88e8e", 0.6)):
        ax.vlines(np.arange(0, width_mm + 1e-9, step), 0, height_mm, colors=colour, lw=lw, zorder=0)
        ax.hlines(np.arange(0, height_mm + 1e-9, step), 0, width_mm, colors=colour, lw=lw, zorder=0)


def ecg_paper(signal: np.ndarray, fs: float, leads: Sequence[str],
              attributions: Mapping[str, np.ndarray], labels: np.ndarray | None = None,
              title: str = "", notes: Sequence[str] = ()):
    """One record on ECG paper (25 mm/s, 10 mm/mV, 1 mm and 5 mm grid), each lead's trace with a
    band per attribution method under it (red: towards the explained output, blue: against;
    each method's colours span its own 99.5th percentile of magnitude on the record, larger
    values saturate), and the labeller's waves as
    a coloured strip above the leads.

    Parameters
    ----------
    signal : numpy.ndarray
        ``(leads, n_samples)`` mV.
    fs : float
    leads : sequence of str
    attributions : mapping of str to numpy.ndarray
        Method name -> ``(leads, n_samples)`` attribution.
    labels : numpy.ndarray, optional
        Each sample's wave (:func:`ecgtransfer.explain.waves.wave_labels`).
    title : str
    notes : sequence of str
        Lines under the title (predicted and true labels, the labeller's intervals).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import ListedColormap, TwoSlopeNorm
    from matplotlib.figure import Figure

    n_leads, n = signal.shape
    width = n / fs * MM_PER_S
    bands = list(attributions)
    row = _LEAD_MM + _BAND_MM * len(bands) + 2.0
    strip = 5.0 if labels is not None else 0.0
    height = row * n_leads + strip + 2.0
    fig = Figure(figsize=((width + 30) / 25.4, (height + 10 + 5 * len(notes)) / 25.4), dpi=110)
    ax = fig.add_axes((15 / (width + 30), 4 / (height + 10 + 5 * len(notes)),
                       width / (width + 30), height / (height + 10 + 5 * len(notes))))
    _paper_grid(ax, width, height)
    t = np.arange(n) / fs * MM_PER_S
    top = height - 1.0
    if labels is not None:
        names = [*WAVES, "other"]
        cmap = ListedColormap([_WAVE_COLOURS[w] for w in names])
        ax.imshow(np.asarray(labels, float)[None], aspect="auto", cmap=cmap, vmin=-0.5,
                  vmax=OTHER + 0.5, extent=(0, width, top - strip + 1, top), zorder=2,
                  interpolation="nearest")
        ax.text(-1, top - strip / 2 + 0.5, "waves", ha="right", va="center", fontsize=7)
        for k, w in enumerate(WAVES):
            ax.text(width - 2 - 9 * (len(WAVES) - 1 - k), top + 1.5, w.upper(), fontsize=7,
                    color=_WAVE_COLOURS[w], ha="right", va="bottom", weight="bold")
        top -= strip
    for i in range(n_leads):
        base = top - i * row
        mid = base - _LEAD_MM / 2
        ax.plot(t, mid + signal[i] * MM_PER_MV, color="black", lw=0.6, zorder=3)
        ax.text(-1, mid, leads[i], ha="right", va="center", fontsize=8, weight="bold")
        for j, method in enumerate(bands):
            a = np.asarray(attributions[method][i], float)
            scale = float(np.percentile(np.abs(attributions[method]), 99.5)) or 1.0
            y1 = base - _LEAD_MM - j * _BAND_MM
            ax.imshow(a[None], aspect="auto", cmap="RdBu_r",
                      norm=TwoSlopeNorm(0.0, -scale, scale), interpolation="nearest",
                      extent=(0, width, y1 - _BAND_MM + 0.4, y1), zorder=2)
            ax.text(width + 1, y1 - _BAND_MM / 2, _short(method), fontsize=6, va="center")
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.set_xticks(np.arange(0, width + 1e-9, MM_PER_S), [f"{s:g}" for s in
                                                         np.arange(0, n / fs + 1e-9, 1.0)],
                  fontsize=7)
    ax.set_yticks([])
    ax.set_xlabel("s (25 mm/s, 10 mm/mV)", fontsize=7)
    lines = [title, *notes] if title else list(notes)
    fig.text(15 / (width + 30), 1 - 2 / (height + 10 + 5 * len(notes)), "\n".join(lines),
             fontsize=8, va="top")
    return fig


def _short(method: str) -> str:
    from ecgtransfer.explain.attribution import SHORT

    return SHORT.get(method, method)


def wave_share_bars(table: pd.DataFrame):
    """Share of attribution per wave: a group of bars per explained output and method (with
    their 95% intervals when the table has them), with the waves' share of the time as a dotted
    line (a share above it is where the model looks more
    than the wave's length alone would give).

    ``table`` is the explain stage's ``wave_share.csv``: ``output``, ``method``, ``share_<wave>``
    and ``time_<wave>`` columns.
    """
    from ecgtransfer.plots import figure

    names = [*WAVES, "other"]
    outputs = list(dict.fromkeys(table["output"]))
    fig, axes = figure(len(outputs), width=4.2, height=3.2)
    for ax, output in zip(axes, outputs):
        part = table[table["output"] == output]
        methods = list(part["method"])
        w = 0.8 / max(len(methods), 1)
        x = np.arange(len(names))
        for j, (_, r) in enumerate(part.iterrows()):
            mean = np.array([r[f"share_{k}"] for k in names])
            low = np.array([r.get(f"share_{k}_ci_low", np.nan) for k in names])
            high = np.array([r.get(f"share_{k}_ci_high", np.nan) for k in names])
            err = None if np.isnan(low).all() else np.vstack([mean - low, high - mean])
            ax.bar(x + (j - (len(methods) - 1) / 2) * w, mean, w, yerr=err, capsize=1.5,
                   error_kw={"lw": 0.6}, label=_short(r["method"]))
        ax.plot(x, [part[f"time_{k}"].mean() for k in names], "k:", marker="_", ms=14,
                label="time share")
        ax.set_xticks(x, [k.upper() if k != "other" else "other" for k in names])
        ax.set_ylim(0, 1)
        ax.set_title(f"{output} (n={int(part['n_records'].max())})", fontsize=9)
        ax.set_ylabel("share of |attribution|")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def faithfulness_curves(curves: pd.DataFrame, ylabel: str = "score"):
    """Mean deletion and insertion curves per method and the random order's.

    ``curves`` has columns ``method`` (or ``random``), ``kind`` (deletion/insertion),
    ``fraction`` and ``value`` (one row per point, averaged over records already).
    """
    from ecgtransfer.plots import figure

    fig, axes = figure(2, width=4.2, height=3.2)
    for ax, kind in zip(axes, ("deletion", "insertion")):
        part = curves[curves["kind"] == kind]
        for method, c in part.groupby("method", sort=False):
            ax.plot(c["fraction"], c["value"], ":" if method == "random" else "-",
                    color="grey" if method == "random" else None, label=_short(method))
        ax.set_xlabel(f"fraction of samples {'removed' if kind == 'deletion' else 'inserted'}")
        ax.set_ylabel(ylabel)
        ax.set_title(kind, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


class Pages:
    """The multi-record PDF, a page added as each figure is made (none kept in memory)."""

    def __init__(self, path):
        self.path = path
        self._pdf = None

    def add(self, fig) -> None:
        from matplotlib.backends.backend_pdf import PdfPages

        if self._pdf is None:
            self._pdf = PdfPages(self.path)
        self._pdf.savefig(fig)

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()
