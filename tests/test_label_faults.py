"""Bad input on the labels path (``ecgtransfer label``, label files read by ``pretrain``) and in
``ecgtransfer data prepare challenge2021``: implausible, non-numeric and damaged labels, a lead
the store lacks, an empty store, duplicate Challenge records; each a one-line message naming the
file (and line), or a warning and the bad rows left out, never a traceback or a silent label."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest

from conftest import copy_records, run_stage
from ecgtransfer.features import labels as labels_module
from ecgtransfer.features.labels import LabelError, label_records, read_labels
from ecgtransfer.features.vocabulary import INTERVALS
from ecgtransfer.features.labels import target_table

SAMPLE = "cinc2021-sample"


def _one_error_line(done) -> str:
    """The single ``ecgtransfer: error:`` line of a failed command."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("ecgtransfer: error: ")
    return lines[0].removeprefix("ecgtransfer: error: ")


def _label_file(store) -> pd.DataFrame:
    return pd.read_csv(next(store.path.glob("labels-*.csv")), dtype=str, keep_default_na=False)


def _pretrain_args(store, labels, tmp_path) -> list[str]:
    return ["pretrain", "--store", str(store.path), "--labels", str(labels), "--out",
            str(tmp_path / "run"), "--fs", "100", "--epochs", "1", "--max-train-records", "8",
            "--device", "cpu", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "-q"]


# ---- 1. plausible ranges --------------------------------------------------------------------

def test_real_labels_are_all_within_their_plausible_ranges(ptbxl_labelled, deepfake_labelled):
    """The ranges never reject what the labeller measures on real and synthetic records."""
    from ecgtransfer.features.vocabulary import plausible

    for store in (ptbxl_labelled, deepfake_labelled):
        table = read_labels(next(store.path.glob("labels-*.csv")))
        for col in INTERVALS:
            measured = table.loc[table[col].notna(), col]
            assert len(measured) > 0.8 * len(table)
            assert all(plausible(col, v) for v in measured), (store.path, col, measured.agg(
                ["min", "max"]))
            assert not table[col.split("_")[0] + "_status"].str.startswith("implausible").any()


def test_a_few_implausible_labels_are_left_out_with_a_warning(ptbxl_labelled, tmp_path, caplog):
    """A QRS of 89,028,088 ms was trained on (test MAE of millions of ms, exit 0): now it is
    NaN with its reason, counted apart, and the warning names the file and its line."""
    table = _label_file(ptbxl_labelled)
    row = int(np.flatnonzero(table["qrs_status"] == "ok")[0])
    rid = table.loc[row, "record_id"]
    table.loc[row, "qrs_ms"] = "89028088"
    path = tmp_path / "labels-edited.csv"
    table.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        labels = read_labels(path)
    assert np.isnan(labels.loc[row, "qrs_ms"])
    assert labels.loc[row, "qrs_status"] == ("implausible value 8.90281e+07 ms (plausible: "
                                             "20-300 ms)")
    assert (f"{path}: 1 qrs_ms value(s) outside the plausible 20-300 ms left out (first: line "
            f"{row + 2}, record '{rid}', 8.90281e+07 ms)") in caplog.text
    # a table read without read_labels is checked by the same ranges
    raw = pd.read_csv(path, dtype={"record_id": str})
    values, reasons = target_table(ptbxl_labelled.index, raw, ["qrs"], path)
    at = ptbxl_labelled.position(rid)
    assert np.isnan(values[at, 0]) and reasons[at, 0].startswith("implausible value")


