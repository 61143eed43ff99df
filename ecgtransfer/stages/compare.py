"""Compare fine-tune runs: scratch against transfer, by source, freezing and train fraction.

Reads finished ``finetune`` runs from MLflow (their tags say what each run was), groups the runs
that differ only in seed, and reports each metric as the mean over seeds with a 95% interval.

Where the runs logged their predictions (``test_predictions.csv``; a cross-validation's pooled
``oof_predictions.csv``), the interval is a bootstrap over records and seeds together: each
resample draws the seeds and the records with replacement and averages the metric over the drawn
seeds, so it covers the test set's own sampling as well as training randomness. Transfer and
its scratch baseline are resampled identically (same records, same seeds), which makes the
difference's interval a paired one. Runs logged without predictions fall back to a t interval
over seeds (one seed: the run's own bootstrap interval); column ``interval`` says which, and where
other runs have predictions the fallback is also said in a warning and in ``comparison.md``.

A run whose predictions file is there but unusable (not a CSV table, empty, its columns not
those of a predictions table, a NaN or out-of-range probability) is left out of the comparison,
never averaged in nor quietly switched to another interval: a warning, the printed summary,
``comparison.md`` and the ``left_out`` column of ``comparison.csv`` name the run, the file and
what is wrong with it (the run's logged metrics came from those same predictions).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage
from ecgtransfer.training.predictions import (OOF_PREDICTIONS, TEST_PREDICTIONS,
                                              prediction_arrays, read_predictions)

log = logging.getLogger(__name__)

__all__ = ["METRICS", "CompareConfig", "compare", "finetune_runs", "run_predictions",
           "read_predictions", "Bootstrap",
           "per_class", "plot_per_class", "INTERVAL_OF",
           "comparison_table", "paired_differences", "write_comparison", "plot_comparison",
           "summary_text", "sentences", "COSTS", "pareto_front", "plot_cost", "axis_values",
           "axes_table", "plot_axes"]

METRICS = ("accuracy", "macro_auroc", "macro_f1")
GROUP = ("task", "split", "cv", "source", "source_targets", "strategy", "trunks", "freeze",
         "train_fraction", "setting")
"""What makes runs comparable: runs equal in all of these differ only in seed. ``setting`` is a
hash of every other fine-tune setting (epochs, lr, head, ...), so runs with other
hyperparameters are never averaged together; ``cv`` is the number of cross-validation folds
("" for one test split)."""
COSTS = ("params", "macs", "latency_ms_b1", "latency_ms_b64")
"""The cost report's figures (metrics ``cost_<name>`` of every run) that compare carries."""
_COLUMNS = ["run_id", "run_name", *GROUP, "seed", "evaluation", "n_train", "n_test", "model",
            "model_kwargs"] + [f"{m}{s}" for m in METRICS for s in ("", "_ci_low", "_ci_high")] + [
    f"cost_{c}" for c in COSTS]
_PREDICTIONS = {"cv": OOF_PREDICTIONS, "test": TEST_PREDICTIONS}
_DEFAULT_MODEL = "resnet1d_fast"
"""The architecture of a scratch run that names none (``ecgtransfer.models.DEFAULT_MODEL``,
not imported here: that would import torch with the command line)."""


