"""Amplitude of DeepFake ECGs next to PTB-XL NORM records: the evidence for storing µV.

Run from the repository root::

    python benchmarks/synth_amplitude.py [--n 500] [--root ../shared/data/ptbxl-sample]

Generates ``--n`` DeepFake ECGs (seed 0) with ``synthesize()``, prepares the PTB-XL folder with
``prepare_ptbxl()`` and, per lead, prints the median over records of the peak-to-peak amplitude
(0.5th to 99.5th percentile, so a single spike does not count) and of the standard deviation, in
mV, for the DeepFake store read as µV and for the PTB-XL records whose only superclass is NORM.
A ratio near 1 says the package's integers are microvolts; a unit off by 10x or 1000x would show
as a ratio of 0.1, 10 or 1000.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parents[1] / "shared" / "data" / "ptbxl-sample"


def lead_stats(signals: np.ndarray) -> dict[str, np.ndarray]:
    """Per-lead medians over records of robust peak-to-peak and standard deviation (mV)."""
    lo, hi = np.percentile(signals, [0.5, 99.5], axis=-1)
    return {"ptp": np.median(hi - lo, axis=0), "std": np.median(signals.std(axis=-1), axis=0)}


def main() -> None:
    from ecgtransfer.data.deepfake import SynthConfig, synthesize
    from ecgtransfer.data.ptbxl import prepare_ptbxl

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="DeepFake ECGs to generate")
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="PTB-XL (sample) folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fake = synthesize(Path(tmp) / "fake", SynthConfig(n=args.n, seed=0), progress=False).store
        real = prepare_ptbxl(args.root, Path(tmp) / "real", progress=False).store
        norm = np.flatnonzero((real.index["superclass"] == "NORM").to_numpy())
        f = lead_stats(np.stack([fake[i] for i in range(len(fake))]))
        r = lead_stats(np.stack([real[int(i)] for i in norm]))
        raw = np.stack([fake.raw(i) for i in range(len(fake))])
        print(f"{len(fake)} DeepFake ECGs (seed 0) against {len(norm)} PTB-XL NORM records; "
              f"stored integers span {raw.min()} .. {raw.max()}")
        print("| lead | DeepFake p-p (mV) | PTB-XL NORM p-p (mV) | ratio | DeepFake SD (mV) | "
              "PTB-XL NORM SD (mV) | ratio |")
        print("|---|---|---|---|---|---|---|")
        for k, lead in enumerate(fake.leads):
            print(f"| {lead} | {f['ptp'][k]:.2f} | {r['ptp'][k]:.2f} | "
                  f"{f['ptp'][k] / r['ptp'][k]:.2f} | {f['std'][k]:.3f} | {r['std'][k]:.3f} | "
                  f"{f['std'][k] / r['std'][k]:.2f} |")


if __name__ == "__main__":
    main()
