"""The finetune stage: pretrained regressor trunks (or the same architecture from scratch) under a
new head, trained on PTB-XL's five diagnostic superclasses, evaluated on the test fold with
bootstrap intervals, tracked in MLflow.

Run folder (``config.out``)::

    config.yaml            the resolved config
    checkpoint.pt          the last finished epoch: everything ``--resume`` needs
    run.json               the MLflow run id
    model.pt               the best epoch's classifier (mV in, logits out), when finished
    history.csv            per-epoch metrics
    test_predictions.csv   record id, truth and class probabilities of every test record
    result.json            run id, test metrics and intervals: written last, marks the run done
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

from ecgtransfer.config import (ConfigError, FinetuneConfig, check_run_folder, config_hash, to_dict,
                                to_yaml)
from ecgtransfer.data.ptbxl import SUPERCLASSES

__all__ = ["FinetuneResult", "finetune", "diagnostic_targets"]

log = logging.getLogger(__name__)

_RESUMABLE_CHANGES = ("num_workers", "device")


@dataclass
class FinetuneResult:
    """A fine-tuned classifier and its test-set evaluation."""

    path: Path
    run_id: str | None
    best_epoch: int
    test: dict[str, float]
    intervals: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    reused: bool = False


def setting_hash(config: FinetuneConfig) -> str:
    """12 hex digits of the settings that make runs comparable: all but the seed, the trunks'
    references (their source and targets are tagged apart), and where the run is written or
    logged."""
    return config_hash(config, exclude=("seed", "sources", "store", "out", "experiment",
                                         "tracking_uri", "run_name", "device", "num_workers"))


def diagnostic_targets(index: pd.DataFrame, task: str, where: str = "store"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Class targets of every row of a PTB-XL store's index, and why a row is unusable.

    Parameters
    ----------
    index : pandas.DataFrame
        The store's index, with one 0/1 column per superclass (``NORM`` ... ``HYP``).
    task : str
        ``single_label``: class index of records with exactly one superclass. ``multi_label``:
        the 0/1 row of records with at least one.
    where : str
        Names the store in errors.

    Returns
    -------
    targets : numpy.ndarray
        ``(n,)`` int64 (single-label; -1 where unusable) or ``(n, 5)`` float32.
    reasons : numpy.ndarray
        ``""`` for a usable row, else ``"no superclass"``, ``"several superclasses"`` or
        ``"index: <problem>"``.
    """
    missing = [c for c in SUPERCLASSES if c not in index.columns]
    if missing:
        raise ValueError(f"{where}: no diagnostic labels (the index lacks {', '.join(missing)}); "
                         "finetune needs a PTB-XL store (`ecgtransfer data prepare ptbxl`)")
    onehot = index[list(SUPERCLASSES)].fillna(0).to_numpy(np.int64)
    n_classes = onehot.sum(axis=1)
    reasons = np.full(len(index), "", dtype=object)
    reasons[n_classes == 0] = "no superclass"
    if task == "single_label":
        reasons[n_classes > 1] = "several superclasses"
        targets = np.where(n_classes == 1, onehot.argmax(axis=1), -1).astype(np.int64)
    else:
        targets = onehot.astype(np.float32)
    if "problem" in index.columns:
        problem = index["problem"].fillna("").astype(str).to_numpy()
        reasons[problem != ""] = [f"index: {p}" for p in problem[problem != ""]]
    return targets, reasons


def _class_weights(y: np.ndarray, multilabel: bool, where: str) -> np.ndarray:
    k = len(SUPERCLASSES)
    counts = y.sum(axis=0) if multilabel else np.bincount(y, minlength=k)
    absent = [c for c, n in zip(SUPERCLASSES, counts) if n == 0]
    if absent:
        raise ValueError(f"{where}: class_weights balanced, but no training record has "
                         f"{', '.join(absent)} (raise train_fraction)")
    if multilabel:
        return (len(y) - counts) / counts
    return len(y) / (k * counts)


