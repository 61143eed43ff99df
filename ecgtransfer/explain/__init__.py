"""Explanations of trained models: attributions by Captum's methods, where they fall on the
waves of the beat, and how faithful they are (``ecgtransfer explain``)."""

import importlib

_EXPORTS = {"METHODS": "attribution", "ecg_attribute": "attribution",
            "feature_maps": "attribution", "Curves": "faithfulness", "area": "faithfulness",
            "deletion_insertion": "faithfulness", "randomized_model": "faithfulness",
            "rank_correlation": "faithfulness", "DEFINING_WAVES": "waves", "OTHER": "waves",
            "WAVES": "waves", "wave_labels": "waves", "wave_segments": "waves"}
"""Names re-exported here, with their module: loaded on first use (PEP 562), so that the
``explain`` command's flags are built without importing torch."""

__all__ = ["METHODS", "ecg_attribute", "feature_maps", "Curves", "area", "deletion_insertion",
           "randomized_model", "rank_correlation", "DEFINING_WAVES", "OTHER", "WAVES",
           "wave_labels", "wave_segments"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ecgtransfer.explain.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ecgtransfer.explain' has no attribute {name!r}")
