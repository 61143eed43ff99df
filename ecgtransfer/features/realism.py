"""How realistic are synthetic ECGs' intervals? Distributions of label tables side by side.

Pure functions over label tables (``ecgtransfer label`` output, see
:func:`ecgtransfer.features.labels.read_labels`); the figure is returned, not saved.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ecgtransfer.features.vocabulary import INTERVALS, display_name, status_column

__all__ = ["interval_histograms", "interval_summary"]

_RANGES = {"hr_bpm": (30, 180), "pr_ms": (60, 360), "qrs_ms": (40, 200), "qt_ms": (250, 600)}


def _measured(table: pd.DataFrame, interval: str) -> pd.Series:
    status = status_column(interval)
    ok = table[status] == "ok" if status in table else table[interval].notna()
    return table.loc[ok, interval].astype(float)


def interval_summary(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per source and interval: records, share measured, median, IQR, 5th and 95th percentile.

    Parameters
    ----------
    tables : mapping of source name to label table

    Returns
    -------
    pandas.DataFrame
        Index ``(source, interval)``; columns ``records, measured, median, q25, q75, p5, p95``.
    """
    rows = {}
    for name, table in tables.items():
        for interval in INTERVALS:
            v = _measured(table, interval)
            q = v.quantile([0.05, 0.25, 0.5, 0.75, 0.95]) if len(v) else pd.Series(
                np.nan, index=[0.05, 0.25, 0.5, 0.75, 0.95])
            rows[(name, interval)] = {"records": len(table),
                                      "measured": len(v) / len(table) if len(table) else np.nan,
                                      "median": q[0.5], "q25": q[0.25], "q75": q[0.75],
                                      "p5": q[0.05], "p95": q[0.95]}
    return pd.DataFrame(rows).T.rename_axis(["source", "interval"])


def interval_histograms(tables: Mapping[str, pd.DataFrame], *, bins: int = 40):
    """One panel per interval, each source's measured values as a density histogram.

    Parameters
    ----------
    tables : mapping of source name to label table
    bins : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ecgtransfer.plots import figure

    fig, axes = figure(len(INTERVALS), width=4, height=3.4)
    for ax, interval in zip(axes, INTERVALS):
        lo, hi = _RANGES[interval]
        edges = np.linspace(lo, hi, bins + 1)
        for name, table in tables.items():
            v = _measured(table, interval)
            ax.hist(v.clip(lo, hi), bins=edges, density=True, histtype="step", linewidth=1.6,
                    label=f"{name} (n={len(v)})")
        ax.set_xlabel(display_name(interval))
        ax.set_yticks([])
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig
