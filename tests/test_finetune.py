"""``ecgtransfer finetune`` on the PTB-XL sample: trunks pretrained on half A transferred to half
B, checked through the MLflow client (tags linking the pretrain runs, test metrics with
intervals, plots, the logged classifier); freezing, scratch, train fraction, resume, torchrun and
one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_stage
from ecgtransfer.config import ConfigError
from ecgtransfer.stages.pretrain import PretrainConfig
from ecgtransfer.stages.finetune import FinetuneConfig
from ecgtransfer.data.ptbxl import SUPERCLASSES
from ecgtransfer.training.targets import diagnostic_targets
from ecgtransfer.models.classifier import load_classifier
from ecgtransfer.models.regressor import load_regressor


@pytest.fixture(scope="module")
def pretrained(ptbxl_labelled, tmp_path_factory):
    """QRS and HR regressors pretrained (briefly) on PTB-XL half A, tracked in MLflow."""
    folder = tmp_path_factory.mktemp("finetune")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    config = PretrainConfig(store=str(ptbxl_labelled.path), targets=["qrs", "hr"], split="A",
                            fs=100.0, epochs=1, batch_size=32, device="cpu",
                            out=str(folder / "pretrain"), tracking_uri=uri, experiment="pre")
    results = run_stage("pretrain", config).details
    parent = json.loads((folder / "pretrain" / "parent_run.json").read_text())["run_id"]
    return {"uri": uri, "results": {r.name: r for r in results}, "parent": parent,
            "folder": folder / "pretrain"}


def _config(store, pretrained, tmp_path, **kw) -> FinetuneConfig:
    values = dict(store=str(store.path), split="B", epochs=2, batch_size=32, device="cpu",
                  bootstrap=50, out=str(tmp_path / "run"), tracking_uri=pretrained["uri"],
                  experiment="ft")
    values.update(kw)
    return FinetuneConfig(**values)


def _client(uri):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient()


def _trunk_state(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("net.head")}


def test_diagnostic_targets_follow_the_superclass_columns(ptbxl_store):
    index = ptbxl_store.index
    single, why = diagnostic_targets(index, "single_label")
    ok = why == ""
    assert np.array_equal(ok, index["single_label"].to_numpy(bool))
    assert [SUPERCLASSES[t] for t in single[ok]] == list(index["superclass"][ok])
    multi, why_multi = diagnostic_targets(index, "multi_label")
    assert multi.shape == (len(index), 5)
    assert np.array_equal(why_multi == "", index["n_superclasses"].to_numpy() > 0)
    assert set(why[~ok]) <= {"no superclass", "several superclasses"}


def test_combined_gradual_multilabel_logs_a_complete_run(ptbxl_labelled, pretrained, tmp_path):
    import mlflow

    config = _config(ptbxl_labelled, pretrained, tmp_path, sources=[pretrained["parent"]],
                     strategy="combined", freeze="gradual", frozen_epochs=1, task="multi_label")
    result = run_stage("finetune", config).details
    client = _client(pretrained["uri"])
    run = client.get_run(result.run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    children = {r.run_id for r in pretrained["results"].values()}
    assert tags["ecgtransfer.stage"] == "finetune" and tags["ecgtransfer.strategy"] == "combined"
    assert tags["ecgtransfer.freeze"] == "gradual" and tags["ecgtransfer.task"] == "multi_label"
    assert tags["ecgtransfer.train_fraction"] == "1" and tags["ecgtransfer.seed"] == "0"
    assert set(tags["ecgtransfer.source_runs"].split(",")) == children
    assert tags["ecgtransfer.source_targets"] == "qrs,hr"
    assert tags["ecgtransfer.source"].startswith("ptbxl")
    assert all(rid in tags["mlflow.note.content"] for rid in children)
    assert params["trunks"] == "2" and params["freeze"] == "gradual"

    # the trunks' learning rate: the lower one once unfrozen, and their weights moved then
    lr_trunk = [m.value for m in client.get_metric_history(run.info.run_id, "lr_trunk")]
    assert len(lr_trunk) == 2 and lr_trunk[0] == pytest.approx(0.1 * config.lr)

    # test metrics with 95% intervals around them
    for key in ["accuracy", "macro_auroc", "macro_f1"] + [f"auroc_{c}" for c in SUPERCLASSES]:
        value = result.test[key]
        if np.isfinite(value):
            lo, hi = result.intervals[key]
            assert lo <= value <= hi, key
            assert metrics[f"test_{key}"] == pytest.approx(value)
            assert metrics[f"test_{key}_ci_low"] == pytest.approx(lo)
    assert 0.0 <= result.test["macro_auroc"] <= 1.0
    # the cost report: the model's own parameters, MACs at its input rate, its file's size
    from ecgtransfer.models.classifier import load_classifier
    from ecgtransfer.models.cost import count_macs, count_parameters

    kept = load_classifier(tmp_path / "run" / "model.pt")
    assert metrics["cost_params"] == count_parameters(kept)
    assert metrics["cost_macs"] == count_macs(kept, len(kept.meta["leads"]), kept.meta["n_samples"])
    assert metrics["cost_size_mb"] == pytest.approx(
        (tmp_path / "run" / "model.pt").stat().st_size / 1e6)
    for key in ("cost_latency_ms_b1", "cost_latency_ms_b64", "cost_onnx_latency_ms_b1",
                "cost_train_records_per_s"):
        assert 0 < metrics[key] < float("inf"), key
    assert json.loads(params["cost_input.fs"]) == kept.meta["fs"]

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "history.csv", "test_predictions.csv", "test_metrics.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/confusion_matrix_test.png", "plots/roc_test.png",
                     "plots/learning_curves.png"}
    predictions = pd.read_csv(tmp_path / "run" / "test_predictions.csv", dtype={"record_id": str})
    assert len(predictions) == result.counts["test"]["used"]
    probs = predictions[[f"p_{c}" for c in SUPERCLASSES]].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all()
    index = ptbxl_labelled.index.set_index(ptbxl_labelled.index["record_id"].astype(str))
    truth = index.loc[predictions["record_id"].astype(str)]
    assert np.array_equal(predictions[[f"true_{c}" for c in SUPERCLASSES]].to_numpy(),
                          truth[list(SUPERCLASSES)].to_numpy())

    # the logged classifier loads and gives the saved one's outputs
    logged = mlflow.pytorch.load_model(tags["ecgtransfer.model_uri"]).eval()
    saved = load_classifier(tmp_path / "run" / "model.pt")
    x = torch.from_numpy(np.stack([ptbxl_labelled[i][:, ::5] for i in range(4)]).copy())
    with torch.no_grad():
        assert torch.allclose(logged(x), saved(x), atol=1e-5)
    assert len(saved.trunks) == 2 and saved.meta["task"] == "multi_label"
    contexts = {i.dataset.name: i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"ptbxl:train": "training", "ptbxl:val": "validation",
                        "ptbxl:test": "testing"}


def test_mlflow_references_load_the_plain_weights_never_the_pickle(pretrained, monkeypatch):
    """A run id, a models:/ URI and a runs:/ URI give the same regressor as its model.pt file,
    read from the plain weights logged beside the MLflow model: unpickling is never tried."""
    import mlflow.pytorch

    from ecgtransfer import tracking
    from ecgtransfer.transfer import load_sources

    def refuse(*args, **kwargs):
        raise AssertionError("a logged model was unpickled")

    monkeypatch.setattr(mlflow.pytorch, "load_model", refuse)
    tracker = tracking.Tracker(pretrained["uri"])
    qrs = pretrained["results"]["qrs"]
    expected = load_regressor(qrs.path / "model.pt").state_dict()
    uri = _client(pretrained["uri"]).get_run(qrs.run_id).data.tags["ecgtransfer.model_uri"]
    for ref in (qrs.run_id, uri, f"runs:/{qrs.run_id}/regressor"):
        (source,) = load_sources(ref, tracker=tracker)
        got = source.regressor.state_dict()
        assert source.run_id == qrs.run_id and source.name == "qrs", ref
        assert all(torch.equal(expected[k], got[k]) for k in expected), ref


def test_frozen_single_keeps_the_pretrained_trunk(ptbxl_labelled, pretrained, tmp_path):
    qrs = pretrained["folder"] / "qrs"
    config = _config(ptbxl_labelled, pretrained, tmp_path, sources=[str(qrs)], freeze="frozen",
                     bootstrap=0)
    torch.manual_seed(99)
    caller = torch.get_rng_state()
    result = run_stage("finetune", config).details
    assert torch.equal(torch.get_rng_state(), caller)  # library code leaves the caller's RNG
    trained = load_classifier(tmp_path / "run" / "model.pt")
    source = load_regressor(qrs / "model.pt")
    before, after = _trunk_state(source), _trunk_state(trained.trunks[0])
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm statistics too
    assert result.intervals == {} and np.isfinite(result.test["accuracy"])
    run = _client(pretrained["uri"]).get_run(result.run_id)
    assert run.data.tags["ecgtransfer.source_runs"] == pretrained["results"]["qrs"].run_id


def test_full_scratch_and_train_fraction(ptbxl_labelled, pretrained, tmp_path):
    qrs = pretrained["folder"] / "qrs"
    full = run_stage("finetune", _config(ptbxl_labelled, pretrained, tmp_path / "a",
                                         sources=[str(qrs)], epochs=1, bootstrap=0,
                                         experiment="filters")).details
    tuned = load_classifier(tmp_path / "a" / "run" / "model.pt")
    source = load_regressor(qrs / "model.pt")
    assert any(not torch.equal(v, _trunk_state(tuned.trunks[0])[k])
               for k, v in _trunk_state(source).items() if v.is_floating_point())

    def scratch(folder):
        return run_stage("finetune", _config(
            ptbxl_labelled, pretrained, folder, sources=[str(qrs)], strategy="scratch",
            train_fraction=0.5, epochs=1, bootstrap=0, experiment="filters")).details

    one, two = scratch(tmp_path / "b"), scratch(tmp_path / "c")
    assert abs(one.counts["train"]["used"] / full.counts["train"]["used"] - 0.5) < 0.2
    assert one.counts["val"] == full.counts["val"] and one.counts["test"] == full.counts["test"]
    np.testing.assert_equal(one.test, two.test)  # seeded: the same numbers again
    fresh = load_classifier(tmp_path / "b" / "run" / "model.pt")
    assert fresh.meta["sources"][0]["model"] == source.meta["model"]
    assert fresh.num_features == tuned.num_features
    client = _client(pretrained["uri"])
    tags = client.get_run(one.run_id).data.tags
    assert tags["ecgtransfer.strategy"] == "scratch" and tags["ecgtransfer.source"] == "none"
    assert tags["ecgtransfer.architecture_from"] == str(qrs)  # borrowed, in its own tag
    assert not any(k.startswith("ecgtransfer.source_") for k in tags)  # no pretraining source
    assert tags["mlflow.note.content"].startswith("From scratch (resnet1d_fast, randomly")

    # filters as the MLflow UI runs them find exactly the intended runs, and a param and a tag
    # of the same setting agree
    exp = client.get_experiment_by_name("filters").experiment_id

    def found(query: str) -> set:
        return {r.info.run_id for r in client.search_runs([exp], query)}

    assert found("tags.`ecgtransfer.source` = 'none'") == {one.run_id, two.run_id}
    assert found("tags.`ecgtransfer.source` LIKE 'ptbxl%'") == {full.run_id}
    assert found("tags.`ecgtransfer.strategy` = 'single'") == {full.run_id}
    for value, runs in (("0.5", {one.run_id, two.run_id}), ("1", {full.run_id})):
        assert found(f"params.train_fraction = '{value}'") == runs
        assert found(f"tags.`ecgtransfer.train_fraction` = '{value}'") == runs
    assert found("params.seed = '0'") == found("tags.`ecgtransfer.seed` = '0'") == {
        full.run_id, one.run_id, two.run_id}
    assert found("params.seed = '1'") == set()


def test_resume_reuses_a_finished_run_and_refuses_other_settings(ptbxl_labelled, pretrained,
                                                                  tmp_path):
    sources = [str(pretrained["folder"] / "hr")]
    config = _config(ptbxl_labelled, pretrained, tmp_path, sources=sources, epochs=1, bootstrap=0)
    first = run_stage("finetune", config).details
    again = run_stage("finetune", config, resume=True).details
    assert again.reused and again.run_id == first.run_id
    np.testing.assert_equal(again.test, first.test)  # NaN (a class absent from test) included
    with pytest.raises(ConfigError, match="holds a finetune run already"):
        run_stage("finetune", config).details
    changed = _config(ptbxl_labelled, pretrained, tmp_path, sources=sources, epochs=1,
                      bootstrap=0, lr=0.01)
    with pytest.raises(ConfigError, match="--resume: lr is 0.01 now"):
        run_stage("finetune", changed, resume=True).details


def test_bad_sources_and_stores_fail_with_one_line(ptbxl_labelled, deepfake_labelled, pretrained,
                                                   tmp_path, cli):
    store = str(ptbxl_labelled.path)
    common = ["--tracking-uri", pretrained["uri"], "--out", str(tmp_path / "run"), "--split", "B"]
    cases = [
        (["--store", store, "--from", "0123456789abcdef0123456789abcdef"], "no such MLflow run"),
        (["--store", store, "--from", str(pretrained["folder"] / "qrs"), "--model",
          "inception1d"], "its trunk is a resnet1d_fast, not the model inception1d"),
        (["--store", str(deepfake_labelled.path), "--from", str(pretrained["folder"] / "qrs")],
         "no diagnostic labels"),
        (["--store", store, "--from", pretrained["parent"]], "strategy single takes one trunk"),
        (["--store", store, "--from", str(pretrained["folder"] / "qrs"), "--strategy",
          "combined"], "strategy combined takes two or more"),
        (["--store", store, "--strategy", "combined"], "sources: strategy combined needs"),
        (["--store", store, "--from", str(tmp_path)], "holds no model.pt"),
    ]
    for args, message in cases:
        done = cli("finetune", "-q", *args, *common)
        assert done.returncode == 2, args
        assert message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "run").exists()  # nothing written by a run that could not start


@pytest.mark.slow
def test_torchrun_gradual_two_processes_on_cpu(ptbxl_labelled, pretrained, tmp_path):
    """Freezing and unfreezing mid-run re-wrap DDP (a stale wrapper waits for gradients that
    frozen parameters never get, and fails)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "29519", "-m", "ecgtransfer", "finetune", "-q",
         "--store", str(ptbxl_labelled.path), "--from", str(pretrained["folder"] / "qrs"),
         "--split", "B", "--freeze", "gradual", "--frozen-epochs", "1", "--epochs", "2",
         "--batch-size", "16", "--device", "cpu", "--out", str(tmp_path / "run"),
         "--tracking-uri", pretrained["uri"], "--experiment", "ft-ddp", "--set", "bootstrap=20"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    client = _client(pretrained["uri"])
    runs = client.search_runs([client.get_experiment_by_name("ft-ddp").experiment_id])
    assert len(runs) == 1 and runs[0].data.params["world_size"] == "2"
    assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id,
                                                            "val_macro_auroc")) == [1, 2]
    assert proc.stdout.count("MLflow run") == 1


