"""The signal store: one on-disk format for every source.

Layout of a store folder::

    store.json      what the store is (source, fs, leads, identity metadata) and whether it is complete
    signals.i16     every record's samples, int16 microvolts, record after record, each (n_leads, n_samples)
    journal.jsonl   one line per written record (its offset and index row); the source of truth
    index.csv       the index table, rebuilt from the journal when a run finishes
    rejects.csv     records that could not be stored, with the reason

Writes are crash-safe and resumable. Samples are appended and fsync'd before the journal lines
that point at them, so on reopening, a journal line always points at complete data; bytes after
the last journal line (a run killed mid-write, or stopped by a full disk) are cut off.
``store.json`` says ``complete`` only after ``index.csv`` is in place, and it is replaced
atomically, so a store never reads as complete when it is not. Opening a store checks
``store.json`` against the data (the rate and leads each record was written with, the size of
``signals.i16``), so a damaged or edited ``store.json`` is refused by name rather than trusted.
Reading returns float32 mV from a memory map: no WFDB parsing in training.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import tempfile
from collections.abc import Set
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from ecgtransfer import __version__
from ecgtransfer.data.transforms import to_microvolts
from ecgtransfer.errors import UserError
from ecgtransfer.files import append_synced, atomic_file, exclusive_lock, on_disk_full

__all__ = ["SignalStore", "StoreError", "StoreWriter", "STORE_FORMAT", "merge_stores",
           "content_hash"]

STORE_FORMAT = 1
_META = "store.json"
_SIGNALS = "signals.i16"
_JOURNAL = "journal.jsonl"
_INDEX = "index.csv"
_REJECTS = "rejects.csv"
_LOCK = ".lock"
_DTYPE = np.dtype("<i2")
_CORE_COLUMNS = ("record_id", "source", "fs", "n_samples", "leads", "offset")


class StoreError(UserError):
    """A store that cannot be opened or written as asked; the message names the store."""


def _write_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot store a {type(value).__name__} in the index")


def content_hash(path: str | Path) -> str:
    """12 hex digits identifying a store's content: its identity in ``store.json`` and its
    index (which records, in which order, with which columns)."""
    import hashlib

    path = Path(path)
    meta = json.loads((path / _META).read_text())
    key = {k: meta.get(k) for k in ("format", "source", "fs", "leads", "identity", "n_records")}
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    h.update((path / _INDEX).read_bytes())
    return h.hexdigest()[:12]


def _first_difference(meta: Mapping[str, Any], want: Mapping[str, Any]):
    """The first identity setting where an existing store and a run differ, as
    ``(key, store's value, run's value)``; ``identity`` values are compared key by key."""
    for key in ("format", "source", "fs", "leads"):
        if meta.get(key) != want[key]:
            return key, meta.get(key), want[key]
    have, asked = meta.get("identity") or {}, want["identity"]
    for key in sorted(set(have) | set(asked)):
        if have.get(key) != asked.get(key):
            return f"identity.{key}", have.get(key), asked.get(key)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What every store.json holds, and what each value must look like.
_META_KEYS = {
    "format": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "source": lambda v: isinstance(v, str),
    "fs": lambda v: _is_number(v) and math.isfinite(v) and v > 0,
    "leads": lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v),
    "complete": lambda v: isinstance(v, bool),
    "identity": lambda v: isinstance(v, dict),
}


def _read_meta(path: Path) -> dict:
    """``store.json``, checked to hold every key the store needs, each of the right kind."""
    file = path / _META
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"{file}: unreadable ({reason}); restore it, or remove the store and "
                         "run again") from None
    if not isinstance(meta, dict):
        raise StoreError(f"{file}: holds a JSON {type(meta).__name__}, not a store description; "
                         "restore it, or remove the store and run again")
    for key, valid in _META_KEYS.items():
        if key not in meta:
            raise StoreError(f"{file}: no {key!r} key; restore it, or remove the store and run "
                             "again")
        if not valid(meta[key]):
            raise StoreError(f"{file}: {key}={meta[key]!r} is not a valid value; restore it, or "
                             "remove the store and run again")
    return meta


def _edited(path: Path, key: str, claimed: Any, data: Any, where: str) -> StoreError:
    """The error for a ``store.json`` value that disagrees with the data it describes."""
    return StoreError(f"{path / _META}: {key}={claimed!r}, but the records in {where} were written "
                      f"with {key}={data!r} (store.json edited?); restore {key}={data!r}")


class _Ids(Set):
    """A read-only, live view of a writer's record ids: no copy per look-up."""

    __slots__ = ("_ids",)

    def __init__(self, ids: set[str]):
        self._ids = ids

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"<{len(self)} record ids>"


