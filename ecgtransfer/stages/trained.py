"""The skeleton every training stage shares (pretrain, finetune, and the search and
cross-validation stages to come): store and device, the run folder, seeded model building, the
one training loop, and a tracked run that logs, evaluates, saves and marks the model done.

A stage differs only in what it hands over in a :class:`Training`: its model, task and data, what
its run is called and tagged, how it evaluates the test split and what model it keeps.

Run folder of one model::

    config.yaml            the resolved config (in the stage's ``out``)
    checkpoint.pt          the last finished epoch: everything ``--resume`` needs
    run.json               the MLflow run id
    model.pt               the best epoch's model (plain weights and meta), when finished
    history.csv            per-epoch metrics
    result.json            run id, best epoch, test figures: written last, marks the model done
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ecgtransfer.config import (ConfigError, LoopConfig, check, check_run_folder, loop_config,
                                setting, to_dict, to_yaml)
from ecgtransfer.stages import Context
from ecgtransfer.tags import tag_values

__all__ = ["BOOKKEEPING", "TrainingConfig", "TrainedStage", "Training", "TrainingResult",
           "CrossValidation", "write_json", "read_json", "used_counts", "check_model_settings",
           "SPLITS"]

SPLITS = ("auto", "folds", "A", "B", "random", "stratified")
BOOKKEEPING = ("out", "experiment", "tracking_uri", "run_name")
"""Settings that say where a run is written and logged, not what it trains: left out of its
logged params, a search's best config and the settings a search varies."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig(LoopConfig):
    """The settings every training stage has beside the loop's: its data, device and where its
    runs go. A stage's config extends it (and may give ``out`` and ``experiment`` its own
    defaults)."""

    store: str = setting("", "the signal store to train on (pretrain: labelled by `ecgtransfer "
                         "label`; finetune: PTB-XL, with its superclasses)", role="input",
                         metavar="STORE")
    split: str = setting("auto", "PTB-XL folds 1-8/9/10 (auto when the store has them; a "
                         "Challenge store: stratified; else random), within one A/B patient "
                         "half with its own folds (B for A->B transfer), a seeded random split "
                         "by patient, or seeded and stratified over the classes (iterative "
                         "stratification, records one by one)", choices=SPLITS)
    split_fractions: list[float] = setting([0.8, 0.1, 0.1], "train/validation/test fractions "
                                           "of a random split", cli=False)
    cv: int = setting(0, "cross-validate over this many patient-disjoint folds (PTB-XL: its "
                      "strat_folds grouped; else by patient): each fold tests once, the next "
                      "validates, the rest train; the metrics pool the out-of-fold predictions "
                      "(0: one train/val/test split)", metavar="K")
    bootstrap: int = setting(1000, "resamples of the test metrics' bootstrap intervals over "
                             "records (0: none)")
    device: str = setting("auto", "auto: CUDA when present", choices=("auto", "cpu", "cuda"))
    out: str = setting("runs/train", "run folder: config, checkpoints, models", role="output",
                       metavar="DIR")
    experiment: str = setting("ecgtransfer", "MLflow experiment", role="tracking",
                              metavar="NAME")
    tracking_uri: str | None = setting(None, "MLflow tracking URI, also where MLflow references "
                                       "are looked up (default: $MLFLOW_TRACKING_URI or "
                                       "sqlite:///mlflow.db)", role="tracking", metavar="URI")
    run_name: str | None = setting(None, "MLflow run name (default: from the settings)",
                                   metavar="NAME")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.split not in SPLITS, "split", f"{self.split!r} is not {', '.join(SPLITS)}")
        check(len(self.split_fractions) != 3 or min(self.split_fractions) <= 0
              or abs(sum(self.split_fractions) - 1) > 1e-6, "split_fractions",
              "three positive fractions summing to 1")
        check(self.device not in ("auto", "cpu", "cuda"), "device", "auto, cpu or cuda")
        check(self.bootstrap < 0, "bootstrap", "must not be negative")
        check(self.cv < 0 or self.cv in (1, 2), "cv", "0 (no cross-validation) or at least 3 "
              "folds (one tests, the next validates, the rest train)")


