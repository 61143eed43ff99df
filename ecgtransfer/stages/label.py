"""The label stage: HR, PR, QRS and QT of every record of a store or WFDB folder."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ecgtransfer.config import base_config, check, setting
from ecgtransfer.features import intervals
from ecgtransfer.features.intervals import LabellerConfig
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

__all__ = ["LabelConfig", "label"]


@dataclass(frozen=True, kw_only=True)
class LabelConfig(LabellerConfig):
    """Settings of ``ecgtransfer label``: where the records are, where the labels go, and the
    labeller's own settings (:class:`LabellerConfig`, whose hash keys the label file)."""

    store: str | None = setting(None, "signal store to label", role="input", metavar="STORE")
    input: str | None = setting(None, "folder of WFDB records (LUDB, Challenge 2021); needs out",
                                role="input", metavar="DIR")
    out: str | None = setting(None, "label CSV (default: STORE/labels-<config hash>.csv)",
                              role="output", metavar="FILE")
    workers: int | None = setting(None, "processes (default: the CPU count)", metavar="N")
    shard_index: int = setting(0, "label records K, K+M, ... only; an unsharded run afterwards "
                               "gathers the shard files into one", metavar="K")
    num_shards: int = setting(1, "shards the records are split into", metavar="M")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.store) == bool(self.input), "store",
              "give a store (--store) or a WFDB folder (--input), one of the two")
        check(bool(self.input) and not self.out, "out", "labelling a WFDB folder needs --out "
              "(a shared data folder is often read-only)")
        check(self.workers is not None and self.workers < 1, "workers", "must be at least 1")
        check(self.num_shards < 1, "num_shards", "must be at least 1")
        check(not 0 <= self.shard_index < self.num_shards, "shard_index",
              f"must be below num_shards ({self.num_shards})")


def label(config: LabelConfig, context: Context) -> StageResult:
    """Label every record into one label file (one row per record, NaN with a reason where an
    interval cannot be measured); re-running continues a killed run."""
    from ecgtransfer.features.labels import label_records

    source, kind = (config.store, "store") if config.store else (config.input, "wfdb")
    report = label_records(source, out=config.out, kind=kind,
                           config=base_config(config, LabellerConfig),
                           workers=config.workers or os.cpu_count() or 1,
                           shard=(config.shard_index, config.num_shards),
                           progress=context.progress)
    rate = report.n_computed / report.seconds if report.seconds > 0 else 0.0
    counts = ", ".join(f"{k.split('_')[0]} {v}" for k, v in report.n_ok.items())
    summary = (f"{report.path}: {report.n_records} records (config {report.config_hash}; "
               f"{report.n_computed} measured now at {rate:.1f}/s, {report.n_reused} reused); "
               f"measured: {counts}")
    if config.window_s > 0:
        from ecgtransfer.features.labels import windows_folder

        summary += (f"; windows and beats of each record in {windows_folder(report.path)}/ "
                    f"({config.window_s:g}-s windows)")
    # ${labels} in a pipeline is the labelled store (pretrain's store:), and its label file
    # goes to pretrain's labels: by name.
    output = str(config.store) if config.store else str(report.path)
    return StageResult(output, summary, outputs={"labels": str(report.path)}, details=report)


register_stage(Stage(
    "label", LabelConfig, label, command=("label",), output="labels.csv", hands=("labels",),
    version=lambda: (f"labeller {intervals.LABELLER_VERSION}, "
                     f"neurokit2 {intervals.neurokit2_version()}"),
    help="measure HR, PR, QRS and QT of every record with NeuroKit2",
    description="Measure HR, PR, QRS and QT of every record (R peaks agreed across leads, "
                "median-beat delineation of 12 leads, median over leads; see docs/labels.md). "
                "One row per record, NaN with a reason where an interval cannot be measured. "
                "The file is keyed by the labeller config's hash, written beside the store with "
                "a JSON of config and versions; re-running continues a killed run. --config "
                "takes a YAML of these settings, the labeller's included."))
