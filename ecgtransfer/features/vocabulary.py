"""The one vocabulary of interval names and units, used by the labeller, the LUDB reference, the
realism report, pretraining targets and every table and plot that shows them.

A target is named by its short name (``qrs``); its column in a label table carries the unit
(``qrs_ms``), as does the status column beside it (``qrs_status``).
"""

from __future__ import annotations

__all__ = ["UNITS", "INTERVALS", "column", "status_column", "display_name"]

UNITS: dict[str, str] = {"hr": "bpm", "pr": "ms", "qrs": "ms", "qt": "ms"}
"""Each interval target and its unit, in the order tables list them."""

INTERVALS: tuple[str, ...] = tuple(f"{name}_{unit}" for name, unit in UNITS.items())
"""The label-table column of each target: ``hr_bpm, pr_ms, qrs_ms, qt_ms``."""


def column(name: str) -> str:
    """``qrs`` -> ``qrs_ms``; a name outside :data:`UNITS` is a ``ValueError`` naming it."""
    try:
        return f"{name}_{UNITS[name]}"
    except KeyError:
        raise ValueError(f"unknown interval {name!r}; choose from {', '.join(UNITS)}") from None


def status_column(name_or_column: str) -> str:
    """``qrs`` or ``qrs_ms`` -> ``qrs_status``."""
    return name_or_column.split("_")[0] + "_status"


def display_name(name_or_column: str) -> str:
    """``qrs`` or ``qrs_ms`` -> ``QRS (ms)``, for axes and tables."""
    name = name_or_column.split("_")[0]
    return f"{name.upper()} ({UNITS[name]})"
