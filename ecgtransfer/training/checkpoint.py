"""Training checkpoints: written so that a kill never leaves half a file under the real name, and
read without running code (``torch.load(weights_only=True)``, see :mod:`ecgtransfer.files`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ecgtransfer.files import load_tensors, save_tensors

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it."""
    save_tensors(state, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`; a damaged file, or one holding pickled
    objects, is a one-line error naming it."""
    state = load_tensors(path, map_location)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a training checkpoint")
    return state
