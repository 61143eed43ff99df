"""Interval regressors compared per stratum of real records: MAE against a truth (the labeller's
labels, or cardiologists' marks) on the records where an interval is abnormal, with a
seed-and-record bootstrap interval and the paired difference to a baseline.

A *stratum* is a condition on one true interval (``qrs>=120``: QRS at least 120 ms) or ``all``.
Each model is a *group* of regressors that differ only in seed (one per seed); every group is
scored on the same records of a stratum (those with a true value and every group's prediction),
and all groups are resampled with the same draws (:class:`ecgtransfer.training.metrics.
bootstrap_draws`: seeds and records with replacement), so the interval covers the test
records' own sampling and training randomness, and a difference's interval is a paired one.

Plain tables in, plain tables out: nothing here reads a model or MLflow.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ecgtransfer.comparison import DEFAULT_STRATA
from ecgtransfer.features.vocabulary import UNITS, column

__all__ = ["Stratum", "DEFAULT_STRATA", "parse_stratum", "stratum_table", "plot_strata",
           "strata_sentences"]


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_PATTERN = re.compile(r"^\s*([a-z]+)\s*(<=|>=|<|>)\s*([-+]?\d+(?:\.\d*)?)\s*$")


@dataclass(frozen=True)
class Stratum:
    """Records whose true ``interval`` satisfies ``op value`` (``all``: every record)."""

    name: str
    interval: str = ""
    op: str = ""
    value: float = 0.0

    def mask(self, truth: pd.DataFrame) -> np.ndarray:
        """Which rows of ``truth`` (columns ``hr_bpm``, ``qrs_ms`` ...) are in the stratum; a
        record without a true value of the stratum's interval is in none but ``all``."""
        if not self.interval:
            return np.ones(len(truth), dtype=bool)
        values = truth[column(self.interval)].to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            return np.isfinite(values) & _OPS[self.op](values, self.value)


def parse_stratum(text: str) -> Stratum:
    """``all`` or ``<interval><op><number>`` (``qrs>=120``, ``hr<55``); a ``ValueError`` saying
    what a stratum looks like otherwise."""
    text = str(text).strip().lower()
    if text == "all":
        return Stratum("all")
    m = _PATTERN.match(text)
    if not m or m.group(1) not in UNITS:
        raise ValueError(f"{text!r} is not a stratum: 'all' or an interval ({', '.join(UNITS)}), "
                         "<, <=, > or >= and a number, e.g. qrs>=120")
    return Stratum(f"{m.group(1)}{m.group(2)}{float(m.group(3)):g}", m.group(1), m.group(2),
                   float(m.group(3)))


