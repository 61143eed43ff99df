"""Preparing folders of WFDB records: LUDB (.dat, lower-case leads) and Challenge 2021 (.mat)."""

import numpy as np

from conftest import copy_records
from ecgtransfer.data.ingest import prepare_wfdb
from ecgtransfer.data.leads import LEADS_8, LEADS_12
from ecgtransfer.data.wfdb_io import read_record


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
