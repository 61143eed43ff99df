"""Data layer: lead conventions, WFDB reading, PTB-XL, the signal store, manifests and fetching.

A signal is ``float32``, shape ``(n_leads, n_samples)``, in mV, at sampling rate ``fs``.
"""

import importlib

_EXPORTS = {"LEADS_8": "leads", "LEADS_12": "leads", "lead_set": "leads",
            "match_leads": "leads", "SignalStore": "store", "StoreError": "store",
            "StoreWriter": "store", "at_rate": "resampled"}
"""Names re-exported here, with their module: loaded on first use (PEP 562), so that importing
one data module (``ecgtransfer.data.ptbxl``) does not import the store's pandas and SciPy."""

__all__ = [
    "LEADS_8",
    "LEADS_12",
    "lead_set",
    "match_leads",
    "SignalStore",
    "StoreError",
    "StoreWriter",
    "at_rate",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ecgtransfer.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ecgtransfer.data' has no attribute {name!r}")