def check_model_settings(config: Any, model: str | None) -> None:
    """The input rate and the architecture's own keys (typed) of a training config."""
    check(config.fs is not None and config.fs <= 0, "fs", "must be positive")
    check(not isinstance(config.model_kwargs, dict), "model_kwargs", "must be a mapping")
    if model or config.model_kwargs:
        from ecgtransfer.models import DEFAULT_MODEL, check_model_kwargs

        try:
            check_model_kwargs(model or DEFAULT_MODEL, config.model_kwargs)
        except ValueError as exc:
            key = "model_kwargs" if "model_kwargs" in str(exc) else "model"
            raise ConfigError(str(exc), key) from None


def write_json(path: Path, value: Any) -> None:
    """JSON, whole or not at all, with NaN (an AUROC of an absent class) written as null."""
    from ecgtransfer.files import atomic_file, json_safe

    with atomic_file(path) as f:
        f.write(json.dumps(json_safe(value), indent=2))


def read_json(path: Path) -> dict:
    """A JSON record a stage wrote; null read back as NaN where a number was meant."""
    try:
        value = json.loads(path.read_text())
    except ValueError:
        raise ValueError(f"{path}: damaged (not JSON); delete it to redo that model") from None

    def nan(v):
        if isinstance(v, dict):
            return {k: nan(x) for k, x in v.items()}
        if isinstance(v, list):
            return [nan(x) for x in v]
        return np.nan if v is None else v

    return {k: (nan(v) if k in ("test", "intervals", "test_mae") else v) for k, v in value.items()}


@dataclass(kw_only=True)
class TrainingResult:
    """One model a training stage trained (or reused): what every training stage's results
    have in common. A stage's :attr:`~ecgtransfer.stages.StageResult.trained` lists them.

    Attributes
    ----------
    path : Path
        The model's run folder.
    run_id : str or None
        Its MLflow run (None on a ``torchrun`` rank other than 0).
    best_epoch : int
        The epoch whose weights were kept (a cross-validation: the median of its folds').
    counts : dict
        Records per split, used and excluded.
    reused : bool
        Finished already and reused (``--resume``).
    """

    path: Path
    run_id: str | None
    best_epoch: int
    counts: dict[str, Any] = field(default_factory=dict)
    reused: bool = False


@dataclass
class Training:
    """One model to train, as a training stage describes it to :meth:`TrainedStage.train`.

    Attributes
    ----------
    folder : Path
        The model's run folder.
    model : torch.nn.Module
        Built with :meth:`TrainedStage.build`.
    task : object
        The loop's task (:mod:`ecgtransfer.training.tasks`).
    datasets : dict
        ``train``, ``val`` and ``test`` datasets.
    run_name, tags, params
        The MLflow run's name, extra tags and extra params (beside the config's; a None value
        leaves that config key out).
    counts : dict
        Records per split, used and excluded (logged, and kept in ``result.json``).
    inputs : tuple
        ``(table, splits, target column)`` for the run's dataset inputs.
    note : str
        The run's description (Markdown), "" for none.
    example : numpy.ndarray
        One input batch, for the logged model's signature.
    curves : callable
        ``curves(fit) -> Figure``: the learning curves.
    evaluate : callable
        ``evaluate(run, trainer, test_set) -> dict``: logs the test figures, returns what
        ``result.json`` keeps of them.
    finish : callable
        ``finish(trained network) -> model`` to keep (in eval mode, on the CPU).
    save : callable
        ``save(model, path)``: the plain weights file.
    callbacks : list
        The stage's own training-loop callbacks (:mod:`ecgtransfer.training.callbacks`), e.g.
        freezing the trunks for the first epochs.
    trainer_kwargs : dict
        Extra :class:`~ecgtransfer.training.loop.Trainer` arguments (parameter groups).
    log_model : bool
        Log the model as an MLflow model; else its plain weights file only, as an artifact
        (a cross-validation's fold models: evaluated, not deployed).
    desc : str
        Progress and log label.
    """

    folder: Path
    model: Any
    task: Any
    datasets: dict[str, Any]
    run_name: str
    tags: dict[str, str]
    params: dict[str, Any]
    counts: dict[str, Any]
    inputs: tuple
    example: np.ndarray
    curves: Callable[[Any], Any]
    evaluate: Callable[[Any, Any, Any], dict]
    finish: Callable[[Any], Any]
    save: Callable[[Any, Path], None]
    note: str = ""
    callbacks: list = field(default_factory=list)
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)
    desc: str = ""
    log_model: bool = True