class SignalStore:
    """Read-only access to a complete signal store.

    Parameters
    ----------
    path : str or Path
        The store folder.

    Attributes
    ----------
    path : Path
    fs : float
        Sampling rate of every record, Hz.
    leads : tuple of str
        Lead names, the rows of every signal.
    meta : dict
        The store's ``store.json``.
    index : pandas.DataFrame
        One row per record, in storage order: ``record_id, source, fs, n_samples, leads,
        offset`` and the source's columns (splits, labels, demographics).

    Examples
    --------
    >>> store = SignalStore("runs/ptbxl")          # doctest: +SKIP
    >>> x = store[0]                               # float32 mV, (8, 5000)
    >>> train = store.index.index[store.index["split"] == "train"]
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / _META).exists():
            raise StoreError(f"{self.path}: not a signal store (no {_META})")
        self.meta = _read_meta(self.path)
        if self.meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.path}: store format {self.meta.get('format')!r} is not "
                             f"{STORE_FORMAT}")
        if not self.meta.get("complete"):
            raise StoreError(f"{self.path}: store is incomplete (an interrupted run?); re-run the "
                             "command that made it to finish it")
        self.fs = float(self.meta["fs"])
        self.leads = tuple(self.meta["leads"])
        try:
            self.index = pd.read_csv(self.path / _INDEX, dtype={"record_id": str},
                                     keep_default_na=False, na_values=[""])
        except (OSError, ValueError) as exc:  # pandas' parser errors are ValueErrors
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(f"{self.path / _INDEX}: unreadable ({reason})") from None
        missing = [c for c in _CORE_COLUMNS if c not in self.index.columns]
        if missing:
            raise StoreError(f"{self.path / _INDEX}: no column {missing[0]!r}; the index is "
                             "damaged")
        self._offsets = self.index["offset"].to_numpy(np.int64)
        self._lengths = self.index["n_samples"].to_numpy(np.int64)
        self._check_layout()
        self._positions = {rid: i for i, rid in enumerate(self.index["record_id"])}
        self._mm: np.memmap | None = None

    def _check_layout(self) -> None:
        """``store.json``'s rate and leads against the index's, and the index against the size
        of ``signals.i16``: records lie one after another, each ``n_leads * n_samples`` long."""
        for key, claimed, column in (
                ("fs", self.fs, self.index["fs"].astype(float)),
                ("leads", ",".join(self.leads), self.index["leads"].astype(str))):
            wrong = np.flatnonzero((column != claimed).to_numpy())
            if len(wrong):
                data = column.iloc[wrong[0]]
                raise _edited(self.path, key, self.meta[key],
                              data.split(",") if key == "leads" else float(data), _INDEX)
        sizes = len(self.leads) * self._lengths
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        if len(sizes) and not np.array_equal(self._offsets, starts):
            bad = int(np.flatnonzero(self._offsets != starts)[0])
            raise StoreError(f"{self.path / _INDEX}: record {self.index['record_id'].iloc[bad]} "
                             f"starts at sample {self._offsets[bad]}, the records before it end "
                             f"at {starts[bad]}; the index is damaged")
        need = int(sizes.sum()) * _DTYPE.itemsize
        file = self.path / _SIGNALS
        size = file.stat().st_size if file.exists() else 0
        if size != need:
            raise StoreError(f"{file}: holds {size} bytes, the index's records at "
                             f"{len(self.leads)} leads need {need}; the store is damaged")

    # A memory map cannot be pickled; each DataLoader worker maps the file itself.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_mm"] = None
        return state

    @property
    def _data(self) -> np.ndarray:
        if self._mm is None:
            if not len(self.index):
                return np.zeros(0, dtype=_DTYPE)
            self._mm = np.memmap(self.path / _SIGNALS, dtype=_DTYPE, mode="r")
        return self._mm

    @property
    def dataset(self) -> str:
        """What the store holds: its identity's ``dataset`` (``ptbxl-1.0.3``,
        ``deepfake+warped``), else its source (``deepfake``); the name training runs are
        tagged with."""
        return str((self.meta.get("identity") or {}).get("dataset") or self.meta.get("source", ""))

    @property
    def n_leads(self) -> int:
        """Number of leads of every record."""
        return len(self.leads)

    @property
    def record_ids(self) -> list[str]:
        """Record ids in storage order."""
        return self.index["record_id"].tolist()

    @property
    def rejects(self) -> pd.DataFrame:
        """Records the run could not store: ``record_id, reason``."""
        path = self.path / _REJECTS
        if not path.exists():
            return pd.DataFrame(columns=["record_id", "reason"])
        return pd.read_csv(path, dtype=str, keep_default_na=False)

    def __len__(self) -> int:
        return len(self.index)

    def raw(self, i: int) -> np.ndarray:
        """Record ``i`` as stored: a read-only int16 microvolt view, ``(n_leads, n_samples)``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} out of range for a store of {len(self)}")
        off, n = int(self._offsets[i]), int(self._lengths[i])
        return self._data[off: off + self.n_leads * n].reshape(self.n_leads, n)

    def __getitem__(self, i: int) -> np.ndarray:
        """Record ``i`` as float32 mV, ``(n_leads, n_samples)``."""
        out = self.raw(int(i)).astype(np.float32)
        out *= np.float32(1e-3)
        return out

    def get(self, record_id: str) -> np.ndarray:
        """The record with this id, as float32 mV."""
        try:
            return self[self._positions[str(record_id)]]
        except KeyError:
            raise KeyError(f"{self.path}: no record {record_id!r}") from None

    def position(self, record_id: str) -> int:
        """Row of ``record_id`` in :attr:`index`."""
        return self._positions[str(record_id)]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (f"SignalStore({str(self.path)!r}, source={self.meta.get('source')!r}, "
                f"records={len(self)}, fs={self.fs:g}, leads={len(self.leads)})")


