"""Keep the C heap from growing with the records a process goes through.

glibc's ``malloc`` moves its mmap threshold up to the size of every large block that is freed
(dynamic threshold, up to 32 MB). After the first training batch is freed, each batch (256
records at 100 Hz: 8 MB) comes from the heap instead of its own mapping. Small allocations land
between the batches, the freed space cannot be given back, and the process grows by about one
batch per step.

Measured by ``benchmarks/bench_scale.py``:
- one epoch of ``pretrain`` on 150,000 records peaked at 2,258 MB of anonymous memory, against
  692 MB at 15,000;
- ``prepare`` of the Challenge stand-in grew the same way from its large records.

Fixing the threshold at 1 MB (``mallopt(M_MMAP_THRESHOLD)``, which also switches the dynamic
adjustment off) keeps every block of 1 MB or more in a mapping of its own, returned to the
system when it is freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["MMAP_THRESHOLD", "keep_heap_flat"]

MMAP_THRESHOLD = 1 << 20
"""Blocks of this many bytes or more get a mapping of their own (glibc's default starts at 128
KiB and rises as described above)."""
_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
_done = False


def keep_heap_flat() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` for this process (and the workers
    it forks). Returns whether it is set: False off Linux or without glibc (musl, macOS), whose
    allocators do not have this behaviour. Calling it again does nothing."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return _done
