"""QT Database: wave boundaries and intervals against the cardiologists' marks on ambulatory
records, ours beside NeuroKit2's ``ecg_delineate`` (dwt, prominence) and ECGdeli, in one run.

For every shipped QTDB record (2 leads, 250 Hz, 15 min; ``../shared/data/qtdb-sample``):

* **ours**: the labeller in 10-s windows over the whole record (``label_windows``, the beat
  table ``ecgtransfer label --window-s 10`` writes);
* **NeuroKit2** ``dwt`` and ``prominence``: ``nk.ecg_clean``, ``nk.ecg_peaks`` and
  ``nk.ecg_delineate`` on each lead of the annotated stretch (its first to last marked beat,
  5 s either side), the two leads' marks of a beat averaged;
* **ECGdeli** 1.0.0 (GPL, installed for the benchmark only by ``make bench`` into
  ``benchmarks/.gpl``; never a dependency): ``filter_ecg`` and ``annotate`` on the same
  stretch, its cross-lead consensus.

Each annotated beat (the ``.q1c`` marks: one set for both leads) is matched to the detected
beat whose R peak is within 150 ms. Per boundary (P on/off, QRS on/off, T off): mean and SD of
detected minus annotated (ms) over the matched beats, with the CSE tolerances (2 SD) as the
reference line; coverage = annotated beats matched with the boundary found. Per record: PR,
QRS and QT as the median over its annotated beats, against the same for the detected beats
matched to them: mean absolute error over records, overall and per source database.

    python benchmarks/qtdb_delineation.py [--out docs/qtdb.json] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "data" / "qtdb-sample"
GPL = ROOT / "benchmarks" / ".gpl"
BOUNDS = ("p_on", "p_off", "qrs_on", "qrs_off", "t_off")
CSE_2SD_MS = {"p_on": 10.2, "p_off": 12.7, "qrs_on": 6.5, "qrs_off": 11.6, "t_off": 30.6}
INTERVALS = {"pr_ms": ("p_on", "qrs_on"), "qrs_ms": ("qrs_on", "qrs_off"),
             "qt_ms": ("qrs_on", "t_off")}
MATCH_S = 0.15
METHODS = ("ours", "neurokit_prominence", "neurokit_dwt", "ecgdeli")


def source_database(record: str) -> str:
    """The database a QTDB record comes from, by its name (QTDB's documentation)."""
    name = record.removeprefix("sel")
    if name.startswith("e"):
        return "European ST-T"
    if name.isdigit() and len(name) == 3:
        n = int(name)
        if n < 300:
            return "MIT-BIH Arrhythmia"
        if n < 800:
            return "MIT-BIH ST Change"
        return "MIT-BIH Supraventricular"
    if name.isdigit() and len(name) == 2:
        return "Sudden Death"
    if name.isdigit() and name[:2] in ("14", "15"):
        return "Long-Term ST"
    return "MIT-BIH Normal Sinus"


def annotated(path: Path, record: str) -> tuple[pd.DataFrame, float]:
    """The cardiologist's beats (seconds): peak, p_on, p_off, qrs_on, qrs_off, t_off."""
    from ecgtransfer.data.wfdb_io import read_annotation
    from ecgtransfer.features.reference import annotated_beats

    ann = read_annotation(path / record, "q1c", record_id=record)
    beats = annotated_beats({"q1c": (ann.samples, ann.symbols)})
    return beats.drop(columns=["lead", "t_on"]).astype(float) / ann.fs, ann.fs


def ours(path: Path, record: str) -> pd.DataFrame:
    from ecgtransfer.data.wfdb_io import RecordReader
    from ecgtransfer.features.intervals import LabellerConfig
    from ecgtransfer.features.windows import BEAT_COLUMNS, label_windows

    reader = RecordReader(path / record, record_id=record)
    beats, windows = [], {"windows": 0, "ok": 0, "noise": 0}
    for window, b in label_windows(reader.read, reader.n_samples, reader.fs, reader.leads,
                                   record, LabellerConfig(window_s=10.0)):
        beats.append(b)
        windows["windows"] += 1
        windows["ok"] += window["qt_status"] == "ok"
        windows["noise"] += str(window["qt_status"]).startswith("noise")
    table = pd.DataFrame(np.concatenate(beats), columns=list(BEAT_COLUMNS[1:]))
    out = pd.DataFrame({"peak": table["time_s"], **{b: table[f"{b}_s"] for b in BOUNDS}})
    out.attrs["windows"] = windows
    return out


def holter_speed(path: Path, record: str = "sel30", repeats: int = 3) -> dict:
    """Seconds to label one whole 15-minute record in 10-s windows in this process (one core:
    call with one thread), the best of ``repeats``."""
    from threadpoolctl import threadpool_limits

    from ecgtransfer.data.wfdb_io import RecordReader

    times = []
    with threadpool_limits(1):
        for _ in range(repeats + 1):  # the first run imports and warms up
            times.append(_label_once(path, record))
    reader = RecordReader(path / record, record_id=record)
    return {"record": record, "minutes": reader.n_samples / reader.fs / 60, "fs": reader.fs,
            "leads": len(reader.leads), "windows": times[0][1],
            "seconds": min(t for t, _ in times[1:])}


def _label_once(path: Path, record: str) -> tuple[float, int]:
    from ecgtransfer.data.wfdb_io import RecordReader
    from ecgtransfer.features.intervals import LabellerConfig
    from ecgtransfer.features.windows import Summary, label_windows

    start = time.perf_counter()
    reader = RecordReader(path / record, record_id=record)
    summary = Summary(record)
    for window, _ in label_windows(reader.read, reader.n_samples, reader.fs, reader.leads,
                                   record, LabellerConfig(window_s=10.0)):
        summary.add(window)
    summary.row()
    return time.perf_counter() - start, summary.n_windows


def _stretch(path: Path, record: str, ann: pd.DataFrame) -> tuple[np.ndarray, float, float]:
    """The annotated stretch of a record (5 s either side), its rate and start (s)."""
    from ecgtransfer.data.wfdb_io import RecordReader

    reader = RecordReader(path / record, record_id=record)
    fs = reader.fs
    start = max(int((np.nanmin(ann["peak"]) - 5) * fs), 0)
    stop = min(int((np.nanmax(ann["peak"]) + 5) * fs), reader.n_samples)
    return reader.read(start, stop), fs, start / fs


def neurokit(path: Path, record: str, ann: pd.DataFrame, method: str) -> pd.DataFrame:
    import neurokit2 as nk

    x, fs, t0 = _stretch(path, record, ann)
    per_lead = []
    keys = {"p_on": "ECG_P_Onsets", "p_off": "ECG_P_Offsets", "qrs_on": "ECG_R_Onsets",
            "qrs_off": "ECG_R_Offsets", "t_off": "ECG_T_Offsets"}
    for lead in x:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clean = nk.ecg_clean(lead, sampling_rate=fs)
                _, info = nk.ecg_peaks(clean, sampling_rate=fs)
                peaks = np.asarray(info["ECG_R_Peaks"], dtype=int)
                _, waves = nk.ecg_delineate(clean, peaks, sampling_rate=fs, method=method)
        except Exception:  # noqa: BLE001 - a lead NeuroKit2 cannot delineate gives no marks
            continue
        table = {"peak": peaks / fs + t0}
        for ours_key, key in keys.items():
            values = np.asarray(waves.get(key, []), dtype=float)
            values = np.r_[np.full(max(len(peaks) - len(values), 0), np.nan), values][:len(peaks)]
            table[ours_key] = values / fs + t0
        per_lead.append(pd.DataFrame(table))
    return _combine(per_lead)


def ecgdeli(path: Path, record: str, ann: pd.DataFrame) -> pd.DataFrame:
    if str(GPL) not in sys.path:
        sys.path.insert(0, str(GPL))
    import ecgdeli as deli
    from ecgdeli.fpt import Wave

    x, fs, t0 = _stretch(path, record, ann)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = deli.annotate(deli.filter_ecg(x.T, fs), fs)
    s = result.consensus.samples
    cols = {"peak": Wave.R_PEAK, "p_on": Wave.P_ON, "p_off": Wave.P_OFF,
            "qrs_on": Wave.QRS_ON, "qrs_off": Wave.QRS_OFF, "t_off": Wave.T_OFF}
    return pd.DataFrame({k: s[:, int(w)] / fs + t0 for k, w in cols.items()})


def _combine(per_lead: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per beat of the first lead that found beats; each mark the mean of the leads'
    marks of that beat (R peaks within ``MATCH_S``)."""
    per_lead = [t for t in per_lead if len(t)]
    if not per_lead:
        return pd.DataFrame(columns=["peak", *BOUNDS])
    base = per_lead[0].copy()
    stack = [base[list(BOUNDS)].to_numpy()]
    for other in per_lead[1:]:
        stack.append(_matched(base["peak"].to_numpy(), other)[list(BOUNDS)].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        base[list(BOUNDS)] = np.nanmean(np.stack(stack), axis=0)
    return base


def _matched(peaks: np.ndarray, detected: pd.DataFrame) -> pd.DataFrame:
    """For each time in ``peaks``, the detected beat with its R peak within ``MATCH_S`` (NaN
    row where none)."""
    det = detected.sort_values("peak").reset_index(drop=True)
    at = det["peak"].to_numpy()
    out = pd.DataFrame(np.nan, index=range(len(peaks)), columns=["peak", *BOUNDS])
    if not len(at):
        return out
    i = np.clip(np.searchsorted(at, peaks), 1, len(at)) - 1
    j = np.clip(i + 1, 0, len(at) - 1)
    near = np.where(np.abs(at[j] - peaks) < np.abs(at[i] - peaks), j, i)
    ok = np.abs(at[near] - peaks) <= MATCH_S
    out.loc[ok, :] = det.loc[near[ok], ["peak", *BOUNDS]].to_numpy()
    return out


def _intervals(beats: pd.DataFrame) -> dict[str, float]:
    out = {}
    for name, (a, b) in INTERVALS.items():
        v = (beats[b] - beats[a]).to_numpy(dtype=float) * 1000.0
        v = v[np.isfinite(v)]
        out[name] = float(np.median(v)) if len(v) else np.nan
    return out


def one_record(args) -> dict:
    """Every method's per-beat errors and per-record intervals on one record."""
    path, record, methods = args
    ann, _ = annotated(path, record)
    result = {"record": record, "database": source_database(record), "n_annotated": len(ann),
              "reference": _intervals(ann), "methods": {}}
    for method in methods:
        start = time.perf_counter()
        try:
            if method == "ours":
                det = ours(path, record)
            elif method == "ecgdeli":
                det = ecgdeli(path, record, ann)
            else:
                det = neurokit(path, record, ann, method.split("_", 1)[1])
        except Exception as exc:  # noqa: BLE001 - a method failing on a record is a result
            result["methods"][method] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            continue
        matched = _matched(ann["peak"].to_numpy(), det)
        errors = {b: ((matched[b] - ann[b]) * 1000.0).tolist() for b in BOUNDS}
        result["methods"][method] = {"errors": errors, "intervals": _intervals(matched),
                                     "seconds": time.perf_counter() - start,
                                     "windows": det.attrs.get("windows")}
    return result


def summarise(results: list[dict], methods) -> dict:
    """Per method: per boundary mean/SD/coverage, per-record interval MAE overall and per
    source database."""
    out = {}
    for method in methods:
        rows = [r for r in results if "errors" in r["methods"].get(method, {})]
        bounds = {}
        for b in BOUNDS:
            err = np.concatenate([np.asarray(r["methods"][method]["errors"][b], float)
                                  for r in rows]) if rows else np.zeros(0)
            has_ref = np.concatenate([np.isfinite(_ref_marks(r, b)) for r in rows]) \
                if rows else np.zeros(0, bool)
            found = np.isfinite(err)
            bounds[b] = {"mean_ms": float(np.mean(err[found])) if found.any() else None,
                         "sd_ms": float(np.std(err[found])) if found.any() else None,
                         "coverage": float(found.sum() / max(has_ref.sum(), 1)),
                         "n": int(found.sum()), "n_annotated": int(has_ref.sum()),
                         "cse_2sd_ms": CSE_2SD_MS[b]}
        per_db: dict[str, dict] = {}
        overall = {}
        for name in INTERVALS:
            pairs = [(r["database"], r["methods"][method]["intervals"][name] - r["reference"][name])
                     for r in rows]
            errs = np.array([e for _, e in pairs], float)
            overall[name] = {"mae_ms": float(np.nanmean(np.abs(errs))) if np.isfinite(errs).any()
                             else None, "n_records": int(np.isfinite(errs).sum())}
            for db in sorted({d for d, _ in pairs}):
                e = np.array([v for d, v in pairs if d == db], float)
                per_db.setdefault(db, {})[name] = (float(np.nanmean(np.abs(e)))
                                                   if np.isfinite(e).any() else None)
        counts = [r["methods"][method]["windows"] for r in rows
                  if r["methods"][method].get("windows")]
        windows = ({k: int(sum(c[k] for c in counts)) for k in counts[0]} if counts else None)
        out[method] = {"boundaries": bounds, "intervals": overall, "per_database": per_db,
                       "windows": windows,
                       "records": len(rows),
                       "failed": [r["record"] for r in results
                                  if "error" in r["methods"].get(method, {})],
                       "seconds": float(sum(r["methods"][method]["seconds"] for r in rows))}
    return out


def _ref_marks(result: dict, bound: str) -> np.ndarray:
    """1 where an annotated beat has ``bound`` marked, NaN where not (an error is NaN both
    where it is not marked and where a method did not find it)."""
    return np.where(np.asarray(result["has_" + bound], float) > 0, 1.0, np.nan)


def print_table(summary: dict) -> None:
    print("\nper boundary: detected - annotated, mean +- SD ms (coverage); CSE 2SD tolerance")
    print(f"{'method':22s}" + "".join(f"{b:>22s}" for b in BOUNDS))
    print(f"{'CSE 2SD':22s}" + "".join(f"{'<= ' + str(CSE_2SD_MS[b]):>22s}" for b in BOUNDS))
    for method, s in summary.items():
        cells = []
        for b in BOUNDS:
            v = s["boundaries"][b]
            cells.append("-" if v["mean_ms"] is None else
                         f"{v['mean_ms']:+.1f}+-{v['sd_ms']:.1f} ({v['coverage']:.0%})")
        print(f"{method:22s}" + "".join(f"{c:>22s}" for c in cells))
    print("\nper record interval MAE, ms (records)")
    for method, s in summary.items():
        print(f"{method:22s}" + "  ".join(
            f"{k} {v['mae_ms']:.1f} ({v['n_records']})" if v["mae_ms"] is not None else f"{k} -"
            for k, v in s["intervals"].items()) + f"   {s['seconds']:.0f} s")
    print("\nper source database, interval MAE ms (PR / QRS / QT)")
    dbs = sorted({db for s in summary.values() for db in s["per_database"]})
    for db in dbs:
        cells = []
        for method, s in summary.items():
            v = s["per_database"].get(db, {})
            cells.append(f"{method}: " + "/".join("-" if v.get(k) is None else f"{v[k]:.0f}"
                                                  for k in INTERVALS))
        print(f"  {db:26s} " + "   ".join(cells))


def run(root: Path = DEFAULT, methods=METHODS, workers: int = 2, limit: int | None = None,
        out: Path | None = None) -> dict:
    path = root / "data"
    records = (root / "RECORDS").read_text().split()[:limit]
    have_deli = (GPL / "ecgdeli").is_dir()
    if "ecgdeli" in methods and not have_deli:
        print(f"ECGdeli is not installed in {GPL} (make bench installs it); left out")
        methods = tuple(m for m in methods if m != "ecgdeli")
    jobs = [(path, r, methods) for r in records]
    start = time.perf_counter()
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.map(one_record, jobs, chunksize=1)
    else:
        results = [one_record(j) for j in jobs]
    for r in results:  # which annotated beats have each boundary marked
        ann, _ = annotated(path, r["record"])
        for b in BOUNDS:
            r["has_" + b] = np.isfinite(ann[b].to_numpy()).astype(float).tolist()
    summary = summarise(results, methods)
    speed = holter_speed(path) if "ours" in methods else None
    print(f"QTDB: {len(records)} records, {sum(r['n_annotated'] for r in results)} annotated "
          f"beats, {time.perf_counter() - start:.0f} s on {workers} worker(s)")
    print_table(summary)
    if speed is not None:
        w = summary["ours"]["windows"]
        print(f"\nours: {w['windows']} windows of 10 s, {w['ok']} measured, {w['noise']} abstained "
              f"as noise; one {speed['minutes']:.0f}-minute {speed['leads']}-lead record at "
              f"{speed['fs']:g} Hz ({speed['windows']} windows) in {speed['seconds']:.2f} s on "
              "one core (target <= 1 s)")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        per_record = [{"record": r["record"], "database": r["database"],
                       "reference": r["reference"],
                       **{m: r["methods"][m].get("intervals") for m in methods}}
                      for r in results]
        out.write_text(json.dumps({"summary": summary, "speed": speed, "records": per_record},
                                  indent=1))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT, help="QTDB folder (RECORDS, data/)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N records only")
    ap.add_argument("--out", type=Path, default=None, help="JSON of the results")
    args = ap.parse_args()
    run(args.root, tuple(args.methods.split(",")), args.workers, args.limit, args.out)


if __name__ == "__main__":
    main()
