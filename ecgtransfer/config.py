"""Dataclass configs, their YAML form, and command-line overrides.

A config is a dataclass; YAML is how it is saved and read. Unknown keys are errors that name the
key, so a typo never silently falls back to a default. Overrides are ``key=value`` strings whose
values are parsed as YAML (``epochs=3``, ``targets=[qrs,hr]``, ``model_kwargs.width=64``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence, TypeVar

__all__ = ["ConfigError", "LoopConfig", "PretrainConfig", "FinetuneConfig", "TARGET_UNITS", "from_dict", "load_config",
           "apply_overrides", "to_yaml", "config_hash", "loop_config", "check_run_folder"]

T = TypeVar("T")

TARGET_UNITS = {"hr": "bpm", "pr": "ms", "qrs": "ms", "qt": "ms"}
"""The interval targets and their units; the label column of target ``t`` is ``t_<unit>``."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key (or file and key)."""


@dataclass
class LoopConfig:
    """The settings of the one training loop, shared by every training stage.

    Attributes
    ----------
    epochs, batch_size : int
        ``batch_size`` is per process under ``torchrun``.
    optimizer : str
        ``adamw`` or ``adam``.
    lr, weight_decay : float
    scheduler : str
        ``cosine`` (to 0 over ``epochs``), ``plateau`` (halve after 2 epochs without improvement)
        or ``constant``.
    patience : int
        Stop after this many epochs without a better validation score (0: never stop early).
    seed : int
        Seeds model initialisation, shuffling, splits and dropout.
    num_workers : int
        DataLoader worker processes.
    amp : bool
        Mixed precision on CUDA (ignored on CPU).
    """

    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-2
    scheduler: str = "cosine"
    patience: int = 8
    seed: int = 0
    num_workers: int = 0
    amp: bool = True

    def __post_init__(self) -> None:
        _check(self.optimizer not in ("adam", "adamw"), "optimizer", "adam or adamw")
        _check(self.scheduler not in ("cosine", "plateau", "constant"), "scheduler",
               "cosine, plateau or constant")
        for key in ("epochs", "batch_size"):
            _check(int(getattr(self, key)) < 1, key, "must be at least 1")
        _check(self.lr <= 0, "lr", "must be positive")
        _check(self.patience < 0 or self.num_workers < 0, "patience/num_workers",
               "must not be negative")


@dataclass
class PretrainConfig(LoopConfig):
    """Everything ``ecgtransfer pretrain`` does, as one record (the loop's settings are
    :class:`LoopConfig`'s).

    Attributes
    ----------
    store : str
        Signal store to train on.
    labels : str, optional
        Label file (from ``ecgtransfer label``); default: the store's only ``labels-*.csv``.
    targets : list of str
        Intervals to regress, from ``hr, pr, qrs, qt``.
    multi_output : bool
        One model with an output per target; otherwise one model per target (as the study).
    model : str
        A registered model name (``ecgtransfer.models.list_models()``).
    model_kwargs : dict
        The architecture's parameters.
    fs : float, optional
        Input sampling rate, Hz; records are resampled to it. Default: the store's rate.
    split : str
        ``auto`` (PTB-XL folds 1-8/9/10 when the store has them, else ``random``), ``folds``,
        ``A`` or ``B`` (that PTB-XL patient half, its own folds 1-8/9/10) or ``random``.
    split_fractions : list of float
        Train/validation/test fractions of a ``random`` split (by patient when the store knows
        patients).
    max_train_records : int, optional
        Use at most this many training records (a seeded subsample), e.g. for quick runs.
    loss : str
        ``huber`` (smooth L1), ``mse`` or ``l1``, on standardised targets.
    device : str
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    out : str
        Run folder: resolved config, checkpoints, the final models.
    experiment : str
        MLflow experiment name.
    tracking_uri : str, optional
        MLflow tracking URI; default ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
    run_name : str, optional
        MLflow run name; default derived from model and targets.
    """

    store: str = ""
    labels: str | None = None
    targets: list[str] = field(default_factory=lambda: ["qrs"])
    multi_output: bool = False
    model: str = "resnet1d_fast"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    fs: float | None = None
    split: str = "auto"
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    max_train_records: int | None = None
    loss: str = "huber"
    device: str = "auto"
    out: str = "runs/pretrain"
    experiment: str = "ecgtransfer-pretrain"
    tracking_uri: str | None = None
    run_name: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.targets, str):
            self.targets = [t.strip() for t in self.targets.split(",") if t.strip()]
        self.targets = [str(t).lower() for t in self.targets]
        _check(not self.targets, "targets", "name at least one of hr, pr, qrs, qt")
        for t in self.targets:
            _check(t not in TARGET_UNITS, "targets", f"unknown target {t!r}; choose from "
                   f"{', '.join(TARGET_UNITS)}")
        _check(len(set(self.targets)) != len(self.targets), "targets", "a target is repeated")
        _check_stage_settings(self)
        _check(self.loss not in ("huber", "mse", "l1"), "loss", "huber, mse or l1")
        _check(self.max_train_records is not None and self.max_train_records < 2,
               "max_train_records", "must be at least 2")


