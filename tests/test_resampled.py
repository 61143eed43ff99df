"""The resampled copy of a store: made once, equal to resampling each record, reused while the
store is unchanged, made again when it changes, continued after a kill."""

import numpy as np
import pytest

from ecgtransfer.data import resampled
from ecgtransfer.data.dataset import StoreDataset
from ecgtransfer.data.leads import LEADS_8
from ecgtransfer.data.store import SignalStore, StoreWriter
from ecgtransfer.data.transforms import resample
from ecgtransfer.data.wfdb_io import read_record


@pytest.fixture(scope="module")
def ludb_signals(ludb_root):
    return [read_record(ludb_root / "data" / str(i), leads=LEADS_8).signal for i in range(1, 13)]


def _store(path, signals) -> SignalStore:
    w = StoreWriter(path, source="wfdb", fs=500, leads=LEADS_8)
    for i, x in enumerate(signals):
        w.add(f"r{i}", x, k=i)
    return w.finalize()


def test_the_copy_holds_each_record_resampled_to_the_microvolt(tmp_path, ludb_signals):
    store = _store(tmp_path / "s", ludb_signals)
    for fs in (100.0, 250.0):
        copy = resampled.at_rate(store, fs)
        assert copy.fs == fs and copy.path == store.path / "resampled" / f"{fs:g}Hz"
        assert copy.record_ids == store.record_ids
        for i in range(len(store)):
            expected = resample(store[i], store.fs, fs)  # what each epoch computed before
            assert copy[i].shape == expected.shape == (8, int(5000 * fs / 500))
            assert np.abs(copy[i] - expected).max() <= 0.0005 + 1e-6  # half a microvolt
    assert resampled.at_rate(store, store.fs) is store


def test_a_dataset_at_another_rate_reads_the_copy_and_gives_the_same_inputs(tmp_path,
                                                                            ludb_signals):
    store = _store(tmp_path / "s", ludb_signals)
    mean, std = np.full(8, 0.01, np.float32), np.full(8, 0.2, np.float32)
    ds = StoreDataset(store, [3, 1, 7], None, mean, std, fs=100.0, n_samples=1000)
    assert ds.store.path == store.path / "resampled" / "100Hz"
    for j, pos in enumerate([3, 1, 7]):
        before = (resample(store[pos], 500.0, 100.0) - mean[:, None]) / std[:, None]
        np.testing.assert_allclose(ds.signal(j), before, atol=0.0005 / 0.2 + 1e-5)


def test_the_copy_is_made_once_and_again_when_the_store_changes(tmp_path, ludb_signals,
                                                                 monkeypatch):
    path = tmp_path / "s"
    store = _store(path, ludb_signals[:6])
    first = resampled.at_rate(store, 100.0)
    made = (first.path / "signals.i16").stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("resampled again")

    monkeypatch.setattr(resampled, "resample", refuse)
    again = resampled.at_rate(SignalStore(path), 100.0)
    assert len(again) == 6 and (again.path / "signals.i16").stat().st_mtime_ns == made
    monkeypatch.undo()
    w = StoreWriter(path, source="wfdb", fs=500, leads=LEADS_8)  # the store grows
    for i in range(6, 12):
        w.add(f"r{i}", ludb_signals[i], k=i)
    grown = w.finalize()
    copy = resampled.at_rate(grown, 100.0)
    assert copy.record_ids == grown.record_ids and len(copy) == 12
    assert np.abs(copy[11] - resample(grown[11], 500.0, 100.0)).max() <= 0.0005 + 1e-6


def test_a_killed_copy_continues_to_the_same_store(tmp_path, ludb_signals, monkeypatch):
    whole = resampled.at_rate(_store(tmp_path / "a", ludb_signals), 100.0)
    store = _store(tmp_path / "b", ludb_signals)
    calls = {"n": 0}
    real = resampled.resample

    def dies_after_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(resampled, "resample", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        resampled.at_rate(store, 100.0)
    monkeypatch.setattr(resampled, "resample", real)
    calls["n"] = 0
    copy = resampled.at_rate(store, 100.0)
    assert copy.record_ids == whole.record_ids
    assert (copy.path / "signals.i16").read_bytes() == (whole.path / "signals.i16").read_bytes()


def test_a_store_folder_that_takes_no_copy_keeps_it_in_the_users_cache(tmp_path, ludb_signals,
                                                                       monkeypatch):
    store = _store(tmp_path / "s", ludb_signals[:3])
    (store.path / "resampled").write_text("in the way")  # the copies' folder cannot be made
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    copy = resampled.at_rate(store, 100.0)
    assert copy.path.parent == tmp_path / "cache" / "ecgtransfer" / "resampled"
    assert copy.path.name.endswith("-100Hz") and len(copy) == 3


def test_a_damaged_copy_is_made_again(tmp_path, ludb_signals):
    store = _store(tmp_path / "s", ludb_signals[:3])
    whole = (resampled.at_rate(store, 100.0).path / "signals.i16").read_bytes()
    copy = store.path / "resampled" / "100Hz"
    (copy / "store.json").write_text("{broken")
    assert (resampled.at_rate(store, 100.0).path / "signals.i16").read_bytes() == whole
    (copy / "signals.i16").write_bytes(b"xx")  # samples cut short under a complete journal
    again = resampled.at_rate(store, 100.0)
    assert len(again) == 3 and (again.path / "signals.i16").read_bytes() == whole
