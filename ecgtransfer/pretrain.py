"""The pretrain stage: regress HR/PR/QRS/QT from 8-lead ECGs, one model per target (as the
study) or one multi-output model, tracked in MLflow.

Run folder (``config.out``)::

    config.yaml            the resolved config
    <name>/                one per model: ``qrs``, ``hr``, ... or ``hr+pr+qrs+qt`` (multi-output)
        checkpoint.pt      the last finished epoch: everything ``--resume`` needs
        model.pt           the best epoch's regressor (mV in, ms/bpm out), when finished
        history.csv        per-epoch metrics
        result.json        run id, best epoch, test MAE: written last, marks the model done
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ecgtransfer.config import (TARGET_UNITS, ConfigError, PretrainConfig, check_run_folder,
                                to_dict, to_yaml)

__all__ = ["PretrainResult", "pretrain", "find_labels", "target_table"]

log = logging.getLogger(__name__)

# Settings that may change between a run and its resumption.
_RESUMABLE_CHANGES = ("num_workers", "device")


@dataclass
class PretrainResult:
    """One trained regressor."""

    name: str
    targets: list[str]
    path: Path
    run_id: str | None
    best_epoch: int
    test_mae: dict[str, float]
    counts: dict[str, Any] = field(default_factory=dict)
    reused: bool = False


def find_labels(store_path: Path, labels: str | None) -> Path:
    """The label file to use: ``labels`` or the store's only ``labels-*.csv``."""
    if labels:
        path = Path(labels)
        if not path.exists():
            raise FileNotFoundError(f"labels: {path} does not exist")
        return path
    found = sorted(p for p in store_path.glob("labels-*.csv") if ".shard-" not in p.name)
    if not found:
        raise FileNotFoundError(f"{store_path}: no label file; run `ecgtransfer label --store "
                                f"{store_path}` first or pass --labels")
    if len(found) > 1:
        raise ConfigError(f"{store_path}: {len(found)} label files ({', '.join(p.name for p in found)}); "
                          "pass --labels to choose one")
    return found[0]


