"""The PhysioNet/CinC Challenge 2021's own file formats: diagnoses in WFDB headers and one
output CSV per record.

A header names its diagnoses on a comment line ``#Dx: 164889003,59118001`` (the Challenge's
files; ``# Dx:``, as some copies were rewritten, is read too). An output file is::

    #E07500
    164889003,59118001,426783006, ...       the classes (a|b for an equivalent pair)
    0,1,0, ...                              the decisions (1, True, true, T, t are positive)
    0.12,0.81,0.33, ...                     the probabilities

read as the official evaluation reads it: comment and blank lines skipped, a file without the
three rows of equal length taken as all negative (and said so), a column whose class is not
scored ignored, and equivalent classes merged (decision: any; probability: the mean).
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["NORMAL_CLASS", "Scoring", "load_scoring", "ChallengeFiles", "header_diagnoses",
           "read_outputs", "write_outputs", "read_folders"]

log = logging.getLogger(__name__)

NORMAL_CLASS = "426783006"
"""Sinus rhythm: the class the metric's zero point always outputs."""


def _manifest(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("ecgtransfer.data_manifests") / name))


@dataclass(frozen=True)
class Scoring:
    """The scored classes and the reward matrix.

    Attributes
    ----------
    classes : list of str
        Each class's name: its first SNOMED-CT code.
    codes : list of frozenset of str
        The codes each class stands for (two for an equivalent pair).
    weights : numpy.ndarray
        ``(k, k)`` reward of outputting class ``j`` (column) for a record of class ``i`` (row).
    """

    classes: list[str]
    codes: list[frozenset]
    weights: np.ndarray
    names: list[str] = field(default_factory=list)
    """Short names (the Challenge's abbreviations: ``AF``, ``CLBBB`` for CLBBB|LBBB, ...), the
    store's column names; the codes themselves for another weights table."""

    def __post_init__(self) -> None:
        if not self.names:
            object.__setattr__(self, "names", list(self.classes))

    def index_of(self, code: str) -> int | None:
        """The class a code (or an ``a|b`` pair) belongs to, or None for an unscored code."""
        parts = {c.strip() for c in str(code).split("|") if c.strip()}
        for i, members in enumerate(self.codes):
            if parts and parts <= members:
                return i
        return None

    def encode(self, codes) -> np.ndarray:
        """A record's codes as a 0/1 row over the classes (unscored codes ignored)."""
        row = np.zeros(len(self.classes), dtype=bool)
        for code in codes:
            i = self.index_of(code)
            if i is not None:
                row[i] = True
        return row


