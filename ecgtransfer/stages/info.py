"""The info stage: what a signal store holds."""

from __future__ import annotations

from dataclasses import dataclass

from ecgtransfer.config import setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

__all__ = ["InfoConfig", "info"]


@dataclass(frozen=True, kw_only=True)
class InfoConfig:
    """Settings of ``ecgtransfer data info``."""

    store: str = setting(help="the signal store", positional=True, role="input",
                         metavar="STORE")


def info(config: InfoConfig, context: Context) -> StageResult:
    """The store's size, rate, leads, splits and labels."""
    from ecgtransfer.data.store import SignalStore

    store = SignalStore(config.store)
    idx = store.index
    lines = [repr(store), f"leads: {', '.join(store.leads)}"]
    for column in ("split", "half", "superclass", "flag", "database", "sex"):
        if column in idx:
            counts = idx[column].fillna("").replace("", "(none)").value_counts()
            lines.append(f"{column}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    classes = [c for c in (store.meta.get("info") or {}).get("classes", []) if c in idx]
    if classes:  # a Challenge store's scored classes, most frequent first
        counts = idx[classes].sum().sort_values(ascending=False)
        lines.append("scored classes (records): " + ", ".join(
            f"{k} {int(v)}" for k, v in counts.items() if v) + "; absent: "
            + (", ".join(k for k, v in counts.items() if not v) or "none"))
    lines.append(f"rejected: {len(store.rejects)}")
    return StageResult(str(store.path), "\n".join(lines), details=store)


register_stage(Stage(
    "info", InfoConfig, info, command=("data", "info"), pipeline=False, output=None,
    help="summarise a signal store",
    description="Print a store's size, rate, leads, splits and labels."))
