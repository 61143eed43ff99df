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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecgtransfer.config import ConfigError, check, setting, to_dict, to_yaml
from ecgtransfer.features.vocabulary import (UNITS, column, implausible_reason, plausible,
                                             status_column)
from ecgtransfer.stages import Context, Stage, StageResult, register_stage
from ecgtransfer.stages.trained import (TrainedStage, Training, TrainingConfig,
                                        TrainingResult, check_model_settings, used_counts)
from ecgtransfer.tags import tag_values

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PretrainConfig", "PretrainResult", "pretrain", "find_labels",
           "target_table"]

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
    fs: float | None = setting(None, "input rate; records are resampled (default: the store's)",
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
    """One trained regressor: its targets and test MAE per target."""

    name: str
    targets: list[str]
    test_mae: dict[str, float]


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
        raise ConfigError(f"{store_path}: {len(found)} label files "
                          f"({', '.join(p.name for p in found)}); pass --labels to choose one",
                          "labels")
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
        <problem>"``, the labeller's status (``"flat lead V2"``, ...) or ``"implausible value
        ..."`` for a value outside its plausible range.

    Raises
    ------
    ValueError
        One line naming ``labels_path``: no row is a record of this store, or a target value
        that is not a number.
    """
    import pandas as pd

    labels = labels.set_index("record_id")
    ids = index["record_id"].astype(str)
    if not ids.isin(labels.index).any():
        raise ValueError(f"{labels_path}: none of its rows is a record of this store (labels "
                         "made for another store?)")
    rows = labels.reindex(ids)
    values = np.empty((len(rows), len(targets)), dtype=np.float64)
    for j, t in enumerate(targets):
        try:
            values[:, j] = pd.to_numeric(rows[column(t)], errors="raise")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{labels_path}: column {column(t)}: {exc}") from None
    reasons = np.full(values.shape, "", dtype=object)
    for j, t in enumerate(targets):
        status = rows[status_column(t)].fillna("").astype(str).to_numpy()
        bad = (status != "ok") | ~np.isfinite(values[:, j])
        reasons[bad, j] = np.where(status[bad] == "", "label NaN", status[bad])
        for i in np.flatnonzero(~bad & ~plausible(t, values[:, j])):
            reasons[i, j] = implausible_reason(t, values[i, j])
    reasons[~ids.isin(labels.index).to_numpy(), :] = "no label row"
    if "problem" in index.columns:
        problem = index["problem"].fillna("").astype(str).to_numpy()
        for i in np.flatnonzero(problem != ""):
            reasons[i, :] = f"index: {problem[i]}"
    values[reasons != ""] = np.nan
    return values, reasons


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
        from ecgtransfer.data.splits import split_positions
        from ecgtransfer.features.labels import read_labels

        super().__init__(config, context, "pretrain")
        self.labels_path = find_labels(self.store.path, config.labels)
        self.labels = read_labels(self.labels_path)
        self.splits = split_positions(self.store.index, config.split, seed=config.seed,
                                      fractions=config.split_fractions, where=str(self.store.path))
        self.fs, self.n_samples = self.input_shape(config.fs)

    def select(self, targets: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
        """Usable positions per split, the target values, and the exclusion counts."""
        values, reasons = target_table(self.store.index, self.labels, targets, self.labels_path)
        why = np.array([_first_reason(r) for r in reasons], dtype=object)
        limit = self.config.max_train_records
        chosen = {}
        for split, pos in self.splits.items():
            keep = pos[why[pos] == ""]
            if split == "train" and limit and len(keep) > limit:
                rng = np.random.default_rng(self.config.seed)
                keep = np.sort(rng.choice(keep, limit, replace=False))
            chosen[split] = keep
        for split in ("train", "val"):
            if len(chosen[split]) < 2:
                raise ValueError(f"{self.store.path}: {len(chosen[split])} usable {split} records "
                                 f"for {'+'.join(targets)} (split {self.config.split!r}); "
                                 "need at least 2")
        return chosen, values, used_counts(self.splits, chosen, why)

    def network(self, targets: list[str]):
        from ecgtransfer.models import create_model

        return self.build(lambda: create_model(self.config.model, in_channels=self.store.n_leads,
                                               num_outputs=len(targets),
                                               **self.config.model_kwargs))

    def job(self, targets: list[str], selection: tuple) -> Training:
        """One regressor's training: normalisation fitted on its training records."""
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
            pred, true = task.to_units(z), task.to_units(y)
            err = np.abs(pred - true).mean(axis=0)
            mae = {f"{t}_{u}": float(e) for t, u, e in zip(targets, units, err)}
            run.log_metrics({f"test_mae_{k}": v for k, v in mae.items()})
            run.log_figure(plots.scatter_true_pred(true, pred, targets, units),
                           "plots/scatter_test.png")
            return {"test_mae": mae}

        columns = [column(t) for t in targets]
        table = pd.DataFrame(values, columns=columns)
        table.insert(0, "record_id", self.store.index["record_id"].to_numpy())
        run_name = config.run_name or f"{name} {config.model}"  # the target first
        if config.run_name and len(config.targets) > 1 and not config.multi_output:
            run_name = f"{run_name} {name}"
        datasets = {s: dataset(s) for s in ("train", "val", "test")}
        n_leads = self.store.n_leads
        raw = StoreDataset(self.store, chosen["test" if len(chosen["test"]) else "val"][:1], None,
                           np.zeros(n_leads), np.ones(n_leads), self.fs, self.n_samples)
        example = raw.signal(0)[None]  # mV: the regressor normalises inside
        return Training(
            folder=self.out / name, model=self.network(targets), task=task, datasets=datasets,
            run_name=run_name, desc=name, counts=counts,
            tags=tag_values(model=config.model, targets=",".join(targets),
                            labels=str(self.labels_path.resolve()),
                            labeller_config_hash=_labeller_hash(self.labels_path)),
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
        shown = ", ".join(f"{k.split('_')[0].upper()} {v:.2f} {k.split('_')[1]}"
                          for k, v in r.test_mae.items())
        lines.append(f"{r.path}: best epoch {r.best_epoch}, test MAE {shown or 'n/a'}"
                     f"{' (reused)' if r.reused else ''}; MLflow run {r.run_id}")
    return StageResult(str(config.out), "\n".join(lines), details=results, trained=results,
                       run_ids=[r.run_id for r in results if r.run_id])


def _train_models(config: PretrainConfig, context: Context) -> list[PretrainResult]:
    """Each model of :func:`pretrain`, trained or reused."""
    import contextlib

    from ecgtransfer import tracking

    stage = _Pretrain(config, context)
    parent_run_id = context.parent_run
    try:
        groups = _groups(config)
        selections = [stage.select(targets) for targets in groups]  # every model's data first
        for targets in groups:
            stage.network(targets)  # checks model and model_kwargs before anything is written
        stage.start()
        parent = contextlib.nullcontext(None)
        if stage.dist.is_main and len(groups) > 1:
            name = config.run_name or f"{'+'.join(config.targets)} {config.model}"
            parent = tracking.open_parent_run(
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
                if info is None:
                    log.info("%s: %s records (%d left out: label NaN/flagged/implausible or "
                             "unlabelled)",
                             name, ", ".join(f"{s} {c['used']}" for s, c in selection[2].items()),
                             sum(sum(c["excluded"].values()) for c in selection[2].values()))
                    info = stage.train(stage.job(targets, selection),
                                       parent=run.id if run is not None else parent_run_id)
                    reused = False
                else:
                    reused = True
                results.append(PretrainResult(
                    name=name, targets=targets, path=folder, run_id=info.get("run_id"),
                    best_epoch=info.get("best_epoch", 0), test_mae=info.get("test_mae", {}),
                    counts=info.get("counts", selection[2]), reused=reused))
        return results
    finally:
        stage.close()


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