def test_killed_gradual_run_resumes_to_the_same_weights(ptbxl_labelled, pretrained, tmp_path,
                                                        monkeypatch):
    """Killed in epoch 3, after the trunk was unfrozen in epoch 2: the resumed run unfreezes it
    again and ends where an uninterrupted run does."""
    from ecgtransfer.training.loop import Trainer

    kw = dict(sources=[str(pretrained["folder"] / "qrs")], freeze="gradual", frozen_epochs=1,
              epochs=3, bootstrap=0, patience=0)
    whole = run_stage("finetune", _config(ptbxl_labelled, pretrained, tmp_path / "a", **kw)).details
    original = Trainer._train_epoch

    def dies_in_epoch_3(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, epoch)

    killed = _config(ptbxl_labelled, pretrained, tmp_path / "b", **kw)
    monkeypatch.setattr(Trainer, "_train_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run_stage("finetune", killed).details
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    assert not (tmp_path / "b" / "run" / "model.pt").exists()
    resumed = run_stage("finetune", killed, resume=True).details
    a = load_classifier(tmp_path / "a" / "run" / "model.pt").state_dict()
    b = load_classifier(tmp_path / "b" / "run" / "model.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    from ecgtransfer.training.checkpoint import load_checkpoint

    last_a = load_checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")["model"]
    last_b = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)  # the last epoch's, too
    np.testing.assert_equal(resumed.test, whole.test)
    steps = [m.step for m in _client(pretrained["uri"]).get_metric_history(resumed.run_id,
                                                                             "val_loss")]
    assert sorted(steps) == [1, 2, 3]


def test_scratch_names_its_size_without_pretrained_trunks(ptbxl_labelled, pretrained, tmp_path):
    """A scratch baseline the size of combined needs no pretrain stage: trunks=2 builds two
    random trunks of the model; the run says so in its tags and name."""
    config = _config(ptbxl_labelled, pretrained, tmp_path, strategy="scratch", trunks=2,
                     epochs=1, bootstrap=0, fs=100.0, experiment="sizes")
    result = run_stage("finetune", config).details
    assert len(load_classifier(tmp_path / "run" / "model.pt").trunks) == 2
    run = _client(pretrained["uri"]).get_run(result.run_id)
    assert run.data.tags["ecgtransfer.trunks"] == "2" and run.data.tags["ecgtransfer.source"] == "none"
    assert run.data.tags["mlflow.runName"] == "scratch x2 f1 s0"
    with pytest.raises(ConfigError, match="trunks: only for scratch without --from"):
        FinetuneConfig(store="s", sources=["a"], trunks=2)


# ---- cross-validation ---------------------------------------------------------------------
def test_cv_folds_keep_patients_apart_and_test_every_record_once(ptbxl_store, deepfake_labelled):
    from ecgtransfer.data.splits import cv_folds, cv_parts

    index = ptbxl_store.index
    parts = cv_parts(index, 5)  # PTB-XL: strat_folds 1+6, 2+7, ...
    np.testing.assert_array_equal(parts, (index["strat_fold"].to_numpy(int) - 1) % 5)
    for how, data in (("folds", index), ("random", index.drop(columns=["strat_fold"])),
                      ("auto", deepfake_labelled.index)):
        folds = cv_folds(data, 4, how)
        tested = np.concatenate([f["test"] for f in folds])
        assert sorted(tested) == list(range(len(data)))  # every record tested exactly once
        groups = (data["patient_id"].astype(str).to_numpy() if "patient_id" in data.columns
                  else data["record_id"].astype(str).to_numpy())
        for i, f in enumerate(folds):
            np.testing.assert_array_equal(f["val"], folds[(i + 1) % 4]["test"])
            sides = [set(groups[f[s]]) for s in ("train", "val", "test")]
            assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
            assert len(f["train"]) + len(f["val"]) + len(f["test"]) == len(data)
        sizes = [len(np.unique(groups[f["test"]])) for f in folds]
        if how != "folds":  # dealt round-robin: patients per fold differ by one at most
            assert max(sizes) - min(sizes) <= 1
    half = cv_parts(index, 3, "B")
    assert (half[index["half"].to_numpy() == "A"] == -1).all()
    with pytest.raises(ValueError, match="at least 3 folds"):
        cv_parts(index, 2)
    with pytest.raises(ValueError, match="PTB-XL has 10 folds"):
        cv_parts(index, 11)
    with pytest.raises(ConfigError, match="cv: 0 .* or at least 3 folds"):
        FinetuneConfig(store="s", strategy="scratch", cv=2)


@pytest.fixture(scope="module")
def cross_validated(ptbxl_labelled, pretrained, tmp_path_factory, ptbxl_root):
    """Scratch and the pretrained QRS trunk, 3-fold cross-validated on half B, seeds 0 and 1."""
    folder = tmp_path_factory.mktemp("cv")
    results = {}
    for strategy, sources in (("scratch", []), ("single", [str(pretrained["folder"] / "qrs")])):
        for seed in (0, 1):
            config = FinetuneConfig(
                store=str(ptbxl_labelled.path), split="B", cv=3, task="multi_label",
                strategy=strategy, sources=sources, fs=None if sources else 100.0, seed=seed,
                epochs=1, batch_size=32, device="cpu", bootstrap=50,
                out=str(folder / f"{strategy}{seed}"), tracking_uri=pretrained["uri"],
                experiment="cv")
            results[strategy, seed] = run_stage("finetune", config).details
    return {"folder": folder, "results": results, "uri": pretrained["uri"],
            "scp": ptbxl_root / "scp_statements.csv"}


def test_cross_validation_pools_the_folds_out_of_fold(cross_validated, ptbxl_labelled):
    from ecgtransfer.data.splits import cv_parts
    from ecgtransfer.training.metrics import classification_metrics

    result = cross_validated["results"]["single", 0]
    client = _client(cross_validated["uri"])
    run = client.get_run(result.run_id)
    tags = run.data.tags
    assert (tags["ecgtransfer.evaluation"], tags["ecgtransfer.cv"]) == ("cv", "3")
    assert tags["ecgtransfer.source_targets"] == "qrs" and "ecgtransfer.fold" not in tags
    assert run.info.run_name == "single qrs f1 s0"
    oof = pd.read_csv(result.path / "oof_predictions.csv", dtype={"record_id": str})
    index = ptbxl_labelled.index
    usable = (cv_parts(index, 3, "B") >= 0) & (index[list(SUPERCLASSES)].sum(axis=1) > 0).to_numpy()
    assert sorted(oof["record_id"]) == sorted(index["record_id"][usable])  # each once
    parts = dict(zip(index["record_id"], cv_parts(index, 3, "B") + 1))
    assert (oof["fold"] == oof["record_id"].map(parts)).all()  # tested in its own fold
    expected = classification_metrics(oof[[f"p_{c}" for c in SUPERCLASSES]].to_numpy(),
                                      oof[[f"true_{c}" for c in SUPERCLASSES]].to_numpy(),
                                      list(SUPERCLASSES), multilabel=True)
    for m in ("macro_auroc", "accuracy", "macro_f1"):  # the metrics are the pooled ones
        assert run.data.metrics[f"test_{m}"] == pytest.approx(expected[m])
        assert result.test[m] == pytest.approx(expected[m])
    assert int(run.data.params["data.n_test"]) == len(oof)
    folds = client.search_runs([run.info.experiment_id],
                               f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert sorted(f.data.tags["ecgtransfer.fold"] for f in folds) == ["1", "2", "3"]
    assert [f["run_id"] for f in result.folds] == [
        f.info.run_id for f in sorted(folds, key=lambda f: f.data.tags["ecgtransfer.fold"])]
    for f in folds:  # a fold keeps its weights as a file, not as an MLflow model
        assert "ecgtransfer.model_uri" not in f.data.tags
        assert "model.pt" in {a.path for a in client.list_artifacts(f.info.run_id)}
        assert int(f.data.params["data.n_test"]) == (oof["fold"] == int(f.data.tags["ecgtransfer.fold"])).sum()


def test_a_killed_cross_validation_resumes_at_its_fold(ptbxl_labelled, pretrained, tmp_path,
                                                       monkeypatch):
    from ecgtransfer.stages import trained

    config = FinetuneConfig(store=str(ptbxl_labelled.path), split="B", cv=3, strategy="scratch",
                            fs=100.0, epochs=1, batch_size=32, device="cpu", bootstrap=0,
                            out=str(tmp_path / "cv"), tracking_uri=pretrained["uri"],
                            experiment="cv-resume")
    real = trained.TrainedStage.train
    calls = []
    kill = [True]

    def killed_in_fold_two(self, job, parent=None):
        calls.append(job.folder.name)
        if job.folder.name == "fold2" and kill[0]:
            raise KeyboardInterrupt
        return real(self, job, parent)

    monkeypatch.setattr(trained.TrainedStage, "train", killed_in_fold_two)
    with pytest.raises(KeyboardInterrupt):
        run_stage("finetune", config).details
    parent = json.loads((tmp_path / "cv" / "parent_run.json").read_text())["run_id"]
    client = _client(pretrained["uri"])
    assert client.get_run(parent).info.status == "KILLED"
    assert not (tmp_path / "cv" / "result.json").exists()
    calls.clear()
    kill[0] = False
    result = run_stage("finetune", config, resume=True).details
    assert calls == ["fold2", "fold3"]  # fold 1 was finished: reused
    assert result.run_id == parent and client.get_run(parent).info.status == "FINISHED"
    assert len(pd.read_csv(tmp_path / "cv" / "oof_predictions.csv")) == result.counts["test"]["used"]


def test_compare_bootstraps_records_and_seeds_paired_by_fold(cross_validated, cli):
    """compare reads the cross-validations (not their folds), resamples records and seeds from
    their logged predictions, and pairs single against scratch on the same records, folds and
    seeds."""
    from ecgtransfer.comparison.statistics import (Bootstrap, comparison_table,
                                                   paired_differences)
    from ecgtransfer.stages.compare import finetune_runs, run_predictions
    from ecgtransfer.tracking import Tracker
    from ecgtransfer.training.metrics import bootstrap_draws, classification_metrics

    tracker = Tracker(cross_validated["uri"])
    runs = finetune_runs(tracker, ["cv"])
    assert len(runs) == 4 and set(runs["evaluation"]) == {"cv"}
    predictions = run_predictions(tracker, runs)
    assert set(predictions) == set(runs["run_id"])
    boot = Bootstrap(predictions, n_resamples=200, seed=3)
    table = comparison_table(runs, bootstrap=boot).set_index("strategy")
    n = len(predictions[runs["run_id"].iloc[0]])
    assert (table["interval"] == f"bootstrap: {n} records x 2 seeds, 3 folds").all()

    # by hand: every resample draws seeds and records, averaging the metric over drawn seeds
    single = runs[runs["strategy"] == "single"].sort_values("seed")
    tables = [predictions[r] for r in single["run_id"]]
    p = [t[[f"p_{c}" for c in SUPERCLASSES]].to_numpy() for t in tables]
    y = tables[0][[f"true_{c}" for c in SUPERCLASSES]].to_numpy()
    assert all((t["record_id"].to_numpy() == tables[0]["record_id"].to_numpy()).all() for t in tables)
    order = np.argsort(tables[0]["record_id"].to_numpy())  # the bootstrap sorts by record id
    p, y = [q[order] for q in p], y[order]
    values = [np.mean([classification_metrics(p[s][rows], y[rows], list(SUPERCLASSES), True)
                       ["macro_auroc"] for s in seeds])
              for seeds, rows in bootstrap_draws(n, 2, n_resamples=200, seed=3)]
    low, high = np.percentile(values, [2.5, 97.5])
    assert table.loc["single", "macro_auroc_low"] == pytest.approx(low)
    assert table.loc["single", "macro_auroc_high"] == pytest.approx(high)
    assert table.loc["single", "macro_auroc"] == pytest.approx(single["macro_auroc"].mean())

    pairs: list[dict] = []
    (diff,) = paired_differences(runs, bootstrap=boot, pairs=pairs).itertuples()
    assert (diff.pairs, diff.seeds, diff.folds, diff.baseline) == (6, 2, 3, "scratch")
    assert len(pairs) == 6 and diff.wins == sum(p["delta"] > 0 for p in pairs)
    assert diff.delta == pytest.approx(table.loc["single", "macro_auroc"]
                                       - table.loc["scratch", "macro_auroc"])
    assert diff.delta_low <= diff.delta <= diff.delta_high

    # the same predictions under both names: no difference, and no width from pairing
    twin = runs.copy()
    scratch_of = dict(runs[runs["strategy"] == "scratch"][["seed", "run_id"]].to_numpy())
    is_single = twin["strategy"] == "single"
    twin.loc[is_single, "run_id"] = twin.loc[is_single, "seed"].map(scratch_of)
    (same,) = paired_differences(twin, bootstrap=Bootstrap(predictions, 200, 3)).itertuples()
    assert (same.delta, same.delta_low, same.delta_high, same.wins) == (0, 0, 0, 0)

    # seeds tested on different records (a random split per seed) cannot be stacked: t over seeds
    partial = dict(predictions)
    partial[single["run_id"].iloc[1]] = partial[single["run_id"].iloc[1]].iloc[1:]
    fallback = comparison_table(runs, bootstrap=Bootstrap(partial, 50, 0)).set_index("strategy")
    assert fallback.loc["single", "interval"] == "t over 2 seeds"
    assert fallback.loc["scratch", "interval"].startswith("bootstrap")
    assert paired_differences(runs, bootstrap=Bootstrap(partial, 50, 0))["interval"].tolist() == [
        "t over 2 seeds"]

    done = cli("compare", "--experiment", "cv", "--tracking-uri", cross_validated["uri"],
               "--bootstrap", "200", "--out", "c")
    assert done.returncode == 0, done.stderr
    assert "single qrs from ptbxl-1.0.3 (full) vs scratch at train fraction 1: " in done.stdout
    assert f"{n} records x 2 seeds, 3 folds; higher in {diff.wins} of 6 fold-seed pairs" in done.stdout


def test_compare_per_class_aurocs_and_their_paired_differences(cross_validated):
    """Per class: AUROC (mean over seeds) with its interval and, for transfer, the paired
    difference to scratch; the classes an interval defines are named so, with no typo."""
    from ecgtransfer.comparison.report import plot_per_class
    from ecgtransfer.comparison.statistics import INTERVAL_OF, Bootstrap, per_class
    from ecgtransfer.stages.compare import finetune_runs, run_predictions
    from ecgtransfer.tracking import Tracker
    from ecgtransfer.data.challenge2021 import load_scoring
    from ecgtransfer.training.metrics import classification_metrics

    tracker = Tracker(cross_validated["uri"])
    runs = finetune_runs(tracker, ["cv"])
    predictions = run_predictions(tracker, runs)
    table = per_class(runs, Bootstrap(predictions, n_resamples=50, seed=0))
    assert len(table) == 2 * len(SUPERCLASSES) and set(table["class"]) == set(SUPERCLASSES)
    single = table[table["strategy"] == "single"].set_index("class")
    scratch = table[table["strategy"] == "scratch"].set_index("class")
    assert np.isfinite(single["delta"]).all() and scratch["delta"].isna().all()
    by_seed = []
    for run_id in runs[runs["strategy"] == "single"]["run_id"]:
        t = predictions[run_id]
        by_seed.append(classification_metrics(t[[f"p_{c}" for c in SUPERCLASSES]].to_numpy(),
                                              t[[f"true_{c}" for c in SUPERCLASSES]].to_numpy(),
                                              list(SUPERCLASSES), multilabel=True))
    for c in SUPERCLASSES:
        assert single.loc[c, "auroc"] == pytest.approx(np.mean([v[f"auroc_{c}"] for v in by_seed]))
        assert single.loc[c, "delta"] == pytest.approx(single.loc[c, "auroc"] - scratch.loc[c, "auroc"])
        assert single.loc[c, "auroc_low"] <= single.loc[c, "auroc"] <= single.loc[c, "auroc_high"]
    # of the superclasses only CD (conduction disturbances: AV and bundle blocks) is interval-defined
    assert set(table.loc[table["defined_by"] != "", "class"]) == {"CD"}
    assert set(table.loc[table["class"] == "CD", "defined_by"]) == {"PR/QRS"}
    assert plot_per_class(table).axes
    statements = set(pd.read_csv(cross_validated["scp"], index_col=0).index)
    known = set(load_scoring().names) | statements | set(SUPERCLASSES)
    assert set(INTERVAL_OF) <= known, set(INTERVAL_OF) - known


def test_a_benchmark_task_trains_on_its_statements(ptbxl_labelled, pretrained, tmp_path):
    """--task rhythm: the classes are the rhythm statements the store's records have, the head
    has one output per class, records without one are counted out."""
    from ecgtransfer.training.targets import statement_targets

    classes, targets, reasons = statement_targets(ptbxl_labelled.index, "rhythm")
    assert "SR" in classes and "AFIB" in classes and targets.shape == (350, len(classes))
    assert (reasons == "no rhythm statement").sum() == (targets.sum(axis=1) == 0).sum() > 0
    config = _config(ptbxl_labelled, pretrained, tmp_path, strategy="scratch", task="rhythm",
                     fs=100.0, epochs=1, bootstrap=0, split="folds")
    result = run_stage("finetune", config).details
    model = load_classifier(tmp_path / "run" / "model.pt")
    assert model.meta["classes"] == list(classes) and model.meta["num_outputs"] == len(classes)
    assert result.counts["test"]["excluded"].get("no rhythm statement", 0) >= 0
    assert np.isfinite(result.test["macro_auroc"])
    with pytest.raises(ValueError, match=r"the index lacks scp_form\); prepare the store again"):
        statement_targets(ptbxl_labelled.index.drop(columns=["scp_form"]), "form", "s")
