"""The PhysioNet/CinC Challenge 2021 scores on cases computed by hand, the Challenge's file
formats, and ``ecgtransfer evaluate`` on the real Challenge sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.data.challenge2021 import header_diagnoses, read_outputs, write_outputs
from ecgtransfer.training.challenge import (NORMAL_CLASS, challenge_metric, challenge_scores,
                                            class_auc, load_scoring)

SAMPLE = "cinc2021-sample"


@pytest.fixture
def tiny(tmp_path):
    """Three classes: A, sinus rhythm, and an equivalent pair B|C."""
    path = tmp_path / "weights.csv"
    path.write_text(f",A,{NORMAL_CLASS},B|C\n"
                    f"A,1.0,0.5,0.0\n{NORMAL_CLASS},0.5,1.0,0.5\nB|C,0.0,0.5,1.0\n")
    return load_scoring(path)


def test_the_shipped_weights_are_the_26_scored_classes_with_their_equivalences():
    scoring = load_scoring()
    assert len(scoring.classes) == 26 and scoring.weights.shape == (26, 26)
    np.testing.assert_array_equal(np.diag(scoring.weights), 1.0)
    np.testing.assert_array_equal(scoring.weights, scoring.weights.T)
    for first, second in (("733534002", "164909002"), ("713427006", "59118001"),
                          ("284470004", "63593006"), ("427172004", "17338001")):
        assert scoring.index_of(first) == scoring.index_of(second) == scoring.classes.index(first)
        assert scoring.index_of(f"{second}|{first}") == scoring.classes.index(first)
    assert scoring.index_of("55930002") is None  # an unscored code


def test_challenge_metric_by_hand(tiny):
    n = 1
    labels = np.array([[1, 0, 0],    # A
                       [0, 1, 0],    # sinus rhythm
                       [1, 0, 1]])   # A and B
    outputs = np.array([[1, 0, 0],   # right: 1
                        [0, 0, 1],   # B for sinus rhythm: w = 0.5
                        [1, 1, 0]])  # A, N for A+B: union {A, N, B} = 3
    # each record adds w[label, output] / (the number of classes among its labels or outputs)
    # observed: record 0: w[A,A] / 1 = 1; record 1: w[N,B] / 2 = 0.25;
    # record 2: (w[A,A] + w[A,N] + w[B,A] + w[B,N]) / 3 = (1 + 0.5 + 0 + 0.5) / 3
    observed = 1 + 0.25 + 2 / 3
    correct = 1 + 1 + (1 + 0 + 0 + 1) / 2            # outputs = labels
    inactive = 0.5 / 2 + 1 + (0.5 + 0.5) / 3          # always N
    expected = (observed - inactive) / (correct - inactive)
    assert challenge_metric(tiny, labels, outputs) == pytest.approx(expected)
    assert challenge_metric(tiny, labels, labels) == pytest.approx(1.0)
    always = np.zeros_like(labels)
    always[:, n] = 1
    assert challenge_metric(tiny, labels, always) == pytest.approx(0.0)
    nothing = np.zeros_like(labels)  # no output at all scores below the sinus-rhythm floor
    assert challenge_metric(tiny, labels, nothing) == pytest.approx(-inactive / (correct - inactive))


def test_all_normal_labels_score_zero_and_empty_records_count_once(tiny):
    normal = np.array([[0, 1, 0], [0, 1, 0]])
    assert challenge_metric(tiny, normal, np.array([[1, 0, 0], [0, 1, 0]])) == 0.0  # no scale
    labels = np.array([[0, 0, 0], [1, 0, 0]])  # a record with no scored diagnosis
    outputs = np.array([[0, 0, 0], [1, 0, 0]])
    # correct = 0 + 1; inactive = w[-, N] (nothing) + w[A, N] / 2; observed = 1
    assert challenge_metric(tiny, labels, outputs) == pytest.approx(1.0)
    assert challenge_metric(tiny, labels, np.array([[0, 1, 0], [0, 1, 0]])) == pytest.approx(0.0)


def test_auroc_auprc_f_measure_and_accuracy_by_hand(tiny):
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    scores = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.7, 0.3, 0.0], [0.6, 0.4, 0.0]])
    auroc, auprc = class_auc(labels, scores)
    assert auroc[0] == pytest.approx(0.75)             # pairs won: (0.9>0.8, 0.9>0.6, 0.7>0.6)
    assert auprc[0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert auroc[1] == pytest.approx(0.75)             # 0.2>0.1, 0.4>0.1, 0.4>0.3; not 0.2>0.3
    assert np.isnan(auroc[2]) and np.isnan(auprc[2])   # a class no record has
    everyone = np.ones((3, 1), dtype=bool)
    a, p = class_auc(everyone, np.array([[0.1], [0.2], [0.3]]))
    assert np.isnan(a[0]) and p[0] == 1.0            # no negatives: no AUROC, precision 1
    outputs = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]])
    values = challenge_scores(tiny, labels, outputs, scores)
    assert values["accuracy"] == pytest.approx(3 / 4)
    np.testing.assert_allclose(values["f_measure_classes"][:2], [2 * 2 / (2 * 2 + 1), 1.0])
    assert np.isnan(values["f_measure_classes"][2])  # no label, no output
    assert values["f_measure"] == pytest.approx((0.8 + 1.0) / 2)
    assert values["auroc"] == pytest.approx(0.75)


def test_output_files_are_read_as_the_official_evaluation_reads_them(tiny, tmp_path):
    good = tmp_path / "r1.csv"
    good.write_text("#r1\nA, C, B, 999\nTrue,0,t,1\n0.7,0.2,0.4,0.9\n")
    binary, scores, problem = read_outputs(good, tiny)
    assert problem == ""
    np.testing.assert_array_equal(binary, [True, False, True])  # C or B: any
    np.testing.assert_allclose(scores, [0.7, 0.0, 0.3])         # C and B: mean; 999 unscored
    bad = tmp_path / "r2.csv"
    bad.write_text("#r2\nA,B\n1,1\n")
    binary, scores, problem = read_outputs(bad, tiny)
    assert not binary.any() and not scores.any() and "taken as all negative" in problem
    nan = tmp_path / "r3.csv"
    nan.write_text("A,B\n1,0\nnan,abc\n")
    assert read_outputs(nan, tiny)[1].tolist() == [0.0, 0.0, 0.0]
    written = tmp_path / "r4.csv"
    write_outputs(written, "r4", tiny.classes, np.array([1, 0, 1]), np.array([0.9, 0.1, 0.6]))
    binary, scores, _ = read_outputs(written, tiny)
    assert binary.tolist() == [True, False, True] and scores.tolist() == [0.9, 0.1, 0.6]
    assert written.read_text().startswith("#r4\n")


def _outputs(folder: Path, labels_dir: Path, rule) -> Path:
    scoring = load_scoring()
    folder.mkdir()
    for header in sorted(labels_dir.glob("*.hea")):
        decisions, probabilities = rule(scoring, scoring.encode(header_diagnoses(header)))
        write_outputs(folder / f"{header.stem}.csv", header.stem, scoring.classes, decisions,
                      probabilities)
    return folder


def test_evaluate_scores_the_real_sample(shared_data, tmp_path, cli):
    """On the 50 Challenge records (headers written '# Dx:'): the labels themselves score 1
    everywhere, always-sinus-rhythm scores 0 on the challenge metric, and a missing output
    file is one line."""
    labels = shared_data / SAMPLE
    perfect = _outputs(tmp_path / "perfect", labels, lambda s, y: (y, y.astype(float)))

    def sinus(scoring, y):
        row = np.zeros(len(scoring.classes), dtype=bool)
        row[scoring.classes.index(NORMAL_CLASS)] = True
        return row, row.astype(float)

    normal = _outputs(tmp_path / "normal", labels, sinus)
    done = cli("evaluate", "challenge2021", str(labels), str(perfect), "--scores", "s.csv",
               "--class-scores", "c.csv")
    assert done.returncode == 0, done.stderr
    assert "AUROC,AUPRC,Accuracy,F-measure,Challenge metric\n1.000,1.000,1.000,1.000,1.000" in done.stdout
    assert "50 records" in done.stdout
    assert (tmp_path / "s.csv").read_text().splitlines()[1] == "1.000,1.000,1.000,1.000,1.000"
    assert (tmp_path / "c.csv").read_text().startswith("Classes,164889003,")
    done = cli("evaluate", "challenge2021", str(labels), str(normal))
    values = done.stdout.splitlines()[1].split(",")
    assert values[-1] == "0.000" and values[0] == "0.500"
    (normal / "E07500.csv").unlink()
    done = cli("evaluate", "challenge2021", str(labels), str(normal))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "E07500.csv: no output file for the label file" in done.stderr
    nodx = tmp_path / "nodx"
    nodx.mkdir()
    shutil.copy(labels / "E07501.hea", nodx / "E07501.hea")
    (nodx / "E07501.hea").write_text("".join(
        line for line in (labels / "E07501.hea").read_text().splitlines(keepends=True)
        if "Dx" not in line))
    done = cli("evaluate", "challenge2021", str(nodx), str(perfect))
    assert done.returncode == 2 and "E07501.hea: no '#Dx:' line" in done.stderr


def test_prepare_keeps_age_sex_database_and_the_scored_classes(shared_data, tmp_path, cli):
    from ecgtransfer.data.store import SignalStore

    done = cli("data", "prepare", "challenge2021", "--input", str(shared_data / SAMPLE),
               "--out", "s", "--fs", "100", "--leads", "12", "-q")
    assert done.returncode == 0, done.stderr
    assert "50 records at 100 Hz, 12 leads" in done.stdout
    store = SignalStore(tmp_path / "s")
    index = store.index.set_index("record_id")
    assert index["database"].value_counts().to_dict() == {"Georgia": 20, "Ningbo": 20, "PTB_XL": 10}
    scoring = load_scoring()
    for record in ("E07500", "HR06000", "JS20000"):  # the columns are the header's codes
        codes = header_diagnoses(shared_data / SAMPLE / f"{record}.hea")
        np.testing.assert_array_equal(index.loc[record, scoring.names].to_numpy(int),
                                      scoring.encode(codes).astype(int))
        assert index.loc[record, "dx"] == ",".join(codes)
    assert index.loc["E07500", "age"] == 78 and index.loc["E07500", "sex"] == "Male"
    assert index.loc["E07500", "SB"] == 1  # 426177001, sinus bradycardia
    # JS20000 has 284470004 (PAC); a record with 63593006 (SVPB) counts as PAC too
    assert index["PAC"].sum() == sum("284470004" in index.loc[r, "dx"] or "63593006" in index.loc[r, "dx"]
                                     for r in index.index)
    info = cli("data", "info", "s")
    assert "database: Georgia 20, Ningbo 20, PTB_XL 10" in info.stdout
    assert "scored classes (records): STach" in info.stdout


def test_bad_challenge_records_are_rejected_with_their_reason(shared_data, tmp_path):
    from conftest import copy_records
    from ecgtransfer.data.challenge2021 import prepare_challenge2021

    folder = copy_records(shared_data / SAMPLE, ["E07500", "E07501", "E07502", "E07503"],
                          tmp_path / "in")
    hea = (folder / "E07501.hea").read_text()
    (folder / "E07501.hea").write_text("\n".join(l for l in hea.splitlines() if "Dx" not in l) + "\n")
    (folder / "E07502.hea").write_text(hea.replace("# Dx: ", "# Dx: 99999999,"))
    (folder / "E07503.mat").write_bytes((folder / "E07503.mat").read_bytes()[:100])
    report = prepare_challenge2021(folder, tmp_path / "s", fs=100, progress=False)
    reasons = dict(report.rejects)
    assert set(reasons) == {"E07501", "E07502", "E07503"} and len(report.store) == 1
    assert "no '#Dx:' line" in reasons["E07501"]
    assert "unknown SNOMED-CT code(s) 99999999" in reasons["E07502"]
    assert reasons["E07503"]  # the reader's one-line reason for the truncated .mat
    rejects = report.store.rejects.set_index("record_id")["reason"].to_dict()
    assert rejects.keys() == reasons.keys()
    again = prepare_challenge2021(folder, tmp_path / "s", fs=100, progress=False)
    assert again.skipped == 1 and again.written == 0  # a re-run continues, redoing nothing


def test_source_database_from_name_or_folder():
    from ecgtransfer.data.challenge2021 import source_database

    assert [source_database(n) for n in ("A0001", "Q0002", "I0003", "S0004", "HR00005",
                                         "E00006", "JS10646", "JS10647")] == [
        "CPSC", "CPSC_Extra", "StPetersburg", "PTB", "PTB_XL", "Georgia", "Chapman_Shaoxing",
        "Ningbo"]
    assert source_database("training/chapman_shaoxing/g1/JS20000") == "Chapman_Shaoxing"
    assert source_database("ningbo/g1/JS00001") == "Ningbo"
    assert source_database("X12") == "" and source_database("notes") == ""


@pytest.fixture(scope="module")
def challenge_store(shared_data, tmp_path_factory):
    from ecgtransfer.data.challenge2021 import prepare_challenge2021

    out = tmp_path_factory.mktemp("challenge") / "store"
    return prepare_challenge2021(shared_data / SAMPLE, out, fs=100, progress=False).store


def test_stratified_splits_spread_every_class_and_hold_out_a_database(challenge_store):
    from ecgtransfer.data.splits import stratified_parts, stratified_positions

    scoring = load_scoring()
    index = challenge_store.index
    labels = index[scoring.names].to_numpy()
    parts = stratified_parts(labels, 5)
    sizes = np.bincount(parts)
    assert len(sizes) == 5 and np.abs(sizes - 10).max() <= 2  # the labels are balanced first
    for j in np.flatnonzero(labels.sum(axis=0) >= 5):  # each class spread over the parts
        per_part = np.bincount(parts[labels[:, j] == 1], minlength=5)
        n = labels[:, j].sum()
        assert per_part.min() >= n // 5 - 1 and per_part.max() <= -(-n // 5) + 1, (j, per_part)
    np.testing.assert_array_equal(parts, stratified_parts(labels, 5))  # no seed: the data's
    split = stratified_positions(labels, seed=3, fractions=(0.6, 0.2, 0.2))
    assert sorted(np.concatenate(list(split.values()))) == list(range(50))
    sizes = np.array([len(split[s]) for s in ("train", "val", "test")])
    assert np.abs(sizes - [30, 10, 10]).max() <= 2
    again = stratified_positions(labels, seed=3, fractions=(0.6, 0.2, 0.2))
    assert all((split[s] == again[s]).all() for s in split)
    other = stratified_positions(labels, seed=4, fractions=(0.6, 0.2, 0.2))
    assert any(set(split[s]) != set(other[s]) for s in split)  # another seed, another split
    ningbo = (index["database"] == "Ningbo").to_numpy()
    held = stratified_positions(labels, seed=0, test=ningbo)  # train elsewhere, test on Ningbo
    assert set(held["test"]) == set(np.flatnonzero(ningbo))
    assert not set(held["train"]) & set(held["test"]) and len(held["train"]) + len(held["val"]) == 30
    with pytest.raises(ValueError, match="held-out records leave 0 to train"):
        stratified_positions(labels, test=np.ones(50, dtype=bool))


def test_thresholds_tuned_for_the_challenge_metric(tiny):
    from ecgtransfer.training.challenge import tune_thresholds

    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 0]])
    probs = np.array([[0.3, 0.2, 0.1], [0.1, 0.9, 0.1], [0.35, 0.1, 0.2], [0.1, 0.7, 0.1]])
    thresholds = tune_thresholds(tiny, labels, probs)
    assert 0.1 < thresholds[0] <= 0.3 and 0.1 < thresholds[2] <= 0.2  # the low positives caught
    assert challenge_metric(tiny, labels, probs >= thresholds) == pytest.approx(1.0)
    assert challenge_metric(tiny, labels, probs >= 0.5) < 1.0


def test_finetune_on_a_challenge_store_scores_as_the_official_evaluation(challenge_store,
                                                                        shared_data, tmp_path,
                                                                        cli):
    """Scratch, multi-label over the 26 scored classes: thresholds tuned on validation are
    saved with the model, the run logs the challenge metric with its interval, and its test
    outputs, in the Challenge's format, score the same under `ecgtransfer evaluate`."""
    import json

    import mlflow

    from ecgtransfer.models.classifier import load_classifier

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = cli("finetune", "--store", str(challenge_store.path), "--strategy", "scratch",
               "--task", "multi_label", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
               "--set", "bootstrap=30", "--out", "run", "--tracking-uri", uri, "-q")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    model = load_classifier(tmp_path / "run" / "model.pt")
    assert model.meta["classes"] == load_scoring().names and len(model.meta["thresholds"]) == 26
    run = mlflow.MlflowClient(uri).get_run(result["run_id"])
    assert run.data.tags["ecgtransfer.split"] == "stratified"
    metric = run.data.metrics["test_challenge_metric"]
    assert run.data.metrics["test_challenge_metric_ci_low"] <= metric <= run.data.metrics[
        "test_challenge_metric_ci_high"]
    outputs = sorted((tmp_path / "run" / "challenge_outputs").glob("*.csv"))
    assert len(outputs) == result["counts"]["test"]["used"] >= 3
    done = cli("evaluate", "challenge2021", str(shared_data / SAMPLE),
               str(tmp_path / "run" / "challenge_outputs"), "--subset")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split(",")[-1] == f"{metric:.3f}"

    done = cli("finetune", "--store", str(challenge_store.path), "--strategy", "scratch",
               "--task", "multi_label", "--epochs", "1", "--holdout", "Ningbo", "--device",
               "cpu", "--set", "bootstrap=0", "--out", "held", "--tracking-uri", uri, "-q")
    assert done.returncode == 0, done.stderr
    tested = {p.stem for p in (tmp_path / "held" / "challenge_outputs").glob("*.csv")}
    index = challenge_store.index
    assert tested == set(index["record_id"][index["database"] == "Ningbo"])
    done = cli("finetune", "--store", str(challenge_store.path), "--strategy", "scratch",
               "--holdout", "Nowhere", "--out", "x", "-q")
    assert done.returncode == 2 and "holdout: no 'Nowhere' records" in done.stderr


def test_a_cross_validation_scores_every_record_at_its_folds_thresholds(challenge_store,
                                                                       shared_data, tmp_path,
                                                                       cli):
    """--cv on a Challenge store: the pooled run's challenge metric decides each record with
    its own fold's thresholds, and its outputs (every record) score the same officially."""
    import json

    done = cli("finetune", "--store", str(challenge_store.path), "--strategy", "scratch",
               "--task", "multi_label", "--cv", "3", "--epochs", "1", "--device", "cpu",
               "--set", "bootstrap=20", "--out", "cv",
               "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "-q")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "cv" / "result.json").read_text())
    folds = [json.loads((tmp_path / "cv" / f"fold{k}" / "result.json").read_text())
             for k in (1, 2, 3)]
    assert all(len(f["thresholds"]) == 26 for f in folds)
    assert len(list((tmp_path / "cv" / "challenge_outputs").glob("*.csv"))) == 50
    done = cli("evaluate", "challenge2021", str(shared_data / SAMPLE),
               str(tmp_path / "cv" / "challenge_outputs"))  # every record: no --subset
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split(",")[-1] == f"{result['test']['challenge_metric']:.3f}"