def target_table(index: pd.DataFrame, labels: pd.DataFrame, targets: list[str],
                 labels_path: Path | str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Values of ``targets`` for every row of a store's index, and why each is unusable.

    Returns
    -------
    values : numpy.ndarray
        ``(n_records, n_targets)`` float64, NaN where unusable.
    reasons : numpy.ndarray
        Same shape, object: ``""`` for a usable value, else ``"no label row"``, ``"index:
        <problem>"`` or the labeller's status (``"flat lead V2"``, ...).
    """
    columns = [f"{t}_{TARGET_UNITS[t]}" for t in targets]
    labels = labels.drop_duplicates("record_id", keep="last").set_index("record_id")
    ids = index["record_id"].astype(str)
    if not ids.isin(labels.index).any():
        raise ValueError(f"{labels_path}: none of its rows is a record of this store (labels "
                         "made for another store?)")
    rows = labels.reindex(ids)
    values = rows[columns].to_numpy(np.float64)
    reasons = np.full(values.shape, "", dtype=object)
    for j, t in enumerate(targets):
        status = rows[f"{t}_status"].fillna("").astype(str).to_numpy()
        bad = (status != "ok") | ~np.isfinite(values[:, j])
        reasons[bad, j] = np.where(status[bad] == "", "label NaN", status[bad])
    missing = ~ids.isin(labels.index).to_numpy()
    reasons[missing, :] = "no label row"
    if "problem" in index.columns:
        problem = index["problem"].fillna("").astype(str).to_numpy()
        for i in np.flatnonzero(problem != ""):
            reasons[i, :] = f"index: {problem[i]}"
    values[reasons != ""] = np.nan
    return values, reasons


def _labeller_hash(labels_path: Path) -> str:
    sidecar = labels_path.with_suffix(".json")
    if sidecar.exists():
        try:
            return str(json.loads(sidecar.read_text()).get("config_hash", ""))
        except (OSError, ValueError):
            pass
    stem = labels_path.stem
    return stem.split("-", 1)[1] if stem.startswith("labels-") else ""


def _groups(config: PretrainConfig) -> list[list[str]]:
    return [list(config.targets)] if config.multi_output else [[t] for t in config.targets]


class _Stage:
    """The work shared by every model of one ``pretrain`` call."""

    def __init__(self, config: PretrainConfig, progress: bool):
        from ecgtransfer.features.labels import read_labels
        from ecgtransfer.data.splits import split_positions
        from ecgtransfer.data.store import SignalStore
        from ecgtransfer.training.distributed import init_distributed, pick_device

        if not config.store:
            raise ConfigError("store: no signal store given (--store or store: in the config)")
        self.config = config
        self.progress = progress
        self.store = SignalStore(config.store)
        self.labels_path = find_labels(self.store.path, config.labels)
        self.labels = read_labels(self.labels_path)
        self.splits = split_positions(self.store.index, config.split, seed=config.seed,
                                      fractions=config.split_fractions, where=str(self.store.path))
        self.device = pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = init_distributed(self.device)
        self.fs = float(config.fs or self.store.fs)
        lengths = self.store.index["n_samples"].to_numpy()
        median = float(np.median(lengths)) if len(lengths) else 0.0
        self.n_samples = int(round(median * self.fs / self.store.fs))
        self.out = Path(config.out)
        self.extra_tags: dict[str, str] = {}

    @property
    def dataset(self) -> str:
        """What the store holds: its identity's ``dataset`` (e.g. ``ptbxl``), else its source."""
        meta = self.store.meta
        return str((meta.get("identity") or {}).get("dataset") or meta.get("source", ""))

    def tags(self, targets: list[str]) -> dict[str, str]:
        from ecgtransfer.tracking import TAG, code_version, store_hash

        return {TAG + "stage": "pretrain", TAG + "dataset": self.dataset,
                TAG + "source": str(self.store.meta.get("source", "")), TAG + "store": str(self.store.path.resolve()),
                TAG + "store_hash": store_hash(self.store.path),
                TAG + "labels": str(self.labels_path.resolve()),
                TAG + "labeller_config_hash": _labeller_hash(self.labels_path),
                TAG + "code_version": code_version(), TAG + "model": self.config.model,
                TAG + "targets": ",".join(targets), **self.extra_tags}

    def select(self, targets: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
        """Usable positions per split, the target values, and the exclusion counts."""
        values, reasons = target_table(self.store.index, self.labels, targets, self.labels_path)
        usable = (reasons == "").all(axis=1)
        limit = self.config.max_train_records
        chosen, counts = {}, {}
        for split, pos in self.splits.items():
            keep = pos[usable[pos]]
            if split == "train" and limit and len(keep) > limit:
                rng = np.random.default_rng(self.config.seed)
                keep = np.sort(rng.choice(keep, limit, replace=False))
            chosen[split] = keep
            excluded: dict[str, int] = {}
            for i in pos[~usable[pos]]:
                first = next(r for r in reasons[i] if r)
                if first != "no label row" and not first.startswith("index:"):
                    first = "label NaN or flagged"
                excluded[first] = excluded.get(first, 0) + 1
            counts[split] = {"records": int(len(pos)), "used": int(len(keep)),
                             "excluded": excluded}
        for split in ("train", "val"):
            if len(chosen[split]) < 2:
                raise ValueError(f"{self.store.path}: {len(chosen[split])} usable {split} records "
                                 f"for {'+'.join(targets)} (split {self.config.split!r}); "
                                 "need at least 2")
        return chosen, values, counts


def pretrain(config: PretrainConfig, *, resume: bool = False, progress: bool = True,
             parent_run_id: str | None = None, tags: dict[str, str] | None = None
             ) -> list[PretrainResult]:
    """Train the regressors ``config`` describes; returns one result per model.

    Parameters
    ----------
    config : PretrainConfig
    resume : bool
        Continue an interrupted run in ``config.out`` (same settings); finished models are
        reused. Without it, a folder that holds a run already is an error.
    progress : bool
        Progress bars.
    parent_run_id : str, optional
        Nest the stage's MLflow run(s) under this run (a pipeline's).
    tags : dict, optional
        Extra tags of every run.

    Notes
    -----
    The stage seeds torch's global generator with ``config.seed`` before building each model
    (dropout and initialisation draw from it). Under ``torchrun`` every process calls this;
    rank 0 alone writes files and talks to MLflow.
    """
    from ecgtransfer import tracking
    from ecgtransfer.models import create_model
    from ecgtransfer.training.distributed import barrier, shutdown

    stage = _Stage(config, progress)
    stage.extra_tags = dict(tags or {})
    out = stage.out
    groups = _groups(config)
    parent_id = parent_run_id
    try:
        # Check every model's data before anything is written.
        selections = [stage.select(targets) for targets in groups]
        for targets in groups:
            create_model(config.model, in_channels=stage.store.n_leads,
                         num_outputs=len(targets), **config.model_kwargs)
        if stage.dist.is_main:
            check_run_folder(out, config, resume, "pretrain", _RESUMABLE_CHANGES)
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(to_yaml(config))
            tracking.setup(config.tracking_uri, config.experiment)
            if len(groups) > 1:
                parent_id = _parent_run(stage, out, parent_run_id)
        barrier(stage.dist)
        results = [_train_one(stage, targets, selection, resume, parent_id)
                   for targets, selection in zip(groups, selections)]
        if parent_id is not None and parent_id != parent_run_id:
            import mlflow

            mlflow.MlflowClient().set_terminated(parent_id, "FINISHED")
        return results
    finally:
        shutdown(stage.dist)


def _parent_run(stage: _Stage, out: Path, outer: str | None) -> str:
    import mlflow

    from ecgtransfer import tracking

    marker = out / "parent_run.json"
    run_id = json.loads(marker.read_text())["run_id"] if marker.exists() else None
    config = stage.config
    name = config.run_name or f"pretrain {config.model} {','.join(config.targets)}"
    tags = stage.tags(list(config.targets))
    with tracking.open_run(run_id, run_name=name, tags=tags, parent_run_id=outer) as run:
        tracking.log_params(to_dict(config))
        tracking.log_text(to_yaml(config), "config.yaml")
        run_id = run.info.run_id
    # Left RUNNING until every child is done.
    mlflow.MlflowClient().update_run(run_id, status="RUNNING")
    marker.write_text(json.dumps({"run_id": run_id}))
    return run_id


def _train_one(stage: _Stage, targets: list[str], selection: tuple, resume: bool,
               parent_id: str | None) -> PretrainResult:
    from ecgtransfer.data.dataset import StoreDataset, fit_lead_stats
    from ecgtransfer.models import create_model, model_defaults

    config, dist = stage.config, stage.dist
    name = "+".join(targets)
    folder = stage.out / name
    done_marker = folder / "result.json"
    if done_marker.exists() and resume:
        info = json.loads(done_marker.read_text())
        log.info("%s: finished already (run %s); reused", folder, info.get("run_id"))
        return PretrainResult(name, targets, folder, info.get("run_id"), info["best_epoch"],
                              info["test_mae"], info.get("counts", {}), reused=True)
    chosen, values, counts = selection
    units = [TARGET_UNITS[t] for t in targets]
    lead_mean, lead_std = fit_lead_stats(stage.store, chosen["train"])
    train_y = values[chosen["train"]]
    t_mean, t_std = train_y.mean(axis=0), train_y.std(axis=0)
    t_std[t_std == 0] = 1.0

    def dataset(split: str) -> StoreDataset:
        z = ((values[chosen[split]] - t_mean) / t_std).astype(np.float32)
        return StoreDataset(stage.store, chosen[split], z, lead_mean, lead_std, stage.fs,
                            stage.n_samples)

    torch.manual_seed(config.seed)
    net = create_model(config.model, in_channels=stage.store.n_leads, num_outputs=len(targets),
                       **config.model_kwargs)
    meta = {"model": config.model, "model_kwargs": {**model_defaults(config.model), **config.model_kwargs},
            "targets": targets, "units": units, "fs": stage.fs, "n_samples": stage.n_samples,
            "leads": list(stage.store.leads), "dataset": stage.dataset}
    meta["model_kwargs"] = json.loads(json.dumps(meta["model_kwargs"]))
    summary = ", ".join(f"{s} {c['used']}" for s, c in counts.items())
    excluded = sum(sum(c["excluded"].values()) for c in counts.values())
    if dist.is_main:
        log.info("%s: %s records (%d left out: label NaN/flagged or unlabelled)", name, summary, excluded)
        folder.mkdir(parents=True, exist_ok=True)
        return _train_tracked(stage, targets, units, folder, net, meta, dataset, counts,
                              values, chosen, (lead_mean, lead_std, t_mean, t_std), resume, parent_id)
    _fit(stage, net, targets, units, t_mean, t_std, dataset, folder, resume, None)
    return PretrainResult(name, targets, folder, None, 0, {}, counts)


def _fit(stage: _Stage, net, targets, units, t_mean, t_std, dataset, folder: Path, resume: bool,
         on_epoch):
    from ecgtransfer.config import loop_config
    from ecgtransfer.training.loop import Trainer
    from ecgtransfer.training.tasks import RegressionTask

    config = stage.config
    task = RegressionTask(targets, units, t_mean, t_std, loss=config.loss)
    trainer = Trainer(net, task, dataset("train"), dataset("val"), loop_config(config),
                      device=stage.device, dist=stage.dist, checkpoint=folder / "checkpoint.pt",
                      on_epoch=on_epoch, desc="+".join(targets), progress=stage.progress)
    return trainer, task, trainer.fit(resume=resume)


def _train_tracked(stage, targets, units, folder, net, meta, dataset, counts, values, chosen,
                   norm, resume, parent_id) -> PretrainResult:
    import mlflow

    from ecgtransfer import plots, tracking
    from ecgtransfer.models.regressor import IntervalRegressor, save_regressor

    config = stage.config
    name = "+".join(targets)
    lead_mean, lead_std, t_mean, t_std = norm
    marker = folder / "run.json"
    run_id = json.loads(marker.read_text())["run_id"] if resume and marker.exists() else None
    run_name = config.run_name or f"pretrain {config.model} {name}"
    if parent_id is not None and config.run_name:
        run_name = f"{run_name} {name}"
    with tracking.open_run(run_id, run_name=run_name, tags=stage.tags(targets),
                           parent_run_id=parent_id) as run:
        marker.write_text(json.dumps({"run_id": run.info.run_id}))
        if run_id is None:
            params = to_dict(config)
            params["targets"] = targets
            params["model_kwargs"] = meta["model_kwargs"]
            tracking.log_params({**params, "input": {"fs": stage.fs, "n_samples": stage.n_samples,
                                                     "leads": meta["leads"]},
                                 "data": _count_params(counts), "device": str(stage.device),
                                 "world_size": stage.dist.world_size})
            tracking.log_text(to_yaml(config), "config.yaml")
            tracking.log_text(json.dumps(counts, indent=2), "data_counts.json")
            columns = [f"{t}_{TARGET_UNITS[t]}" for t in targets]
            table = pd.DataFrame(values, columns=columns)
            table.insert(0, "record_id", stage.store.index["record_id"].to_numpy())
            tracking.log_inputs(stage.store.path, table, chosen,
                                targets=columns[0] if len(columns) == 1 else None)

        def on_epoch(metrics: dict[str, float]) -> None:
            mlflow.log_metrics({k: v for k, v in metrics.items() if k != "epoch"},
                               step=int(metrics["epoch"]))

        trainer, task, fit = _fit(stage, net, targets, units, t_mean, t_std, dataset, folder,
                                  resume, on_epoch)
        trainer.model.load_state_dict(fit.best_state)
        test = dataset("test")
        test_mae: dict[str, float] = {}
        if len(test):
            z, y = trainer.predict(test)
            pred, true = task.to_units(z), task.to_units(y)
            err = np.abs(pred - true).mean(axis=0)
            test_mae = {f"{t}_{u}": float(e) for t, u, e in zip(targets, units, err)}
            mlflow.log_metrics({f"test_mae_{k}": v for k, v in test_mae.items()})
            tracking.log_figure(plots.scatter_true_pred(true, pred, targets, units),
                                "plots/scatter_test.png")
        mlflow.log_metrics({"best_epoch": fit.best_epoch, "n_epochs": len(fit.history)})
        mlflow.set_tag(tracking.TAG + "stopped_early", str(fit.stopped_early).lower())
        tracking.log_figure(plots.learning_curves(fit.history, targets, units, fit.best_epoch),
                            "plots/learning_curves.png")
        history = pd.DataFrame(fit.history)
        history.to_csv(folder / "history.csv", index=False)
        mlflow.log_artifact(str(folder / "history.csv"))
        regressor = IntervalRegressor(trainer.model.cpu(), meta, lead_mean, lead_std, t_mean, t_std)
        save_regressor(regressor, folder / "model.pt")
        example = (stage.store[int(chosen["test"][0] if len(test) else chosen["val"][0])])
        example = _fit_length(example, stage)[None]
        model_uri = tracking.log_model(regressor, example)
        mlflow.set_tag(tracking.TAG + "model_uri", model_uri)
        result = {"run_id": run.info.run_id, "model_uri": model_uri, "targets": targets,
                  "best_epoch": fit.best_epoch, "best_val_score": fit.best_score,
                  "test_mae": test_mae, "counts": counts}
        (folder / "result.json").write_text(json.dumps(result, indent=2))
    shown = ", ".join(f"{k.split('_')[0].upper()} {v:.2f} {k.split('_')[1]}" for k, v in test_mae.items())
    log.info("%s: best epoch %d of %d; test MAE %s; MLflow run %s", name, fit.best_epoch,
             len(fit.history), shown or "(no test records)", run.info.run_id)
    return PretrainResult(name, targets, folder, run.info.run_id, fit.best_epoch, test_mae, counts)


def _fit_length(x: np.ndarray, stage: _Stage) -> np.ndarray:
    from ecgtransfer.data.transforms import resample

    if stage.fs != stage.store.fs:
        x = resample(x, stage.store.fs, stage.fs)
    n = stage.n_samples
    x = x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))
    return np.ascontiguousarray(x, dtype=np.float32)


def _count_params(counts: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for split, c in counts.items():
        out[f"n_{split}"] = c["used"]
        out[f"n_{split}_excluded"] = sum(c["excluded"].values())
    return out