class _Stage:
    """Store, labels, splits, trunks and model of one ``finetune`` call: everything checked
    before a file is written."""

    def __init__(self, config: FinetuneConfig, progress: bool):
        from ecgtransfer import tracking
        from ecgtransfer.data.splits import split_positions, subsample_patients
        from ecgtransfer.data.store import SignalStore
        from ecgtransfer.training.distributed import barrier, init_distributed, pick_device

        if not config.store:
            raise ConfigError("store: no signal store given (--store or store: in the config)")
        self.config = config
        self.progress = progress
        self.store = SignalStore(config.store)
        where = str(self.store.path)
        self.multilabel = config.task == "multi_label"
        self.targets, reasons = diagnostic_targets(self.store.index, config.task, where)
        splits = split_positions(self.store.index, "folds" if config.split == "auto" else config.split,
                                 seed=config.seed, fractions=config.split_fractions, where=where)
        usable = reasons == ""
        self.splits: dict[str, np.ndarray] = {}
        self.counts: dict[str, Any] = {}
        for split, pos in splits.items():
            keep = pos[usable[pos]]
            if split == "train":
                keep = subsample_patients(self.store.index, keep, config.train_fraction, config.seed)
            self.splits[split] = keep
            excluded = pd.Series(reasons[pos][~usable[pos]]).value_counts().to_dict()
            self.counts[split] = {"records": int(len(pos)), "used": int(len(keep)),
                                  "excluded": {str(k): int(v) for k, v in excluded.items()}}
        for split in ("train", "val"):
            if len(self.splits[split]) < 2:
                raise ValueError(f"{where}: {len(self.splits[split])} usable {split} records for "
                                 f"{config.task} (split {config.split!r}, train_fraction "
                                 f"{config.train_fraction}); need at least 2")
        self.device = pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = init_distributed(self.device)
        if self.dist.is_main:  # the tracking store exists before any rank reads runs from it
            tracking.setup(config.tracking_uri, config.experiment)
        barrier(self.dist)
        import mlflow

        mlflow.set_tracking_uri(tracking.tracking_uri(config.tracking_uri))
        self.sources = self._load_sources()
        self.out = Path(config.out)

    # ---- trunks ------------------------------------------------------------------------
    def _load_sources(self) -> list:
        from ecgtransfer.transfer import load_sources

        config = self.config
        sources = [s for ref in config.sources for s in load_sources(ref)]
        n = len(sources)
        if config.strategy == "single" and n != 1:
            names = ", ".join(f"{s.name} ({s.ref})" for s in sources)
            raise ConfigError(f"--from: strategy single takes one trunk, and {n} were given "
                              f"({names}); name one, or use --strategy combined")
        if config.strategy == "combined" and n < 2:
            raise ConfigError(f"--from: strategy combined takes two or more trunks, and {n} was "
                              "given; use --strategy single")
        for s in sources:
            meta = s.regressor.meta
            if config.model and meta["model"] != config.model:
                raise ConfigError(f"--from {s.ref}: its trunk is a {meta['model']}, not the "
                                  f"model {config.model} asked for")
            lacking = [lead for lead in meta["leads"] if lead not in self.store.leads]
            if lacking:
                raise ValueError(f"--from {s.ref}: the trunk takes lead(s) {', '.join(lacking)}, "
                                 f"which {self.store.path} lacks")
        return sources

    def _scratch_meta(self) -> dict[str, Any]:
        from ecgtransfer.models import DEFAULT_MODEL, create_model, model_defaults

        name = self.config.model or DEFAULT_MODEL
        create_model(name, in_channels=self.store.n_leads, **self.config.model_kwargs)  # checks kwargs
        fs = float(self.config.fs or self.store.fs)
        lengths = self.store.index["n_samples"].to_numpy()
        return {"model": name, "model_kwargs": {**model_defaults(name), **self.config.model_kwargs},
                "targets": [], "units": [], "fs": fs,
                "n_samples": int(round(float(np.median(lengths)) * fs / self.store.fs)),
                "leads": list(self.store.leads)}

    def build_model(self):
        """The classifier, seeded: pretrained trunks, or fresh ones whose lead normalisation
        is fitted on the training records."""
        from ecgtransfer.data.dataset import fit_lead_stats
        from ecgtransfer.models.classifier import TransferClassifier
        from ecgtransfer.models.regressor import blank_regressor

        config = self.config
        torch.manual_seed(config.seed)
        if config.strategy == "scratch":
            metas = ([json.loads(json.dumps(s.regressor.meta)) for s in self.sources]
                     or [self._scratch_meta()])
            trunks = [blank_regressor(m) for m in metas]
            mean, std = fit_lead_stats(self.store, self.splits["train"])
            idx = self.lead_index(metas[0]["leads"])
            for t in trunks:
                t.lead_mean.copy_(torch.from_numpy(mean[idx]).view(1, -1, 1))
                t.lead_std.copy_(torch.from_numpy(std[idx]).view(1, -1, 1))
        else:
            trunks = [s.regressor for s in self.sources]
        names = [s.ref for s in self.sources] or None
        return TransferClassifier(trunks, len(SUPERCLASSES), config.head_hidden,
                                  config.head_dropout, names=names,
                                  meta={"classes": list(SUPERCLASSES), "task": config.task,
                                        "strategy": config.strategy})

    def lead_index(self, leads: list[str]) -> list[int]:
        return [self.store.leads.index(lead) for lead in leads]

    # ---- data ----------------------------------------------------------------------------
    def dataset(self, model, split: str):
        from ecgtransfer.data.dataset import StoreDataset

        pos = self.splits[split]
        meta = model.meta
        n = len(meta["leads"])
        return StoreDataset(self.store, pos, self.targets[pos], np.zeros(n), np.ones(n),
                            meta["fs"], meta["n_samples"], leads=self.lead_index(meta["leads"]))

    def table(self) -> pd.DataFrame:
        """Record id and label of every store record (the MLflow dataset inputs)."""
        index = self.store.index
        if self.multilabel:
            return index[["record_id", *SUPERCLASSES]].astype({c: float for c in SUPERCLASSES})
        labels = np.array([SUPERCLASSES[t] if t >= 0 else "" for t in self.targets])
        return pd.DataFrame({"record_id": index["record_id"].to_numpy(), "superclass": labels})

    # ---- tracking ------------------------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        meta = self.store.meta
        return str((meta.get("identity") or {}).get("dataset") or meta.get("source", ""))

    def tags(self, model) -> dict[str, str]:
        from ecgtransfer.tracking import TAG, code_version, store_hash

        c = self.config
        src = self.sources
        return {TAG + "stage": "finetune", TAG + "strategy": c.strategy,
                TAG + "freeze": c.freeze, TAG + "task": c.task,
                TAG + "train_fraction": f"{c.train_fraction:g}", TAG + "seed": str(c.seed),
                TAG + "split": "folds" if c.split == "auto" else c.split,
                TAG + "setting": setting_hash(c),
                TAG + "dataset": self.dataset_name, TAG + "store": str(self.store.path.resolve()),
                TAG + "store_hash": store_hash(self.store.path),
                TAG + "model": ",".join(dict.fromkeys(m["model"] for m in model.meta["sources"])),
                TAG + "source": ",".join(dict.fromkeys(s.dataset or "unknown" for s in src)) or "none",
                TAG + "source_targets": ",".join(s.name for s in src),
                TAG + "source_refs": ",".join(dict.fromkeys(s.ref for s in src)),
                TAG + "source_runs": ",".join(s.run_id for s in src if s.run_id),
                TAG + "source_models": ",".join(s.model_uri for s in src if s.model_uri),
                TAG + "code_version": code_version()}


