"""Splits of a store: PTB-XL folds and halves keep patients apart; random splits are seeded and
grouped by patient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgtransfer.data.splits import split_positions, subsample_patients


def _patients(index, pos):
    return set(index["patient_id"].to_numpy()[pos])


def test_ptbxl_folds_and_halves(ptbxl_store):
    index = ptbxl_store.index
    folds = split_positions(index, "auto")
    assert sum(len(p) for p in folds.values()) == len(index)
    assert set(index["strat_fold"].to_numpy()[folds["val"]]) == {9}
    assert set(index["strat_fold"].to_numpy()[folds["test"]]) == {10}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not _patients(index, folds[a]) & _patients(index, folds[b])
    half_a = split_positions(index, "A")
    assert set(index["half"].to_numpy()[np.concatenate(list(half_a.values()))]) == {"A"}
    n_a = (index["half"] == "A").sum()
    assert sum(len(p) for p in half_a.values()) == n_a


def test_random_split_is_seeded_and_patient_grouped(ptbxl_store):
    index = ptbxl_store.index.drop(columns=["split"])
    one = split_positions(index, "auto", seed=3)
    two = split_positions(index, "random", seed=3)
    other = split_positions(index, "random", seed=4)
    assert all(np.array_equal(one[s], two[s]) for s in one)
    assert not np.array_equal(one["train"], other["train"])
    assert not _patients(index, one["train"]) & _patients(index, one["test"])
    assert abs(len(one["train"]) / len(index) - 0.8) < 0.05


def test_folds_need_ptbxl_columns():
    index = pd.DataFrame({"record_id": ["a", "b"]})
    with pytest.raises(ValueError, match="no 'split' column"):
        split_positions(index, "folds", where="mystore")


def test_train_fraction_takes_whole_patients_nested_and_seeded(ptbxl_store):
    index = ptbxl_store.index
    train = split_positions(index, "folds")["train"]
    n_patients = len(_patients(index, train))
    small = subsample_patients(index, train, 0.1, seed=0)
    large = subsample_patients(index, train, 0.5, seed=0)
    assert abs(len(_patients(index, small)) - 0.1 * n_patients) <= 1
    assert abs(len(_patients(index, large)) - 0.5 * n_patients) <= 1
    assert set(small) <= set(large) <= set(train)  # nested: a smaller fraction within a larger
    # every record of a chosen patient comes along
    chosen = _patients(index, small)
    assert set(small) == {p for p in train if index["patient_id"].to_numpy()[p] in chosen}
    assert np.array_equal(small, subsample_patients(index, train, 0.1, seed=0))
    assert not np.array_equal(small, subsample_patients(index, train, 0.1, seed=1))
    assert np.array_equal(subsample_patients(index, train, 1.0, seed=5), train)
