"""Metrics as pure functions of arrays."""

from __future__ import annotations

import numpy as np

__all__ = ["mae"]


def mae(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean absolute error per column of ``(n, k)`` arrays (NaN for an empty input)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    true = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    if not len(pred):
        return np.full(pred.shape[1], np.nan)
    return np.abs(pred - true).mean(axis=0)