@dataclass(frozen=True)
class CrossValidation:
    """A cross-validation, as a training stage describes it to
    :meth:`TrainedStage.cross_validate`: how to train each fold and how to judge the pooled
    out-of-fold predictions. Any training stage cross-validates through it.

    Attributes
    ----------
    k : int
        Folds.
    folder : Path
        The cross-validation's run folder; fold ``i`` (1-based) trains in ``folder/fold<i>``.
    job : callable
        ``job(i) -> Training``: fold ``i``'s (0-based) model, from its own data, whose
        ``evaluate`` writes the fold's ``test_predictions.csv`` in its folder.
    run_name, tags, params, note
        The cross-validation run's name, extra tags and params, and description.
    read : callable
        The checked reader of a fold's predictions table
        (:mod:`ecgtransfer.training.predictions`).
    evaluate : callable
        ``evaluate(run, pooled, folds) -> dict``: log the pooled predictions' figures (the
        table has a ``fold`` column and is ``oof_predictions.csv`` in ``folder``) and return
        what ``result.json`` keeps; ``folds`` holds each fold's ``result.json`` record.
    """

    k: int
    folder: Path
    job: Callable[[int], Training]
    run_name: str
    tags: dict[str, Any]
    params: dict[str, Any]
    note: str
    read: Callable[[Path], Any]
    evaluate: Callable[[Any, Any, list[dict]], dict]


_FOLD_KEYS = ("fold", "run_id", "best_epoch", "test", "test_mae", "model_uri", "cost")
"""What a cross-validation's ``result.json`` keeps of each fold's."""


