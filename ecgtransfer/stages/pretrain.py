"""The pretrain stage: regress HR/PR/QRS/QT from ECGs, one model per target (as the study) or one
multi-output model, tracked in MLflow.

Run folder (``config.out``)::

    config.yaml            the resolved config
    parent_run.json        the MLflow run the per-model runs nest under (several models)
    <name>/                one per model: ``qrs``, ``hr``, ... or ``hr+pr+qrs+qt`` (multi-output);
                           a training run folder (see :mod:`ecgtransfer.stages.trained`)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecgtransfer.config import check, setting, to_dict, to_yaml
from ecgtransfer.features.vocabulary import UNITS, column
from ecgtransfer.stages import Context, Stage, StageResult, register_stage
from ecgtransfer.stages.trained import (TrainedStage, Training, TrainingConfig,
                                        TrainingResult, check_model_settings,
                                        median_best_epoch, used_counts)
from ecgtransfer.tags import tag_values

__all__ = ["PretrainConfig", "PretrainResult", "pretrain"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PretrainConfig(TrainingConfig):
    """Everything ``ecgtransfer pretrain`` does, as one record (the data, device and tracking
    settings are :class:`TrainingConfig`'s, the loop's :class:`~ecgtransfer.config.LoopConfig`'s)."""

    labels: str | None = setting(None, "label file (default: the store's only labels-*.csv)",
                                 role="input", metavar="FILE")
    targets: list[str] = setting(["qrs"], "intervals to regress, comma-separated",
                                 choices=tuple(UNITS), metavar="LIST")
    multi_output: bool = setting(False, "one model with an output per target instead of one "
                                 "model per target (as the study)")
    model: str = setting("resnet1d_fast", "a registered model (see --list-models)",
                         metavar="NAME")
    model_kwargs: dict[str, Any] = setting({}, "the architecture's parameters "
                                           "(--set model_kwargs.width=64)", cli=False)
    fs: float | None = setting(None, "input rate; a store at another rate is read from its "
                               "resampled copy, made once (default: the store's)",
                               unit="Hz")
    max_train_records: int | None = setting(None, "use at most this many training records (a "
                                            "seeded subsample), e.g. for quick runs")
    loss: str = setting("huber", "loss on standardised targets", choices=("huber", "mse", "l1"))
    out: str = setting("runs/pretrain", "run folder: config, checkpoints, models",
                       role="output", metavar="DIR")
    experiment: str = setting("ecgtransfer-pretrain", "MLflow experiment", role="tracking",
                              metavar="NAME")

    def __post_init__(self) -> None:
        super().__post_init__()
        targets = self.targets
        if isinstance(targets, str):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        object.__setattr__(self, "targets", [str(t).lower() for t in targets])
        check(not self.targets, "targets", "name at least one of hr, pr, qrs, qt")
        for t in self.targets:
            check(t not in UNITS, "targets", f"unknown target {t!r}; choose from "
                  f"{', '.join(UNITS)}")
        check(len(set(self.targets)) != len(self.targets), "targets", "a target is repeated")
        check_model_settings(self, self.model)
        check(self.loss not in ("huber", "mse", "l1"), "loss", "huber, mse or l1")
        check(self.max_train_records is not None and self.max_train_records < 2,
              "max_train_records", "must be at least 2")


@dataclass(kw_only=True)
class PretrainResult(TrainingResult):
    """One trained regressor: its targets, test MAE per target (``<target>_<unit>``) with its
    95% bootstrap interval over records, and a cross-validation's folds (its MAE is then the
    pooled out-of-fold one)."""

    name: str
    targets: list[str]
    test_mae: dict[str, float]
    intervals: dict[str, list[float]] = field(default_factory=dict)
    folds: list[dict[str, Any]] = field(default_factory=list)


def _labeller_hash(labels_path: Path) -> str:
    import json

    sidecar = labels_path.with_suffix(".json")
    if sidecar.exists():
        try:
            return str(json.loads(sidecar.read_text()).get("config_hash", ""))
        except (OSError, ValueError):
            pass
    stem = labels_path.stem
    return stem.split("-", 1)[1] if stem.startswith("labels-") else ""


def _first_reason(row: np.ndarray) -> str:
    first = next((r for r in row if r), "")
    if first.startswith("implausible value"):
        return "label outside its plausible range"
    if first and first != "no label row" and not first.startswith("index:"):
        return "label NaN or flagged"
    return first


class _Pretrain(TrainedStage):
    """The data shared by every model of one ``pretrain`` call."""

    experiment_note = ("Interval regressors (HR, PR, QRS, QT) pretrained by `ecgtransfer "
                       "pretrain`: one run per model, test MAE per interval. Their trunks are "
                       "what `ecgtransfer finetune --from` transfers.")

    def __init__(self, config: PretrainConfig, context: Context):
        from ecgtransfer.data.splits import cv_folds, split_positions
        from ecgtransfer.features.labels import find_labels, read_labels

        super().__init__(config, context, "pretrain")
        self.labels_path = find_labels(self.store.path, config.labels)
        self.labels = read_labels(self.labels_path)
        where = str(self.store.path)
        if config.cv:  # every record tested once, by the fold's model that never saw it
            self.folds = cv_folds(self.store.index, config.cv, config.split, where=where)
        else:
            self.folds = [split_positions(self.store.index, config.split, seed=config.seed,
                                          fractions=config.split_fractions, where=where)]
        self.fs, self.n_samples = self.input_shape(config.fs)

    def select(self, targets: list[str], fold: int = 0
               ) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
        """Usable positions per split of ``fold`` (0 without cross-validation), the target
        values, and the exclusion counts."""
        from ecgtransfer.features.labels import target_table

        values, reasons = target_table(self.store.index, self.labels, targets, self.labels_path)
        why = np.array([_first_reason(r) for r in reasons], dtype=object)
        limit = self.config.max_train_records
        splits = self.folds[fold]
        chosen = {}
        for split, pos in splits.items():
            keep = pos[why[pos] == ""]
            if split == "train" and limit and len(keep) > limit:
                rng = np.random.default_rng(self.config.seed)
                keep = np.sort(rng.choice(keep, limit, replace=False))
            chosen[split] = keep
        which = f"fold {fold + 1} of {self.config.cv}: " if self.config.cv else ""
        for split in ("train", "val"):
            if len(chosen[split]) < 2:
                raise ValueError(f"{self.store.path}: {which}{len(chosen[split])} usable {split} "
                                 f"records for {'+'.join(targets)} (split "
                                 f"{self.config.split!r}); need at least 2")
        return chosen, values, used_counts(splits, chosen, why)

    def evaluator(self, targets: list[str]):
        """How a regressor of ``targets`` is judged on its held-out records."""
        from ecgtransfer.training.evaluation import RegressionEvaluator

        return RegressionEvaluator(tuple(targets), tuple(UNITS[t] for t in targets),
                                   self.config.bootstrap, self.config.seed)

    def model_tags(self, targets: list[str]) -> dict[str, Any]:
        """What a regressor of ``targets`` was trained on."""
        return tag_values(model=self.config.model, targets=",".join(targets),
                          labels=str(self.labels_path.resolve()),
                          labeller_config_hash=_labeller_hash(self.labels_path))

    def network(self, targets: list[str]):
        from ecgtransfer.models import create_model

        return self.build(lambda: create_model(self.config.model, in_channels=self.store.n_leads,
                                               num_outputs=len(targets),
                                               **self.config.model_kwargs))

    def job(self, targets: list[str], selection: tuple, folder: Path,
            fold: int | None = None) -> Training:
        """One regressor's training in ``folder`` (a cross-validation's fold ``fold``,
        1-based): normalisation fitted on its training records."""
        import pandas as pd
        from ecgtransfer import plots
        from ecgtransfer.data.dataset import StoreDataset, fit_lead_stats
        from ecgtransfer.models import model_defaults
        from ecgtransfer.models.regressor import IntervalRegressor, save_regressor
        from ecgtransfer.training.tasks import RegressionTask

        config = self.config
        name = "+".join(targets)
        chosen, values, counts = selection
        units = [UNITS[t] for t in targets]
        lead_mean, lead_std = fit_lead_stats(self.store, chosen["train"])
        train_y = values[chosen["train"]]
        t_mean, t_std = train_y.mean(axis=0), train_y.std(axis=0)
        t_std[t_std == 0] = 1.0
        task = RegressionTask(targets, units, t_mean, t_std, loss=config.loss)
        meta = {"model": config.model,
                "model_kwargs": {**model_defaults(config.model), **config.model_kwargs},
                "targets": targets, "units": units, "fs": self.fs, "n_samples": self.n_samples,
                "leads": list(self.store.leads), "dataset": self.dataset_name}
        meta = _plain(meta)

        def dataset(split: str) -> StoreDataset:
            z = ((values[chosen[split]] - t_mean) / t_std).astype(np.float32)
            return StoreDataset(self.store, chosen[split], z, lead_mean, lead_std, self.fs,
                                self.n_samples)

        def evaluate(run, trainer, test) -> dict:
            if not len(test):
                return {"test_mae": {}}
            z, y = trainer.predict(test)
            ids = self.store.index["record_id"].to_numpy()[chosen["test"]]
            return self.evaluator(targets).evaluate(run, ids, task.to_units(z),
                                                    task.to_units(y), folder)

        columns = [column(t) for t in targets]
        table = pd.DataFrame(values, columns=columns)
        table.insert(0, "record_id", self.store.index["record_id"].to_numpy())
        run_name = config.run_name or f"{name} {config.model}"  # the target first
        if config.run_name and len(config.targets) > 1 and not config.multi_output:
            run_name = f"{run_name} {name}"
        if fold is not None:
            run_name = f"{run_name} fold{fold}"
        datasets = {s: dataset(s) for s in ("train", "val", "test")}
        n_leads = self.store.n_leads
        raw = StoreDataset(self.store, chosen["test" if len(chosen["test"]) else "val"][:1], None,
                           np.zeros(n_leads), np.ones(n_leads), self.fs, self.n_samples)
        example = raw.signal(0)[None]  # mV: the regressor normalises inside
        return Training(
            folder=folder, model=self.network(targets), task=task, datasets=datasets,
            run_name=run_name, desc=name, counts=counts, log_model=fold is None,
            tags={**self.model_tags(targets),
                  **tag_values(evaluation=None if fold is None else "fold", cv=config.cv or None,
                               fold=fold)},
            params={"targets": targets, "model_kwargs": meta["model_kwargs"],
                    "input": {"fs": self.fs, "n_samples": self.n_samples,
                              "leads": meta["leads"]}, "data": _count_params(counts)},
            inputs=(table, chosen, columns[0] if len(columns) == 1 else None),
            example=np.ascontiguousarray(example, dtype=np.float32),
            curves=lambda fit: plots.learning_curves(fit.history, targets, units, fit.best_epoch),
            evaluate=evaluate,
            finish=lambda net: IntervalRegressor(net, meta, lead_mean, lead_std, t_mean, t_std),
            save=save_regressor)


def _plain(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def _count_params(counts: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for split, c in counts.items():
        out[f"n_{split}"] = c["used"]
        out[f"n_{split}_excluded"] = sum(c["excluded"].values())
    return out


def _groups(config: PretrainConfig) -> list[list[str]]:
    return [list(config.targets)] if config.multi_output else [[t] for t in config.targets]


def pretrain(config: PretrainConfig, context: Context) -> StageResult:
    """Train the regressors ``config`` describes: one per target, or one multi-output model.

    Returns a :class:`StageResult` whose ``trained`` (and ``details``) are one
    :class:`PretrainResult` per model. With ``context.resume``, an interrupted run in
    ``config.out`` (same settings) is continued and finished models are reused; without it, a
    folder that holds a run already is an error.

    Model initialisation draws from a generator seeded with ``config.seed`` (the caller's torch
    generator is left as it was). Under ``torchrun`` every process calls this; rank 0 alone
    writes files and talks to MLflow.
    """
    results = _train_models(config, context)
    lines = []
    for r in results:
        if r.run_id is None:  # a torchrun rank other than 0
            continue
        shown = ", ".join(
            f"{k.split('_')[0].upper()} {v:.2f} {k.split('_')[1]}"
            + (f" [{r.intervals[k][0]:.2f}, {r.intervals[k][1]:.2f}]" if k in r.intervals else "")
            for k, v in r.test_mae.items())
        where = f"best epoch {r.best_epoch}, test"
        if r.folds:
            epochs = ", ".join(str(f.get("best_epoch")) for f in r.folds)
            where = f"{len(r.folds)}-fold cross-validation (best epochs {epochs}), out-of-fold"
        lines.append(f"{r.path}: {where} MAE {shown or 'n/a'}"
                     f"{' (reused)' if r.reused else ''}; MLflow run {r.run_id}")
    return StageResult(str(config.out), "\n".join(lines), details=results, trained=results,
                       run_ids=[r.run_id for r in results if r.run_id])


def _train_models(config: PretrainConfig, context: Context) -> list[PretrainResult]:
    """Each model of :func:`pretrain`, trained or reused."""
    import contextlib


    stage = _Pretrain(config, context)
    parent_run_id = context.parent_run
    try:
        groups = _groups(config)
        folds = range(config.cv or 1)
        # every model's data first (each fold's, under cross-validation)
        selections = [[stage.select(targets, i) for i in folds] for targets in groups]
        for targets in groups:
            stage.network(targets)  # checks model and model_kwargs before anything is written
        stage.start()
        parent = contextlib.nullcontext(None)
        if stage.dist.is_main and len(groups) > 1:
            name = config.run_name or f"{'+'.join(config.targets)} {config.model}"
            parent = stage.tracker.open_parent_run(
                experiment=config.experiment, name=name, parent=parent_run_id,
                tags={**stage.tags(),
                      **tag_values(model=config.model, targets=",".join(config.targets))},
                marker=stage.out / "parent_run.json")
        with parent as run:
            if run is not None:
                run.log_params(to_dict(config))
                run.log_text(to_yaml(config), "config.yaml")
            results = []
            for targets, selection in zip(groups, selections):
                name = "+".join(targets)
                folder = stage.out / name
                info = stage.finished(folder)
                reused = info is not None
                if config.cv:
                    info = _cross_validate(stage, targets, selection, folder,
                                           run.id if run is not None else parent_run_id)
                elif info is None:
                    log.info("%s: %s records (%d left out: label NaN/flagged/implausible or "
                             "unlabelled)",
                             name, ", ".join(f"{s} {c['used']}" for s, c in selection[0][2].items()),
                             sum(sum(c["excluded"].values()) for c in selection[0][2].values()))
                    info = stage.train(stage.job(targets, selection[0], folder),
                                       parent=run.id if run is not None else parent_run_id)
                folds_info = info.get("folds", [])
                results.append(PretrainResult(
                    name=name, targets=targets, path=folder, run_id=info.get("run_id"),
                    best_epoch=(median_best_epoch(folds_info) if config.cv
                                else info.get("best_epoch", 0)),
                    test_mae=info.get("test_mae", {}), intervals=info.get("intervals", {}),
                    counts=info.get("counts", selection[0][2]), reused=reused,
                    folds=folds_info))
        return results
    finally:
        stage.close()


def _cross_validate(stage: _Pretrain, targets: list[str], selections: list[tuple],
                    folder: Path, parent: str | None) -> dict:
    """The skeleton's cross-validation (:meth:`TrainedStage.cross_validate`) of one regressor:
    one model per fold, and the MAE of the pooled out-of-fold predictions with its interval."""
    from ecgtransfer.stages.trained import CrossValidation
    from ecgtransfer.training.predictions import read_regression_predictions, regression_arrays

    config, name = stage.config, "+".join(targets)
    evaluator = stage.evaluator(targets)

    def evaluate(run, pooled, folds: list[dict]) -> dict:
        _, pred, true = regression_arrays(pooled)
        return evaluator.evaluate(run, pooled["record_id"].to_numpy(), pred, true, folder,
                                  pooled=True)

    return stage.cross_validate(CrossValidation(
        k=config.cv, folder=folder,
        job=lambda i: stage.job(targets, selections[i], folder / f"fold{i + 1}", fold=i + 1),
        run_name=f"{config.run_name or f'{name} {config.model}'} cv{config.cv}",
        tags={**stage.model_tags(targets), **tag_values(evaluation="cv", cv=config.cv)},
        params={"targets": targets, "input": {"fs": stage.fs, "n_samples": stage.n_samples,
                                              "leads": list(stage.store.leads)}},
        note=f"{config.cv}-fold cross-validation of a {name} regressor ({config.model}): the "
             "test MAE pools the out-of-fold predictions of the fold runs nested here (each "
             "record predicted by the one model that never saw it), with a 95% bootstrap "
             "interval over records.",
        read=read_regression_predictions, evaluate=evaluate), parent)


def _list_models() -> str:
    from ecgtransfer.models import DEFAULT_MODEL, list_models, model_defaults

    return "\n".join(f"{name}{' (default)' if name == DEFAULT_MODEL else ''}: "
                     + ", ".join(f"{k}={v}" for k, v in model_defaults(name).items())
                     for name in list_models())


register_stage(Stage(
    "pretrain", PretrainConfig, pretrain, command=("pretrain",), output="",
    pipeline_run=False, resume_flag=True,
    actions={"list_models": ("print the registered models and their parameters, then exit",
                             _list_models)},
    help="train HR/PR/QRS/QT regressors on a labelled store, tracked in MLflow",
    description="Train 1D-CNN regressors of HR, PR, QRS and QT on a labelled signal store: one "
                "model per target, or one multi-output model. Settings come from defaults, then "
                "--config, then the flags below, then --set. Each model is one MLflow run "
                "(params, per-epoch metrics, test MAE, plots, the model). Under torchrun, trains "
                "data-parallel. See docs/pretrain.md."))
