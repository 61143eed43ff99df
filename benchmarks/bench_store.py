"""Signal store benchmark: ``prepare`` throughput, read throughput against per-record WFDB reads,
and peak memory of ``prepare`` at the size of the full PTB-XL.

Run from the repository root::

    python benchmarks/bench_store.py [--root ../shared/data/ptbxl-sample] [--full-size]

Baseline for reads: ``wfdb.rdrecord`` of one record, the 8 leads picked, transposed to float32
(what research code does in ``Dataset.__getitem__``). Ours: ``SignalStore[i]``. Both read the same
350 records in the same shuffled order in one process, after one warm-up pass each, so both
read from the page cache. ``--full-size`` prepares a 21,837-record PTB-XL folder built from the
sample (every row of ``ptbxl_database.csv`` repeated with new ids, record folders linked), in a
child process, and reports its peak RSS next to that of a 350-record run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parents[1] / "shared" / "data" / "ptbxl-sample"
FULL_PTBXL = 21837


def _wfdb_read(paths, order):
    import wfdb

    from ecgtransfer.data.leads import LEADS_8

    out = None
    for i in order:
        rec = wfdb.rdrecord(str(paths[i]))
        cols = [rec.sig_name.index(n) for n in LEADS_8]
        out = rec.p_signal[:, cols].T.astype(np.float32)
    return out


def _store_read(store, order):
    out = None
    for i in order:
        out = store[i]
    return out


def _rate(fn, n, repeats):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def bench_reads(root: Path, work: Path, repeats: int) -> dict:
    from ecgtransfer.data.ptbxl import prepare_ptbxl

    t = time.perf_counter()
    report = prepare_ptbxl(root, work / "store", progress=False)
    prepare_s = time.perf_counter() - t
    store = report.store
    paths = [root / f for f in _filenames(root, store)]
    order = np.random.default_rng(0).permutation(len(store))
    _wfdb_read(paths, order)
    _store_read(store, order)
    wfdb_rate = _rate(lambda: _wfdb_read(paths, order), len(order), repeats)
    store_rate = _rate(lambda: _store_read(store, order), len(order), repeats)
    return {"records": len(store), "prepare_s": prepare_s,
            "prepare_rec_per_s": len(store) / prepare_s,
            "wfdb_rec_per_s": wfdb_rate, "store_rec_per_s": store_rate,
            "read_ratio": store_rate / wfdb_rate}


def _filenames(root: Path, store):
    import pandas as pd

    db = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    return [db.loc[int(e), "filename_hr"] for e in store.index["ecg_id"]]


def make_full_size_root(sample: Path, dest: Path, n_records: int = FULL_PTBXL) -> Path:
    """A PTB-XL folder of ``n_records`` rows whose records are the sample's, linked."""
    import pandas as pd

    db = pd.read_csv(sample / "ptbxl_database.csv")
    copies = -(-n_records // len(db))
    parts = []
    for k in range(copies):
        part = db.copy()
        part["ecg_id"] = db["ecg_id"] + k * 100000
        part["patient_id"] = db["patient_id"] + k * 100000
        part["filename_hr"] = db["filename_hr"].str.replace("records500/00000",
                                                            f"records500/c{k:03d}")
        parts.append(part)
        (dest / "records500").mkdir(parents=True, exist_ok=True)
        os.symlink(sample / "records500" / "00000", dest / "records500" / f"c{k:03d}")
    pd.concat(parts).head(n_records).to_csv(dest / "ptbxl_database.csv", index=False)
    os.symlink(sample / "scp_statements.csv", dest / "scp_statements.csv")
    return dest


def _child_prepare(root: str, out: str) -> None:
    from ecgtransfer.data.ptbxl import prepare_ptbxl

    t = time.perf_counter()
    report = prepare_ptbxl(root, out, progress=False)
    elapsed = time.perf_counter() - t
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"records": len(report.store), "seconds": elapsed,
                      "peak_rss_mb": peak_kib / 1024}))


def bench_memory(root: Path, work: Path, n_records: int) -> dict:
    big = make_full_size_root(root, work / f"ptbxl{n_records}", n_records)
    res = subprocess.run([sys.executable, __file__, "--_child", str(big), str(work / f"s{n_records}")],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="PTB-XL (sample) folder")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes; the best is kept")
    ap.add_argument("--full-size", action="store_true",
                    help=f"also prepare {FULL_PTBXL} records and report peak memory")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        _child_prepare(*args._child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        r = bench_reads(args.root, work, args.repeats)
        print(f"prepare ptbxl: {r['records']} records in {r['prepare_s']:.2f} s = "
              f"{r['prepare_rec_per_s']:.0f} records/s (1 process)")
        print("| reader | records/s | ratio |")
        print("|---|---|---|")
        print(f"| wfdb.rdrecord per record (baseline) | {r['wfdb_rec_per_s']:.0f} | 1.0 |")
        print(f"| SignalStore[i] | {r['store_rec_per_s']:.0f} | {r['read_ratio']:.0f}x |")
        if args.full_size:
            print("| prepare ptbxl run | records | seconds | records/s | peak RSS (MB) |")
            print("|---|---|---|---|---|")
            for n in (350, FULL_PTBXL):
                m = bench_memory(args.root, work, n)
                print(f"| {n} records | {m['records']} | {m['seconds']:.1f} | "
                      f"{m['records'] / m['seconds']:.0f} | {m['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
