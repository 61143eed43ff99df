"""The finetune stage: pretrained regressor trunks (or the same architecture from scratch) under a
new head, trained on PTB-XL's five diagnostic superclasses, evaluated on the test fold with
bootstrap intervals, tracked in MLflow.

Run folder (``config.out``): a training run folder (see :mod:`ecgtransfer.stages.trained`) plus
``test_predictions.csv`` (record id, truth and class probabilities of every test record).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecgtransfer.config import ConfigError, check, config_hash, setting
from ecgtransfer.data.ptbxl import BENCHMARK_TASKS, SUPERCLASSES
from ecgtransfer.stages import Context, Stage, StageResult, register_stage
from ecgtransfer.stages.trained import (TrainedStage, Training, TrainingConfig,
                                        TrainingResult, check_model_settings, used_counts)
from ecgtransfer.tags import tag_values
from ecgtransfer.training.evaluation import evaluator_for
from ecgtransfer.training.targets import class_targets, class_weights

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "setting_hash"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig(TrainingConfig):
    """Everything ``ecgtransfer finetune`` does, as one record (the data, device and tracking
    settings are :class:`TrainingConfig`'s, the loop's :class:`~ecgtransfer.config.LoopConfig`'s)."""

    sources: list[str] = setting([], "pretrained regressors: model.pt files or their folders, "
                                 "pretrain run folders, MLflow model URIs or run ids (a parent "
                                 "run stands for its children)", flag="--from",
                                 metavar="REF[,REF...]")
    strategy: str = setting("single", "one trunk under a new head, several side by side "
                            "(features concatenated), or the same architecture from random "
                            "weights", choices=("single", "combined", "scratch"))
    freeze: str = setting("full", "train everything, keep the trunks fixed (batch-norm "
                          "statistics included), or fixed for frozen_epochs then trained at "
                          "lr * trunk_lr_factor", choices=("full", "frozen", "gradual"))
    frozen_epochs: int = setting(5, "epochs with frozen trunks under gradual")
    trunk_lr_factor: float = setting(0.1, "the trunks' learning rate relative to the head's "
                                     "once gradual unfreezes them")
    task: str = setting("single_label", "records with exactly one superclass (softmax, "
                        "cross-entropy) or with any (sigmoid and BCE per class; a Challenge "
                        "store: its scored classes); or one of the PTB-XL benchmark's six "
                        "statement sets, multi-label (all, diagnostic, subdiagnostic, "
                        "superdiagnostic, form, rhythm)",
                        choices=("single_label", "multi_label", *BENCHMARK_TASKS))
    class_weights: str = setting("none", "balanced (inverse frequency): cross-entropy weights "
                                 "n / (k n_c), or BCE pos_weight negatives/positives (weighted "
                                 "BCE), from the training records; sqrt: their square roots",
                                 choices=("none", "balanced", "sqrt"))
    loss: str = setting("ce", "cross-entropy (softmax; multi-label: binary cross-entropy per "
                        "class) or focal loss (gamma 2: easy records weigh less)",
                        choices=("ce", "focal"))
    train_fraction: float = setting(1.0, "train on this seeded fraction of the training "
                                    "patients; validation and test stay whole")
    model: str | None = setting(None, "scratch without --from: the architecture (default "
                                "resnet1d_fast); with --from, it must be theirs", metavar="NAME")
    model_kwargs: dict[str, Any] = setting({}, "scratch without --from: the architecture's "
                                           "parameters", cli=False)
    fs: float | None = setting(None, "scratch without --from: input rate (default: the "
                               "store's); with --from, their rate", unit="Hz")
    trunks: int | None = setting(None, "scratch without --from: how many random trunks side by "
                                 "side (4: the size of combined over four intervals)")
    head_hidden: int | None = setting(128, "hidden width of the new head (null: linear)")
    head_dropout: float = setting(0.25, "dropout of the new head")
    holdout: str | None = setting(None, "test on the records of this source database (a "
                                  "Challenge store's database column, e.g. Ningbo); train and "
                                  "validate on the others (stratified)", metavar="DATABASE")
    out: str = setting("runs/finetune", "run folder: config, checkpoint, model",
                       role="output", metavar="DIR")
    experiment: str = setting("ecgtransfer-finetune", "MLflow experiment", role="tracking",
                              metavar="NAME")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.sources, str):
            object.__setattr__(self, "sources",
                               [s.strip() for s in self.sources.split(",") if s.strip()])
        check(self.strategy not in ("single", "combined", "scratch"), "strategy",
              f"{self.strategy!r} is not single, combined or scratch")
        check(self.strategy != "scratch" and not self.sources, "sources",
              f"strategy {self.strategy} needs pretrained trunks (--from)")
        check(self.freeze not in ("full", "frozen", "gradual"), "freeze",
              f"{self.freeze!r} is not full, frozen or gradual")
        check(self.freeze == "gradual" and not 1 <= self.frozen_epochs < self.epochs,
              "frozen_epochs", f"gradual needs 1 <= frozen_epochs < epochs ({self.epochs})")
        check(self.trunk_lr_factor <= 0, "trunk_lr_factor", "must be positive")
        check(self.trunks is not None and (self.strategy != "scratch" or bool(self.sources)),
              "trunks", "only for scratch without --from (with --from, one trunk per source)")
        check(self.trunks is not None and self.trunks < 1, "trunks", "must be at least 1")
        check(self.task not in ("single_label", "multi_label", *BENCHMARK_TASKS), "task",
              f"{self.task!r} is not single_label, multi_label or one of "
              f"{', '.join(BENCHMARK_TASKS)}")
        check(self.class_weights not in ("none", "balanced", "sqrt"), "class_weights",
              f"{self.class_weights!r} is not none, balanced or sqrt")
        check(self.loss not in ("ce", "focal"), "loss", f"{self.loss!r} is not ce or focal")
        check_model_settings(self, self.model)
        check(not 0 < self.train_fraction <= 1, "train_fraction", "must be in (0, 1]")
        check(self.head_hidden is not None and self.head_hidden < 1, "head_hidden",
              "must be at least 1 (or null for a linear head)")
        check(not 0 <= self.head_dropout < 1, "head_dropout", "must be in [0, 1)")
        check(bool(self.holdout) and self.cv > 0, "holdout", "a held-out database is one test "
              "split; not with cv")


