"""Summaries of explanations over many records, as plain tables: mean wave shares with 95%
bootstrap intervals over the records, deletion/insertion areas against random orders of the same
record, paired differences to another explain folder's shares, and whether a regressor's
attribution sits on the wave that defines its interval. Nothing here loads a model or a store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PARTS", "ENRICHMENT", "tables", "interval", "faithfulness", "against_baseline",
           "defining", "differs"]

PARTS = ("p", "pr", "qrs", "st", "t", "other")
"""The parts of a beat an attribution's share is measured on."""


def tables(rows: list[dict], shares: list[dict], curves: list[dict], sanity: list[dict], *,
           kind: str, bootstrap: int, seed: int) -> dict[str, pd.DataFrame]:
    """The tables over the records explained, from their rows (one dict each): ``records``,
    ``wave_share`` (mean shares per output and method with 95% intervals; for a ``regressor``
    whether each interval's attribution sits on its defining wave), ``wave_share_records``,
    ``faithfulness`` and ``curves`` (deletion/insertion against random orders), ``sanity``
    (the model-randomisation check) and ``timing``. Intervals resample the records
    ``bootstrap`` times with ``seed``."""
    import pandas as pd

    rows, shares = pd.DataFrame(rows), pd.DataFrame(shares)
    curves, sanity = pd.DataFrame(curves), pd.DataFrame(sanity)
    out: dict[str, pd.DataFrame] = {"records": rows}
    if len(shares):
        cols = [f"share_{p}" for p in PARTS] + [f"time_{p}" for p in PARTS]
        table = shares.groupby(["output", "method"], sort=False)[cols].mean().reset_index()
        table.insert(2, "n_records", shares.groupby(["output", "method"], sort=False)
                     .size().to_numpy())
        for part in PARTS:
            bounds = [interval(g[f"share_{part}"].to_numpy(), bootstrap, seed)
                      for _, g in shares.groupby(["output", "method"], sort=False)]
            table[f"share_{part}_ci_low"] = [b[0] for b in bounds]
            table[f"share_{part}_ci_high"] = [b[1] for b in bounds]
        out["wave_share_records"] = shares
        if kind == "regressor":
            table = defining(table, shares)
        out["wave_share"] = table
    if len(curves):
        out["faithfulness"] = faithfulness(curves, bootstrap, seed)
        points = []
        for method, part in curves.groupby("method", sort=False):
            for kind in ("deletion", "insertion"):
                fr = np.mean(np.stack(part["fractions"].to_list()), axis=0)
                val = np.nanmean(np.stack(part[kind].to_list()), axis=0)
                points += [{"method": method, "kind": kind, "fraction": f, "value": v}
                           for f, v in zip(fr, val)]
        out["curves"] = pd.DataFrame(points)
    if len(sanity):
        table = sanity.groupby("method", sort=False).agg(
            n=("spearman", "count"), spearman_mean=("spearman", "mean"),
            spearman_min=("spearman", "min"), spearman_max=("spearman", "max"),
            spearman_input=("spearman_input", "mean")).reset_index()
        table["randomisation"] = [differs(r) for r in table["spearman_mean"]]
        out["sanity"] = table
    timing = [c for c in rows.columns if c.startswith("seconds_")]
    out["timing"] = pd.DataFrame({"method": [c[len("seconds_"):] for c in timing],
                                  "seconds_per_record_output": [rows[c].mean() for c in timing],
                                  "n": len(rows)})
    return out


