"""`ecgtransfer tune`: search spaces checked in one line, trials as child runs of the search's
MLflow run with their states, pruning that stops a trial early, the best config that `finetune
--config` takes, and a killed search that continues the same study. On the PTB-XL sample."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecgtransfer.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]

SPACE = """\
stage: finetune
metric: val_macro_auroc
params:
  lr: {type: float, low: 1e-4, high: 1.0e-2, log: true}
  class_weights: {type: categorical, choices: [none, balanced, sqrt]}
  head_hidden: {type: categorical, choices: [64, 128]}
  head_dropout: {type: float, low: 0.0, high: 0.5, when: {head_hidden: 128}}
"""


@pytest.fixture(scope="module")
def store100(tmp_path_factory):
    """The package's 350 PTB-XL records at 100 Hz."""
    from ecgtransfer.cli import main

    out = tmp_path_factory.mktemp("tune") / "ptbxl"
    assert main(["data", "prepare", "ptbxl", "--sample", "--out", str(out), "-q"]) == 0
    return out


def _space(tmp_path: Path, text: str = SPACE) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def _args(store: Path, space: Path, trials: int, *extra: str) -> list[str]:
    """The command, its MLflow store an absolute path beside the space (one per test: MLflow
    keeps an engine per URI for the whole process)."""
    return ["tune", "-q", "--space", str(space), "--store", str(store), "--task",
            "superdiagnostic", "--strategy", "scratch", "--trials", str(trials), "--threads", "2",
            "--set", "epochs=3", "--set", "bootstrap=0", "--set", "batch_size=64",
            "--tracking-uri", f"sqlite:///{space.parent / 'mlflow.db'}", *extra]


def _runs(folder: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["ecgtransfer-tune"])


@pytest.mark.parametrize("text, message", [
    ("stage: label\nparams: {lr: {type: float, low: 0.1, high: 1}}",
     "stage: 'label' is not one of pretrain, finetune"),
    ("stage: finetune\nparams: {lrr: {type: float, low: 0.1, high: 1}}",
     "params.lrr: not a setting of finetune"),
    ("stage: finetune\nparams: {lr: {type: real, low: 0.1, high: 1}}",
     "params.lr.type: 'real' is not float, int, categorical"),
    ("stage: finetune\nparams: {lr: {type: float, low: 1, high: 0.1}}",
     "params.lr: low (1) must be below high (0.1)"),
    ("stage: finetune\nparams: {lr: {type: float, low: 0, high: 0.1, log: true}}",
     "params.lr: a log scale needs low > 0"),
    ("stage: finetune\nparams: {lr: {type: float, low: x, high: 0.1}}",
     "params.lr.low: 'x' is not a number"),
    ("stage: finetune\nparams:\n  head_dropout: {type: float, low: 0, high: 0.5, when: "
     "{head_hidden: 128}}\n  head_hidden: {type: categorical, choices: [64, 128]}",
     "params.head_dropout.when: 'head_hidden' is not a parameter sampled before it"),
    ("stage: finetune\nparams: {out: {type: categorical, choices: [a, b]}}",
     "params.out: not a setting of finetune"),
    ("stage: finetune\nmetrc: val_score\nparams: {lr: {type: float, low: 0.1, high: 1}}",
     "unknown key 'metrc' (known: stage, metric, direction, params, description)"),
])
def test_a_bad_space_is_one_line_naming_file_and_key(tmp_path, cli, text, message):
    space = _space(tmp_path, text)
    done = cli("tune", "--space", str(space), "--store", "nowhere")
    assert done.returncode == 2
    assert done.stderr.strip() == f"ecgtransfer: error: {space}: {message}"


