"""The one vocabulary of interval names and units, used by the labeller, the LUDB reference, the
realism report, pretraining targets and every table and plot that shows them, and the range
within which each is plausible at all.

A target is named by its short name (``qrs``); its column in a label table carries the unit
(``qrs_ms``), as does the status column beside it (``qrs_status``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["UNITS", "INTERVALS", "PLAUSIBLE", "column", "status_column", "display_name",
           "plausible", "plausible_range", "implausible_reason"]

UNITS: dict[str, str] = {"hr": "bpm", "pr": "ms", "qrs": "ms", "qt": "ms"}
"""Each interval target and its unit, in the order tables list them."""

INTERVALS: tuple[str, ...] = tuple(f"{name}_{unit}" for name, unit in UNITS.items())
"""The label-table column of each target: ``hr_bpm, pr_ms, qrs_ms, qt_ms``."""

PLAUSIBLE: dict[str, tuple[float, float]] = {"hr": (20.0, 300.0), "pr": (40.0, 600.0),
                                             "qrs": (20.0, 300.0), "qt": (150.0, 900.0)}
"""Each interval's plausible range, inclusive, in its unit: wide physiological limits, not
normal ranges. HR 20-300 bpm spans a ventricular escape rhythm to 1:1 atrial flutter; PR
40-600 ms a pre-excited to a markedly prolonged first-degree AV block; QRS 20-300 ms the
``neurokit`` method's short readings (it reads QRS about 30 ms short: 22 ms on a PTB-XL record)
to a paced or hyperkalaemic QRS; QT 150-900 ms below any short QT to above a drug-induced long
QT in complete heart block (QTDB's sel33 reads 729 ms at 35 bpm). A value outside is a labeller
failure, a wrong unit or a damaged file, never a measurement: the labeller writes NaN with a
reason instead, and a label file's reader leaves such values out
(see :func:`ecgtransfer.features.labels.read_labels`)."""


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


def plausible_range(name_or_column: str) -> tuple[float, float]:
    """``qrs`` or ``qrs_ms`` -> ``(20.0, 300.0)``: the interval's :data:`PLAUSIBLE` range."""
    return PLAUSIBLE[name_or_column.split("_")[0]]


def plausible(name_or_column: str, value):
    """Whether ``value`` (a number or an array of them) is finite and within the interval's
    :data:`PLAUSIBLE` range; NaN, a missing value, is not plausible either, so check for it
    first where it is allowed. Returns a bool, or a bool array for an array."""
    low, high = plausible_range(name_or_column)
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(value) & (value >= low) & (value <= high)
    return bool(inside) if inside.ndim == 0 else inside


def implausible_reason(name_or_column: str, value: float) -> str:
    """The status of a value outside its range: ``implausible value 1e+09 ms (plausible:
    20-300 ms)``."""
    name = name_or_column.split("_")[0]
    low, high = PLAUSIBLE[name]
    unit = UNITS[name]
    return f"implausible value {value:g} {unit} (plausible: {low:g}-{high:g} {unit})"
