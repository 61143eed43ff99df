"""Task objects: what the one training loop optimises and how it scores an epoch.

A task turns model outputs and targets into a loss (tensors) and into metrics (NumPy), and names
the metric that early stopping watches (:attr:`monitor`, lower is better).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ecgtransfer.training.metrics import mae

__all__ = ["RegressionTask", "ClassificationTask"]


class RegressionTask:
    """Regression of standardised targets, scored by MAE in the targets' own units.

    Parameters
    ----------
    names : sequence of str
        Target names (``qrs``, ``hr``, ...).
    units : sequence of str
        Their units (``ms``, ``bpm``): metric names read ``val_mae_qrs_ms``.
    mean, std : array-like
        The standardisation: ``target = z * std + mean``.
    loss : str
        ``huber`` (smooth L1), ``mse`` or ``l1`` on the standardised targets.

    Notes
    -----
    The early-stopping score ``val_score`` is the mean over targets of MAE / std, which is the
    MAE itself (up to the constant std) when there is one target.
    """

    monitor = "val_score"

    def __init__(self, names: Sequence[str], units: Sequence[str], mean: Sequence[float],
                 std: Sequence[float], loss: str = "huber"):
        self.names = list(names)
        self.units = list(units)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self._loss = {"huber": F.smooth_l1_loss, "mse": F.mse_loss, "l1": F.l1_loss}[loss]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._loss(outputs.float(), targets.float())

    def to_units(self, z: np.ndarray) -> np.ndarray:
        """Standardised values back in the targets' units."""
        return np.asarray(z, dtype=np.float64) * self.std + self.mean

    def metrics(self, outputs: np.ndarray, targets: np.ndarray, prefix: str) -> dict[str, float]:
        """``<prefix>_mae_<name>_<unit>`` per target and ``<prefix>_score``."""
        err = mae(outputs, targets)
        out = {f"{prefix}_mae_{n}_{u}": float(e * s)
               for n, u, e, s in zip(self.names, self.units, err, self.std)}
        out[f"{prefix}_score"] = float(np.mean(err))
        return out

    def describe(self, metrics: dict[str, float], prefix: str) -> str:
        """One line of ``metrics`` for the log: ``QRS MAE 9.61 ms, ...``."""
        return ", ".join(f"{n.upper()} MAE {metrics[f'{prefix}_mae_{n}_{u}']:.3g} {u}"
                         for n, u in zip(self.names, self.units))


FOCAL_GAMMA = 2.0
"""The focusing exponent of the focal loss (Lin et al. 2017's default)."""


class ClassificationTask:
    """Five-superclass diagnosis: single-label (softmax, cross-entropy with optional class
    weights) or multi-label (sigmoid, binary cross-entropy), scored by macro AUROC.

    Parameters
    ----------
    classes : sequence of str
        Class names, in output order.
    multilabel : bool
        Targets are ``(n, k)`` 0/1 rows instead of class indices.
    class_weights : sequence of float, optional
        Cross-entropy weight per class (single-label) or BCE ``pos_weight`` (multi-label).
    loss : str
        ``ce``: cross-entropy (single-label) or binary cross-entropy per class; ``focal``: the
        same scaled by ``(1 - p_t) ** 2`` (Lin et al. 2017), so records the model already gets
        right weigh less.

    Notes
    -----
    Early stopping watches ``val_score = 1 - macro AUROC`` (lower is better).
    """

    monitor = "val_score"

    def __init__(self, classes: Sequence[str], multilabel: bool = False,
                 class_weights: Sequence[float] | None = None, loss: str = "ce"):
        if loss not in ("ce", "focal"):
            raise ValueError(f"loss: {loss!r} is not ce or focal")
        self.classes = list(classes)
        self.focal = loss == "focal"
        self.multilabel = multilabel
        self.weights = (None if class_weights is None
                        else torch.as_tensor(np.asarray(class_weights), dtype=torch.float32))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        w = None if self.weights is None else self.weights.to(outputs.device)
        z = outputs.float()
        if self.multilabel:
            y = targets.float()
            if not self.focal:
                return F.binary_cross_entropy_with_logits(z, y, pos_weight=w)
            bce = F.binary_cross_entropy_with_logits(z, y, pos_weight=w, reduction="none")
            p = torch.sigmoid(z)
            p_t = p * y + (1 - p) * (1 - y)
            return ((1 - p_t) ** FOCAL_GAMMA * bce).mean()
        y = targets.long().view(-1)
        if not self.focal:
            return F.cross_entropy(z, y, weight=w)
        log_p_t = F.log_softmax(z, dim=1).gather(1, y[:, None])[:, 0]
        w_i = torch.ones_like(log_p_t) if w is None else w[y]
        terms = -w_i * (1 - log_p_t.exp()) ** FOCAL_GAMMA * log_p_t
        return terms.sum() / w_i.sum()  # as cross_entropy weighs: a weighted mean

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Logits to probabilities (sigmoid or softmax)."""
        z = np.asarray(outputs, dtype=np.float64)
        if self.multilabel:
            return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def metrics(self, outputs: np.ndarray, targets: np.ndarray, prefix: str) -> dict[str, float]:
        """``<prefix>_accuracy``, ``_macro_auroc``, ``_macro_f1``, ``_auroc_<class>`` and
        ``<prefix>_score``."""
        from ecgtransfer.training.metrics import classification_metrics

        values = classification_metrics(self.probabilities(outputs), targets, self.classes,
                                        self.multilabel)
        out = {f"{prefix}_{k}": v for k, v in values.items()}
        auroc = values["macro_auroc"]
        out[f"{prefix}_score"] = float(1.0 - auroc) if np.isfinite(auroc) else float("inf")
        return out

    def describe(self, metrics: dict[str, float], prefix: str) -> str:
        """One line of ``metrics`` for the log: ``macro AUROC 0.871, accuracy 0.702, ...``."""
        return ", ".join(f"{name} {metrics[f'{prefix}_{key}']:.3f}" for key, name in
                         (("macro_auroc", "macro AUROC"), ("accuracy", "accuracy"),
                          ("macro_f1", "macro F1")))
