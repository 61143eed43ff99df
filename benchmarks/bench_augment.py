"""Augment benchmark: the interval warp's whole stage beside the labeller's own rate, in one run.

Run from the repository root::

    python benchmarks/bench_augment.py [--n 1000] [--workers 2] [--corrections 0,1,2]
                                       [--json docs/augment.json]

On ``--n`` DeepFake ECGs (seed 0, generated first, not timed):

* baseline: ``ecgtransfer label`` of the store (``label_records``, default config), the
  labeller alone, a pass the stage must make at least twice (fiducials before, labels after);
* ours: ``ecgtransfer augment`` of the same store (``augment_store``, default ranges): fiducial
  points, drawing, warping, re-measuring and its corrections, per ``--corrections`` setting.

Both on ``--workers`` processes, in this process's wall time from the call to its return (the
worker pool's start included, as a user pays it). Printed: records per second, the ratio, and
how close the warped records' measured intervals landed to the requested ones (median, 95th
percentile, share within the tolerance: HR 2 bpm, PR and QRS 10 ms, QT 15 ms), and how many
records were given up and why.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def main() -> None:
    from ecgtransfer.data.deepfake import SynthConfig, synthesize
    from ecgtransfer.features.augment import AugmentConfig, augment_store
    from ecgtransfer.features.labels import label_records

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--corrections", default="0,1,2")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = synthesize(Path(tmp) / "deepfake", SynthConfig(n=args.n, seed=0),
                           progress=False).store
        t = time.perf_counter()
        label_records(store.path, out=Path(tmp) / "labels.csv", workers=args.workers,
                      progress=False)
        label_rate = args.n / (time.perf_counter() - t)
        print(f"{args.n} DeepFake ECGs (8 leads, 10 s, 500 Hz), {args.workers} processes")
        print(f"baseline, labeller alone: {label_rate:.1f} records/s")
        for c in (int(v) for v in args.corrections.split(",")):
            t = time.perf_counter()
            done = augment_store(store.path, Path(tmp) / f"warped-{c}",
                                 AugmentConfig(corrections=c), workers=args.workers,
                                 progress=False)
            rate = args.n / (time.perf_counter() - t)
            report = done.report
            print(f"ours, augment with corrections={c}: {rate:.1f} records/s "
                  f"({rate / label_rate:.2f}x the labeller's rate); {report['records']} warped, "
                  f"{report['given_up']} given up")
            for k, v in report["intervals"].items():
                print(f"    {k}: |measured - requested| median {v['median']:.1f}, 95th "
                      f"percentile {v['p95']:.1f}, within tolerance {v['within_tolerance']:.1%} "
                      f"of {v['requested']}, not measured {v['not_measured']}")
            for reason, count in report["given_up_reasons"].items():
                print(f"    given up: {reason} ({count})")
            rows.append({"corrections": c, "records_per_s": rate, "label_records_per_s":
                         label_rate, "ratio": rate / label_rate, **report})
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "workers": args.workers, "runs": rows},
                                        indent=2))


if __name__ == "__main__":
    main()
