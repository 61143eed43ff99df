"""The merge stage: stores of one identity (the shards of a synth run) merged into one."""

from __future__ import annotations

from dataclasses import dataclass

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

__all__ = ["MergeConfig", "merge"]


@dataclass(frozen=True, kw_only=True)
class MergeConfig:
    """Settings of ``ecgtransfer data merge``."""

    inputs: list[str] = setting(help="stores to merge (every shard of a synth run)",
                                positional=True, role="input", metavar="STORE")
    out: str = setting(help="merged store folder", role="output", metavar="STORE")

    def __post_init__(self) -> None:
        check(not self.inputs, "inputs", "name at least one store")


def merge(config: MergeConfig, context: Context) -> StageResult:
    """Records in record-id order: the shards of a synth run merge into exactly the store an
    unsharded run makes. Re-running continues."""
    from ecgtransfer.data.store import merge_stores

    store = merge_stores(config.inputs, config.out, progress=context.progress)
    return StageResult(str(store.path), f"{store.path}: {len(store)} records merged from "
                       f"{len(config.inputs)} stores", details=store)


register_stage(Stage(
    "merge", MergeConfig, merge, command=("data", "merge"), output="store",
    help="merge stores of one identity (the shards of a synth run) into one",
    description="Merge complete stores of one identity into one store, records in record-id "
                "order: the shards of a synth run merge into exactly the store an unsharded run "
                "makes. Every shard must be given; re-running continues."))
