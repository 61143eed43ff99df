"""GPU benchmark, one script of at most about 5 minutes: for each registered model, training and
inference samples/s at the largest batch that fits, with bf16 autocast; DeepFake generation
ECGs/s on the GPU; and the data path's rate into pinned batches with DataLoader workers. One
table at the end.

Run from the repository root on a CUDA machine::

    python benchmarks/bench_gpu.py [--device cuda] [--seconds 2] [--out bench-gpu.json]

On a machine without CUDA (or with ``--smoke``) it runs in smoke mode on the CPU: batch 2, one
timed step per model, 8 DeepFakes, a 16-record store, no workers. The test suite runs it so,
which keeps the script working; its numbers mean nothing.

Models. Each registered model (``ecgtransfer models``) takes 8 leads at 100 Hz (1,000 samples)
and at 500 Hz (5,000 samples) with four outputs (the interval regressors). Starting at 64, the
batch is doubled while a training step (forward, smooth-L1 loss, backward, AdamW step) fits in
GPU memory, up to 16,384. At the largest batch that fits, training and inference (no grad)
samples/s are timed for ``--seconds`` each after two warm-up steps, under
``torch.autocast(dtype=bfloat16)`` (fp16 where the GPU has no bf16), as ``amp_dtype: auto``
trains. Peak GPU memory is reported.

Generation. ``ecgtransfer synth --device cuda`` (``synthesize``) makes ``--synth-n`` ECGs into a
temporary store, timed as a whole: model load, generation, int16 conversion and writes.

Data path. The generated store's 100 Hz copy is read through ``StoreDataset`` into shuffled
batches of 256 (pinned on CUDA) with 0, 2, 4 and 8 workers (no more than the machine's cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
MAX_BATCH = 16384


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, device: torch.device, seconds: float, batch: int, smoke: bool) -> float:
    for _ in range(1 if smoke else 2):
        step()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += batch
        _sync(device)
        if smoke or time.perf_counter() - t0 >= seconds:
            return n / (time.perf_counter() - t0)


def model_rates(name: str, samples: int, device: torch.device, dtype: torch.dtype | None,
                seconds: float, smoke: bool) -> dict:
    from ecgtransfer.models import create_model

    torch.manual_seed(0)
    model = create_model(name, in_channels=8, num_outputs=4).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def batches(b):
        return torch.randn(b, 8, samples, device=device), torch.randn(b, 4, device=device)

    def train_step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.smooth_l1_loss(model(x).float(), y)
        loss.backward()
        opt.step()

    batch = 2 if smoke else 64
    if not smoke:  # the largest batch whose training step fits
        while batch * 2 <= MAX_BATCH:
            try:
                train_step(*batches(batch * 2))
                _sync(device)
                batch *= 2
            except torch.OutOfMemoryError:
                break
            finally:
                opt.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    x, y = batches(batch)
    model.train()
    train = _timed(lambda: train_step(x, y), device, seconds, batch, smoke)

    @torch.no_grad()
    def infer():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            model(x)

    model.eval()
    inference = _timed(infer, device, seconds, batch, smoke)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    del model, opt, x, y
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"model": name, "fs": samples // 10, "batch": batch, "train_samples_per_s": train,
            "inference_samples_per_s": inference, "peak_gib": peak}


def generation_rate(folder: Path, n: int, device: torch.device) -> float:
    from ecgtransfer.data.deepfake import SynthConfig, synthesize

    t0 = time.perf_counter()
    synthesize(folder, SynthConfig(n=n, seed=0, device=str(device)), progress=False)
    return n / (time.perf_counter() - t0)


def data_rates(folder: Path, device: torch.device, seconds: float, smoke: bool) -> list[dict]:
    from torch.utils.data import DataLoader

    from ecgtransfer.data.dataset import StoreDataset
    from ecgtransfer.data.store import SignalStore

    store = SignalStore(folder)
    ds = StoreDataset(store, np.arange(len(store)), None, np.zeros(8, np.float32),
                      np.ones(8, np.float32), fs=100.0)
    cores = os.cpu_count() or 1
    rows = []
    batch = min(256, len(ds))
    for workers in ([0] if smoke else [w for w in (0, 2, 4, 8) if w <= cores]):
        loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                            generator=torch.Generator().manual_seed(0))
        n, t0, started = 0, 0.0, False
        done = False
        while not done:
            for x, _ in loader:
                x = x.to(device, non_blocking=True)
                if not started:
                    started, t0 = True, time.perf_counter()
                    continue
                n += len(x)
                if smoke or time.perf_counter() - t0 >= seconds:
                    done = True
                    break
        _sync(device)
        rows.append({"workers": workers, "batch": batch,
                     "records_per_s": n / max(time.perf_counter() - t0, 1e-9)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run (what the tests run)")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--synth-n", type=int, default=20000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from ecgtransfer.models import list_models

    smoke = args.smoke or not torch.cuda.is_available()
    device = torch.device("cpu" if smoke else args.device)
    dtype = None
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, autocast {dtype}",
              flush=True)
    else:
        print("smoke mode on the CPU: the numbers mean nothing", flush=True)
    rows = []
    for name in list_models():
        for samples in ((1000,) if smoke else (1000, 5000)):
            r = model_rates(name, samples, device, dtype, args.seconds, smoke)
            rows.append(r)
            print(f"{name:14s} {r['fs']:4d} Hz batch {r['batch']:6d}: train "
                  f"{r['train_samples_per_s']:10.0f}/s, inference "
                  f"{r['inference_samples_per_s']:10.0f}/s, peak {r['peak_gib']:.1f} GiB",
                  flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        n = 8 if smoke else args.synth_n
        generation = generation_rate(Path(tmp) / "df", n, device)
        print(f"DeepFake generation: {generation:.0f} ECGs/s ({n} records)", flush=True)
        data = data_rates(Path(tmp) / "df", device, args.seconds, smoke)
    print("\n| what | setting | batch | train /s | inference /s | peak GiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['fs']} Hz | {r['batch']} | {r['train_samples_per_s']:.0f} | "
              f"{r['inference_samples_per_s']:.0f} | {r['peak_gib']:.1f} |")
    print(f"| DeepFake generation | {n} ECGs | | | {generation:.0f} ECGs/s | |")
    for d in data:
        print(f"| data path, 100 Hz copy | {d['workers']} workers | {d['batch']} | | "
              f"{d['records_per_s']:.0f} records/s | |")
    if args.out:
        args.out.write_text(json.dumps({"device": str(device), "smoke": smoke, "models": rows,
                                        "generation_ecgs_per_s": generation, "data": data},
                                       indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
