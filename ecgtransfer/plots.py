"""Figures the stages log: learning curves, predicted-against-true scatter plots, confusion
matrices and ROC curves.

Each function takes arrays or tables and returns a matplotlib Figure, made without pyplot (no
screen needed, no backend changed); :mod:`ecgtransfer.tracking` saves them as PNG artifacts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["learning_curves", "scatter_true_pred", "classification_curves", "confusion_matrix",
           "roc_curves"]


def figure(n_panels: int, width: float = 4.0, height: float = 3.4):
    """A figure of ``n_panels`` axes side by side, made without pyplot: no backend is chosen or
    changed (a notebook keeps its inline backend, a server needs no display) and nothing is left
    open."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height))
    axes = fig.subplots(1, n_panels, squeeze=False)
    return fig, axes[0]


def learning_curves(history: Sequence[dict[str, float]], names: Sequence[str],
                    units: Sequence[str], best_epoch: int | None = None):
    """Loss, then MAE per target, for train and validation against epoch."""
    epochs = [h["epoch"] for h in history]
    fig, axes = figure(1 + len(names))
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
    fig, axes = figure(len(names), width=3.8, height=3.8)
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


def classification_curves(history: Sequence[dict[str, float]], best_epoch: int | None = None):
    """Loss, macro AUROC and accuracy, for train and validation against epoch."""
    epochs = [h["epoch"] for h in history]
    fig, axes = figure(3)
    for ax, key in zip(axes, ("loss", "macro_auroc", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            ax.plot(epochs, [h.get(f"{split}_{key}", np.nan) for h in history], style,
                    marker="o", ms=3, label=split)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", lw=0.8, ls=":", label=f"best ({best_epoch})")
        ax.set(title=key.replace("_", " "), xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return fig


def confusion_matrix(y: np.ndarray, probs: np.ndarray, classes: Sequence[str],
                     multilabel: bool = False, title: str = "test"):
    """Single-label: the ``k x k`` confusion matrix of the arg-max decisions (counts, and row
    fractions in colour). Multi-label: one 2 x 2 matrix per class at threshold 0.5."""
    from sklearn.metrics import ConfusionMatrixDisplay, multilabel_confusion_matrix

    probs = np.asarray(probs)
    if not multilabel:
        fig, (ax,) = figure(1, width=5.2, height=4.6)
        ConfusionMatrixDisplay.from_predictions(
            np.asarray(y).reshape(-1), probs.argmax(axis=1), labels=list(range(len(classes))),
            display_labels=list(classes), ax=ax, colorbar=False, cmap="Blues")
        ax.set_title(f"{title} (n={len(probs)}): rows true, columns predicted")
    else:
        y = np.asarray(y)
        shown = np.arange(len(classes))
        if len(classes) > 12:  # a readable figure: the 12 classes with the most positives
            shown = np.sort(np.argsort(-y.sum(axis=0), kind="stable")[:12])
        fig, axes = figure(len(shown), width=2.8, height=3.0)
        matrices = multilabel_confusion_matrix(y[:, shown], (probs[:, shown] >= 0.5).astype(int))
        for ax, j, m in zip(axes, shown, matrices):
            ConfusionMatrixDisplay(m, display_labels=["no", "yes"]).plot(
                ax=ax, colorbar=False, cmap="Blues")
            ax.set_title(classes[j])
        more = f"; the {len(shown)} of {len(classes)} classes with most positives" \
            if len(shown) < len(classes) else ""
        fig.suptitle(f"{title} (n={len(probs)}), threshold 0.5{more}")
    fig.tight_layout()
    return fig


def roc_curves(y: np.ndarray, probs: np.ndarray, classes: Sequence[str],
               multilabel: bool = False, title: str = "test"):
    """One-vs-rest ROC curve per class, with its AUROC in the legend."""
    from sklearn.metrics import RocCurveDisplay

    probs = np.asarray(probs)
    truth = np.asarray(y)
    if not multilabel:
        truth = np.eye(len(classes), dtype=int)[truth.reshape(-1)]
    fig, (ax,) = figure(1, width=5.0, height=4.6)
    present = [j for j in range(len(classes)) if 0 < truth[:, j].sum() < len(truth)]
    drawn = present
    if len(present) > 12:  # a readable legend: the 12 classes with the most positives
        drawn = sorted(sorted(present, key=lambda j: -truth[:, j].sum())[:12])
    for j in drawn:
        RocCurveDisplay.from_predictions(truth[:, j], probs[:, j], name=classes[j], ax=ax)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    more = (f", the {len(drawn)} most frequent of {len(present)} classes"
            if len(drawn) < len(present) else "")
    ax.set(title=f"ROC, one vs rest ({title}, n={len(probs)}{more})", xlabel="false positive rate",
           ylabel="true positive rate")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
