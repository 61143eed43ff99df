"""Data layer: lead conventions, WFDB reading, PTB-XL, the signal store, manifests and fetching.

A signal is ``float32``, shape ``(n_leads, n_samples)``, in mV, at sampling rate ``fs``.
"""

from ecgtransfer.data.leads import LEADS_8, LEADS_12, lead_set, match_leads
from ecgtransfer.data.store import SignalStore, StoreError, StoreWriter

__all__ = [
    "LEADS_8",
    "LEADS_12",
    "lead_set",
    "match_leads",
    "SignalStore",
    "StoreError",
    "StoreWriter",
]
