"""Files written whole or not at all, and tensors read without running code.

The lowest layer of the package: every module that writes a result (stores, label files,
checkpoints, comparison tables) goes through :func:`atomic_file`, every file that grows by
appending (a store's samples and journal, a label run's rows) through :func:`append_synced`,
and every ``.pt`` file is read by :func:`load_tensors`, which never unpickles arbitrary objects
(``torch.load(weights_only=True)``). A file one run at a time may write is guarded by
:func:`exclusive_lock`; a full disk becomes one line saying how to go on (:func:`on_disk_full`).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

try:
    import fcntl
except ImportError:  # not on Windows; there locks are skipped
    fcntl = None

__all__ = ["OUTPUT_MARKER", "append_synced", "atomic_file", "check_output_file",
           "check_output_folder", "disk_full", "exclusive_lock", "load_tensors",
           "json_safe", "mark_output_folder", "on_disk_full", "save_tensors", "waiting_lock"]

OUTPUT_MARKER = ".ecgtransfer-output"
"""The file a command leaves in each output folder it writes, naming the command: the folder
may be written again (replaced, continued) by that command only (:func:`check_output_folder`)."""


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or quota) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def on_disk_full(error: type[Exception], where: str | Path, name: str) -> Iterator[None]:
    """Turn a full disk inside the ``with`` block into one line for the user.

    Parameters
    ----------
    error : type of Exception
        The exception raised instead (``StoreError``, ``LabelError``).
    where : str or Path
        The folder (store) the message starts with.
    name : str
        The file being written.

    Raises
    ------
    error
        ``"WHERE: disk full while writing NAME; free space and re-run the same command to
        continue"``, for an :class:`OSError` that :func:`disk_full` recognises; any other
        exception passes unchanged.
    """
    try:
        yield
    except OSError as exc:
        if not disk_full(exc):
            raise
        raise error(f"{where}: disk full while writing {name}; free space and re-run the same "
                    "command to continue") from None


def append_synced(path: str | Path, chunks: Iterable[Any], at: int) -> int:
    """Write ``chunks`` (bytes-like) at byte ``at`` of ``path``, cutting whatever followed it
    (the remains of a failed call), and fsync.

    The file is created if absent. Bytes before ``at`` are never touched, so a caller that
    counts the bytes it has written can call again with the same ``at`` after a failure (a
    full disk) and the file comes out as if the failure never happened.

    Parameters
    ----------
    path : str or Path
    chunks : iterable of bytes-like
        Written one after another.
    at : int
        Where the new bytes start; at most the file's size.

    Returns
    -------
    int
        The file's size afterwards: ``at`` plus the bytes written.
    """
    with open(path, "ab") as f:
        f.truncate(at)
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the ``with`` block, without waiting.

    The file is created if absent and left in place afterwards (removing it would let two
    processes lock two different files of one name). A process that dies releases its lock.
    On systems without ``fcntl`` (Windows) nothing is locked.

    Parameters
    ----------
    path : str or Path
        The lock file.

    Raises
    ------
    BlockingIOError
        Another process, or another open of the file in this one, holds the lock.
    OSError
        The lock file cannot be created.
    """
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


@contextlib.contextmanager
def waiting_lock(path: str | Path, timeout: float,
                 on_wait: Any = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the ``with`` block, waiting up to
    ``timeout`` seconds for another process to release it (``on_wait()`` is called once, when
    it has to wait). The lock file is left in place, as by :func:`exclusive_lock`.

    Raises
    ------
    TimeoutError
        Still held by another process after ``timeout`` seconds.
    OSError
        The lock file cannot be created.
    """
    import time

    with open(path, "a") as handle:
        if fcntl is not None:
            deadline = time.monotonic() + timeout
            waited = False
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{path}: held by another process") from None
                    if not waited and on_wait is not None:
                        on_wait()
                    waited = True
                    time.sleep(0.1)
        yield


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


def check_output_folder(folder: str | Path, command: str, legacy: Iterable[str] = (),
                        flag: str = "--out") -> None:
    """Refuse an output folder that ``command`` may not write into, touching nothing.

    A command may write into a folder that does not exist yet, an empty folder, or a folder
    holding its own earlier output: its :data:`OUTPUT_MARKER` names the command, or (for a
    folder written before the marker existed) every name in ``legacy`` is there. Anything else
    (a store, another command's output, a file) is refused, so that pointing ``--out`` at the
    wrong place by mistake loses nothing.

    Parameters
    ----------
    folder : str or Path
        The output folder.
    command : str
        The command writing it (``explain``, ``compare``, ``tune``, ``finetune``...).
    legacy : iterable of str
        Files (or glob patterns: ``pipeline-*.json``) that only ``command``'s own output holds
        (``explain.json``), recognising its output from versions that wrote no marker.
    flag : str
        The setting that named the folder, for the message.

    Raises
    ------
    ValueError
        One line naming the folder and what it holds.
    """
    import json

    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        raise ValueError(f"{flag} {folder}: a broken link; choose another {flag}")
    if not folder.exists():
        for parent in folder.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ValueError(f"{flag} {folder}: cannot be made, {parent} is a file")
                break
        return
    if not folder.is_dir():
        raise ValueError(f"{flag} {folder}: is a file, not a folder; `ecgtransfer {command}` "
                         f"writes a folder there, so choose another {flag}")
    marker = folder / OUTPUT_MARKER
    if marker.is_file():
        try:
            owner = json.loads(marker.read_text(encoding="utf-8")).get("command")
        except (ValueError, AttributeError, OSError):
            owner = None
        if owner == command:
            return
        raise ValueError(f"{flag} {folder}: holds the output of "
                         + (f"`ecgtransfer {owner}`" if isinstance(owner, str) else
                            "another command (unreadable marker)")
                         + f", which `ecgtransfer {command}` may not replace; choose another "
                         f"{flag}")
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError as exc:
        raise ValueError(f"{flag} {folder}: cannot be read ({exc.strerror})") from None
    if not names:
        return
    legacy = list(legacy)
    if legacy and all(next(folder.glob(pattern), None) is not None for pattern in legacy):
        return
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise ValueError(f"{flag} {folder}: holds files that `ecgtransfer {command}` did not write "
                     f"({shown}); nothing was touched: choose another {flag} (a new or empty "
                     "folder)")


def check_output_file(path: str | Path, flag: str = "--out") -> Path:
    """Refuse an output file's path that names a folder (or lies under a file), touching
    nothing; returns it as a :class:`~pathlib.Path`.

    Raises
    ------
    ValueError
        One line naming the flag and the path.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; name a file to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{flag} {path}: {parent} is a file, not a folder")
            break
    return path


def mark_output_folder(folder: str | Path, command: str) -> None:
    """Leave :data:`OUTPUT_MARKER` in ``folder`` (created if absent), naming ``command`` as the
    folder's writer (see :func:`check_output_folder`)."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OUTPUT_MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")).get("command") == command:
                return
        except (ValueError, AttributeError, OSError):
            pass
    with atomic_file(marker) as f:
        json.dump({"command": command}, f)


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


def json_safe(value: Any) -> Any:
    """``value`` as JSON can hold it: NumPy scalars as Python numbers, NaN and infinities (an
    AUROC of an absent class) as None; dicts, lists and tuples throughout."""
    if isinstance(value, dict):
        return {k: json_safe(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(x) for x in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a NumPy scalar
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value
