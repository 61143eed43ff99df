"""Label files: running the interval labeller over a store or a WFDB folder, resumably.

A label file is a CSV with the columns of :data:`ecgtransfer.features.intervals.LABEL_COLUMNS`, one
row per record in the source's order, and a JSON sidecar (same name, ``.json``) holding the
labeller's config, its hash, the package versions and the source. By default it lives beside the
store: ``STORE/labels-<hash>.csv``, so labels of another config never overwrite or mix with these.

While a run is going, rows are appended to ``<file>.partial`` and fsynced in chunks; a run killed
or stopped by a full disk re-reads them and goes on (a damaged line there, or in a finished file
the run re-reads, is left out with a warning and its record measured again). One run at a time
writes a label file: a second run on it (``.<file>.lock``) is refused with one line. Shard runs (``shard=(k, m)``:
records ``k, k+m, k+2m, ...`` in source order) write ``<stem>.shard-K-of-M.csv``; a later
unsharded run with the same config takes the rows of every finished shard file and computes only
what is missing, so it doubles as the merge.

Every interval is checked against its plausible range
(:data:`ecgtransfer.features.vocabulary.PLAUSIBLE`): the labeller writes NaN with the reason
for a value outside it, and :func:`read_labels` leaves such a value out (a few) or refuses the
file (many).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from ecgtransfer.data.store import SignalStore
from ecgtransfer.data.wfdb_io import RecordError
from ecgtransfer.errors import UserError
from ecgtransfer.features.intervals import (LABEL_COLUMNS, OPTIONAL_COLUMNS, STATUS_COLUMNS,
                                            LabellerConfig, ecg_intervals, neurokit2_version,
                                            unmeasured)
from ecgtransfer.config import ConfigError
from ecgtransfer.features.vocabulary import (INTERVALS, UNITS, column, implausible_reason,
                                             plausible, plausible_range, status_column)
from ecgtransfer.files import append_synced, atomic_file, exclusive_lock, on_disk_full

__all__ = ["LabelError", "LabelReport", "default_label_path", "find_labels", "label_records",
           "read_beats", "read_labels", "read_windows", "target_table", "windows_folder"]

log = logging.getLogger(__name__)

_CHUNK = 64  # rows between flushes of the partial file
_HEADER = ",".join(LABEL_COLUMNS) + "\n"
_NUMBERS = (*INTERVALS, "n_beats", "quality")  # the numeric columns of a label file
IMPLAUSIBLE_SHARE = 0.01
"""A label file with more than this share of an interval's values (and more than one) outside
its plausible range is refused; fewer are left out with a warning."""


class LabelError(UserError):
    """A labelling run that cannot start (one line, naming the file or setting)."""


@dataclass
class LabelReport:
    """What a labelling run did."""

    path: Path
    config_hash: str
    n_records: int
    n_computed: int
    n_reused: int
    seconds: float
    n_ok: dict[str, int]


def default_label_path(store: str | Path, config: LabellerConfig) -> Path:
    """``STORE/labels-<config hash>.csv``."""
    return Path(store) / f"labels-{config.config_hash()}.csv"


def _shard_path(path: Path, shard: tuple[int, int] | None) -> Path:
    if shard is None or shard[1] == 1:
        return path
    return path.with_name(f"{path.stem}.shard-{shard[0]}-of-{shard[1]}{path.suffix}")


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _lock(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def read_labels(path: str | Path) -> pd.DataFrame:
    """A label file as a table (``record_id`` as str, intervals as float).

    An interval outside its plausible range (:data:`~ecgtransfer.features.vocabulary.PLAUSIBLE`)
    becomes NaN with the reason in its status column (``implausible value 1e+09 ms
    (plausible: 20-300 ms)``), and a warning names the file, the count and the first line; a
    file where more than :data:`IMPLAUSIBLE_SHARE` of an interval's values (and more than one)
    are outside is refused.

    Raises
    ------
    LabelError
        One line naming the file: unreadable or damaged (naming the line), a column missing, a
        value that is not a number (naming the line and column), a row without a record id, a
        record given two rows, or many implausible values of one interval.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelError(f"{path}: unreadable label file ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LabelError(f"{path}: line {line} is damaged (byte 0x{data[exc.start]:02x} is not "
                         f"UTF-8 text); {_REPAIR}") from None
    try:
        table = pd.read_csv(io.StringIO(text), dtype={"record_id": str}, keep_default_na=False,
                            na_values=[""], skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LabelError(f"{path}: unreadable label file ({str(exc).strip()})") from None
    missing = [c for c in LABEL_COLUMNS if c not in table.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        raise LabelError(f"{path}: not a label file (no column {missing[0]!r})")
    lines = table.index.to_numpy() + 2  # file lines, the header is 1
    blank = table.isna().all(axis=1).to_numpy()
    table, lines = table[~blank].reset_index(drop=True), lines[~blank]
    for col in _NUMBERS:
        if col in table.columns:
            table[col] = _numbers(table[col], col, lines, path)
    no_id = table["record_id"].isna() | (table["record_id"].astype(str).str.strip() == "")
    if no_id.any():
        raise LabelError(f"{path}: line {lines[np.flatnonzero(no_id)[0]]} has no record_id")
    repeated = table["record_id"][table["record_id"].duplicated()]
    if len(repeated):
        rid = repeated.iloc[0]
        rows = lines[(table["record_id"] == rid).to_numpy()].tolist()
        raise LabelError(f"{path}: record {rid!r} has {len(rows)} rows (lines "
                         f"{', '.join(map(str, rows))}); a label file holds one row per record")
    for col in INTERVALS:
        _leave_out_implausible(table, col, lines, path)
    return table


_REPAIR = "re-run the label command that made it to measure the damaged rows again"


def _numbers(cells: pd.Series, col: str, lines: np.ndarray, path: Path) -> pd.Series:
    """A label column as float; a cell that is not a number is a ``LabelError`` naming it."""
    if pd.api.types.is_numeric_dtype(cells):
        return cells.astype(np.float64)
    text = cells.astype(object).where(cells.notna(), "").astype(str).str.strip()
    text = text.where(text.str.lower() != "nan", "")  # pandas writes NaN as "" or "nan"
    numbers = pd.to_numeric(text.where(text != "", None), errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy() & (text != "").to_numpy())
    if len(bad):
        raise LabelError(f"{path}: line {lines[bad[0]]}, column {col}: {text.iloc[bad[0]]!r} is "
                         "not a number")
    return numbers.astype(np.float64)


def _leave_out_implausible(table: pd.DataFrame, col: str, lines: np.ndarray, path: Path) -> None:
    """Make ``col``'s values outside their plausible range NaN with the reason as their status
    (a few, with a warning), or refuse the file (many)."""
    values = table[col].to_numpy(np.float64)
    present = ~np.isnan(values)
    bad = present & ~plausible(col, values)
    n_bad, n_present = int(bad.sum()), int(present.sum())
    if not n_bad:
        return
    first = np.flatnonzero(bad)[0]
    low, high = plausible_range(col)
    unit = UNITS[col.split("_")[0]]
    where = (f"first: line {lines[first]}, record {table['record_id'].iloc[first]!r}, "
             f"{values[first]:g} {unit}")
    if n_bad > 1 and n_bad > IMPLAUSIBLE_SHARE * n_present:
        raise LabelError(f"{path}: {n_bad} of {n_present} {col} values are outside the plausible "
                         f"{low:g}-{high:g} {unit} ({where}); a wrong unit, swapped columns or "
                         "a damaged file?")
    status = status_column(col)
    table[status] = table[status].astype(object)
    table.loc[bad, status] = [implausible_reason(col, v) for v in values[bad]]
    table.loc[bad, col] = np.nan
    log.warning("%s: %d %s value(s) outside the plausible %g-%g %s left out (%s)", path, n_bad,
                col, low, high, unit, where)


def _row_problem(cells: list[str]) -> str:
    """Why a label file's line is no label row ("" when it is one)."""
    if len(cells) != len(LABEL_COLUMNS):
        return f"{len(cells)} fields, not {len(LABEL_COLUMNS)}"
    row = dict(zip(LABEL_COLUMNS, cells))
    if not row["record_id"].strip():
        return "no record_id"
    for col in _NUMBERS:
        if row[col]:
            try:
                float(row[col])
            except ValueError:
                return f"{col} {row[col]!r} is not a number"
    empty = [c for c in STATUS_COLUMNS if not row[c]]
    return f"no {empty[0]}" if empty else ""


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a (possibly partial, possibly torn at the end) label file.

    A row cut by a kill (no newline yet) is left out silently, a damaged line (not UTF-8, not a
    label row) with one warning naming the file: either way its record is measured again.
    """
    if not path.exists():
        return []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    rows, damaged = [], []
    for number, raw in enumerate(data.split(b"\n")[:-1], 1):  # the last piece has no newline
        try:
            line = raw.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as exc:
            damaged.append((number, f"byte 0x{raw[exc.start]:02x} is not UTF-8 text"))
            continue
        if not line.strip() or line + "\n" == _HEADER:
            continue
        try:
            cells = next(csv.reader([line]))
        except csv.Error as exc:
            damaged.append((number, str(exc)))
            continue
        problem = _row_problem(cells)
        if problem:
            damaged.append((number, problem))
        else:
            rows.append(dict(zip(LABEL_COLUMNS, cells)))
    if damaged:
        log.warning("%s: %d damaged line(s) left out, their records are measured again "
                    "(first: line %d, %s)", path, len(damaged), *damaged[0])
    return rows


def _plausible_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with each interval outside its plausible range NaN, the reason its status."""
    out = row
    for col in INTERVALS:
        value = row.get(col)
        if value is None or value == "":
            continue
        number = float(value)
        if not np.isnan(number) and not plausible(col, number):
            out = {**out, col: np.nan, status_column(col): implausible_reason(col, number)}
    return out


def _config_hash(side: Path) -> str | None:
    """The labeller config hash a sidecar records; None when it cannot be read."""
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(meta.get("config_hash")) if isinstance(meta, dict) else None


# ---------------------------------------------------------------------------------------------
# sources: a store, or a folder of WFDB records; workers open them themselves

class _Source:
    kind: str

    def __init__(self, path: Path):
        self.path = path

    def record_ids(self) -> list[str]:
        raise NotImplementedError

    def measure(self, record_id: str, config: LabellerConfig) -> dict[str, Any]:
        raise NotImplementedError

    def open_record(self, record_id: str,
                    config: LabellerConfig) -> tuple[Callable[[int, int], np.ndarray], int, float,
                                                     Sequence[str]]:
        """``read(start, stop)``, length, rate and lead names of one record, nothing read yet."""
        raise NotImplementedError

    def measure_windows(self, record_id: str, config: LabellerConfig,
                        folder: Path) -> dict[str, Any]:
        """Label one record in windows: its windows and beat tables written (each file
        complete or absent) into ``folder``, its summary row returned."""
        from ecgtransfer.features.windows import BEAT_COLUMNS, WINDOW_COLUMNS, Summary, label_windows

        try:
            read, n, fs, leads = self.open_record(record_id, config)
        except RecordError as exc:
            return unmeasured(record_id, exc.reason)
        summary = Summary(record_id)
        windows_file, beats_file = _record_files(folder, record_id)
        windows_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(windows_file) as wf, atomic_file(beats_file) as bf:
            windows, beats = csv.writer(wf, lineterminator="\n"), csv.writer(bf, lineterminator="\n")
            windows.writerow(WINDOW_COLUMNS)
            beats.writerow(BEAT_COLUMNS)
            for window, marks in label_windows(read, n, fs, leads, record_id, config):
                window = _plausible_row(window)
                summary.add(window)
                windows.writerow([_cell(window.get(c, "")) for c in WINDOW_COLUMNS])
                beats.writerows([record_id, *map(_cell, m)] for m in marks)
        return summary.row()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path)}


class _StoreSource(_Source):
    kind = "store"

    def __init__(self, path: Path):
        super().__init__(path)
        self.store = SignalStore(path)

    def record_ids(self) -> list[str]:
        return self.store.record_ids

    def measure(self, record_id: str, config: LabellerConfig) -> dict[str, Any]:
        return ecg_intervals(self.store.get(record_id), self.store.fs, self.store.leads,
                             record_id=record_id, config=config)

    def open_record(self, record_id: str, config: LabellerConfig):
        signal = self.store.get(record_id)  # memory-mapped: a window is read when sliced

        def read(start: int, stop: int) -> np.ndarray:
            return np.asarray(signal[:, start:stop], dtype=np.float64)

        return read, signal.shape[1], self.store.fs, self.store.leads

    def describe(self) -> dict[str, Any]:
        meta = self.store.meta
        return {**super().describe(), "source": meta.get("source"), "n_records": len(self.store),
                "identity": meta.get("identity")}


class _FolderSource(_Source):
    kind = "wfdb"

    def record_ids(self) -> list[str]:
        from ecgtransfer.data.wfdb_io import find_records

        return find_records(self.path)

    def measure(self, record_id: str, config: LabellerConfig) -> dict[str, Any]:
        from ecgtransfer.data.wfdb_io import read_record

        try:
            rec = read_record(self.path / record_id, leads=config.leads or None,
                              record_id=record_id)
        except RecordError as exc:
            return unmeasured(record_id, exc.reason)
        return ecg_intervals(rec.signal, rec.fs, rec.leads, record_id=record_id, config=config)

    def open_record(self, record_id: str, config: LabellerConfig):
        from ecgtransfer.data.wfdb_io import RecordReader

        reader = RecordReader(self.path / record_id, leads=config.leads or None,
                              record_id=record_id)
        return reader.read, reader.n_samples, reader.fs, reader.leads


_WORKER: tuple[_Source, LabellerConfig, Path | None] | None = None


def _open(kind: str, path: Path) -> _Source:
    return _StoreSource(path) if kind == "store" else _FolderSource(path)


def _init_worker(kind: str, path: str, config: dict, windows: str | None) -> None:
    global _WORKER
    _WORKER = (_open(kind, Path(path)), LabellerConfig.from_dict(config),
               Path(windows) if windows else None)


def _measure(source: _Source, record_id: str, config: LabellerConfig,
             windows: Path | None = None) -> dict[str, Any]:
    """One record's row (in windows written into ``windows`` when the config has a
    ``window_s``); whatever goes wrong becomes its reason, never a crashed run, and a value
    outside its plausible range NaN with the reason, never a label."""
    try:
        if config.window_s > 0 and windows is not None:
            return _plausible_row(source.measure_windows(record_id, config, windows))
        return _plausible_row(source.measure(record_id, config))
    except Exception as exc:  # noqa: BLE001 - a record must not stop the other 21,000
        message = str(exc).splitlines()[0] if str(exc) else ""
        return unmeasured(record_id, f"labeller error: {type(exc).__name__}: {message}")


def _work(record_id: str) -> dict[str, Any]:
    assert _WORKER is not None
    source, config, windows = _WORKER
    return _measure(source, record_id, config, windows)


def _results(source: _Source, config: LabellerConfig, todo: Sequence[str],
             workers: int, windows: Path | None) -> Iterator[dict[str, Any]]:
    """Rows for ``todo`` in order, computed in ``workers`` processes (inline for 1)."""
    if workers <= 1:
        for rid in todo:
            yield _measure(source, rid, config, windows)
        return
    import multiprocessing as mp

    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_init_worker,
                  initargs=(source.kind, str(source.path), config.to_dict(),
                            str(windows) if windows else None)) as pool:
        yield from pool.imap(_work, todo, chunksize=4)


