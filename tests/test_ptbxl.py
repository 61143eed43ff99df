"""PTB-XL: labels and folds against ptbxl_database.csv, leads against wfdb, halves, resume."""

from importlib import resources

import numpy as np
import pandas as pd
import pytest
import wfdb

from conftest import copy_records
from ecgtransfer.data import ptbxl as ptbxl_mod
from ecgtransfer.data import store as store_module
from ecgtransfer.data.leads import LEADS_8, LEADS_12
from ecgtransfer.data.ptbxl import patient_half, prepare_ptbxl, ptbxl_index, subset_ptbxl
from ecgtransfer.data.store import SignalStore, StoreError, StoreWriter


def _row(store, ecg_id):
    return store.index.iloc[store.position(f"{ecg_id:05d}")]


# Checked by hand in ptbxl_database.csv and scp_statements.csv (diagnostic == 1 codes only).
HAND_CHECKED = [
    # ecg_id, patient, fold, split, superclasses
    (1, 15709, 3, "train", "NORM"),     # NORM; LVOLT and SR are not diagnostic
    (8, 11275, 9, "val", "MI"),         # IMI
    (17, 13619, 9, "val", ""),          # AFLT, ABQRS, AFIB: none diagnostic
    (26, 13619, 9, "val", "STTC"),      # NST_ and DIG, both STTC
    (39, 13619, 9, "val", "MI|STTC"),   # IMI; LNGQT, NST_, DIG
    (116, 19695, 10, "test", "STTC"),   # NDT
    (313, 1110, 5, "train", "HYP"),     # LVH; STD_ and VCLVH are not diagnostic
]


@pytest.mark.parametrize("ecg_id, patient, fold, split, classes", HAND_CHECKED)
def test_labels_and_folds_agree_with_the_database(ptbxl_store, ecg_id, patient, fold, split, classes):
    row = _row(ptbxl_store, ecg_id)
    assert (row["patient_id"], row["strat_fold"], row["split"]) == (patient, fold, split)
    got = row["superclasses"] if isinstance(row["superclasses"], str) else ""
    assert got == classes
    members = classes.split("|") if classes else []
    assert [c for c in ptbxl_mod.SUPERCLASSES if row[c] == 1] == members
    assert bool(row["single_label"]) == (len(members) == 1)
    assert (row["flag"] == "no_superclass") == (not members)


def test_single_label_counts_match_the_published_sample_counts(ptbxl_store):
    # ../shared/data/README.md: 203 NORM, 33 STTC, 26 CD, 22 MI, 6 HYP among the 350 records
    counts = ptbxl_store.index.loc[ptbxl_store.index["single_label"], "superclass"].value_counts()
    assert counts.to_dict() == {"NORM": 203, "STTC": 33, "CD": 26, "MI": 22, "HYP": 6}
    assert len(ptbxl_store) == 350


def test_eight_leads_equal_wfdb_within_one_microvolt(ptbxl_store, ptbxl_root):
    for ecg_id in (1, 42, 199, 350):
        ref = wfdb.rdrecord(str(ptbxl_root / f"records500/00000/{ecg_id:05d}_hr"))
        cols = [ref.sig_name.index(n) for n in LEADS_8]
        got = ptbxl_store[ptbxl_store.position(f"{ecg_id:05d}")]
        assert np.abs(got - ref.p_signal[:, cols].T).max() <= 1e-3 + 1e-6


def test_halves_share_no_patient_and_follow_the_manifest(ptbxl_store):
    idx = ptbxl_store.index
    per_patient = idx.groupby("patient_id")["half"].nunique()
    assert per_patient.max() == 1
    share_a = (idx.drop_duplicates("patient_id")["half"] == "A").mean()
    assert 0.35 < share_a < 0.65
    # records 17, 26 and 39 are one patient
    assert len({_row(ptbxl_store, i)["half"] for i in (17, 26, 39)}) == 1
    golden_file = resources.files("ecgtransfer.data_manifests") / "ptbxl-1.0.3-sample-splits.csv"
    golden = pd.read_csv(str(golden_file))
    ours = idx.set_index("ecg_id").loc[golden["ecg_id"]]
    assert ours["half"].tolist() == golden["half"].tolist()
    assert ours["split"].tolist() == golden["split"].tolist()


def test_halves_depend_on_seed_and_patient_only():
    patients = range(1, 2001)
    a0 = [patient_half(p, 0) for p in patients]
    assert a0 == [patient_half(p, 0) for p in patients]
    a1 = [patient_half(p, 1) for p in patients]
    assert 0.3 < np.mean([x != y for x, y in zip(a0, a1)]) < 0.7


def test_twelve_leads_at_100_hz(tmp_path, ptbxl_root):
    sub = subset_ptbxl(ptbxl_root, tmp_path / "sub", [1, 2, 3], rates=(100,))
    store = prepare_ptbxl(sub, tmp_path / "s", fs=100, leads=LEADS_12, progress=False).store
    assert store.leads == LEADS_12 and store.fs == 100
    assert store[0].shape == (12, 1000)
    ref = wfdb.rdrecord(str(ptbxl_root / "records100/00000/00002_lr"))
    np.testing.assert_allclose(store.get("00002"), ref.p_signal.T, atol=1e-3 + 1e-6)