@pytest.mark.parametrize("text, message", [
    # a condition that can never hold: the parameter would silently never be sampled
    ("stage: finetune\nparams:\n  head_hidden: {type: categorical, choices: [64, 128]}\n"
     "  head_dropout: {type: float, low: 0, high: 0.5, when: {head_hidden: 256}}",
     "params.head_dropout.when: head_hidden is never 256 (its choices: 64, 128), so "
     "head_dropout would never be sampled"),
    ("stage: finetune\nparams:\n  head_hidden: {type: categorical, choices: [64, 128]}\n"
     "  head_dropout: {type: float, low: 0, high: 0.5, when: {head_hidden: '128'}}",
     "params.head_dropout.when: head_hidden is never '128' (its choices: 64, 128), so "
     "head_dropout would never be sampled"),
    ("stage: finetune\nparams:\n  head_hidden: {type: int, low: 32, high: 128}\n"
     "  head_dropout: {type: float, low: 0, high: 0.5, when: {head_hidden: 1000}}",
     "params.head_dropout.when: 'head_hidden' is an int parameter; a condition names a "
     "categorical one"),
    # a key given twice: YAML readers keep the last one silently
    ("stage: finetune\nparams:\n  lr: {type: float, low: 0.1, high: 1}\n"
     "  lr: {type: float, low: 0.2, high: 1}",
     "'lr' is given twice (first on line 3); keep one"),
    # steps and scales that Optuna would take otherwise (step 0 ran as step 1)
    ("stage: finetune\nparams: {head_hidden: {type: int, low: 32, high: 64, step: 0}}",
     "params.head_hidden.step: must be positive, got 0"),
    ("stage: finetune\nparams: {head_dropout: {type: float, low: 0, high: 0.5, step: -0.1}}",
     "params.head_dropout.step: must be positive, got -0.1"),
    ("stage: finetune\nparams: {lr: {type: float, low: 0.001, high: 0.1, log: 'no'}}",
     "params.lr.log: expected true or false, got 'no'"),
    ("stage: finetune\nparams: {class_weights: {type: categorical, choices: [none, sqrt, none]}}",
     "params.class_weights.choices: 'none' is given twice; keep one"),
    ("stage: finetune\nparams: {class_weights: {type: categorical, choices: [none], low: 1}}",
     "params.class_weights: low is for float and int parameters; a categorical takes choices"),
    ("stage: finetune\nparams: {lr: {type: float, low: 0.1, high: 1, choices: [0.1]}}",
     "params.lr: choices is for categorical parameters; a float takes low and high"),
    # grid values the grid sampler would fail on, or run outside the range
    ("stage: finetune\nparams: {lr: {type: float, low: 0.001, high: 0.01, grid: [0.5]}}",
     "params.lr.grid: 0.5 is not in [0.001, 0.01]"),
    ("stage: finetune\nparams: {lr: {type: float, low: 0.001, high: 0.01, grid: [abc]}}",
     "params.lr.grid: 'abc' is not a number"),
    ("stage: finetune\nparams: {class_weights: {type: categorical, choices: [none], "
     "grid: [bogus]}}", "params.class_weights.grid: 'bogus' is not one of the choices"),
    # a key of a setting that is not a mapping: every trial would fail
    ("stage: finetune\nparams: {lr.x: {type: float, low: 0.1, high: 1}}",
     "params.lr.x: lr is not a mapping setting of finetune, so 'lr.x' names nothing to set"),
    ("stage: finetune\nmetric: 5\nparams: {lr: {type: float, low: 0.1, high: 1}}",
     "metric: 5 is not a metric name (such as val_macro_auroc)"),
])
def test_a_space_that_cannot_mean_what_it_says_is_refused_up_front(tmp_path, cli, text, message):
    """Holes the first checks left: each is one line naming the file and key, before any
    trial (and `read_space` says the same to Python callers)."""
    from ecgtransfer.stages.tune import read_space

    space = _space(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        read_space(space)
    assert str(refused.value).startswith(f"{space}:") and message in str(refused.value)
    done = cli("tune", "--space", str(space), "--store", "nowhere")
    assert done.returncode == 2
    assert done.stderr.strip() == f"ecgtransfer: error: {refused.value}"


def test_wrong_base_settings_fail_before_any_trial(tmp_path, cli, store100):
    space = _space(tmp_path)
    done = cli(*_args(store100, space, 2, "--set", "epochs=many"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "epochs" in done.stderr and "finetune settings of the search" in done.stderr
    base = tmp_path / "base.yaml"
    base.write_text("epochs: 2\nout: elsewhere\n")
    done = cli(*_args(store100, space, 2, "--base", str(base)))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"ecgtransfer: error: {base}: out: is the search's to decide "
                                   "(set the search's own out)")
    done = cli(*_args(store100, space, 2, "--set", "base.experiment=other"))
    assert done.returncode == 2 and "base.experiment: is the search's to decide" in done.stderr
    assert not (tmp_path / "runs" / "tune" / "trials").exists()


@pytest.mark.slow
def test_trials_are_child_runs_and_the_best_config_is_a_finetune_config(tmp_path, cli, store100):
    """Four TPE trials: each a child run of the search's run with its own settings as params,
    per-epoch metrics and a state; the search run carries the best value and the best config,
    which `finetune --config` loads as it is and which equals the best trial's settings."""
    from ecgtransfer.stages.finetune import FinetuneConfig

    space = _space(tmp_path)
    done = cli(*_args(store100, space, 4))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "runs" / "tune"
    runs = _runs(tmp_path)
    search = runs[runs["tags.ecgtransfer.stage"] == "tune"]
    trials = runs[runs["tags.ecgtransfer.stage"] == "finetune"]
    assert len(search) == 1 and len(trials) == 4
    search_id = search["run_id"].iloc[0]
    assert (trials["tags.mlflow.parentRunId"] == search_id).all()
    assert set(trials["tags.ecgtransfer.trial"]) == {"0", "1", "2", "3"}
    assert set(trials["tags.ecgtransfer.trial_state"]) <= {"complete", "pruned"}
    # every trial's sampled values are its run's params (the conditional one only when active)
    import mlflow
    import pandas as pd

    frame = pd.read_csv(out / "trials.csv")
    assert len(frame) == 4
    for _, row in trials.iterrows():
        settings = json.loads(frame.loc[frame["number"] == int(row["tags.ecgtransfer.trial"]),
                                        "user_attrs_settings"].iloc[0])
        assert float(row["params.lr"]) == pytest.approx(settings["lr"])
        assert row["params.class_weights"] == settings["class_weights"]
        assert ("head_dropout" in settings) == (settings["head_hidden"] == 128)
        history = mlflow.MlflowClient().get_metric_history(row["run_id"], "val_macro_auroc")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
    complete = frame[frame["state"] == "COMPLETE"]
    best = complete.loc[complete["value"].idxmax()]
    assert search["metrics.best_val_macro_auroc"].iloc[0] == pytest.approx(best["value"])
    assert search["metrics.n_complete"].iloc[0] + search["metrics.n_pruned"].iloc[0] == 4
    # the best config: what `finetune --config` takes, the best trial's settings
    config = load_config(FinetuneConfig, out / "best_config.yaml")
    settings = json.loads(best["user_attrs_settings"])
    assert config.lr == pytest.approx(settings["lr"])
    assert config.class_weights == settings["class_weights"]
    assert config.epochs == 3 and config.task == "superdiagnostic"
    assert config.out == FinetuneConfig.__dataclass_fields__["out"].default
    assert (out / "plots" / "optimization_history.png").stat().st_size > 10_000
    # the experiment says it holds searches (not the fine-tune stage's own description)
    note = mlflow.get_experiment_by_name("ecgtransfer-tune").tags["mlflow.note.content"]
    assert note.startswith("Optuna searches by `ecgtransfer tune`")
    assert "best: trial" in done.stdout and "best_config.yaml" in done.stdout
    # the same command again: the study is done; nothing more runs, the same search run
    again = cli(*_args(store100, space, 4))
    import re

    assert again.returncode == 0, again.stderr
    complete, pruned = map(int, re.search(r"(\d+) complete, (\d+) pruned", again.stdout).groups())
    assert complete + pruned == 4 and complete >= 1
    assert len(_runs(tmp_path)) == 5


def test_pruning_stops_a_trial_and_its_run_says_so(tmp_path, cli, store100, monkeypatch):
    """A pruner that stops every trial at its second epoch: each trial trains 2 of 3 epochs,
    Optuna records it PRUNED, its run ends FINISHED tagged pruned, and the search counts the
    epochs pruning saved."""
    import optuna

    from ecgtransfer.training import study

    monkeypatch.setattr(study, "pruner", lambda name: optuna.pruners.ThresholdPruner(
        upper=-1.0, n_warmup_steps=2))   # every value is above -1: pruned from epoch 2 on
    space = _space(tmp_path, SPACE.replace("metric: val_macro_auroc", "metric: val_loss"))
    done = cli(*_args(store100, space, 2))
    assert done.returncode == 0, done.stderr
    assert "0 complete, 2 pruned" in done.stdout
    runs = _runs(tmp_path)
    trials = runs[runs["tags.ecgtransfer.stage"] == "finetune"]
    assert (trials["tags.ecgtransfer.trial_state"] == "pruned").all()
    assert (trials["status"] == "FINISHED").all()
    import mlflow

    for run_id in trials["run_id"]:
        steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "val_loss")]
        assert steps == [1, 2]
    search = runs[runs["tags.ecgtransfer.stage"] == "tune"].iloc[0]
    assert search["metrics.epochs_saved_by_pruning"] == 2 and search["metrics.n_pruned"] == 2
    assert not (tmp_path / "runs" / "tune" / "best_config.yaml").exists()


