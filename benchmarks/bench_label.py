"""Label benchmark: accuracy against LUDB's cardiologists, speed and memory, naive vs our methods.

Run from the repository root::

    python benchmarks/bench_label.py [--root ../shared/data/ludb-sample] [--ptbxl ../shared/data/ptbxl-sample]
                                     [--naive-n 40] [--memory-n 500,2000] [--skip-speed]
                                     [--qtdb ../shared/data/qtdb-sample] [--skip-qtdb | --only-qtdb]

QT Database (``qtdb_delineation.py``, first): the ambulatory records' per-beat wave boundaries
and per-record intervals against the cardiologist's marks, ours beside NeuroKit2 (dwt,
prominence) and ECGdeli; results also in ``docs/qtdb.json``.

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

from ecgtransfer.data.leads import LEADS_8, LEADS_12

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
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
                           config=LabellerConfig(method=method, leads=LEADS_8))
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
    """Anonymous memory of ``root`` and its descendants, MB: the proportional share each
    process holds (``Pss_Anon + Pss_Shmem``, see ``measure.py``), so that the parent's pages a
    forked worker shares count once.

    Anonymous: the store's memory-mapped signal pages are page cache, shared and reclaimable,
    and would otherwise count once per record read.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from measure import _status, _tree

    return sum(s.get("Pss_Anon", 0) + s.get("Pss_Shmem", 0)
               for s in map(_status, _tree(root))) / 1024


def _memory_child(store: str) -> None:
    """Child: label a store with 2 workers, sampling the memory of its process tree."""
    from ecgtransfer.features.labels import label_records

    seconds, peak = _run_measured(lambda: label_records(Path(store), workers=2), every=0.25)
    print(json.dumps({"seconds": seconds, "peak_mb": peak}))


def _per_lead_neurokit() -> None:
    """Pool initializer: the labeller as version 1 ran it, ``nk.ecg_clean`` and
    ``nk.ecg_findpeaks`` called lead by lead, each designing its filters again (the baseline)."""
    import neurokit2 as nk

    from ecgtransfer.features import fast, intervals

    def clean(signal, fs):
        return np.stack([nk.ecg_clean(x, sampling_rate=fs) for x in signal])

    def find_peaks(clean, fs, method):
        out = []
        for x in clean:
            try:
                out.append(np.asarray(nk.ecg_findpeaks(x, sampling_rate=fs, method=method)
                                      ["ECG_R_Peaks"], dtype=np.int64))
            except Exception:  # as version 1: a failing detector casts no votes on that lead
                out.append(np.zeros(0, dtype=np.int64))
        return out

    warnings.filterwarnings("ignore")
    intervals._clean = clean
    fast.find_peaks = find_peaks  # intervals imports it when it measures


def _store_worker(args) -> float:
    from ecgtransfer.data.store import SignalStore
    from ecgtransfer.features import ecg_intervals

    path, i = args
    store = SignalStore(path)
    return ecg_intervals(store[i], store.fs, store.leads)["hr_bpm"]


