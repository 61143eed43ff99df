"""Label files: running the interval labeller over a store or a WFDB folder, resumably.

A label file is a CSV with the columns of :data:`ecgtransfer.features.intervals.LABEL_COLUMNS`, one
row per record in the source's order, and a JSON sidecar (same name, ``.json``) holding the
labeller's config, its hash, the package versions and the source. By default it lives beside the
store: ``STORE/labels-<hash>.csv``, so labels of another config never overwrite or mix with these.

While a run is going, rows are appended to ``<file>.partial`` and flushed in chunks; a killed run
re-reads them and goes on. Shard runs (``shard=(k, m)``: records ``k, k+m, k+2m, ...`` in source
order) write ``<stem>.shard-K-of-M.csv``; a later unsharded run with the same config takes the rows
of every finished shard file and computes only what is missing, so it doubles as the merge.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from ecgtransfer.data.store import SignalStore, atomic_file
from ecgtransfer.features.intervals import (LABEL_COLUMNS, LabellerConfig, ecg_intervals,
                                            unmeasured)

__all__ = ["LabelError", "LabelReport", "default_label_path", "label_records", "read_labels"]

_CHUNK = 64  # rows between flushes of the partial file


class LabelError(Exception):
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


def read_labels(path: str | Path) -> pd.DataFrame:
    """A label file as a table (``record_id`` as str, intervals as float)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"record_id": str}, keep_default_na=False,
                            na_values=[""])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LabelError(f"{path}: unreadable label file ({exc})") from None
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise LabelError(f"{path}: not a label file (no column {missing[0]!r})")
    return table


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a (possibly partial, possibly torn at the end) label file."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] != "":  # a row cut by a kill: no newline yet
        lines = lines[:-1]
    rows = list(csv.DictReader(line for line in lines if line))
    return [r for r in rows if r.get(LABEL_COLUMNS[-1]) not in (None, "")]


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
        from ecgtransfer.data.leads import LEADS_8
        from ecgtransfer.data.wfdb_io import RecordError, read_record

        try:
            rec = read_record(self.path / record_id, leads=LEADS_8, record_id=record_id)
        except RecordError as exc:
            return unmeasured(record_id, exc.reason)
        return ecg_intervals(rec.signal, rec.fs, rec.leads, record_id=record_id, config=config)


_WORKER: tuple[_Source, LabellerConfig] | None = None


def _open(kind: str, path: Path) -> _Source:
    return _StoreSource(path) if kind == "store" else _FolderSource(path)


def _init_worker(kind: str, path: str, config: dict) -> None:
    global _WORKER
    _WORKER = (_open(kind, Path(path)), LabellerConfig.from_dict(config))


def _measure(source: _Source, record_id: str, config: LabellerConfig) -> dict[str, Any]:
    """One record's row; whatever goes wrong becomes its reason, never a crashed run."""
    try:
        return source.measure(record_id, config)
    except Exception as exc:  # noqa: BLE001 - a record must not stop the other 21,000
        message = str(exc).splitlines()[0] if str(exc) else ""
        return unmeasured(record_id, f"labeller error: {type(exc).__name__}: {message}")


def _work(record_id: str) -> dict[str, Any]:
    assert _WORKER is not None
    source, config = _WORKER
    return _measure(source, record_id, config)


def _results(source: _Source, config: LabellerConfig, todo: Sequence[str],
             workers: int) -> Iterator[dict[str, Any]]:
    """Rows for ``todo`` in order, computed in ``workers`` processes (inline for 1)."""
    if workers <= 1:
        for rid in todo:
            yield _measure(source, rid, config)
        return
    import multiprocessing as mp

    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_init_worker,
                  initargs=(source.kind, str(source.path), config.to_dict())) as pool:
        yield from pool.imap(_work, todo, chunksize=4)


def _versions() -> dict[str, str]:
    import neurokit2
    import scipy

    import ecgtransfer

    return {"ecgtransfer": ecgtransfer.__version__, "neurokit2": neurokit2.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "python": platform.python_version()}


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
        The output belongs to another labeller config, a bad shard, or no output path for a folder.
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
    workers = max(int(workers), 1)
    src = _open(kind, source)
    digest = cfg.config_hash()
    base = Path(out) if out is not None else default_label_path(source, cfg)
    path = _shard_path(base, shard)
    meta = {"config_hash": digest, "config": cfg.to_dict(), "versions": _versions(),
            "source": src.describe(), "shard": list(shard) if shard else None,
            "columns": list(LABEL_COLUMNS)}
    side = _sidecar(path)
    if side.exists():
        theirs = json.loads(side.read_text()).get("config_hash")
        if theirs != digest:
            raise LabelError(f"{path}: made by labeller config {theirs}, this run is {digest}; "
                             "choose another --out")
    elif path.exists() or _partial(path).exists():
        raise LabelError(f"{path}: exists without its {side.name}; not overwriting it")

    ids = src.record_ids()
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
            side = _sidecar(donor)
            if not side.exists() or json.loads(side.read_text()).get("config_hash") != digest:
                continue
        for row in _read_rows(donor):
            if row["record_id"] in wanted:
                known.setdefault(row["record_id"], _line(row))
    reused = len(known)
    todo = [rid for rid in ids if rid not in known]

    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(_sidecar(path)) as fh:
        json.dump({**meta, "complete": False}, fh, indent=2)
    computed = 0
    if todo:
        partial = _partial(path)
        if partial.exists():  # drop a row torn by a kill, so appends start on a fresh line
            _truncate_torn(partial)
        fresh = not partial.exists() or partial.stat().st_size == 0
        with open(partial, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS, lineterminator="\n")
            if fresh:
                writer.writeheader()
            bar = None
            if progress is True:
                from tqdm import tqdm

                bar = tqdm(total=len(ids), initial=reused, unit="rec", desc="label")
            try:
                for row in _results(src, cfg, todo, workers):
                    row = _format(row)
                    writer.writerow(row)
                    known[row["record_id"]] = _line(row)
                    computed += 1
                    if computed % _CHUNK == 0:
                        fh.flush()
                        os.fsync(fh.fileno())
                    if bar is not None:
                        bar.update(1)
                    elif callable(progress):
                        progress(computed)
            finally:
                if bar is not None:
                    bar.close()
    with atomic_file(path) as fh:
        fh.write(",".join(LABEL_COLUMNS) + "\n")
        for rid in ids:
            fh.write(known[rid])
    seconds = time.perf_counter() - start
    table = read_labels(path)
    n_ok = {c: int((table[c] == "ok").sum()) for c in LABEL_COLUMNS if c.endswith("_status")}
    with atomic_file(_sidecar(path)) as fh:
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


def _truncate_torn(path: Path) -> None:
    """Cut a partial file back to its last complete line."""
    with open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)
