"""Figures the stages log: learning curves and predicted-against-true scatter plots.

Each function takes arrays or tables and returns a matplotlib Figure (the Agg backend, no screen
needed); :mod:`ecgtransfer.tracking` saves them as PNG artifacts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["learning_curves", "scatter_true_pred"]


def _figure(n_panels: int, width: float = 4.0, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, height), squeeze=False)
    return fig, axes[0]


def learning_curves(history: Sequence[dict[str, float]], names: Sequence[str],
                    units: Sequence[str], best_epoch: int | None = None):
    """Loss, then MAE per target, for train and validation against epoch."""
    epochs = [h["epoch"] for h in history]
    fig, axes = _figure(1 + len(names))
    panels = [("loss", "loss", "loss (standardised)")]
    panels += [(f"mae_{n}_{u}", f"{n.upper()} MAE", f"MAE ({u})") for n, u in zip(names, units)]
    for ax, (key, title, ylabel) in zip(axes, panels):
        for split, style in (("train", "-"), ("val", "--")):
            ax.plot(epochs, [h.get(f"{split}_{key}", np.nan) for h in history], style,
                    marker="o", ms=3, label=split)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", lw=0.8, ls=":", label=f"best ({best_epoch})")
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return fig


def scatter_true_pred(true: np.ndarray, pred: np.ndarray, names: Sequence[str],
                      units: Sequence[str], title: str = "test"):
    """Predicted against labelled value per target, with the identity line and the MAE."""
    true = np.asarray(true).reshape(len(true), -1)
    pred = np.asarray(pred).reshape(len(pred), -1)
    fig, axes = _figure(len(names), width=3.8, height=3.8)
    for j, (ax, name, unit) in enumerate(zip(axes, names, units)):
        t, p = true[:, j], pred[:, j]
        ax.scatter(t, p, s=8, alpha=0.6)
        if len(t):
            lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
            mae = float(np.abs(t - p).mean())
            ax.set_title(f"{name.upper()} ({title}, n={len(t)}): MAE {mae:.1f} {unit}")
        ax.set(xlabel=f"label ({unit})", ylabel=f"predicted ({unit})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
