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

__all__ = ["RegressionTask"]


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

    @property
    def num_outputs(self) -> int:
        return len(self.names)

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
