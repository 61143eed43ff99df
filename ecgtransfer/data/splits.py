"""Train/validation/test splits of a store's records: PTB-XL folds, the A/B halves, or a seeded
random split that keeps each patient on one side."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["SPLITS", "split_positions", "subsample_patients"]

SPLITS = ("train", "val", "test")


def split_positions(index: pd.DataFrame, how: str = "auto", *, seed: int = 0,
                    fractions: Sequence[float] = (0.8, 0.1, 0.1),
                    where: str = "store") -> dict[str, np.ndarray]:
    """Row positions of ``index`` in each of ``train``, ``val`` and ``test``.

    Parameters
    ----------
    index : pandas.DataFrame
        A store's index (:attr:`SignalStore.index`).
    how : str
        ``folds``: PTB-XL's ``split`` column (folds 1-8 / 9 / 10). ``A`` or ``B``: that half of
        the patients (``half`` column), split by its folds. ``random``: a seeded split with
        ``fractions``, by ``patient_id`` when the index has one. ``auto``: ``folds`` when the
        index has a ``split`` column, else ``random``.
    seed : int
        Seed of a random split.
    fractions : sequence of 3 floats
        Train/validation/test fractions of a random split.
    where : str
        Names the store in errors.

    Returns
    -------
    dict of str to numpy.ndarray
        Sorted row positions per split.
    """
    if how == "auto":
        how = "folds" if "split" in index.columns else "random"
    if how in ("folds", "A", "B"):
        if "split" not in index.columns:
            raise ValueError(f"{where}: split {how!r} needs PTB-XL folds, and this store's "
                             "index has no 'split' column; use split: random")
        keep = np.ones(len(index), dtype=bool)
        if how in ("A", "B"):
            if "half" not in index.columns:
                raise ValueError(f"{where}: split {how!r} needs the A/B halves ('half' column)")
            keep = index["half"].astype(str).to_numpy() == how
        split = index["split"].astype(str).to_numpy()
        return {s: np.flatnonzero(keep & (split == s)) for s in SPLITS}
    if how != "random":
        raise ValueError(f"split: {how!r} is not auto, folds, A, B or random")
    groups = (index["patient_id"].astype(str).to_numpy() if "patient_id" in index.columns
              else index["record_id"].astype(str).to_numpy())
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(unique))
    n_train = int(round(fractions[0] * len(unique)))
    n_val = int(round(fractions[1] * len(unique)))
    side = np.empty(len(unique), dtype=object)
    side[order[:n_train]] = "train"
    side[order[n_train:n_train + n_val]] = "val"
    side[order[n_train + n_val:]] = "test"
    of_group = dict(zip(unique, side))
    assigned = np.array([of_group[g] for g in groups])
    return {s: np.flatnonzero(assigned == s) for s in SPLITS}


def subsample_patients(index: pd.DataFrame, positions: np.ndarray, fraction: float,
                       seed: int = 0) -> np.ndarray:
    """A seeded ``fraction`` of the patients behind ``positions``, with all their records.

    Parameters
    ----------
    index : pandas.DataFrame
        The store's index; patients are its ``patient_id`` column (each record its own patient
        when there is none).
    positions : numpy.ndarray
        Rows to draw from (e.g. the training split).
    fraction : float
        In (0, 1]; at least one patient is kept.
    seed : int

    Returns
    -------
    numpy.ndarray
        The sorted rows of the chosen patients. The choice is nested: with one seed, the
        patients of a smaller fraction are among those of a larger one.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if fraction >= 1.0 or not len(positions):
        return positions
    column = "patient_id" if "patient_id" in index.columns else "record_id"
    groups = index[column].astype(str).to_numpy()[positions]
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(unique))
    keep = unique[order[:max(1, int(round(fraction * len(unique))))]]
    return np.sort(positions[np.isin(groups, keep)])
