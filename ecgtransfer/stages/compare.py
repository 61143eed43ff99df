"""Compare fine-tune runs: scratch against transfer, by source, freezing and train fraction.

Reads finished ``finetune`` runs from MLflow (their tags say what each run was), groups the runs
that differ only in seed, and reports each metric as the mean over seeds with a 95% interval: a
t interval over the seeds when there are two or more, else the run's own bootstrap interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage
from ecgtransfer.tracking import TAG as _TAG

__all__ = ["METRICS", "CompareConfig", "compare", "finetune_runs", "comparison_table",
           "write_comparison", "plot_comparison", "summary_text"]

METRICS = ("accuracy", "macro_auroc", "macro_f1")
GROUP = ("task", "split", "source", "source_targets", "strategy", "trunks", "freeze",
         "train_fraction", "setting")
"""What makes runs comparable: runs equal in all of these differ only in seed. ``setting`` is a
hash of every other fine-tune setting (epochs, lr, head, ...), so runs with other
hyperparameters are never averaged together."""
_COLUMNS = ["run_id", "run_name", *GROUP, "seed", "n_train", "n_test"] + [f"{m}{s}" for m in METRICS
                                                     for s in ("", "_ci_low", "_ci_high")]


def finetune_runs(experiments: Sequence[str] = ("ecgtransfer-finetune",),
                  tracking_uri: str | None = None, pipeline_run: str | None = None,
                  run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per finished fine-tune run: what it was (tags) and its test metrics.

    Parameters
    ----------
    experiments : sequence of str
        MLflow experiment names; one that does not exist is an error naming it.
    tracking_uri : str, optional
        Default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
    pipeline_run : str, optional
        Only the runs of this pipeline run (tag ``ecgtransfer.pipeline_run``).
    run_ids : sequence of str, optional
        Only these runs.
    """
    from ecgtransfer import tracking

    tracking.setup(tracking_uri)
    query = f"tags.{_TAG}stage = 'finetune' and attributes.status = 'FINISHED'"
    if pipeline_run:
        query += f" and tags.{_TAG}pipeline_run = '{pipeline_run}'"
    if run_ids is not None:
        if not run_ids:
            return pd.DataFrame(columns=_COLUMNS)
        query += " and attributes.run_id IN (" + ", ".join(f"'{r}'" for r in run_ids) + ")"
    runs = tracking.search_runs(list(experiments), query)
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        row = {"run_id": run.info.run_id, "run_name": tags.get("mlflow.runName", ""),
               **{k: tags.get(_TAG + k, "") for k in GROUP}, "seed": tags.get(_TAG + "seed", "")}
        row["train_fraction"] = float(row["train_fraction"] or 1.0)
        for n in ("n_train", "n_test"):
            row[n] = float(run.data.params.get(f"data.{n}", "nan") or "nan")
        if not row["trunks"]:  # a run from before the tag: one trunk per source target
            row["trunks"] = str(len([t for t in row["source_targets"].split(",") if t]) or 1)
        if row["strategy"] == "scratch":  # older runs were tagged with the borrowed source
            row["source"], row["source_targets"] = "none", ""
        for m in METRICS:
            row[m] = metrics.get(f"test_{m}", np.nan)
            row[f"{m}_ci_low"] = metrics.get(f"test_{m}_ci_low", np.nan)
            row[f"{m}_ci_high"] = metrics.get(f"test_{m}_ci_high", np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=_COLUMNS)


