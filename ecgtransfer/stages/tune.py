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
same study: the trial the kill interrupted is run again with the same values.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecgtransfer.config import (ConfigError, check, check_run_folder, config_hash, from_dict,
                                read_yaml, setting, to_dict, to_yaml)
from ecgtransfer.stages import Context, Stage, StageResult, get_stage, register_stage
from ecgtransfer.tracking import TAG, EndedEarly

__all__ = ["TuneConfig", "SearchSpace", "Param", "read_space", "tune", "SEARCHABLE"]

log = logging.getLogger(__name__)

SEARCHABLE = ("pretrain", "finetune")
"""The stages a search can run."""
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "none")
_KINDS = ("float", "int", "categorical")
_BOOKKEEPING = ("out", "experiment", "tracking_uri", "run_name")
"""Settings a search decides for its trials; a best config leaves them out (the stage's
defaults apply), so that ``finetune --config best_config.yaml`` runs as it is."""


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
        for key in _BOOKKEEPING:
            check(key in self.base, f"base.{key}", "is the search's to decide (set the search's "
                  f"own {key})")


def _searchable_settings() -> set[str]:
    """Every setting of a stage a search can run: what a search's base settings may name."""
    return {f.name for name in SEARCHABLE for f in get_stage(name).settings()}


# ---- the space ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One searched setting: ``name`` is a setting of the searched stage, or ``key.sub`` of a
    mapping setting (``model_kwargs.width``)."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    grid: tuple = ()
    when: tuple = ()  # ((setting, (values...)), ...): sampled only when every one holds

    def active(self, values: dict[str, Any]) -> bool:
        return all(values.get(k) in allowed for k, allowed in self.when)

    def labels(self) -> list:
        """The categorical choices as Optuna stores them: a list or mapping as its JSON."""
        return [c if c is None or isinstance(c, (bool, int, float, str)) else json.dumps(c)
                for c in self.choices]

    def value(self, sampled: Any) -> Any:
        """The setting's value for an Optuna value (a JSON label back to its list)."""
        if self.kind == "categorical":
            return self.choices[self.labels().index(sampled)]
        return sampled

    def suggest(self, trial: Any) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log,
                                       step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return self.value(trial.suggest_categorical(self.name, self.labels()))

    def grid_values(self) -> list:
        if self.grid:
            return list(self.grid)
        if self.kind == "categorical":
            return self.labels()
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise ConfigError(f"params.{self.name}: a float needs `grid: [values]` for the grid "
                          "sampler", f"params.{self.name}")


