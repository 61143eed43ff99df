"""The statistics of a comparison of fine-tune runs.

Runs equal in every :data:`~ecgtransfer.comparison.GROUP` key differ only in seed. Where the
runs logged their predictions, a metric's interval is a bootstrap over records and seeds
together (:class:`Bootstrap`): each resample draws the seeds and the records with replacement
and averages the metric over the drawn seeds, so it covers the test set's own sampling as well
as training randomness. Transfer and its scratch baseline are resampled identically (same
records, same seeds), which makes the difference's interval a paired one. Without predictions,
the interval is Student's t over seeds (one seed: the run's own bootstrap interval).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections import OrderedDict
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ecgtransfer.comparison import COSTS, GROUP, METRICS
from ecgtransfer.training.predictions import prediction_arrays

__all__ = ["Bootstrap", "INTERVAL_OF", "axes_table", "axis_values", "baseline_runs",
           "comparison_table", "group_label", "kwargs_text", "left_out_text",
           "paired_differences", "param_value", "pareto_front", "per_class"]


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

    @cached_property
    def ranked(self):
        """The predictions sorted once, for the metrics of any weighting of the records."""
        from ecgtransfer.training.metrics import RankedPredictions

        return RankedPredictions(self.probs, self.y, self.classes, self.multilabel)


class Bootstrap:
    """The seed-and-record bootstrap of runs' predictions (see :func:`run_predictions`).

    Every stack of the same size is resampled with the same draws (``n_resamples``, seeded by
    ``seed``), so the difference of two strategies on the same records and seeds is a paired
    bootstrap; each stack's per-resample values are computed once.
    """

    _KEPT = 2
    """Stacks kept for reuse (a group's, then its baseline's): the predictions in memory are a
    few groups', never every run's."""

    def __init__(self, predictions: Mapping[str, pd.DataFrame], n_resamples: int = 1000,
                 seed: int = 0, level: float = 0.95):
        self.predictions = predictions
        self.n_resamples = n_resamples
        self.seed = seed
        self.level = level
        self._cache: dict[Any, dict[str, np.ndarray]] = {}
        self._stacks: OrderedDict[tuple[str, ...], _Stack | None] = OrderedDict()

    def stack(self, runs: pd.DataFrame, seeds: Sequence[str] | None = None) -> _Stack | None:
        """``runs``' predictions for ``seeds`` (default: all); None when a run has none, or
        when the runs were tested on different records."""
        import pandas as pd

        runs = runs.drop_duplicates("seed")
        if seeds is not None:
            runs = runs[runs["seed"].isin(seeds)]
        if runs.empty or not all(r in self.predictions for r in runs["run_id"]):
            return None
        runs = runs.sort_values("seed", key=lambda s: pd.to_numeric(s, errors="coerce"))
        key = tuple(runs["run_id"])
        if key not in self._stacks:
            self._stacks[key] = self._read(runs)
            while len(self._stacks) > self._KEPT:
                self._stacks.popitem(last=False)
        self._stacks.move_to_end(key)
        return self._stacks[key]

    def _read(self, runs: pd.DataFrame) -> _Stack | None:
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
        folds = (first["fold"].to_numpy(np.int64) if "fold" in first.columns
                 else np.ones(len(ids), np.int64))
        return _Stack(tuple(runs["run_id"]), list(runs["seed"]), ids, probs, y, folds, classes,
                      multilabel)

    def metrics(self, stack: _Stack, rows: np.ndarray | None = None) -> dict[str, float]:
        """Each metric averaged over the stack's seeds, on ``rows`` (default all records)."""
        weights = None
        if rows is not None:
            weights = np.bincount(rows, minlength=len(stack.ids))
        return stack.ranked.metrics(weights)

    def draws(self, stack: _Stack) -> dict[str, np.ndarray]:
        """Per metric, its value in every resample (seeds and records drawn with replacement,
        the metric averaged over the drawn seeds)."""
        from ecgtransfer.training.metrics import bootstrap_draws

        cache_key = (stack.runs, tuple(stack.ids.tolist()))
        if cache_key in self._cache:
            return self._cache[cache_key]
        keys = _keys(stack)
        out = {m: np.empty(self.n_resamples) for m in keys}
        draws = bootstrap_draws(len(stack.ids), len(stack.seeds), n_resamples=self.n_resamples,
                                seed=self.seed)
        for i, (seeds, rows) in enumerate(draws):
            values = stack.ranked.metrics(np.bincount(rows, minlength=len(stack.ids)), seeds)
            for m in keys:
                out[m][i] = values[m]
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
            row["left_out"] = "; ".join(left_out_text(r) for _, r in mine.iterrows())
        out.append(row)
    columns = [*GROUP, "seeds", "n_train", "n_test", "interval"] + [
        f"{m}{s}" for m in METRICS for s in ("", "_low", "_high")] + [
        "model", "model_kwargs"] + [f"cost_{c}" for c in COSTS] + ["left_out"]
    return pd.DataFrame(out, columns=columns)


def left_out_text(run: pd.Series) -> str:
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


