"""A search space: which settings of a training stage a search varies, over what, and when.

A space file (YAML) names the stage searched, the metric and its direction, and one entry per
parameter: a ``float`` or ``int`` range (``low``, ``high``, optionally ``log`` or ``step``) or
``categorical`` ``choices``, optionally a ``grid`` of values for the grid sampler and a
``when`` condition on parameters sampled before it. :func:`read_space` checks the whole file
against the stage's settings (each problem one line naming the file and key) and
:meth:`SearchSpace.sample` draws a trial's settings through Optuna's ``suggest_*`` calls.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ecgtransfer.config import ConfigError, read_yaml

__all__ = ["Param", "SearchSpace", "read_space"]

_KINDS = ("float", "int", "categorical")


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
        if self.kind == "categorical":  # as Optuna stores them (a list as its JSON)
            labels = self.labels()
            return [labels[self.choices.index(v)] for v in self.grid] if self.grid else labels
        if self.grid:
            return list(self.grid)
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
        for key in ("low", "high", "step", "log"):  # silently ignored, they would mislead
            if key in spec:
                raise ConfigError(f"{where}: {key} is for float and int parameters; a "
                                  "categorical takes choices", name)
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: expected a non-empty list", name)
        seen: set[str] = set()
        for choice in choices:
            key = json.dumps(choice, sort_keys=True, default=str)
            if key in seen:
                raise ConfigError(f"{where}.choices: {choice!r} is given twice; keep one", name)
            seen.add(key)
        for value in grid:
            if value not in choices:
                raise ConfigError(f"{where}.grid: {value!r} is not one of the choices", name)
        return Param(name, kind, choices=tuple(choices), grid=tuple(grid), when=cond)
    if "choices" in spec:
        raise ConfigError(f"{where}: choices is for categorical parameters; a {kind} takes low "
                          "and high", name)
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: a {kind} needs low and high", name)
    low, high = _number(spec["low"], f"{where}.low"), _number(spec["high"], f"{where}.high")
    step = None if spec.get("step") is None else _number(spec["step"], f"{where}.step")
    log_scale = spec.get("log", False)
    if not isinstance(log_scale, bool):  # bool("no") is True
        raise ConfigError(f"{where}.log: expected true or false, got {log_scale!r}", name)
    if low >= high:
        raise ConfigError(f"{where}: low ({low:g}) must be below high ({high:g})", name)
    if log_scale and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0", name)
    if step is not None and step <= 0:
        raise ConfigError(f"{where}.step: must be positive, got {step:g}", name)
    if log_scale and step is not None:
        raise ConfigError(f"{where}: step and log do not go together", name)
    if kind == "int" and (low != int(low) or high != int(high) or (step or 1) != int(step or 1)):
        raise ConfigError(f"{where}: an int needs whole low, high and step", name)
    values = tuple(_number(v, f"{where}.grid") for v in grid)
    for value in values:
        if not low <= value <= high or (kind == "int" and value != int(value)):
            raise ConfigError(f"{where}.grid: {value:g} is not "
                              + ("a whole number " if kind == "int" else "")
                              + f"in [{low:g}, {high:g}]", name)
    if kind == "int":
        values = tuple(int(v) for v in values)
    return Param(name, kind, low, high, log_scale, step, grid=values, when=cond)


def _is_mapping_setting(field: Any) -> bool:
    """Whether a config field holds a mapping (``model_kwargs``): its keys may be searched."""
    from dataclasses import MISSING

    default = field.default_factory() if field.default_factory is not MISSING else field.default
    return isinstance(default, dict)


def read_space(path: str | Path, stages: Mapping[str, Sequence[Any]],
               bookkeeping: Sequence[str] = ()) -> SearchSpace:
    """Read and check a search space file: each problem is one line naming the file and key.

    Parameters
    ----------
    path : str or Path
        The space file.
    stages : mapping
        The stages a search can run, each with its config's fields (``dataclasses.Field``):
        what ``stage`` and the parameters' names are checked against.
    bookkeeping : sequence of str
        Settings that say where a run goes, not what it trains: never searched.

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
    if stage not in stages:
        raise ConfigError(f"{path}: stage: {stage!r} is not one of {', '.join(stages)}",
                          "stage")
    metric = data.get("metric") or "val_score"
    if not isinstance(metric, str):
        raise ConfigError(f"{path}: metric: {metric!r} is not a metric name (such as "
                          "val_macro_auroc)", "metric")
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
    fields = {f.name: f for f in stages[stage]}
    for p in out:
        top, *inner = p.name.split(".")
        if top not in fields or top in bookkeeping:
            raise ConfigError(f"{path}: params.{p.name}: not a setting of {stage}", p.name)
        if inner and (not _is_mapping_setting(fields[top]) or not all(inner)):
            raise ConfigError(f"{path}: params.{p.name}: {top} is not a mapping setting of "
                              f"{stage}, so {p.name!r} names nothing to set", p.name)
        earlier = {q.name: q for q in out[:names.index(p.name)]}
        for k, allowed in p.when:
            if k not in earlier:
                raise ConfigError(f"{path}: params.{p.name}.when: {k!r} is not a parameter "
                                  "sampled before it", p.name)
            if earlier[k].kind != "categorical":
                kind = earlier[k].kind
                raise ConfigError(f"{path}: params.{p.name}.when: {k!r} is "
                                  f"{'an' if kind == 'int' else 'a'} {kind} parameter; a "
                                  "condition names a categorical one", p.name)
            for value in allowed:
                if value not in earlier[k].choices:
                    shown = ", ".join(repr(c) for c in earlier[k].choices)
                    raise ConfigError(f"{path}: params.{p.name}.when: {k} is never {value!r} "
                                      f"(its choices: {shown}), so {p.name} would never be "
                                      "sampled", p.name)
    return SearchSpace(path, stage, metric, direction, out, data)
