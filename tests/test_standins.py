"""The full-size stand-ins of ``benchmarks/bench_scale.py``, built small: what they hold is what
the real datasets hold, and the stages read them as they read the real ones."""

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def standins():
    spec = importlib.util.spec_from_file_location("standins", REPO / "benchmarks" / "standins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_ptbxl_shaped_folder_has_ptbxls_classes_folds_and_patients(standins, tmp_path):
    from ecgtransfer.data.ptbxl import prepare_ptbxl

    root = standins.ptbxl_folder(tmp_path / "ptbxl", 600, seed=1)
    db = pd.read_csv(root / "ptbxl_database.csv")
    sample = pd.read_csv(standins.PTBXL_SAMPLE / "ptbxl_database.csv")
    assert list(db.columns) == list(sample.columns) and len(db) == 600
    assert db["ecg_id"].is_unique and set(db["strat_fold"]) == set(range(1, 11))
    assert db.groupby("patient_id")["strat_fold"].nunique().max() == 1  # a patient, one fold
    assert 1.0 < len(db) / db["patient_id"].nunique() < 1.4   # PTB-XL: 21,837 / 18,885
    store = prepare_ptbxl(root, tmp_path / "store", progress=False).store
    assert len(store) == 600 and store.fs == 500 and len(store.rejects) == 0
    for name, count in standins.PTBXL_CLASSES.items():  # within 0.06 of PTB-XL's share
        assert abs(store.index[name].mean() - count / 21_837) < 0.06, name
    assert (root / "records100" / "00000" / "00001_lr.hea").read_text().startswith("00001_lr ")


def test_a_challenge_shaped_folder_has_every_source_at_its_rate_and_length(standins, tmp_path):
    from ecgtransfer.data.challenge2021 import prepare_challenge2021

    root = standins.challenge_folder(tmp_path / "cinc", fraction=0.003, seed=2)
    store = prepare_challenge2021(root, tmp_path / "store", progress=False).store
    assert len(store.rejects) == 0
    index = store.index
    counts = index["database"].value_counts()
    for source, (n, *_rest) in standins.CHALLENGE_SOURCES.items():
        assert counts[source] == max(1, round(n * 0.003)), source
    seconds = index.groupby("database")["n_samples"].agg(["min", "max"]) / store.fs
    assert seconds.loc["StPetersburg", "min"] == pytest.approx(1800, abs=1)
    assert 32 <= seconds.loc["PTB", "min"] and seconds.loc["PTB", "max"] <= 120
    assert 6 <= seconds.loc["CPSC", "min"] < seconds.loc["CPSC", "max"] <= 60
    assert (seconds.loc["Ningbo"] == 10).all()
    # every source's diagnoses come from its own column of the Challenge's tables
    af = index[index["database"].isin(["CPSC", "PTB_XL", "Georgia", "Chapman_Shaoxing"])]["AF"]
    assert 0 < af.mean() < 0.5 and index[index["database"] == "Ningbo"]["AF"].sum() == 0
    assert not list(root.rglob("pool*"))   # the pool lives beside the folder, not in it


def test_a_deepfake_store_made_in_two_shards_is_the_unsharded_store(standins, tmp_path):
    from ecgtransfer.data.deepfake import SynthConfig, synthesize
    from ecgtransfer.data.store import SignalStore

    merged = SignalStore(standins.deepfake_store(tmp_path / "df", 24, seed=5))
    assert not list(tmp_path.glob("df.shard*"))
    single = synthesize(tmp_path / "single", SynthConfig(n=24, seed=5), progress=False)
    one = SignalStore(tmp_path / "single")
    assert merged.record_ids == one.record_ids
    assert np.array_equal(np.asarray(merged._data), np.asarray(one._data))
    assert json.loads((tmp_path / "df" / "store.json").read_text())["complete"]
