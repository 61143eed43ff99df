"""Reading WFDB records: the only module that imports ``wfdb``.

wfdb returns ``(n_samples, n_channels)``; this module transposes once so that everything
above it sees ``(n_leads, n_samples)`` float32 mV. It also checks what wfdb does not: wfdb
reads a header whose signal count disagrees with the data file without complaint (the leads
come out interleaved with each other), and assumes 250 Hz when a header states no sampling
rate. Both are caught here from the header text and the data file's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgtransfer.data.leads import MissingLeadsError, match_leads
from ecgtransfer.errors import UserError

__all__ = ["Annotation", "RecordError", "RecordReader", "Recording", "find_records", "read_annotation", "read_record",
           "record_fs"]

# Bytes per sample of the uncompressed WFDB formats (WFDB "signal" specification).
_BYTES_PER_SAMPLE = {
    "8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0,
    "212": 1.5, "310": 4.0 / 3.0, "311": 4.0 / 3.0,
}


class RecordError(UserError):
    """A record that cannot be used, with the record's name and the reason.

    ``str(error)`` is one line: ``"<record>: <reason>"``.
    """

    def __init__(self, record: str, reason: str):
        self.record = str(record)
        self.reason = str(reason).splitlines()[0] if str(reason) else "unknown error"
        super().__init__(f"{self.record}: {self.reason}")


@dataclass
class Recording:
    """A record read from disk.

    Attributes
    ----------
    record_id : str
        Name of the record (path relative to the folder it was found in, no extension).
    signal : numpy.ndarray
        ``float32`` mV, shape ``(n_leads, n_samples)``.
    fs : float
        Sampling rate stated by the header, Hz.
    leads : tuple of str
        Lead names, in the order of ``signal``'s rows (the names asked for, when given).
    """

    record_id: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]


def find_records(folder: str | Path) -> list[str]:
    """List the WFDB records in a folder and its subfolders.

    Parameters
    ----------
    folder : str or Path
        Folder to search for ``.hea`` files.

    Returns
    -------
    list of str
        Record names relative to ``folder``, without extension, sorted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.hea"))


def _record_line(header_path: Path) -> list[str]:
    with open(header_path, encoding="latin-1") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                return line.split()
    return []


def _check_header(record_id: str, header_path: Path) -> None:
    try:
        tokens = _record_line(header_path)
    except OSError as exc:
        raise RecordError(record_id, f"cannot read {header_path.name} ({exc.strerror or exc})"
                          ) from None
    if len(tokens) < 2:
        raise RecordError(record_id, "header has no record line")
    if len(tokens) < 3:
        raise RecordError(record_id, "header states no sampling rate")
    fs_token = tokens[2].split("/")[0].split("(")[0]
    try:
        fs = float(fs_token)
    except ValueError:
        raise RecordError(record_id, f"header sampling rate {tokens[2]!r} is not a number") from None
    if not np.isfinite(fs) or fs <= 0:
        raise RecordError(record_id, f"header sampling rate {tokens[2]!r} is not positive")


def _check_data_size(record_id: str, folder: Path, header) -> None:
    """Compare each data file's size with what the header implies."""
    if not header.sig_len:
        raise RecordError(record_id, "header states no signal length")
    by_file: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name):
        by_file.setdefault(name, []).append(i)
    for name, channels in by_file.items():
        fmt = str(header.fmt[channels[0]])
        if fmt not in _BYTES_PER_SAMPLE:
            continue  # compressed (FLAC) formats have no fixed size
        path = folder / name
        if not path.exists():
            raise RecordError(record_id, f"data file {name} is missing")
        frame = sum((header.samps_per_frame[c] or 1) for c in channels)
        offset = header.byte_offset[channels[0]] or 0
        expected = offset + int(np.ceil(header.sig_len * frame * _BYTES_PER_SAMPLE[fmt]))
        actual = path.stat().st_size
        if actual != expected:
            kind = "truncated" if actual < expected else "longer than the header implies"
            raise RecordError(
                record_id,
                f"data file {name} has {actual} bytes but the header's {len(channels)} signals x "
                f"{header.sig_len} samples imply {expected} ({kind}; wrong signal count?)",
            )


