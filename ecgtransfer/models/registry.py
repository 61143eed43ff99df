"""The model registry: ``create_model(name, **kwargs)`` builds any registered architecture.

Every registered model is an :class:`~ecgtransfer.models.base.ECGModel`: it takes
``(batch, leads, samples)`` and has the same transfer interface (``forward_features``,
``forward_head``, ``reset_head``).

A model is registered as in timm: a factory named after the model that builds its family's class
with only the settings that differ from the class's defaults,

>>> @register_model(ResNet1d, layers=(1, 1, 1), width=32)     # doctest: +SKIP
... def resnet1d_small(**kwargs):
...     '''A one-block-per-stage ResNet of width 32.'''

so that ``resnet1d_small(**kwargs)`` is ``ResNet1d(**dict(layers=(1, 1, 1), width=32, **kwargs))``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "model_defaults", "check_model_kwargs",
           "DEFAULT_MODEL"]

DEFAULT_MODEL = "resnet1d_fast"
"""The default architecture: trains over 50x faster than ``inception1d`` on CPU at 500 Hz
(see docs/pretrain.md for the measurement)."""

_SHAPE_ARGS = ("in_channels", "num_outputs")
"""Arguments every model takes from :func:`create_model` itself, not from ``model_kwargs``."""


@dataclass(frozen=True)
class _Entry:
    cls: type[nn.Module]
    model_args: Mapping[str, Any]
    factory: Callable[..., nn.Module]


_REGISTRY: dict[str, _Entry] = {}


def register_model(cls: type[nn.Module], **model_args: Any) -> Callable[[Callable], Callable]:
    """Register a model: ``cls`` with ``model_args`` in place of the class's own defaults (a
    decorator).

    The decorated function gives the model its name and its docstring; its body is not run. The
    registered factory is timm's ``cls(**dict(model_args, **kwargs))``, and it is what the
    decorator returns.

    Parameters
    ----------
    cls : type
        The architecture's class (an :class:`~ecgtransfer.models.base.ECGModel`).
    **model_args
        The settings of this model that differ from ``cls``'s defaults (one equal to the
        default is refused, so that a factory reads as what makes the model what it is).

    Returns
    -------
    callable
        The decorator.
    """
    own = _class_defaults(cls)
    for key, value in model_args.items():
        if key not in own:
            raise TypeError(f"{cls.__name__} has no parameter {key!r}")
        if value == own[key]:
            raise TypeError(f"{key}={value!r} is {cls.__name__}'s own default; a factory sets "
                            "only what differs")

    def decorate(fn: Callable) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")

        @functools.wraps(fn)
        def factory(**kwargs: Any) -> nn.Module:
            return cls(**dict(model_args, **kwargs))

        _REGISTRY[name] = _Entry(cls, MappingProxyType(dict(model_args)), factory)
        return factory

    return decorate


_FAMILIES = ("cnn", "inception", "recurrent", "resnet", "vit")


def _load() -> None:
    # The architecture modules register themselves on import.
    for family in _FAMILIES:
        importlib.import_module(f"ecgtransfer.models.{family}")


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _load()
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"model: unknown model {name!r}; choose one of "
                         f"{', '.join(sorted(_REGISTRY))}") from None


def _class_defaults(cls: type) -> dict[str, Any]:
    return {k: p.default for k, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


def model_defaults(name: str) -> dict[str, Any]:
    """Every parameter of model ``name`` with its effective default: the class's default unless
    the model's factory sets it (``in_channels`` and ``num_outputs`` excluded).

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.

    Returns
    -------
    dict
        Parameter name -> default, in the class signature's order.
    """
    entry = _entry(name)
    defaults = {**_class_defaults(entry.cls), **entry.model_args}
    return {k: v for k, v in defaults.items() if k not in _SHAPE_ARGS}


def _accepts_none(cls: type, key: str) -> bool:
    """Whether the class annotates parameter ``key`` as optional (``int | None``)."""
    hint = typing.get_type_hints(cls.__init__).get(key)
    return type(None) in typing.get_args(hint)


_SCALARS: tuple[tuple[type, str, Callable[[Any], bool]], ...] = (
    (bool, "boolean", lambda v: isinstance(v, bool)),
    (int, "integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    (float, "number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    (str, "string", lambda v: isinstance(v, str)),
)
"""Kinds of default (bool before int: a bool is an int), the noun for an error, and the test."""


def _kind(default: Any) -> tuple[str, Callable[[Any], bool]] | None:
    """The noun for, and the test of, a value that may stand where ``default`` stands; None
    when anything may (a default of None).

    An integer for an integer (not a boolean), a number for a float, a boolean for a boolean, a
    string for a string, and a list or tuple of the first element's kind for a tuple or list.
    """
    if default is None:
        return None
    if isinstance(default, (tuple, list)):
        item = _kind(default[0]) if default else None
        if item is None:
            return "list", lambda v: isinstance(v, (tuple, list))
        noun, ok = item
        return f"list of {noun}s", lambda v: isinstance(v, (tuple, list)) and all(map(ok, v))
    for cls, noun, ok in _SCALARS:
        if isinstance(default, cls):
            return noun, ok
    return type(default).__name__, lambda v: isinstance(v, type(default))


def check_model_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Check ``model_kwargs`` for model ``name`` without building it.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    kwargs : mapping
        The architecture's parameters to check (see :func:`model_defaults`).

    Raises
    ------
    ValueError
        One line naming the model, or the first ``model_kwargs.<key>`` that the model does not
        take or whose value is of the wrong kind for its default: an integer (not a boolean)
        for an integer, a number for a float, a boolean for a boolean, a string for a string, a
        list or tuple of the element kind for a tuple; None where the class annotates the
        parameter as optional; anything for a default of None.
    """
    known = model_defaults(name)
    cls = _entry(name).cls
    for key, value in kwargs.items():
        if key not in known:
            raise ValueError(f"model_kwargs.{key}: not a parameter of {name!r} (it takes "
                             f"{', '.join(sorted(known)) or 'none'})")
        if value is None and _accepts_none(cls, key):
            continue
        kind = _kind(known[key])
        if kind is not None and not kind[1](value):
            noun = kind[0]
            article = "an" if noun[0] in "aeiou" else "a"
            raise ValueError(f"model_kwargs.{key}: expected {article} {noun}, got {value!r}")


def create_model(name: str, *, in_channels: int = 8, num_outputs: int = 1, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    in_channels : int
        Number of leads of the input.
    num_outputs : int
        Outputs of the head (0: no head, the model returns its features).
    **kwargs
        The architecture's own parameters (see :func:`model_defaults`).

    Returns
    -------
    ECGModel

    Raises
    ------
    ValueError
        One line naming the model or the ``model_kwargs.<key>`` that is unknown or of the wrong
        kind (see :func:`check_model_kwargs`).
    """
    check_model_kwargs(name, kwargs)
    return _entry(name).factory(in_channels=in_channels, num_outputs=num_outputs, **kwargs)
