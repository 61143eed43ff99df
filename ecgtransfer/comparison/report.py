"""A comparison of fine-tune runs as files and sentences: ``comparison.csv``/``.md``/``.png``,
``pairs.csv``, the cost, axes and per-class figures, and the sentences ``ecgtransfer compare``
prints (see :mod:`ecgtransfer.comparison.statistics` for what the numbers are)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ecgtransfer.comparison import GROUP, METRICS
from ecgtransfer.comparison.statistics import kwargs_text, group_label, pareto_front

__all__ = ["plot_axes", "plot_comparison", "plot_cost", "plot_per_class", "sentences",
           "summary_text", "write_comparison", "write_figure", "write_per_class",
           "per_class_sentences", "markdown"]


def plot_per_class(table: pd.DataFrame):
    """Transfer minus its baseline in AUROC per class with its interval, one panel per transfer
    group, the classes grouped (and coloured) by the interval that defines them."""
    from ecgtransfer.plots import figure

    paired = table[np.isfinite(table["delta"].to_numpy(np.float64))]
    groups = (list(dict.fromkeys(zip(paired["task"], paired["label"], paired["train_fraction"])))
              or [("", "", 1.0)])
    several = len({task for task, _, _ in groups}) > 1
    fig, axes = figure(len(groups), width=5.2, height=max(3.0, 0.22 * paired["class"].nunique()
                                                          + 1.2))
    colours = {"HR": "tab:red", "PR": "tab:orange", "QRS": "tab:blue", "QT": "tab:purple",
               "PR/QRS": "tab:cyan", "": "tab:gray"}
    for ax, (task, label, fraction) in zip(axes, groups):
        part = paired[(paired["task"] == task) & (paired["label"] == label)
                      & (paired["train_fraction"] == fraction)]
        part = part.assign(order=part["defined_by"].map({"HR": 0, "PR": 1, "QRS": 2, "QT": 3})
                           .fillna(4)).sort_values(["order", "class"], ascending=[False, False])
        y = np.arange(len(part))
        values = part["delta"].to_numpy(np.float64)
        err = np.vstack([values - part["delta_low"].to_numpy(np.float64),
                         part["delta_high"].to_numpy(np.float64) - values])
        ax.barh(y, values, xerr=np.nan_to_num(err), color=[colours[d] for d in part["defined_by"]],
                alpha=0.8, error_kw={"elinewidth": 0.8})
        ax.set_yticks(y, [f"{c} ({d})" if d else c for c, d in zip(part["class"],
                                                                      part["defined_by"])],
                      fontsize=7)
        ax.axvline(0, color="black", lw=0.8)
        against = part["baseline"].iloc[0] if "baseline" in part and len(part) else "scratch"
        ax.set(title=f"{label}\nvs {against}, train fraction {fraction:g}"
               + (f", task {task}" if several else ""),
               xlabel="AUROC difference to it (95% interval)")
        ax.title.set_fontsize(8)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_comparison(table: pd.DataFrame, metric: str = "macro_auroc"):
    """``metric`` against train fraction, one line (with its interval) per strategy and source;
    one panel per task."""
    from ecgtransfer.plots import figure

    tasks = sorted(table["task"].unique()) or ["single_label"]
    fig, axes = figure(len(tasks), width=5.6, height=4.2)
    for ax, task in zip(axes, tasks):
        part = table[table["task"] == task].assign(label=lambda d: d.apply(group_label, axis=1))
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


_COST_AXES = (("cost_macs", "MACs per record"), ("cost_latency_ms_b1",
                                                  "CPU ms per record, batch 1"))


def plot_cost(table: pd.DataFrame, metric: str = "macro_auroc"):
    """``metric`` (with its interval) against each group's MACs and CPU latency, log scale,
    the Pareto front (no group both cheaper and better) drawn and its groups named."""
    from ecgtransfer.plots import figure

    fig, axes = figure(len(_COST_AXES), width=6.0, height=4.6)
    for ax, (column, name) in zip(axes, _COST_AXES):
        x, y = table[column].to_numpy(np.float64), table[metric].to_numpy(np.float64)
        err = np.abs(np.vstack([y - table[f"{metric}_low"], table[f"{metric}_high"] - y]))
        ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="o", color="0.55", ecolor="0.8",
                    capsize=2, label="groups")
        front = pareto_front(x, y)
        order = np.argsort(x[front])
        ax.plot(x[front][order], y[front][order], "-o", color="C3", label="Pareto front",
                zorder=4)
        for (_, row), xi, yi in zip(table[front].iterrows(), x[front], y[front]):
            ax.annotate(group_label(row), (xi, yi), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        if np.isfinite(x).any() and np.nanmin(x) > 0:
            ax.set_xscale("log")
        ax.set(xlabel=name, ylabel=f"test {metric.replace('_', ' ')}",
               title=f"{metric.replace('_', ' ')} against {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_axes(table: pd.DataFrame, metric: str, axes: Sequence[str]):
    """One panel per axis: ``metric`` (with its interval) against that axis, one line per
    combination of the other axes held fixed; the groups at the other axes' most common values
    drawn bold."""
    from ecgtransfer.plots import figure

    fig, panels = figure(len(axes), width=5.0, height=4.2)
    for ax, axis in zip(panels, axes):
        others = [a for a in axes if a != axis]
        values = list(dict.fromkeys(sorted(table[axis].astype(str), key=_sort_key)))
        position = {v: i for i, v in enumerate(values)}
        common = {a: table[a].astype(str).mode().iloc[0] for a in others}
        for key, line in (table.groupby(others, sort=True) if others else [((), table)]):
            key = key if isinstance(key, tuple) else (key,)
            x = np.array([position[str(v)] for v in line[axis]])
            order = np.argsort(x)
            bold = all(str(v) == common[a] for a, v in zip(others, key))
            label = ", ".join(f"{a.split('.')[-1]}={v}" for a, v in zip(others, key)) or axis
            ax.errorbar(x[order], line[metric].to_numpy()[order],
                        yerr=np.abs(np.vstack([line[metric] - line[f"{metric}_low"],
                                               line[f"{metric}_high"] - line[metric]]))[:, order],
                        marker="o", capsize=2, lw=2.2 if bold else 0.8,
                        alpha=1.0 if bold else 0.45, label=label if bold or len(line) else None)
        ax.set_xticks(range(len(values)), values)
        ax.set(xlabel=axis.split(".")[-1], ylabel=f"test {metric.replace('_', ' ')}",
               title=f"{metric.replace('_', ' ')} along {axis.split('.')[-1]}")
        ax.grid(alpha=0.3)
        if len(others) and len(table.groupby(others)) <= 9:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _sort_key(text: str):
    text = str(text)
    try:
        value = json.loads(text)
    except ValueError:
        return (1, 0.0, text)
    if isinstance(value, list):
        return (0, float(sum(value)), text)
    return (0, float(value), text) if isinstance(value, (int, float)) else (1, 0.0, text)


def markdown(table: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    shown = table[list(GROUP) + ["seeds"]].copy()
    if "model_kwargs" in table and (table["model_kwargs"].fillna("{}") != "{}").any():
        shown["model"] = [f"{m} {kwargs_text(r)}".strip() for m, (_, r) in
                          zip(table["model"], table.iterrows())]
    for n in ("n_train", "n_test"):
        shown[n] = ["?" if not np.isfinite(v) else f"{v:.0f}" for v in table[n]]
    for m in METRICS:
        shown[m] = [("n/a" if not np.isfinite(v) else f"{v:.3f}" if not np.isfinite(lo)
                     else f"{v:.3f} [{lo:.3f}, {hi:.3f}]")
                    for v, lo, hi in zip(table[m], table[f"{m}_low"], table[f"{m}_high"])]
    shown["interval"] = table["interval"]
    return shown.to_markdown(index=False) + "\n" + "".join(f"\n- {n}" for n in notes) + (
        "\n" if notes else "")


def write_comparison(table: pd.DataFrame, out: str | Path, metric: str = "macro_auroc",
                     pairs: pd.DataFrame | None = None,
                     notes: Sequence[str] = ()) -> dict[str, Path]:
    """``comparison.csv``, ``comparison.md`` (the table, then ``notes``: runs left out,
    intervals that fell back) and ``comparison.png`` in ``out`` (and ``pairs.csv``, transfer
    against scratch per fold and seed, when ``pairs`` has rows); returns their paths. Each file
    is written whole or not at all, and the folder is marked as compare's own
    (:func:`ecgtransfer.files.mark_output_folder`)."""
    from ecgtransfer.files import atomic_file, mark_output_folder

    out = Path(out)
    mark_output_folder(out, "compare")
    for stale in [*out.glob(".comparison.*.tmp"), *out.glob(".pairs.*.tmp")]:  # after SIGKILL
        stale.unlink(missing_ok=True)
    paths = {"csv": out / "comparison.csv", "md": out / "comparison.md",
             "png": out / "comparison.png"}
    with atomic_file(paths["csv"]) as f:
        table.to_csv(f, index=False)
    if pairs is not None and len(pairs):
        paths["pairs"] = out / "pairs.csv"
        with atomic_file(paths["pairs"]) as f:
            pairs.to_csv(f, index=False)
    with atomic_file(paths["md"]) as f:
        f.write(markdown(table, notes))
    fig = plot_comparison(table, metric)
    with atomic_file(paths["png"], binary=True) as f:
        fig.savefig(f, format="png", dpi=110)
    return paths


def sentences(diffs: pd.DataFrame, metric: str = "macro_auroc") -> list[str]:
    """The paired differences as sentences a researcher reads, e.g. ``combined hr,pr,qrs,qt
    from deepfake (full) vs scratch, combined-size (4 trunks) at train fraction 1: +0.030 macro
    AUROC [-0.010, +0.070], 342 records x 2 seeds, 5 folds; higher in 7 of 10 fold-seed
    pairs`` (without predictions: ``... over 3 seeds (3 won), 46 test records``)."""
    name = metric.replace("_", " ").replace("auroc", "AUROC").replace("f1", "F1")
    several = diffs["task"].nunique() > 1 if len(diffs) else False
    out = []
    for _, r in diffs.iterrows():
        interval = ("" if not np.isfinite(r["delta_low"])
                    else f" [{r['delta_low']:+.3f}, {r['delta_high']:+.3f}]")
        task = f" on task {r['task']}" if several else ""
        head = (f"{group_label(r)} vs {r['baseline']} at train fraction {r['train_fraction']:g}"
                f"{task}: {r['delta']:+.3f} {name}{interval}")
        if str(r["interval"]).startswith("bootstrap"):
            seeds, folds = int(r["seeds"]), int(r["folds"])
            unit = "fold-seed pairs" if folds > 1 else "seeds"
            out.append(f"{head}, {int(r['n_test'])} records x {seeds} seed{'s' if seeds != 1 else ''}"
                       + (f", {folds} folds" if folds > 1 else " (one test split)")
                       + f"; higher in {r['wins']} of {r['pairs']} {unit}")
        else:
            n_test = f", {int(r['n_test'])} test records" if np.isfinite(r["n_test"]) else ""
            out.append(f"{head} over {r['pairs']} seed{'s' if r['pairs'] != 1 else ''} "
                       f"({r['wins']} won){n_test}")
    return out


def summary_text(table: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """The table (and ``notes``) as printed by ``ecgtransfer compare``."""
    if table.empty:
        return "no finished fine-tune runs"
    return markdown(table, notes)


def per_class_sentences(classes: pd.DataFrame) -> list[str]:
    """One line per transfer group: its AUROC difference on the classes an interval defines."""
    out = []
    defined = classes[(classes["defined_by"] != "") & np.isfinite(classes["delta"])]
    several = defined["task"].nunique() > 1 if len(defined) else False
    for (task, label, fraction), part in defined.groupby(["task", "label", "train_fraction"],
                                                         sort=True):
        shown = "; ".join(f"{r['class']} ({r['defined_by']}, {r['positives']} positive) "
                          f"{r['delta']:+.3f} [{r['delta_low']:+.3f}, {r['delta_high']:+.3f}]"
                          for _, r in part.iterrows() if np.isfinite(r["delta"]))
        against = part["baseline"].iloc[0] if "baseline" in part else "scratch"
        if shown:
            out.append(f"{label} vs {against} at train fraction {fraction:g}"
                       f"{f' on task {task}' if several else ''}, AUROC per class "
                       f"defined by an interval: {shown}")
    return out


def write_figure(table: pd.DataFrame, out: Path, name: str, fig) -> dict[str, Path]:
    """``<name>.csv`` and ``<name>.png``, each whole or not at all."""
    from ecgtransfer.files import atomic_file

    paths = {name: out / f"{name}.csv", f"{name}_png": out / f"{name}.png"}
    with atomic_file(paths[name]) as f:
        table.to_csv(f, index=False)
    with atomic_file(paths[f"{name}_png"], binary=True) as f:
        fig.savefig(f, format="png", dpi=110)
    return paths


def write_per_class(classes: pd.DataFrame, out: Path) -> dict[str, Path]:
    """``per_class.csv`` and, when there are transfer groups, ``per_class.png``."""
    from ecgtransfer.files import atomic_file

    paths = {"per_class": out / "per_class.csv"}
    with atomic_file(paths["per_class"]) as f:
        classes.to_csv(f, index=False)
    if np.isfinite(classes["delta"].to_numpy(np.float64)).any():
        paths["per_class_png"] = out / "per_class.png"
        fig = plot_per_class(classes)
        with atomic_file(paths["per_class_png"], binary=True) as f:
            fig.savefig(f, format="png", dpi=110)
    return paths
