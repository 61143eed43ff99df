"""Search a training stage's settings with Optuna: ``ecgtransfer tune`` and the pipeline stage
``tune``.

A search space (``pipelines/spaces/*.yaml``) names the stage it searches (``pretrain`` or
``finetune``), the per-epoch validation metric to optimise and the settings to sample::

    stage: finetune
    metric: val_macro_auroc
    direction: maximize
    params:
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      class_weights: {type: categorical, choices: [none, balanced, sqrt]}
      model: {type: categorical, choices: [resnet1d_fast, vit1d]}
      model_kwargs.patch_size: {type: int, low: 25, high: 100, step: 25, when: {model: vit1d}}

Every trial runs the searched stage itself, with the base settings (``--base FILE``, the stage's
own flags and ``--set``) and the trial's sampled values, as a child run of the search's MLflow
run. The per-epoch validation metric goes to Optuna's pruner, which may stop a trial early
(its run ends FINISHED, tagged ``trial_state=pruned``). The study lives in Optuna's SQLite
storage beside the MLflow store, so a killed search re-run with the same command continues the
same study: the trial the kill interrupted is run again with the same values (a run that
``kill -9`` left RUNNING is marked KILLED). A study file that is damaged, or empty or missing
beside the search's trials, is refused: a new study would run over the old trials.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecgtransfer.config import (ConfigError, check, check_run_folder, config_hash, from_dict,
                                read_yaml, setting, to_dict, to_yaml)
from ecgtransfer.stages import Context, Stage, StageResult, get_stage, register_stage
from ecgtransfer.stages.trained import BOOKKEEPING
from ecgtransfer.tags import tag_values
from ecgtransfer.tracking import EndedEarly
from ecgtransfer.training.callbacks import Callback
from ecgtransfer.training import study as study_lib

if TYPE_CHECKING:
    from ecgtransfer.training.search_space import SearchSpace

__all__ = ["TuneConfig", "read_space", "tune", "SEARCHABLE"]

log = logging.getLogger(__name__)

SEARCHABLE = ("pretrain", "finetune")
"""The stages a search can run."""
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "none")
_BOOKKEEPING = BOOKKEEPING
"""Settings a search decides for its trials (the training skeleton's bookkeeping); a best config
leaves them out (the stage's defaults apply), so that ``finetune --config best_config.yaml`` runs
as it is."""


@dataclass(frozen=True, kw_only=True)
class TuneConfig:
    """Everything ``ecgtransfer tune`` does, as one record. Settings that are not the search's
    own are the searched stage's: they go to ``base``."""

    space: str = setting(help="search space YAML: the stage it searches, the metric and the "
                         "settings to sample (see pipelines/spaces/)", role="input",
                         metavar="FILE")
    trials: int = setting(20, "trials in the study in all: a re-run counts those done (pruned "
                          "and failed included) and runs the rest")
    timeout: float | None = setting(None, "stop starting trials after this long", unit="s")
    sampler: str = setting("tpe", "Optuna sampler: TPE (Bayesian), random, or grid (every "
                           "combination; a float needs its grid values)", choices=SAMPLERS)
    pruner: str = setting("median", "stop a trial whose validation metric is worse than the "
                          "median of earlier trials at the same epoch, successive halving, or "
                          "never", choices=PRUNERS)
    sampler_seed: int = setting(0, "seeds the sampler (each trial's training takes the base "
                                "settings' seed)")
    storage: str | None = setting(None, "Optuna storage URL (default: sqlite optuna.db beside "
                                  "an sqlite MLflow store, else in --out)", metavar="URL")
    study: str | None = setting(None, "study name (default: from the space and the base "
                                "settings, so the same command continues the same study)",
                                metavar="NAME")
    base_config: str | None = setting(None, "YAML of the searched stage's settings, as its "
                                      "--config takes", flag="--base", role="input",
                                      metavar="FILE")
    base: dict[str, Any] = setting({}, "the searched stage's settings (its flags and --set "
                                   "land here)", cli=False, rest=lambda: _searchable_settings())
    out: str = setting("runs/tune", "search folder: trials, best config, plots",
                       role="output", metavar="DIR")
    experiment: str = setting("ecgtransfer-tune", "MLflow experiment of the search and its "
                              "trials", role="tracking", metavar="NAME")
    tracking_uri: str | None = setting(None, "MLflow tracking URI (default: "
                                       "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
                                       role="tracking", metavar="URI")
    run_name: str | None = setting(None, "the search's MLflow run name", metavar="NAME")

    def __post_init__(self) -> None:
        check(self.trials < 1, "trials", "must be at least 1")
        check(self.timeout is not None and self.timeout <= 0, "timeout", "must be positive")
        check(self.sampler not in SAMPLERS, "sampler", f"{self.sampler!r} is not "
              f"{', '.join(SAMPLERS)}")
        check(self.pruner not in PRUNERS, "pruner", f"{self.pruner!r} is not {', '.join(PRUNERS)}")
        check(self.sampler_seed < 0, "sampler_seed", "must not be negative")
        check(not isinstance(self.base, dict), "base", "must be a mapping of settings")
        check(not self.experiment.strip(), "experiment", "must name an MLflow experiment")
        for key in _BOOKKEEPING:
            check(key in self.base, f"base.{key}", "is the search's to decide (set the search's "
                  f"own {key})")


def _searchable_settings() -> set[str]:
    """Every setting of a stage a search can run: what a search's base settings may name."""
    return {f.name for name in SEARCHABLE for f in get_stage(name).settings()}


# ---- the space ------------------------------------------------------------------------------
def read_space(path: str | Path) -> SearchSpace:
    """Read and check a search space file against the settings of the stages a search can
    run (:func:`ecgtransfer.training.search_space.read_space`); each problem is one line
    naming the file and key.

    Raises
    ------
    ConfigError
    """
    from ecgtransfer.training.search_space import read_space as read

    return read(path, {name: get_stage(name).settings() for name in SEARCHABLE}, _BOOKKEEPING)


# ---- settings of one trial -------------------------------------------------------------------
def _set_dotted(values: dict[str, Any], name: str, value: Any) -> None:
    *parents, last = name.split(".")
    target = values
    for part in parents:
        inner = target.get(part) or {}
        if not isinstance(inner, dict):
            raise ConfigError(f"{name}: {part} is not a mapping", name)
        target[part] = inner = dict(inner)
        target = inner
    target[last] = value


def _base_settings(config: TuneConfig) -> dict[str, Any]:
    """The searched stage's settings from ``--base`` then ``base`` (flags and --set)."""
    values: dict[str, Any] = {}
    if config.base_config:
        data, _ = read_yaml(config.base_config)
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{config.base_config}:1: expected a mapping of settings")
        values.update(data or {})
        for key in _BOOKKEEPING:
            if values.get(key) is not None:
                raise ConfigError(f"{config.base_config}: {key}: is the search's to decide (set "
                                  f"the search's own {key})", key)
    for key, value in config.base.items():
        _set_dotted(values, key, value)
    return values


def _trial_config(stage: Stage, base: dict[str, Any], sampled: dict[str, Any], folder: Path,
                  config: TuneConfig, name: str) -> Any:
    values = json.loads(json.dumps(base))
    for key, value in sampled.items():
        _set_dotted(values, key, value)
    values.update(out=str(folder), experiment=config.experiment,
                  tracking_uri=config.tracking_uri, run_name=name)
    return from_dict(stage.config, values)


def default_storage(config: TuneConfig) -> str:
    """Optuna's storage: ``optuna.db`` beside an SQLite MLflow store, else in the search folder."""
    from ecgtransfer import tracking

    uri = tracking.tracking_uri(config.tracking_uri)
    folder = tracking.sqlite_folder(uri) or Path(config.out).resolve()
    return f"sqlite:///{folder / 'optuna.db'}"


def study_name(config: TuneConfig, space: SearchSpace, base: dict[str, Any]) -> str:
    """The study's name: what it searches and from what, so that the same command finds it."""
    key = json.dumps({"space": space.raw, "base": base, "sampler": config.sampler,
                      "pruner": config.pruner, "seed": config.sampler_seed},
                     sort_keys=True, default=str)
    import hashlib

    return f"{space.path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


# ---- the study's storage ----------------------------------------------------------------------
def _holds_trials(out: Path) -> bool:
    """Whether a search folder holds the trials of an earlier session of its search."""
    try:
        trials = out / "trials"
        return (out / "trials.csv").is_file() or (trials.is_dir() and any(trials.iterdir()))
    except OSError:
        return False


# ---- the search -------------------------------------------------------------------------------
class _Pruned(EndedEarly):
    """The pruner stopped the trial at this epoch."""


class _TrialFailed(Exception):
    """A trial that could not finish (settings the stage refuses, a diverged training): the
    study records it failed, with its reason, and goes on."""


class _BadMetric(ConfigError):
    """The space names a metric the stage does not log: the whole search stops."""


@dataclass
class TuneResult:
    """What a search found."""

    path: Path
    run_id: str
    study: str
    storage: str
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    counts: dict[str, int]
    seconds: float


_LEGACY = ("config.yaml", ".tune.lock")
"""What every search folder written before output markers existed holds (its settings, written
first, and its lock, taken next)."""


def tune(config: TuneConfig, context: Context) -> TuneResult:
    """Run (or continue) the search ``config`` describes; see the module's docstring."""
    import optuna

    from ecgtransfer import tracking
    from ecgtransfer.files import (atomic_file, check_output_folder, exclusive_lock,
                                   mark_output_folder)

    space = read_space(config.space)
    stage = get_stage(space.stage)
    base = _base_settings(config)
    out = Path(config.out)
    tracker = context.tracker_for(config.tracking_uri)
    # the base settings must make a valid config by themselves: their errors come now, once
    try:
        _trial_config(stage, base, {}, out / "trials" / "check", config, "check")
    except ConfigError as exc:
        raise ConfigError(f"{space.stage} settings of the search: {exc}", exc.key) from None
    if context.pipeline_run is None:  # a pipeline's stage folder is the pipeline's own (its
        # stage_run.json is there before the stage starts)
        check_output_folder(out, "tune", legacy=_LEGACY)
    try:  # the same command continues its search; another search needs its own folder
        check_run_folder(out, config, resume=True, stage="tune", may_change=("trials", "timeout"))
    except ConfigError as exc:
        raise ConfigError(f"{out}: holds a search with other settings ({exc.key} differs); "
                          "choose another --out, or run the same command to continue it",
                          exc.key) from None
    # the study's storage is checked before anything is written: a damaged or lost study file
    # beside the search's trials must not start a new study over them
    storage_url = config.storage or default_storage(config)
    shown = study_lib.shown_url(storage_url)
    trials_done = _holds_trials(out)
    study_lib.check_storage(storage_url, named=bool(config.storage), out=out,
                            trials_done=trials_done, tracking_uri=tracker.uri)
    name = config.study or study_name(config, space, base)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its failure notices carry tracebacks;
    # a failed trial is one line of ours instead
    try:  # (a folder holding trials has its lock already: nothing new until it is checked)
        out.mkdir(parents=True, exist_ok=True)
        lock = exclusive_lock(out / ".tune.lock")
        lock.__enter__()
    except BlockingIOError:
        raise ValueError(f"{out}: another `ecgtransfer tune` is running this search") from None
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot be written ({exc.strerror})") from None
    try:
        storage = study_lib.open_storage(storage_url, named=bool(config.storage))
        if trials_done and not study_lib.has_study(storage, name):
            raise ValueError(f"{out}: holds the trials of a search whose study {name} is not "
                             f"in {shown} (a lost or replaced study file, or a changed space "
                             f"file); nothing was touched: restore the study file, or choose "
                             "another --out to start a new search")
        mark_output_folder(out, "tune")
        with atomic_file(out / "config.yaml") as f:
            f.write(to_yaml(config))
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                    direction=space.direction,
                                    sampler=study_lib.sampler(config.sampler,
                                                              config.sampler_seed, space),
                                    pruner=study_lib.pruner(config.pruner))
        study_lib.fail_interrupted(study, storage)
        # before the trials' stage describes it as its own: this experiment holds searches
        tracker.describe_experiment(config.experiment, (
            "Optuna searches by `ecgtransfer tune`: each search is a run, its trials (runs of "
            "the stage it searches) nested under it, tagged `ecgtransfer.trial` and "
            "`ecgtransfer.trial_state`; the best config is the search run's best_config.yaml."))
        tags = {**tag_values(stage="tune", searched_stage=space.stage, study=name,
                             code_version=tracking.code_version()), **context.tags}
        with tracker.open_parent_run(experiment=config.experiment,
                                     name=config.run_name or f"tune {space.path.stem}",
                                     tags=tags, marker=out / "run.json",
                                     parent=context.parent_run) as run:
            run.log_params({"space": str(space.path), "sampler": config.sampler,
                            "pruner": config.pruner, "sampler_seed": config.sampler_seed,
                            "metric": space.metric, "direction": space.direction,
                            "storage": shown, "study": name})
            run.log_text(Path(space.path).read_text(), "space.yaml")
            run.log_text(to_yaml(config), "config.yaml")
            run.set_note(f"Optuna search ({config.sampler}, pruner {config.pruner}) over "
                         f"{len(space.params)} {space.stage} settings for {space.metric} "
                         f"({space.direction}). Each trial is a child run; the best config is "
                         "`best_config.yaml`.")
            _end_interrupted_runs(tracker, config.experiment, run.id)
            t0 = time.perf_counter()
            objective = _Objective(config, replace(context, tracker=tracker), space, stage, base, out,
                                   run.id)
            remaining = config.trials - study_lib.counted(study)
            if remaining > 0:
                study.optimize(objective, n_trials=remaining, timeout=config.timeout,
                               catch=(_TrialFailed,))
            seconds = time.perf_counter() - t0
            result = _report(config, space, stage, base, study, run, out, seconds)
            c = result.counts
            if c["fail"] and not c["complete"] and not c["pruned"]:  # the run ends FAILED
                raise ValueError(study_lib.every_trial_failed(study, out))
    finally:
        lock.__exit__(None, None, None)
    return result


def _end_interrupted_runs(tracker, experiment: str, search_run: str) -> None:
    """The runs of this search's trials left RUNNING by a killed search (``kill -9``: nothing
    ended them; this process holds the search's lock, so no one runs them) end KILLED, as a
    Ctrl-C or SIGTERM ends them."""
    for found in tracker.find_runs([experiment], status="RUNNING", search_run=search_run):
        tracker.run(found.run_id).set_tags(tag_values(trial_state="interrupted"))
        tracker.end_run(found.run_id, "KILLED")
        log.info("the run of trial %s was left running by a killed search; it is marked KILLED",
                 found.tag("trial", "?"))


class _Objective:
    """One trial: the searched stage with the sampled settings, its epochs reported to the
    pruner; returns the metric at the epoch the stage kept."""

    def __init__(self, config: TuneConfig, context: Context, space: SearchSpace, stage: Stage,
                 base: dict, out: Path, search_run: str):
        self.config, self.context, self.space, self.stage = config, context, space, stage
        self.base, self.out, self.search_run = base, out, search_run

    def __call__(self, trial) -> float:
        import optuna

        sampled = self.space.sample(trial)
        shown = ", ".join(f"{k}={_short(v)}" for k, v in sampled.items())
        folder = self.out / "trials" / f"{trial.number:04d}"
        name = f"trial {trial.number}: {shown}"[:250]
        trial.set_user_attr("settings", json.dumps(sampled, default=str))
        trial.set_user_attr("folder", str(folder))
        try:
            cfg = _trial_config(self.stage, self.base, sampled, folder, self.config, name)
        except ConfigError as exc:  # the stage refuses these values: a run says so
            self._refused(trial, name, sampled, exc)
            raise self._failed(trial, exc) from None
        pruning = _Pruning(trial, self.space.metric, self.space.path)
        history = pruning.history
        tags = tag_values(trial=str(trial.number), search_run=self.search_run,
                          study=trial.study.study_name)
        ctx = Context(progress=self.context.progress, resume=False, parent_run=self.search_run,
                      tags={**self.context.tags, **tags},
                      callbacks=[*self.context.callbacks, pruning], say=self.context.say,
                      tracker=self.context.tracker)
        from ecgtransfer.files import disk_full
        from ecgtransfer.training import TrainingError

        state = "complete"
        try:
            result = self.stage.run(cfg, ctx)
        except _Pruned:
            state = "pruned"
        except _BadMetric:
            state = "failed"
            raise
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the next run of the search redoes it
            state = "interrupted"
            trial.set_user_attr("interrupted", True)
            trial.study.enqueue_trial(trial.params, skip_if_exists=False)
            raise
        except (ValueError, TrainingError, OSError) as exc:
            state = "failed"
            if isinstance(exc, OSError) and disk_full(exc):
                raise
            if not self._runs_of(trial.number):  # it failed before its run began: one says so
                self._refused(trial, name, sampled, exc, refused=False)
            raise self._failed(trial, exc) from None
        finally:
            trial.set_user_attr("epochs", len(history))
            trial.set_user_attr("seconds", sum(m.get("epoch_seconds", 0.0) for m in history))
            self._tag(trial.number, state)
        if state == "pruned":
            raise optuna.TrialPruned()
        best_epoch = _best_epoch(result)
        kept = next((m for m in history if int(m["epoch"]) == best_epoch), None)
        if kept is None:  # a reused run: nothing reported; read its history file
            raise ValueError(f"{folder}: trial {trial.number} has no epoch {best_epoch}")
        metric = self.space.metric
        value = float(kept[metric])
        if not math.isfinite(value):  # Optuna fails it too, but without saying why
            self._tag(trial.number, "failed")
            raise self._failed(trial, ValueError(f"{metric} is {value} at epoch {best_epoch}, "
                                                 "the epoch the stage kept"))
        return value

    def _refused(self, trial, name: str, sampled: dict, exc: Exception,
                 refused: bool = True) -> None:
        """A child run for a trial whose settings the stage refused (or that failed before its
        own run began), so that every trial is a run: its values as params, the reason as its
        description, FAILED."""
        tags = {**tag_values(stage=self.space.stage, trial=str(trial.number),
                             search_run=self.search_run, study=trial.study.study_name,
                             trial_state="failed"), **self.context.tags}
        tracker = self.context.tracker
        with tracker.open_run(experiment=self.config.experiment, name=name, tags=tags,
                              parent=self.search_run) as run:
            run.log_params(sampled)
            run.set_note(f"The {self.space.stage} stage refused these settings: {exc}" if refused
                         else f"The {self.space.stage} stage failed before training: {exc}")
        tracker.end_run(run.id, "FAILED")

    @staticmethod
    def _failed(trial, exc: BaseException) -> _TrialFailed:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        trial.set_user_attr("error", reason)
        log.warning("trial %d failed: %s", trial.number, reason)
        return _TrialFailed(reason)

    def _runs_of(self, number: int) -> list:
        """The MLflow runs of trial ``number`` of this search."""
        return self.context.tracker.find_runs([self.config.experiment],
                                              search_run=self.search_run, trial=str(number))

    def _tag(self, number: int, state: str) -> None:
        for found in self._runs_of(number):
            self.context.tracker.run(found.run_id).set_tags(tag_values(trial_state=state))


class _Pruning(Callback):
    """The search's training callback: each epoch's metric reported to the trial, which its
    pruner may stop (:class:`_Pruned`); the epochs it saw kept in ``history``."""

    def __init__(self, trial, metric: str, where: Path):
        self.trial, self.metric, self.where = trial, metric, where
        self.history: list[dict] = []

    def on_epoch_end(self, trainer, metrics: dict) -> None:
        self.history.append(metrics)
        if self.metric not in metrics:
            raise _BadMetric(f"{self.where}: metric: {self.metric!r} is not one of the epoch's "
                             f"metrics ({', '.join(sorted(metrics))})", "metric")
        value = float(metrics[self.metric])
        if math.isfinite(value):
            self.trial.report(value, int(metrics["epoch"]))
        if self.trial.should_prune():
            raise _Pruned(f"pruned at epoch {metrics['epoch']}")


def _best_epoch(result: StageResult) -> int:
    """The best epoch of the one model a trial trained."""
    if len(result.trained) != 1:
        raise ValueError(f"a search trial trains one model; this {len(result.trained)} (give "
                         "pretrain one target group)")
    return int(result.trained[0].best_epoch)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace(" ", "")


def _report(config: TuneConfig, space: SearchSpace, stage: Stage, base: dict, study, run,
            out: Path, seconds: float) -> TuneResult:
    """Log what the search found on its run and write it to its folder: the best value, the
    best config (a YAML the searched stage's --config accepts), the trials table and the
    optimisation-history and parameter-importance plots."""
    from optuna.trial import TrialState

    from ecgtransfer.files import atomic_file

    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(1 for t in trials if t.state == getattr(TrialState, s.upper())
                     and not t.user_attrs.get("interrupted"))
              for s in ("complete", "pruned", "fail")}
    counts["interrupted"] = sum(1 for t in trials if t.user_attrs.get("interrupted"))
    table = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs",
                                          "duration"))
    with atomic_file(out / "trials.csv") as f:
        table.to_csv(f, index=False)
    run.log_artifact(out / "trials.csv")
    epochs = [t.user_attrs.get("epochs", 0) for t in trials]
    full = int(base.get("epochs") or stage.config.__dataclass_fields__["epochs"].default)
    per_epoch = [t.user_attrs["seconds"] / t.user_attrs["epochs"] for t in trials
                 if t.user_attrs.get("epochs")]
    saved = sum(full - t.user_attrs.get("epochs", full) for t in trials
                if t.state == TrialState.PRUNED)
    mean_epoch = sum(per_epoch) / len(per_epoch) if per_epoch else 0.0
    durations = [t.duration.total_seconds() for t in trials if t.duration is not None]
    run.log_metrics({"n_complete": counts["complete"], "n_pruned": counts["pruned"],
                     "n_failed": counts["fail"], "epochs_trained": sum(epochs),
                     "epochs_saved_by_pruning": saved,
                     "seconds_saved_by_pruning": saved * mean_epoch,
                     "trials_seconds": sum(durations)})  # every session of the study
    best_trial = best_value = None
    best_params: dict[str, Any] = {}
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if done:
        best = study.best_trial
        best_trial, best_value = best.number, float(best.value)
        best_params = json.loads(best.user_attrs.get("settings", "{}"))
        cfg = _trial_config(stage, base, best_params, out / "best", config, "best")
        values = {k: v for k, v in to_dict(cfg).items() if k not in _BOOKKEEPING}
        import yaml

        text = (f"# best of study {study.study_name}: trial {best_trial}, {space.metric} "
                f"{best_value:.4f}\n# ecgtransfer {space.stage} --config best_config.yaml\n"
                + yaml.safe_dump(values, sort_keys=False))
        with atomic_file(out / "best_config.yaml") as f:
            f.write(text)
        run.log_artifact(out / "best_config.yaml")
        run.log_metrics({f"best_{space.metric}": best_value, "best_trial": best_trial})
        run.set_tags(tag_values(best_trial=best_trial,
                                best_config_hash=config_hash(cfg, exclude=_BOOKKEEPING)))
        for path in study_lib.plots(study, out / "plots"):
            run.log_artifact(path, "plots")
    return TuneResult(out, run.id, study.study_name,
                      study_lib.shown_url(config.storage or default_storage(config)),
                      best_trial, best_value, best_params, counts, seconds)


