"""Fine-tune benchmark: does a pretrained trunk help diagnosis? Scratch against the study's two
transfers (the QRS regressor alone, all four combined), from PTB-XL half A to half B and from
DeepFake ECGs to PTB-XL, at several training fractions and seeds.

Run from the repository root::

    python benchmarks/bench_finetune.py [--ptbxl ../shared/data/ptbxl-sample] [--synthetic 512]
                                        [--epochs 20] [--seeds 0,1,2] [--fractions 0.25,1.0]
                                        [--out bench-finetune.json]

What it does, through the stages' APIs (the same code as the commands):

1. Prepares the PTB-XL sample (8 leads, 500 Hz) and ``--synthetic`` DeepFake ECGs (seed 0), and
   labels both with ``ecgtransfer label``.
2. Pretrains one ``resnet1d_fast`` regressor per interval (HR, PR, QRS, QT) at 100 Hz for
   ``--epochs``: on PTB-XL half A (its folds), and on the DeepFake store (a random 80/10/10
   split).
3. Fine-tunes the single-label five-superclass classifier (full fine-tuning, ``--epochs``,
   batch 32, AdamW lr 1e-3, cosine, patience 8) with strategies ``scratch`` (the architecture
   of one trunk, random weights), ``single`` (QRS), ``scratch x4`` (four random trunks side by
   side: the baseline of the same size as ``combined``) and ``combined`` (all four):
   A->B within half B's folds, and DeepFake->PTB-XL on folds 1-8 / 9 / 10.
4. Prints test macro AUROC, accuracy and macro F1, mean and standard deviation over seeds, per
   setting, strategy and training fraction, and the wall time of each fine-tune.

The sample has 350 records, so the test folds are small (B: about 16 single-label records; all:
about 30): read the numbers as a check that the machinery runs end to end and as an order of
magnitude, not as the study's result (which used the 21,799 records of PTB-XL).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_pretrain import DEFAULT_PTBXL, labelled_store  # noqa: E402

TARGETS = ["hr", "pr", "qrs", "qt"]


def synthetic_store(n: int, work: Path) -> Path:
    from ecgtransfer.data.deepfake import SynthConfig, synthesize
    from ecgtransfer.features.labels import label_records

    store = synthesize(work / "deepfake", SynthConfig(n=n, seed=0), progress=False).store
    label_records(store.path, workers=2, progress=False)
    return store.path


def pretrain_on(store: Path, split: str, epochs: int, work: Path, uri: str) -> Path:
    from ecgtransfer.stages.pretrain import PretrainConfig
    from ecgtransfer.stages import Context, get_stage

    out = work / f"pretrain-{store.name}-{split}"
    config = PretrainConfig(store=str(store), targets=TARGETS, split=split, fs=100.0,
                            epochs=epochs, batch_size=32, patience=8, seed=0, device="cpu",
                            out=str(out), tracking_uri=uri, experiment="bench-pretrain")
    t0 = time.perf_counter()
    results = get_stage("pretrain").run(config, Context(progress=False)).details
    shown = ", ".join(f"{k}: {v:.1f}" for r in results for k, v in r.test_mae.items())
    print(f"pretrained on {store.name} ({split}) in {time.perf_counter() - t0:.0f} s; test MAE "
          f"{shown}", flush=True)
    return out


def finetune_grid(ptbxl: Path, sources: dict[str, tuple[Path, str]], epochs: int,
                  seeds: list[int], fractions: list[float], work: Path, uri: str) -> list[dict]:
    from ecgtransfer.stages.finetune import FinetuneConfig
    from ecgtransfer.stages import Context, get_stage

    rows = []
    for setting, (pretrained, split) in sources.items():
        qrs, every = [str(pretrained / "qrs")], [str(pretrained / t) for t in TARGETS]
        strategies = {"scratch": ("scratch", qrs), "single (QRS)": ("single", qrs),
                      "scratch x4": ("scratch", every), "combined": ("combined", every)}
        for fraction in fractions:
            for label, (strategy, refs) in strategies.items():
                for seed in seeds:
                    out = work / f"ft-{len(rows)}"
                    config = FinetuneConfig(
                        store=str(ptbxl), sources=refs, strategy=strategy, split=split,
                        train_fraction=fraction, epochs=epochs, batch_size=32, seed=seed,
                        device="cpu", bootstrap=200, out=str(out), tracking_uri=uri,
                        experiment="bench-finetune")
                    t0 = time.perf_counter()
                    r = get_stage("finetune").run(config, Context(progress=False)).details
                    row = {"setting": setting, "strategy": label, "fraction": fraction,
                           "seed": seed, "seconds": time.perf_counter() - t0,
                           "n_train": r.counts["train"]["used"], "n_test": r.counts["test"]["used"],
                           "best_epoch": r.best_epoch,
                           **{k: r.test[k] for k in ("macro_auroc", "accuracy", "macro_f1")}}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def summary(rows: list[dict]) -> None:
    import pandas as pd

    table = pd.DataFrame(rows)
    keys = ["setting", "fraction", "strategy"]
    agg = table.groupby(keys, sort=False).agg(
        n_train=("n_train", "first"), n_test=("n_test", "first"),
        auroc=("macro_auroc", "mean"), auroc_sd=("macro_auroc", "std"),
        accuracy=("accuracy", "mean"), accuracy_sd=("accuracy", "std"),
        macro_f1=("macro_f1", "mean"), seconds=("seconds", "mean"))
    with pd.option_context("display.width", 160, "display.precision", 3):
        print(agg.reset_index().to_string(index=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ptbxl", type=Path, default=DEFAULT_PTBXL)
    parser.add_argument("--synthetic", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fractions", default="0.25,1.0")
    parser.add_argument("--out", type=Path, default=Path("bench-finetune.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        ptbxl = labelled_store(args.ptbxl, work)
        synthetic = synthetic_store(args.synthetic, work)
        sources = {"A->B": (pretrain_on(ptbxl, "A", args.epochs, work, uri), "B"),
                   "DeepFake->PTB-XL": (pretrain_on(synthetic, "random", args.epochs, work, uri),
                                        "folds")}
        rows = finetune_grid(ptbxl, sources, args.epochs, seeds, fractions, work, uri)
    summary(rows)
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
