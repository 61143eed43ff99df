"""Label benchmark: accuracy against LUDB's cardiologists, speed and memory, naive vs our methods.

Run from the repository root::

    python benchmarks/bench_label.py [--root ../shared/data/ludb-sample] [--ptbxl ../shared/data/ptbxl-sample]
                                     [--naive-n 40] [--memory-n 500,2000] [--skip-speed]

Accuracy. Reference: ``ecgtransfer.features.ludb_reference`` (each LUDB record's 12 per-lead
annotations). Naive baselines on the record's lead II: ``nk.ecg_clean``, ``nk.ecg_peaks``,
``nk.ecg_delineate(method=...)`` with ``dwt`` and ``prominence``; per beat PR = R onset - P onset,
QRS = R offset - R onset, QT = T offset - R onset, medians over beats; HR = 60 fs / median RR.
Ours: ``ecgtransfer label`` (``label_records``) on the WFDB folder, I, II, V1-V6 only, once per
labeller method through the one interface, ``LabellerConfig(method=...)`` (``"ecgtransfer"``, the
default, and ``"neurokit"``: the same R peaks and fusion, NeuroKit2's ``ecg_delineate`` for the
wave boundaries). Prints MAE, bias and coverage (share of records with a reference value that got a
value) per interval (``ecgtransfer.features.agreement``), for all records and, per method, for
records 1-50 and 51-100 separately.

Speed (one run, 2 processes each). The PTB-XL sample (10 s, 8 leads, 500 Hz) prepared into a store;
naive = ``nk.ecg_process`` on each of the 8 leads (its documented one-call pipeline) on the first
``--naive-n`` records; ours = ``label_records(workers=2, config=LabellerConfig(method=...))`` on all
of them, each method, process start included.
Memory: ours (default method) on DeepFake stores of each ``--memory-n`` size, each in a child
process; the figure is the peak over the run of the anonymous resident memory summed over its
processes (parent, forkserver, workers), sampled every 0.25 s; memory-mapped store pages are page
cache, not counted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtransfer.features import LabellerConfig, agreement, ludb_reference
from ecgtransfer.features.intervals import METHODS, NEUROKIT_DELINEATOR

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parents[1] / "shared" / "data" / "ludb-sample"
COLUMNS = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms")
METHOD_LABELS = {"ecgtransfer": '`method="ecgtransfer"` (default)',
                 "neurokit": f'`method="neurokit"` (`ecg_delineate` `{NEUROKIT_DELINEATOR}`)'}


def _method_label(method: str) -> str:
    return METHOD_LABELS.get(method, f'`method="{method}"`')


def _median(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else np.nan


def naive_lead_ii(signal: np.ndarray, fs: float, method: str) -> dict:
    """The baseline: NeuroKit2 on lead II as its documentation shows."""
    import neurokit2 as nk

    clean = nk.ecg_clean(signal, sampling_rate=fs)
    _, info = nk.ecg_peaks(clean, sampling_rate=fs)
    peaks = np.asarray(info["ECG_R_Peaks"])
    _, waves = nk.ecg_delineate(clean, peaks, sampling_rate=fs, method=method)

    def column(key):
        # ecg_delineate drops marks at sample 0, which shifts the list by one (NeuroKit2
        # 0.2.13); put a NaN back so that beats stay aligned.
        values = np.asarray(waves[key], dtype=float)
        return np.insert(values, 0, np.nan) if len(values) == len(peaks) - 1 else values

    ms = 1000.0 / fs
    return {"hr_bpm": 60.0 * fs / np.median(np.diff(peaks)) if len(peaks) > 1 else np.nan,
            "pr_ms": _median(column("ECG_R_Onsets") - column("ECG_P_Onsets")) * ms,
            "qrs_ms": _median(column("ECG_R_Offsets") - column("ECG_R_Onsets")) * ms,
            "qt_ms": _median(column("ECG_T_Offsets") - column("ECG_R_Onsets")) * ms}


def _ours(root: Path, work: Path, method: str) -> pd.DataFrame:
    from ecgtransfer.features.labels import label_records, read_labels

    report = label_records(root / "data", out=work / f"ludb-{method}.csv", kind="wfdb", workers=2,
                           config=LabellerConfig(method=method))
    return read_labels(report.path).set_index("record_id")


def _naive_process(signal: np.ndarray) -> int:
    """``nk.ecg_process`` on each lead, as its documentation shows; returns beats found."""
    import neurokit2 as nk

    beats = 0
    for lead in signal:
        try:
            signals, info = nk.ecg_process(lead, sampling_rate=500)
            beats += len(info["ECG_R_Peaks"])
        except Exception:
            pass
    return beats


def _naive_worker(args) -> int:
    from ecgtransfer.data.store import SignalStore

    path, i = args
    return _naive_process(SignalStore(path)[i])


def _tree_rss_mb(root: int) -> float:
    """Anonymous resident memory of ``root`` and its descendants, MB (Linux /proc).

    Anonymous: the store's memory-mapped signal pages are page cache, shared and reclaimable,
    and would otherwise count once per record read.
    """
    parents, rss = {}, {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        pid = int(status.parent.name)
        parents[pid] = int(fields.get("PPid", "0").strip())
        rss[pid] = int(fields.get("RssAnon", "0 kB").split()[0])
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(rss.get(p, 0) for p in tree) / 1024


def _memory_child(store: str) -> None:
    """Child: label a store with 2 workers, sampling the memory of its process tree."""
    import os
    import threading

    from ecgtransfer.features.labels import label_records

    peak, done = [0.0], threading.Event()

    def sample():
        while not done.wait(0.25):
            peak[0] = max(peak[0], _tree_rss_mb(os.getpid()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    label_records(Path(store), workers=2)
    seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    print(json.dumps({"seconds": seconds, "peak_mb": peak[0]}))


def speed(ptbxl: Path, naive_n: int, memory_ns: list[int]) -> None:
    import multiprocessing as mp

    from ecgtransfer.features.labels import label_records
    from ecgtransfer.data.ptbxl import prepare_ptbxl

    with tempfile.TemporaryDirectory() as tmp:
        store = prepare_ptbxl(ptbxl, Path(tmp) / "ptbxl", progress=False).store
        n = len(store)
        t = time.perf_counter()
        with mp.get_context("forkserver").Pool(2) as pool:
            pool.map(_naive_worker, [(str(store.path), i) for i in range(min(naive_n, n))])
        naive = min(naive_n, n) / (time.perf_counter() - t)
        ours = {}
        for method in METHODS:  # each method writes its own labels-<hash>.csv: nothing is reused
            t = time.perf_counter()
            label_records(store.path, workers=2, config=LabellerConfig(method=method))
            ours[method] = n / (time.perf_counter() - t)
    print("\nSpeed, PTB-XL sample (10 s, 8 leads, 500 Hz), 2 processes each:")
    print("| labeller | records | records/s | ratio |")
    print("|---|---|---|---|")
    print(f"| naive `nk.ecg_process` x 8 leads | {min(naive_n, n)} | {naive:.2f} | 1.0x |")
    for method, rate in ours.items():
        print(f"| ours {_method_label(method)}, `ecgtransfer label --workers 2` | {n} | {rate:.1f} "
              f"| {rate / naive:.1f}x |")
    if not memory_ns:
        return
    print("\nMemory, DeepFake stores labelled with 2 workers (anonymous RSS summed over the run's "
          "processes):")
    print("| records | s | records/s | peak memory, MB |")
    print("|---|---|---|---|")
    for m in memory_ns:
        with tempfile.TemporaryDirectory() as work:
            subprocess.run([sys.executable, "-m", "ecgtransfer", "synth", "--n", str(m),
                            "--out", f"{work}/store", "-q"], check=True, capture_output=True)
            res = subprocess.run([sys.executable, __file__, "--_memory", f"{work}/store"],
                                 capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"| {m} | {r['seconds']:.1f} | {m / r['seconds']:.1f} | {r['peak_mb']:.0f} |")


def main() -> None:
    from ecgtransfer.data.leads import LEADS_12
    from ecgtransfer.data.wfdb_io import find_records, read_record

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="LUDB folder (with data/)")
    ap.add_argument("--ptbxl", type=Path, default=DEFAULT_ROOT.parent / "ptbxl-sample")
    ap.add_argument("--naive-n", type=int, default=40)
    ap.add_argument("--memory-n", default="500,2000")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--_memory", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory:
        _memory_child(args._memory)
        return
    warnings.filterwarnings("ignore")
    names = find_records(args.root / "data")
    records = {name: read_record(args.root / "data" / name, leads=LEADS_12, record_id=name)
               for name in names}
    reference = ludb_reference(args.root / "data", names)[list(COLUMNS)].astype(float)
    print(f"{len(reference)} LUDB records; reference values: "
          + ", ".join(f"{c} {int(reference[c].notna().sum())}" for c in COLUMNS))
    print("| labeller | interval | MAE | bias | coverage | s/record |")
    print("|---|---|---|---|---|---|")
    estimates = {}
    for method in ("dwt", "prominence"):
        t = time.perf_counter()
        est = {}
        for name, rec in records.items():
            try:
                est[name] = naive_lead_ii(rec.signal[1], rec.fs, method)
            except Exception:  # a baseline that crashes on a record has no value for it
                est[name] = dict.fromkeys(COLUMNS, np.nan)
        estimates[f"naive `{method}`, lead II"] = (pd.DataFrame(est).T.astype(float),
                                                   (time.perf_counter() - t) / len(records))
    ours = {}
    with tempfile.TemporaryDirectory() as work:
        for method in METHODS:
            t = time.perf_counter()
            ours[method] = _ours(args.root, Path(work), method)[list(COLUMNS)].astype(float)
            estimates[f"ours {_method_label(method)}, 8 leads, 2 processes"] = (
                ours[method], (time.perf_counter() - t) / len(records))
    for label, (est, seconds) in estimates.items():
        for col, r in agreement(est, reference).iterrows():
            print(f"| {label} | {col} | {r['mae']:.1f} | {r['bias']:+.1f} | "
                  f"{r['coverage']:.0%} | {seconds:.3f} |")
    print("\nOurs by halves of the records (MAE; a method tuned to some records shows here):")
    print("| method | records | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    ids = sorted(reference.index, key=int)
    for method, est in ours.items():
        for part in (ids[: len(ids) // 2], ids[len(ids) // 2:]):
            table = agreement(est.loc[part], reference.loc[part])
            print(f"| `{method}` | {part[0]}-{part[-1]} | "
                  + " | ".join(f"{v:.1f}" for v in table["mae"]) + " |")
    no_ref = reference["pr_ms"].isna()
    has_ref = reference.index[~no_ref]
    print()
    for method, est in ours.items():
        print(f"PR where the cardiologists marked no P wave ({int(no_ref.sum())} records): "
              f"`{method}` gives NaN for {int(est.loc[no_ref[no_ref].index, 'pr_ms'].isna().sum())}"
              f" (and for {int(est.loc[has_ref, 'pr_ms'].isna().sum())} of the {len(has_ref)} "
              "with one).")
    if not args.skip_speed:
        speed(args.ptbxl, args.naive_n, [int(v) for v in args.memory_n.split(",") if v])


if __name__ == "__main__":
    main()
