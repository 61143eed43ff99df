"""The synth stage: seeded DeepFake ECGs generated into a signal store."""

from __future__ import annotations

from dataclasses import dataclass

from ecgtransfer.config import base_config, setting
from ecgtransfer.data.deepfake import SynthConfig
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

__all__ = ["SynthStageConfig", "synth"]


@dataclass(frozen=True, kw_only=True)
class SynthStageConfig(SynthConfig):
    """Settings of ``ecgtransfer synth``: the generator's (:class:`SynthConfig`) and the store."""

    out: str = setting(help="store folder", role="output", metavar="STORE")


def synth(config: SynthStageConfig, context: Context) -> StageResult:
    """Generate records 0 .. n-1 of the seed into ``config.out``; a killed or smaller run is
    continued, never redone."""
    from ecgtransfer.data.deepfake import synthesize

    report = synthesize(config.out, base_config(config, SynthConfig), progress=context.progress)
    store = report.store
    rate = report.written / report.seconds if report.seconds > 0 else 0.0
    shard = f" (shard {config.shard_index}/{config.num_shards})" if config.num_shards > 1 else ""
    return StageResult(str(store.path), f"{store.path}: {len(store)} DeepFake ECGs{shard}, seed "
                       f"{config.seed}, {store.n_leads} leads ({report.written} generated now at "
                       f"{rate:.0f}/s, {report.skipped} already there)", details=report)


def _version() -> str:
    import importlib.metadata

    return f"deepfake-ecg {importlib.metadata.version('deepfake-ecg')}"


register_stage(Stage(
    "synth", SynthStageConfig, synth, command=("synth",), output="store", version=_version,
    help="generate DeepFake ECGs into a signal store",
    description="Generate DeepFake ECGs (the deepfake-ecg package's Pulse2Pulse generator and "
                "weights; 10 s, 500 Hz, int16 microvolts) into a signal store. Record i depends "
                "only on (seed, i): the same for any batch size, thread count, shard split or "
                "resume. Re-running continues a killed run; a larger --n adds the missing "
                "records only."))
