"""Data-path benchmark: records per second from a signal store into collated training batches,
with the DataLoader's workers, at the store's own rate and resampled; against the rate at which
``resnet1d_fast`` trains on this machine.

Run from the repository root::

    python benchmarks/bench_data.py [--n 5000] [--seconds 6] [--out bench-data.json]

The store is a real DeepFake store (``ecgtransfer synth``, 8 leads, 10 s, 500 Hz) of ``--n``
records, made in a temporary folder; a 100 Hz store of the same records is made from it. Each
row streams shuffled batches of 256 through ``torch.utils.data.DataLoader`` with 0, 1 and 2
workers for ``--seconds`` after one warm-up batch, and reports records/s into collated batches:

- ``500 Hz store at 500 Hz`` and ``100 Hz store at 100 Hz``: reading as stored;
- ``500 Hz store at 100 Hz, per record`` (the baseline): each record resampled when it is read,
  at every epoch, as ``StoreDataset`` did before 0.4.0;
- ``500 Hz store at 100 Hz, resampled copy`` (ours): ``StoreDataset`` reads the store's copy at
  100 Hz (:func:`ecgtransfer.data.resampled.at_rate`), made once; the time to make it is
  reported apart;
- ``ready tensors``: a dataset that reads nothing, the DataLoader's own ceiling (its batching
  and, with workers, the transfer of each batch between processes).

The ratio ours / baseline is printed per worker count. Last, ``resnet1d_fast``'s training rate
at 100 Hz (forward, loss, backward, AdamW step; batch 256, torch's threads) says whether the data
path keeps up with it here. Every number is one run on this machine; memory-mapped reads come
from the page cache after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

BATCH = 256


class Ready(torch.utils.data.Dataset):
    """The loader's own ceiling: records that are already tensors (no reading at all), so what
    is measured is the DataLoader's batching and, with workers, its inter-process transfer."""

    def __init__(self, n, shape):
        self.n, self.x = n, torch.zeros(shape)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.x, torch.empty(0)


class PerRecordResampling(torch.utils.data.Dataset):
    """The baseline: ``StoreDataset`` as it was before 0.4.0, resampling each record as it is
    read (every epoch)."""

    def __init__(self, store, positions, fs):
        self.store, self.positions, self.fs = store, np.asarray(positions), float(fs)
        self.n_samples = int(round(10 * self.fs))

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, i):
        from ecgtransfer.data.transforms import resample

        x = resample(self.store[int(self.positions[i])], self.store.fs, self.fs)
        x = x[:, :self.n_samples]
        return torch.from_numpy(np.ascontiguousarray(x)), torch.empty(0)


def rate(dataset, workers: int, seconds: float) -> float:
    """Records/s into collated batches, shuffled, after one warm-up batch."""
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(0))
    n, t0, started = 0, 0.0, False
    while True:
        for x, _ in loader:
            if not started:  # the warm-up batch (and the workers' start) is not counted
                started, t0 = True, time.perf_counter()
                continue
            n += len(x)
            if time.perf_counter() - t0 >= seconds:
                return n / (time.perf_counter() - t0)


def resnet_rate(seconds: float) -> float:
    """``resnet1d_fast``'s training samples/s at 100 Hz, batch 256."""
    from bench_pretrain import training_rate

    from ecgtransfer.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet1d_fast", in_channels=8, num_outputs=4)
    return training_rate(model, torch.randn(BATCH, 8, 1000), torch.randn(BATCH, 4), seconds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from ecgtransfer.data.dataset import StoreDataset
    from ecgtransfer.data.deepfake import SynthConfig, synthesize
    from ecgtransfer.data.resampled import at_rate
    from ecgtransfer.data.store import SignalStore

    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthesize(Path(tmp) / "df500", SynthConfig(n=args.n, seed=0), progress=False)
        store = SignalStore(Path(tmp) / "df500")
        print(f"DeepFake store: {len(store)} records at {store.fs:g} Hz "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        t0 = time.perf_counter()
        copy = at_rate(store, 100.0)
        made = time.perf_counter() - t0
        print(f"resampled copy at 100 Hz made once in {made:.1f} s "
              f"({len(store) / made:.0f} records/s, one process)", flush=True)
        t0 = time.perf_counter()
        at_rate(SignalStore(store.path), 100.0)
        print(f"found again in {time.perf_counter() - t0:.2f} s", flush=True)
        zeros, ones = np.zeros(8, np.float32), np.ones(8, np.float32)
        everything = np.arange(len(store))
        cases = {
            "500 Hz store at 500 Hz": StoreDataset(store, everything, None, zeros, ones),
            "100 Hz store at 100 Hz": StoreDataset(copy, everything, None, zeros, ones),
            "500 Hz store at 100 Hz, per record (baseline)": PerRecordResampling(store, everything,
                                                                                 100.0),
            "500 Hz store at 100 Hz, resampled copy (ours)": StoreDataset(store, everything, None,
                                                                           zeros, ones, fs=100.0),
            "ready tensors at 100 Hz (the loader's ceiling)": Ready(len(store), (8, 1000)),
        }
        rows = []
        for name, dataset in cases.items():
            for w in workers:
                r = rate(dataset, w, args.seconds)
                rows.append({"case": name, "workers": w, "records_per_s": r})
                print(f"{name:48s} workers={w}: {r:9.0f} records/s", flush=True)
    train = resnet_rate(args.seconds)
    print(f"\nresnet1d_fast training at 100 Hz, batch {BATCH}: {train:.0f} records/s "
          f"(torch threads {torch.get_num_threads()})")
    by = {(r["case"], r["workers"]): r["records_per_s"] for r in rows}
    print("\n| workers | baseline (per record) | ours (resampled copy) | ratio | loader's ceiling "
          "| training |")
    print("|---|---|---|---|---|---|")
    for w in workers:
        base = by[("500 Hz store at 100 Hz, per record (baseline)", w)]
        ours = by[("500 Hz store at 100 Hz, resampled copy (ours)", w)]
        ceiling = by[("ready tensors at 100 Hz (the loader's ceiling)", w)]
        print(f"| {w} | {base:.0f} | {ours:.0f} | {ours / base:.1f}x | {ceiling:.0f} "
              f"| {train:.0f} |")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "copy_seconds": made, "n": args.n,
                                        "training_records_per_s": train}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
