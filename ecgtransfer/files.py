"""Files written whole or not at all, and tensors read without running code.

The lowest layer of the package: every module that writes a result (stores, label files,
checkpoints, comparison tables) goes through :func:`atomic_file`, and every ``.pt`` file is read by
:func:`load_tensors`, which never unpickles arbitrary objects (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_file", "save_tensors", "load_tensors", "disk_full"]


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or quota) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def atomic_file(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """A file that takes the name ``path`` only once it is completely written and synced,
    so that readers see the old or the new file, never half of one (a full disk included: the
    temporary file is removed and the old file stays)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if binary
              else os.fdopen(fd, "w", encoding="utf-8", newline="")) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` of plain values (tensors, numbers, strings, lists, dicts) through
    :func:`atomic_file`; the folder is created."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, binary=True) as f:
        torch.save(state, f)


def load_tensors(path: str | Path, map_location: Any = "cpu") -> Any:
    """Read a file written by :func:`save_tensors` with ``torch.load(weights_only=True)``: a file
    that holds anything but plain values (pickled classes, code) is refused, never run.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        One line naming the file: damaged, or holding more than plain values.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise ValueError(f"{path}: holds more than weights (pickled objects or code); refused "
                             "to load it, since loading could run that code") from None
        raise ValueError(f"{path}: not a readable tensor file ({first[:120]})") from None
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise ValueError(f"{path}: not a readable tensor file ({type(exc).__name__})") from None
