"""LUDB: 12-lead records with cardiologists' per-lead wave annotations (files ``N.i`` ... ``N.v6``)."""

from __future__ import annotations

from pathlib import Path

from ecgtransfer.data.leads import LEADS_12
from ecgtransfer.data.wfdb_io import Annotation, RecordError, read_annotation

__all__ = ["LUDB_EXTENSIONS", "read_ludb_annotations"]

LUDB_EXTENSIONS: dict[str, str] = {lead: lead.lower() for lead in LEADS_12}
"""Canonical lead name to the extension of its annotation file."""
LUDB_SYMBOLS = frozenset("()pNt")
"""The marks LUDB uses: onset, P/QRS/T peak, offset. wfdb reads a damaged file without error, as
marks with other symbols (or none), so anything else means the file is not a LUDB annotation."""


def read_ludb_annotations(path: str | Path, *, record_id: str | None = None) -> dict[str, Annotation]:
    """Every lead's annotation of one LUDB record, keyed by canonical lead name.

    Parameters
    ----------
    path : str or Path
        Record path without extension (``.../data/17``).
    record_id : str, optional
        Name for error messages.

    Raises
    ------
    RecordError
        A lead's annotation file is missing or unreadable.
    """
    name = record_id or str(path)
    out = {}
    for lead, ext in LUDB_EXTENSIONS.items():
        ann = read_annotation(path, ext, record_id=name)
        odd = sorted({str(s) for s in ann.symbols} - LUDB_SYMBOLS)
        if not ann.symbols or odd:
            what = "no marks" if not ann.symbols else f"unexpected marks {' '.join(odd[:5])}"
            raise RecordError(name, f"damaged annotation file {Path(path).name}.{ext} ({what})")
        out[lead] = ann
    return out
