"""A PyTorch view of a signal store: records at a chosen sampling rate, normalised per lead,
with their targets. Normalisation statistics are fitted by :func:`fit_lead_stats` on training
records only."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ecgtransfer.data.store import SignalStore

__all__ = ["StoreDataset", "fit_lead_stats", "model_input"]


def model_input(store: SignalStore, record_id: str, meta: dict) -> tuple[np.ndarray, int]:
    """A record as a model takes it (mV, the leads, rate and length its ``meta`` names:
    resampled, cut or zero-padded) and the record's own length at that rate."""
    from ecgtransfer.data.transforms import resample

    x = store.get(record_id)
    x = x[[store.leads.index(lead) for lead in meta["leads"]]]
    if float(meta["fs"]) != store.fs:
        x = resample(x, store.fs, float(meta["fs"]))
    n, own = int(meta["n_samples"]), x.shape[1]
    x = x[:, :n] if own >= n else np.pad(x, ((0, 0), (0, n - own)))
    return np.ascontiguousarray(x, dtype=np.float32), min(own, n)


def fit_lead_stats(store: SignalStore, positions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each lead over the given records, in mV.

    Parameters
    ----------
    store : SignalStore
    positions : sequence of int
        The records to fit on (the training split).

    Returns
    -------
    mean, std : numpy.ndarray
        ``float32``, one value per lead; a std of 0 is returned as 1.
    """
    total = np.zeros(store.n_leads)
    squares = np.zeros(store.n_leads)
    count = 0
    for i in positions:
        x = store.raw(int(i)).astype(np.float64) * 1e-3
        total += x.sum(axis=1)
        squares += np.square(x).sum(axis=1)
        count += x.shape[1]
    if count == 0:
        raise ValueError(f"{store.path}: no training records to fit the lead normalisation on")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


class StoreDataset(Dataset):
    """Records of a store as ``(x, y)`` tensors for training.

    Parameters
    ----------
    store : SignalStore
    positions : sequence of int
        Rows of the store in this dataset.
    targets : numpy.ndarray, optional
        ``(len(positions), n_targets)`` float32 (already standardised if that is wanted), or
        ``(len(positions),)`` int64 class labels; None for inputs only (``y`` is empty).
    lead_mean, lead_std : numpy.ndarray
        Per-lead normalisation, mV: ``x = (signal - mean) / std``.
    fs : float, optional
        Rate to train at; default the store's. Another rate reads the store's resampled copy
        (:func:`ecgtransfer.data.resampled.at_rate`, made once, now if there is none).
    n_samples : int, optional
        Length at ``fs``: longer records are cut, shorter zero-padded (after normalisation).
        Default: 10 s.
    leads : sequence of int, optional
        Rows (leads) of the store to keep, in this order; default all. ``lead_mean`` and
        ``lead_std`` are of the kept leads.
    """

    def __init__(self, store: SignalStore, positions: Sequence[int], targets: np.ndarray | None,
                 lead_mean: np.ndarray, lead_std: np.ndarray, fs: float | None = None,
                 n_samples: int | None = None, leads: Sequence[int] | None = None):
        from ecgtransfer.data.resampled import at_rate

        self.fs = float(fs or store.fs)
        self.store = at_rate(store, self.fs)  # the store itself at its own rate
        self.positions = np.asarray(positions, dtype=np.int64)
        if targets is not None and len(targets) != len(self.positions):
            raise ValueError(f"{len(targets)} targets for {len(self.positions)} records")
        self.targets = targets
        self.mean = np.asarray(lead_mean, dtype=np.float32)[:, None]
        self.std = np.asarray(lead_std, dtype=np.float32)[:, None]
        self.n_samples = int(n_samples or round(10 * self.fs))
        self.leads = None if leads is None else np.asarray(leads, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.positions)

    def signal(self, i: int) -> np.ndarray:
        """Record ``i`` of this dataset at ``fs``, normalised, ``(leads, n_samples)``."""
        x = self.store[int(self.positions[i])]
        if self.leads is not None:
            x = x[self.leads]
        x = (x - self.mean) / self.std
        if x.shape[1] >= self.n_samples:
            return np.ascontiguousarray(x[:, :self.n_samples])
        return np.pad(x, ((0, 0), (0, self.n_samples - x.shape[1])))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.signal(i))
        y = torch.empty(0) if self.targets is None else torch.as_tensor(self.targets[i])
        return x, y