def interval(values: np.ndarray, bootstrap: int, seed: int) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of per-record ``values`` (resampling the
    records; NaN without resamples or values)."""
    from ecgtransfer.training.metrics import bootstrap_draws, percentile_interval

    values = np.asarray(values, dtype=float)
    if not bootstrap or not len(values):
        return (np.nan, np.nan)
    draws = bootstrap_draws(len(values), n_resamples=bootstrap, seed=seed)
    return percentile_interval([np.nanmean(values[idx]) for _, idx in draws])


def faithfulness(curves: pd.DataFrame, bootstrap: int, seed: int) -> pd.DataFrame:
    """Mean areas per output and method (and over all outputs), with each method's paired
    difference to the random orders of the same record and output and its 95% interval."""
    import pandas as pd

    per = curves.groupby(["record_id", "output", "method"], sort=False)[
        ["deletion_auc", "insertion_auc"]].mean().reset_index()
    rand = per[per["method"] == "random"].set_index(["record_id", "output"])
    rows = []
    for output in ["all", *dict.fromkeys(per["output"])]:
        part = per if output == "all" else per[per["output"] == output]
        for method, g in part.groupby("method", sort=False):
            row = {"output": output, "method": method,
                   "n": int(g["deletion_auc"].notna().sum()),
                   "deletion_auc": g["deletion_auc"].mean(),
                   "insertion_auc": g["insertion_auc"].mean()}
            key = pd.MultiIndex.from_frame(g[["record_id", "output"]])
            for kind in ("deletion", "insertion"):
                diff = g[f"{kind}_auc"].to_numpy() - rand[f"{kind}_auc"].reindex(key).to_numpy()
                row[f"{kind}_vs_random"] = float(np.nanmean(diff)) if len(diff) else np.nan
                lo, hi = interval(diff, bootstrap, seed) if method != "random" else (0.0, 0.0)
                row[f"{kind}_vs_random_ci_low"], row[f"{kind}_vs_random_ci_high"] = lo, hi
            rows.append(row)
    return pd.DataFrame(rows)


def against_baseline(shares: pd.DataFrame, baseline: str, bootstrap: int,
                     seed: int) -> pd.DataFrame:
    """Paired differences of the wave shares to another explain folder's, record by record (the
    records, outputs and methods both explained), with 95% bootstrap intervals."""
    import pandas as pd

    path = Path(baseline) / "wave_share_records.csv"
    try:
        theirs = pd.read_csv(path, dtype={"record_id": str})
    except (OSError, ValueError):
        raise ValueError(f"--baseline {baseline}: no wave_share_records.csv (not an explain "
                         "folder of this version?)") from None
    keys = ["record_id", "output", "method"]
    both = shares.merge(theirs, on=keys, suffixes=("", "_baseline"))
    if both.empty:
        raise ValueError(f"--baseline {baseline}: no record, output and method explained in "
                         "both")
    rows = []
    for (output, method), g in both.groupby(["output", "method"], sort=False):
        for part in PARTS:
            diff = (g[f"share_{part}"] - g[f"share_{part}_baseline"]).to_numpy()
            both_have = np.isfinite(diff)  # a map of all zeros (Grad-CAM's ReLU) has no shares
            diff = diff[both_have]
            lo, hi = interval(diff, bootstrap, seed)
            rows.append({"output": output, "method": method, "part": part,
                         "n_records": int(both_have.sum()),
                         "share": g[f"share_{part}"][both_have].mean(),
                         "baseline_share": g[f"share_{part}_baseline"][both_have].mean(),
                         "difference": float(np.mean(diff)) if len(diff) else np.nan,
                         "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


ENRICHMENT = 1.5
"""An interval's attribution sits on its defining wave when that wave's share of |attribution|
is at least this many times its share of the time, and no other wave is more enriched."""


def _enrichment(row, parts) -> float:
    t = sum(row[f"time_{p}"] for p in parts)
    return sum(row[f"share_{p}"] for p in parts) / t if t > 0 else np.nan


def _most_enriched(row) -> str:
    return max(PARTS[:-1], key=lambda p: row[f"share_{p}"] / max(row[f"time_{p}"], 1e-9))


def defining(table: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
    """The wave-share table of a regressor with whether each interval's attribution sits on the
    wave that defines it (:data:`ENRICHMENT`), over the mean shares and record by record."""
    from ecgtransfer.explain.waves import DEFINING_WAVES

    table = table.copy()
    parts = [DEFINING_WAVES.get(o, ()) for o in table["output"]]
    table["defining"] = ["+".join(p) for p in parts]
    table["defining_share"] = [sum(r[f"share_{w}"] for w in p)
                               for p, (_, r) in zip(parts, table.iterrows())]
    table["defining_enrichment"] = [_enrichment(r, p) for p, (_, r) in zip(parts, table.iterrows())]
    table["most_enriched"] = [_most_enriched(r) for _, r in table.iterrows()]
    table["on_defining_wave"] = [bool(p) and e >= ENRICHMENT and m in p for p, e, m in zip(
        parts, table["defining_enrichment"], table["most_enriched"])]
    per_record = []
    for (output, method), part in shares.groupby(["output", "method"], sort=False):
        p = DEFINING_WAVES.get(output, ())
        hits = [bool(p) and _enrichment(r, p) >= ENRICHMENT and _most_enriched(r) in p
                for _, r in part.iterrows()]
        per_record.append(float(np.mean(hits)) if hits else np.nan)
    table["records_on_defining_wave"] = per_record
    return table


def differs(rho: float) -> str:
    """Adebayo et al.'s check in words: how far the trained model's attributions are from the
    randomised model's (mean Spearman of |attribution|)."""
    if not np.isfinite(rho):
        return "not measured"
    return ("differs clearly" if rho < 0.3 else "differs partly" if rho < 0.6
            else "hardly differs (fails)")