@dataclass
class FinetuneConfig(LoopConfig):
    """Everything ``ecgtransfer finetune`` does, as one record (the loop's settings are
    :class:`LoopConfig`'s).

    Attributes
    ----------
    store : str
        A PTB-XL signal store (its index holds the diagnostic superclasses).
    sources : list of str
        Where the pretrained trunks come from (``--from``): ``model.pt`` files or their folders,
        pretrain run folders, MLflow model URIs or run ids (a parent run stands for its
        children).
    strategy : str
        ``single`` (one trunk, a new head), ``combined`` (several trunks side by side, features
        concatenated into one head) or ``scratch`` (the same architecture as ``sources``,
        randomly initialised; without ``sources``, ``model``).
    freeze : str
        ``full`` (everything trains), ``frozen`` (the trunks stay fixed, batch-norm statistics
        included) or ``gradual`` (frozen for ``frozen_epochs`` epochs, then everything trains,
        the trunks at ``lr * trunk_lr_factor``).
    frozen_epochs : int
        Epochs with frozen trunks under ``gradual``.
    trunk_lr_factor : float
        The trunks' learning rate relative to the head's once ``gradual`` unfreezes them.
    task : str
        ``single_label`` (records with exactly one superclass, softmax and cross-entropy) or
        ``multi_label`` (records with at least one, sigmoid and BCE per superclass: the PTB-XL
        benchmark's task).
    class_weights : str
        ``none`` or ``balanced`` (cross-entropy weight ``n / (k * n_c)``; multi-label: BCE
        ``pos_weight = negatives / positives``), from the training records.
    split : str
        ``auto`` (= ``folds``), ``folds`` (PTB-XL folds 1-8/9/10), ``A`` or ``B`` (that patient
        half, its own folds: ``B`` for A->B transfer) or ``random``.
    split_fractions : list of float
        Fractions of a ``random`` split.
    train_fraction : float
        Train on this seeded fraction of the training patients (0.05, 0.1, 0.25, 1.0, ...);
        validation and test sets stay whole.
    model, model_kwargs : str, dict
        ``scratch`` without ``sources``: the architecture (default ``resnet1d_fast``). With
        ``sources``, a given ``model`` must be theirs.
    fs : float, optional
        ``scratch`` without ``sources``: input rate (default the store's). With sources, their
        rate.
    head_hidden : int, optional
        Hidden width of the new head (None: linear).
    head_dropout : float
    bootstrap : int
        Resamples of the test-set bootstrap intervals (0: none).
    device, out, experiment, tracking_uri, run_name
        As for ``pretrain``; ``out`` defaults to ``runs/finetune``.
    """

    store: str = ""
    sources: list[str] = field(default_factory=list)
    strategy: str = "single"
    freeze: str = "full"
    frozen_epochs: int = 5
    trunk_lr_factor: float = 0.1
    task: str = "single_label"
    class_weights: str = "none"
    split: str = "auto"
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    train_fraction: float = 1.0
    model: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    fs: float | None = None
    head_hidden: int | None = 128
    head_dropout: float = 0.25
    bootstrap: int = 1000
    device: str = "auto"
    out: str = "runs/finetune"
    experiment: str = "ecgtransfer-finetune"
    tracking_uri: str | None = None
    run_name: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.sources, str):
            self.sources = [s.strip() for s in self.sources.split(",") if s.strip()]
        _check(self.strategy not in ("single", "combined", "scratch"), "strategy",
               f"{self.strategy!r} is not single, combined or scratch")
        _check(self.strategy != "scratch" and not self.sources, "sources",
               f"strategy {self.strategy} needs pretrained trunks (--from)")
        _check(self.freeze not in ("full", "frozen", "gradual"), "freeze",
               f"{self.freeze!r} is not full, frozen or gradual")
        _check(self.freeze == "gradual" and not 1 <= self.frozen_epochs < self.epochs,
               "frozen_epochs", f"gradual needs 1 <= frozen_epochs < epochs ({self.epochs})")
        _check(self.trunk_lr_factor <= 0, "trunk_lr_factor", "must be positive")
        _check(self.task not in ("single_label", "multi_label"), "task",
               f"{self.task!r} is not single_label or multi_label")
        _check(self.class_weights not in ("none", "balanced"), "class_weights",
               f"{self.class_weights!r} is not none or balanced")
        _check_stage_settings(self)
        _check(not 0 < self.train_fraction <= 1, "train_fraction", "must be in (0, 1]")
        _check(self.head_hidden is not None and self.head_hidden < 1, "head_hidden",
               "must be at least 1 (or null for a linear head)")
        _check(not 0 <= self.head_dropout < 1, "head_dropout", "must be in [0, 1)")
        _check(self.bootstrap < 0, "bootstrap", "must not be negative")


