"""Dataclass configs, their YAML form, and command-line overrides.

A stage's config is a frozen dataclass whose fields are declared with :func:`setting`: a default,
a help text, and where it matters a unit, the allowed choices, a flag name or a role (an input
path the pipeline checks, an output the pipeline sets). The CLI builds its flags from those
fields and a pipeline validates its YAML against the same class (see :mod:`ecgtransfer.stages`).

YAML is how a config is saved and read. Unknown keys are errors that name the key (and the file
and line when they came from a file), so a typo never silently falls back to a default.
Overrides are ``key=value`` strings whose values are parsed as YAML (``epochs=3``,
``targets=[qrs,hr]``, ``model_kwargs.width=64``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

__all__ = ["ConfigError", "LoopConfig", "setting", "from_dict", "load_config", "read_yaml",
           "apply_overrides", "parse_override", "ordered_fields", "to_dict", "to_yaml", "config_hash",
           "loop_config", "base_config", "check_run_folder", "check", "RESUMABLE_CHANGES"]

T = TypeVar("T")

RESUMABLE_CHANGES = ("num_workers", "device", "threads")
"""Settings that may change between a run and its resumption."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key (or file, line and key).

    Attributes
    ----------
    key : str
        The offending setting ("" when the problem is not one key's).
    """

    def __init__(self, message: str, key: str = ""):
        super().__init__(message)
        self.key = key


def setting(default: Any = MISSING, help: str = "", *, unit: str = "",
            choices: Sequence[Any] = (), flag: str | None = None, positional: bool = False,
            cli: bool = True, role: str = "", metavar: str | None = None,
            rest: bool | Callable[[], set[str]] = False) -> Any:
    """A config field with what the CLI, pipelines and docs need to know about it.

    Parameters
    ----------
    default
        The default; a list or dict default is copied for every instance. Leave it out for a
        required setting.
    help : str
        One sentence: what the setting does.
    unit : str
        Its unit (``Hz``, ``s``, ``ms``), shown in help.
    choices : sequence
        The values it takes, shown in help (the config's own check enforces them).
    flag : str, optional
        The CLI flag when it is not ``--<name-with-dashes>`` (``--from`` for ``sources``).
    positional : bool
        A positional CLI argument instead of a flag.
    cli : bool
        False: no flag (set it through ``--config`` or ``--set``).
    role : str
        ``input``: a path a pipeline checks exists before any work; ``output``: where the stage
        writes, set by a pipeline (a pipeline file may not set it); ``tracking``: MLflow
        placement, set by a pipeline.
    metavar : str, optional
        The placeholder shown in help.
    rest : bool or callable
        A mapping that takes the keys the config does not know (a search's settings of the
        stage it searches). A callable returns the keys it may take (any other is unknown, an
        error naming it); True takes any.
    """
    meta = {"help": help, "unit": unit, "choices": tuple(choices), "flag": flag,
            "positional": positional, "cli": cli, "role": role, "metavar": metavar,
            "rest": rest}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def check(bad: bool, key: str, message: str) -> None:
    """Raise ``ConfigError("key: message")`` when ``bad``."""
    if bad:
        raise ConfigError(f"{key}: {message}", key)


def _set(config: Any, name: str, value: Any) -> None:
    """Normalise a field of a frozen config in ``__post_init__``."""
    object.__setattr__(config, name, value)


AMP_DTYPES = ("auto", "bf16", "fp16")


@dataclass(frozen=True)
class LoopConfig:
    """The settings of the one training loop, shared by every training stage."""

    epochs: int = setting(30, "passes over the training records")
    batch_size: int = setting(64, "records per batch (per process under torchrun)")
    optimizer: str = setting("adamw", "optimiser", choices=("adamw", "adam"))
    lr: float = setting(1e-3, "learning rate (of the head, where trunks have their own)")
    weight_decay: float = setting(1e-2, "AdamW weight decay")
    scheduler: str = setting("cosine", "learning-rate schedule: cosine to 0 over the epochs, "
                             "halve on a 2-epoch plateau, or constant",
                             choices=("cosine", "plateau", "constant"))
    patience: int = setting(8, "stop after this many epochs without a better validation score "
                            "(0: never stop early)")
    seed: int = setting(0, "seeds model initialisation, shuffling, splits and dropout")
    num_workers: int = setting(0, "DataLoader worker processes")
    amp: bool = setting(True, "mixed precision on CUDA (ignored on CPU)")
    amp_dtype: str = setting("auto", "the mixed precision's type on CUDA: bf16 (no loss "
                             "scaling; Ampere and later), fp16 with a loss scaler, or auto: bf16 "
                             "where the GPU has it, else fp16", choices=AMP_DTYPES)
    threads: int | None = setting(None, "CPU threads torch may use (default: torch's own "
                                  "choice; 1 or 2 on a shared machine)")

    def __post_init__(self) -> None:
        check(self.optimizer not in ("adam", "adamw"), "optimizer", "adam or adamw")
        check(self.amp_dtype not in AMP_DTYPES, "amp_dtype", ", ".join(AMP_DTYPES))
        check(self.scheduler not in ("cosine", "plateau", "constant"), "scheduler",
              "cosine, plateau or constant")
        for key in ("epochs", "batch_size"):
            check(int(getattr(self, key)) < 1, key, "must be at least 1")
        check(self.lr <= 0, "lr", "must be positive")
        check(self.patience < 0, "patience", "must not be negative")
        check(self.num_workers < 0, "num_workers", "must not be negative")
        check(self.seed < 0, "seed", "must not be negative")
        check(self.threads is not None and self.threads < 1, "threads", "must be at least 1")


# ---- values -------------------------------------------------------------------------------
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
        raise ConfigError(f"{key}: must not be empty", key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}", key)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}", key)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}", key)
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}", key)
        return str(value)
    if origin in (list, tuple):
        args = typing.get_args(hint)
        item = args[0] if args else Any
        if isinstance(value, str) and item in (str, int, float):  # "a,b" from a flag or file
            value = [v.strip() for v in value.split(",") if v.strip()]
            if item is not str:
                value = [_number(v, item, key) for v in value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}", key)
        items = [_coerce(v, item, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}", key)
        return dict(value)
    return value


def _number(text: str, kind: type, key: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{key}: expected a list of numbers, got {text!r}", key) from None


def _check_keys(cls: type, values: Any) -> None:
    if not isinstance(values, dict):
        raise ConfigError("expected a mapping of settings")
    import difflib

    known = [f.name for f in fields(cls)]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"unknown key {key!r} ({hint})", str(key))


def from_dict(cls: type[T], values: dict[str, Any], *, where: str = "") -> T:
    """Build config ``cls`` from a mapping; an unknown key, a missing required one or a wrong
    type is a :class:`ConfigError` naming the key (prefixed by ``where``, e.g. ``FILE:LINE``)."""
    prefix = f"{where}: " if where else ""
    hints = typing.get_type_hints(cls)
    rest_field = next((f for f in fields(cls) if f.metadata.get("rest")), None)
    rest = rest_field.name if rest_field is not None else None
    if rest is not None and isinstance(values, dict):
        known = {f.name for f in fields(cls)}
        takes = rest_field.metadata["rest"]
        allowed = takes() if callable(takes) else None
        extra = {k: v for k, v in values.items() if k not in known}
        for key in extra:
            if allowed is not None and key not in allowed:
                raise ConfigError(f"{prefix}unknown key {key!r} (a setting of neither "
                                  f"{cls.__name__} nor the stages it takes settings of)",
                                  str(key))
        if extra:
            given = values.get(rest) or {}
            values = {**{k: v for k, v in values.items() if k in known},
                      rest: {**given, **extra} if isinstance(given, dict) else given}
    try:
        _check_keys(cls, values)
        for f in fields(cls):
            if f.name not in values and f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{f.name}: required", f.name)
        return cls(**{k: _coerce(v, hints[k], k) for k, v in values.items()})
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}", exc.key) from None


def read_yaml(path: str | Path) -> tuple[Any, dict[str, int]]:
    """A YAML file's data and the line of each top-level key (1-based).

    Raises
    ------
    ConfigError
        ``FILE: no such file`` or ``FILE:LINE: not valid YAML (...)``.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable ({type(exc).__name__})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    _refuse_duplicate_keys(node, path)
    lines = {}
    if isinstance(node, yaml.MappingNode):
        lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    return data, lines


def _refuse_duplicate_keys(node: Any, path: Path) -> None:
    """``FILE:LINE`` error for a key that a mapping of the file holds twice (YAML readers keep
    the last one silently)."""
    import yaml

    stack = [node] if node is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        raise ConfigError(f"{path}:{line}: {key.value!r} is given twice (first on "
                                          f"line {seen[key.value]}); keep one", key.value)
                    seen[key.value] = line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


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

    Raises
    ------
    ConfigError
        Naming the key; ``FILE:LINE: key: ...`` when the bad value came from the file.
    """
    merged: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        data, lines = read_yaml(path)
        merged = {} if data is None else data
        if not isinstance(merged, dict):
            raise ConfigError(f"{path}:1: expected a mapping of settings")
    from_file = set(merged)
    given = {k: v for k, v in values.items() if v is not None}
    merged.update(given)
    merged = apply_overrides(merged, overrides)
    touched = set(given) | {parse_override(o)[0][0] for o in overrides}
    try:
        return from_dict(cls, merged)
    except ConfigError as exc:
        if exc.key in from_file and exc.key not in touched:
            raise ConfigError(f"{path}:{lines.get(exc.key, 1)}: {exc}", exc.key) from None
        raise


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (``["a", "b"]``, the value parsed as YAML).

    Raises
    ------
    ConfigError
        No ``=``, an empty key, or a value that is not valid YAML.
    """
    import yaml

    key, sep, text = item.partition("=")
    parts = [p.strip() for p in key.split(".")]
    if not sep or not all(parts):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({problem})",
                          parts[0]) from None
    return parts, value


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return ``values`` with ``key=value`` overrides applied (values parsed as YAML);
    ``a.b=v`` sets key ``b`` of mapping ``a``."""
    out = dict(values)
    for item in overrides:
        parts, value = parse_override(item)
        target = out
        for depth, part in enumerate(parts[:-1]):
            inner = target.get(part)
            if inner is None:
                inner = {}
            if not isinstance(inner, dict):
                path = ".".join(parts[:depth + 1])
                raise ConfigError(f"--set {item!r}: {path} is {inner!r}, not a mapping, so "
                                  f"{'.'.join(parts)} cannot be set", parts[0])
            target[part] = inner = dict(inner)
            target = inner
        target[parts[-1]] = value
    return out


# ---- saving and comparing ---------------------------------------------------------------------
def ordered_fields(cls: type) -> list:
    """A config class's fields, its own first, then those of each base in turn (a stage's data
    and model settings before the training stages' shared ones, before the loop's)."""
    mro = [base for base in cls.__mro__ if dataclasses.is_dataclass(base)]

    def origin(f) -> int:  # the most basic class that declares the field
        return max(i for i, base in enumerate(mro) if f.name in {g.name for g in fields(base)})

    return sorted(fields(cls), key=origin)


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain YAML/JSON-able values: the class's own settings first, then those it
    inherits (a stage's data and model before the loop's)."""
    values = json.loads(json.dumps(asdict(config)))
    return {f.name: values[f.name] for f in ordered_fields(type(config))}


def base_config(config: Any, cls: type[T]) -> T:
    """The ``cls`` part of a config that extends ``cls`` (a stage's :class:`LoopConfig`, the
    labeller's or the generator's settings), as a ``cls``."""
    return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


def loop_config(config: Any) -> LoopConfig:
    """The :class:`LoopConfig` part of a stage's config."""
    return base_config(config, LoopConfig)


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
                     may_change: Sequence[str] = RESUMABLE_CHANGES) -> None:
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
    damaged = "the run folder is damaged, choose another --out"
    try:
        old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError(f"{saved}: not valid YAML; {damaged}") from None
    except OSError as exc:
        raise ConfigError(f"{saved}: cannot be read ({exc.strerror or exc}); {damaged}") from None
    if not isinstance(old, dict):
        raise ConfigError(f"{saved}: not a mapping of settings; {damaged}")
    new = to_dict(config)
    for key in new:
        if key not in may_change and key in old and old.get(key) != new[key]:
            raise ConfigError(f"--resume: {key} is {new[key]!r} now but {old.get(key)!r} in "
                              f"{saved}; resume with the same settings or choose another --out",
                              key)