# Physical units a lead may be stated in, and the factor to mV (wfdb's default when a header
# states none is mV, as the WFDB specification's).
_TO_MV = {"mv": 1.0, "uv": 1e-3, "\u00b5v": 1e-3, "\u03bcv": 1e-3, "v": 1e3}


class RecordReader:
    """One WFDB record opened for reading in pieces, float64 mV.

    The header is read and checked once (record line, data file sizes, the leads asked for,
    every lead's unit a voltage); :meth:`read` then reads any stretch of samples, so a 24-hour
    Holter record is labelled window by window with memory flat in its length.

    Parameters
    ----------
    path : str or Path
        Record path without extension; ``.hea`` is read beside it.
    leads : sequence of str, optional
        Leads to read, in this order, matched case-insensitively. All leads if None.
    record_id : str, optional
        Name used in errors; defaults to the file stem.

    Attributes
    ----------
    fs : float
        The header's sampling rate, Hz.
    n_samples : int
        Samples per lead, as the header states (and the data file's size confirms).
    leads : tuple of str
        The leads read, as named (the names asked for, or the header's).

    Raises
    ------
    RecordError
        Missing or malformed header, a data file whose size disagrees with the header, missing
        leads, or a unit that is not a voltage. The message names the record and the reason.
    """

    def __init__(self, path: str | Path, leads: Sequence[str] | None = None,
                 record_id: str | None = None):
        import wfdb

        self.path = Path(path)
        self.record_id = record_id or self.path.name
        header_path = self.path.with_name(self.path.name + ".hea")
        if not header_path.exists():
            raise RecordError(self.record_id, f"header file {header_path.name} is missing")
        _check_header(self.record_id, header_path)
        try:
            header = wfdb.rdheader(str(self.path))
        except Exception as exc:  # wfdb raises bare ValueError/IndexError on malformed headers
            raise RecordError(self.record_id, f"unreadable header ({exc})") from None
        if not header.n_sig:
            raise RecordError(self.record_id, "header lists no signals")
        _check_data_size(self.record_id, self.path.parent, header)
        names = [str(n) for n in (header.sig_name or [])]
        try:
            self.channels = (match_leads(names, leads) if leads is not None
                             else list(range(len(names))))
        except MissingLeadsError as exc:
            raise RecordError(self.record_id, str(exc)) from None
        self.leads: tuple[str, ...] = tuple(leads) if leads is not None else tuple(names)
        units = list(header.units or [])
        scale = []
        for k, c in enumerate(self.channels):
            unit = str(units[c] if c < len(units) and units[c] else "mV").strip()
            factor = _TO_MV.get(unit.lower())
            if factor is None:
                raise RecordError(self.record_id, f"lead {self.leads[k]}: unit {unit!r} is not "
                                                  "a voltage (mV, uV or V)")
            scale.append(factor)
        self._scale = np.asarray(scale, dtype=np.float64)[:, None]
        self.fs = float(header.fs)
        self.n_samples = int(header.sig_len)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``start:stop`` of the leads, ``(n_leads, stop - start)`` float64 mV (NaN
        where the data holds the format's invalid value).

        Raises
        ------
        RecordError
            A range outside the record, or data wfdb cannot read, naming the record.
        """
        import wfdb

        stop = self.n_samples if stop is None else int(stop)
        start = int(start)
        if not 0 <= start < stop <= self.n_samples:
            raise RecordError(self.record_id, f"samples {start}:{stop} are outside the record's "
                                              f"{self.n_samples}")
        try:
            rec = wfdb.rdrecord(str(self.path), sampfrom=start, sampto=stop,
                                channels=self.channels, physical=True, return_res=64)
        except Exception as exc:
            raise RecordError(self.record_id, f"cannot read signal data ({exc})") from None
        return np.asarray(rec.p_signal, dtype=np.float64).T * self._scale


def read_record(
    path: str | Path,
    leads: Sequence[str] | None = None,
    record_id: str | None = None,
) -> Recording:
    """Read one WFDB record as float32 mV, ``(n_leads, n_samples)``.

    Parameters
    ----------
    path : str or Path
        Record path without extension (``.../00001_hr``); ``.hea`` is read beside it.
    leads : sequence of str, optional
        Leads to return, in this order, matched case-insensitively. All leads if None.
    record_id : str, optional
        Name used in errors and in the result; defaults to the file stem.

    Returns
    -------
    Recording

    Raises
    ------
    RecordError
        Missing or malformed header, a data file whose size disagrees with the header,
        missing leads, a unit that is not a voltage, or NaN samples. The message names the
        record and the reason.
    """
    reader = RecordReader(path, leads, record_id)
    signal = reader.read()
    nan_rows = np.isnan(signal).any(axis=1)
    if nan_rows.any():
        bad = [reader.leads[i] for i in np.flatnonzero(nan_rows)]
        n_bad = int(np.isnan(signal).sum())
        raise RecordError(reader.record_id, f"{n_bad} NaN sample(s) in lead(s) {', '.join(bad)}")
    return Recording(
        record_id=reader.record_id,
        signal=signal.astype(np.float32),
        fs=reader.fs,
        leads=reader.leads,
    )


def record_fs(path: str | Path, *, record_id: str | None = None) -> float:
    """The sampling rate a record's header states, Hz.

    Raises
    ------
    RecordError
        Missing or unreadable header, naming the record.
    """
    import wfdb

    path = Path(path)
    record_id = record_id or path.name
    if not path.with_name(path.name + ".hea").exists():
        raise RecordError(record_id, f"header file {path.name}.hea is missing")
    try:
        return float(wfdb.rdheader(str(path)).fs)
    except Exception as exc:  # wfdb raises bare ValueError/IndexError on malformed headers
        raise RecordError(record_id, f"unreadable header ({exc})") from None


@dataclass(frozen=True)
class Annotation:
    """One WFDB annotation file: marks at sample positions.

    Attributes
    ----------
    samples : numpy.ndarray
        int64 sample positions, ascending.
    symbols : tuple of str
        One symbol per mark (LUDB: ``(`` onset, ``p``/``N``/``t`` peak, ``)`` offset).
    fs : float
        Sampling rate the positions refer to.
    """

    samples: np.ndarray
    symbols: tuple[str, ...]
    fs: float


def read_annotation(path: str | Path, extension: str, *, record_id: str | None = None) -> Annotation:
    """Read the annotation file ``<path>.<extension>`` (e.g. a LUDB record's ``ii`` file).

    Parameters
    ----------
    path : str or Path
        Record path without extension.
    extension : str
        Annotator extension.
    record_id : str, optional
        Name for error messages (default: the path).

    Raises
    ------
    RecordError
        Missing or unreadable file, naming the record and the file.
    """
    import wfdb

    path = Path(path)
    name = record_id or str(path)
    file = path.with_name(f"{path.name}.{extension}")
    if not file.exists():
        raise RecordError(name, f"no annotation file {file.name}")
    try:
        ann = wfdb.rdann(str(path), extension)
    except Exception as exc:  # wfdb raises many types on a damaged file
        raise RecordError(name, f"unreadable annotation file {file.name} ({exc})") from None
    samples = np.asarray(ann.sample, dtype=np.int64)
    order = np.argsort(samples, kind="stable")
    fs = float(ann.fs) if ann.fs else float("nan")
    return Annotation(samples[order], tuple(ann.symbol[i] for i in order), fs)