def baseline_runs(row: Mapping[str, Any], runs: pd.DataFrame,
                  against: str = "scratch") -> pd.DataFrame:
    """The runs a transfer group (``row``: its GROUP keys) is set against.

    ``against="scratch"``: scratch of the same size (:func:`_baseline`). Otherwise the name of a
    pretraining source (``deepfake``): transfer from that source with the group's strategy,
    trunk targets, trunks, freezing, task, split and train fraction, which asks whether the
    group's own source adds anything over that one; a group of that source (or from scratch)
    has none.
    """
    if against == "scratch":
        return _baseline(dict(row), runs[runs["strategy"] == "scratch"])
    if row["strategy"] == "scratch" or row["source"] == against:
        return runs.iloc[0:0]
    pool = runs[(runs["source"] == against) & (runs["strategy"] == row["strategy"])
                & (runs["source_targets"] == row["source_targets"])]
    return _baseline(dict(row), pool)


def paired_differences(runs: pd.DataFrame, metric: str = "macro_auroc", level: float = 0.95,
                       bootstrap: Bootstrap | None = None,
                       pairs: list[dict] | None = None, against: str = "scratch") -> pd.DataFrame:
    """Each transfer group against its baseline (:func:`baseline_runs`: scratch of the same
    size, or transfer from the source ``against``), on the same seeds and, with predictions,
    the same records and folds.

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

    out = []
    for key, group in runs[runs["strategy"] != "scratch"].groupby(list(GROUP), sort=True,
                                                                   dropna=False):
        row = dict(zip(GROUP, key))
        base = baseline_runs(row, runs, against)
        if base.empty:
            continue
        row["baseline"] = group_label(base.iloc[0])
        seeds = sorted(set(group["seed"]) & set(base["seed"]))
        mine = bootstrap.stack(group, seeds) if bootstrap is not None else None
        theirs = bootstrap.stack(base, seeds) if mine is not None else None
        if mine is not None and theirs is not None and set(mine.ids) != set(theirs.ids):
            mine = theirs = None  # not the same test records: no paired bootstrap
        if mine is not None and theirs is not None:
            row.update(_paired(bootstrap, key, mine, theirs, metric, pairs))
        else:
            both = group.merge(base, on="seed", suffixes=("", "_baseline"))
            diff = (both[metric] - both[f"{metric}_baseline"]).to_numpy(np.float64)
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
    point = bootstrap.metrics(mine)[metric] - bootstrap.metrics(theirs)[metric]
    low, high = bootstrap.interval(bootstrap.draws(mine)[metric] - bootstrap.draws(theirs)[metric])
    won = counted = 0
    for s, seed in enumerate(mine.seeds):
        for fold in np.unique(mine.folds):
            rows = np.flatnonzero(mine.folds == fold)
            inside = (mine.folds == fold).astype(np.float64)
            a, b = (st.ranked.metrics(inside, np.array([s]))[metric] for st in (mine, theirs))
            if not (np.isfinite(a) and np.isfinite(b)):
                continue
            counted += 1
            won += int(a > b)
            if pairs is not None:
                pairs.append({**dict(zip(GROUP, key)), "seed": seed, "fold": int(fold),
                              "records": len(rows), metric: a, f"{metric}_baseline": b,
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
    "LAFB": "QRS",  # by the frontal axis, with a QRS under 120 ms
    "CD": "PR/QRS",  # PTB-XL's superclass of conduction disturbances: AV and bundle blocks
}
"""The interval that defines a diagnosis: rate (sinus bradycardia, tachycardia), PR
(first-degree AV block, prolonged PR), QRS (bundle branch blocks, IVCD), QT (prolonged QT).
These are the classes where trunks pretrained to measure that interval should help most."""


def per_class(runs: pd.DataFrame, bootstrap: Bootstrap, against: str = "scratch"
              ) -> pd.DataFrame:
    """Per group and class: AUROC (mean over seeds) with its bootstrap interval over records
    and seeds, the class's positives, the interval that defines it (:data:`INTERVAL_OF`), and
    for a transfer group the paired difference to its baseline (:func:`baseline_runs`; same
    records and seeds, same draws). Groups without predictions are left out."""
    rows = []
    for key, group in runs.groupby(list(GROUP), sort=True, dropna=False):
        row = dict(zip(GROUP, key))
        stack = bootstrap.stack(group)
        if stack is None:
            continue
        theirs = None
        if row["strategy"] != "scratch":
            base = baseline_runs(row, runs, against)
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
            out = {**row, "label": group_label(pd.Series(row)), "class": c,
                   "defined_by": INTERVAL_OF.get(c, ""), "positives": int(positives),
                   "records": len(stack.ids), "auroc": point[k], "auroc_low": low,
                   "auroc_high": high, "baseline": "", "delta": np.nan, "delta_low": np.nan,
                   "delta_high": np.nan}
            if theirs is not None:
                d_low, d_high = bootstrap.interval(draws[k] - base_draws[k])
                out.update(baseline=group_label(base.iloc[0]), delta=point[k] - base_point[k],
                           delta_low=d_low, delta_high=d_high)
            rows.append(out)
    return pd.DataFrame(rows)


def param_value(text: str):
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


def kwargs_text(row: pd.Series) -> str:
    """A group's own architecture parameters, ``layers=[2,2,2] width=16`` ("" for none)."""
    kwargs = json.loads(row.get("model_kwargs") or "{}")
    return " ".join(f"{k}={json.dumps(v).replace(' ', '')}" for k, v in kwargs.items())


def group_label(row: pd.Series) -> str:
    own = kwargs_text(row)
    own = f" {own}" if own else ""
    if row["strategy"] == "scratch":
        n = int(row["trunks"] or 1)
        return ("scratch" if n == 1 else f"scratch, combined-size ({n} trunks)") + own
    return (f"{row['strategy']} {row['source_targets'] or '?'} from {row['source'] or '?'} "
            f"({row['freeze']})" + own)


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
