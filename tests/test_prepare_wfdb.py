"""Preparing folders of WFDB records: LUDB (.dat, lower-case leads) and Challenge 2021 (.mat)."""

import numpy as np
import pytest

from conftest import copy_records
from ecgtransfer.data import store as store_module
from ecgtransfer.data.ingest import prepare_wfdb
from ecgtransfer.data.leads import LEADS_8, LEADS_12
from ecgtransfer.data.store import StoreError, StoreWriter
from ecgtransfer.data.wfdb_io import read_record
from conftest import disk_fills_after, one_line_disk_full


def test_ludb_folder_with_lowercase_leads(tmp_path, ludb_root):
    report = prepare_wfdb(ludb_root, tmp_path / "ludb", progress=False)
    store = report.store
    assert len(store) == 100 and not report.rejects
    assert store.index["record_id"].iloc[0] == "data/1"
    ref = read_record(ludb_root / "data" / "7", leads=LEADS_8).signal
    # LUDB's ADC gains are not 1000/mV: the store keeps the nearest microvolt
    assert np.abs(store.get("data/7") - ref).max() <= 0.5e-3 + 1e-6


def test_challenge_mat_records_resampled_to_the_store_rate(tmp_path, cinc_root):
    store = prepare_wfdb(cinc_root, tmp_path / "cinc", fs=250, leads=LEADS_12,
                         progress=False).store
    assert len(store) == 50 and store.fs == 250
    assert all(store[i].shape == (12, 2500) for i in range(0, 50, 7))
    amplitude = np.abs(np.stack([store[i] for i in range(50)])).max(axis=(1, 2))
    assert np.median(amplitude) < 10  # mV, not ADC units


def test_a_bad_record_does_not_stop_the_others(tmp_path, ludb_root):
    folder = copy_records(ludb_root / "data", ["1", "2", "3"], tmp_path / "in")
    hea = folder / "2.hea"
    hea.write_text(hea.read_text().replace(" v6\n", " v7\n"))
    report = prepare_wfdb(folder, tmp_path / "s", progress=False)
    assert report.store.record_ids == ["1", "3"]
    assert report.rejects == [("2", "missing lead(s) V6")]


def test_a_full_disk_stops_with_one_line_and_the_same_command_continues(tmp_path, ludb_root,
                                                                          monkeypatch):
    folder = copy_records(ludb_root / "data", [str(i) for i in range(1, 7)], tmp_path / "in")
    ref = prepare_wfdb(folder, tmp_path / "ref", progress=False).store.path
    out = tmp_path / "s"
    monkeypatch.setattr(store_module, "StoreWriter",  # flushes of 2 records
                        lambda *a, **kw: StoreWriter(*a, **kw, flush_every=2))
    record = (ref / "signals.i16").stat().st_size // 6
    # the 1st flush fits, the 2nd fails half-way through its first record's samples
    disk_fills_after(monkeypatch, 2.5 * record + (ref / "journal.jsonl").stat().st_size)
    with pytest.raises(StoreError) as err:
        prepare_wfdb(folder, out, progress=False)
    one_line_disk_full(err.value, "signals.i16")
    assert str(err.value).startswith(f"{out}: ")
    monkeypatch.undo()
    report = prepare_wfdb(folder, out, progress=False)
    assert (report.skipped, report.written) == (2, 4)
    for name in ("signals.i16", "index.csv"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()