@pytest.mark.slow
def test_a_killed_search_continues_the_same_study(tmp_path, store100):
    """SIGTERM during the second trial: exit 143, that trial's run KILLED. The same command
    again continues the same study under the same search run: the interrupted trial runs again
    with the same values, and the study ends with the trials asked for."""
    import optuna

    space = _space(tmp_path)
    args = [sys.executable, "-m", "ecgtransfer", *_args(store100, space, 3, "--pruner", "none",
                                                         "--set", "epochs=4")]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    marker = tmp_path / "runs" / "tune" / "trials" / "0001" / "run.json"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        "ecgtransfer: terminated; re-run the same command to continue")
    runs = _runs(tmp_path)
    killed = runs[runs["tags.ecgtransfer.trial"] == "1"]
    assert list(killed["status"]) == ["KILLED"]
    search_id = json.loads((tmp_path / "runs" / "tune" / "run.json").read_text())["run_id"]

    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "1 interrupted and re-run" in done.stdout
    assert json.loads((tmp_path / "runs" / "tune" / "run.json").read_text())["run_id"] == search_id
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trials = study.get_trials()
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert [t.number for t in interrupted] == [1]
    rerun = [t for t in trials if t.number > 1 and t.params == interrupted[0].params]
    assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE"
    assert sum(t.state.name == "COMPLETE" for t in trials) == 3
    runs = _runs(tmp_path)
    assert (runs.loc[runs["tags.ecgtransfer.stage"] == "finetune",
                     "tags.mlflow.parentRunId"] == search_id).all()


