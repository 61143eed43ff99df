"""Bad input to ``ecgtransfer compare`` and ``ecgtransfer evaluate challenge2021``: one line
naming the file, key or run, nothing the user has touched, and no run's broken predictions
averaged in or quietly switched to another interval.

The fine-tune runs here are fake but well formed: logged through ``ecgtransfer.tracking`` as the
finetune stage logs them (tags, test metrics, ``test_predictions.csv``), no training."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgtransfer.tracking import TAG

CLASSES = ("NORM", "MI")
N_RECORDS = 40


def _predictions(seed: int) -> pd.DataFrame:
    """A plausible single-label predictions table: 40 records, two classes, AUROC near 0.8."""
    rng = np.random.default_rng(seed)
    truth = np.arange(N_RECORDS) % 2
    p_mi = 1 / (1 + np.exp(-(1.6 * (truth - 0.5) + rng.normal(0, 1, N_RECORDS))))
    return pd.DataFrame({"record_id": [f"r{i:03d}" for i in range(N_RECORDS)],
                         "true": [CLASSES[t] for t in truth], "p_NORM": 1 - p_mi, "p_MI": p_mi})


def _with_nan(table: pd.DataFrame, path: Path) -> None:
    table.loc[:2, "p_MI"] = np.nan
    table.to_csv(path, index=False)


def _not_csv(table: pd.DataFrame, path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01" * 20)


def _wrong_columns(table: pd.DataFrame, path: Path) -> None:
    table.rename(columns={"record_id": "id"}).to_csv(path, index=False)


def _empty(table: pd.DataFrame, path: Path) -> None:
    path.write_text("")


def _header_only(table: pd.DataFrame, path: Path) -> None:
    path.write_text("record_id,true,p_NORM,p_MI\n")


_FAULTS = {
    "clean": {},
    "nan": {("single", 1): _with_nan},
    "broken": {("scratch", 1): _not_csv, ("single", 0): _wrong_columns},
    "allbad": {("scratch", 0): _empty, ("scratch", 1): _header_only, ("single", 0): _empty,
               ("single", 1): _not_csv},
    "mixed": {("single", 1): None},  # logged without predictions
    "nanmetric": {key: None for key in [("scratch", 0), ("scratch", 1), ("single", 0),
                                        ("single", 1)]},  # and single-1's AUROC is NaN
}
"""Experiments of the store, and what is wrong with which (strategy, seed) run's predictions."""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store; per experiment of :data:`_FAULTS`, scratch and single at seeds 0 and 1.
    Returns the URI and, per experiment, the run ids by (strategy, seed)."""
    from ecgtransfer import tracking

    folder = tmp_path_factory.mktemp("compare_faults")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = tracking.Tracker(uri)
    ids: dict[str, dict] = {}
    for experiment, faults in _FAULTS.items():
        ids[experiment] = {}
        for strategy in ("scratch", "single"):
            for seed in (0, 1):
                tags = {TAG + "stage": "finetune", TAG + "task": "single_label",
                        TAG + "split": "folds", TAG + "strategy": strategy,
                        TAG + "source": "none" if strategy == "scratch" else "deepfake",
                        TAG + "source_targets": "qrs", TAG + "freeze": "full",
                        TAG + "train_fraction": "1", TAG + "seed": str(seed),
                        TAG + "setting": "s1"}
                table = _predictions(seed + (10 if strategy == "single" else 0))
                with tracker.open_run(experiment=experiment, name=f"{strategy}-{seed}",
                                      tags=tags) as run:
                    nan = experiment == "nanmetric" and (strategy, seed) == ("single", 1)
                    run.log_metrics({"test_accuracy": 0.7 + seed / 10,
                                     "test_macro_auroc": np.nan if nan else 0.8 + seed / 10,
                                     "test_macro_f1": 0.6})
                    ids[experiment][(strategy, seed)] = run.id
                    if (strategy, seed) in faults and faults[(strategy, seed)] is None:
                        continue  # no predictions logged
                    path = folder / experiment / f"{strategy}{seed}" / "test_predictions.csv"
                    path.parent.mkdir(parents=True)
                    write = faults.get((strategy, seed)) or (lambda t, p: t.to_csv(p, index=False))
                    write(table, path)
                    run.log_artifact(path)
    return {"uri": uri, "ids": ids, "folder": folder}


def _compare(cli, store, experiment, *args):
    return cli("compare", "--experiment", experiment, "--tracking-uri", store["uri"],
               "--bootstrap", "40", *args)


def _one_line(done, *parts):
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("ecgtransfer: error: "), \
        done.stderr
    for part in parts:
        assert part in done.stderr, done.stderr


# ---- compare --out ------------------------------------------------------------------------
def test_compare_out_naming_a_file_is_one_line_and_leaves_it(cli, store, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    done = _compare(cli, store, "clean", "--out", "notes.txt")
    _one_line(done, "--out notes.txt: is a file")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    done = _compare(cli, store, "clean", "--out", "notes.txt/compare")
    _one_line(done, "--out notes.txt/compare: ", "notes.txt is a file")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_compare_refuses_a_folder_of_other_files_but_rewrites_its_own(cli, store, tmp_path):
    other = tmp_path / "store"
    other.mkdir()
    (other / "index.csv").write_text("record_id\n")
    (other / "signals.i16").write_bytes(b"\x00\x01" * 8)
    done = _compare(cli, store, "clean", "--out", "store")
    _one_line(done, "--out store: holds files that `ecgtransfer compare` did not write",
              "index.csv")
    assert sorted(p.name for p in other.iterdir()) == ["index.csv", "signals.i16"]

    for _ in range(2):  # a new folder, then the same one again: compare's own
        done = _compare(cli, store, "clean", "--out", "mine")
        assert done.returncode == 0, done.stderr
        # an earlier comparison's --axes figure, which this one does not make: not left behind
        (tmp_path / "mine" / "axes.csv").write_text("stale\n")
    done = _compare(cli, store, "clean", "--out", "mine")
    assert (tmp_path / "mine" / "comparison.csv").is_file()
    assert not (tmp_path / "mine" / "axes.csv").exists()
    legacy = tmp_path / "old"  # written before the marker existed: comparison.csv tells
    legacy.mkdir()
    (legacy / "comparison.csv").write_text("x\n")
    assert _compare(cli, store, "clean", "--out", "old").returncode == 0
    assert len(pd.read_csv(legacy / "comparison.csv")) == 2


# ---- compare keys -------------------------------------------------------------------------
def test_compare_axes_setting_no_run_has_is_one_line(cli, store, tmp_path):
    done = _compare(cli, store, "clean", "--out", "c", "--axes", "model_kwargs.nosuch")
    _one_line(done, "--axes model_kwargs.nosuch: no run has this setting",
              "the runs have model, model_kwargs.layers, model_kwargs.width")
    assert not (tmp_path / "c").exists()  # nothing half-written


@pytest.mark.parametrize("args, said", [
    (["--pipeline-run", "x' or '1'='1"], "pipeline_run: \"x' or '1'='1\" is not an MLflow run id"),
    (["--pipeline-run", "0123abcd"], "--pipeline-run 0123abcd: no such MLflow run"),
    (["--seed", "-1"], "seed: must not be negative"),
], ids=["quoted-pipeline-run", "unknown-pipeline-run", "negative-seed"])
def test_compare_bad_keys_are_one_line(cli, store, args, said):
    _one_line(_compare(cli, store, "clean", "--out", "c", *args), said)


def test_compare_missing_tracking_database_is_one_line_and_not_created(cli, tmp_path):
    done = cli("compare", "--tracking-uri", "sqlite:///mlfow.db", "--out", "c")
    _one_line(done, "--tracking-uri sqlite:///mlfow.db: no such MLflow database (mlfow.db)")
    assert not list(tmp_path.iterdir())  # no empty database made at the typo


# ---- runs whose predictions are unusable --------------------------------------------------
def test_compare_leaves_out_a_run_with_nan_probabilities_visibly(cli, store, tmp_path, caplog):
    from sklearn.metrics import roc_auc_score

    run_id = store["ids"]["nan"][("single", 1)]
    said = f"left out: run single-1 ({run_id}): test_predictions.csv: 3 NaN probabilities (p_MI)"
    with caplog.at_level(logging.WARNING):
        done = _compare(cli, store, "nan", "--out", "c")
    assert done.returncode == 0, done.stderr
    assert any(said in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert said in done.stdout and "(1 left out)" in done.stdout and "+nan" not in done.stdout
    assert said in (tmp_path / "c" / "comparison.md").read_text()
    table = pd.read_csv(tmp_path / "c" / "comparison.csv").set_index("strategy")
    assert table.loc["single", "seeds"] == 1
    assert table.loc["single", "interval"] == f"bootstrap: {N_RECORDS} records x 1 seed"
    assert said.removeprefix("left out: ") == table.loc["single", "left_out"]
    assert table["left_out"].isna().sum() == 1  # scratch: none
    seed0 = _predictions(10)  # single at seed 0, alone now
    assert table.loc["single", "macro_auroc"] == pytest.approx(
        roc_auc_score(seed0["true"] == "MI", seed0["p_MI"]))


def test_compare_leaves_out_unreadable_predictions_instead_of_changing_the_interval(
        cli, store, tmp_path):
    """A run whose file cannot be read is not swapped for a t over seeds of its group: it is
    named and left out, and its group keeps the bootstrap over records."""
    ids = store["ids"]["broken"]
    done = _compare(cli, store, "broken", "--out", "c")
    assert done.returncode == 0, done.stderr
    for key, why in ((("scratch", 1), "not a readable CSV table (UnicodeDecodeError)"),
                     (("single", 0), "no record_id column")):
        line = f"left out: run {key[0]}-{key[1]} ({ids[key]}): test_predictions.csv: {why}"
        assert line in done.stdout and line in (tmp_path / "c" / "comparison.md").read_text()
    table = pd.read_csv(tmp_path / "c" / "comparison.csv")
    assert (table["interval"] == f"bootstrap: {N_RECORDS} records x 1 seed").all()
    assert (table["seeds"] == 1).all()


def test_compare_with_every_run_left_out_is_one_line(cli, store, tmp_path):
    done = _compare(cli, store, "allbad", "--out", "c")
    run_id = store["ids"]["allbad"][("scratch", 0)]
    _one_line(done, "nothing left to compare: all 4 fine-tune runs were left out",
              f"run scratch-0 ({run_id}): test_predictions.csv: empty file")
    assert not (tmp_path / "c").exists()


def test_compare_says_where_a_run_without_predictions_changes_the_interval(cli, store,
                                                                          tmp_path):
    run_id = store["ids"]["mixed"][("single", 1)]
    done = _compare(cli, store, "mixed", "--out", "c")
    assert done.returncode == 0, done.stderr
    said = f"no predictions: run single-1 ({run_id}) logged no test_predictions.csv"
    assert said in done.stdout and said in (tmp_path / "c" / "comparison.md").read_text()
    table = pd.read_csv(tmp_path / "c" / "comparison.csv").set_index("strategy")
    assert table.loc["single", "interval"] == "t over 2 seeds"


def test_compare_says_which_run_a_mean_over_seeds_leaves_out(cli, store, tmp_path):
    """Runs without predictions are averaged from their logged metrics: a NaN one is named, not
    quietly dropped from a mean that still counts its seed."""
    run_id = store["ids"]["nanmetric"][("single", 1)]
    done = _compare(cli, store, "nanmetric", "--out", "c")
    assert done.returncode == 0, done.stderr
    said = (f"no test_macro_auroc: run single-1 ({run_id}) logged none (or NaN); its group's "
            "mean over seeds leaves it out")
    assert said in done.stdout and said in (tmp_path / "c" / "comparison.md").read_text()
    table = pd.read_csv(tmp_path / "c" / "comparison.csv").set_index("strategy")
    assert table.loc["single", "macro_auroc"] == pytest.approx(0.8)  # seed 0 alone
    assert table.loc["single", "accuracy"] == pytest.approx(0.75)    # both seeds


@pytest.mark.parametrize("text, why", [
    ("", "empty file"),
    ("record_id,true,p_NORM,p_MI\n", "no rows"),
    ("id,score\na,0.5\n", "no record_id column"),
    ("record_id,true\na,NORM\n", "no probability columns"),
    ("record_id,p_A,p_B\na,0.2,0.8\n", "neither a true column (single-label) nor true_A, true_B"),
    ("record_id,true,p_A,p_B\na,C,0.2,0.8\n", "1 true labels not among its classes (A, B)"),
    ("record_id,true_A,p_A\na,2,0.5\n", "true_A holds values other than 0 and 1"),
    ("record_id,true,p_A,p_B\na,A,0.2,x\nb,B,nan,1.5\n",
     "1 NaN probability (p_A); 1 probability not a number (p_B); "
     "1 probability outside [0, 1] (p_B)"),
    ("record_id,true,p_A,p_B,fold\na,A,0.2,0.8,1.5\n", "fold holds values that are not whole"),
])
def test_predictions_tables_are_checked_before_use(tmp_path, text, why):
    from ecgtransfer.training.predictions import read_predictions

    path = tmp_path / "test_predictions.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        read_predictions(path)
    assert why in str(info.value)


# ---- evaluate challenge2021 ---------------------------------------------------------------
@pytest.fixture
def challenge(tmp_path):
    """Three headers and their output files (the labels themselves) in tmp_path."""
    from ecgtransfer.data.challenge2021 import write_outputs
    from ecgtransfer.training.challenge import load_scoring

    scoring = load_scoring()
    labels, outputs = tmp_path / "labels", tmp_path / "outputs"
    labels.mkdir()
    outputs.mkdir()
    for name, dx in (("A0001", "426783006"), ("A0002", "164889003"),
                     ("A0003", "426783006,164889003")):
        (labels / f"{name}.hea").write_text(f"{name} 12 500 5000\n#Age: 50\n#Dx: {dx}\n")
        y = scoring.encode(dx.split(","))
        write_outputs(outputs / f"{name}.csv", name, scoring.classes, y, y.astype(float))
    return labels, outputs


def test_evaluate_scores_into_a_folder_is_one_line_and_writes_nothing(cli, challenge,
                                                                      tmp_path):
    labels, outputs = challenge
    (tmp_path / "results").mkdir()
    done = cli("evaluate", "challenge2021", str(labels), str(outputs), "--class-scores", "c.csv",
               "--scores", "results")
    _one_line(done, "--scores results: is a folder; give the name of the CSV file to write "
                    "(e.g. results/scores.csv)")
    assert not list((tmp_path / "results").iterdir()) and not (tmp_path / "c.csv").exists()


@pytest.mark.parametrize("case", ["labels-file", "outputs-file", "scores-no-folder",
                                  "scores-over-an-output", "scores-twice", "weights-binary",
                                  "weights-without-sinus-rhythm"])
def test_evaluate_bad_paths_are_one_line_and_touch_nothing(cli, challenge, tmp_path, case):
    labels, outputs = challenge
    before = (outputs / "A0001.csv").read_text()
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe,\x80\n")
    (tmp_path / "three.csv").write_text(",A,B\nA,1,0\nB,0,1\n")
    args, said = {
        "labels-file": ([str(tmp_path / "plain.txt"), str(outputs)],
                        "LABELS_DIR " + str(tmp_path / "plain.txt") + ": is a file, not a folder"),
        "outputs-file": ([str(labels), str(tmp_path / "plain.txt")],
                         "OUTPUTS_DIR " + str(tmp_path / "plain.txt") + ": is a file"),
        "scores-no-folder": ([str(labels), str(outputs), "--scores", "nowhere/s.csv"],
                             "--scores nowhere/s.csv: nowhere is not a folder to write it in"),
        "scores-over-an-output": ([str(labels), str(outputs), "--scores",
                                   str(outputs / "A0001.csv")],
                                  "is one of the files evaluate reads"),
        "scores-twice": ([str(labels), str(outputs), "--scores", "s.csv", "--class-scores",
                          "./s.csv"], "--scores and --class-scores both name s.csv"),
        "weights-binary": ([str(labels), str(outputs), "--weights", "binary.csv"],
                           "--weights binary.csv: not a readable CSV table"),
        "weights-without-sinus-rhythm": ([str(labels), str(outputs), "--weights", "three.csv"],
                                         "--weights three.csv: no sinus rhythm class (426783006)"),
    }[case]
    _one_line(cli("evaluate", "challenge2021", *args), said)
    assert (outputs / "A0001.csv").read_text() == before and not (tmp_path / "s.csv").exists()


def test_the_challenge_metric_without_sinus_rhythm_says_so(tmp_path):
    from ecgtransfer.training.challenge import challenge_metric, load_scoring

    path = tmp_path / "weights.csv"
    path.write_text(",A,B\nA,1,0\nB,0,1\n")
    scoring = load_scoring(path)
    with pytest.raises(ValueError, match="no sinus rhythm"):
        challenge_metric(scoring, np.eye(2, dtype=bool), np.eye(2, dtype=bool))
