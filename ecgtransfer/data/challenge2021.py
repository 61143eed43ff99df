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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["ChallengeFiles", "header_diagnoses", "read_outputs", "write_outputs",
           "read_folders"]

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


def read_folders(labels_dir: str | Path, outputs_dir: str | Path, scoring) -> ChallengeFiles:
    """Every header (``*.hea``, not hidden) of ``labels_dir`` with its ``<record>.csv`` in
    ``outputs_dir``, as the official evaluation pairs them.

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
    if not headers:
        raise ValueError(f"{labels_dir}: no header files (*.hea) to score")
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
