"""The pathology study's numbers and figures, read from a finished `pipelines/pathology_study.yaml`
run (or its full-size twin): nothing is trained here.

Run from the repository root, with the overrides the pipeline was run with::

    ecgtransfer run pipelines/pathology_study.yaml --set ludb.input=D --set ludb_scores.reference=D
    python benchmarks/pathology_study.py [--pipeline pipelines/pathology_study.yaml] \\
        --set ludb.input=D --set ludb_scores.reference=D [--json docs/pathology_study.json]

The pipeline is planned first (``ecgtransfer run --plan``): if any stage would run again (its
settings or the code behind it changed since), the script stops, so the figures always follow
the code. It then reads each stage's ``stage.json`` (time), the two ``score`` stages'
``scores.csv`` and the two ``compare`` stages' ``comparison.csv`` and ``per_class.csv``, and
writes:

* ``docs/figures/pathology_strata.png``: regressor MAE per stratum, DeepFake against DeepFake
  plus warped, on PTB-XL (truth: the labeller) and LUDB (truth: the cardiologists);
* ``docs/figures/pathology_per_class.png``: AUROC difference (DeepFake plus warped minus
  DeepFake) per interval-defined diagnosis and train fraction, with its paired interval;
* ``--json``: every number the docs quote; Markdown tables are printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLASSES = ("SBRAD", "STACH", "1AVB", "CLBBB", "CRBBB", "IRBBB", "LAFB", "LNGQT", "CD")
"""The diagnoses the issue names: defined by an interval (and CD, the superclass)."""


def _folders(pipeline) -> dict[str, Path]:
    from ecgtransfer.pipeline import plan_pipeline

    rows = plan_pipeline(pipeline)
    stale = [f"{r.name} ({r.why})" for r in rows if r.action != "reuse"]
    if stale:
        raise SystemExit("these stages would run again, so their outputs do not follow the "
                         f"code: {', '.join(stale)}; run the pipeline first")
    return {r.name: pipeline.work / r.name / r.fingerprint for r in rows}


def _seconds(folders: dict[str, Path]) -> dict[str, float]:
    return {name: float(json.loads((f / "stage.json").read_text()).get("seconds") or 0.0)
            for name, f in folders.items()}


def _scores(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "scores.csv")


def _strata_figure(tables: dict[str, pd.DataFrame], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = ["hr", "pr", "qrs", "qt"]
    fig, axes = plt.subplots(len(tables), 4, figsize=(18, 3.6 * len(tables)), squeeze=False)
    for row, (where, table) in enumerate(tables.items()):
        models = list(dict.fromkeys(table["model"]))
        for col, target in enumerate(targets):
            ax = axes[row][col]
            part = table[table["target"] == target]
            strata = list(dict.fromkeys(part["stratum"]))
            x = np.arange(len(strata))
            width = 0.8 / len(models)
            for j, model in enumerate(models):
                m = part[part["model"] == model].set_index("stratum").reindex(strata)
                y = m["mae"].to_numpy(np.float64)
                err = np.abs(np.vstack([y - m["mae_low"], m["mae_high"] - y]))
                ax.bar(x + (j - (len(models) - 1) / 2) * width, y, width,
                       yerr=np.nan_to_num(err), capsize=2, label=model)
            n = part.drop_duplicates("stratum").set_index("stratum")["n_records"]
            ax.set_xticks(x, [f"{s}\nn={n[s]}" for s in strata], fontsize=7)
            ax.set_title(f"{where}: {target.upper()}", fontsize=9)
            ax.set_ylabel(f"MAE ({part['unit'].iloc[0]})")
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _per_class_figure(per_class: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = sorted(per_class["train_fraction"].unique())
    fig, axes = plt.subplots(1, len(fractions), figsize=(4.6 * len(fractions), 4.2),
                             squeeze=False, sharey=True)
    for ax, fraction in zip(axes[0], fractions):
        part = per_class[per_class["train_fraction"] == fraction].set_index("class")
        part = part.reindex([c for c in CLASSES if c in part.index])
        y = np.arange(len(part))
        d = part["delta"].to_numpy(np.float64)
        err = np.abs(np.vstack([d - part["delta_low"], part["delta_high"] - d]))
        ax.barh(y, d, xerr=np.nan_to_num(err), color="tab:blue", alpha=0.8)
        ax.set_yticks(y, [f"{c} ({int(p)})" for c, p in zip(part.index, part["positives"])],
                      fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"train fraction {fraction:g}", fontsize=9)
        ax.set_xlabel("AUROC: DeepFake+warped - DeepFake (95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _md(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".3f")


def main() -> None:
    from ecgtransfer.pipeline import load_pipeline

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", default=str(REPO / "pipelines" / "pathology_study.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="the overrides the pipeline was run with")
    ap.add_argument("--figures", default=str(REPO / "docs" / "figures"))
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args()

    pipeline = load_pipeline(args.pipeline, args.set)
    folders = _folders(pipeline)
    seconds = _seconds(folders)
    scores = {"PTB-XL (labeller)": _scores(folders["ptbxl_scores"]),
              "LUDB (cardiologists)": _scores(folders["ludb_scores"])}
    comparison = pd.read_csv(folders["compare"] / "comparison.csv")
    sources = pd.read_csv(folders["compare_sources"] / "per_class.csv")
    against = sources[np.isfinite(sources["delta"])]
    against = against[against["class"].isin(CLASSES)]
    pairs_vs_scratch = pd.read_csv(folders["compare"] / "per_class.csv")
    pairs_vs_scratch = pairs_vs_scratch[pairs_vs_scratch["class"].isin(CLASSES)
                                        & np.isfinite(pairs_vs_scratch["delta"])]

    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    _strata_figure(scores, figures / "pathology_strata.png")
    _per_class_figure(against, figures / "pathology_per_class.png")

    print(f"time: {sum(seconds.values()):.0f} s in all; "
          + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    for where, table in scores.items():
        print(f"\n{where}")
        show = table[["model", "target", "stratum", "n_records", "mae", "mae_low", "mae_high",
                      "delta", "delta_low", "delta_high"]]
        print(_md(show))
    print("\nmacro AUROC")
    print(_md(comparison[["task", "source", "strategy", "train_fraction", "seeds",
                          "macro_auroc", "macro_auroc_low", "macro_auroc_high"]]))
    for name in ("compare", "compare_sources"):
        summary = json.loads((folders[name] / "stage.json").read_text()).get("summary", "")
        print(f"\n{name}:\n" + "\n".join(line for line in summary.splitlines()
                                           if " vs " in line and "per class" not in line))
    print("\nper class, DeepFake+warped - DeepFake")
    print(_md(against[["task", "class", "positives", "train_fraction", "auroc", "delta",
                       "delta_low", "delta_high"]]))
    print("\nper class, each source - scratch x4")
    print(_md(pairs_vs_scratch[["task", "source", "class", "positives", "train_fraction",
                                "auroc", "delta", "delta_low", "delta_high"]]))
    if args.json:
        out = {"seconds": seconds, "total_seconds": sum(seconds.values()),
               "scores": {k: v.to_dict(orient="records") for k, v in scores.items()},
               "comparison": comparison.to_dict(orient="records"),
               "per_class_vs_deepfake": against.to_dict(orient="records"),
               "per_class_vs_scratch": pairs_vs_scratch.to_dict(orient="records")}
        Path(args.json).write_text(json.dumps(out, indent=1, default=float) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