@pytest.mark.slow
def test_the_grid_sampler_runs_every_combination_once(tmp_path, cli, store100):
    space = _space(tmp_path, "stage: finetune\nparams:\n"
                             "  class_weights: {type: categorical, choices: [none, sqrt]}\n"
                             "  head_hidden: {type: int, low: 32, high: 64, step: 32}\n"
                             "  lr: {type: float, low: 1e-3, high: 1e-2, grid: [0.003]}\n")
    done = cli(*_args(store100, space, 10, "--sampler", "grid", "--set", "epochs=1"))
    assert done.returncode == 0, done.stderr
    import pandas as pd

    frame = pd.read_csv(tmp_path / "runs" / "tune" / "trials.csv")
    combos = set(zip(frame["params_class_weights"], frame["params_head_hidden"]))
    assert combos == {("none", 32), ("none", 64), ("sqrt", 32), ("sqrt", 64)}
    assert len(frame) == 4 and (frame["params_lr"] == 0.003).all()


def test_shipped_spaces_are_valid():
    from ecgtransfer.stages.tune import read_space

    spaces = sorted((REPO / "pipelines" / "spaces").glob("*.yaml"))
    assert len(spaces) >= 2
    for path in spaces:
        space = read_space(path)
        assert space.params and space.stage in ("pretrain", "finetune")


def test_tune_config_routes_unknown_keys_to_the_searched_stage():
    from ecgtransfer.config import from_dict
    from ecgtransfer.stages.tune import TuneConfig

    config = from_dict(TuneConfig, {"space": "s.yaml", "trials": 3, "epochs": 5,
                                    "model_kwargs": {"width": 16}})
    assert config.trials == 3 and config.base == {"epochs": 5, "model_kwargs": {"width": 16}}
    with pytest.raises(ConfigError, match="trials: must be at least 1"):
        from_dict(TuneConfig, {"space": "s.yaml", "trials": 0})
    with pytest.raises(ConfigError, match="unknown key 'trails' .a setting of neither TuneConfig"):
        from_dict(TuneConfig, {"space": "s.yaml", "trails": 3})