@dataclass(frozen=True)
class SearchSpace:
    """A search space file, read and checked."""

    path: Path
    stage: str
    metric: str
    direction: str
    params: tuple[Param, ...]
    raw: dict

    def sample(self, trial: Any) -> dict[str, Any]:
        """The trial's settings (dotted names for keys of mapping settings), conditional ones
        only where their condition holds, in file order."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active(values):
                values[p.name] = p.suggest(trial)
        return values


def _number(value: Any, where: str) -> float:
    try:  # YAML reads 1e-4 (no dot) as a string
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a number", where) from None
    if not math.isfinite(out):
        raise ConfigError(f"{where}: must be finite", where)
    return out


def _param(name: str, spec: Any, path: Path) -> Param:
    where = f"{path}: params.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping (type, low/high or choices)", name)
    known = {"type", "low", "high", "log", "step", "choices", "grid", "when"}
    for key in spec:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})",
                              name)
    kind = spec.get("type")
    if kind not in _KINDS:
        raise ConfigError(f"{where}.type: {kind!r} is not {', '.join(_KINDS)}", name)
    when = spec.get("when") or {}
    if not isinstance(when, dict):
        raise ConfigError(f"{where}.when: expected a mapping of setting -> value(s)", name)
    cond = tuple((k, tuple(v) if isinstance(v, list) else (v,)) for k, v in when.items())
    grid = spec.get("grid") or []
    if not isinstance(grid, list):
        raise ConfigError(f"{where}.grid: expected a list of values", name)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: expected a non-empty list", name)
        return Param(name, kind, choices=tuple(choices), grid=tuple(grid), when=cond)
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: a {kind} needs low and high", name)
    low, high = _number(spec["low"], f"{where}.low"), _number(spec["high"], f"{where}.high")
    step = None if spec.get("step") is None else _number(spec["step"], f"{where}.step")
    log_scale = bool(spec.get("log", False))
    if low >= high:
        raise ConfigError(f"{where}: low ({low:g}) must be below high ({high:g})", name)
    if log_scale and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0", name)
    if log_scale and step is not None:
        raise ConfigError(f"{where}: step and log do not go together", name)
    if kind == "int" and (low != int(low) or high != int(high) or (step or 1) != int(step or 1)):
        raise ConfigError(f"{where}: an int needs whole low, high and step", name)
    return Param(name, kind, low, high, log_scale, step, grid=tuple(grid), when=cond)


def read_space(path: str | Path) -> SearchSpace:
    """Read and check a search space file: each problem is one line naming the file and key.

    Raises
    ------
    ConfigError
    """
    path = Path(path)
    data, _ = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping (stage, metric, direction, params)")
    for key in data:
        if key not in ("stage", "metric", "direction", "params", "description"):
            raise ConfigError(f"{path}: unknown key {key!r} (known: stage, metric, direction, "
                              "params, description)", str(key))
    stage = data.get("stage")
    if stage not in SEARCHABLE:
        raise ConfigError(f"{path}: stage: {stage!r} is not one of {', '.join(SEARCHABLE)}",
                          "stage")
    metric = data.get("metric") or "val_score"
    direction = data.get("direction") or ("minimize" if metric.endswith(("score", "loss"))
                                          else "maximize")
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"{path}: direction: {direction!r} is not minimize or maximize",
                          "direction")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{path}: params: expected a mapping of setting -> range", "params")
    out = tuple(_param(str(k), v, path) for k, v in params.items())
    names = [p.name for p in out]
    settings = {f.name for f in get_stage(stage).settings()}
    for p in out:
        top = p.name.split(".")[0]
        if top not in settings or top in _BOOKKEEPING:
            raise ConfigError(f"{path}: params.{p.name}: not a setting of {stage}", p.name)
        for k, _ in p.when:
            if k not in names[:names.index(p.name)]:
                raise ConfigError(f"{path}: params.{p.name}.when: {k!r} is not a parameter "
                                  "sampled before it", p.name)
    return SearchSpace(path, stage, metric, direction, out, data)


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


# ---- the search -------------------------------------------------------------------------------
class _Pruned(EndedEarly):
    """The pruner stopped the trial at this epoch."""


class _TrialFailed(Exception):
    """A trial that could not finish (settings the stage refuses, a diverged training): the
    study records it failed, with its reason, and goes on."""


class _BadMetric(ConfigError):
    """The space names a metric the stage does not log: the whole search stops."""


def _sampler(config: TuneConfig, space: SearchSpace):
    import optuna

    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=config.sampler_seed)
    if config.sampler == "grid":
        return optuna.samplers.GridSampler({p.name: p.grid_values() for p in space.params},
                                           seed=config.sampler_seed)
    return optuna.samplers.TPESampler(seed=config.sampler_seed)


def _pruner(config: TuneConfig):
    import optuna

    if config.pruner == "median":  # none before 3 trials finished, nor before epoch 2
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if config.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


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


def tune(config: TuneConfig, context: Context) -> TuneResult:
    """Run (or continue) the search ``config`` describes; see the module's docstring."""
    import optuna

    from ecgtransfer import tracking
    from ecgtransfer.files import atomic_file, exclusive_lock

    space = read_space(config.space)
    stage = get_stage(space.stage)
    base = _base_settings(config)
    out = Path(config.out)
    # the base settings must make a valid config by themselves: their errors come now, once
    try:
        _trial_config(stage, base, {}, out / "trials" / "check", config, "check")
    except ConfigError as exc:
        raise ConfigError(f"{space.stage} settings of the search: {exc}", exc.key) from None
    try:  # the same command continues its search; another search needs its own folder
        check_run_folder(out, config, resume=True, stage="tune", may_change=("trials", "timeout"))
    except ConfigError as exc:
        raise ConfigError(f"{out}: holds a search with other settings ({exc.key} differs); "
                          "choose another --out, or run the same command to continue it",
                          exc.key) from None
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "config.yaml") as f:
        f.write(to_yaml(config))
    storage_url = config.storage or default_storage(config)
    name = config.study or study_name(config, space, base)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its failure notices carry tracebacks;
    # a failed trial is one line of ours instead
    try:
        lock = exclusive_lock(out / ".tune.lock")
        lock.__enter__()
    except BlockingIOError:
        raise ValueError(f"{out}: another `ecgtransfer tune` is running this search") from None
    try:
        storage = optuna.storages.RDBStorage(storage_url)
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                    direction=space.direction, sampler=_sampler(config, space),
                                    pruner=_pruner(config))
        _fail_interrupted(study, storage)
        tracking.setup(config.tracking_uri, config.experiment)
        # before the trials' stage describes it as its own: this experiment holds searches
        tracking.describe_experiment(config.experiment, (
            "Optuna searches by `ecgtransfer tune`: each search is a run, its trials (runs of "
            "the stage it searches) nested under it, tagged `ecgtransfer.trial` and "
            "`ecgtransfer.trial_state`; the best config is the search run's best_config.yaml."))
        tags = {TAG + "stage": "tune", TAG + "searched_stage": space.stage,
                TAG + "study": name, TAG + "code_version": tracking.code_version(),
                **context.tags}
        with tracking.open_parent_run(experiment=config.experiment,
                                      name=config.run_name or f"tune {space.path.stem}",
                                      tags=tags, marker=out / "run.json",
                                      parent=context.parent_run) as run:
            run.log_params({"space": str(space.path), "sampler": config.sampler,
                            "pruner": config.pruner, "sampler_seed": config.sampler_seed,
                            "metric": space.metric, "direction": space.direction,
                            "storage": storage_url, "study": name})
            run.log_text(Path(space.path).read_text(), "space.yaml")
            run.log_text(to_yaml(config), "config.yaml")
            run.set_note(f"Optuna search ({config.sampler}, pruner {config.pruner}) over "
                         f"{len(space.params)} {space.stage} settings for {space.metric} "
                         f"({space.direction}). Each trial is a child run; the best config is "
                         "`best_config.yaml`.")
            t0 = time.perf_counter()
            objective = _Objective(config, context, space, stage, base, out, run.id)
            remaining = config.trials - _counted(study)
            if remaining > 0:
                study.optimize(objective, n_trials=remaining, timeout=config.timeout,
                               catch=(_TrialFailed,))
            seconds = time.perf_counter() - t0
            result = _report(config, space, stage, base, study, run, out, seconds)
    finally:
        lock.__exit__(None, None, None)
    return result