def _check_stage_settings(config: Any) -> None:
    """The checks of the settings every training stage has (split, device, fs, model_kwargs)."""
    _check(config.split not in ("auto", "folds", "A", "B", "random"), "split",
           f"{config.split!r} is not auto, folds, A, B or random")
    _check(len(config.split_fractions) != 3 or min(config.split_fractions) <= 0
           or abs(sum(config.split_fractions) - 1) > 1e-6, "split_fractions",
           "three positive fractions summing to 1")
    _check(config.device not in ("auto", "cpu", "cuda"), "device", "auto, cpu or cuda")
    _check(config.fs is not None and config.fs <= 0, "fs", "must be positive")
    _check(not isinstance(config.model_kwargs, dict), "model_kwargs", "must be a mapping")


def _check(bad: bool, key: str, message: str) -> None:
    if bad:
        raise ConfigError(f"{key}: {message}")


def _type_of(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check (and lightly convert) a YAML value against a field's type hint."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if value is None:
        raise ConfigError(f"{key}: must not be empty")
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if origin is list:
        if isinstance(value, str) and typing.get_args(hint)[0] is str:
            return value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _check_keys(cls: type, values: Any, prefix: str) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix}expected a mapping of settings")
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"{prefix}unknown key {key!r}")


def from_dict(cls: type[T], values: dict[str, Any], *, where: str = "") -> T:
    """Build config ``cls`` from a mapping; an unknown key or a wrong type is a
    :class:`ConfigError` naming the key (prefixed by ``where``, e.g. the file)."""
    prefix = f"{where}: " if where else ""
    _check_keys(cls, values, prefix)
    try:
        kwargs = {k: _coerce(v, _type_of(cls, k), k) for k, v in values.items()}
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None


def load_config(cls: type[T], path: str | Path | None, overrides: Sequence[str] = (),
                **values: Any) -> T:
    """Defaults, then the YAML file, then ``values`` (None values skipped), then ``overrides``.

    Parameters
    ----------
    cls : type
        The config dataclass.
    path : str or Path, optional
        A YAML file of settings.
    overrides : sequence of str
        ``key=value`` settings, values parsed as YAML; ``a.b=v`` sets key ``b`` of mapping ``a``.
    **values
        Settings from command-line flags; None means "not given".
    """
    import yaml

    merged: dict[str, Any] = {}
    where = ""
    if path is not None:
        path = Path(path)
        where = str(path)
        try:
            merged = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        _check_keys(cls, merged, f"{path}: ")
    merged.update({k: v for k, v in values.items() if v is not None})
    merged = apply_overrides(merged, overrides)
    return from_dict(cls, merged, where=where if not overrides else "")


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return ``values`` with ``key=value`` overrides applied (values parsed as YAML)."""
    import yaml

    out = dict(values)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        head, dot, rest = key.partition(".")
        if dot:
            inner = dict(out.get(head) or {})
            if not isinstance(inner, dict):
                raise ConfigError(f"{head}: is not a mapping, cannot set {key}")
            inner[rest] = value
            out[head] = inner
        else:
            out[key] = value
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain YAML/JSON-able values: the class's own settings first, then those it
    inherits (a stage's data and model before the loop's)."""
    values = json.loads(json.dumps(asdict(config)))
    inherited = {f.name for base in type(config).__mro__[1:] if dataclasses.is_dataclass(base)
                 for f in fields(base)}
    own = [k for k in values if k not in inherited]
    return {k: values[k] for k in own + [k for k in values if k in inherited]}


def loop_config(config: Any) -> "LoopConfig":
    """The :class:`LoopConfig` part of a stage's config."""
    return LoopConfig(**{f.name: getattr(config, f.name) for f in fields(LoopConfig)})


def to_yaml(config: Any) -> str:
    """A config as YAML, keys in field order."""
    import yaml

    return yaml.safe_dump(to_dict(config), sort_keys=False)


def config_hash(config: Any, exclude: Sequence[str] = ()) -> str:
    """12 hex digits of the config's settings, leaving out ``exclude``."""
    values = {k: v for k, v in to_dict(config).items() if k not in exclude}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_run_folder(folder: Path, config: Any, resume: bool, stage: str,
                     may_change: Sequence[str] = ("num_workers", "device")) -> None:
    """Refuse to start a run in a folder that holds one (without ``resume``), or to resume one
    with other settings than it was started with (``may_change`` excepted)."""
    import yaml

    saved = Path(folder) / "config.yaml"
    if not resume:
        if saved.exists():
            raise ConfigError(f"{folder}: holds a {stage} run already; pass --resume to continue "
                              "it or choose another --out")
        return
    if not saved.exists():
        return
    old = yaml.safe_load(saved.read_text()) or {}
    new = to_dict(config)
    for key in new:
        if key not in may_change and old.get(key) != new[key]:
            raise ConfigError(f"--resume: {key} is {new[key]!r} now but {old.get(key)!r} in "
                              f"{saved}; resume with the same settings or choose another --out")


# dataclasses.replace re-runs __post_init__, which keeps derived configs checked.
replace = dataclasses.replace
