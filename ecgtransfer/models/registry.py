"""The model registry: ``create_model(name, **kwargs)`` builds any registered architecture.

Every registered model is an :class:`~ecgtransfer.models.base.ECGModel`: it takes
``(batch, leads, samples)`` and has the same transfer interface (``forward_features``,
``forward_head``, ``reset_head``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "model_defaults", "DEFAULT_MODEL"]

DEFAULT_MODEL = "resnet1d_fast"
"""The default architecture: trains over 50x faster than ``inception1d`` on CPU at 500 Hz
(see docs/pretrain.md for the measurement)."""

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model constructor under its function name (a decorator)."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} is already registered")
    _REGISTRY[fn.__name__] = fn
    return fn


_FAMILIES = ("cnn", "inception", "recurrent", "resnet", "vit")


def _load() -> None:
    # The architecture modules register themselves on import.
    for family in _FAMILIES:
        importlib.import_module(f"ecgtransfer.models.{family}")


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _load()
    return sorted(_REGISTRY)


def _constructor(name: str) -> Callable[..., nn.Module]:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"model: unknown model {name!r}; choose one of "
                         f"{', '.join(sorted(_REGISTRY))}") from None


def model_defaults(name: str) -> dict[str, Any]:
    """The keyword arguments of model ``name`` with their defaults (``in_channels`` and
    ``num_outputs`` excluded)."""
    sig = inspect.signature(_constructor(name))
    return {k: p.default for k, p in sig.parameters.items()
            if k not in ("in_channels", "num_outputs") and p.default is not inspect.Parameter.empty}


def create_model(name: str, *, in_channels: int = 8, num_outputs: int = 1, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    in_channels : int
        Number of leads of the input.
    num_outputs : int
        Outputs of the head.
    **kwargs
        The architecture's own parameters; an unknown one is an error naming it.

    Returns
    -------
    ECGModel
    """
    fn = _constructor(name)
    known = model_defaults(name)
    for key in kwargs:
        if key not in known:
            raise ValueError(f"model_kwargs.{key}: not a parameter of {name!r} (it takes "
                             f"{', '.join(sorted(known)) or 'none'})")
    return fn(in_channels=in_channels, num_outputs=num_outputs, **kwargs)
