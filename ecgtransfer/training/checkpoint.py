"""Checkpoints written so that a kill never leaves half a file under the real name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ecgtransfer.data.store import atomic_file

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, binary=True) as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`; a damaged file is a one-line error."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