class StoreWriter:
    """Appends records to a store, resumably.

    Opening a folder that already holds a store of the same identity continues it: records
    already written are reported by :attr:`done` and must not be added again. Opening a store
    of another identity (source, fs, leads or ``identity`` values) raises :class:`StoreError`
    naming the key that differs.

    Parameters
    ----------
    path : str or Path
        The store folder (created if absent).
    source : str
        Where the records come from (``"ptbxl"``, ``"wfdb"``, ``"deepfake"``).
    fs : float
        Sampling rate every record is stored at.
    leads : sequence of str
        Lead names, the rows of every signal.
    identity : mapping, optional
        Further values that must match for a run to continue this store (a seed, a
        package version); saved in ``store.json``.
    info : mapping, optional
        Values saved in ``store.json`` that do not decide identity (where the data came from).
    flush_every : int
        Records buffered in memory before they are written and fsync'd.
    flush_bytes : int
        ... or fewer, once their samples reach this many bytes: a source of long records
        (30-minute Holters) would otherwise hold ``flush_every`` of them in memory.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        source: str,
        fs: float,
        leads: Sequence[str],
        identity: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
        flush_every: int = 256,
        flush_bytes: int = 64 << 20,
    ):
        self.path = Path(path)
        self.leads = tuple(leads)
        self.fs = float(fs)
        self.flush_every = int(flush_every)
        self.flush_bytes = int(flush_bytes)
        self._buffered_bytes = 0
        want = {"format": STORE_FORMAT, "source": source, "fs": self.fs,
                "leads": list(self.leads), "identity": dict(identity or {})}
        want = json.loads(json.dumps(want, default=_jsonable))
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = tempfile.TemporaryFile(dir=self.path)
            probe.close()
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write here ({exc.strerror or exc})") from None

        if not (self.path / _META).exists() and any(
                p.name != _LOCK for p in self.path.iterdir()):
            raise StoreError(f"{self.path}: folder is not empty and holds no signal store")
        # Only ids and end offsets stay in memory; the index is rebuilt from the journal.
        self._done: set[str] = set()
        self._done_view = _Ids(self._done)
        self._n_written = 0
        self._end = 0  # samples in signals.i16 that journal lines point at
        self._journal_end = 0  # bytes of complete lines in journal.jsonl
        self._buffer: list[tuple[dict, np.ndarray]] = []
        self._n_synced = 0  # buffered records whose samples are on disk, their journal lines not
        self._rejects: dict[str, str] = {}
        self._lock = contextlib.ExitStack()
        try:
            self._lock.enter_context(exclusive_lock(self.path / _LOCK))
        except BlockingIOError:
            raise StoreError(f"{self.path}: another process is writing to this store") from None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot lock {_LOCK} ({exc.strerror or exc})") from None
        try:
            self._open(want, info)
        except BaseException:
            self._release_lock()
            raise

    def _open(self, want: dict, info: Mapping[str, Any] | None) -> None:
        """Continue the store in the folder (checked against its data and this run's settings,
        then repaired after a crash), or start one."""
        if (self.path / _META).exists():
            meta = _read_meta(self.path)
            self._scan_journal(meta)
            clash = _first_difference(meta, want)
            if clash is not None:
                key, have, asked = clash
                raise StoreError(
                    f"{self.path}: store was made with {key}={have!r}, this run asks for "
                    f"{key}={asked!r}; use another --out or the same settings")
        else:
            meta = {**want, "complete": False, "n_records": 0}
        meta["info"] = {**meta.get("info", {}), **dict(info or {})}
        meta["created_with"] = meta.get("created_with") or {"ecgtransfer": __version__}
        self.meta = meta
        if not (self.path / _META).exists():
            self._write_meta()
        self._repair()

    # ---- state -------------------------------------------------------------------------
    @property
    def done(self) -> Set[str]:
        """Ids of the records already written (flushed or buffered): a read-only, live view
        (the same object every time, showing records added later), so ``id in writer.done``
        costs the same however many records the store holds."""
        return self._done_view

    @property
    def n_records(self) -> int:
        return self._n_written + len(self._buffer)

    def _release_lock(self) -> None:
        """Let another writer in (the lock is held from construction until this)."""
        self._lock.close()

    def _writing(self, name: str):
        """A full disk while writing ``name`` becomes one :class:`StoreError` line."""
        return on_disk_full(StoreError, self.path, name)

    def _write_meta(self) -> None:
        with self._writing(_META):
            _write_atomic(self.path / _META,
                          json.dumps(self.meta, indent=2, default=_jsonable) + "\n")

    def _scan_journal(self, meta: Mapping[str, Any]) -> None:
        """Read the journal's complete lines (ids, end offsets), without changing any file.

        Every line must have been written at ``store.json``'s rate and leads, so an edited
        ``store.json`` is refused before the recovery cuts anything to its (wrong) sizes.
        """
        journal = self.path / _JOURNAL
        if not journal.exists():
            return
        fs, leads = float(meta["fs"]), ",".join(meta["leads"])
        raw = journal.read_bytes()
        pos = 0
        while True:
            nl = raw.find(b"\n", pos)
            if nl < 0:
                break
            try:
                entry = json.loads(raw[pos:nl])
            except ValueError:
                break
            if entry["fs"] != fs:
                raise _edited(self.path, "fs", meta["fs"], entry["fs"], _JOURNAL)
            if entry["leads"] != leads:
                raise _edited(self.path, "leads", meta["leads"], entry["leads"].split(","),
                              _JOURNAL)
            self._done.add(str(entry["record_id"]))
            self._end = max(self._end, entry["offset"] + len(meta["leads"]) * entry["n_samples"])
            self._n_written += 1
            pos = nl + 1
        self._journal_end = pos

    def _repair(self) -> None:
        """Drop a torn last journal line and cut signal bytes no journal line points at."""
        journal, signals = self.path / _JOURNAL, self.path / _SIGNALS
        if journal.exists() and journal.stat().st_size != self._journal_end:
            with open(journal, "r+b") as f:
                f.truncate(self._journal_end)
        end_bytes = self._end * _DTYPE.itemsize
        if signals.exists() and signals.stat().st_size != end_bytes:
            if signals.stat().st_size < end_bytes:
                raise StoreError(f"{self.path}: {_SIGNALS} is shorter than its journal; the store "
                                 "is damaged, remove it and run again")
            with open(signals, "r+b") as f:
                f.truncate(end_bytes)

    def _mark_incomplete(self) -> None:
        if self.meta.get("complete"):
            self.meta["complete"] = False
            self._write_meta()

    # ---- writing -----------------------------------------------------------------------
    def add(self, record_id: str, signal_mv: np.ndarray, **columns: Any) -> None:
        """Buffer one record for writing.

        Parameters
        ----------
        record_id : str
            Unique id within the store.
        signal_mv : numpy.ndarray
            ``(n_leads, n_samples)`` in mV, leads in the store's order.
        **columns
            Index columns for this record (splits, labels, ...).

        Raises
        ------
        ValueError
            Wrong shape, NaN, or a value outside the int16 microvolt range. Nothing is written.
        """
        record_id = str(record_id)
        self._check(record_id, signal_mv)
        self.add_microvolts(record_id, to_microvolts(signal_mv), **columns)

    def add_microvolts(self, record_id: str, data: np.ndarray, **columns: Any) -> None:
        """Buffer one record that is already int16 microvolts, as it will be stored.

        Parameters
        ----------
        record_id : str
            Unique id within the store.
        data : numpy.ndarray
            ``int16``, ``(n_leads, n_samples)``, leads in the store's order.
        **columns
            Index columns for this record.
        """
        record_id = str(record_id)
        self._check(record_id, data)
        if data.dtype != _DTYPE:
            raise ValueError(f"{record_id}: microvolt data must be int16, got {data.dtype}")
        clash = set(columns) & set(_CORE_COLUMNS)
        if clash:
            raise ValueError(f"{record_id}: column(s) {sorted(clash)} are set by the store")
        row = {"record_id": record_id, "source": self.meta["source"], "fs": self.fs,
               "n_samples": int(data.shape[1]), "leads": ",".join(self.leads), **columns}
        self._mark_incomplete()
        self._buffer.append((row, data))
        self._buffered_bytes += data.nbytes
        self._done.add(record_id)
        self._rejects.pop(record_id, None)
        if len(self._buffer) >= self.flush_every or self._buffered_bytes >= self.flush_bytes:
            self.flush()

    def _check(self, record_id: str, signal: np.ndarray) -> None:
        if record_id in self._done:
            raise ValueError(f"{record_id}: already in the store")
        if signal.ndim != 2 or signal.shape[0] != len(self.leads):
            raise ValueError(f"{record_id}: signal shape {signal.shape} is not "
                             f"({len(self.leads)}, n_samples)")

    def reject(self, record_id: str, reason: str) -> None:
        """Note a record that could not be stored; it lands in ``rejects.csv``."""
        self._rejects[str(record_id)] = str(reason)

    def flush(self) -> None:
        """Write buffered records: samples first (fsync'd), then their journal lines.

        Each file is written from where its last successful write left it (samples that are
        already synced are not written again, since journal lines of a failed attempt may
        point at them), so after a failure (a full disk: :class:`StoreError`, one line) the
        records stay buffered and a later flush, or a new run on the same folder, writes them
        as if nothing had happened.
        """
        if not self._buffer:
            return
        offsets, lines, end = [], [], self._end
        for row, data in self._buffer:  # lines first: a value JSON cannot hold writes nothing
            offsets.append(end)
            lines.append(json.dumps({**row, "offset": end}, default=_jsonable) + "\n")
            end += data.size
        if self._n_synced < len(self._buffer):
            with self._writing(_SIGNALS):
                append_synced(self.path / _SIGNALS,
                              (np.ascontiguousarray(data, dtype=_DTYPE)
                               for _, data in self._buffer[self._n_synced:]),
                              offsets[self._n_synced] * _DTYPE.itemsize)
            self._n_synced = len(self._buffer)
        with self._writing(_JOURNAL):
            self._journal_end = append_synced(self.path / _JOURNAL, ["".join(lines).encode()],
                                              self._journal_end)
        self._end = end
        self._n_written += len(lines)
        self._buffer.clear()
        self._buffered_bytes = 0
        self._n_synced = 0

    def finalize(self) -> SignalStore:
        """Flush, write ``index.csv`` and ``rejects.csv``, then mark the store complete."""
        self.flush()
        # Streamed from the journal in two passes (columns, then rows): memory stays flat in the
        # number of records.
        journal = self.path / _JOURNAL
        columns = list(_CORE_COLUMNS)
        if journal.exists():
            with open(journal, encoding="utf-8") as f:
                for line in f:
                    columns.extend(k for k in json.loads(line) if k not in columns)
        with self._writing(_INDEX), atomic_file(self.path / _INDEX) as out:
            table = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
            table.writeheader()
            if journal.exists():
                with open(journal, encoding="utf-8") as f:
                    for line in f:
                        table.writerow({k: _csv_cell(v) for k, v in json.loads(line).items()})
        rejects = pd.DataFrame(sorted(self._rejects.items()), columns=["record_id", "reason"])
        with self._writing(_REJECTS):
            _write_atomic(self.path / _REJECTS, rejects.to_csv(index=False))
        self.meta.update(complete=True, n_records=self._n_written, n_rejected=len(rejects))
        self._write_meta()
        self._release_lock()
        return SignalStore(self.path)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Keep whatever was produced, even when interrupted; completion is finalize()'s job.
        try:
            self.flush()
        finally:
            self._release_lock()


def _shard_of(store: SignalStore) -> tuple[int, int] | None:
    shard = (store.meta.get("identity") or {}).get("shard")
    if shard is None:
        return None
    k, m = str(shard).split("/")
    return int(k), int(m)


def merge_stores(inputs: Sequence[str | Path], out: str | Path, *,
                 progress: bool = True) -> SignalStore:
    """Merge complete stores of one identity, such as the shards of one run, into one store.

    Records come out in record-id order, so the shards of a run merge into exactly the store
    an unsharded run makes. Shards (stores whose identity has a ``shard`` value ``"k/M"``) must
    all be there, each once, made for the same number of records; the merged store's identity
    is theirs without ``shard``, so it can be extended by an unsharded run. Merging into an
    existing store of that identity adds only the records it lacks.

    Parameters
    ----------
    inputs : sequence of str or Path
        Complete stores to merge.
    out : str or Path
        The merged store folder.
    progress : bool
        Show a progress bar.

    Returns
    -------
    SignalStore
        The merged, complete store.

    Raises
    ------
    StoreError
        An input that is incomplete or of another identity, a missing or repeated shard, or
        one record id with different signals in two inputs.
    """
    from tqdm.auto import tqdm

    if not inputs:
        raise StoreError(f"{out}: nothing to merge")
    stores = [SignalStore(p) for p in inputs]
    first = stores[0]

    def settings(store: SignalStore) -> dict:
        identity = {k: v for k, v in (store.meta.get("identity") or {}).items() if k != "shard"}
        return {**{k: store.meta.get(k) for k in ("format", "source", "fs", "leads")},
                "identity": identity}

    want = settings(first)
    for store in stores[1:]:
        clash = _first_difference(settings(store), want)
        if clash is not None:
            key, have, asked = clash
            raise StoreError(f"{store.path}: made with {key}={have!r}, {first.path} with "
                             f"{key}={asked!r}; only stores of one identity merge")
    shards = [_shard_of(s) for s in stores]
    if any(shards):
        if not all(shards):
            plain = stores[shards.index(None)].path
            raise StoreError(f"{plain}: not a shard, the other inputs are; merge shards of one run")
        counts = {m for _, m in shards}
        if len(counts) > 1:
            raise StoreError(f"{out}: inputs are shards of different splits ({sorted(counts)} shards)")
        num = counts.pop()
        seen = [k for k, _ in shards]
        for k in range(num):
            if seen.count(k) != 1:
                what = "missing from" if k not in seen else "given more than once to"
                raise StoreError(f"{out}: shard {k}/{num} is {what} the merge")
        sizes = {s.meta.get("info", {}).get("n") for s in stores}
        if len(sizes) > 1:
            raise StoreError(f"{out}: shards were made for different record counts "
                             f"{sorted(sizes, key=str)}; re-run the short ones with the larger count")

    rows = sorted((rid, k, i) for k, s in enumerate(stores) for i, rid in enumerate(s.record_ids))
    writer = StoreWriter(out, source=first.meta["source"], fs=first.fs, leads=first.leads,
                         identity=want["identity"],
                         info={**{k: v for k, v in first.meta.get("info", {}).items()
                                  if k not in ("runs", "merged_from")},
                               "merged_from": [str(s.path) for s in stores],
                               "runs": [r for s in stores for r in s.meta.get("info", {}).get("runs", [])]})
    stored: dict[str, tuple[int, int]] = {}
    with writer:
        for rid, k, i in tqdm(rows, desc="merge", unit="rec", disable=not progress):
            if rid in stored:
                k0, i0 = stored[rid]
                if not np.array_equal(stores[k0].raw(i0), stores[k].raw(i)):
                    raise StoreError(f"{stores[k].path}: record {rid} differs from the one in "
                                     f"{stores[k0].path}")
                continue
            stored[rid] = (k, i)
            if rid in writer.done:
                continue
            row = stores[k].index.iloc[i]
            columns = {c: v for c, v in row.items() if c not in _CORE_COLUMNS
                       and not (isinstance(v, float) and math.isnan(v))}
            writer.add_microvolts(rid, np.array(stores[k].raw(i)), **columns)
        for s in stores:
            for rid, reason in s.rejects.itertuples(index=False):
                if rid not in stored:
                    writer.reject(rid, reason)
        return writer.finalize()