def _versions() -> dict[str, str]:
    import scipy

    import ecgtransfer

    return {"ecgtransfer": ecgtransfer.__version__, "neurokit2": neurokit2_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "python": platform.python_version()}


def _cell(value: Any) -> Any:
    """A windows or beat table cell: numbers to 10 significant digits (a beat's time in a
    24-hour record keeps its milliseconds), NaN empty."""
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else f"{float(value):.10g}"
    return value


def windows_folder(path: str | Path) -> Path:
    """Where a windowed label file keeps its windows and beat tables: ``<stem>.windows/``
    beside it (``labels-<hash>.windows/``), one ``<record>.windows.csv`` and
    ``<record>.beats.csv`` per record (shards share it)."""
    path = Path(path)
    stem = re.sub(r"\.shard-\d+-of-\d+$", "", path.stem)  # a shard file: its full file's
    return path.with_name(f"{stem}.windows")


def _record_files(folder: Path, record_id: str) -> tuple[Path, Path]:
    return folder / f"{record_id}.windows.csv", folder / f"{record_id}.beats.csv"


def read_windows(path: str | Path, record_id: str) -> pd.DataFrame:
    """One record's windows table (:data:`~ecgtransfer.features.windows.WINDOW_COLUMNS`) of a
    windowed label file ``path``.

    Raises
    ------
    LabelError
        The label file was not made in windows, or the record has no windows table yet.
    """
    return _record_table(path, record_id, 0)


