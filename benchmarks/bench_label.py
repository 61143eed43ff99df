"""Label accuracy against LUDB's cardiologists: naive NeuroKit2 baselines (the labeller follows).

Run from the repository root::

    python benchmarks/bench_label.py [--root ../shared/data/ludb-sample]

Reference: ``ecgtransfer.features.reference_intervals`` on each record's 12 per-lead annotations.
Baselines, each on the record's lead II: ``nk.ecg_clean``, ``nk.ecg_peaks``, then
``nk.ecg_delineate(method=...)`` with ``dwt`` and ``prominence``; per beat PR = R onset - P onset,
QRS = R offset - R onset, QT = T offset - R onset, medians over beats; HR = 60 fs / median RR.
Prints mean absolute error, bias and coverage (share of records with a reference value that got
a value) per interval, and seconds per record.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parents[1] / "shared" / "data" / "ludb-sample"
COLUMNS = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms")


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


def errors(estimate: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """MAE, bias and coverage per interval over the records that have a reference value."""
    rows = {}
    for col in COLUMNS:
        has = reference[col].notna()
        diff = (estimate[col] - reference[col])[has]
        rows[col] = {"mae": diff.abs().mean(), "bias": diff.mean(),
                     "coverage": diff.notna().mean(), "records": int(has.sum())}
    return pd.DataFrame(rows).T


def main() -> None:
    from ecgtransfer.data.leads import LEADS_12
    from ecgtransfer.data.ludb import read_ludb_annotations
    from ecgtransfer.data.wfdb_io import find_records, read_record
    from ecgtransfer.features import reference_intervals

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="LUDB folder (with data/)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    names = find_records(args.root / "data")
    refs, records = {}, {}
    for name in names:
        path = args.root / "data" / name
        ann = read_ludb_annotations(path, record_id=name)
        rec = read_record(path, leads=LEADS_12, record_id=name)
        refs[name] = reference_intervals({k: (a.samples, a.symbols) for k, a in ann.items()},
                                         fs=rec.fs)
        records[name] = rec
    reference = pd.DataFrame(refs).T[list(COLUMNS)].astype(float)
    print(f"{len(reference)} LUDB records; reference values: "
          + ", ".join(f"{c} {int(reference[c].notna().sum())}" for c in COLUMNS))
    print("| labeller | interval | MAE | bias | coverage | s/record |")
    print("|---|---|---|---|---|---|")
    for method in ("dwt", "prominence"):
        t = time.perf_counter()
        est = {}
        for name, rec in records.items():
            try:
                est[name] = naive_lead_ii(rec.signal[1], rec.fs, method)
            except Exception:  # a baseline that crashes on a record has no value for it
                est[name] = dict.fromkeys(COLUMNS, np.nan)
        seconds = (time.perf_counter() - t) / len(records)
        table = errors(pd.DataFrame(est).T.astype(float), reference)
        for col, r in table.iterrows():
            print(f"| naive `{method}`, lead II | {col} | {r['mae']:.1f} | {r['bias']:+.1f} | "
                  f"{r['coverage']:.0%} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