def comparison_table(runs: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Runs that differ only in seed, grouped: per metric its mean and a ``level`` interval.

    The interval is Student's t over the seeds (``mean ± t * sd / sqrt(n)``) for two or more
    seeds, else the one run's bootstrap interval; column ``interval`` says which.
    """
    from scipy import stats

    out = []
    for key, group in runs.groupby(list(GROUP), sort=True, dropna=False):
        row = dict(zip(GROUP, key))
        n = len(group)
        row["seeds"] = n
        row["n_train"], row["n_test"] = _largest(group["n_train"]), _largest(group["n_test"])
        row["interval"] = f"t over {n} seeds" if n > 1 else "bootstrap"
        for m in METRICS:
            values = group[m].to_numpy(np.float64)
            mean = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
            if n > 1:
                half = stats.t.ppf(0.5 + level / 2, n - 1) * np.nanstd(values, ddof=1) / np.sqrt(n)
                low, high = max(mean - half, 0.0), min(mean + half, 1.0)  # metrics in [0, 1]
            else:
                low, high = float(group[f"{m}_ci_low"].iloc[0]), float(group[f"{m}_ci_high"].iloc[0])
            row.update({m: mean, f"{m}_low": low, f"{m}_high": high})
        out.append(row)
    columns = [*GROUP, "seeds", "n_train", "n_test", "interval"] + [
        f"{m}{s}" for m in METRICS for s in ("", "_low", "_high")]
    return pd.DataFrame(out, columns=columns)


def paired_differences(runs: pd.DataFrame, metric: str = "macro_auroc",
                       level: float = 0.95) -> pd.DataFrame:
    """Each transfer group against its scratch baseline, seed by seed.

    The baseline is the scratch group of the same task, split, train fraction and number of
    trunks (four random trunks for four pretrained ones), with the same freezing if there is
    one, else trained in full. Runs pair by seed; the difference is
    ``transfer - scratch`` per pair, reported as the mean with a Student's t interval over the
    pairs (NaN with one pair) and the count of pairs transfer won. The interval is over seeds on
    the same test records: it leaves out the test set's own sampling.

    Returns
    -------
    pandas.DataFrame
        One row per transfer group: its ``GROUP`` keys, ``pairs``, ``wins``, ``delta``,
        ``delta_low``, ``delta_high``, ``n_test``.
    """
    from scipy import stats

    keys = ["task", "split", "train_fraction", "trunks"]
    scratch = runs[runs["strategy"] == "scratch"]
    out = []
    for key, group in runs[runs["strategy"] != "scratch"].groupby(list(GROUP), sort=True,
                                                                   dropna=False):
        row = dict(zip(GROUP, key))
        base = scratch
        for k in keys:
            base = base[base[k] == row[k]]
        same = base[base["freeze"] == row["freeze"]]
        base = same if not same.empty else base[base["freeze"] == "full"]
        if base.empty:
            continue
        settings = base["setting"].value_counts()  # one baseline: its most common setting
        base = base[base["setting"] == settings.index[0]].drop_duplicates("seed")
        both = group.merge(base, on="seed", suffixes=("", "_scratch"))
        diff = (both[metric] - both[f"{metric}_scratch"]).to_numpy(np.float64)
        diff = diff[np.isfinite(diff)]
        if not len(diff):
            continue
        mean, low, high = float(diff.mean()), np.nan, np.nan
        if len(diff) > 1:
            half = stats.t.ppf(0.5 + level / 2, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
            low, high = mean - half, mean + half
        out.append({**row, "pairs": len(diff), "wins": int((diff > 0).sum()), "delta": mean,
                    "delta_low": low, "delta_high": high,
                    "n_test": _largest(group["n_test"])})
    return pd.DataFrame(out, columns=[*GROUP, "pairs", "wins", "delta", "delta_low",
                                      "delta_high", "n_test"])


def _largest(values: pd.Series) -> float:
    finite = values.to_numpy(np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if len(finite) else np.nan


def _label(row: pd.Series) -> str:
    if row["strategy"] == "scratch":
        n = int(row["trunks"] or 1)
        return "scratch" if n == 1 else f"scratch, combined-size ({n} trunks)"
    return f"{row['strategy']} {row['source_targets'] or '?'} from {row['source'] or '?'} ({row['freeze']})"


def plot_comparison(table: pd.DataFrame, metric: str = "macro_auroc"):
    """``metric`` against train fraction, one line (with its interval) per strategy and source;
    one panel per task."""
    from ecgtransfer.plots import figure

    tasks = sorted(table["task"].unique()) or ["single_label"]
    fig, axes = figure(len(tasks), width=5.6, height=4.2)
    for ax, task in zip(axes, tasks):
        part = table[table["task"] == task].assign(label=lambda d: d.apply(_label, axis=1))
        for label, line in part.groupby("label", sort=True):
            line = line.sort_values("train_fraction")
            x = line["train_fraction"].to_numpy()
            ax.plot(x, line[metric], marker="o", label=label)
            ax.fill_between(x, line[f"{metric}_low"], line[f"{metric}_high"], alpha=0.15)
        ax.set(title=f"{task}: test {metric.replace('_', ' ')}", xlabel="train fraction",
               ylabel=metric.replace("_", " "))
        if len(part["train_fraction"].unique()) > 1:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _markdown(table: pd.DataFrame) -> str:
    shown = table[list(GROUP) + ["seeds"]].copy()
    for n in ("n_train", "n_test"):
        shown[n] = ["?" if not np.isfinite(v) else f"{v:.0f}" for v in table[n]]
    for m in METRICS:
        shown[m] = [("n/a" if not np.isfinite(v) else f"{v:.3f}" if not np.isfinite(lo)
                     else f"{v:.3f} [{lo:.3f}, {hi:.3f}]")
                    for v, lo, hi in zip(table[m], table[f"{m}_low"], table[f"{m}_high"])]
    return shown.to_markdown(index=False) + "\n"


def write_comparison(table: pd.DataFrame, out: str | Path, metric: str = "macro_auroc") -> dict[str, Path]:
    """``comparison.csv``, ``comparison.md`` and ``comparison.png`` in ``out``; returns their
    paths. Each file is written whole or not at all."""
    from ecgtransfer.files import atomic_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".comparison.*.tmp"):  # left by a run killed outright (SIGKILL)
        stale.unlink(missing_ok=True)
    paths = {"csv": out / "comparison.csv", "md": out / "comparison.md",
             "png": out / "comparison.png"}
    with atomic_file(paths["csv"]) as f:
        table.to_csv(f, index=False)
    with atomic_file(paths["md"]) as f:
        f.write(_markdown(table))
    fig = plot_comparison(table, metric)
    with atomic_file(paths["png"], binary=True) as f:
        fig.savefig(f, format="png", dpi=110)
    return paths


def sentences(diffs: pd.DataFrame, metric: str = "macro_auroc") -> list[str]:
    """The paired differences as sentences a researcher reads: ``single qrs from deepfake
    (full) vs scratch at train fraction 1: +0.030 macro AUROC [-0.010, +0.070] over 3 seeds
    (3 won), 46 test records``."""
    name = metric.replace("_", " ").replace("auroc", "AUROC").replace("f1", "F1")
    out = []
    for _, r in diffs.iterrows():
        interval = ("" if not np.isfinite(r["delta_low"])
                    else f" [{r['delta_low']:+.3f}, {r['delta_high']:+.3f}]")
        n_test = f", {int(r['n_test'])} test records" if np.isfinite(r["n_test"]) else ""
        out.append(f"{_label(r)} vs scratch at train fraction {r['train_fraction']:g}: "
                   f"{r['delta']:+.3f} {name}{interval} over {r['pairs']} seed"
                   f"{'s' if r['pairs'] != 1 else ''} ({r['wins']} won){n_test}")
    return out


def summary_text(table: pd.DataFrame) -> str:
    """The table as printed by ``ecgtransfer compare``."""
    if table.empty:
        return "no finished fine-tune runs"
    return _markdown(table)


@dataclass(frozen=True, kw_only=True)
class CompareConfig:
    """Settings of ``ecgtransfer compare``."""

    experiment: list[str] = setting([], "MLflow experiment(s) of the fine-tune runs "
                                    "(comma-separated; default: the most recent pipeline's, else "
                                    "ecgtransfer-finetune)", role="tracking", metavar="NAME")
    tracking_uri: str | None = setting(None, "default: $MLFLOW_TRACKING_URI or "
                                       "sqlite:///mlflow.db", role="tracking", metavar="URI")
    pipeline_run: str | None = setting(None, "only the runs of this pipeline run",
                                       metavar="RUN_ID")
    runs: list[str] | None = setting(None, "only these run ids (a pipeline passes those of its "
                                     "finetune stages)", cli=False)
    metric: str = setting("macro_auroc", "the metric of the plot", choices=METRICS)
    out: str = setting("runs/compare", "folder of comparison.csv, .md and .png",
                       role="output", metavar="DIR")

    def __post_init__(self) -> None:
        check(self.metric not in METRICS, "metric", f"{self.metric!r} is not "
              f"{', '.join(METRICS)}")


def compare(config: CompareConfig, context: Context) -> StageResult:
    """The comparison table of the finished fine-tune runs ``config`` selects, written as CSV,
    Markdown and PNG (and logged to the pipeline stage's run, if any); exit status 1 when no run
    is found."""
    from ecgtransfer import tracking

    experiments = config.experiment
    if not experiments:
        tracking.setup(config.tracking_uri)
        experiments = [tracking.latest_pipeline_experiment() or "ecgtransfer-finetune"]
    runs = finetune_runs(experiments, config.tracking_uri, config.pipeline_run,
                         run_ids=config.runs)
    table = comparison_table(runs)
    summary = summary_text(table)
    if table.empty:
        return StageResult(str(config.out), summary.rstrip("\n"), exit_code=1, details=table)
    paths = write_comparison(table, config.out, config.metric)
    said = sentences(paired_differences(runs, config.metric), config.metric)
    if context.stage_run is not None:
        for p in paths.values():
            context.stage_run.log_artifact(p)
    if context.pipeline_run is not None:
        _answer(context.pipeline_run, table, runs, config.metric, said, paths)
    summary += "".join(f"{line}\n" for line in said)
    summary += (f"{len(runs)} runs in {len(table)} groups; wrote "
                + ", ".join(str(p) for p in paths.values()))
    return StageResult(str(config.out), summary, details=table)


def _key(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _answer(run, table: pd.DataFrame, runs: pd.DataFrame, metric: str, said: list[str],
            paths: dict[str, Path]) -> None:
    """Put the answer on the pipeline's run: the mean test metric per group and the difference
    to scratch with its interval as metrics, the table (``log_table``) and plot as artifacts,
    and the sentences with the Markdown table as its description."""
    values = {}
    for _, r in table.iterrows():
        values[_key(f"test_{metric}.{_label(r)}.f{r['train_fraction']:g}")] = r[metric]
    for _, r in paired_differences(runs, metric).iterrows():
        name = _key(f"delta_{metric}.{_label(r)}.f{r['train_fraction']:g}")
        values.update({name: r["delta"], f"{name}_ci_low": r["delta_low"],
                       f"{name}_ci_high": r["delta_high"]})
    run.log_metrics(values)
    run.log_table(table, "comparison/comparison.json")
    for p in paths.values():
        run.log_artifact(p, "comparison")
    run.set_note("\n".join(["**Does pretraining help?** " + (
        "; ".join(said) if said else "no scratch baseline to compare with") + ".", "",
        _markdown(table)]))


register_stage(Stage(
    "compare", CompareConfig, compare, command=("compare",), output="", reads="finetune",
    help="table and plot of fine-tune runs: strategy, source, freezing, train fraction -> "
         "test metrics over seeds",
    description="Group finished fine-tune runs that differ only in seed and report test "
                "accuracy, macro AUROC and macro F1 as the mean over seeds with a 95% interval "
                "(t over seeds; one seed: its bootstrap interval). Prints the table and writes "
                "comparison.csv, comparison.md and comparison.png."))
