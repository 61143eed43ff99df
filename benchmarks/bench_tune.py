"""What pruning saves a search: the same Optuna search with median pruning and without (the
baseline), in one run, on the PTB-XL sample.

Run from the repository root::

    python benchmarks/bench_tune.py [--trials 20] [--epochs 10] [--space pipelines/spaces/finetune_hpo.yaml]

Both searches sample with the same seed (TPE), train every trial with the same seed and
settings (superdiagnostic, from scratch, 2 CPU threads), and count the same trials. Prints each
search's wall time, trials pruned, epochs trained and best validation macro AUROC, and the
ratio of the wall times. Pruning changes what TPE samples after the first pruned trial (a pruned
trial reports a partial value), so the two searches are not the same trials; the best values say
whether pruning cost the search its answer.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def search(store: Path, folder: Path, space: Path, trials: int, epochs: int, pruner: str):
    from ecgtransfer.config import from_dict
    from ecgtransfer.stages import Context
    from ecgtransfer.stages.tune import TuneConfig, tune

    config = from_dict(TuneConfig, {
        "space": str(space), "trials": trials, "pruner": pruner, "out": str(folder / pruner),
        "tracking_uri": f"sqlite:///{folder / pruner / 'mlflow.db'}",
        "storage": f"sqlite:///{folder / pruner / 'optuna.db'}",
        "store": str(store), "task": "superdiagnostic", "strategy": "scratch", "threads": 2,
        "epochs": epochs, "patience": 0, "bootstrap": 0})
    t0 = time.perf_counter()
    result = tune(config, Context(progress=False))
    return result, time.perf_counter() - t0


def main() -> None:
    import pandas as pd

    from ecgtransfer.data.ptbxl import prepare_ptbxl, sample_ptbxl_root

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--space", type=Path, default=REPO / "pipelines/spaces/finetune_hpo.yaml")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = prepare_ptbxl(sample_ptbxl_root(), folder / "ptbxl", fs=100,
                              progress=False).store.path
        rows = {}
        for pruner in ("none", "median"):
            result, seconds = search(store, folder, args.space, args.trials, args.epochs, pruner)
            table = pd.read_csv(result.path / "trials.csv")
            rows[pruner] = {"wall s": seconds, "complete": result.counts["complete"],
                            "pruned": result.counts["pruned"], "failed": result.counts["fail"],
                            "epochs trained": int(table["user_attrs_epochs"].sum()),
                            "best val macro AUROC": result.best_value}
    frame = pd.DataFrame(rows).T
    print(f"{args.trials} trials of {args.space.name}, {args.epochs} epochs each, 2 threads")
    print(frame.to_markdown(floatfmt=".3f"))
    print(f"wall time, median pruning / none: "
          f"{rows['median']['wall s'] / rows['none']['wall s']:.2f}")


if __name__ == "__main__":
    main()
