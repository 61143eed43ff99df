"""The augment stage: a store's records warped to drawn PR, QRS, QT and heart rate, re-measured."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ecgtransfer.config import base_config, check, setting
from ecgtransfer.features.augment import AugmentConfig
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

__all__ = ["AugmentStageConfig", "augment"]


@dataclass(frozen=True, kw_only=True)
class AugmentStageConfig(AugmentConfig):
    """Settings of ``ecgtransfer augment``: the source store, the warped store, and the warp's
    own settings (:class:`AugmentConfig`)."""

    store: str = setting(help="signal store whose records are warped (DeepFake first)",
                         role="input", metavar="STORE")
    out: str = setting(help="warped store folder", role="output", metavar="STORE")
    workers: int | None = setting(None, "processes (default: the CPU count)", metavar="N")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not self.store, "store", "name the signal store to warp")
        check(self.workers is not None and int(self.workers) < 1, "workers", "must be at least 1")


def augment(config: AugmentStageConfig, context: Context) -> StageResult:
    """Warp records 0 .. n-1 of the seed into ``config.out``; a killed or smaller run is
    continued, never redone."""
    from ecgtransfer.features.augment import augment_store

    result = augment_store(config.store, config.out, base_config(config, AugmentConfig),
                           workers=config.workers or os.cpu_count() or 1,
                           progress=context.progress)
    store, report = result.store, result.report
    rate = (result.written + result.given_up) / result.seconds if result.seconds > 0 else 0.0
    landed = ", ".join(
        f"{k.split('_')[0].upper()} {v['median']:.1f}/{v['p95']:.1f} ms"
        .replace(" ms", " bpm" if k == "hr_bpm" else " ms")
        for k, v in report["intervals"].items() if v["n"])
    shard = f" (shard {config.shard_index}/{config.num_shards})" if config.num_shards > 1 else ""
    what = (f"{len(store)} ECGs ({report['warped']} warped, {report['kept_as_they_are']} kept "
            "as they are)" if report.get("kept_as_they_are") else f"{len(store)} warped ECGs")
    return StageResult(
        str(store.path),
        f"{store.path}: {what}{shard}, seed {config.seed} "
        f"({result.written} made now at {rate:.1f}/s, {result.skipped} already there, "
        f"{report['given_up']} given up); |measured - requested| median/95th percentile: {landed}; "
        f"{store.path / 'warp_report.json'}", details=result)


def _version() -> str:
    from ecgtransfer.features.intervals import LABELLER_VERSION
    from ecgtransfer.features.warp import WARP_VERSION

    return f"warp {WARP_VERSION}, labeller {LABELLER_VERSION}"


register_stage(Stage(
    "augment", AugmentStageConfig, augment, command=("augment",), output="store",
    version=_version,
    help="warp a store's records to drawn PR, QRS, QT and heart rate",
    description="Make interval-warped ECGs: each record of a store (DeepFake first) gets a "
                "request drawn from clinical ranges (or from another store's measured labels) "
                "and a smooth, beat-aligned time warp located by the labeller's fiducial points "
                "that lengthens or shortens its PR segment, widens or narrows its QRS (the "
                "terminal part most), changes its ST-T and its heart rate, all leads together. "
                "The labeller measures each warped record again; the index keeps requested and "
                "measured intervals, warp_report.json how close they landed. Record i depends "
                "only on (seed, i). Label the store with `ecgtransfer label` for training."))