def test_pretrain_leaves_an_implausible_label_out_and_counts_it(ptbxl_labelled, tmp_path):
    from ecgtransfer.data.splits import split_positions
    from ecgtransfer.stages.pretrain import PretrainConfig

    table = _label_file(ptbxl_labelled)
    train = split_positions(ptbxl_labelled.index, "folds")["train"]
    rid = ptbxl_labelled.record_ids[train[0]]
    table.loc[table["record_id"] == rid, ["qrs_ms", "qrs_status"]] = ["-40", "ok"]
    path = tmp_path / "labels-edited.csv"
    table.to_csv(path, index=False)
    config = PretrainConfig(store=str(ptbxl_labelled.path), labels=str(path), fs=100.0,
                            epochs=1, max_train_records=8, device="cpu", out=str(tmp_path / "r"),
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (result,) = run_stage("pretrain", config).details
    assert result.counts["train"]["excluded"]["label outside its plausible range"] == 1
    assert 0 < result.test_mae["qrs_ms"] < 200


def test_a_label_file_with_many_implausible_values_is_refused(ptbxl_labelled, tmp_path, cli):
    """QRS written in microseconds: every value is out of range; nothing is trained."""
    table = _label_file(ptbxl_labelled)
    ok = table["qrs_ms"] != ""
    table.loc[ok, "qrs_ms"] = (table.loc[ok, "qrs_ms"].astype(float) * 1000).map("{:g}".format)
    path = tmp_path / "labels-us.csv"
    table.to_csv(path, index=False)
    message = _one_error_line(cli(*_pretrain_args(ptbxl_labelled, path, tmp_path)))
    first = int(np.flatnonzero(ok)[0])
    assert message.startswith(
        f"{path}: {ok.sum()} of {ok.sum()} qrs_ms values are outside the plausible 20-300 ms "
        f"(first: line {first + 2}, record '{table.loc[first, 'record_id']}', ")
    assert not (tmp_path / "run").exists()


def test_the_labeller_writes_nan_with_a_reason_for_an_implausible_value(ptbxl_store, tmp_path,
                                                                       monkeypatch):
    """Whatever the delineation returns, a label file never holds an implausible interval."""
    real = labels_module.ecg_intervals

    def slow_heart(*args, **kwargs):
        row = real(*args, **kwargs)
        return {**row, "hr_bpm": 6.0} if row["record_id"] == ptbxl_store.record_ids[0] else row

    monkeypatch.setattr(labels_module, "ecg_intervals", slow_heart)
    report = label_records(ptbxl_store.path, out=tmp_path / "labels.csv", shard=(0, 50))
    labels = read_labels(report.path).set_index("record_id")
    first = labels.loc[ptbxl_store.record_ids[0]]
    assert np.isnan(first["hr_bpm"])
    assert first["hr_status"] == "implausible value 6 bpm (plausible: 20-300 bpm)"
    assert labels["hr_status"].iloc[1:].eq("ok").all()
    assert "implausible" not in report.path.read_text().split("\n", 2)[2]  # only that row


# ---- 2. non-numeric and damaged label files -------------------------------------------------

def test_a_label_that_is_not_a_number_is_named_with_its_file_line_and_column(ptbxl_labelled,
                                                                           tmp_path, cli):
    table = _label_file(ptbxl_labelled)
    table.loc[4, "qrs_ms"] = "abc"
    path = tmp_path / "labels-typo.csv"
    table.to_csv(path, index=False)
    message = _one_error_line(cli(*_pretrain_args(ptbxl_labelled, path, tmp_path)))
    assert message == f"{path}: line 6, column qrs_ms: 'abc' is not a number"


def test_a_damaged_label_file_is_named_with_its_line(ptbxl_labelled, tmp_path, cli):
    data = next(ptbxl_labelled.path.glob("labels-*.csv")).read_bytes()
    lines = data.split(b"\n")
    lines[2] = lines[2][:3] + b"\xff\xfe" + lines[2][5:]
    path = tmp_path / "labels-damaged.csv"
    path.write_bytes(b"\n".join(lines))
    message = _one_error_line(cli(*_pretrain_args(ptbxl_labelled, path, tmp_path)))
    assert message.startswith(f"{path}: line 3 is damaged (byte 0xff is not UTF-8 text); ")


def test_a_damaged_partial_file_is_named_and_its_rows_measured_again(ptbxl_store, tmp_path,
                                                                    caplog):
    """A resumed run met "'utf-8' codec can't decode byte" naming no file: now the damaged row
    is measured again, with a warning naming the file and line; the result is the same."""
    whole = label_records(ptbxl_store.path, out=tmp_path / "whole.csv", shard=(0, 50))

    def stop_after(n):
        if n == 4:
            raise KeyboardInterrupt

    out = tmp_path / "labels.csv"
    with pytest.raises(KeyboardInterrupt):
        label_records(ptbxl_store.path, out=out, shard=(0, 50), progress=stop_after)
    partial = tmp_path / "labels.shard-0-of-50.csv.partial"
    lines = partial.read_bytes().split(b"\n")
    lines[2] = b"\xff" + lines[2][1:]  # the second record's row
    partial.write_bytes(b"\n".join(lines))
    with caplog.at_level(logging.WARNING):
        report = label_records(ptbxl_store.path, out=out, shard=(0, 50))
    assert (f"{partial}: 1 damaged line(s) left out, their records are measured again (first: "
            "line 3, byte 0xff is not UTF-8 text)") in caplog.text
    assert (report.n_reused, report.n_computed) == (3, report.n_records - 3)
    assert report.path.read_bytes() == whole.path.read_bytes() and not partial.exists()


def test_a_damaged_sidecar_is_named_in_one_line(ptbxl_store, tmp_path, cli):
    out = tmp_path / "labels.csv"
    (tmp_path / "labels.json").write_text("[1]\n")
    out.write_text("record_id\n")
    message = _one_error_line(cli("label", "--store", str(ptbxl_store.path), "--out", str(out),
                                  "-q"))
    assert message.startswith(f"{tmp_path / 'labels.json'}: damaged (not the JSON of a label "
                              "file's config)")
    assert out.read_text() == "record_id\n"  # nothing the user has is touched


# ---- 3. leads, empty stores, output names ---------------------------------------------------

def test_a_lead_the_store_lacks_is_refused_before_any_work(ptbxl_store, tmp_path, cli):
    args = ("label", "--store", str(ptbxl_store.path), "--out", str(tmp_path / "l.csv"),
            "--num-shards", "50", "-q")
    message = _one_error_line(cli(*args, "--leads", "XYZ"))
    assert message == (f"leads: {ptbxl_store.path} has no lead XYZ (its leads: I, II, V1, V2, "
                       "V3, V4, V5, V6)")
    message = _one_error_line(cli(*args, "--leads", "II,ii"))
    assert message == "leads: II is named twice"
    assert not list(tmp_path.glob("l*"))


def test_an_empty_store_is_refused_and_no_label_file_written(ludb_root, tmp_path, cli):
    from ecgtransfer.data.ingest import prepare_wfdb

    folder = copy_records(ludb_root / "data", ["1"], tmp_path / "in")
    (folder / "1.dat").write_bytes((folder / "1.dat").read_bytes()[:100])
    store = prepare_wfdb(folder, tmp_path / "store", progress=False).store
    assert len(store) == 0
    message = _one_error_line(cli("label", "--store", str(store.path), "-q"))
    assert message == f"{store.path}: the store holds no records; nothing to label"
    assert not list(store.path.glob("labels-*")) and not list(store.path.glob(".labels-*"))


def test_a_label_file_named_like_its_sidecar_is_refused(ptbxl_store, tmp_path, cli):
    """``--out x.json``: the sidecar (x.json) overwrote the label file."""
    message = _one_error_line(cli("label", "--store", str(ptbxl_store.path), "--out",
                                  str(tmp_path / "x.json"), "--num-shards", "50", "-q"))
    assert message.startswith(f"{tmp_path / 'x.json'}: a label file cannot end in .json")
    assert not list(tmp_path.glob("x*"))


# ---- 4. Challenge 2021 rejects --------------------------------------------------------------

def test_challenge_duplicates_and_unknown_codes_are_rejects_like_any_other(shared_data, tmp_path,
                                                                           cli, caplog):
    from ecgtransfer.data.store import SignalStore

    source = shared_data / SAMPLE
    copy_records(source, ["E07500", "E07501"], tmp_path / "in" / "g1")
    copy_records(source, ["E07500", "E07502"], tmp_path / "in" / "g2")
    hea = tmp_path / "in" / "g1" / "E07501.hea"
    hea.write_text(hea.read_text().replace("# Dx: ", "# Dx: 99999999,"))
    with caplog.at_level(logging.WARNING):
        done = cli("data", "prepare", "challenge2021", "--input", "in", "--out", "s", "--fs",
                   "100", "-q")
    assert done.returncode == 0, done.stderr
    assert "2 written now, 0 already there, 2 rejected" in done.stdout
    duplicate = "duplicate of g1/E07500 (a record name is stored once)"
    unknown = ("unknown SNOMED-CT code(s) 99999999 (in neither of the Challenge's scored and "
               "unscored tables)")
    printed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
    assert sorted(printed) == [f"rejected E07501: {unknown}", f"rejected g2/E07500: {duplicate}"]
    store = SignalStore(tmp_path / "s")
    assert store.record_ids == ["E07500", "E07502"]
    assert store.rejects.set_index("record_id")["reason"].to_dict() == {
        "E07501": unknown, "g2/E07500": duplicate}
    again = cli("data", "prepare", "challenge2021", "--input", "in", "--out", "s", "--fs", "100",
                "-q")
    assert "0 written now, 2 already there, 2 rejected" in again.stdout


# ---- 5. unreadable files under a prepare folder ---------------------------------------------

def test_a_header_the_system_cannot_read_is_a_reject_not_a_traceback(ludb_root, tmp_path, cli):
    from ecgtransfer.data.store import SignalStore

    copy_records(ludb_root / "data", ["1"], tmp_path / "in")
    (tmp_path / "in" / "2.hea").mkdir()  # a folder named like a header
    done = cli("data", "prepare", "wfdb", "--input", "in", "--out", "s", "-q")
    assert done.returncode == 0, done.stderr
    store = SignalStore(tmp_path / "s")
    assert store.record_ids == ["1"]
    reason = store.rejects.set_index("record_id")["reason"].to_dict()["2"]
    assert re.fullmatch(r"cannot read 2\.hea \(Is a directory\)", reason), reason


def test_a_weights_table_with_a_weight_that_is_not_finite_is_refused(shared_data, tmp_path):
    """float() reads "nan": the Challenge metric of every model came out NaN."""
    from ecgtransfer.data.challenge2021 import load_scoring

    rows = (shared_data / "cinc2021-scoring" / "weights.csv").read_text().splitlines()
    cells = rows[2].split(",")
    cells[3] = "nan"
    path = tmp_path / "weights.csv"
    path.write_text("\n".join([*rows[:2], ",".join(cells), *rows[3:]]) + "\n")
    with pytest.raises(ValueError) as err:
        load_scoring(path)
    header = rows[0].split(",")
    assert str(err.value) == (f"{path}: the weight of row {cells[0].split('|')[0]}, column "
                              f"{header[3].split('|')[0]} is 'nan', not a finite number")