def run_tune(config: TuneConfig, context: Context) -> StageResult:
    r = tune(config, context)
    c = r.counts
    lines = [f"{r.path}: study {r.study} ({r.storage}): {c['complete']} complete, "
             f"{c['pruned']} pruned, {c['fail']} failed"
             + (f", {c['interrupted']} interrupted and re-run" if c["interrupted"] else "")
             + f"; {r.seconds:.0f} s this run"]
    if r.best_trial is not None:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in r.best_params.items())
        lines.append(f"best: trial {r.best_trial}, {r.best_value:.4f} ({shown}); "
                     f"{r.path / 'best_config.yaml'}")
    lines.append(f"MLflow run {r.run_id}")
    return StageResult(str(r.path), "\n".join(lines), run_ids=[r.run_id], details=r)


register_stage(Stage(
    "tune", TuneConfig, run_tune, command=("tune",), output="", flags_from=SEARCHABLE,
    help="search a pretrain or finetune stage's settings with Optuna, every trial tracked",
    description="Search the settings a space YAML names (pipelines/spaces/) for the best "
                "validation metric: TPE, random or grid sampling, median or successive-halving "
                "pruning per epoch. The searched stage's flags (--store, --task, --from, ...) and "
                "--set KEY=VALUE set its base settings. Each trial is a child run of the "
                "search's MLflow run; the best config is written as a YAML the stage's --config "
                "takes. The study lives in optuna.db beside the MLflow store: re-running the "
                "same command continues it. See docs/tune.md."))
