"""Signal store benchmark: ``prepare`` throughput, read throughput against per-record WFDB reads,
peak memory of ``prepare`` at the size of the full PTB-XL, and the writer's cost per record at
the study's 150,000 records.

Run from the repository root::

    python benchmarks/bench_store.py [--root ../shared/data/ptbxl-sample] [--full-size]
    python benchmarks/bench_store.py --writes [--n 150000]

Baseline for reads: ``wfdb.rdrecord`` of one record, the 8 leads picked, transposed to float32
(what research code does in ``Dataset.__getitem__``). Ours: ``SignalStore[i]``. Both read the same
350 records in the same shuffled order in one process, after one warm-up pass each, so both
read from the page cache. ``--full-size`` prepares a 21,837-record PTB-XL folder built from the
sample (every row of ``ptbxl_database.csv`` repeated with new ids, record folders linked), in a
child process, and reports its peak RSS next to that of a 350-record run.

``--writes`` times the two loops that look up every record in the writer's ``done`` ids:
``prepare`` (:func:`~ecgtransfer.data.ingest.ingest`) and ``merge``
(:func:`~ecgtransfer.data.store.merge_stores`, of two stores holding the even and the odd
records), at ``--n`` records. It is a benchmark of the writer, not of WFDB parsing: the records
are tiny (8 leads x 10 samples) and made in memory (``read_record`` is replaced in the child),
so what is timed is the loop, the buffering, the fsync'd appends and the index. Baseline: the
writer as it was, whose ``done`` returned a fresh ``frozenset`` copy of the ids on every call
(``CopyingWriter`` below), which made both loops quadratic. Each (stage, writer) pair runs in its
own child process, which reports its time (imports excluded) and its peak RSS.
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
STUDY_N = 150000
TINY = 10  # samples per lead of a --writes record


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


# ---- --writes: the writer's cost per record ------------------------------------------------
def _copying_writer():
    """The baseline writer: ``done`` as before, a fresh frozenset copy of the ids per call."""
    from ecgtransfer.data.store import StoreWriter

    class CopyingWriter(StoreWriter):
        @property
        def done(self):
            return frozenset(self._done)

    return CopyingWriter


def _tiny(i: int) -> np.ndarray:
    """Record ``i`` of a --writes run: 8 leads x TINY samples, mV."""
    return np.full((8, TINY), (i % 2000 - 1000) / 1000, dtype=np.float32)


def _tiny_store(path: Path, ids) -> None:
    from ecgtransfer.data.leads import LEADS_8
    from ecgtransfer.data.store import StoreWriter

    writer = StoreWriter(path, source="bench", fs=500, leads=LEADS_8)
    for i in ids:
        writer.add(f"w{i:07d}", _tiny(i))
    writer.finalize()


def _child_writes(stage: str, variant: str, n: str, work: str) -> None:
    """One timed (stage, writer) run; prints its seconds and peak RSS as JSON."""
    import ecgtransfer.data.ingest as ingest_module
    import ecgtransfer.data.store as store_module
    from ecgtransfer.data.leads import LEADS_8
    from ecgtransfer.data.wfdb_io import Recording

    n, work = int(n), Path(work)
    writer_class = _copying_writer() if variant == "baseline" else store_module.StoreWriter
    out = work / f"{stage}-{variant}"
    if stage == "prepare":
        def read_record(path, leads, record_id):  # in memory: the writer is what is timed
            return Recording(record_id, _tiny(int(record_id[1:])), 500.0, tuple(leads))

        ingest_module.read_record = read_record
        jobs = (ingest_module.RecordJob(f"w{i:07d}", Path(f"w{i:07d}")) for i in range(n))
        t = time.perf_counter()
        store = ingest_module.ingest(writer_class(out, source="bench", fs=500, leads=LEADS_8),
                                     jobs, total=n, progress=False).store
    else:
        store_module.StoreWriter = writer_class  # what merge_stores builds its writer from
        t = time.perf_counter()
        store = store_module.merge_stores([work / "even", work / "odd"], out, progress=False)
    elapsed = time.perf_counter() - t
    assert len(store) == n, (len(store), n)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "peak_rss_mb": peak_kib / 1024}))


def bench_writes(work: Path, n: int) -> list[dict]:
    """``prepare`` and ``merge`` of ``n`` tiny records, baseline and ours, each in a child."""
    _tiny_store(work / "even", range(0, n, 2))
    _tiny_store(work / "odd", range(1, n, 2))
    rows = []
    for stage in ("prepare", "merge"):
        row = {"stage": stage, "records": n}
        for variant in ("baseline", "ours"):
            res = subprocess.run([sys.executable, __file__, "--_writes", stage, variant, str(n),
                                  str(work)], capture_output=True, text=True, check=True)
            row[variant] = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="PTB-XL (sample) folder")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes; the best is kept")
    ap.add_argument("--full-size", action="store_true",
                    help=f"also prepare {FULL_PTBXL} records and report peak memory")
    ap.add_argument("--writes", action="store_true",
                    help="only time prepare and merge of --n tiny in-memory records, the "
                         "per-record-copy baseline against ours")
    ap.add_argument("--n", type=int, default=STUDY_N, help="records for --writes")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--_writes", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        _child_prepare(*args._child)
        return
    if args._writes:
        _child_writes(*args._writes)
        return
    if args.writes:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            rows = bench_writes(Path(tmp), args.n)
            print(f"writer: {args.n} tiny records (8 x {TINY} samples, made in memory), each run "
                  f"in its own process; {time.perf_counter() - t:.0f} s in all")
            print("| stage | records | baseline s (done copied per record) | ours s | ratio | "
                  "baseline peak RSS (MB) | ours peak RSS (MB) |")
            print("|---|---|---|---|---|---|---|")
            for r in rows:
                b, o = r["baseline"], r["ours"]
                print(f"| {r['stage']} | {r['records']} | {b['seconds']:.1f} | {o['seconds']:.1f} "
                      f"| {b['seconds'] / o['seconds']:.1f}x | {b['peak_rss_mb']:.0f} | "
                      f"{o['peak_rss_mb']:.0f} |")
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