def stratum_table(truth: pd.DataFrame, predictions: Mapping[str, Sequence[pd.DataFrame]],
                  strata: Sequence[Stratum], targets: Sequence[str], *, baseline: str,
                  n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """MAE per group, target and stratum with its interval, and the paired difference to the
    ``baseline`` group.

    Parameters
    ----------
    truth : pandas.DataFrame
        One row per record, columns ``hr_bpm, pr_ms, qrs_ms, qt_ms`` (NaN where unknown).
    predictions : mapping of group name to a list of tables
        Per group, one table per seed, rows aligned with ``truth``, the same columns (NaN
        where the regressor gave nothing). Every group has the same number of seeds.
    strata, targets
        What to report (targets: ``qrs`` ...).
    baseline : str
        The group the others are set against.

    Returns
    -------
    pandas.DataFrame
        One row per group, target and stratum: ``model, target, unit, stratum, n_records,
        n_seeds, mae, mae_low, mae_high, bias, delta, delta_low, delta_high`` (the ``delta``
        columns: this group's MAE minus the baseline's, NaN for the baseline), plus ``better``,
        the share of resamples where this group's MAE is the lower one.
    """
    from ecgtransfer.training.metrics import bootstrap_draws, percentile_interval

    names = list(predictions)
    seeds = {len(predictions[g]) for g in names}
    if len(seeds) != 1:
        raise ValueError("every model needs the same number of seeds to be resampled alike ("
                         + ", ".join(f"{g}: {len(predictions[g])}" for g in names) + ")")
    k = seeds.pop()
    rows = []
    for target in targets:
        col = column(target)
        true = truth[col].to_numpy(np.float64)
        pred = {g: np.stack([t[col].to_numpy(np.float64) for t in predictions[g]])
                for g in names}  # (seeds, records)
        usable = np.isfinite(true) & np.all([np.isfinite(p).all(axis=0) for p in pred.values()],
                                            axis=0)
        for stratum in strata:
            keep = np.flatnonzero(usable & stratum.mask(truth))
            n = len(keep)
            errors = {g: np.abs(pred[g][:, keep] - true[keep]) for g in names}
            signed = {g: (pred[g][:, keep] - true[keep]).mean() if n else np.nan for g in names}
            draws = {g: np.full(n_resamples, np.nan) for g in names}
            if n:
                for i, (s, r) in enumerate(bootstrap_draws(n, k, n_resamples=n_resamples,
                                                           seed=seed)):
                    weights = np.bincount(r, minlength=n) / n
                    for g in names:
                        draws[g][i] = (errors[g] @ weights)[s].mean()
            for g in names:
                mae = float(errors[g].mean()) if n else np.nan
                low, high = percentile_interval(draws[g], level)
                row = {"model": g, "target": target, "unit": UNITS[target],
                       "stratum": stratum.name, "n_records": n, "n_seeds": k, "mae": mae,
                       "mae_low": low, "mae_high": high, "bias": float(signed[g]),
                       "delta": np.nan, "delta_low": np.nan, "delta_high": np.nan,
                       "better": np.nan}
                if g != baseline and n:
                    diff = draws[g] - draws[baseline]
                    row["delta"] = mae - float(errors[baseline].mean())
                    row["delta_low"], row["delta_high"] = percentile_interval(diff, level)
                    row["better"] = float(np.mean(diff < 0))
                rows.append(row)
    return pd.DataFrame(rows)


def strata_sentences(table: pd.DataFrame, baseline: str) -> list[str]:
    """One sentence per compared group, target and stratum: the MAE difference to the
    baseline with its interval, and whether the interval clears zero."""
    out = []
    for _, r in table[np.isfinite(table["delta"].to_numpy(np.float64))].iterrows():
        lo, hi = r["delta_low"], r["delta_high"]
        verdict = ("lower" if hi < 0 else "higher" if lo > 0 else "not clearly different")
        out.append(f"{r['target'].upper()} on {r['stratum']} ({r['n_records']} records x "
                   f"{r['n_seeds']} seed{'s' if r['n_seeds'] != 1 else ''}): {r['model']} "
                   f"{r['mae']:.1f} vs {baseline} {r['mae'] - r['delta']:.1f} {r['unit']} MAE, "
                   f"{r['delta']:+.1f} [{lo:+.1f}, {hi:+.1f}]: {verdict}")
    return out


def plot_strata(table: pd.DataFrame):
    """MAE with its interval per stratum, one panel per target, one bar per model."""
    from ecgtransfer.plots import figure

    targets = list(dict.fromkeys(table["target"]))
    models = list(dict.fromkeys(table["model"]))
    fig, axes = figure(len(targets), width=4.6, height=3.6)
    width = 0.8 / max(len(models), 1)
    for ax, target in zip(axes, targets):
        part = table[table["target"] == target]
        strata = list(dict.fromkeys(part["stratum"]))
        x = np.arange(len(strata))
        for j, model in enumerate(models):
            rows = part[part["model"] == model].set_index("stratum").reindex(strata)
            y = rows["mae"].to_numpy(np.float64)
            err = np.abs(np.vstack([y - rows["mae_low"].to_numpy(np.float64),
                                    rows["mae_high"].to_numpy(np.float64) - y]))
            ax.bar(x + (j - (len(models) - 1) / 2) * width, y, width, yerr=np.nan_to_num(err),
                   capsize=2, label=model)
        counts = part.drop_duplicates("stratum").set_index("stratum")["n_records"]
        ax.set_xticks(x, [f"{s}\nn={counts[s]}" for s in strata], fontsize=7)
        unit = part["unit"].iloc[0]
        ax.set_ylabel(f"MAE ({unit})")
        ax.set_title(target.upper())
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