def test_interrupted_prepare_resumes_to_the_same_store(tmp_path, ptbxl_root, monkeypatch):
    sub = subset_ptbxl(ptbxl_root, tmp_path / "sub", range(1, 31))
    ref = prepare_ptbxl(sub, tmp_path / "ref", progress=False).store

    import ecgtransfer.data.ingest as ingest
    real_read = ingest.read_record
    calls = {"n": 0}

    def killed_after_17(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 18:
            raise KeyboardInterrupt
        return real_read(*a, **kw)

    monkeypatch.setattr(ingest, "read_record", killed_after_17)
    # small flushes so that part of the run reached the disk before the kill
    monkeypatch.setattr(store_module, "StoreWriter",
                        lambda *a, **kw: StoreWriter(*a, **kw, flush_every=5))
    with pytest.raises(KeyboardInterrupt):
        prepare_ptbxl(sub, tmp_path / "run", progress=False)
    with pytest.raises(StoreError, match="incomplete"):
        SignalStore(tmp_path / "run")
    monkeypatch.setattr(ingest, "read_record", real_read)
    report = prepare_ptbxl(sub, tmp_path / "run", progress=False)
    assert report.skipped == 17 and report.written == 13
    assert ((tmp_path / "run" / "signals.i16").read_bytes()
            == (tmp_path / "ref" / "signals.i16").read_bytes())
    pd.testing.assert_frame_equal(report.store.index, ref.index)


def test_bad_records_are_rejected_with_reasons_and_the_rest_kept(tmp_path, ptbxl_root):
    sub = subset_ptbxl(ptbxl_root, tmp_path / "sub", range(1, 9))
    rec = sub / "records500" / "00000"
    dat = rec / "00002_hr.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    (rec / "00003_hr.hea").unlink()
    raw = np.fromfile(rec / "00004_hr.dat", dtype="<i2")
    raw[500] = -32768
    raw.tofile(rec / "00004_hr.dat")
    db = pd.read_csv(sub / "ptbxl_database.csv")
    db.loc[db["ecg_id"] == 5, "scp_codes"] = "{'NORM': 100.0"
    db.to_csv(sub / "ptbxl_database.csv", index=False)

    report = prepare_ptbxl(sub, tmp_path / "s", progress=False)
    reasons = dict(report.rejects)
    assert set(reasons) == {"00002", "00003", "00004", "00005"}
    assert "truncated" in reasons["00002"]
    assert "header file" in reasons["00003"]
    assert "NaN" in reasons["00004"]
    assert "scp_codes" in reasons["00005"]
    assert report.store.record_ids == ["00001", "00006", "00007", "00008"]
    table = report.store.rejects
    assert sorted(table["record_id"]) == sorted(reasons)

    # fixing a file and re-running adds that record, keeping everything already stored
    copy_records(ptbxl_root / "records500" / "00000", ["00003_hr"], rec)
    again = prepare_ptbxl(sub, tmp_path / "s", progress=False)
    assert again.written == 1 and again.skipped == 4
    assert "00003" in again.store.record_ids and len(again.store) == 5
    np.testing.assert_array_equal(again.store.get("00001"), report.store.get("00001"))


def test_index_table_has_every_record_and_a_problem_column(ptbxl_root):
    idx = ptbxl_index(ptbxl_root, halves_seed=0)
    assert len(idx) == 350 and (idx["problem"] == "").all()
    assert set(idx["split"]) == {"train", "val", "test"}


def test_the_benchmarks_six_statement_sets(ptbxl_root, ptbxl_store):
    """As the PTB-XL benchmark aggregates them: every scp_codes key whatever its likelihood,
    diagnostic keys to their subclass and class, form and rhythm keys as themselves."""
    from ecgtransfer.data.ptbxl import BENCHMARK_TASKS, statement_sets

    statements = pd.read_csv(ptbxl_root / "scp_statements.csv", index_col=0)
    sets = statement_sets({"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}, statements)  # ecg_id 1
    assert sets == {"all": ["LVOLT", "NORM", "SR"], "diagnostic": ["NORM"],
                    "subdiagnostic": ["NORM"], "superdiagnostic": ["NORM"], "form": ["LVOLT"],
                    "rhythm": ["SR"]}
    sets = statement_sets({"IMI": 15.0, "CLBBB": 100.0, "SBRAD": 0.0, "NOPE": 50.0}, statements)
    assert sets["diagnostic"] == ["CLBBB", "IMI"] and sets["superdiagnostic"] == ["CD", "MI"]
    assert sets["subdiagnostic"] == sorted(statements.loc[["CLBBB", "IMI"], "diagnostic_subclass"])
    assert sets["rhythm"] == ["SBRAD"] and "NOPE" not in sets["all"]  # not a statement
    index = ptbxl_store.index.set_index("record_id")
    row = index.loc["00001"]
    assert [row[f"scp_{t}"] for t in BENCHMARK_TASKS] == ["LVOLT|NORM|SR", "NORM", "NORM",
                                                          "NORM", "LVOLT", "SR"]
    # superdiagnostic is the five-superclass task the store already had
    same = [set(a.split("|")) == set(b.split("|"))
            for a, b in zip(index["scp_superdiagnostic"].fillna(""), index["superclasses"].fillna(""))]
    assert all(same)