def finetune_runs(experiments: Sequence[str] = ("ecgtransfer-finetune",),
                  tracking_uri: str | None = None, pipeline_run: str | None = None,
                  run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per finished fine-tune evaluation: what it was (tags) and its test metrics. A
    cross-validation is one row (its pooled out-of-fold metrics); its fold runs are left out.

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
    chosen = {"pipeline_run": pipeline_run} if pipeline_run else {}
    runs = tracking.find_runs(list(experiments), status="FINISHED", run_ids=run_ids,
                              stage="finetune", **chosen)
    rows = []
    for run in runs:
        metrics = run.metrics
        evaluation = run.tag("evaluation", "test")
        if evaluation == "fold":
            continue
        row = {"run_id": run.run_id, "run_name": run.name,
               **{k: run.tag(k) for k in GROUP}, "seed": run.tag("seed"),
               "evaluation": evaluation}
        row["train_fraction"] = float(row["train_fraction"] or 1.0)
        for n in ("n_train", "n_test"):
            row[n] = float(run.params.get(f"data.{n}", "nan") or "nan")
        if not row["trunks"]:  # a run from before the tag: one trunk per source target
            row["trunks"] = str(len([t for t in row["source_targets"].split(",") if t]) or 1)
        if row["strategy"] == "scratch":  # older runs were tagged with the borrowed source
            row["source"], row["source_targets"] = "none", ""
        for m in METRICS:
            row[m] = metrics.get(f"test_{m}", np.nan)
            row[f"{m}_ci_low"] = metrics.get(f"test_{m}_ci_low", np.nan)
            row[f"{m}_ci_high"] = metrics.get(f"test_{m}_ci_high", np.nan)
        params = run.params
        row["model"] = params.get("model", "") or (_DEFAULT_MODEL if row["strategy"] == "scratch"
                                                    else "")
        row["model_kwargs"] = json.dumps({k.split(".", 1)[1]: _value(v) for k, v in
                                          sorted(params.items())
                                          if k.startswith("model_kwargs.")})
        for c in COSTS:
            row[f"cost_{c}"] = metrics.get(f"cost_{c}", np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=_COLUMNS)


def run_predictions(runs: pd.DataFrame,
                    problems: dict[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """Each run's logged predictions by run id (``oof_predictions.csv`` of a cross-validation,
    ``test_predictions.csv`` else), as :func:`read_predictions` reads them: record id, truth,
    class probabilities (and fold).

    A run logged without them is left out of the result. So is a run whose file is there but
    unusable; given ``problems``, it is named there (run id -> ``"FILE: what is wrong"``).
    """
    import tempfile

    from ecgtransfer import tracking

    out: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run_id, evaluation in zip(runs["run_id"], runs["evaluation"]):
            name = _PREDICTIONS.get(evaluation, "")
            path = tracking.download_artifact(run_id, name, Path(tmp) / run_id) if name else None
            if path is None:
                continue
            try:
                out[run_id] = read_predictions(path)
            except ValueError as exc:
                if problems is not None:
                    problems[run_id] = f"{name}: {exc}"
    return out


@dataclass
class _Stack:
    """The predictions of runs that differ only in seed, on the records they share."""

    runs: tuple[str, ...]
    seeds: list[str]
    ids: np.ndarray
    probs: np.ndarray          # (seeds, records, classes)
    y: np.ndarray              # (records,) class indices or (records, classes) 0/1
    folds: np.ndarray          # (records,) fold of each record (1 without cross-validation)
    classes: list[str]
    multilabel: bool


class Bootstrap:
    """The seed-and-record bootstrap of runs' predictions (see :func:`run_predictions`).

    Every stack of the same size is resampled with the same draws (``n_resamples``, seeded by
    ``seed``), so the difference of two strategies on the same records and seeds is a paired
    bootstrap; each stack's per-resample values are computed once.
    """

    def __init__(self, predictions: dict[str, pd.DataFrame], n_resamples: int = 1000,
                 seed: int = 0, level: float = 0.95):
        self.predictions = predictions
        self.n_resamples = n_resamples
        self.seed = seed
        self.level = level
        self._cache: dict[Any, dict[str, np.ndarray]] = {}

    def stack(self, runs: pd.DataFrame, seeds: Sequence[str] | None = None) -> _Stack | None:
        """``runs``' predictions for ``seeds`` (default: all); None when a run has none, or
        when the runs were tested on different records."""
        runs = runs.drop_duplicates("seed")
        if seeds is not None:
            runs = runs[runs["seed"].isin(seeds)]
        if runs.empty or not all(r in self.predictions for r in runs["run_id"]):
            return None
        runs = runs.sort_values("seed", key=lambda s: pd.to_numeric(s, errors="coerce"))
        tables = [self.predictions[r].drop_duplicates("record_id").set_index("record_id")
                  for r in runs["run_id"]]
        records = set(tables[0].index)
        if any(set(t.index) != records for t in tables[1:]):
            return None  # seeds tested on other records (a random split per seed): no stack
        ids = np.array(sorted(records))
        if not len(ids):
            return None
        first = tables[0].loc[ids]
        classes, _, y, multilabel = prediction_arrays(first)
        if not multilabel and (y < 0).any():
            return None
        probs = np.stack([prediction_arrays(t.loc[ids], classes)[1] for t in tables])
        folds = first["fold"].to_numpy(np.int64) if "fold" in first.columns else np.ones(len(ids), np.int64)
        return _Stack(tuple(runs["run_id"]), list(runs["seed"]), ids, probs, y, folds, classes,
                      multilabel)

    def metrics(self, stack: _Stack, rows: np.ndarray | None = None) -> dict[str, float]:
        """Each metric averaged over the stack's seeds, on ``rows`` (default all records)."""
        from ecgtransfer.training.metrics import classification_metrics

        rows = np.arange(len(stack.ids)) if rows is None else rows
        values = [classification_metrics(p[rows], stack.y[rows], stack.classes, stack.multilabel)
                  for p in stack.probs]
        return {m: float(np.mean([v[m] for v in values])) for m in _keys(stack)}

    def draws(self, stack: _Stack) -> dict[str, np.ndarray]:
        """Per metric, its value in every resample (seeds and records drawn with replacement,
        the metric averaged over the drawn seeds)."""
        from ecgtransfer.training.metrics import bootstrap_draws, classification_metrics

        cache_key = (stack.runs, tuple(stack.ids.tolist()))
        if cache_key in self._cache:
            return self._cache[cache_key]
        keys = _keys(stack)
        out = {m: np.empty(self.n_resamples) for m in keys}
        draws = bootstrap_draws(len(stack.ids), len(stack.seeds), n_resamples=self.n_resamples,
                                seed=self.seed)
        for i, (seeds, rows) in enumerate(draws):
            y = stack.y[rows]
            drawn, times = np.unique(seeds, return_counts=True)
            total = dict.fromkeys(keys, 0.0)
            for s, t in zip(drawn, times):
                v = classification_metrics(stack.probs[s][rows], y, stack.classes,
                                           stack.multilabel)
                for m in keys:
                    total[m] += t * v[m]
            for m in keys:
                out[m][i] = total[m] / len(seeds)
        self._cache[cache_key] = out
        return out

    def interval(self, values: np.ndarray) -> tuple[float, float]:
        from ecgtransfer.training.metrics import percentile_interval

        return percentile_interval(values, self.level)


def _keys(stack: _Stack) -> list[str]:
    """The values a stack is resampled for: the metrics and each class's AUROC."""
    return [*METRICS, *(f"auroc_{c}" for c in stack.classes)]


def _folds(stack: _Stack) -> int:
    return len(np.unique(stack.folds))


def _resampled(stack: _Stack) -> str:
    folds = _folds(stack)
    seeds = len(stack.seeds)
    return (f"bootstrap: {len(stack.ids)} records x {seeds} seed{'s' if seeds != 1 else ''}"
            + (f", {folds} folds" if folds > 1 else ""))


def comparison_table(runs: pd.DataFrame, level: float = 0.95,
                     bootstrap: Bootstrap | None = None,
                     left_out: pd.DataFrame | None = None) -> pd.DataFrame:
    """Runs that differ only in seed, grouped: per metric its mean over seeds and a ``level``
    interval.

    With a ``bootstrap`` holding every run's predictions, the mean is over seeds on the records
    all of them predicted, and the interval a bootstrap over those records and the seeds (its
    level, not ``level``). Without, the interval is Student's t over
    the seeds (``mean ± t * sd / sqrt(n)``) for two or more seeds, else the one run's bootstrap
    interval. Column ``interval`` says which.

    ``left_out`` (runs with a ``reason`` column) are runs of these groups that were left out;
    column ``left_out`` names them and why ("" for none).
    """
    out = []
    for key, group in runs.groupby(list(GROUP), sort=True, dropna=False):
        row = dict(zip(GROUP, key))
        n = len(group)
        row["seeds"] = n
        row["n_train"], row["n_test"] = _largest(group["n_train"]), _largest(group["n_test"])
        stack = bootstrap.stack(group) if bootstrap is not None else None
        if stack is not None:
            row["n_test"] = float(len(stack.ids))
            row["interval"] = _resampled(stack)
            point, draws = bootstrap.metrics(stack), bootstrap.draws(stack)
            for m in METRICS:
                low, high = bootstrap.interval(draws[m])
                row.update({m: point[m], f"{m}_low": low, f"{m}_high": high})
        else:
            row["interval"] = f"t over {n} seeds" if n > 1 else "bootstrap"
            row.update(_over_seeds(group, n, level))
        row["model"] = str(group["model"].iloc[0]) if "model" in group else ""
        row["model_kwargs"] = str(group["model_kwargs"].iloc[0]) if "model_kwargs" in group else "{}"
        for c in COSTS:
            values = group[f"cost_{c}"].to_numpy(np.float64) if f"cost_{c}" in group else []
            row[f"cost_{c}"] = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
        row["left_out"] = ""
        if left_out is not None and len(left_out):
            mine = left_out[np.logical_and.reduce([left_out[k].astype(str) == str(row[k])
                                                   for k in GROUP])]
            row["left_out"] = "; ".join(_left_out_text(r) for _, r in mine.iterrows())
        out.append(row)
    columns = [*GROUP, "seeds", "n_train", "n_test", "interval"] + [
        f"{m}{s}" for m in METRICS for s in ("", "_low", "_high")] + [
        "model", "model_kwargs"] + [f"cost_{c}" for c in COSTS] + ["left_out"]
    return pd.DataFrame(out, columns=columns)


def _left_out_text(run: pd.Series) -> str:
    """``run NAME (ID): FILE: what is wrong`` for a run left out of the comparison."""
    name = f"{run['run_name']} ({run['run_id']})" if run["run_name"] else str(run["run_id"])
    return f"run {name}: {run['reason']}"


def _over_seeds(group: pd.DataFrame, n: int, level: float) -> dict[str, float]:
    from scipy import stats

    row = {}
    for m in METRICS:
        values = group[m].to_numpy(np.float64)
        values = values[np.isfinite(values)]  # a run that logged none: named by compare
        k = len(values)
        mean = float(values.mean()) if k else np.nan
        if k > 1:
            half = stats.t.ppf(0.5 + level / 2, k - 1) * values.std(ddof=1) / np.sqrt(k)
            low, high = max(mean - half, 0.0), min(mean + half, 1.0)  # metrics in [0, 1]
        elif n == 1:
            low, high = float(group[f"{m}_ci_low"].iloc[0]), float(group[f"{m}_ci_high"].iloc[0])
        else:
            low, high = np.nan, np.nan
        row.update({m: mean, f"{m}_low": low, f"{m}_high": high})
    return row


_DIFF_COLUMNS = [*GROUP, "baseline", "pairs", "wins", "delta", "delta_low", "delta_high",
                 "interval", "n_test", "seeds", "folds"]


def _baseline(row: dict, scratch: pd.DataFrame) -> pd.DataFrame:
    """The scratch runs a transfer group is measured against: same task, split,
    cross-validation, train fraction and number of trunks; the same freezing if there is one,
    else trained in full; of these, the most common setting."""
    base = scratch
    for k in ("task", "split", "cv", "train_fraction", "trunks"):
        base = base[base[k] == row[k]]
    same = base[base["freeze"] == row["freeze"]]
    base = same if not same.empty else base[base["freeze"] == "full"]
    if base.empty:
        return base
    settings = base["setting"].value_counts()  # one baseline: its most common setting
    return base[base["setting"] == settings.index[0]].drop_duplicates("seed")


def paired_differences(runs: pd.DataFrame, metric: str = "macro_auroc", level: float = 0.95,
                       bootstrap: Bootstrap | None = None,
                       pairs: list[dict] | None = None) -> pd.DataFrame:
    """Each transfer group against its scratch baseline (see :func:`_baseline`), on the same
    seeds and, with predictions, the same records and folds.

    With a ``bootstrap`` holding every run's predictions, ``delta`` is ``transfer - scratch`` of
    the metric
    averaged over the shared seeds on the shared records, with a paired bootstrap interval
    over records and seeds; ``pairs`` counts the (fold, seed) pairs and ``wins`` those where
    transfer scored higher on that fold's records (one test split: one pair per seed). Each
    pair is appended to ``pairs`` when a list is given. Without predictions, the runs pair by
    seed: ``delta`` is the mean of the per-seed differences with a Student's t interval over
    them (NaN with one), which leaves out the test set's own sampling.

    Returns
    -------
    pandas.DataFrame
        One row per transfer group: its ``GROUP`` keys, ``baseline`` (its label),
        ``pairs``, ``wins``, ``delta``, ``delta_low``, ``delta_high``, ``interval``,
        ``n_test``, ``seeds``, ``folds``.
    """
    from scipy import stats

    scratch = runs[runs["strategy"] == "scratch"]
    out = []
    for key, group in runs[runs["strategy"] != "scratch"].groupby(list(GROUP), sort=True,
                                                                   dropna=False):
        row = dict(zip(GROUP, key))
        base = _baseline(row, scratch)
        if base.empty:
            continue
        row["baseline"] = _label(base.iloc[0])
        seeds = sorted(set(group["seed"]) & set(base["seed"]))
        mine = bootstrap.stack(group, seeds) if bootstrap is not None else None
        theirs = bootstrap.stack(base, seeds) if mine is not None else None
        if mine is not None and theirs is not None and set(mine.ids) != set(theirs.ids):
            mine = theirs = None  # not the same test records: no paired bootstrap
        if mine is not None and theirs is not None:
            row.update(_paired(bootstrap, key, mine, theirs, metric, pairs))
        else:
            both = group.merge(base, on="seed", suffixes=("", "_scratch"))
            diff = (both[metric] - both[f"{metric}_scratch"]).to_numpy(np.float64)
            diff = diff[np.isfinite(diff)]
            if not len(diff):
                continue
            mean, low, high = float(diff.mean()), np.nan, np.nan
            if len(diff) > 1:
                half = (stats.t.ppf(0.5 + level / 2, len(diff) - 1) * diff.std(ddof=1)
                        / np.sqrt(len(diff)))
                low, high = mean - half, mean + half
            row.update({"pairs": len(diff), "wins": int((diff > 0).sum()), "delta": mean,
                        "delta_low": low, "delta_high": high, "seeds": len(diff), "folds": 1,
                        "interval": f"t over {len(diff)} seeds",
                        "n_test": _largest(group["n_test"])})
        out.append(row)
    return pd.DataFrame(out, columns=_DIFF_COLUMNS)


def _paired(bootstrap: Bootstrap, key: Any, mine: _Stack, theirs: _Stack, metric: str,
            pairs: list[dict] | None) -> dict[str, Any]:
    """The paired bootstrap of ``mine - theirs`` and the per (fold, seed) comparison."""
    from ecgtransfer.training.metrics import classification_metrics

    point = bootstrap.metrics(mine)[metric] - bootstrap.metrics(theirs)[metric]
    low, high = bootstrap.interval(bootstrap.draws(mine)[metric] - bootstrap.draws(theirs)[metric])
    won = counted = 0
    for s, seed in enumerate(mine.seeds):
        for fold in np.unique(mine.folds):
            rows = np.flatnonzero(mine.folds == fold)
            a, b = (classification_metrics(st.probs[s][rows], st.y[rows], st.classes,
                                           st.multilabel)[metric] for st in (mine, theirs))
            if not (np.isfinite(a) and np.isfinite(b)):
                continue
            counted += 1
            won += int(a > b)
            if pairs is not None:
                pairs.append({**dict(zip(GROUP, key)), "seed": seed, "fold": int(fold),
                              "records": len(rows), metric: a, f"{metric}_scratch": b,
                              "delta": a - b})
    return {"pairs": counted, "wins": won, "delta": point, "delta_low": low, "delta_high": high,
            "interval": _resampled(mine), "n_test": float(len(mine.ids)),
            "seeds": len(mine.seeds), "folds": _folds(mine)}


INTERVAL_OF = {
    # the Challenge 2021's scored classes (abbreviations; equivalents merged)
    "SB": "HR", "STach": "HR", "Brady": "HR", "IAVB": "PR", "LPR": "PR", "CLBBB": "QRS",
    "CRBBB": "QRS", "IRBBB": "QRS", "NSIVCB": "QRS", "BBB": "QRS", "LQT": "QT",
    # PTB-XL statements
    "SBRAD": "HR", "STACH": "HR", "1AVB": "PR", "ILBBB": "QRS", "IVCD": "QRS", "LNGQT": "QT",
}
"""The interval that defines a diagnosis: rate (sinus bradycardia, tachycardia), PR
(first-degree AV block, prolonged PR), QRS (bundle branch blocks, IVCD), QT (prolonged QT).
These are the classes where trunks pretrained to measure that interval should help most."""


def per_class(runs: pd.DataFrame, bootstrap: Bootstrap) -> pd.DataFrame:
    """Per group and class: AUROC (mean over seeds) with its bootstrap interval over records
    and seeds, the class's positives, the interval that defines it (:data:`INTERVAL_OF`), and
    for a transfer group the paired difference to its scratch baseline (same records and
    seeds, same draws). Groups without predictions are left out."""
    scratch = runs[runs["strategy"] == "scratch"]
    rows = []
    for key, group in runs.groupby(list(GROUP), sort=True, dropna=False):
        row = dict(zip(GROUP, key))
        stack = bootstrap.stack(group)
        if stack is None:
            continue
        theirs = None
        if row["strategy"] != "scratch":
            base = _baseline(row, scratch)
            seeds = sorted(set(group["seed"]) & set(base["seed"])) if not base.empty else []
            mine = bootstrap.stack(group, seeds) if seeds else None
            theirs = bootstrap.stack(base, seeds) if mine is not None else None
            if theirs is not None and set(theirs.ids) == set(mine.ids):
                stack = mine
            else:
                theirs = None
        point, draws = bootstrap.metrics(stack), bootstrap.draws(stack)
        if theirs is not None:
            base_point, base_draws = bootstrap.metrics(theirs), bootstrap.draws(theirs)
        for j, c in enumerate(stack.classes):
            k = f"auroc_{c}"
            low, high = bootstrap.interval(draws[k])
            positives = stack.y[:, j].sum() if stack.multilabel else (stack.y == j).sum()
            out = {**row, "label": _label(pd.Series(row)), "class": c,
                   "defined_by": INTERVAL_OF.get(c, ""), "positives": int(positives),
                   "records": len(stack.ids), "auroc": point[k], "auroc_low": low,
                   "auroc_high": high, "delta": np.nan, "delta_low": np.nan,
                   "delta_high": np.nan}
            if theirs is not None:
                d_low, d_high = bootstrap.interval(draws[k] - base_draws[k])
                out.update(delta=point[k] - base_point[k], delta_low=d_low, delta_high=d_high)
            rows.append(out)
    return pd.DataFrame(rows)


def plot_per_class(table: pd.DataFrame):
    """Transfer minus scratch in AUROC per class with its interval, one panel per transfer
    group, the classes grouped (and coloured) by the interval that defines them."""
    from ecgtransfer.plots import figure

    paired = table[np.isfinite(table["delta"].to_numpy(np.float64))]
    groups = list(dict.fromkeys(zip(paired["label"], paired["train_fraction"]))) or [("", 1.0)]
    fig, axes = figure(len(groups), width=5.2, height=max(3.0, 0.22 * paired["class"].nunique()
                                                          + 1.2))
    colours = {"HR": "tab:red", "PR": "tab:orange", "QRS": "tab:blue", "QT": "tab:purple",
               "": "tab:gray"}
    for ax, (label, fraction) in zip(axes, groups):
        part = paired[(paired["label"] == label) & (paired["train_fraction"] == fraction)]
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
        ax.set(title=f"{label}\nvs scratch, train fraction {fraction:g}",
               xlabel="AUROC, transfer - scratch (95% interval)")
        ax.title.set_fontsize(8)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _value(text: str):
    """A param's text back to its value (``[1, 1, 1]`` to a list, ``32`` to an int)."""
    import yaml

    try:
        value = yaml.safe_load(text)
        if isinstance(value, str) and "," in value:  # a list, as params write them: 1,1,1
            value = yaml.safe_load(f"[{value}]")
        return value
    except yaml.YAMLError:
        return text


def _largest(values: pd.Series) -> float:
    finite = values.to_numpy(np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if len(finite) else np.nan


def _kwargs_text(row: pd.Series) -> str:
    """A group's own architecture parameters, ``layers=[2,2,2] width=16`` ("" for none)."""
    kwargs = json.loads(row.get("model_kwargs") or "{}")
    return " ".join(f"{k}={json.dumps(v).replace(' ', '')}" for k, v in kwargs.items())


def _label(row: pd.Series) -> str:
    own = _kwargs_text(row)
    own = f" {own}" if own else ""
    if row["strategy"] == "scratch":
        n = int(row["trunks"] or 1)
        return ("scratch" if n == 1 else f"scratch, combined-size ({n} trunks)") + own
    return (f"{row['strategy']} {row['source_targets'] or '?'} from {row['source'] or '?'} "
            f"({row['freeze']})" + own)


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


def pareto_front(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Which points no other point beats: none cheaper-or-equal with a higher-or-equal score
    and better in one of the two (a boolean mask; NaN points are never on it)."""
    cost, score = np.asarray(cost, np.float64), np.asarray(score, np.float64)
    ok = np.isfinite(cost) & np.isfinite(score)
    front = np.zeros(len(cost), bool)
    for i in np.flatnonzero(ok):
        beaten = ok & (cost <= cost[i]) & (score >= score[i]) & (
            (cost < cost[i]) | (score > score[i]))
        front[i] = not beaten.any()
    return front


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
            ax.annotate(_label(row), (xi, yi), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        if np.isfinite(x).any() and np.nanmin(x) > 0:
            ax.set_xscale("log")
        ax.set(xlabel=name, ylabel=f"test {metric.replace('_', ' ')}",
               title=f"{metric.replace('_', ' ')} against {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def axis_values(table: pd.DataFrame, axis: str) -> list:
    """Each group's value of ``axis``: ``model`` or ``model_kwargs.<key>`` (the model's own
    default where a group left it unset)."""
    out = []
    for _, row in table.iterrows():
        if axis == "model":
            out.append(row["model"])
            continue
        key = axis.split(".", 1)[1]
        given = json.loads(row["model_kwargs"] or "{}")
        value = given.get(key, _defaults(row["model"]).get(key))
        out.append(json.dumps(list(value)) if isinstance(value, (list, tuple)) else value)
    return out


def _defaults(model: str) -> dict:
    """The model's own defaults; {} for no model or one this version does not know (a run
    logged by another version)."""
    from ecgtransfer.models import model_defaults

    if not model:
        return {}
    try:
        return model_defaults(model)
    except ValueError:
        return {}


def _settings(table: pd.DataFrame) -> list[str]:
    """The architecture settings the groups have: ``model`` and ``model_kwargs.<key>``."""
    keys: dict[str, None] = {}
    for _, row in table.iterrows():
        keys.update(dict.fromkeys(json.loads(row["model_kwargs"] or "{}")))
        keys.update(dict.fromkeys(_defaults(row["model"])))
    return ["model", *(f"model_kwargs.{k}" for k in keys)]


def axes_table(table: pd.DataFrame, metric: str, axes: Sequence[str]) -> pd.DataFrame:
    """The groups with a column per axis, for the plot of the score along each axis."""
    out = table.copy()
    for axis in axes:
        if axis != "model" and not axis.startswith("model_kwargs."):
            raise ValueError(f"axes: {axis!r} is not model or model_kwargs.<key>")
        values = axis_values(table, axis)
        if all(v is None or v == "" for v in values):
            have = _settings(table)
            shown = ", ".join(have[:12]) + (f" and {len(have) - 12} more" if len(have) > 12 else "")
            raise ValueError(f"--axes {axis}: no run has this setting; the runs have {shown}")
        out[axis] = values
    keep = [*axes, "strategy", "train_fraction", "seeds", "n_test", metric, f"{metric}_low",
            f"{metric}_high", *(f"cost_{c}" for c in COSTS)]
    return out[keep]


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


def _markdown(table: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    shown = table[list(GROUP) + ["seeds"]].copy()
    if "model_kwargs" in table and (table["model_kwargs"].fillna("{}") != "{}").any():
        shown["model"] = [f"{m} {_kwargs_text(r)}".strip() for m, (_, r) in
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
        f.write(_markdown(table, notes))
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
    out = []
    for _, r in diffs.iterrows():
        interval = ("" if not np.isfinite(r["delta_low"])
                    else f" [{r['delta_low']:+.3f}, {r['delta_high']:+.3f}]")
        head = (f"{_label(r)} vs {r['baseline']} at train fraction {r['train_fraction']:g}: "
                f"{r['delta']:+.3f} {name}{interval}")
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
    return _markdown(table, notes)


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
    metric: str = setting("macro_auroc", "the metric of the plot and of the differences to "
                          "scratch", choices=METRICS)
    cost: bool = setting(False, "also plot the metric against each group's MACs and CPU "
                         "latency with the Pareto front marked (cost.png, cost.csv)")
    axes: list[str] = setting([], "also plot the metric along each of these architecture "
                              "settings with the others held fixed (axes.png, axes.csv), e.g. "
                              "model_kwargs.layers,model_kwargs.width,model_kwargs.kernel_size",
                              metavar="AXIS[,AXIS...]")
    bootstrap: int = setting(1000, "resamples of the bootstrap over records and seeds (0: t "
                             "over seeds only)")
    seed: int = setting(0, "seed of the bootstrap's resamples")
    out: str = setting("runs/compare", "folder of comparison.csv, .md, .png and pairs.csv",
                       role="output", metavar="DIR")

    def __post_init__(self) -> None:
        check(self.metric not in METRICS, "metric", f"{self.metric!r} is not "
              f"{', '.join(METRICS)}")
        check(self.bootstrap < 0, "bootstrap", "must not be negative")
        check(self.seed < 0, "seed", "must not be negative")
        for axis in self.axes:
            check(axis != "model" and (not axis.startswith("model_kwargs.")
                                       or axis == "model_kwargs."), "axes",
                  f"{axis!r} is not model or model_kwargs.<key>")
        for key, ids in (("pipeline_run", [self.pipeline_run] if self.pipeline_run else []),
                         ("runs", self.runs or [])):
            for run_id in ids:  # they go into an MLflow search: no quotes, no spaces
                check(not _RUN_ID.fullmatch(str(run_id)), key,
                      f"{run_id!r} is not an MLflow run id (letters, digits, - and _)")


def compare(config: CompareConfig, context: Context) -> StageResult:
    """The comparison table of the finished fine-tune runs ``config`` selects, written as CSV,
    Markdown and PNG (and logged to the pipeline stage's run, if any); exit status 1 when no run
    is found.

    Runs whose predictions file is unusable are left out and named (see the module's text);
    a one-line ``ValueError`` when that leaves none, when ``--out`` may not be written (a file,
    or a folder holding anything but compare's own output), or when an ``--axes`` setting is
    one no run has."""
    from ecgtransfer import tracking

    out = Path(config.out)
    if context.pipeline_run is None and context.stage_run is None:
        _check_out(out)  # a pipeline's compare writes into the stage folder the pipeline made
    _check_store(tracking.tracking_uri(config.tracking_uri))
    tracking.setup(config.tracking_uri)
    experiments = config.experiment
    if not experiments:
        experiments = [tracking.latest_pipeline_experiment() or "ecgtransfer-finetune"]
    if config.pipeline_run:
        try:
            tracking.get_run(config.pipeline_run)
        except ValueError as exc:
            raise ValueError(f"--pipeline-run {exc}") from None
    runs = finetune_runs(experiments, config.tracking_uri, config.pipeline_run,
                         run_ids=config.runs)
    problems: dict[str, str] = {}
    predictions = (run_predictions(runs, problems) if config.bootstrap and not runs.empty
                   else {})
    left = runs[runs["run_id"].isin(problems)].assign(
        reason=lambda d: d["run_id"].map(problems))
    runs = runs[~runs["run_id"].isin(problems)]
    if len(left) and runs.empty:
        named = [_left_out_text(r) for _, r in left.sort_values("run_name").head(3).iterrows()]
        more = f"; and {len(left) - 3} more" if len(left) > 3 else ""
        raise ValueError(f"nothing left to compare: all {len(left)} fine-tune runs were left out "
                         f"for unusable predictions ({'; '.join(named)}{more})")
    notes = _notes(runs, left, predictions)
    for note in notes:
        log.warning("compare: %s", note)
    bootstrap = (Bootstrap(predictions, config.bootstrap, config.seed)
                 if config.bootstrap and not runs.empty else None)
    table = comparison_table(runs, bootstrap=bootstrap, left_out=left)
    summary = summary_text(table, notes)
    if table.empty:
        return StageResult(str(config.out), summary.rstrip("\n"), exit_code=1, details=table)
    along = axes_table(table, config.metric, config.axes) if config.axes else None
    pairs: list[dict] = []
    diffs = paired_differences(runs, config.metric, bootstrap=bootstrap, pairs=pairs)
    said = sentences(diffs, config.metric)
    classes = per_class(runs, bootstrap) if bootstrap is not None else pd.DataFrame()
    with _writing(out):
        paths = write_comparison(table, out, config.metric, pd.DataFrame(pairs), notes)
        if config.cost:
            paths.update(_write_figure(table, out, "cost", plot_cost(table, config.metric)))
        if along is not None:
            paths.update(_write_figure(along, out, "axes",
                                       plot_axes(along, config.metric, config.axes)))
        if not classes.empty:
            paths.update(_write_per_class(classes, out))
        # an earlier comparison's files this one did not write (its --cost, --axes, pairs)
        # would read as this one's: removed once the new files are in place
        written = {Path(p).name for p in paths.values()}
        for name in _OUTPUTS:
            if name not in written:
                (out / name).unlink(missing_ok=True)
    if not classes.empty:
        said += _per_class_sentences(classes)
    if context.stage_run is not None:
        for p in paths.values():
            context.stage_run.log_artifact(p)
    if context.pipeline_run is not None:
        _answer(context.pipeline_run, table, diffs, config.metric, said, paths, notes)
    summary += "".join(f"{line}\n" for line in said)
    summary += (f"{len(runs)} runs in {len(table)} groups"
                + (f" ({len(left)} left out)" if len(left) else "") + "; wrote "
                + ", ".join(str(p) for p in paths.values()))
    return StageResult(str(config.out), summary, details=table)


_RUN_ID = re.compile(r"[A-Za-z0-9_-]+")
_OUTPUTS = ("comparison.csv", "comparison.md", "comparison.png", "pairs.csv", "cost.csv",
            "cost.png", "axes.csv", "axes.png", "per_class.csv", "per_class.png")
"""Every file compare may write into its folder."""


def _notes(runs: pd.DataFrame, left: pd.DataFrame,
           predictions: dict[str, pd.DataFrame]) -> list[str]:
    """What a reader of the table must know: the runs left out and why; where the bootstrap
    is run for some runs, the runs whose group falls back to another interval; and runs whose
    logged metrics (what a group without predictions averages) are missing."""
    notes = [f"left out: {_left_out_text(r)}" for _, r in left.iterrows()]
    for _, r in runs[~runs["run_id"].isin(predictions)].iterrows():
        if predictions:
            notes.append(f"no predictions: run {r['run_name']} ({r['run_id']}) logged no "
                         f"{_PREDICTIONS.get(r['evaluation'], 'predictions file')}; its group's "
                         "interval is a t over seeds (or its own), not the bootstrap over records")
        unset = [f"test_{m}" for m in METRICS if not np.isfinite(r[m])]
        if unset:
            notes.append(f"no {', '.join(unset)}: run {r['run_name']} ({r['run_id']}) logged "
                         "none (or NaN); its group's mean over seeds leaves it out")
    return notes


def _check_out(out: Path) -> None:
    """Refuse, touching nothing, an ``--out`` compare may not write: a file, a path under a
    file, or a folder holding anything but compare's own output."""
    from ecgtransfer.files import check_output_folder

    check_output_folder(out, "compare", legacy=("comparison.csv",))


def _check_store(uri: str) -> None:
    """Refuse an SQLite tracking store that does not exist: compare only reads runs, and
    MLflow would create an empty database at a mistyped name (a missing folder is
    :func:`ecgtransfer.tracking.setup`'s to refuse)."""
    m = re.fullmatch(r"sqlite:///(.+)", uri)
    path = Path(m.group(1)) if m else None
    if path is not None and path.parent.is_dir() and not path.exists():
        raise ValueError(f"--tracking-uri {uri}: no such MLflow database ({path}); pass the "
                         "store the fine-tune runs were logged to")


@contextlib.contextmanager
def _writing(out: Path):
    """An error writing into ``out`` as one line naming it (a full disk passes on as it is, for
    the command line's own message)."""
    from ecgtransfer.files import disk_full

    try:
        yield
    except OSError as exc:
        if disk_full(exc):
            raise
        raise ValueError(f"--out {out}: cannot write there ({exc.strerror or type(exc).__name__})"
                         ) from None


def _write_figure(table: pd.DataFrame, out: Path, name: str, fig) -> dict[str, Path]:
    """``<name>.csv`` and ``<name>.png``, each whole or not at all."""
    from ecgtransfer.files import atomic_file

    paths = {name: out / f"{name}.csv", f"{name}_png": out / f"{name}.png"}
    with atomic_file(paths[name]) as f:
        table.to_csv(f, index=False)
    with atomic_file(paths[f"{name}_png"], binary=True) as f:
        fig.savefig(f, format="png", dpi=110)
    return paths


def _write_per_class(classes: pd.DataFrame, out: Path) -> dict[str, Path]:
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


def _per_class_sentences(classes: pd.DataFrame) -> list[str]:
    """One line per transfer group: its AUROC difference on the classes an interval defines."""
    out = []
    defined = classes[(classes["defined_by"] != "") & np.isfinite(classes["delta"])]
    for (label, fraction), part in defined.groupby(["label", "train_fraction"], sort=True):
        shown = "; ".join(f"{r['class']} ({r['defined_by']}, {r['positives']} positive) "
                          f"{r['delta']:+.3f} [{r['delta_low']:+.3f}, {r['delta_high']:+.3f}]"
                          for _, r in part.iterrows() if np.isfinite(r["delta"]))
        if shown:
            out.append(f"{label} vs scratch at train fraction {fraction:g}, AUROC per class "
                       f"defined by an interval: {shown}")
    return out


def _key(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _answer(run, table: pd.DataFrame, diffs: pd.DataFrame, metric: str, said: list[str],
            paths: dict[str, Path], notes: Sequence[str] = ()) -> None:
    """Put the answer on the pipeline's run: the mean test metric per group and the difference
    to scratch with its interval as metrics, the table (``log_table``) and plot as artifacts,
    and the sentences with the Markdown table as its description."""
    values = {}
    for _, r in table.iterrows():
        values[_key(f"test_{metric}.{_label(r)}.f{r['train_fraction']:g}")] = r[metric]
    for _, r in diffs.iterrows():
        name = _key(f"delta_{metric}.{_label(r)}.f{r['train_fraction']:g}")
        values.update({name: r["delta"], f"{name}_ci_low": r["delta_low"],
                       f"{name}_ci_high": r["delta_high"]})
    run.log_metrics(values)
    run.log_table(table, "comparison/comparison.json")
    for p in paths.values():
        run.log_artifact(p, "comparison")
    run.set_note("\n".join(["**Does pretraining help?** " + (
        "; ".join(said) if said else "no scratch baseline to compare with") + ".", "",
        _markdown(table, notes)]))


register_stage(Stage(
    "compare", CompareConfig, compare, command=("compare",), output="", reads="finetune",
    answers=True,
    help="table and plot of fine-tune runs: strategy, source, freezing, train fraction -> "
         "test metrics over seeds",
    description="Group finished fine-tune runs (a cross-validation counts once, with its pooled "
                "out-of-fold predictions) that differ only in seed and report test accuracy, "
                "macro AUROC and macro F1 as the mean over seeds with a 95% interval: a "
                "bootstrap over records and seeds from the runs' logged predictions (runs "
                "without them: t over seeds). Each transfer group is set against its scratch "
                "baseline on the same records, folds and seeds (paired), with the count of "
                "fold-seed pairs it won. Prints the table and the differences as sentences and "
                "writes comparison.csv, comparison.md, comparison.png and pairs.csv."))
