"""Does NeuroKit2's ECGSyn earn a place as a second synthetic source? Its records, with per-record
parameters drawn for a wide interval range, through our labeller, beside warped DeepFake ECGs.

Run from the repository root::

    python benchmarks/ecgsyn_source.py [--n 60] [--seed 0] [--png docs/figures/ecgsyn_source.png]

Per record ``i`` (``numpy.random.default_rng([seed, i])``): a heart rate uniform in 35-160 bpm,
and ECGSyn's (McSharry et al. 2003) own knobs scaled from their defaults: the P wave's angle by
0.6-1.6 (PR), the Q, R and S Gaussians' widths by 0.6-1.8 (QRS) and the T wave's angle by
0.8-1.4 (QT). ``nk.ecg_simulate(duration=10, sampling_rate=500, method="multileads")`` makes the
12 leads; the labeller measures them as it measures any record. Printed, against the same
number of DeepFake ECGs warped to the default clinical ranges (``augment_store``):

* seconds per record (one process);
* share of records with each interval measured, and the 5th-95th percentile reached;
* whether each interval follows its own knob (Spearman correlation of the measured interval
  with the knob) and whether QRS follows the heart rate instead (it should not);
* how different the leads' amplitudes are (the peak-to-peak of the largest lead over the
  smallest's, median over records), against PTB-XL's sample.

The figure is the measured intervals' histograms of both sources.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
INTERVALS = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms")
KNOBS = {"hr_bpm": "heart_rate", "pr_ms": "p_angle", "qrs_ms": "qrs_width", "qt_ms": "t_angle"}


def ecgsyn_record(seed: int, i: int) -> tuple[np.ndarray, list[str], dict]:
    """Record ``i``: (12, 5000) mV at 500 Hz, its leads, and the knobs drawn."""
    import neurokit2 as nk

    rng = np.random.default_rng([seed, i])
    knobs = {"heart_rate": float(rng.uniform(35, 160)), "p_angle": float(rng.uniform(0.6, 1.6)),
             "qrs_width": float(rng.uniform(0.6, 1.8)), "t_angle": float(rng.uniform(0.8, 1.4))}
    ti = np.array([-70.0 * knobs["p_angle"], -15.0, 0.0, 15.0, 100.0 * knobs["t_angle"]])
    bi = np.array([0.25, 0.1 * knobs["qrs_width"], 0.1 * knobs["qrs_width"],
                   0.1 * knobs["qrs_width"], 0.4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = nk.ecg_simulate(duration=10, sampling_rate=500, method="multileads",
                                heart_rate=knobs["heart_rate"], random_state=int(rng.integers(2**31)),
                                ti=ti, bi=bi)
    return frame.to_numpy().T.astype(np.float64), list(frame.columns), knobs


def _lead_spread(x: np.ndarray) -> float:
    ptp = np.ptp(x, axis=1)
    return float(ptp.max() / max(ptp.min(), 1e-9))


def main() -> None:
    from scipy.stats import spearmanr

    from ecgtransfer.data.deepfake import SynthConfig, synthesize
    from ecgtransfer.data.ptbxl import prepare_ptbxl
    from ecgtransfer.features.augment import AugmentConfig, augment_store
    from ecgtransfer.features.intervals import ecg_intervals
    from ecgtransfer.features.labels import label_records, read_labels
    from ecgtransfer.features.realism import interval_histograms, interval_summary

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ptbxl", type=Path, default=REPO.parent / "shared" / "data" / "ptbxl-sample")
    ap.add_argument("--png", type=Path, default=REPO / "docs" / "figures" / "ecgsyn_source.png")
    args = ap.parse_args()

    rows, t0 = [], time.perf_counter()
    for i in range(args.n):
        x, leads, knobs = ecgsyn_record(args.seed, i)
        row = ecg_intervals(x, 500.0, leads, record_id=f"ecgsyn-{i}")
        rows.append({**knobs, **{k: row[k] for k in INTERVALS}, "spread": _lead_spread(x)})
    per_record = (time.perf_counter() - t0) / args.n
    syn = pd.DataFrame(rows)

    with tempfile.TemporaryDirectory() as tmp:
        fake = synthesize(Path(tmp) / "deepfake", SynthConfig(n=args.n, seed=args.seed),
                          progress=False).store
        t0 = time.perf_counter()
        warped = augment_store(fake.path, Path(tmp) / "warped", AugmentConfig(seed=args.seed),
                               workers=1, progress=False).store
        warp_per_record = (time.perf_counter() - t0) / args.n
        warped_labels = read_labels(label_records(warped.path, workers=2, progress=False).path)
        real = prepare_ptbxl(args.ptbxl, Path(tmp) / "ptbxl", progress=False).store
        real_spread = float(np.median([_lead_spread(real[i]) for i in range(len(real))]))
        fake_spread = float(np.median([_lead_spread(warped[i]) for i in range(len(warped))]))

    print(f"ECGSyn (nk.ecg_simulate multileads), {args.n} records: {per_record:.2f} s per record "
          f"on one process; warped DeepFake: {warp_per_record:.3f} s per record (augment, "
          "fiducials, warp and re-measuring included)")
    summary = interval_summary({"ECGSyn, knobs drawn": syn.assign(record_id=range(len(syn))),
                                "warped DeepFake": warped_labels})
    print("| source | interval | measured | 5th-95th |\n|---|---|---|---|")
    for (source, interval), r in summary.iterrows():
        print(f"| {source} | {interval} | {r['measured']:.0%} | {r['p5']:.0f}-{r['p95']:.0f} |")
    print("\nDoes each measured interval follow its own knob? Spearman rho over ECGSyn records:")
    for interval, knob in KNOBS.items():
        ok = syn[interval].notna()
        rho = spearmanr(syn.loc[ok, knob], syn.loc[ok, interval]).statistic
        print(f"  {interval} vs {knob}: {rho:+.2f} (n={int(ok.sum())})")
    ok = syn["qrs_ms"].notna()
    rho = spearmanr(syn.loc[ok, "heart_rate"], syn.loc[ok, "qrs_ms"]).statistic
    print(f"  qrs_ms vs heart_rate (should be near 0): {rho:+.2f}")
    print(f"\nLeads' amplitude spread (largest lead's peak-to-peak over the smallest's, median): "
          f"ECGSyn {syn['spread'].median():.2f}, warped DeepFake {fake_spread:.2f}, PTB-XL "
          f"sample {real_spread:.2f}")
    args.png.parent.mkdir(parents=True, exist_ok=True)
    interval_histograms({"ECGSyn, knobs drawn": syn, "warped DeepFake": warped_labels}) \
        .savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
