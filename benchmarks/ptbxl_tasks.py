"""PTB-XL's six benchmark tasks: our macro AUROC beside the benchmark's published table.

Run from the repository root::

    python benchmarks/ptbxl_tasks.py [--root PTBXL_DIR] [--fs 100] [--epochs 10] [--cv 5]

``--cv 0`` trains on folds 1-8 and tests on fold 10, as the benchmark does (for a full
download).

Prepares the PTB-XL folder (default: the 350-record sample shipped in the package) and, for
each task (all, diagnostic, subdiagnostic, superdiagnostic, form, rhythm), fine-tunes
``resnet1d_fast`` from scratch with ``--cv`` fold cross-validation (PTB-XL's strat_folds
grouped), then prints the pooled out-of-fold macro AUROC with its 95% bootstrap interval beside
the published test-fold results of Strodthoff et al. (2021) for resnet1d_wang and inception1d.
On the sample the numbers show the tasks run, not where a model stands: the published ones
come from 17,000 training records.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

PUBLISHED = {  # task: (resnet1d_wang, inception1d), macro AUROC on fold 10 (Strodthoff et al.)
    "all": (0.919, 0.925), "diagnostic": (0.936, 0.931), "subdiagnostic": (0.928, 0.930),
    "superdiagnostic": (0.930, 0.921), "form": (0.880, 0.899), "rhythm": (0.946, 0.953)}


def main() -> None:
    from ecgtransfer.data.ptbxl import BENCHMARK_TASKS, prepare_ptbxl, sample_ptbxl_root
    from ecgtransfer.stages import Context, get_stage
    from ecgtransfer.stages.finetune import FinetuneConfig
    from ecgtransfer.training.targets import statement_targets

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--fs", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    where = "out-of-fold" if args.cv else "fold 10"
    print(f"| task | classes | records | ours: macro AUROC, {where} [95% CI] | "
          "resnet1d_wang (published) | inception1d (published) | seconds |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or sample_ptbxl_root()
        store = prepare_ptbxl(root, Path(tmp) / "store", fs=args.fs, progress=False).store
        for task in BENCHMARK_TASKS:
            classes, targets, reasons = statement_targets(store.index, task)
            started = time.perf_counter()
            result = get_stage("finetune").run(FinetuneConfig(
                store=str(store.path), task=task, strategy="scratch", cv=args.cv,
                epochs=args.epochs, batch_size=32, bootstrap=500, seed=args.seed, device="cpu",
                out=str(Path(tmp) / task), tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
                experiment="ptbxl-tasks"), Context(progress=False)).details
            seconds = time.perf_counter() - started
            low, high = result.intervals.get("macro_auroc", (float("nan"), float("nan")))
            wang, inception = PUBLISHED[task]
            print(f"| {task} | {len(classes)} | {int((reasons == '').sum())} | "
                  f"{result.test['macro_auroc']:.3f} [{low:.3f}, {high:.3f}] | {wang:.3f} | "
                  f"{inception:.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