def finetune(config: FinetuneConfig, *, resume: bool = False, progress: bool = True,
             parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> FinetuneResult:
    """Fine-tune (or train from scratch) the classifier ``config`` describes.

    Parameters
    ----------
    config : FinetuneConfig
    resume : bool
        Continue an interrupted run in ``config.out`` (same settings); a finished one is
        reused. Without it, a folder that holds a run already is an error.
    progress : bool
        Progress bars.
    parent_run_id : str, optional
        Nest the MLflow run under this run (a pipeline's).
    tags : dict, optional
        Extra tags of the run.

    Notes
    -----
    The stage seeds torch's global generator with ``config.seed`` before building the model
    (the new head's and a scratch trunk's initialisation, dropout). Under ``torchrun`` every
    process calls this; rank 0 alone writes files and talks to MLflow.
    """
    from ecgtransfer.training.distributed import barrier, shutdown

    stage = _Stage(config, progress)
    try:
        out = stage.out
        model = stage.build_model()
        task = _task(stage)
        if stage.dist.is_main:
            check_run_folder(out, config, resume, "finetune", _RESUMABLE_CHANGES)
        barrier(stage.dist)
        done = out / "result.json"
        if resume and done.exists():
            info = json.loads(done.read_text())
            log.info("%s: finished already (run %s); reused", out, info.get("run_id"))
            test = {k: np.nan if v is None else v for k, v in info["test"].items()}
            intervals = {k: [np.nan if b is None else b for b in v]
                         for k, v in info.get("intervals", {}).items()}
            return FinetuneResult(out, info.get("run_id"), info["best_epoch"], test, intervals,
                                  info.get("counts", {}), reused=True)
        if stage.dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(to_yaml(config))
        barrier(stage.dist)
        if stage.dist.is_main:
            return _train_tracked(stage, model, task, resume, parent_run_id, tags or {})
        _fit(stage, model, task, resume, None)
        return FinetuneResult(out, None, 0, {}, counts=stage.counts)
    finally:
        shutdown(stage.dist)


def _task(stage: _Stage):
    from ecgtransfer.training.tasks import ClassificationTask

    weights = None
    if stage.config.class_weights == "balanced":
        weights = _class_weights(stage.targets[stage.splits["train"]], stage.multilabel,
                                 str(stage.store.path))
    return ClassificationTask(SUPERCLASSES, multilabel=stage.multilabel, class_weights=weights)


def _fit(stage: _Stage, model, task, resume: bool, on_epoch):
    from ecgtransfer.config import loop_config
    from ecgtransfer.models.classifier import set_trunk_trainable
    from ecgtransfer.training.loop import Trainer

    config = stage.config
    trunk_lr = config.lr * (config.trunk_lr_factor if config.freeze == "gradual" else 1.0)
    groups = [{"params": list(model.head.parameters())},
              {"params": model.trunk_parameters(), "lr": trunk_lr, "name": "trunk"}]

    def before_epoch(epoch: int) -> None:
        set_trunk_trainable(model, config.freeze == "full" or (
            config.freeze == "gradual" and epoch > config.frozen_epochs))

    trainer = Trainer(model, task, stage.dataset(model, "train"), stage.dataset(model, "val"),
                      loop_config(config), device=stage.device, dist=stage.dist,
                      checkpoint=stage.out / "checkpoint.pt", on_epoch=on_epoch,
                      before_epoch=before_epoch, param_groups=groups,
                      desc=f"finetune {config.strategy}/{config.freeze}", progress=stage.progress)
    return trainer, trainer.fit(resume=resume)


def evaluate(task, probs: np.ndarray, y: np.ndarray, n_resamples: int, seed: int
             ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Test metrics of ``probs`` against ``y`` and their 95% bootstrap intervals."""
    from ecgtransfer.training.metrics import bootstrap_interval, classification_metrics

    def metric(p, t):
        return classification_metrics(p, t, task.classes, task.multilabel)

    values = metric(probs, y)
    intervals = {}
    if n_resamples:
        intervals = {k: list(v) for k, v in
                     bootstrap_interval(metric, probs, y, n_resamples=n_resamples, seed=seed).items()}
    return values, intervals


def _train_tracked(stage: _Stage, model, task, resume: bool, parent_run_id: str | None,
                   tags: dict[str, str]) -> FinetuneResult:
    import mlflow

    from ecgtransfer import plots, tracking
    from ecgtransfer.models.classifier import save_classifier

    config, out = stage.config, stage.out
    marker = out / "run.json"
    run_id = json.loads(marker.read_text())["run_id"] if resume and marker.exists() else None
    name = config.run_name or (f"finetune {config.strategy} {config.freeze} "
                               f"{'+'.join(s.name for s in stage.sources) or model.meta['sources'][0]['model']}"
                               f" frac {config.train_fraction:g} seed {config.seed}")
    with tracking.open_run(run_id, run_name=name, tags={**stage.tags(model), **tags},
                           parent_run_id=parent_run_id) as run:
        marker.write_text(json.dumps({"run_id": run.info.run_id}))
        if run_id is None:
            _log_setup(stage, model)

        def on_epoch(metrics: dict[str, float]) -> None:
            mlflow.log_metrics({k: v for k, v in metrics.items()
                                if k != "epoch" and np.isfinite(v)}, step=int(metrics["epoch"]))

        trainer, fit = _fit(stage, model, task, resume, on_epoch)
        trainer.model.load_state_dict(fit.best_state)
        test_set = stage.dataset(model, "test")
        test, intervals = {}, {}
        if len(test_set):
            logits, y = trainer.predict(test_set)
            probs = task.probabilities(logits)
            test, intervals = evaluate(task, probs, y, config.bootstrap, config.seed)
            mlflow.log_metrics({f"test_{k}": v for k, v in test.items() if np.isfinite(v)})
            mlflow.log_metrics({f"test_{k}_ci_{side}": b for k, (lo, hi) in intervals.items()
                                for side, b in (("low", lo), ("high", hi)) if np.isfinite(b)})
            _save_predictions(stage, probs, y, out / "test_predictions.csv")
            mlflow.log_artifact(str(out / "test_predictions.csv"))
            tracking.log_text(_json({"metrics": test, "ci95": intervals, "n": int(len(y))}),
                              "test_metrics.json")
            tracking.log_figure(plots.confusion_matrix(y, probs, SUPERCLASSES, stage.multilabel),
                                "plots/confusion_matrix_test.png")
            tracking.log_figure(plots.roc_curves(y, probs, SUPERCLASSES, stage.multilabel),
                                "plots/roc_test.png")
        mlflow.log_metrics({"best_epoch": fit.best_epoch, "n_epochs": len(fit.history)})
        mlflow.set_tag(tracking.TAG + "stopped_early", str(fit.stopped_early).lower())
        tracking.log_figure(plots.classification_curves(fit.history, fit.best_epoch),
                            "plots/learning_curves.png")
        pd.DataFrame(fit.history).to_csv(out / "history.csv", index=False)
        mlflow.log_artifact(str(out / "history.csv"))
        classifier = trainer.model.cpu().eval()
        save_classifier(classifier, out / "model.pt")
        example = test_set if len(test_set) else stage.dataset(model, "val")
        model_uri = tracking.log_model(classifier, example.signal(0)[None].astype(np.float32))
        mlflow.set_tag(tracking.TAG + "model_uri", model_uri)
        result = {"run_id": run.info.run_id, "model_uri": model_uri, "best_epoch": fit.best_epoch,
                  "best_val_score": fit.best_score, "test": test, "intervals": intervals,
                  "counts": stage.counts}
        (out / "result.json").write_text(_json(result))
    if test:
        log.info("finetune: best epoch %d of %d; test macro AUROC %.3f [%s], accuracy %.3f, "
                 "macro F1 %.3f; MLflow run %s", fit.best_epoch, len(fit.history),
                 test["macro_auroc"], _ci(intervals.get("macro_auroc")), test["accuracy"],
                 test["macro_f1"], run.info.run_id)
    return FinetuneResult(out, run.info.run_id, fit.best_epoch, test, intervals, stage.counts)


def _json(value: Any) -> str:
    """JSON with NaN (an AUROC of a class absent from the test set) written as null."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return None if isinstance(v, float) and not np.isfinite(v) else v

    return json.dumps(clean(value), indent=2)


def _ci(interval) -> str:
    return "no interval" if not interval else f"95% CI {interval[0]:.3f}-{interval[1]:.3f}"


def _log_setup(stage: _Stage, model) -> None:
    """Params, config, data counts, dataset inputs and links to the pretrain runs."""
    import mlflow

    from ecgtransfer import tracking

    config = stage.config
    params = to_dict(config)
    params.pop("sources")  # tags carry them, and a param value is capped in length
    tracking.log_params({**params, "input": {"fs": model.meta["fs"],
                                             "n_samples": model.meta["n_samples"],
                                             "leads": model.meta["leads"]},
                         "trunks": len(model.trunks), "head_features": model.num_features,
                         "data": {f"n_{s}": c["used"] for s, c in stage.counts.items()},
                         "device": str(stage.device), "world_size": stage.dist.world_size})
    tracking.log_text(to_yaml(config), "config.yaml")
    tracking.log_text(json.dumps(stage.counts, indent=2), "data_counts.json")
    tracking.log_inputs(stage.store.path, stage.table(), stage.splits,
                        targets=None if stage.multilabel else "superclass")
    links = [f"- {s.name}: [{s.run_id}](#/experiments/{_experiment_of(s.run_id)}/runs/{s.run_id})"
             for s in stage.sources if s.run_id and _experiment_of(s.run_id)]
    if links:
        mlflow.set_tag("mlflow.note.content", "Pretrained trunks from:\n\n" + "\n".join(links))


def _experiment_of(run_id: str) -> str:
    import mlflow

    try:
        return mlflow.MlflowClient().get_run(run_id).info.experiment_id
    except Exception:  # a run of another tracking store
        return ""


def _save_predictions(stage: _Stage, probs: np.ndarray, y: np.ndarray, path: Path) -> None:
    from ecgtransfer.files import atomic_file

    ids = stage.store.index["record_id"].to_numpy()[stage.splits["test"]]
    table = pd.DataFrame({"record_id": ids})
    if stage.multilabel:
        for j, c in enumerate(SUPERCLASSES):
            table[f"true_{c}"] = y[:, j].astype(int)
    else:
        table["true"] = [SUPERCLASSES[int(t)] for t in y]
    for j, c in enumerate(SUPERCLASSES):
        table[f"p_{c}"] = probs[:, j]
    with atomic_file(path) as f:
        table.to_csv(f, index=False)
