"""Pretrain benchmark: training speed of every registered model, and the default against the
study's ``inception1d`` on the same data.

Run from the repository root::

    python benchmarks/bench_pretrain.py [--part speed|accuracy|all] [--ptbxl ../shared/data/ptbxl-sample]
                                        [--epochs 20] [--seconds 8] [--out bench-pretrain.json]

Speed. For each model in the registry, at 500 Hz (5000 samples) and at 100 Hz (1000 samples):
training steps (forward, loss, backward, AdamW step) on batches of real PTB-XL records from the
sample store, ``torch`` with its default threads (2 on the reference machine); samples/s over
``--seconds`` after one warm-up step. Prints the default's ratio to ``inception1d`` at 500 Hz.

Accuracy. ``ecgtransfer pretrain`` (the real stage, through its API) on the PTB-XL sample store
labelled by ``ecgtransfer label``: one multi-output model for HR, PR, QRS and QT, folds 1-8 / 9
/ 10, 500 Hz, the same settings for both models (``--epochs``, batch 32, AdamW lr 1e-3, cosine,
no early stop); prints validation MAE at the best epoch and test MAE per interval, and the
wall time of each. The default runs with ``--default-seeds``; ``inception1d`` with seed 0 only
(about 30 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DEFAULT_PTBXL = HERE.parents[1] / "shared" / "data" / "ptbxl-sample"
BASELINE = "inception1d"


def labelled_store(ptbxl: Path, work: Path) -> Path:
    from ecgtransfer.features.labels import label_records
    from ecgtransfer.data.ptbxl import prepare_ptbxl

    store = prepare_ptbxl(ptbxl, work / "ptbxl", progress=False).store
    label_records(store.path, workers=2, progress=False)
    return store.path


def training_rate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  seconds: float) -> float:
    """Samples/s of training steps (forward, smooth-L1 loss, backward, AdamW step) on the
    batch ``x``, ``y`` for ``seconds``, after one warm-up step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step():
        opt.zero_grad()
        torch.nn.functional.smooth_l1_loss(model(x), y).backward()
        opt.step()

    step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += len(x)
    return n / (time.perf_counter() - t0)


def speed(store_path: Path, seconds: float) -> list[dict]:
    from ecgtransfer.data.store import SignalStore
    from ecgtransfer.data.transforms import resample
    from ecgtransfer.models import create_model, list_models

    store = SignalStore(store_path)
    rows = []
    for name in list_models():
        for fs in (500, 100):
            batch = 16
            x = np.stack([resample(store[i], store.fs, fs) for i in range(batch)])
            x = torch.from_numpy((x - x.mean()) / x.std())
            y = torch.randn(batch, 1, generator=torch.Generator().manual_seed(0))
            torch.manual_seed(0)
            model = create_model(name, in_channels=store.n_leads, num_outputs=1)
            rate = training_rate(model, x, y, seconds)
            params = sum(p.numel() for p in model.parameters())
            rows.append({"model": name, "fs": fs, "samples_per_s": rate, "params": params})
            print(f"{name:14s} {fs:4d} Hz  {rate:8.1f} samples/s  ({params / 1e6:.2f} M params)",
                  flush=True)
    return rows


def accuracy(store_path: Path, epochs: int, work: Path, runs: list[tuple[str, int]]) -> list[dict]:
    from ecgtransfer.stages.pretrain import PretrainConfig
    from ecgtransfer.stages import Context, get_stage

    rows = []
    for model, seed in runs:
        config = PretrainConfig(store=str(store_path), targets=["hr", "pr", "qrs", "qt"],
                                multi_output=True, model=model, epochs=epochs, batch_size=32,
                                patience=0, seed=seed, device="cpu",
                                out=str(work / f"run-{model}-{seed}"),
                                tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
                                experiment="bench-pretrain")
        t0 = time.perf_counter()
        (result,) = get_stage("pretrain").run(config, Context(progress=False)).details
        seconds = time.perf_counter() - t0
        history = json.loads((result.path / "result.json").read_text())
        import pandas as pd

        hist = pd.read_csv(result.path / "history.csv")
        best = hist.loc[hist["epoch"] == result.best_epoch].iloc[0]
        val = {t: float(best[f"val_mae_{t}"]) for t in ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms")}
        row = {"model": model, "seed": seed, "best_epoch": result.best_epoch, "val_mae": val,
               "test_mae": result.test_mae, "seconds": seconds, "counts": history["counts"]}
        rows.append(row)
        print(f"{model:14s} seed {seed}  best epoch {result.best_epoch:3d}  val MAE " +
              "  ".join(f"{k} {v:.2f}" for k, v in val.items()) + "  | test MAE " +
              "  ".join(f"{k} {v:.2f}" for k, v in result.test_mae.items()) +
              f"  [{seconds:.0f} s]", flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("speed", "accuracy", "all"), default="all")
    p.add_argument("--ptbxl", type=Path, default=DEFAULT_PTBXL)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--default-seeds", default="0,1,2",
                   help="seeds of the default model (inception1d: seed 0 only, it is slow)")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from ecgtransfer.models import DEFAULT_MODEL

    report: dict = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = labelled_store(args.ptbxl, work)
        if args.part in ("speed", "all"):
            print(f"== training speed, CPU, {torch.get_num_threads()} threads, batch 16 ==")
            rows = speed(store, args.seconds)
            report["speed"] = rows
            rate = {(r["model"], r["fs"]): r["samples_per_s"] for r in rows}
            ratio = rate[(DEFAULT_MODEL, 500)] / rate[(BASELINE, 500)]
            report["speed_ratio_500hz"] = ratio
            print(f"{DEFAULT_MODEL} / {BASELINE} at 500 Hz: {ratio:.1f}x")
        if args.part in ("accuracy", "all"):
            print(f"== validation MAE, PTB-XL sample, multi-output HR/PR/QRS/QT, {args.epochs} "
                  "epochs each ==")
            seeds = [int(s) for s in args.default_seeds.split(",")]
            rows = accuracy(store, args.epochs, work,
                            [(DEFAULT_MODEL, s) for s in seeds] + [(BASELINE, 0)])
            report["accuracy"] = rows
            ours = [r for r in rows if r["model"] == DEFAULT_MODEL]
            base = next(r for r in rows if r["model"] == BASELINE)
            for key in base["val_mae"]:
                mean = float(np.mean([r["val_mae"][key] for r in ours]))
                print(f"val MAE {key:7s} {DEFAULT_MODEL} mean of {len(ours)} seeds {mean:6.2f}"
                      f"  {BASELINE} {base['val_mae'][key]:6.2f}  ratio {mean / base['val_mae'][key]:.2f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