def _run_measured(work, every: float = 0.1) -> tuple[float, float]:
    """Seconds ``work()`` takes and the peak anonymous memory of this process tree meanwhile
    (the parent and its pool's processes), MB, sampled every ``every`` s."""
    import os
    import threading

    peak, done = [0.0], threading.Event()

    def sample():
        while not done.wait(every):
            peak[0] = max(peak[0], _tree_rss_mb(os.getpid()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    work()
    seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    return seconds, peak[0]


def speed(ptbxl: Path, naive_n: int, memory_ns: list[int]) -> None:
    import multiprocessing as mp

    from ecgtransfer.features.labels import label_records
    from ecgtransfer.data.ptbxl import prepare_ptbxl

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = prepare_ptbxl(ptbxl, Path(tmp) / "ptbxl", progress=False).store
        n = len(store)
        m = min(naive_n, n)

        def naive():
            with mp.get_context("forkserver").Pool(2) as pool:
                pool.map(_naive_worker, [(str(store.path), i) for i in range(m)])

        def before():
            with mp.get_context("forkserver").Pool(2, initializer=_per_lead_neurokit) as pool:
                pool.map(_store_worker, [(str(store.path), i) for i in range(n)], chunksize=4)

        rows.append(("naive `nk.ecg_process` x 8 leads", m, *_run_measured(naive)))
        rows.append(("today's labeller before issue 17: the same steps, NeuroKit2 called lead "
                     "by lead", n, *_run_measured(before)))
        for method in METHODS:  # each method writes its own labels-<hash>.csv: nothing is reused
            rows.append((f"ours {_method_label(method)}, `ecgtransfer label --workers 2`", n,
                         *_run_measured(lambda: label_records(
                             store.path, workers=2, config=LabellerConfig(method=method)))))
    print("\nSpeed, PTB-XL sample (10 s, 8 leads, 500 Hz), 2 processes each, process start "
          "included; peak anonymous memory of the run's processes:")
    print("| labeller | records | records/s | ratio | peak memory, MB |")
    print("|---|---|---|---|---|")
    base = rows[0][1] / rows[0][2]
    for label, count, seconds, peak in rows:
        print(f"| {label} | {count} | {count / seconds:.1f} | {count / seconds / base:.1f}x | "
              f"{peak:.0f} |")
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


# ---- per stratum and per lead set (issue 17) --------------------------------------------------

LEAD_SETS = {"12": LEADS_12, "8": ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"),
             "II+V5": ("II", "V5"), "I": ("I",)}
"""12 and 8 leads; II + V5 as a Holter or the QT database records; lead I alone, as a wearable."""
SETTINGS = (("12", 500.0), ("8", 500.0), ("II+V5", 500.0), ("I", 500.0), ("8", 250.0),
            ("II+V5", 250.0), ("8", 100.0))
TARGETS = {"hr_bpm": 1.0, "pr_ms": 10.0, "qrs_ms": 10.0, "qt_ms": 15.0}
TARGETS_2_LEADS = {"hr_bpm": 1.0, "pr_ms": 15.0, "qrs_ms": 15.0, "qt_ms": 20.0}
MIN_STRATUM = 10
TRACKED = ("E07503", "E07508", "E07514", "HR06003", "JS20006", "JS20011", "E07509")
"""The Challenge records issue 17 names: six tachycardic ones with PR > 200 ms and no AV block,
and a right bundle branch block measured at 106 ms."""


def _measure_one(args) -> dict:
    from ecgtransfer.features import ecg_intervals

    name, signal, fs, leads = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ecg_intervals(signal, fs, leads, record_id=name)


def measure_all(records: dict, names: tuple, fs: float, workers: int = 2) -> pd.DataFrame:
    """Our labels of ``records`` (12-lead LUDB recordings) on lead set ``names`` at rate ``fs``."""
    import multiprocessing as mp

    from ecgtransfer.data.transforms import resample

    at = {name: i for i, name in enumerate(LEADS_12)}
    jobs = []
    for rid, rec in records.items():
        x = np.asarray(rec.signal, np.float64)[[at[n] for n in names]]
        if fs != rec.fs:
            x = resample(x, rec.fs, fs).astype(np.float64)
        jobs.append((rid, x, fs, list(names)))
    with mp.get_context("forkserver").Pool(workers) as pool:
        rows = pool.map(_measure_one, jobs, chunksize=4)
    return pd.DataFrame(rows).set_index("record_id")


def ludb_strata(root: Path, reference: pd.DataFrame) -> dict[str, list[str]]:
    """Record ids per stratum: heart rate band and QRS width by the cardiologists' reference,
    atrial fibrillation, flutter and pacing by ``ludb.csv``."""
    info = pd.read_csv(root / "ludb.csv", dtype={"ID": str}).set_index("ID")
    info = info.reindex(reference.index)

    def has(column, text):
        return info[column].fillna("").str.contains(text, case=False)

    hr, qrs = reference["hr_bpm"], reference["qrs_ms"]
    groups = {
        "all": reference.index,
        "HR < 60": hr.index[hr < 60], "HR 60-100": hr.index[(hr >= 60) & (hr <= 100)],
        "HR > 100": hr.index[hr > 100],
        "QRS < 120": qrs.index[qrs < 120], "QRS >= 120": qrs.index[qrs >= 120],
        "QRS >= 120, not paced": qrs.index[(qrs >= 120) & ~has("Cardiac pacing", "pacing")],
        "atrial fibrillation": info.index[has("Rhythms", "fibrillation")],
        "atrial flutter": info.index[has("Rhythms", "flutter")],
        "paced": info.index[has("Cardiac pacing", "pacing")],
        "sinus, not paced": info.index[has("Rhythms", "sinus") & ~has("Cardiac pacing", "pacing")],
    }
    return {k: list(v) for k, v in groups.items()}


def stratum_table(est: pd.DataFrame, reference: pd.DataFrame, strata: dict,
                  targets: dict) -> list[str]:
    """Markdown rows: per stratum, n, and MAE / bias / coverage per interval, a target missed in
    a stratum of at least MIN_STRATUM records marked with a cross."""
    lines = []
    for stratum, ids in strata.items():
        if not ids:
            continue
        table = agreement(est.loc[ids], reference.loc[ids])
        cells = []
        for col in COLUMNS:
            r = table.loc[col]
            if not r["records"]:
                cells.append("-")
                continue
            if not r["coverage"] > 0:
                cells.append("not measured (0%)" + (" ✗" if r["records"] >= MIN_STRATUM else ""))
                continue
            missed = r["records"] >= MIN_STRATUM and (
                r["mae"] > targets[col] or (col != "pr_ms" and r["coverage"] < 0.98))
            cells.append(f"{r['mae']:.1f} / {r['bias']:+.1f} / {r['coverage']:.0%}"
                         + (" ✗" if missed else ""))
        lines.append(f"| {stratum} | {len(ids)} | " + " | ".join(cells) + " |")
    return lines


def strata(root: Path, records: dict, reference: pd.DataFrame) -> None:
    groups = ludb_strata(root, reference)
    header = ("| stratum | records | " + " | ".join(f"{c} MAE / bias / cov." for c in COLUMNS)
              + " |\n|---|---|" + "---|" * len(COLUMNS))
    for lead_set, fs in SETTINGS:
        names = LEAD_SETS[lead_set]
        t = time.perf_counter()
        est = measure_all(records, names, fs)[list(COLUMNS)].astype(float)
        seconds = time.perf_counter() - t
        targets = TARGETS_2_LEADS if len(names) <= 2 else TARGETS
        print(f"\nLUDB, leads {lead_set} at {fs:g} Hz ({seconds:.1f} s, 2 processes; targets "
              + ", ".join(f"{c} {v:g}" for c, v in targets.items())
              + f"; ✗ = missed in a stratum of >= {MIN_STRATUM} records):")
        print(header)
        print("\n".join(stratum_table(est, reference, groups, targets)))


def tracked(cinc: Path) -> None:
    """The records issue 17 names, with their diagnoses."""
    from ecgtransfer.data.challenge2021 import header_diagnoses
    from ecgtransfer.data.wfdb_io import read_record

    names = {}
    for table in ("scored", "unscored"):
        mapping = pd.read_csv(REPO / "data_manifests" / f"cinc2021-dx_mapping_{table}.csv",
                              dtype=str)
        names.update(zip(mapping["SNOMEDCTCode"], mapping["Abbreviation"]))
    print("\nChallenge records named in issue 17 (12 leads, 500 Hz):")
    print("| record | diagnoses | HR | PR | QRS | QT |")
    print("|---|---|---|---|---|---|")
    for name in TRACKED:
        rec = read_record(cinc / name)
        row = _measure_one((name, np.asarray(rec.signal, np.float64), rec.fs, list(rec.leads)))
        codes = header_diagnoses(cinc / f"{name}.hea")
        dx = ", ".join(names.get(c, c) for c in codes)
        print(f"| {name} | {dx} | " + " | ".join(
            f"{row[c]:.0f}" if np.isfinite(row[c]) else "-" for c in COLUMNS) + " |")

def methods(root: Path, records: dict, reference: pd.DataFrame) -> None:
    """Naive baselines and our methods on all records, and ours by halves."""
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
            ours[method] = _ours(root, Path(work), method)[list(COLUMNS)].astype(float)
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


def main() -> None:
    from ecgtransfer.data.wfdb_io import find_records, read_record

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="LUDB folder (with data/)")
    ap.add_argument("--ptbxl", type=Path, default=DEFAULT_ROOT.parent / "ptbxl-sample")
    ap.add_argument("--naive-n", type=int, default=40)
    ap.add_argument("--memory-n", default="500,2000")
    ap.add_argument("--cinc", type=Path, default=DEFAULT_ROOT.parent / "cinc2021-sample")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-methods", action="store_true",
                    help="leave out the naive baselines and the method comparison")
    ap.add_argument("--skip-strata", action="store_true",
                    help="leave out the strata, lead sets and rates")
    ap.add_argument("--skip-diagnoses", action="store_true",
                    help="leave out the agreement with interval-defined diagnoses")
    ap.add_argument("--qtdb", type=Path, default=DEFAULT_ROOT.parent / "qtdb-sample",
                    help="QT Database folder (RECORDS, data/)")
    ap.add_argument("--skip-qtdb", action="store_true",
                    help="leave out the QT Database part (qtdb_delineation.py)")
    ap.add_argument("--only-qtdb", action="store_true", help="run only the QT Database part")
    ap.add_argument("--_memory", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory:
        _memory_child(args._memory)
        return
    warnings.filterwarnings("ignore")
    if args.only_qtdb or not args.skip_qtdb:
        import qtdb_delineation  # beside this file

        print("QT Database: ambulatory records against the cardiologists' marks "
              "(qtdb_delineation.py):")
        qtdb_delineation.run(args.qtdb, out=REPO / "docs" / "qtdb.json")
        if args.only_qtdb:
            return
    names = find_records(args.root / "data")
    records = {name: read_record(args.root / "data" / name, leads=LEADS_12, record_id=name)
               for name in names}
    reference = ludb_reference(args.root / "data", names)[list(COLUMNS)].astype(float)
    print(f"{len(reference)} LUDB records; reference values: "
          + ", ".join(f"{c} {int(reference[c].notna().sum())}" for c in COLUMNS))
    if not args.skip_methods:
        methods(args.root, records, reference)
    if not args.skip_strata:
        strata(args.root, records, reference)
        tracked(args.cinc)
    if not args.skip_diagnoses:
        import label_vs_diagnosis  # beside this file

        print("\nAgreement with the diagnoses an interval defines (label_vs_diagnosis.py):")
        label_vs_diagnosis.report(args.root.parent)
    if not args.skip_speed:
        speed(args.ptbxl, args.naive_n, [int(v) for v in args.memory_n.split(",") if v])


if __name__ == "__main__":
    main()