def _counted(study) -> int:
    """Trials that count towards ``trials``: finished ones, not those a kill interrupted."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
               and not t.user_attrs.get("interrupted"))


def _fail_interrupted(study, storage) -> None:
    """Trials left RUNNING by a killed search (this process holds the search's lock, so no one
    runs them) are marked failed and interrupted, and run again with the same values."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)
        log.info("trial %d was interrupted; it runs again with the same values", t.number)


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
        history: list[dict] = []
        metric = self.space.metric

        def on_epoch(metrics: dict) -> None:
            history.append(metrics)
            if metric not in metrics:
                raise _BadMetric(f"{self.space.path}: metric: {metric!r} is not one of the "
                                 f"epoch's metrics ({', '.join(sorted(metrics))})", "metric")
            value = float(metrics[metric])
            if math.isfinite(value):
                trial.report(value, int(metrics["epoch"]))
            if trial.should_prune():
                raise _Pruned(f"pruned at epoch {metrics['epoch']}")

        tags = {TAG + "trial": str(trial.number), TAG + "search_run": self.search_run,
                TAG + "study": trial.study.study_name}
        ctx = Context(progress=self.context.progress, resume=False, parent_run=self.search_run,
                      tags={**self.context.tags, **tags}, on_epoch=on_epoch, say=self.context.say)
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
        return float(kept[metric])

    def _refused(self, trial, name: str, sampled: dict, exc: ConfigError) -> None:
        """A child run for a trial whose settings the stage refused, so that every trial is a
        run: its values as params, the reason as its description, FAILED."""
        from ecgtransfer import tracking

        tags = {TAG + "stage": self.space.stage, TAG + "trial": str(trial.number),
                TAG + "search_run": self.search_run, TAG + "study": trial.study.study_name,
                TAG + "trial_state": "failed", **self.context.tags}
        with tracking.open_run(experiment=self.config.experiment, name=name, tags=tags,
                               parent=self.search_run) as run:
            run.log_params(sampled)
            run.set_note(f"The {self.space.stage} stage refused these settings: {exc}")
        tracking.end_run(run.id, "FAILED")

    @staticmethod
    def _failed(trial, exc: BaseException) -> _TrialFailed:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        trial.set_user_attr("error", reason)
        log.warning("trial %d failed: %s", trial.number, reason)
        return _TrialFailed(reason)

    def _tag(self, number: int, state: str) -> None:
        from ecgtransfer import tracking

        runs = tracking.search_runs([self.config.experiment],
                                    f"tags.`{TAG}search_run` = '{self.search_run}' and "
                                    f"tags.`{TAG}trial` = '{number}'")
        for found in runs:
            tracking.Run(found.info.run_id).set_tags({TAG + "trial_state": state})


def _best_epoch(result: StageResult) -> int:
    details = result.details
    if isinstance(details, list):  # pretrain: one result per model
        if len(details) != 1:
            raise ValueError(f"a search trial trains one model; this {len(details)} (give "
                             "pretrain one target group)")
        details = details[0]
    return int(details.best_epoch)


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
        run.set_tags({TAG + "best_trial": best_trial, TAG + "best_config_hash":
                      config_hash(cfg, exclude=_BOOKKEEPING)})
        _plots(study, run, out)
    return TuneResult(out, run.id, study.study_name, config.storage or default_storage(config),
                      best_trial, best_value, best_params, counts, seconds)


def _plots(study, run, out: Path) -> None:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = [("optimization_history", ovm.plot_optimization_history)]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) >= 2 and len({k for t in complete for k in t.params}) >= 1:
        plots.append(("param_importances", ovm.plot_param_importances))
    for name, plot in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's "experimental" notices
            try:
                ax = plot(study)
            except (ValueError, RuntimeError) as exc:  # e.g. importances of a constant value
                log.info("no %s plot: %s", name, exc)
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax[0].figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        (out / "plots").mkdir(exist_ok=True)
        fig.savefig(out / "plots" / f"{name}.png", dpi=100)
        run.log_artifact(out / "plots" / f"{name}.png", "plots")
        plt.close(fig)


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