def read_beats(path: str | Path, record_id: str) -> pd.DataFrame:
    """One record's beat table (:data:`~ecgtransfer.features.windows.BEAT_COLUMNS`) of a
    windowed label file ``path``: every beat's R time, wave boundaries (s) and intervals (ms).

    Raises
    ------
    LabelError
        As :func:`read_windows`.
    """
    return _record_table(path, record_id, 1)


def _record_table(path: str | Path, record_id: str, which: int) -> pd.DataFrame:
    folder = windows_folder(path)
    if not folder.is_dir():
        raise LabelError(f"{path}: has no windows (label with window_s > 0 to get them)")
    file = _record_files(folder, str(record_id))[which]
    try:
        return pd.read_csv(file, dtype={"record_id": str}, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise LabelError(f"{file}: no such table (record {record_id!r} not labelled in "
                         "windows yet)") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LabelError(f"{file}: unreadable ({str(exc).splitlines()[0]})") from None


def _format(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for col in LABEL_COLUMNS:
        value = row.get(col, "")
        if isinstance(value, (float, np.floating)):
            value = "" if not np.isfinite(value) else f"{float(value):.6g}"
        out[col] = value
    return out


def label_records(source: str | Path, *, out: str | Path | None = None, kind: str = "store",
                  config: LabellerConfig | None = None, workers: int = 1,
                  shard: tuple[int, int] | None = None,
                  progress: bool | Callable[[int], None] = False) -> LabelReport:
    """Label every record of a store or WFDB folder into a label file, resuming where one stopped.

    Parameters
    ----------
    source : str or Path
        A signal store (``kind="store"``) or a folder of WFDB records (``kind="wfdb"``).
    out : str or Path, optional
        The label file. Default for a store: ``STORE/labels-<config hash>.csv``; required for a
        folder (shared data folders are often read-only).
    kind : {"store", "wfdb"}
    config : LabellerConfig, optional
    workers : int
        Processes measuring records.
    shard : (k, m), optional
        Label only records ``k, k+m, ...`` (in source order) into ``<stem>.shard-k-of-m.csv``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    LabelReport

    Raises
    ------
    LabelError
        The output belongs to another labeller config or is being written by another run, a
        bad shard, no output path for a folder or a folder (or store) without records, a lead
        the store lacks, an output named ``.json`` (its sidecar's name), a damaged sidecar, or
        a full disk (the rows measured so far are kept; the same command continues).
    """
    cfg = config or LabellerConfig()
    source = Path(source)
    if kind not in ("store", "wfdb"):
        raise LabelError(f"kind: {kind!r} is neither 'store' nor 'wfdb'")
    if kind == "wfdb" and not source.is_dir():
        raise LabelError(f"{source}: not a folder of WFDB records")
    if kind == "wfdb" and out is None:
        raise LabelError(f"{source}: --out is needed to label a WFDB folder")
    if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise LabelError(f"shard {shard[0]} of {shard[1]}: need 0 <= K < M")
    if out is not None and Path(out).suffix.lower() == ".json":
        raise LabelError(f"{out}: a label file cannot end in .json (its sidecar, holding the "
                         "config, has that name); use .csv")
    src = _open(kind, source)
    _check_leads(cfg.leads, src.store.leads if isinstance(src, _StoreSource) else None, source)
    ids = src.record_ids()
    if not ids and kind == "wfdb":
        raise LabelError(f"{source}: no WFDB records (.hea files) found")
    if not ids:
        raise LabelError(f"{source}: the store holds no records; nothing to label")
    base = Path(out) if out is not None else default_label_path(source, cfg)
    path = _shard_path(base, shard)
    lock = _lock(path)
    with contextlib.ExitStack() as held:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(exclusive_lock(lock))
        except BlockingIOError:
            raise LabelError(f"{lock}: another run is labelling {path.name}; wait for it to "
                             "finish (its finished file is reused)") from None
        except OSError as exc:
            raise LabelError(f"{path.parent}: cannot write here ({exc.strerror or exc})") from None
        return _label(src, ids, cfg, base, path, max(int(workers), 1), shard, progress)


def _check_leads(wanted: Sequence[str], leads: Sequence[str] | None, source: Path) -> None:
    """Every lead ``wanted`` is named once and, for a store (``leads``), is one of its leads
    (case-insensitive); a folder's records may differ, so there each record says it."""
    seen: set[str] = set()
    for name in wanted:
        if name.lower() in seen:
            raise LabelError(f"leads: {name} is named twice")
        seen.add(name.lower())
        if leads is not None and name.lower() not in {lead.lower() for lead in leads}:
            raise LabelError(f"leads: {source} has no lead {name} (its leads: "
                             f"{', '.join(leads)})")


def _label(src: _Source, ids: list[str], cfg: LabellerConfig, base: Path, path: Path,
           workers: int, shard: tuple[int, int] | None,
           progress: bool | Callable[[int], None]) -> LabelReport:
    """:func:`label_records` once it holds the label file's lock."""
    digest = cfg.config_hash()
    windows = windows_folder(base) if cfg.window_s > 0 else None
    meta = {"config_hash": digest, "config": cfg.to_dict(), "versions": _versions(),
            "source": src.describe(), "shard": list(shard) if shard else None,
            "columns": list(LABEL_COLUMNS),
            "windows": windows.name if windows is not None else None}
    side = _sidecar(path)
    if side.exists():
        theirs = _config_hash(side)
        if theirs is None:
            raise LabelError(f"{side}: damaged (not the JSON of a label file's config), so "
                             f"{path.name} cannot be checked; restore it or choose another --out")
        if theirs != digest:
            raise LabelError(f"{path}: made by labeller config {theirs}, this run is {digest}; "
                             "choose another --out")
    elif path.exists() or _partial(path).exists():
        raise LabelError(f"{path}: exists without its {side.name}; not overwriting it")

    if shard is not None and shard[1] > 1:
        ids = ids[shard[0]::shard[1]]
    wanted = set(ids)
    # one CSV line per finished record (~150 bytes), not a dict of cells (~1 KB): 150,000 records
    # stay around 25 MB
    known: dict[str, str] = {}
    donors = [path, _partial(path)]
    if shard is None or shard[1] == 1:  # finished shard files of this config feed a full run
        donors += sorted(base.parent.glob(f"{base.stem}.shard-*-of-*{base.suffix}"))
    for donor in donors:
        if donor != path and donor != _partial(path):
            donor_side = _sidecar(donor)
            if not donor_side.exists():
                continue
            theirs = _config_hash(donor_side)
            if theirs is None:
                log.warning("%s: damaged, so %s is not reused", donor_side, donor.name)
            if theirs != digest:
                continue
        for row in _read_rows(donor):
            if row["record_id"] in wanted:
                known.setdefault(row["record_id"], _line(_format(_plausible_row(row))))
    reused = len(known)
    todo = [rid for rid in ids if rid not in known]

    start = time.perf_counter()
    folder = path.parent
    with on_disk_full(LabelError, folder, side.name), atomic_file(side) as fh:
        json.dump({**meta, "complete": False}, fh, indent=2)
    computed = 0
    partial = _partial(path)
    # appends start after the last complete line, cutting a row torn by a kill; this run's
    # rows (in ``todo`` order) follow byte ``fresh`` of the partial file
    end = fresh = _complete_lines(partial) if todo else 0
    if todo:
        pending = [] if end else [_HEADER]
        bar = None
        if progress is True:
            from tqdm import tqdm

            bar = tqdm(total=len(ids), initial=reused, unit="rec", desc="label")
        with on_disk_full(LabelError, folder, partial.name):
            try:
                for row in _results(src, cfg, todo, workers, windows):
                    line = _line(_format(row))
                    pending.append(line)
                    computed += 1
                    if computed % _CHUNK == 0:
                        end = append_synced(partial, ["".join(pending).encode()], end)
                        pending.clear()
                    if bar is not None:
                        bar.update(1)
                    elif callable(progress):
                        progress(computed)
            finally:  # keep every measured row, also when interrupted
                if bar is not None:
                    bar.close()
                if pending:
                    append_synced(partial, ["".join(pending).encode()], end)
    n_ok = dict.fromkeys((c for c in LABEL_COLUMNS if c.endswith("_status")), 0)
    with on_disk_full(LabelError, folder, path.name), atomic_file(path) as fh, \
            open(partial, encoding="utf-8") if todo else contextlib.nullcontext() as new:
        # the file in record order, streamed: reused rows from memory, this run's from disk
        if new is not None:
            new.seek(fresh)
        fh.write(_HEADER)
        for rid in ids:
            line = known.get(rid)
            if line is None:
                line = new.readline()
                if line == _HEADER:
                    line = new.readline()
            cells = dict(zip(LABEL_COLUMNS, next(csv.reader([line]), [])))
            if cells.get("record_id") != rid:  # only if the partial file was changed meanwhile
                raise LabelError(f"{partial}: changed while labelling (found "
                                 f"{cells.get('record_id')!r} where {rid!r} was written); run "
                                 "the label command again")
            for c in n_ok:
                n_ok[c] += cells.get(c) == "ok"
            fh.write(line)
    seconds = time.perf_counter() - start
    with on_disk_full(LabelError, folder, side.name), atomic_file(side) as fh:
        json.dump({**meta, "complete": True, "n_records": len(ids), "n_ok": n_ok,
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, fh, indent=2)
    _partial(path).unlink(missing_ok=True)
    return LabelReport(path=path, config_hash=digest, n_records=len(ids), n_computed=computed,
                       n_reused=reused, seconds=seconds, n_ok=n_ok)


def _line(row: dict[str, Any]) -> str:
    """One row as a CSV line, columns in :data:`LABEL_COLUMNS` order."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([row.get(c, "") for c in LABEL_COLUMNS])
    return buf.getvalue()


def _complete_lines(path: Path) -> int:
    """Bytes of ``path`` up to and including its last newline (0 if there is none)."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    return data.rfind(b"\n") + 1


def find_labels(store_path: Path, labels: str | None) -> Path:
    """The label file to use: ``labels`` or the store's only ``labels-*.csv``."""
    if labels:
        path = Path(labels)
        if not path.exists():
            raise FileNotFoundError(f"labels: {path} does not exist")
        return path
    found = sorted(p for p in store_path.glob("labels-*.csv") if ".shard-" not in p.name)
    if not found:
        raise FileNotFoundError(f"{store_path}: no label file; run `ecgtransfer label --store "
                                f"{store_path}` first or pass --labels")
    if len(found) > 1:
        raise ConfigError(f"{store_path}: {len(found)} label files "
                          f"({', '.join(p.name for p in found)}); pass --labels to choose one",
                          "labels")
    return found[0]


def target_table(index: pd.DataFrame, labels: pd.DataFrame, targets: list[str],
                 labels_path: Path | str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Values of ``targets`` for every row of a store's index, and why each is unusable.

    Returns
    -------
    values : numpy.ndarray
        ``(n_records, n_targets)`` float64, NaN where unusable.
    reasons : numpy.ndarray
        Same shape, object: ``""`` for a usable value, else ``"no label row"``, ``"index:
        <problem>"``, the labeller's status (``"flat lead V2"``, ...) or ``"implausible value
        ..."`` for a value outside its plausible range.

    Raises
    ------
    ValueError
        One line naming ``labels_path``: no row is a record of this store, or a target value
        that is not a number.
    """
    import pandas as pd

    labels = labels.set_index("record_id")
    ids = index["record_id"].astype(str)
    if not ids.isin(labels.index).any():
        raise ValueError(f"{labels_path}: none of its rows is a record of this store (labels "
                         "made for another store?)")
    rows = labels.reindex(ids)
    values = np.empty((len(rows), len(targets)), dtype=np.float64)
    for j, t in enumerate(targets):
        try:
            values[:, j] = pd.to_numeric(rows[column(t)], errors="raise")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{labels_path}: column {column(t)}: {exc}") from None
    reasons = np.full(values.shape, "", dtype=object)
    for j, t in enumerate(targets):
        status = rows[status_column(t)].fillna("").astype(str).to_numpy()
        bad = (status != "ok") | ~np.isfinite(values[:, j])
        reasons[bad, j] = np.where(status[bad] == "", "label NaN", status[bad])
        for i in np.flatnonzero(~bad & ~plausible(t, values[:, j])):
            reasons[i, j] = implausible_reason(t, values[i, j])
    reasons[~ids.isin(labels.index).to_numpy(), :] = "no label row"
    if "problem" in index.columns:
        problem = index["problem"].fillna("").astype(str).to_numpy()
        for i in np.flatnonzero(problem != ""):
            reasons[i, :] = f"index: {problem[i]}"
    values[reasons != ""] = np.nan
    return values, reasons
