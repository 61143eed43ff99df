"""Features measured on ECGs: interval labels, every beat's fiducial points, and the
cardiologists' reference they are held to."""

import importlib

_EXPORTS = {"INTERVALS": "vocabulary", "UNITS": "vocabulary", "LABEL_COLUMNS": "intervals",
            "WAVE_COLUMNS": "intervals", "LabellerConfig": "intervals",
            "ecg_intervals": "intervals", "ecg_waves": "intervals", "agreement": "reference",
            "annotated_beats": "reference", "annotated_waves": "reference",
            "ludb_beats": "reference", "ludb_reference": "reference",
            "reference_intervals": "reference"}
"""Names re-exported here, with their module: loaded on first use (PEP 562), so that the
``label`` command's flags are built without importing SciPy and pandas."""

__all__ = ["INTERVALS", "LABEL_COLUMNS", "WAVE_COLUMNS", "LabellerConfig", "agreement",
           "annotated_beats", "annotated_waves", "ecg_intervals", "ecg_waves", "ludb_beats",
           "ludb_reference", "reference_intervals", "UNITS"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ecgtransfer.features.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ecgtransfer.features' has no attribute {name!r}")
