"""``ecgtransfer pretrain`` end to end on real stores, checked through the MLflow client: params,
per-epoch metrics, test MAE, artifacts, tags, dataset inputs and a model that loads and
predicts; resume, torchrun and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_stage
from ecgtransfer.config import ConfigError
from ecgtransfer.stages.pretrain import PretrainConfig
from ecgtransfer.data.dataset import fit_lead_stats
from ecgtransfer.data.splits import split_positions
from ecgtransfer.models.regressor import load_regressor
from ecgtransfer.features.labels import target_table


def _config(store, tmp_path, **kw) -> PretrainConfig:
    values = dict(store=str(store.path), fs=100.0, epochs=2, batch_size=32, device="cpu",
                  out=str(tmp_path / "run"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                  experiment="test")
    values.update(kw)
    return PretrainConfig(**values)


def _client(config: PretrainConfig):
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri)
    return mlflow.MlflowClient()


def test_pretrain_ptbxl_logs_a_complete_mlflow_run(ptbxl_labelled, tmp_path):
    import mlflow

    config = _config(ptbxl_labelled, tmp_path, targets=["qrs", "hr"])
    results = run_stage("pretrain", config).details
    assert [r.name for r in results] == ["qrs", "hr"]
    client = _client(config)
    qrs = client.get_run(results[0].run_id)
    parent_id = qrs.data.tags["mlflow.parentRunId"]
    assert client.get_run(results[1].run_id).data.tags["mlflow.parentRunId"] == parent_id
    assert client.get_run(parent_id).info.status == "FINISHED"

    params, tags = qrs.data.params, qrs.data.tags
    assert params["model"] == "resnet1d_fast" and params["targets"] == "qrs"
    assert params["lr"] == "0.001" and params["input.fs"] == "100"  # one formatting of values
    assert params["model_kwargs.stem_stride"] == "4"
    assert int(params["data.n_train"]) > 200 and int(params["data.n_val"]) > 30
    sidecar = json.loads(next(ptbxl_labelled.path.glob("labels-*.json")).read_text())
    assert tags["ecgtransfer.labeller_config_hash"] == sidecar["config_hash"]
    assert tags["ecgtransfer.dataset"] == "ptbxl-1.0.3"
    assert len(tags["ecgtransfer.store_hash"]) == 12
    assert tags["ecgtransfer.code_version"].startswith("0.")

    history = client.get_metric_history(qrs.info.run_id, "val_mae_qrs_ms")
    assert sorted(m.step for m in history) == [1, 2]
    assert all(0 < m.value < 200 for m in history)
    assert {"train_loss", "val_loss", "train_mae_qrs_ms", "lr"} <= set(qrs.data.metrics)
    test_mae = qrs.data.metrics["test_mae_qrs_ms"]
    assert 0 < test_mae < 60 and test_mae == pytest.approx(results[0].test_mae["qrs_ms"])

    artifacts = {a.path for a in client.list_artifacts(qrs.info.run_id)}
    assert {"config.yaml", "history.csv", "data_counts.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(qrs.info.run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/scatter_test.png"}
    contexts = {d.dataset.name: d.tags[0].value for d in qrs.inputs.dataset_inputs}
    assert {d.dataset.digest for d in qrs.inputs.dataset_inputs} == {tags["ecgtransfer.store_hash"]}
    assert contexts == {"ptbxl:train": "training", "ptbxl:val": "validation",
                        "ptbxl:test": "testing"}

    # The logged model loads back, has a signature, and predicts QRS in ms from mV input,
    # the same as the saved model.pt.
    uri = tags["ecgtransfer.model_uri"]
    assert mlflow.models.get_model_info(uri).signature is not None
    logged = mlflow.pytorch.load_model(uri).eval()
    saved = load_regressor(results[0].path / "model.pt")
    from ecgtransfer.data.transforms import resample

    x = torch.from_numpy(np.stack([resample(ptbxl_labelled[i], 500, 100) for i in range(4)]))
    with torch.no_grad():
        pred = logged(x)
        assert torch.allclose(pred, saved(x), atol=1e-4)
    assert pred.shape == (4, 1) and ((pred > 40) & (pred < 200)).all()
    assert logged.forward_features(x).shape == (4, logged.net.num_features)


def test_pretrain_synthetic_store_multi_output(deepfake_labelled, tmp_path):
    config = _config(deepfake_labelled, tmp_path, targets="qrs,qt", multi_output=True,
                     epochs=1, fs=None)
    (result,) = run_stage("pretrain", config).details
    assert result.name == "qrs+qt"
    run = _client(config).get_run(result.run_id)
    assert run.data.tags["ecgtransfer.dataset"] == "deepfake"
    assert "mlflow.parentRunId" not in run.data.tags
    counts = result.counts
    assert sum(c["records"] for c in counts.values()) == 48
    # the random split is the documented seeded one
    expected = split_positions(deepfake_labelled.index, "random", seed=0)
    assert counts["test"]["records"] == len(expected["test"])
    assert set(result.test_mae) == {"qrs_ms", "qt_ms"}
    assert run.data.params["input.n_samples"] == "5000"


def test_normalisation_is_fitted_on_training_records_only(ptbxl_labelled, tmp_path):
    config = _config(ptbxl_labelled, tmp_path, targets=["qt"], epochs=1)
    (result,) = run_stage("pretrain", config).details
    model = load_regressor(result.path / "model.pt")
    train = split_positions(ptbxl_labelled.index, "folds")["train"]
    values, reasons = target_table(ptbxl_labelled.index, pd.read_csv(
        next(ptbxl_labelled.path.glob("labels-*.csv")), dtype={"record_id": str}), ["qt"])
    used = train[reasons[train, 0] == ""]
    mean, std = fit_lead_stats(ptbxl_labelled, used)
    np.testing.assert_allclose(model.lead_mean.flatten().numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(model.lead_std.flatten().numpy(), std, rtol=1e-5)
    everyone, _ = fit_lead_stats(ptbxl_labelled, range(len(ptbxl_labelled)))
    assert not np.allclose(mean, everyone, rtol=1e-4)
    assert model.target_mean.item() == pytest.approx(np.mean(values[used, 0]), rel=1e-5)
    assert model.meta["fs"] == 100.0 and model.meta["n_samples"] == 1000


def test_flagged_and_nan_labels_are_left_out_and_counted(ptbxl_labelled, tmp_path):
    labels = pd.read_csv(next(ptbxl_labelled.path.glob("labels-*.csv")), dtype={"record_id": str})
    train = split_positions(ptbxl_labelled.index, "folds")["train"]
    ids = ptbxl_labelled.index["record_id"].to_numpy()[train[:7]]
    rows = labels["record_id"].isin(ids[:4])
    labels.loc[rows, "qrs_ms"] = np.nan
    labels.loc[rows, "qrs_status"] = "flat lead V2"
    labels = labels[~labels["record_id"].isin(ids[4:])]  # 3 records without a label row
    path = tmp_path / "labels-edited.csv"
    labels.to_csv(path, index=False)
    config = _config(ptbxl_labelled, tmp_path, labels=str(path), epochs=1)
    (result,) = run_stage("pretrain", config).details
    excluded = result.counts["train"]["excluded"]
    before = ((pd.read_csv(next(ptbxl_labelled.path.glob("labels-*.csv")),
                           dtype={"record_id": str}).set_index("record_id")
               .loc[ptbxl_labelled.index["record_id"].to_numpy()[train], "qrs_status"] != "ok")
              .sum())
    assert excluded.get("label NaN or flagged", 0) == before + 4
    assert excluded["no label row"] == 3
    params = _client(config).get_run(result.run_id).data.params
    assert int(params["data.n_train_excluded"]) == before + 7
    assert int(params["data.n_train"]) == len(train) - before - 7


def test_resume_continues_to_the_same_weights(ptbxl_labelled, tmp_path, monkeypatch):
    from ecgtransfer.training.callbacks import LambdaCallback
    from ecgtransfer.training.loop import Trainer

    kw = dict(targets=["pr"], epochs=4, max_train_records=96, model_kwargs={"head_dropout": 0.3},
              scheduler="cosine")
    whole = _config(ptbxl_labelled, tmp_path / "a", **kw)
    torch.manual_seed(1234)
    caller = torch.get_rng_state()
    (a,) = run_stage("pretrain", whole).details
    assert torch.equal(torch.get_rng_state(), caller)  # library code leaves the caller's RNG

    killed = _config(ptbxl_labelled, tmp_path / "b", **kw)
    original = Trainer._train_epoch

    def dies_in_epoch_3(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run_stage("pretrain", killed).details
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    assert not (Path(killed.out) / "pr" / "model.pt").exists()
    with pytest.raises(ConfigError, match="--resume"):
        run_stage("pretrain", killed).details
    # a checkpoint that does not fit the model is named in one line, and nothing is lost
    from ecgtransfer.training import TrainingError
    from ecgtransfer.training.checkpoint import load_checkpoint, save_checkpoint

    ckpt = Path(killed.out) / "pr" / "checkpoint.pt"
    good = ckpt.read_bytes()
    state = load_checkpoint(ckpt)
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(3)
    save_checkpoint(state, ckpt)
    with pytest.raises(TrainingError, match=r"checkpoint.pt: this checkpoint does not fit"):
        run_stage("pretrain", killed, resume=True).details
    ckpt.write_bytes(good)
    (b,) = run_stage("pretrain", killed, resume=True).details

    sa = load_regressor(a.path / "model.pt").state_dict()
    sb = load_regressor(b.path / "model.pt").state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.best_epoch == b.best_epoch and a.test_mae == b.test_mae
    client = _client(killed)
    assert b.run_id == json.loads((Path(killed.out) / "pr" / "run.json").read_text())["run_id"]
    steps = [m.step for m in client.get_metric_history(b.run_id, "val_mae_pr_ms")]
    assert sorted(steps) == [1, 2, 3, 4]
    assert client.get_run(b.run_id).info.status == "FINISHED"
    # a finished run is reused, not retrained
    (again,) = run_stage("pretrain", killed, resume=True).details
    assert again.reused and again.run_id == b.run_id


def test_best_weights_are_a_copy(ptbxl_labelled):
    from ecgtransfer.data.dataset import StoreDataset
    from ecgtransfer.models import create_model
    from ecgtransfer.config import LoopConfig
    from ecgtransfer.training.callbacks import LambdaCallback
    from ecgtransfer.training.loop import Trainer
    from ecgtransfer.training.tasks import RegressionTask

    store = ptbxl_labelled
    mean, std = fit_lead_stats(store, range(40))
    y = np.linspace(-1, 1, 40, dtype=np.float32)[:, None]
    train = StoreDataset(store, range(40), y, mean, std, fs=100)
    val = StoreDataset(store, range(40, 60), y[:20], mean, std, fs=100)
    torch.manual_seed(0)
    states = []
    trainer = Trainer(create_model("cnn"), RegressionTask(["x"], ["u"], [0], [1]), train, val,
                      LoopConfig(epochs=3, batch_size=16), progress=False,
                      device=torch.device("cpu"),
                      callbacks=[LambdaCallback(on_epoch_end=lambda t, m: states.append(
                          {k: v.clone() for k, v in t.model.state_dict().items()}))])
    fit = trainer.fit()
    best = states[fit.best_epoch - 1]
    assert all(torch.equal(fit.best_state[k], best[k]) for k in best)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    assert all(torch.equal(fit.best_state[k], best[k]) for k in best)
    assert len(fit.history) == 3


def test_predictions_are_the_model_outputs_in_record_order(ptbxl_labelled):
    """The loop collects outputs into arrays made once (memory flat over an epoch): what it
    returns must be the model's outputs on each record, in order, with their targets."""
    from ecgtransfer.config import LoopConfig
    from ecgtransfer.data.dataset import StoreDataset
    from ecgtransfer.models import create_model
    from ecgtransfer.training.loop import Trainer, _Rows
    from ecgtransfer.training.tasks import RegressionTask

    store = ptbxl_labelled
    mean, std = fit_lead_stats(store, range(30))
    y = np.linspace(-1, 1, 30, dtype=np.float32)[:, None]
    data = StoreDataset(store, range(30), y, mean, std, fs=100)
    torch.manual_seed(0)
    trainer = Trainer(create_model("cnn"), RegressionTask(["x"], ["u"], [0], [1]), data, data,
                      LoopConfig(epochs=1, batch_size=7), progress=False,
                      device=torch.device("cpu"))
    out, targets = trainer.predict(data)
    trainer.model.eval()
    with torch.no_grad():
        one_by_one = np.concatenate([trainer.model(data[i][0][None]).numpy() for i in range(30)])
    assert out.shape == (30, 1) and np.allclose(out, one_by_one, atol=1e-5)
    assert np.array_equal(targets, y)
    rows = _Rows(3)  # a loader that yields more rows than it said: the arrays grow
    for start in range(0, 10, 4):
        rows.add(np.arange(start, min(start + 4, 10))[:, None], np.zeros(min(4, 10 - start)))
    assert rows.result()[0].ravel().tolist() == list(range(10))


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(deepfake_labelled, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "29517", "-m", "ecgtransfer", "pretrain", "-q",
         "--store", str(deepfake_labelled.path), "--targets", "qrs", "--epochs", "2",
         "--fs", "100", "--device", "cpu", "--out", str(tmp_path / "run"),
         "--tracking-uri", uri, "--experiment", "ddp"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1  # rank 0 alone logs
    assert runs[0].data.params["world_size"] == "2"
    assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id,
                                                            "val_mae_qrs_ms")) == [1, 2]
    assert (tmp_path / "run" / "qrs" / "model.pt").exists()
    assert proc.stdout.count("MLflow run") == 1


