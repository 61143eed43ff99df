"""Train/validation/test splits of a store's records: PTB-XL folds, the A/B halves, or a seeded
random split that keeps each patient on one side; and K patient-disjoint cross-validation
folds."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["SPLITS", "split_positions", "subsample_patients", "cv_folds", "cv_parts",
           "stratified_positions", "stratified_parts"]

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
    if how == "stratified":
        raise ValueError(f"{where}: split stratified needs diagnostic classes to stratify over "
                         "(finetune on a Challenge or PTB-XL store); use split: random")
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


def cv_parts(index: pd.DataFrame, k: int, how: str = "auto", where: str = "store",
             labels: np.ndarray | None = None) -> np.ndarray:
    """The cross-validation part (0 .. k-1) of every row of ``index``; -1 for a row outside the
    data (the other A/B half).

    PTB-XL stores (``how`` auto, folds, A or B, with a ``strat_fold`` column): part
    ``(strat_fold - 1) mod k``, so PTB-XL's own patient-disjoint, label-stratified folds are
    grouped (k = 5: folds 1+6, 2+7, ...) and k = 10 is PTB-XL's ten. Other stores (or ``how``
    random): the patients (``patient_id``, else each record its own) in a permutation seeded
    with 0, dealt round-robin, so parts differ in size by at most one patient. ``how``
    stratified: :func:`stratified_parts` over ``labels``. Either way the parts depend on the
    store and ``k`` alone: every strategy and seed sees the same folds.
    """
    if k < 3:
        raise ValueError(f"{where}: cv {k}: cross-validation needs at least 3 folds (one tests, "
                         "the next validates, the rest train)")
    if how == "stratified":
        if labels is None:
            raise ValueError(f"{where}: split stratified needs class labels")
        return stratified_parts(labels, k, where)
    if how == "auto":
        how = "folds" if "strat_fold" in index.columns else "random"
    keep = np.ones(len(index), dtype=bool)
    if how in ("A", "B"):
        if "half" not in index.columns:
            raise ValueError(f"{where}: split {how!r} needs the A/B halves ('half' column)")
        keep = index["half"].astype(str).to_numpy() == how
    if how in ("folds", "A", "B"):
        if "strat_fold" not in index.columns:
            raise ValueError(f"{where}: split {how!r} with cv needs PTB-XL's strat_fold column; "
                             "use split: random")
        if k > 10:
            raise ValueError(f"{where}: cv {k}: PTB-XL has 10 folds; use at most 10")
        fold = pd.to_numeric(index["strat_fold"], errors="coerce").to_numpy(np.float64)
        parts = np.where(np.isfinite(fold), (np.nan_to_num(fold, nan=1) - 1) % k, -1)
        return np.where(keep, parts, -1).astype(np.int64)
    groups = (index["patient_id"].astype(str).to_numpy() if "patient_id" in index.columns
              else index["record_id"].astype(str).to_numpy())
    unique = np.unique(groups)
    if len(unique) < k:
        raise ValueError(f"{where}: cv {k}: only {len(unique)} patients; use fewer folds")
    order = np.random.default_rng(0).permutation(len(unique))
    part_of = dict(zip(unique[order], np.arange(len(unique)) % k))
    return np.array([part_of[g] for g in groups], dtype=np.int64)


def cv_folds(index: pd.DataFrame, k: int, how: str = "auto", where: str = "store",
             labels: np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
    """``k`` train/validation/test splits of ``index`` from :func:`cv_parts`: fold ``i`` tests
    on part ``i``, validates on part ``i + 1`` (mod k) and trains on the others. Every record
    is tested exactly once; no patient is on two sides of a fold."""
    parts = cv_parts(index, k, how, where, labels)
    return [{"train": np.flatnonzero((parts >= 0) & (parts != i) & (parts != (i + 1) % k)),
             "val": np.flatnonzero(parts == (i + 1) % k), "test": np.flatnonzero(parts == i)}
            for i in range(k)]


def stratified_positions(labels: np.ndarray, *, seed: int = 0,
                         fractions: Sequence[float] = (0.8, 0.1, 0.1),
                         test: np.ndarray | None = None,
                         where: str = "store") -> dict[str, np.ndarray]:
    """Train/validation/test row positions stratified over multi-label classes, by iterative
    stratification (Sechidis et al. 2011, as implemented by the ``iterative-stratification``
    package), so each split holds every class in about its share of the records.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n, k)`` 0/1: each record's classes (a Challenge store's scored-class columns).
    seed : int
        Seed of the split.
    fractions : sequence of 3 floats
        Train/validation/test fractions.
    test : numpy.ndarray, optional
        Boolean mask of the records that form the test split themselves (a held-out source
        database); the others are split into train and validation in the ratio of the first two
        fractions.
    where : str
        Names the store in errors.

    Returns
    -------
    dict of str to numpy.ndarray
        Sorted row positions per split. Records are split one by one: use it on data without
        several records per patient (the Challenge's).
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if test is None:
        rest = np.arange(n)
        if n < 3:
            raise ValueError(f"{where}: {n} records cannot be split three ways")
        first = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=float(fractions[2]),
                                                 random_state=seed)
        keep, held = next(first.split(np.zeros(n), labels))
        rest, test_pos = rest[keep], rest[held]
    else:
        test = np.asarray(test, dtype=bool)
        rest, test_pos = np.flatnonzero(~test), np.flatnonzero(test)
        if not len(test_pos) or len(rest) < 2:
            raise ValueError(f"{where}: the held-out records leave {len(rest)} to train and "
                             f"validate on and {len(test_pos)} to test")
    share = float(fractions[1]) / (float(fractions[0]) + float(fractions[1]))
    second = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=share, random_state=seed)
    train, val = next(second.split(np.zeros(len(rest)), labels[rest]))
    return {"train": np.sort(rest[train]), "val": np.sort(rest[val]), "test": np.sort(test_pos)}


def stratified_parts(labels: np.ndarray, k: int, where: str = "store") -> np.ndarray:
    """The cross-validation part (0 .. k-1) of every record, by iterative stratification over
    its classes (``MultilabelStratifiedKFold``, shuffled with seed 0: the parts depend on the
    data and ``k`` only)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    labels = np.asarray(labels, dtype=np.int64)
    if k < 3:
        raise ValueError(f"{where}: cv {k}: cross-validation needs at least 3 folds")
    if len(labels) < k:
        raise ValueError(f"{where}: cv {k}: only {len(labels)} records; use fewer folds")
    parts = np.full(len(labels), -1, dtype=np.int64)
    folds = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=0)
    for i, (_, held) in enumerate(folds.split(np.zeros(len(labels)), labels)):
        parts[held] = i
    return parts
