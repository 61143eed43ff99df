"""Fiducial-point benchmark: every beat's wave boundaries against LUDB's cardiologists, NeuroKit2's
delineation of lead II against ours (``ecg_waves``), which ``ecgtransfer explain`` splits the
beat into P wave, PR segment, QRS, ST segment and T wave with.

Run from the repository root::

    python benchmarks/bench_waves.py [--root ../shared/data/ludb-sample] [--fs 500,100]

Reference, per annotated beat: for each mark (P onset, P offset, QRS onset, QRS offset, T onset,
T offset) the median over the 12 leads' annotations of the same beat (a QRS peak, its P wave
before it, its T wave after it). A beat of ours or of the baseline is matched to the annotated
QRS whose peak lies within 100 ms of its R peak.

* baseline: ``nk.ecg_clean`` and ``nk.ecg_peaks`` on lead II, then
  ``nk.ecg_delineate(method="dwt")``, per beat (its documented route to all six marks);
* ours: :func:`ecgtransfer.features.intervals.ecg_waves` on I, II, V1-V6 (the labeller's R peaks
  agreed across leads, its templates' marks at each R peak).

Prints, per rate and method, the median signed error, the mean and median absolute error (ms)
and the number of beats per mark, and the time per record. The records are resampled to each
``--fs`` first (LUDB is 500 Hz).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

MARKS = ("p_on", "p_off", "qrs_on", "qrs_off", "t_on", "t_off")
EIGHT = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
NK = {"p_on": "ECG_P_Onsets", "p_off": "ECG_P_Offsets", "qrs_on": "ECG_R_Onsets",
      "qrs_off": "ECG_R_Offsets", "t_on": "ECG_T_Onsets", "t_off": "ECG_T_Offsets"}


def ours(x: np.ndarray, fs: float) -> pd.DataFrame:
    from ecgtransfer.features.intervals import ecg_waves

    beats, _ = ecg_waves(x, fs, EIGHT)
    return beats


def neurokit(x: np.ndarray, fs: float) -> pd.DataFrame:
    import neurokit2 as nk

    lead = x[EIGHT.index("II")].astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = nk.ecg_clean(lead, sampling_rate=fs)
        _, info = nk.ecg_peaks(clean, sampling_rate=fs)
        peaks = np.asarray(info["ECG_R_Peaks"])
        try:
            _, waves = nk.ecg_delineate(clean, peaks, sampling_rate=fs, method="dwt")
        except Exception:  # a record NeuroKit2 cannot delineate: no beats
            return pd.DataFrame(columns=["r", *MARKS])
    table = {"r": peaks.astype(float)}
    for mark, key in NK.items():
        v = np.asarray(waves.get(key, []), dtype=float)
        table[mark] = v if len(v) == len(peaks) else np.full(len(peaks), np.nan)
    return pd.DataFrame(table)


def errors(beats: pd.DataFrame, path: Path, fs: float) -> list[dict]:
    from ecgtransfer.features.reference import ludb_beats

    ref = ludb_beats(path, beats["r"].to_numpy(), fs)
    diff = (beats[list(MARKS)].to_numpy(float) - ref[list(MARKS)].to_numpy(float)) * 1000 / fs
    return [dict(zip(MARKS, row)) for row, n in zip(diff, ref["n_leads"]) if n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/ludb-sample")
    parser.add_argument("--fs", default="500,100")
    args = parser.parse_args()
    import wfdb

    from ecgtransfer.data.transforms import resample

    root = Path(args.root)
    recs = sorted(int(p.stem) for p in (root / "data").glob("*.hea"))
    signals = {}
    for rec in recs:
        r = wfdb.rdrecord(str(root / "data" / str(rec)))
        names = [n.upper() for n in r.sig_name]
        signals[rec] = (r.p_signal.T[[names.index(n) for n in EIGHT]].astype(np.float32), r.fs)
    for fs in (float(f) for f in args.fs.split(",")):
        for name, method in (("nk.ecg_delineate dwt, lead II", neurokit),
                             ("ecgtransfer ecg_waves, 8 leads", ours)):
            rows, seconds = [], 0.0
            for rec in recs:
                x, own = signals[rec]
                x = resample(x, own, fs) if fs != own else x
                t0 = time.perf_counter()
                beats = method(x, fs)
                seconds += (time.perf_counter() - t0) / len(recs)
                rows += errors(beats, root / "data" / str(rec), fs)
            e = pd.DataFrame(rows, columns=list(MARKS))
            table = pd.DataFrame({"median error ms": e.median(), "MAE ms": e.abs().mean(),
                                  "median |error| ms": e.abs().median(), "beats": e.count()})
            print(f"\n{name} at {fs:g} Hz ({len(recs)} LUDB records, {seconds * 1000:.0f} ms "
                  "a record)")
            print(table.round(1).to_markdown())


if __name__ == "__main__":
    main()
