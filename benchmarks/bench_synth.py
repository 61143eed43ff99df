"""DeepFake generation benchmark: ``synth`` against the package's own ``deepfakeecg.generate()``.

Run from the repository root::

    python benchmarks/bench_synth.py [--n 1000] [--memory-n 20000] [--device cuda]

Every run is a child process of its own, so that its time includes loading the model (as a user
pays it) and its peak RSS is its own. In one run of this script:

* baseline: ``deepfakeecg.generate(n, folder)``, the package's entry point (one ECG per forward
  pass, one ``np.savetxt`` text file per ECG);
* for reference: the package's module as it is, in batches of 32 with torch's threads, output
  kept in memory and not written anywhere (what batching alone gives);
* ours: ``synthesize()`` of ``n`` records into a signal store (what ``ecgtransfer synth`` does);
* ours at ``--memory-n`` records, for peak memory against ``n``.

Speeds are ECGs per second of the child's wall time from the call to its return, imports done
before the clock starts (each call loads the model, as a user pays it).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(mode: str, n: int, work: str, device: str) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore")  # the package's deprecated init
    import deepfakeecg

    from ecgtransfer.data.deepfake import SynthConfig, synthesize
    from ecgtransfer.data.pulse2pulse import load_generator

    # Imports are done; the clock starts with the call, which loads the model in every mode.
    t = time.perf_counter()
    if mode == "package":
        deepfakeecg.generate(n, work, start_id=0, run_device=device)
    elif mode == "batched":
        model = load_generator(device, fast=False)
        gen = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for start in range(0, n, 32):
                noise = torch.empty(min(32, n - start), 8, 5000).uniform_(-1, 1, generator=gen)
                (model(noise.to(device)) * 6000).int().cpu()
    else:
        synthesize(Path(work) / "store", SynthConfig(n=n, seed=0, device=device), progress=False)
    seconds = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "n": n, "seconds": seconds, "peak_rss_mb": peak_mb,
                      "threads": torch.get_num_threads()}))


def run(mode: str, n: int, device: str = "cpu") -> dict:
    with tempfile.TemporaryDirectory() as work:
        res = subprocess.run([sys.executable, __file__, "--_child", mode, str(n), work, device],
                             capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["rate"] = n / out["seconds"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="ECGs per timed run")
    ap.add_argument("--memory-n", type=int, default=20000,
                    help="ECGs of the larger run of ours, for memory against --n")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (baseline runs there too)")
    ap.add_argument("--_child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        mode, n, work, device = args._child
        _child(mode, int(n), work, device)
        return
    rows = [("`deepfakeecg.generate()` (baseline)", run("package", args.n, args.device)),
            ("package module, batches of 32, no output (reference)",
             run("batched", args.n, args.device)),
            ("`ecgtransfer synth` into a store", run("synth", args.n, args.device))]
    base = rows[0][1]["rate"]
    print(f"device {args.device}, {rows[0][1]['threads']} torch threads, {args.n} ECGs per run")
    print("| run | ECGs | seconds | ECGs/s | ratio | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['n']} | {r['seconds']:.1f} | {r['rate']:.0f} | "
              f"{r['rate'] / base:.1f}x | {r['peak_rss_mb']:.0f} |")
    if args.memory_n:
        big = run("synth", args.memory_n, args.device)
        print(f"| `ecgtransfer synth` into a store | {big['n']} | {big['seconds']:.1f} | "
              f"{big['rate']:.0f} | {big['rate'] / base:.1f}x | {big['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
