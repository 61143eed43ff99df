"""Copying records from WFDB files into a signal store: the loop every ``prepare`` shares."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from ecgtransfer.data.leads import LEADS_8
from ecgtransfer.data.transforms import resample
from ecgtransfer.data.wfdb_io import RecordError, find_records, read_record

if TYPE_CHECKING:
    from ecgtransfer.data.store import SignalStore, StoreWriter

__all__ = ["PrepareReport", "RecordJob", "ingest", "prepare_wfdb"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordJob:
    """One record to copy: its id in the store, its WFDB path and its index columns."""

    record_id: str
    path: Path
    columns: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class PrepareReport:
    """What a ``prepare`` run did.

    Attributes
    ----------
    store : SignalStore
        The complete store.
    written : int
        Records written by this run.
    skipped : int
        Records already in the store from an earlier run, not redone.
    rejects : list of (str, str)
        ``(record_id, reason)`` for each record that could not be stored.
    """

    store: SignalStore
    written: int
    skipped: int
    rejects: list[tuple[str, str]]


def ingest(
    writer: StoreWriter,
    jobs: Iterable[RecordJob],
    *,
    total: int | None = None,
    progress: bool = True,
    desc: str = "prepare",
) -> PrepareReport:
    """Read each job's record, resample it to the store's rate and append it.

    A record that cannot be read (see :func:`~ecgtransfer.data.wfdb_io.read_record`, or a file
    the system refuses to read) is logged as one line naming it and the reason, and noted in
    the store's rejects table; the run goes on. Records already in the store are skipped
    (``writer.done`` is a live view, so the check costs the same at record 150,000 as at record
    1), so an interrupted run resumes.

    Parameters
    ----------
    writer : StoreWriter
    jobs : iterable of RecordJob
    total : int, optional
        Number of jobs, for the progress bar.
    progress : bool
        Show a progress bar.
    desc : str
        Progress bar label.

    Returns
    -------
    PrepareReport

    Raises
    ------
    StoreError
        The store cannot be written, e.g. a full disk (one line naming the store and the file;
        what was written stays valid and the same command continues from there).
    """
    written = skipped = 0
    rejects: list[tuple[str, str]] = []
    with writer:
        for job in tqdm(jobs, total=total, desc=desc, unit="rec", disable=not progress):
            if job.record_id in writer.done:
                skipped += 1
                continue
            try:
                rec = read_record(job.path, leads=writer.leads, record_id=job.record_id)
                signal = resample(rec.signal, rec.fs, writer.fs)
            except RecordError as exc:
                reason = exc.reason
            except OSError as exc:  # a .hea that is a folder, a file it may not read
                name = Path(exc.filename).name if exc.filename else job.path.name
                reason = f"cannot read {name} ({exc.strerror or exc})"
            except ValueError as exc:  # a rate resample cannot take
                reason = str(exc).removeprefix(f"{job.record_id}: ")
            else:
                try:  # a full disk here is the store's StoreError, not this record's fault
                    writer.add(job.record_id, signal, **dict(job.columns))
                except ValueError as exc:  # int16 range, shape
                    reason = str(exc).removeprefix(f"{job.record_id}: ")
                else:
                    written += 1
                    continue
            log.warning("rejected %s: %s", job.record_id, reason)
            writer.reject(job.record_id, reason)
            rejects.append((job.record_id, reason))
        store = writer.finalize()
    return PrepareReport(store=store, written=written, skipped=skipped, rejects=rejects)


def prepare_wfdb(
    input_dir: str | Path,
    out: str | Path,
    *,
    fs: float = 500,
    leads: Sequence[str] = LEADS_8,
    progress: bool = True,
) -> PrepareReport:
    """Copy every WFDB record found under a folder into a signal store.

    Works for LUDB (``.dat``), PhysioNet Challenge 2021 (``.mat``) and any other WFDB layout.
    Lead names are matched case-insensitively; records at another rate are resampled to ``fs``.

    Parameters
    ----------
    input_dir : str or Path
        Folder searched recursively for ``.hea`` files.
    out : str or Path
        Store folder; an interrupted store of the same settings is continued.
    fs : float
        Sampling rate of the store, Hz.
    leads : sequence of str
        Leads to keep, in order.
    progress : bool
        Show a progress bar.

    Returns
    -------
    PrepareReport
    """
    from ecgtransfer.data.store import StoreWriter

    input_dir = Path(input_dir)
    names = find_records(input_dir)
    if not names:
        raise FileNotFoundError(f"{input_dir}: no WFDB records (.hea files) found")
    writer = StoreWriter(out, source="wfdb", fs=fs, leads=leads,
                         info={"input": str(input_dir.resolve())})
    jobs = (RecordJob(name, input_dir / name, {}) for name in names)
    return ingest(writer, jobs, total=len(names), progress=progress, desc="prepare wfdb")