def test_bad_config_and_missing_labels_fail_with_one_line(ptbxl_labelled, ptbxl_store, tmp_path,
                                                          cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"store: {ptbxl_labelled.path}\nepoch: 3\n")
    proc = cli("pretrain", "--config", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"ecgtransfer: error: {bad}:2: unknown key 'epoch' (did you "
                                   "mean 'epochs'?)")

    proc = cli("pretrain", "--store", str(ptbxl_labelled.path), "--set",
               "model_kwargs.widht=3", "--out", str(tmp_path / "r1"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "model_kwargs.widht" in proc.stderr

    proc = cli("pretrain", "--store", str(ptbxl_labelled.path), "--targets", "qrs,st")
    assert proc.returncode == 2 and "unknown target 'st'" in proc.stderr

    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(ptbxl_store.path, unlabelled,
                    ignore=shutil.ignore_patterns("labels-*"))
    proc = cli("pretrain", "--store", str(unlabelled))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "no label file" in proc.stderr and "ecgtransfer label" in proc.stderr

    other = tmp_path / "other.csv"
    labels = pd.read_csv(next(ptbxl_labelled.path.glob("labels-*.csv")), dtype=str)
    labels["record_id"] = "x" + labels["record_id"]
    labels.to_csv(other, index=False)
    proc = cli("pretrain", "--store", str(ptbxl_labelled.path), "--labels", str(other),
               "--out", "r2")
    assert proc.returncode == 2 and "none of its rows is a record of this store" in proc.stderr
    # nothing was written: the same command with the right labels then runs
    assert not (tmp_path / "r2").exists() and not (tmp_path / "mlflow.db").exists()


def test_cli_lists_models(cli):
    proc = cli("pretrain", "--list-models")
    assert proc.returncode == 0
    assert "resnet1d_fast (default)" in proc.stdout and "inception1d:" in proc.stdout


@pytest.mark.slow
def test_sigterm_marks_the_run_killed_and_a_resume_finishes_it(ptbxl_labelled, tmp_path):
    """A scheduler's preemption (SIGTERM) ends like Ctrl-C: exit 143, the MLflow run KILLED,
    no half-written file; a resume then finishes the run."""
    import signal
    import time

    config = _config(ptbxl_labelled, tmp_path, targets=["qrs"], epochs=2, batch_size=16,
                     max_train_records=32)
    args = [sys.executable, "-m", "ecgtransfer", "pretrain", "-q", "--store", config.store,
            "--targets", "qrs", "--fs", "100", "--epochs", "2", "--batch-size", "16",
            "--set", "max_train_records=32", "--device", "cpu", "--out", config.out,
            "--experiment", config.experiment, "--tracking-uri", config.tracking_uri]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    marker = Path(config.out) / "qrs" / "run.json"
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("ecgtransfer: terminated; re-run the same command to "
                                            "continue")
    run_id = json.loads(marker.read_text())["run_id"]
    client = _client(config)
    assert client.get_run(run_id).info.status == "KILLED"
    assert not list(Path(config.out).rglob("*.tmp"))
    (done,) = run_stage("pretrain", config, resume=True).details
    assert done.run_id == run_id and client.get_run(run_id).info.status == "FINISHED"


def test_pretrain_cross_validation_pools_the_folds_out_of_fold(deepfake_labelled, tmp_path):
    """``pretrain --cv 3``: a cross-validation run with a child run per fold; every usable
    record predicted once, by the fold model that never saw it; the pooled MAE is the mean
    absolute error of that table, with a bootstrap interval over records; resume reuses it."""
    from ecgtransfer.data.splits import cv_parts

    config = _config(deepfake_labelled, tmp_path, targets=["qrs"], epochs=1, fs=None, cv=3,
                     bootstrap=200)
    (result,) = run_stage("pretrain", config).details
    assert [f["fold"] for f in result.folds] == [1, 2, 3]
    oof = pd.read_csv(result.path / "oof_predictions.csv", dtype={"record_id": str})
    values, reasons = target_table(deepfake_labelled.index, pd.read_csv(
        next(deepfake_labelled.path.glob("labels-*.csv")), dtype={"record_id": str}),
        ["qrs"], Path("labels.csv"))
    usable = (reasons[:, 0] == "") & (cv_parts(deepfake_labelled.index, 3) >= 0)
    ids = deepfake_labelled.index["record_id"].to_numpy()
    assert sorted(oof["record_id"]) == sorted(ids[usable])  # each usable record once
    parts = dict(zip(ids, cv_parts(deepfake_labelled.index, 3) + 1))
    assert (oof["fold"] == oof["record_id"].map(parts)).all()  # tested in its own fold
    truth = dict(zip(ids, values[:, 0]))
    assert np.allclose(oof["true_qrs"], oof["record_id"].map(truth))
    mae = float(np.abs(oof["pred_qrs"] - oof["true_qrs"]).mean())
    assert result.test_mae["qrs_ms"] == pytest.approx(mae)
    low, high = result.intervals["qrs_ms"]
    assert low < mae < high

    client = _client(config)
    run = client.get_run(result.run_id)
    assert (run.data.tags["ecgtransfer.evaluation"], run.data.tags["ecgtransfer.cv"]) == ("cv", "3")
    assert run.data.metrics["test_mae_qrs_ms"] == pytest.approx(mae)
    assert run.data.metrics["test_mae_qrs_ms_ci_low"] == pytest.approx(low)
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert sorted(c.data.tags["ecgtransfer.fold"] for c in children) == ["1", "2", "3"]
    assert {c.data.tags["ecgtransfer.evaluation"] for c in children} == {"fold"}

    (again,) = run_stage("pretrain", config, resume=True).details
    assert again.reused and again.test_mae == result.test_mae and again.run_id == result.run_id


def test_a_stage_logs_to_the_tracker_it_is_handed_and_leaves_mlflow_as_it_found_it(
        ptbxl_labelled, tmp_path, monkeypatch):
    """Two trackers in one process: each stage's runs, its logged model included, land in the
    store of the tracker its context carries, and MLflow's process-wide URI (and the
    ``MLFLOW_TRACKING_URI`` subprocesses inherit) are as they were before the stage."""
    import mlflow

    from ecgtransfer.stages import Context, get_stage
    from ecgtransfer.tracking import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    trackers = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        trackers[name] = Tracker(f"sqlite:///{tmp_path / name / 'mlflow.db'}")
    run_ids = {}
    for name, tracker in trackers.items():
        config = _config(ptbxl_labelled, tmp_path, epochs=1, tracking_uri=None,
                         out=str(tmp_path / f"run-{name}"))
        result = get_stage("pretrain").run(config, Context(progress=False, tracker=tracker))
        run_ids[name] = result.details[0].run_id
        assert not mlflow.is_tracking_uri_set() and "MLFLOW_TRACKING_URI" not in os.environ
        assert mlflow.active_run() is None
    for name, tracker in trackers.items():
        other = run_ids["b" if name == "a" else "a"]
        run = tracker.get_run(run_ids[name])
        assert run.status == "FINISHED" and run.tag("model_uri").startswith("models:/")
        assert tracker.logged_model_run(run.tag("model_uri")) == run_ids[name]
        with pytest.raises(ValueError, match="no such MLflow run"):
            tracker.get_run(other)
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the default store


def test_a_config_naming_another_store_than_the_callers_tracker_is_refused(ptbxl_labelled,
                                                                           tmp_path):
    from ecgtransfer.stages import Context, get_stage
    from ecgtransfer.tracking import Tracker

    config = _config(ptbxl_labelled, tmp_path)  # its own sqlite:///.../mlflow.db
    tracker = Tracker(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(ConfigError, match=r"tracking_uri: sqlite:///.*mlflow.db, but this stage "
                                          r"is run for sqlite:///.*other.db"):
        get_stage("pretrain").run(config, Context(progress=False, tracker=tracker))
    assert not Path(config.out).exists()