class TrainedStage:
    """Store, device and run folder of one training stage call; everything checked before a
    file is written.

    Parameters
    ----------
    config : dataclass
        A stage config extending :class:`~ecgtransfer.config.LoopConfig` with ``store``,
        ``device``, ``out``, ``experiment`` and ``tracking_uri``.
    context : Context
    kind : str
        The stage's name (``pretrain``), its ``ecgtransfer.stage`` tag.
    """

    experiment_note = ""
    """The description an experiment of this stage gets when it has none."""

    def __init__(self, config: Any, context: Context, kind: str):
        from ecgtransfer.data.store import SignalStore
        from ecgtransfer.training.distributed import init_distributed, pick_device

        if not config.store:
            raise ConfigError("store: no signal store given (--store or store: in the config)",
                              "store")
        from ecgtransfer.files import check_output_folder

        # before any loading: --out naming a store or another stage's output is refused at once
        check_output_folder(config.out, kind, legacy=("config.yaml",))
        self.config = config
        self.context = context
        self.tracker = context.tracker_for(config.tracking_uri)
        self.kind = kind
        self.store = SignalStore(config.store)
        self.device = pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = init_distributed(self.device)
        self.out = Path(config.out)
        self._threads = None  # the caller's torch threads, restored by close()
        if config.threads:
            import torch

            self._threads = torch.get_num_threads()
            torch.set_num_threads(config.threads)

    @property
    def dataset_name(self) -> str:
        """What the store holds: its identity's ``dataset`` (e.g. ``ptbxl``), else its source."""
        return self.store.dataset

    def tags(self) -> dict[str, str]:
        """The tags every run of the stage carries."""
        from ecgtransfer.tracking import code_version, store_hash

        return {**tag_values(stage=self.kind, dataset=self.dataset_name,
                             store=str(self.store.path.resolve()),
                             store_hash=store_hash(self.store.path),
                             code_version=code_version()), **self.context.tags}

    def input_shape(self, fs: float | None) -> tuple[float, int]:
        """The input rate (``fs`` or the store's) and the samples per record at it (the median
        record length, resampled)."""
        rate = float(fs or self.store.fs)
        lengths = self.store.index["n_samples"].to_numpy()
        median = float(np.median(lengths)) if len(lengths) else 0.0
        return rate, int(round(median * rate / self.store.fs))

    def settings(self) -> dict[str, Any]:
        """What a model is trained with, as a run's params: the config bar its bookkeeping
        (where it is written or logged; ``config.yaml`` keeps that), the device and the number
        of processes."""
        settings = {k: v for k, v in to_dict(self.config).items() if k not in BOOKKEEPING}
        return {**settings, "device": str(self.device), "world_size": self.dist.world_size}

    def build(self, make: Callable[[], Any]) -> Any:
        """``make()`` with torch's random generator seeded by ``config.seed`` inside a fork, so
        the model's initialisation is the seed's and the caller's generator is untouched."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            return make()

    def start(self) -> None:
        """Refuse a folder that holds another run (or a resumed one with other settings), then
        write the resolved config and point MLflow at the experiment (rank 0)."""
        from ecgtransfer.training.distributed import barrier

        if self.dist.is_main:
            from ecgtransfer.files import atomic_file, check_output_folder, mark_output_folder

            # a folder holding anything but this stage's own runs (a store, another stage's
            # output) is refused before anything is written into it
            check_output_folder(self.out, self.kind, legacy=("config.yaml",))
            check_run_folder(self.out, self.config, self.context.resume, self.kind)
            mark_output_folder(self.out, self.kind)

            with atomic_file(self.out / "config.yaml") as f:
                f.write(to_yaml(self.config))
            self.tracker.describe_experiment(self.config.experiment, self.experiment_note)
        barrier(self.dist)

    def finished(self, folder: Path) -> dict | None:
        """A model's ``result.json`` when resuming and the model is done (reused), else None."""
        done = folder / "result.json"
        if self.context.resume and done.exists():
            info = read_json(done)
            log.info("%s: finished already (run %s); reused", folder, info.get("run_id"))
            return info
        return None

    def fit(self, job: Training, callbacks: list = ()):
        """Train ``job.model`` in the one loop with ``callbacks``, then the job's own and the
        caller's (``context.callbacks``); returns the trainer and its :class:`FitResult`."""
        from ecgtransfer.training.loop import Trainer

        trainer = Trainer(job.model, job.task, job.datasets["train"], job.datasets["val"],
                          loop_config(self.config), device=self.device, dist=self.dist,
                          checkpoint=job.folder / "checkpoint.pt",
                          callbacks=[*callbacks, *job.callbacks, *self.context.callbacks],
                          desc=job.desc, progress=self.context.progress, **job.trainer_kwargs)
        return trainer, trainer.fit(resume=self.context.resume)

    def train(self, job: Training, parent: str | None = None) -> dict:
        """Fit ``job`` and, on rank 0, track it in one MLflow run (reopened on resume): params,
        config, data counts and inputs once; metrics per epoch; the test evaluation, learning
        curves, history, the model file and the logged model; ``result.json`` last. Other ranks
        only train. Returns the ``result.json`` record ({} on other ranks)."""
        import torch

        with torch.random.fork_rng(devices=[]):  # data loaders draw seeds from torch's RNG
            torch.manual_seed(self.config.seed)
            return self._train(job, parent)

    def _train(self, job: Training, parent: str | None) -> dict:
        from ecgtransfer.files import atomic_file

        from ecgtransfer.training.callbacks import LogToRun

        if not self.dist.is_main:
            self.fit(job)
            return {}
        job.folder.mkdir(parents=True, exist_ok=True)
        with self.tracker.open_run(experiment=self.config.experiment, name=job.run_name,
                                   tags={**self.tags(), **job.tags},
                                   marker=job.folder / "run.json", resume=self.context.resume,
                                   parent=parent) as run:
            if run.new:
                # what the model was trained with; where it was written or logged is
                # bookkeeping (config.yaml keeps it)
                params = {**self.settings(), **job.params}
                run.log_params({k: v for k, v in params.items()
                                if not (k in job.params and job.params[k] is None)})
                run.log_text(to_yaml(self.config), "config.yaml")
                run.log_text(json.dumps(job.counts, indent=2), "data_counts.json")
                run.log_inputs(self.store.path, *job.inputs)
                if job.note:
                    run.set_note(job.note)
            trainer, fit = self.fit(job, [LogToRun(run)])  # logged before a pruner may stop it
            trainer.model.load_state_dict(fit.best_state)
            test = job.evaluate(run, trainer, job.datasets["test"])
            run.log_metrics({"best_epoch": fit.best_epoch, "n_epochs": len(fit.history)})
            run.set_tags(tag_values(stopped_early=str(fit.stopped_early).lower()))
            run.log_figure(job.curves(fit), "plots/learning_curves.png")
            import pandas as pd

            with atomic_file(job.folder / "history.csv") as f:
                pd.DataFrame(fit.history).to_csv(f, index=False)
            run.log_artifact(job.folder / "history.csv")
            model = job.finish(trainer.model.cpu().eval())
            job.save(model, job.folder / "model.pt")
            cost, measured_at = _cost(model, job, fit)
            run.log_metrics(cost)
            run.log_params(measured_at)
            model_uri = None
            if job.log_model:
                model_uri = run.log_model(model, job.example, job.folder / "model.pt")
                run.set_tags(tag_values(model_uri=model_uri))
            else:  # the plain weights as an artifact, not an MLflow model
                run.log_artifact(job.folder / "model.pt")
            result = {"run_id": run.id, "model_uri": model_uri, "best_epoch": fit.best_epoch,
                      "best_val_score": fit.best_score, **test, "counts": job.counts,
                      "n_epochs": len(fit.history), "cost": cost}
            write_json(job.folder / "result.json", result)
        return result

    def cross_validate(self, cv: CrossValidation, parent: str | None = None) -> dict:
        """Train one model per fold, each a child run of one cross-validation run (nested
        under ``parent``), pool the folds' test predictions (``oof_predictions.csv``, each
        record with its fold: every record predicted by the one model that never saw it) and
        evaluate them on that run. Finished folds are reused on resume, and a finished
        cross-validation whole; ``result.json`` is written last. Returns its record ({} on a
        ``torchrun`` rank other than 0, which trains the unfinished folds with rank 0)."""
        from ecgtransfer.training.predictions import (OOF_PREDICTIONS, TEST_PREDICTIONS,
                                                      pool_predictions)

        done = self.finished(cv.folder)
        if done is not None:
            return done
        folder = [cv.folder / f"fold{i + 1}" for i in range(cv.k)]
        if not self.dist.is_main:
            for i in range(cv.k):
                if self.finished(folder[i]) is None:
                    self.train(cv.job(i))
            return {}
        with self.tracker.open_parent_run(experiment=self.config.experiment, name=cv.run_name,
                                          tags={**self.tags(), **cv.tags},
                                          marker=cv.folder / "parent_run.json",
                                          parent=parent) as run:
            # params skip keys logged already, so a run reopened by --resume keeps its own
            run.log_params({**self.settings(), **cv.params})
            run.log_text(to_yaml(self.config), "config.yaml")
            run.set_note(cv.note)
            folds = []
            for i in range(cv.k):
                info = self.finished(folder[i])
                if info is None:
                    info = self.train(cv.job(i), parent=run.id)
                folds.append({"fold": i + 1, **info})
            pooled = pool_predictions([f / TEST_PREDICTIONS for f in folder],
                                      cv.folder / OOF_PREDICTIONS, cv.read)
            n_train = [f["counts"]["train"]["used"] for f in folds]
            run.log_params({"data": {"n_train": int(round(np.mean(n_train))),  # mean per fold
                                     "n_test": len(pooled)}})                # every fold's
            test = cv.evaluate(run, pooled, folds)
            costs = [f["cost"] for f in folds if f.get("cost")]
            if costs:  # the folds' models are one architecture: their mean cost is the model's
                run.log_metrics({k: float(np.mean([c[k] for c in costs if k in c]))
                                 for k in costs[0]})
            result = {"run_id": run.id, **test, "counts": _cv_counts(folds),
                      "folds": [{k: f[k] for k in _FOLD_KEYS if k in f} for f in folds]}
            write_json(cv.folder / "result.json", result)
        return read_json(cv.folder / "result.json")

    def close(self) -> None:
        """Leave the ``torchrun`` process group, if any, and give torch back the caller's
        number of threads (``threads`` is the stage's setting, not the process's)."""
        from ecgtransfer.training.distributed import shutdown

        shutdown(self.dist)
        if self._threads is not None:
            import torch

            torch.set_num_threads(self._threads)
            self._threads = None


