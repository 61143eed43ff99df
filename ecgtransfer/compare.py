"""Compare fine-tune runs: scratch against transfer, by source, freezing and train fraction.

Reads finished ``finetune`` runs from MLflow (their tags say what each run was), groups the runs
that differ only in seed, and reports each metric as the mean over seeds with a 95% interval: a
t interval over the seeds when there are two or more, else the run's own bootstrap interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["METRICS", "finetune_runs", "comparison_table", "write_comparison", "plot_comparison"]

METRICS = ("accuracy", "macro_auroc", "macro_f1")
GROUP = ("task", "split", "source", "source_targets", "strategy", "freeze", "train_fraction",
         "setting")
"""What makes runs comparable: runs equal in all of these differ only in seed. ``setting`` is a
hash of every other fine-tune setting (epochs, lr, head, ...), so runs with other
hyperparameters are never averaged together."""
_TAG = "ecgtransfer."
_COLUMNS = ["run_id", "run_name", *GROUP, "seed"] + [f"{m}{s}" for m in METRICS
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
    import mlflow

    from ecgtransfer.tracking import tracking_uri as resolve

    mlflow.set_tracking_uri(resolve(tracking_uri))
    client = mlflow.MlflowClient()
    ids = []
    for name in experiments:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise ValueError(f"--experiment {name}: no such MLflow experiment at "
                             f"{mlflow.get_tracking_uri()}")
        ids.append(found.experiment_id)
    query = f"tags.{_TAG}stage = 'finetune' and attributes.status = 'FINISHED'"
    if pipeline_run:
        query += f" and tags.{_TAG}pipeline_run = '{pipeline_run}'"
    if run_ids is not None:
        if not run_ids:
            return pd.DataFrame(columns=_COLUMNS)
        query += " and attributes.run_id IN (" + ", ".join(f"'{r}'" for r in run_ids) + ")"
    runs = mlflow.search_runs(ids, query, output_format="list", max_results=50000)
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        row = {"run_id": run.info.run_id, "run_name": tags.get("mlflow.runName", ""),
               **{k: tags.get(_TAG + k, "") for k in GROUP}, "seed": tags.get(_TAG + "seed", "")}
        row["train_fraction"] = float(row["train_fraction"] or 1.0)
        if row["strategy"] == "scratch":
            row["source"] = "none"
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
    columns = [*GROUP, "seeds", "interval"] + [f"{m}{s}" for m in METRICS for s in ("", "_low", "_high")]
    return pd.DataFrame(out, columns=columns)


def _label(row: pd.Series) -> str:
    if row["strategy"] == "scratch":
        return "scratch"
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


def summary_text(table: pd.DataFrame) -> str:
    """The table as printed by ``ecgtransfer compare``."""
    if table.empty:
        return "no finished fine-tune runs"
    return _markdown(table)