@pytest.mark.slow
def test_a_pretrain_search_tunes_a_regressor(tmp_path, cli, deepfake_labelled):
    """A space over pretrain settings: each trial is one QRS regressor, the objective its
    validation score (lower is better), and the best config is a pretrain config."""
    from ecgtransfer.stages.pretrain import PretrainConfig

    space = _space(tmp_path, "stage: pretrain\nmetric: val_score\nparams:\n"
                             "  lr: {type: float, low: 1e-4, high: 1e-2, log: true}\n"
                             "  model_kwargs.width: {type: categorical, choices: [16, 32]}\n")
    done = cli("tune", "-q", "--space", str(space), "--store", str(deepfake_labelled.path),
               "--targets", "qrs", "--fs", "100", "--trials", "3", "--pruner", "none",
               "--set", "epochs=2", "--set", "batch_size=16", "--threads", "2",
               "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert done.returncode == 0, done.stderr
    assert "3 complete, 0 pruned, 0 failed" in done.stdout
    import pandas as pd

    frame = pd.read_csv(tmp_path / "runs" / "tune" / "trials.csv")
    best = frame.loc[frame["value"].idxmin()]            # val_score: minimised
    config = load_config(PretrainConfig, tmp_path / "runs" / "tune" / "best_config.yaml")
    assert config.lr == pytest.approx(best["params_lr"])
    assert config.model_kwargs == {"width": int(best["params_model_kwargs.width"])}
    assert config.targets == ["qrs"]
    runs = _runs(tmp_path)
    assert (runs["tags.ecgtransfer.stage"] == "pretrain").sum() == 3


@pytest.mark.slow
def test_tune_is_a_pipeline_stage(tmp_path):
    """`stage: tune` in a pipeline: its searched stage's settings sit beside its own (a store
    referred to by ${...}), checked before any work; the search and its trials nest under the
    pipeline's stage run."""
    from ecgtransfer.pipeline import PipelineError, load_pipeline, run_pipeline

    text = f"""\
name: t
experiment: tune_pipeline
tracking_uri: sqlite:///{tmp_path / 'mlflow.db'}
work: {tmp_path / 'work'}
stages:
  - name: ptbxl
    stage: prepare
    source: ptbxl
    sample: true
  - name: hpo
    stage: tune
    space: {REPO / 'pipelines' / 'spaces' / 'finetune_hpo.yaml'}
    trials: 2
    pruner: none
    store: ${{ptbxl}}
    task: superdiagnostic
    strategy: scratch
    model: resnet1d_fast
    epochs: 1
    bootstrap: 0
    threads: 2
"""
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("    epochs: 1\n", "    epochz: 1\n"))
    with pytest.raises(PipelineError, match=r"bad.yaml:\d+: stage 'hpo': unknown key 'epochz'"):
        load_pipeline(bad)
    good = tmp_path / "good.yaml"
    good.write_text(text)
    results = run_pipeline(load_pipeline(good), progress=False)
    hpo = next(r for r in results if r.name == "hpo")
    assert (Path(hpo.output) / "best_config.yaml").exists()
    runs = _runs_of(tmp_path, "tune_pipeline")
    search = runs[runs["tags.ecgtransfer.searched_stage"] == "finetune"]
    trials = runs[runs["tags.ecgtransfer.stage"] == "finetune"]
    assert len(search) == 1 and len(trials) == 2
    assert (trials["tags.mlflow.parentRunId"] == search["run_id"].iloc[0]).all()
    stage_run = search["tags.mlflow.parentRunId"].iloc[0]    # the pipeline's run of the stage
    assert stage_run in set(runs["run_id"])


def _runs_of(folder: Path, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=[experiment])


@pytest.mark.slow
def test_a_trial_the_stage_refuses_fails_alone_and_is_a_run(tmp_path, cli, store100):
    """A space whose values the stage refuses in part (head dropout 2.0): those trials fail,
    each with one line and a FAILED child run saying why, and the search goes on to the trials
    asked for."""
    space = _space(tmp_path, "stage: finetune\nparams:\n"
                             "  patience: {type: categorical, choices: [0, 1]}\n"
                             "  head_dropout: {type: categorical, choices: [2.0, 0.1]}\n")
    done = cli(*_args(store100, space, 4, "--sampler", "grid", "--set", "epochs=1"))
    assert done.returncode == 0, done.stderr
    assert "2 complete, 0 pruned, 2 failed" in done.stdout
    assert "head_dropout: must be in [0, 1)" in done.stderr and "Traceback" not in done.stderr
    runs = _runs(tmp_path)
    failed = runs[runs["tags.ecgtransfer.trial_state"] == "failed"]
    assert len(failed) == 2 and (failed["status"] == "FAILED").all()
    assert (failed["params.head_dropout"].astype(float) == 2.0).all()
    assert failed["tags.mlflow.note.content"].str.contains("refused these settings").all()


