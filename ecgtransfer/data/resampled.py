"""A store at another sampling rate: a resampled copy, made once and then reused.

Training at 100 Hz on a 500 Hz store used to resample every record at every epoch (about 1,200
records/s per core, against 60,000 for reading a 100 Hz store as it is). :func:`at_rate` makes the
copy once, as a signal store of its own in ``<store>/resampled/<fs>Hz/`` (int16 microvolts, the
records in the store's order), and reuses it while the store it was made from is unchanged.

- The copy is keyed by its rate and records what it was made from: the store's content hash and
  :data:`RESAMPLER`. A store that changed since (extended, merged, prepared again) or a new
  resampler gets a new copy. Deleting the folder only costs the time to make it again.
- Making it is resumable like any store: a killed run continues where it stopped. A process
  that finds another one making the same copy (``torchrun`` ranks, two runs) waits for it.
- A store in a folder this user cannot write to keeps its copies in
  ``$XDG_CACHE_HOME/ecgtransfer/resampled/<hash>-<fs>Hz`` (default ``~/.cache``).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from ecgtransfer.data.store import SignalStore, StoreError, StoreWriter, content_hash
from ecgtransfer.data.transforms import INT16_MAX_UV, INT16_MIN_UV, resample

__all__ = ["at_rate", "RESAMPLER", "COPY_WAIT_S"]

log = logging.getLogger(__name__)

RESAMPLER = 1
"""Bumped whenever :func:`ecgtransfer.data.transforms.resample` changes what it computes: every
resampled copy is then made again."""
COPY_WAIT_S = 7200.0
"""How long a process waits for another one making the same copy."""


def at_rate(store: SignalStore, fs: float, *, progress: bool = False) -> SignalStore:
    """``store`` at ``fs`` Hz: the store itself at its own rate, else its resampled copy (see
    the module's notes), made now if there is none for the store as it is.

    Raises
    ------
    StoreError
        One line naming the copy's folder: it cannot be written (a full disk: what was written
        is kept, and the next run continues it), or another process has been making it for
        longer than :data:`COPY_WAIT_S`.
    """
    from ecgtransfer.files import waiting_lock

    fs = float(fs)
    if fs <= 0:
        raise ValueError(f"{store.path}: cannot resample to {fs:g} Hz")
    if fs == store.fs:
        return store
    made_from = {"resampled_from": content_hash(store.path), "from_fs": store.fs,
                 "resampler": RESAMPLER}
    folder = _folder(store, fs, made_from["resampled_from"])
    try:
        with waiting_lock(folder.parent / f".{folder.name}.lock", COPY_WAIT_S, on_wait=lambda: log.info(
                "%s: another process is making this resampled copy; waiting for it", folder)):
            found = _reusable(folder, made_from)
            if found is not None:
                return found
            try:
                return _make(store, fs, folder, made_from, progress)
            except StoreError:
                if not folder.exists():
                    raise
                # a copy damaged beyond continuing (its samples cut short): only a copy, so it
                # is made again rather than left for the user to remove
                log.info("%s: damaged; made again", folder)
                shutil.rmtree(folder)
                return _make(store, fs, folder, made_from, progress)
    except TimeoutError:
        raise StoreError(f"{folder}: another process has been making this resampled copy for "
                         f"{COPY_WAIT_S:.0f} s; wait for it or stop it") from None


def _folder(store: SignalStore, fs: float, digest: str) -> Path:
    """``<store>/resampled/<fs>Hz``, or the user's cache when the store's folder is read-only."""
    inside = store.path / "resampled"
    try:
        inside.mkdir(exist_ok=True)
        if os.access(inside, os.W_OK):
            return inside / f"{fs:g}Hz"
    except OSError:
        pass
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    where = cache / "ecgtransfer" / "resampled"
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{store.path}: cannot make a resampled copy here or in {where} "
                         f"({exc.strerror or exc})") from None
    return where / f"{digest}-{fs:g}Hz"


def _reusable(folder: Path, made_from: dict) -> SignalStore | None:
    """The complete copy in ``folder`` made from this store by this resampler, else None; a
    copy of an earlier state of the store (or a damaged one) is removed."""
    if not folder.exists():
        return None
    try:
        copy = SignalStore(folder)
        same = all(copy.meta.get("identity", {}).get(k) == v for k, v in made_from.items())
    except StoreError:  # incomplete (a killed run: continued) or damaged (made again)
        copy, same = None, _continues(folder, made_from)
    if same and copy is not None:
        return copy
    if not same:
        log.info("%s: made from another state of the store; made again", folder)
        shutil.rmtree(folder)
    return None


def _continues(folder: Path, made_from: dict) -> bool:
    """Whether an incomplete copy in ``folder`` was started for this store (and may go on)."""
    import json

    try:
        identity = json.loads((folder / "store.json").read_text()).get("identity", {})
    except (OSError, ValueError, AttributeError):
        return False
    return all(identity.get(k) == v for k, v in made_from.items())


def _make(store: SignalStore, fs: float, folder: Path, made_from: dict,
          progress: bool) -> SignalStore:
    ids = store.index["record_id"].astype(str)
    with StoreWriter(folder, source=str(store.meta.get("source", "")), fs=fs, leads=store.leads,
                     identity=made_from, info={"store": str(store.path.resolve())}) as writer:
        done = writer.done
        todo = (np.flatnonzero([rid not in done for rid in ids]) if len(done)
                else np.arange(len(ids)))
        if len(todo):
            log.info("%s: resampling %d records from %g to %g Hz, once", store.path, len(todo),
                     store.fs, fs)
        steps = todo
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(todo, desc=f"resample to {fs:g} Hz", unit="record")
        for i in steps:
            uv = resample(store.raw(int(i)), store.fs, fs)  # float32 microvolts
            np.rint(uv, out=uv)
            np.clip(uv, INT16_MIN_UV, INT16_MAX_UV, out=uv)
            writer.add_microvolts(ids.iat[int(i)], uv.astype(np.int16))
        return writer.finalize()