def _cost(model, job: Training, fit) -> tuple[dict[str, float], dict[str, Any]]:
    """The model's cost report (metrics ``cost_*``): parameters, MACs per record at its input
    rate (PyTorch's FlopCounterMode), its weights file's size, CPU latency per record at batch
    1 and 64, and the training throughput (training records per second of training, median
    over epochs); and the input it was measured at (a param)."""
    from ecgtransfer.models.cost import model_cost

    meta = getattr(model, "meta", {})
    fs, n_samples = float(meta.get("fs", 0)), int(meta.get("n_samples", 0))
    leads = len(meta.get("leads") or ()) or int(job.example.shape[1])
    if not n_samples:
        n_samples = int(job.example.shape[-1])
    threads = torch_threads()
    cost = model_cost(model, fs, n_samples, leads, budget_s=0.3).metrics()
    cost["cost_size_mb"] = (job.folder / "model.pt").stat().st_size / 1e6
    seconds = sorted(m["train_seconds"] for m in fit.history if "train_seconds" in m)
    if seconds:
        n_train = len(job.datasets["train"])
        cost["cost_train_records_per_s"] = n_train / seconds[len(seconds) // 2]
    return cost, {"cost_input": {"fs": fs, "n_samples": n_samples, "leads": leads,
                                 "cpu_threads": threads}}


def _cv_counts(folds: list[dict]) -> dict[str, Any]:
    """Records per split summed over the folds (each record is tested once; trained on k - 2
    times)."""
    out: dict[str, Any] = {}
    for f in folds:
        for split, c in f["counts"].items():
            into = out.setdefault(split, {"records": 0, "used": 0, "excluded": {}})
            into["records"] += c["records"]
            into["used"] += c["used"]
            for why, n in c["excluded"].items():
                into["excluded"][why] = into["excluded"].get(why, 0) + n
    return out


def median_best_epoch(folds: list[dict]) -> int:
    """The median of a cross-validation's folds' best epochs (the upper one of two)."""
    epochs = sorted(int(f.get("best_epoch") or 0) for f in folds)
    return epochs[len(epochs) // 2] if epochs else 0


def torch_threads() -> int:
    """The CPU threads torch computes with (what the latencies were measured on)."""
    import torch

    return int(torch.get_num_threads())


def used_counts(splits: dict[str, np.ndarray], chosen: dict[str, np.ndarray],
                reasons: np.ndarray) -> dict[str, Any]:
    """Per split: its records, those used, and the unusable ones counted by reason (``reasons``
    holds one per record, "" for a usable one)."""
    import pandas as pd

    counts = {}
    for split, pos in splits.items():
        bad = reasons[pos][reasons[pos] != ""]
        excluded = pd.Series(bad, dtype=object).value_counts()
        counts[split] = {"records": int(len(pos)), "used": int(len(chosen[split])),
                         "excluded": {str(k): int(v) for k, v in excluded.items()}}
    return counts