# ---- bad input and what a search leaves ------------------------------------------------------
def _instant_trials(monkeypatch, run=None) -> None:
    """The searched stage replaced by ``run``, by default one that trains nothing and reports
    one epoch of val_macro_auroc 0.5: what these tests check is the search around the trials,
    at a fraction of a second a trial."""
    import dataclasses

    from ecgtransfer.stages import StageResult, tune
    from ecgtransfer.stages.trained import TrainingResult

    def instant(config, context):
        Path(config.out).mkdir(parents=True, exist_ok=True)
        for callback in context.callbacks:  # as the training loop calls them
            callback.on_epoch_end(None, {"epoch": 1, "val_macro_auroc": 0.5})
        return StageResult(config.out, trained=[TrainingResult(path=Path(config.out), run_id=None,
                                                               best_epoch=1)])

    real = tune.get_stage
    monkeypatch.setattr(tune, "get_stage", lambda name: dataclasses.replace(
        real(name), run=run or instant))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_damaged_study_file_is_refused_and_the_search_kept(tmp_path, cli, store100,
                                                             monkeypatch):
    """The study file beside a finished search (its trials.csv, trial folders, best config)
    emptied, cut short, overwritten or missing: one line naming it, and nothing anywhere
    changes (no new study over the old trials). An absent one for a new search is made."""
    _instant_trials(monkeypatch)
    space = _space(tmp_path)
    args = _args(store100, space, 1)
    assert cli(*args).returncode == 0
    db = tmp_path / "optuna.db"
    good = db.read_bytes()
    assert (tmp_path / "runs" / "tune" / "trials.csv").exists()
    damage = {"empty (0 bytes), but runs/tune holds this search's trials (their study is lost)":
              b"",
              "a damaged SQLite database (database disk image is malformed)":
              good[:len(good) // 2],
              "not an SQLite database (damaged, or another kind of file)":
              bytes(range(256)) * 64,
              "no such study file, but runs/tune holds this search's trials": None}
    for message, data in damage.items():
        db.unlink()
        if data is not None:
            db.write_bytes(data)
        before = _files(tmp_path)
        done = cli(*args)
        assert done.returncode == 2, message
        assert done.stderr.strip().startswith(f"ecgtransfer: error: {db}: {message}")
        assert len(done.stderr.strip().splitlines()) == 1
        assert _files(tmp_path) == before, message
    # the study file whole, but the space edited: its study is another, not in the file
    db.write_bytes(good)
    space.write_text(SPACE.replace("[64, 128]", "[32, 64, 128]"))
    before = _files(tmp_path)
    done = cli(*args)
    assert done.returncode == 2
    assert "runs/tune: holds the trials of a search whose study space-" in done.stderr
    assert _files(tmp_path) == before
    # another program's database named as the study file: refused before Optuna writes in it
    done = cli(*_args(store100, space, 1, "--out", "other", "--storage",
                      f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert done.returncode == 2
    assert "mlflow.db: another program's database (tables alembic_version" in done.stderr
    assert not (tmp_path / "other" / "trials").exists()


@pytest.mark.parametrize("storage, message", [
    ("foo.db", "not a database URL; give one such as sqlite:///optuna.db (an SQLite file) or "
               "postgresql://USER@HOST/DB"),
    ("not a url", "not a database URL; give one such as sqlite:///optuna.db (an SQLite file) or "
                  "postgresql://USER@HOST/DB"),
    ("foo://x", "no database kind 'foo' is known (sqlite, postgresql, mysql, ...)"),
    ("sqlite:///{tmp}/no/such/dir/optuna.db", "the folder {tmp}/no/such/dir does not exist; "
                                              "create it, or name a file in an existing folder"),
    ("sqlite:///{tmp}", "is a folder, not an SQLite file"),
    ("sqlite://", "an in-memory database keeps no study between runs; name a file, such as "
                  "sqlite:///optuna.db"),
])
def test_a_storage_that_cannot_hold_the_study_is_one_line(tmp_path, cli, store100, storage,
                                                          message):
    storage, message = (s.replace("{tmp}", str(tmp_path)) for s in (storage, message))
    done = cli(*_args(store100, _space(tmp_path), 1, "--storage", storage))
    assert done.returncode == 2
    assert done.stderr.strip() == f"ecgtransfer: error: --storage {storage}: {message}"
    assert not (tmp_path / "no").exists() and not (tmp_path / "runs").exists()


def test_out_must_be_the_searchs_own_folder(tmp_path, cli, store100, monkeypatch):
    """--out naming a file, or a folder of something else (a store): one line, nothing
    touched. A search folder written before folders were marked is still its own."""
    _instant_trials(monkeypatch)
    space = _space(tmp_path)
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    done = cli(*_args(store100, space, 1, "--out", str(taken)))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"ecgtransfer: error: --out {taken}: is a file, not a "
                                   "folder; `ecgtransfer tune` writes a folder there, so choose "
                                   "another --out")
    assert taken.read_text() == "mine\n"
    store = tmp_path / "store"
    store.mkdir()
    (store / "index.csv").write_text("record_id\n1\n")
    done = cli(*_args(store100, space, 1, "--out", str(store)))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"ecgtransfer: error: --out {store}: holds files that "
                                   "`ecgtransfer tune` did not write (index.csv); nothing was "
                                   "touched: choose another --out (a new or empty folder)")
    assert _files(store) == {"index.csv": b"record_id\n1\n"}
    assert not (tmp_path / "optuna.db").exists()
    # a search folder from before the marker: its config.yaml and lock say it is a search's
    assert cli(*_args(store100, space, 1)).returncode == 0
    (tmp_path / "runs" / "tune" / ".ecgtransfer-output").unlink()
    done = cli(*_args(store100, space, 2))
    assert done.returncode == 0, done.stderr
    assert "2 complete" in done.stdout


def test_a_search_whose_every_trial_fails_is_an_error(tmp_path, cli, store100, monkeypatch):
    """Every trial refused by the stage, or every training raising: exit 2 with one line that
    says so, gives the first reason and where the others are; the search run ends FAILED."""
    space = _space(tmp_path, "stage: finetune\nparams:\n"
                             "  head_dropout: {type: categorical, choices: [2.0, 3.0]}\n")
    done = cli(*_args(store100, space, 2, "--sampler", "grid"))
    assert done.returncode == 2
    out = Path("runs") / "tune"
    assert done.stderr.strip().splitlines()[-1] == (
        f"ecgtransfer: error: {out}: every trial failed (2 of 2); trial 0: head_dropout: must be "
        f"in [0, 1); each trial's reason is in {out / 'trials.csv'} (user_attrs_error)")
    import pandas as pd

    frame = pd.read_csv(tmp_path / out / "trials.csv")
    assert (frame["state"] == "FAIL").all() and frame["user_attrs_error"].notna().all()
    runs = _runs(tmp_path)
    assert list(runs.loc[runs["tags.ecgtransfer.stage"] == "tune", "status"]) == ["FAILED"]

    from ecgtransfer.training import TrainingError

    def diverges(config, context):
        raise TrainingError("the loss is NaN at epoch 1")

    _instant_trials(monkeypatch, diverges)
    done = cli(*_args(store100, _space(tmp_path), 2, "--out", "diverged"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "ecgtransfer: error: diverged: every trial failed (2 of 2); trial 0: the loss is NaN at "
        "epoch 1; each trial's reason is in diverged/trials.csv (user_attrs_error)")

    def nan_metric(config, context):  # Optuna fails a NaN objective, but said nothing of why
        from ecgtransfer.stages import StageResult
        from ecgtransfer.stages.trained import TrainingResult

        for callback in context.callbacks:
            callback.on_epoch_end(None, {"epoch": 1, "val_macro_auroc": float("nan")})
        return StageResult(config.out, trained=[TrainingResult(path=Path(config.out), run_id=None,
                                                               best_epoch=1)])

    _instant_trials(monkeypatch, nan_metric)
    done = cli(*_args(store100, _space(tmp_path), 1, "--out", "nan", "--sampler-seed", "1"))
    assert done.returncode == 2
    assert "every trial failed (1 of 1); trial 0: val_macro_auroc is nan at epoch 1, the epoch " \
           "the stage kept" in done.stderr


def test_a_trial_a_kill_left_running_ends_killed(tmp_path, cli, store100, monkeypatch):
    """`kill -9` during a trial leaves its Optuna trial and its MLflow run RUNNING (nothing
    runs after it: simulated here by an exception no handler catches). The same command again
    runs the trial again and marks the old run KILLED, as a SIGTERM would have."""
    import mlflow

    class Killed(BaseException):
        """kill -9: no handler runs."""

    def dies(config, context):  # the trial's run, opened as the stage opens it, then the kill
        client = context.tracker.client  # the search's store, handed to its trials
        experiment = client.get_experiment_by_name(config.experiment).experiment_id
        client.create_run(experiment, run_name=config.run_name, tags={
            **context.tags, "mlflow.parentRunId": context.parent_run,
            "ecgtransfer.stage": "finetune"})
        raise Killed()

    _instant_trials(monkeypatch, dies)
    space = _space(tmp_path)
    with pytest.raises(Killed):
        cli(*_args(store100, space, 1))
    runs = _runs(tmp_path)
    (killed,) = runs.loc[runs["tags.ecgtransfer.stage"] == "finetune", "run_id"]
    assert mlflow.MlflowClient().get_run(killed).info.status == "RUNNING"
    _instant_trials(monkeypatch)
    done = cli(*_args(store100, space, 1))
    assert done.returncode == 0, done.stderr
    assert "1 complete, 0 pruned, 0 failed, 1 interrupted and re-run" in done.stdout
    run = mlflow.MlflowClient().get_run(killed)
    assert run.info.status == "KILLED"
    assert run.data.tags["ecgtransfer.trial_state"] == "interrupted"


def test_search_settings_that_reach_a_library_are_checked(tmp_path, cli, store100):
    """An empty experiment name (MLflow failed on it with a traceback) and a storage whose
    database cannot be reached (its password never shown)."""
    space = _space(tmp_path)
    done = cli(*_args(store100, space, 1, "--experiment", ""))
    assert done.returncode == 2
    assert done.stderr.strip() == "ecgtransfer: error: experiment: must name an MLflow experiment"
    done = cli(*_args(store100, space, 1, "--storage", "postgresql://me:secret@127.0.0.1:1/db"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("ecgtransfer: error: --storage postgresql://me:***@127.0.0.1:1/"
                                  "db: cannot be opened as an Optuna storage (")
    assert "secret" not in done.stderr


def test_a_trial_that_fails_inside_the_stage_is_a_failed_run_with_its_reason(tmp_path, cli,
                                                                             store100,
                                                                             monkeypatch):
    """Unseen-data defect: trials that failed inside the stage before its own run began (a
    store too small for the settings) appeared only in Optuna. Every trial is an MLflow run,
    FAILED, saying why."""
    def fails(config, context):
        raise ValueError(f"{config.store}: the store cannot train these settings")

    _instant_trials(monkeypatch, fails)
    done = cli(*_args(store100, _space(tmp_path), 2))
    assert done.returncode == 2
    runs = _runs(tmp_path)
    trials = runs[runs["tags.ecgtransfer.stage"] == "finetune"]
    assert len(trials) == 2 and (trials["status"] == "FAILED").all()
    assert trials["tags.mlflow.note.content"].str.contains(
        "failed before training: .*the store cannot train these settings").all()
    assert set(trials["tags.ecgtransfer.trial"]) == {"0", "1"}


def test_a_class_no_training_record_has_gets_weight_0_with_a_warning(caplog):
    """Unseen-data defect: a fold without a HYP record ended the trial. The class gets weight
    0 (it has no positive record for a weight to act on), and a warning names it."""
    import logging

    import numpy as np

    from ecgtransfer.training.targets import class_weights as _class_weights

    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
    with caplog.at_level(logging.WARNING):
        w = _class_weights(y, True, "store", ("NORM", "MI", "HYP"))
    assert w.tolist() == [1.0, 1.0, 0.0]
    assert "no training record has HYP: weight 0" in caplog.text
    single = _class_weights(np.array([0, 0, 1, 1]), False, "store", ("NORM", "MI", "HYP"))
    assert single.tolist() == pytest.approx([4 / 6, 4 / 6, 0.0])