@dataclass(kw_only=True)
class FinetuneResult(TrainingResult):
    """A fine-tuned classifier and its test-set evaluation (a cross-validation: the pooled
    out-of-fold one, with each fold's record in ``folds``)."""

    test: dict[str, float]
    intervals: dict[str, list[float]] = field(default_factory=dict)
    folds: list[dict[str, Any]] = field(default_factory=list)


def setting_hash(config: FinetuneConfig) -> str:
    """12 hex digits of the settings that make runs comparable: all but the seed, the trunks'
    references (their source and targets are tagged apart), and where and how the run is
    written, logged or computed."""
    return config_hash(config, exclude=("seed", "sources", "store", "out", "experiment",
                                         "tracking_uri", "run_name", "device", "num_workers",
                                         "threads"))


@dataclass(frozen=True)
class _Fold:
    """The data of one model of a fine-tune call (a cross-validation's fold, or the one
    model): made once by :meth:`_Finetune.fold` and never changed."""

    number: int | None
    """1-based under cross-validation; None for the one model (or the cross-validation's own
    run)."""
    splits: dict[str, np.ndarray]
    counts: dict[str, Any]
    folder: Path
    sources: tuple
    """The pretrained trunks, loaded for this model alone (training changes them)."""


class _Finetune(TrainedStage):
    """Store, targets, folds, trunks and model of one ``finetune`` call: everything checked
    before a file is written."""

    experiment_note = ("PTB-XL diagnostic classifiers by `ecgtransfer finetune`: pretrained "
                       "trunks (`ecgtransfer.source`, `source_targets`) against the same "
                       "architecture from scratch (`source = none`), by freezing, train fraction "
                       "and seed; test metrics with 95% bootstrap intervals. `ecgtransfer "
                       "compare` pools the seeds.")

    def __init__(self, config: FinetuneConfig, context: Context):
        from ecgtransfer.training.distributed import barrier

        super().__init__(config, context, "finetune")
        self.labels = class_targets(self.store, config.task)
        self.classes, self.multilabel = self.labels.classes, self.labels.multilabel
        self.evaluator = evaluator_for(self.classes, self.multilabel, config.bootstrap,
                                       config.seed, self._challenge_scoring())
        self.split_how, self.folds = _folds(config, self.store, self.labels)
        for fold in range(len(self.folds)):  # every fold usable before anything is written
            self._choose(fold)
        if self.dist.is_main:  # the tracking store exists before any rank reads runs from it
            self.tracker.experiment(config.experiment)
        barrier(self.dist)
        self.first = self.fold(0)  # the trunks load, or fail in one line, before any file

    def _challenge_scoring(self):
        """The Challenge's scoring for a multi-label fine-tune on a Challenge 2021 store (its
        classes in the scoring's order), else None."""
        if self.store.meta.get("source") != "challenge2021" or not self.multilabel:
            return None
        from ecgtransfer.training.challenge import load_scoring

        scoring = load_scoring()
        if tuple(scoring.names) != tuple(self.classes):
            raise ValueError(f"{self.store.path}: its classes are not the Challenge's 26 scored "
                             "classes in order; prepare it again with this ecgtransfer")
        return scoring

    def _choose(self, fold: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The usable records of each split of ``fold`` (the training patients subsampled to
        ``train_fraction``) and their counts."""
        from ecgtransfer.data.splits import subsample_patients

        config, reasons = self.config, self.labels.reasons
        splits = self.folds[fold]
        chosen: dict[str, np.ndarray] = {}
        for split, pos in splits.items():
            keep = pos[reasons[pos] == ""]
            if split == "train":
                keep = subsample_patients(self.store.index, keep, config.train_fraction,
                                          config.seed)
            chosen[split] = keep
        which = f"fold {fold + 1} of {config.cv}: " if config.cv else ""
        for split in ("train", "val"):
            if len(chosen[split]) < 2:
                raise ValueError(f"{self.store.path}: {which}{len(chosen[split])} usable {split} "
                                 f"records for {config.task} (split {config.split!r}, "
                                 f"train_fraction {config.train_fraction}); need at least 2")
        return chosen, used_counts(splits, chosen, reasons)

    def fold(self, i: int) -> _Fold:
        """Fold ``i``'s data (0 without cross-validation): its splits and counts, its run
        folder (``out/fold<i+1>`` under cross-validation) and freshly loaded trunks (training
        changes them)."""
        from ecgtransfer.transfer import load_trunks

        c, cv = self.config, bool(self.config.cv)
        splits, counts = self._choose(i)
        trunks = load_trunks(c.sources, strategy=c.strategy, model=c.model,
                             leads=self.store.leads, where=str(self.store.path),
                             tracker=self.tracker)
        return _Fold(i + 1 if cv else None, splits, counts,
                     self.out / f"fold{i + 1}" if cv else self.out, tuple(trunks))

    # ---- model and data --------------------------------------------------------------------
    def build_model(self, fold: _Fold):
        """The classifier of ``fold``, seeded: its pretrained trunks, or fresh ones whose lead
        normalisation is fitted on its training records."""
        import torch

        from ecgtransfer.data.dataset import fit_lead_stats
        from ecgtransfer.models import DEFAULT_MODEL, model_defaults
        from ecgtransfer.models.classifier import TransferClassifier
        from ecgtransfer.models.regressor import blank_regressor

        config = self.config

        def scratch_meta() -> dict[str, Any]:
            name = config.model or DEFAULT_MODEL
            fs, n_samples = self.input_shape(config.fs)
            return {"model": name, "model_kwargs": {**model_defaults(name), **config.model_kwargs},
                    "targets": [], "units": [], "fs": fs, "n_samples": n_samples,
                    "leads": list(self.store.leads)}

        def make():
            if config.strategy == "scratch":
                metas = ([json.loads(json.dumps(s.regressor.meta)) for s in fold.sources]
                         or [scratch_meta()] * (config.trunks or 1))
                trunks = [blank_regressor(m) for m in metas]
                mean, std = fit_lead_stats(self.store, fold.splits["train"])
                idx = self.lead_index(metas[0]["leads"])
                for t in trunks:
                    t.lead_mean.copy_(torch.from_numpy(mean[idx]).view(1, -1, 1))
                    t.lead_std.copy_(torch.from_numpy(std[idx]).view(1, -1, 1))
            else:
                trunks = [s.regressor for s in fold.sources]
            return TransferClassifier(trunks, len(self.classes), config.head_hidden,
                                      config.head_dropout, names=[s.ref for s in fold.sources] or None,
                                      meta={"classes": list(self.classes), "task": config.task,
                                            "strategy": config.strategy})

        return self.build(make)

    def lead_index(self, leads: list[str]) -> list[int]:
        return [self.store.leads.index(lead) for lead in leads]

    def dataset(self, model, pos: np.ndarray):
        from ecgtransfer.data.dataset import StoreDataset

        meta = model.meta
        n = len(meta["leads"])
        return StoreDataset(self.store, pos, self.labels.targets[pos], np.zeros(n), np.ones(n),
                            meta["fs"], meta["n_samples"], leads=self.lead_index(meta["leads"]))

    def task(self, fold: _Fold):
        from ecgtransfer.training.tasks import ClassificationTask

        weights = None
        if self.config.class_weights != "none":
            weights = class_weights(self.labels.targets[fold.splits["train"]], self.multilabel,
                                    str(self.store.path), self.classes)
            if self.config.class_weights == "sqrt":
                weights = np.sqrt(weights)
        return ClassificationTask(self.classes, multilabel=self.multilabel, class_weights=weights,
                                  loss=self.config.loss)

    def job(self, fold: _Fold) -> Training:
        """``fold``'s model and its training."""
        from ecgtransfer import plots
        from ecgtransfer.models.classifier import save_classifier, set_trunk_trainable
        from ecgtransfer.training.callbacks import LambdaCallback

        config = self.config
        model = self.build_model(fold)
        task = self.task(fold)
        trunk_lr = config.lr * (config.trunk_lr_factor if config.freeze == "gradual" else 1.0)
        groups = [{"params": list(model.head.parameters())},
                  {"params": model.trunk_parameters(), "lr": trunk_lr, "name": "trunk"}]

        def freeze(trainer, epoch: int) -> None:  # the trunks train, or not, this epoch
            set_trunk_trainable(model, config.freeze == "full" or (
                config.freeze == "gradual" and epoch > config.frozen_epochs))

        tuned: dict[str, Any] = {}

        def evaluate_test(run, trainer, test_set) -> dict:
            if not len(test_set):
                return {"test": {}, "intervals": {}}
            logits, y = trainer.predict(test_set)
            validation = None
            if self.evaluator.uses_validation:
                val_logits, val_y = trainer.predict(datasets["val"])
                validation = (task.probabilities(val_logits), val_y)
            ids = self.store.index["record_id"].to_numpy()[fold.splits["test"]]
            result = self.evaluator.evaluate(run, ids, task.probabilities(logits), y,
                                             fold.folder, validation=validation)
            tuned.update(thresholds=result.get("thresholds"))
            return result

        def finish(net):
            if tuned.get("thresholds"):  # saved with the model: its decisions are these
                net.meta["thresholds"] = tuned["thresholds"]
            return net

        datasets = {s: self.dataset(model, fold.splits[s]) for s in ("train", "val", "test")}
        example = datasets["test" if len(datasets["test"]) else "val"].signal(0)[None]
        return Training(
            folder=fold.folder, model=model, task=task, datasets=datasets,
            run_name=_run_name(config, model, fold),
            tags=_run_tags(config, self.split_how, model, fold),
            counts=fold.counts, note=_note(config, self.tracker, model, fold),
            params={"sources": None,  # tags carry them, and a param value is capped in length
                    **_model_params(model),
                    "data": {f"n_{s}": c["used"] for s, c in fold.counts.items()}},
            inputs=(self.labels.table(self.store.index["record_id"].to_numpy()), fold.splits,
                    self.labels.label_column),
            example=example.astype(np.float32),
            curves=lambda fit: plots.classification_curves(fit.history, fit.best_epoch),
            evaluate=evaluate_test, finish=finish, save=save_classifier,
            callbacks=[LambdaCallback(on_epoch_start=freeze)],
            trainer_kwargs={"param_groups": groups},
            log_model=fold.number is None,
            desc=f"finetune {config.strategy}/{config.freeze}")


# ---- the records and folds ------------------------------------------------------------------
def _folds(config: FinetuneConfig, store, labels) -> tuple[str, list[dict[str, np.ndarray]]]:
    """How the records are split (``config.split``, ``auto`` resolved) and the splits of each
    fold (one without cross-validation)."""
    from ecgtransfer.data.splits import cv_folds, split_positions, stratified_positions

    index, where = store.index, str(store.path)
    how = config.split
    if how == "auto":
        how = ("folds" if "split" in index.columns else
               "stratified" if labels.classes != SUPERCLASSES else "random")
    if config.cv:
        return how, cv_folds(index, config.cv, how, where=where, labels=labels.indicators())
    if how == "stratified" or config.holdout:
        return how, [stratified_positions(labels.indicators(), seed=config.seed,
                                          fractions=config.split_fractions,
                                          test=_held_out(config.holdout, store), where=where)]
    return how, [split_positions(index, how, seed=config.seed, fractions=config.split_fractions,
                                 where=where)]


def _held_out(database: str | None, store) -> np.ndarray | None:
    """The records of the ``holdout`` database (the test split), or None."""
    if not database:
        return None
    index = store.index
    if "database" not in index.columns:
        raise ConfigError(f"holdout: {store.path} has no source databases (a Challenge 2021 "
                          "store has)", "holdout")
    found = index["database"].astype(str).to_numpy()
    if database not in set(found):
        raise ConfigError(f"holdout: no {database!r} records in {store.path} (it has "
                          f"{', '.join(sorted(set(found)))})", "holdout")
    return found == database


# ---- what the runs say -------------------------------------------------------------------------
def _model_params(model) -> dict[str, Any]:
    meta = model.meta
    return {"input": {"fs": meta["fs"], "n_samples": meta["n_samples"], "leads": meta["leads"]},
            "trunks": len(model.trunks), "head_features": model.num_features}


def _run_tags(c: FinetuneConfig, split_how: str, model, fold: _Fold,
              evaluation: str | None = None) -> dict[str, Any]:
    """What the run is, in tags that mean exactly that: a scratch run has no pretraining
    source (``source`` is ``none``); the architecture it borrowed is in ``architecture_from``.
    ``evaluation``: ``test``, ``fold`` (a cross-validation's fold run, by default) or ``cv``
    (its own run)."""
    src = fold.sources
    number = fold.number if evaluation != "cv" else None
    tags = tag_values(
        strategy=c.strategy, freeze=c.freeze, task=c.task, train_fraction=c.train_fraction,
        seed=c.seed, split=split_how + (f":{c.holdout}" if c.holdout else ""),
        setting=setting_hash(c), trunks=len(model.trunks),
        model=",".join(dict.fromkeys(m["model"] for m in model.meta["sources"])),
        evaluation=evaluation or ("test" if number is None else "fold"), cv=c.cv or None,
        fold=number)
    if c.strategy == "scratch":
        return {**tags, **tag_values(
            source="none",
            architecture_from=",".join(dict.fromkeys(s.ref for s in src)) if src else None)}
    return {**tags, **tag_values(
        source=",".join(dict.fromkeys(s.dataset or "unknown" for s in src)),
        source_targets=",".join(s.name for s in src),
        source_refs=",".join(dict.fromkeys(s.ref for s in src)),
        source_runs=",".join(s.run_id for s in src if s.run_id),
        source_models=",".join(s.model_uri for s in src if s.model_uri))}


def _run_name(c: FinetuneConfig, model, fold: _Fold, own: bool = False) -> str:
    """What differs between fine-tune runs first, short enough for the UI's column:
    ``single qrs f0.1 s2``, ``combined x4 frozen f1 s0``, ``scratch x4 f1 s0``, and a
    cross-validation fold's ``single qrs f1 s0 fold3`` (``own``: the cross-validation's own run,
    without the fold)."""
    n = len(model.trunks)
    trunks = (f"x{n}" if n > 1 else "") if c.strategy != "single" else fold.sources[0].name
    number = None if own else fold.number
    if c.run_name:
        return c.run_name + ("" if number is None else f" fold{number}")
    parts = [c.strategy, trunks, "" if c.freeze == "full" else c.freeze,
             f"f{c.train_fraction:g}", f"s{c.seed}", "" if number is None else f"fold{number}"]
    return " ".join(p for p in parts if p)


def _note(c: FinetuneConfig, tracker, model, fold: _Fold) -> str:
    """The run's description: what its trunks are, linking the pretrain runs."""
    def link(s) -> str:
        where = tracker.experiment_of(s.run_id) if s.run_id else ""
        return (f"[{s.ref}](#/experiments/{where}/runs/{s.run_id})" if where else s.ref)

    n = len(model.trunks)
    arch = model.meta["sources"][0]["model"] + (f" x{n}" if n > 1 else "")
    if c.strategy == "scratch":
        borrowed = ", ".join(f"{s.name}: {link(s)}" for s in fold.sources)
        return (f"From scratch ({arch}, randomly initialised"
                + (f"; architecture of {borrowed}" if borrowed else "") + ").")
    lines = [f"- {s.name}: {link(s)}" for s in fold.sources]
    return f"Pretrained trunks ({arch}) from:\n\n" + "\n".join(lines)


def _train(config: FinetuneConfig, context: Context) -> FinetuneResult:
    """The classifier of :func:`finetune`, trained or reused."""
    stage = _Finetune(config, context)
    try:
        if config.cv:
            return _cross_validate(stage, context.parent_run)
        job = stage.job(stage.first)
        stage.start()
        info = stage.finished(stage.out)
        reused = info is not None
        if info is None:
            info = stage.train(job, parent=context.parent_run)
        return FinetuneResult(path=stage.out, run_id=info.get("run_id"),
                              best_epoch=info.get("best_epoch", 0), test=info.get("test", {}),
                              intervals=info.get("intervals", {}),
                              counts=info.get("counts", stage.first.counts), reused=reused)
    finally:
        stage.close()


def _cross_validate(stage: _Finetune, parent_run_id: str | None) -> FinetuneResult:
    """The skeleton's cross-validation (:meth:`TrainedStage.cross_validate`) of the folds'
    classifiers; the pooled records are evaluated by the stage's evaluator (a Challenge store:
    each record decided at its own fold's thresholds)."""
    from dataclasses import replace

    from ecgtransfer.stages.trained import CrossValidation, median_best_epoch
    from ecgtransfer.training.predictions import prediction_arrays, read_predictions

    config, first = stage.config, stage.first
    model = stage.build_model(first)  # what the cross-validation is, for its name and tags
    reused = stage.finished(stage.out) is not None

    def evaluate(run, pooled, folds: list[dict]) -> dict:
        _, probs, y, _ = prediction_arrays(pooled, stage.classes)
        thresholds = {f["fold"]: f.get("thresholds") for f in folds}
        per_record = (np.array([thresholds[k] for k in pooled["fold"]])
                      if all(thresholds.values()) else None)
        return stage.evaluator.evaluate(
            run, pooled["record_id"].to_numpy(), probs,
            y.astype(np.float32) if stage.multilabel else y, stage.out, pooled=True,
            fold_thresholds=per_record)

    stage.start()
    info = stage.cross_validate(CrossValidation(
        k=config.cv, folder=stage.out, job=lambda i: stage.job(stage.fold(i)),
        run_name=_run_name(config, model, first, own=True),
        tags=_run_tags(config, stage.split_how, model, first, evaluation="cv"),
        params=_model_params(model),
        note=_note(config, stage.tracker, model, replace(first, number=None))
        + f"\n\n{config.cv}-fold "
        "cross-validation: the metrics pool the out-of-fold predictions of the fold runs "
        "nested here (each record predicted by the one model that never saw it).",
        read=read_predictions, evaluate=evaluate), parent_run_id)
    folds = info.get("folds", [])
    return FinetuneResult(path=stage.out, run_id=info.get("run_id"),
                          best_epoch=median_best_epoch(folds), test=info.get("test", {}),
                          intervals=info.get("intervals", {}), counts=info.get("counts", {}),
                          reused=reused, folds=folds)


def finetune(config: FinetuneConfig, context: Context) -> StageResult:
    """Fine-tune (or train from scratch) the classifier ``config`` describes.

    Returns a :class:`StageResult` whose ``details`` (and only ``trained``) is the
    :class:`FinetuneResult`. With ``context.resume``, an interrupted run in ``config.out``
    (same settings) is continued and a finished one reused; without it, a folder that holds a
    run already is an error.

    The new head's (and a scratch trunk's) initialisation draws from a generator seeded with
    ``config.seed``; the caller's torch generator is left as it was. Under ``torchrun`` every
    process calls this; rank 0 alone writes files and talks to MLflow.
    """
    r = _train(config, context)
    shown = "no test records"
    if r.test:
        shown = ", ".join(f"{name} {r.test[key]:.3f}" + (
            f" [{r.intervals[key][0]:.3f}, {r.intervals[key][1]:.3f}]" if key in r.intervals else "")
            for key, name in (("macro_auroc", "macro AUROC"), ("accuracy", "accuracy"),
                              ("macro_f1", "macro F1")))
    if r.folds:
        epochs = ", ".join(str(f.get("best_epoch")) for f in r.folds)
        where = f"{len(r.folds)}-fold cross-validation (best epochs {epochs}), out-of-fold"
    else:
        where = f"best epoch {r.best_epoch}, test"
    summary = (f"{r.path}: {where} {shown}{' (reused)' if r.reused else ''}"
               f"; MLflow run {r.run_id}") if r.run_id else ""
    return StageResult(str(r.path), summary, run_ids=[r.run_id] if r.run_id else [], details=r,
                       trained=[r])


register_stage(Stage(
    "finetune", FinetuneConfig, finetune, command=("finetune",), output="",
    resume_flag=True,
    help="fine-tune pretrained trunks (or train from scratch) on PTB-XL's five superclasses, "
         "tracked in MLflow",
    description="Put the trunks of pretrained interval regressors under a new head and train it "
                "on a PTB-XL store's diagnostic superclasses (NORM, MI, STTC, CD, HYP); evaluate "
                "on the test fold with 95% bootstrap intervals. Settings come from defaults, "
                "then --config, then the flags below, then --set. One MLflow run per call. Under "
                "torchrun, trains data-parallel. See docs/finetune.md."))