def load_scoring(path: str | Path | None = None) -> Scoring:
    """The Challenge's ``weights.csv`` (default: the copy in ``data_manifests/``).

    Raises
    ------
    ValueError
        One line naming the file: not a square table with matching row and column names, or a
        value that is not a finite number.
    """
    path = Path(path) if path is not None else _manifest("cinc2021-weights.csv")
    try:
        with open(path, newline="") as f:
            rows = [[cell.strip() for cell in row] for row in csv.reader(f) if row]
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the weights table ({exc.strerror})") from None
    if len(rows) < 2:
        raise ValueError(f"{path}: empty weights table")
    header = rows[0][1:]
    names = [r[0] for r in rows[1:]]
    if names != header or any(len(r) != len(header) + 1 for r in rows[1:]):
        raise ValueError(f"{path}: not a square table whose rows and columns name the same "
                         "classes in the same order")
    try:
        weights = np.array([[float(v) for v in r[1:]] for r in rows[1:]], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: a weight is not a number") from None
    if not np.isfinite(weights).all():  # float() reads "nan" and "inf": the metric would be NaN
        i, j = np.argwhere(~np.isfinite(weights))[0]
        raise ValueError(f"{path}: the weight of row {names[i]}, column {header[j]} is "
                         f"{rows[i + 1][j + 1]!r}, not a finite number")
    codes = [frozenset(c.strip() for c in name.split("|")) for name in header]
    names: list[str] = []
    if path == _manifest("cinc2021-weights.csv"):
        with open(_manifest("cinc2021-weights_abbreviations.csv"), newline="") as f:
            names = [cell.split("|")[0].strip() for cell in next(csv.reader(f))[1:]]
    return Scoring([name.split("|")[0].strip() for name in header], codes, weights, names)




_DX = re.compile(r"^#\s*Dx\s*:(.*)$")
_POSITIVE = ("1", "True", "true", "T", "t")


def header_diagnoses(path: str | Path) -> list[str]:
    """The SNOMED-CT codes on a header's ``#Dx:`` (or ``# Dx:``) line.

    Raises
    ------
    ValueError
        One line naming the file: unreadable, or without a Dx line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    for line in text.splitlines():
        m = _DX.match(line.strip())
        if m:
            return [c.strip() for c in m.group(1).split(",") if c.strip()]
    raise ValueError(f"{path}: no '#Dx:' line (the diagnoses of a Challenge header)")


def read_outputs(path: str | Path, scoring) -> tuple[np.ndarray, np.ndarray, str]:
    """One record's decisions and probabilities over ``scoring.classes``, and a problem ("" when
    none): a file the official evaluation would find malformed is all negative, as there."""
    path = Path(path)
    k = len(scoring.classes)
    binary, scores = np.zeros(k, dtype=bool), np.zeros(k, dtype=np.float64)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return binary, scores, f"{path}: cannot read ({exc.strerror}); taken as all negative"
    lines = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) < 3 or len({len(line.split(",")) for line in lines}) != 1:
        return binary, scores, (f"{path}: not three rows of classes, decisions and probabilities "
                                "of equal length; taken as all negative (as the official "
                                "evaluation does)")
    codes, decisions, values = ([cell.strip() for cell in line.split(",")] for line in lines[:3])
    columns: dict[int, list[int]] = {}
    for c, code in enumerate(codes):
        i = scoring.index_of(code)
        if i is not None:
            columns.setdefault(i, []).append(c)
    for i, cs in columns.items():
        binary[i] = any(decisions[c] in _POSITIVE for c in cs)
        found = [float(values[c]) for c in cs if _is_number(values[c])]
        found = [v for v in found if np.isfinite(v)]
        scores[i] = float(np.mean(found)) if found else 0.0
    return binary, scores, ""


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def write_outputs(path: str | Path, record_id: str, classes: Sequence[str],
                  decisions: np.ndarray, probabilities: np.ndarray) -> None:
    """One record's output file in the Challenge's format (written whole or not at all)."""
    from ecgtransfer.files import atomic_file

    with atomic_file(Path(path)) as f:
        f.write(f"#{record_id}\n")
        f.write(",".join(classes) + "\n")
        f.write(",".join("1" if d else "0" for d in decisions) + "\n")
        f.write(",".join(f"{float(p):.6g}" for p in probabilities) + "\n")


@dataclass
class ChallengeFiles:
    """Labels and outputs of a labels folder and an outputs folder, record by record."""

    records: list[str]
    labels: np.ndarray
    outputs: np.ndarray
    scores: np.ndarray
    problems: list[str] = field(default_factory=list)


def read_folders(labels_dir: str | Path, outputs_dir: str | Path, scoring,
                 subset: bool = False) -> ChallengeFiles:
    """Every header (``*.hea``, not hidden) of ``labels_dir`` with its ``<record>.csv`` in
    ``outputs_dir``, as the official evaluation pairs them; with ``subset``, only the headers
    that have an output file (a fine-tune's test split scored against the whole folder).

    Raises
    ------
    ValueError
        One line: a folder that does not exist or holds no header, a header without its output
        file, or a header without diagnoses.
    """
    labels_dir, outputs_dir = Path(labels_dir), Path(outputs_dir)
    for folder in (labels_dir, outputs_dir):
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such folder")
    headers = sorted(p for p in labels_dir.iterdir()
                     if p.is_file() and p.suffix.lower() == ".hea" and not p.name.startswith("."))
    if subset:
        headers = [h for h in headers if (outputs_dir / f"{h.stem}.csv").is_file()]
    if not headers:
        raise ValueError(f"{labels_dir}: no header files (*.hea) to score"
                         + (f" with an output file in {outputs_dir}" if subset else ""))
    k = len(scoring.classes)
    labels = np.zeros((len(headers), k), dtype=bool)
    outputs = np.zeros((len(headers), k), dtype=bool)
    scores = np.zeros((len(headers), k), dtype=np.float64)
    problems = []
    for n, header in enumerate(headers):
        out = outputs_dir / f"{header.stem}.csv"
        if not out.is_file():
            raise ValueError(f"{out}: no output file for the label file {header}")
        labels[n] = scoring.encode(header_diagnoses(header))
        outputs[n], scores[n], problem = read_outputs(out, scoring)
        if problem:
            problems.append(problem)
    return ChallengeFiles([h.stem for h in headers], labels, outputs, scores, problems)


# ---- the Challenge's records as a signal store ----------------------------------------------
DATABASES = {"A": "CPSC", "Q": "CPSC_Extra", "I": "StPetersburg", "S": "PTB", "HR": "PTB_XL",
             "E": "Georgia"}
"""Source database by record-name prefix (the column names of ``dx_mapping_scored.csv``);
``JS`` records are Chapman_Shaoxing up to JS10646 and Ningbo after, unless their folder says
(``chapman_shaoxing/``, ``ningbo/``, as the Challenge's download is laid out)."""

_FOLDERS = {"chapman_shaoxing": "Chapman_Shaoxing", "wfdb_chapmanshaoxing": "Chapman_Shaoxing",
            "ningbo": "Ningbo", "wfdb_ningbo": "Ningbo"}


def source_database(name: str) -> str:
    """The source database of a record from its relative path (``ningbo/g1/JS10647``) or name
    (``E07500``); "" when the prefix is not one of the Challenge's."""
    path = Path(name)
    for part in path.parts[:-1]:
        if part.lower() in _FOLDERS:
            return _FOLDERS[part.lower()]
    m = re.match(r"([A-Za-z]+)(\d+)$", path.name)
    if not m:
        return ""
    prefix, number = m.group(1).upper(), int(m.group(2))
    if prefix == "JS":
        return "Chapman_Shaoxing" if number <= 10646 else "Ningbo"
    return DATABASES.get(prefix, "")


def known_codes() -> set[str]:
    """Every SNOMED-CT code of the Challenge's scored and unscored tables."""
    codes: set[str] = set()
    for name in ("cinc2021-dx_mapping_scored.csv", "cinc2021-dx_mapping_unscored.csv"):
        with open(_manifest(name), newline="") as f:
            codes |= {row["SNOMEDCTCode"].strip() for row in csv.DictReader(f)}
    return codes


def _header_fields(path: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^#\s*(Age|Sex)\s*:\s*(.*)$", line.strip())
        if m:
            fields[m.group(1).lower()] = m.group(2).strip()
    return fields


def record_columns(path: Path, scoring: Scoring, codes_known: set[str]) -> dict[str, object]:
    """A Challenge record's index columns from its header: ``age`` (NaN when unknown), ``sex``,
    ``database``, ``dx`` (its codes), ``n_scored`` and one 0/1 column per scored class.

    Raises
    ------
    ValueError
        The reason, for the rejects table: no Dx line, or a code in neither of the Challenge's
        tables.
    """
    header = path.with_suffix(".hea")
    codes = header_diagnoses(header)
    unknown = [c for c in codes if c not in codes_known]
    if unknown:
        raise ValueError(f"unknown SNOMED-CT code(s) {', '.join(unknown)} (in neither of the "
                         "Challenge's scored and unscored tables)")
    fields = _header_fields(header)
    try:
        age = float(fields.get("age", "nan"))
    except ValueError:
        age = float("nan")
    row = scoring.encode(codes)
    sex = fields.get("sex", "")
    return {"age": age, "sex": sex if sex in ("Male", "Female") else "",
            "dx": ",".join(codes), "n_scored": int(row.sum()),
            **{name: int(v) for name, v in zip(scoring.names, row)}}


def prepare_challenge2021(input_dir: str | Path, out: str | Path, *, fs: float = 500,
                          leads: Sequence[str] | None = None, progress: bool = True):
    """Copy every Challenge 2021 record under ``input_dir`` (one or several source databases,
    ``.hea`` + ``.mat``) into a signal store with its diagnoses.

    The index holds, beside the signal columns: ``age``, ``sex``, ``database`` (see
    :func:`source_database`), ``dx`` (the record's SNOMED-CT codes) and the 26 scored classes
    as 0/1 columns named by the Challenge's abbreviations (equivalent codes merged: ``CLBBB``
    is CLBBB or LBBB, ``CRBBB`` CRBBB or RBBB, ``PAC`` PAC or SVPB, ``PVC`` PVC or VPB). A
    record whose header cannot be read, lacks its Dx line or names a code in neither Challenge
    table is rejected with its reason, as is a signal that cannot be read, and so is a record
    whose name another folder's record has already (the first in path order is kept; the
    reject is named by its path: ``g2/E07500``, ``duplicate of g1/E07500``). Every reject is
    logged as one line and listed in ``rejects.csv``.

    Parameters
    ----------
    input_dir : str or Path
        Folder searched recursively for ``.hea`` files.
    out : str or Path
        Store folder; an interrupted store of the same settings is continued.
    fs : float
        The store's rate; records at another rate are resampled.
    leads : sequence of str, optional
        Leads to keep, in order (default: I, II, V1-V6).

    Returns
    -------
    PrepareReport
    """
    from ecgtransfer.data.ingest import RecordJob, ingest
    from ecgtransfer.data.leads import LEADS_8
    from ecgtransfer.data.store import StoreWriter
    from ecgtransfer.data.wfdb_io import find_records

    input_dir = Path(input_dir)
    names = find_records(input_dir)
    if not names:
        raise FileNotFoundError(f"{input_dir}: no Challenge records (.hea files) found")
    scoring = load_scoring()
    codes_known = known_codes()
    writer = StoreWriter(out, source="challenge2021", fs=fs, leads=list(leads or LEADS_8),
                         identity={"dataset": "challenge2021"},
                         info={"input": str(input_dir.resolve()), "classes": scoring.names,
                               "class_codes": [sorted(c) for c in scoring.codes]})
    early: list[tuple[str, str]] = []
    first: dict[str, str] = {}  # record name -> the path it was first found at

    def jobs():
        """Each record's job, its header read as the copy reaches it: a list of 88,253 jobs
        with their columns took 100 MB. A record refused on its header or name is rejected
        here, as ingest rejects the others."""
        for name in names:
            record_id = Path(name).name
            if record_id in first:  # the store's ids are names: one record per name
                reason = f"duplicate of {first[record_id]} (a record name is stored once)"
                record_id = name
            else:
                first[record_id] = name
                try:
                    columns = record_columns(input_dir / name, scoring, codes_known)
                except ValueError as exc:
                    reason = str(exc).removeprefix(f"{input_dir / name}.hea: ")
                else:
                    yield RecordJob(record_id, input_dir / name,
                                    {"database": source_database(name), **columns})
                    continue
            if record_id not in writer.done:
                log.warning("rejected %s: %s", record_id, reason)
                writer.reject(record_id, reason)
                early.append((record_id, reason))

    report = ingest(writer, jobs(), total=len(names), progress=progress,
                    desc="prepare challenge2021")
    report.rejects[:0] = early
    return report
