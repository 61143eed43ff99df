"""The splits stage: PTB-XL's standard split and A/B halves as a table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage
from ecgtransfer.stages._ptbxl import check_ptbxl_source, ptbxl_root

__all__ = ["SplitsConfig", "splits"]


@dataclass(frozen=True, kw_only=True)
class SplitsConfig:
    """Settings of ``ecgtransfer data splits``."""

    dataset: str = setting("ptbxl", "the dataset: PTB-XL", choices=("ptbxl",), positional=True,
                           metavar="DATASET")
    out: str = setting(help="CSV to write", role="output", metavar="FILE")
    root: str | None = setting(None, "the PTB-XL folder", role="input", metavar="DIR")
    sample: bool = setting(False, "the PTB-XL sample shipped with ecgtransfer (350 records)")
    halves_seed: int | None = setting(None, "seed of the A/B patient halves (default: the "
                                      "manifest's)")

    def __post_init__(self) -> None:
        check(self.dataset != "ptbxl", "dataset", f"{self.dataset!r}: only ptbxl has splits")
        check_ptbxl_source(self)


def splits(config: SplitsConfig, context: Context) -> StageResult:
    """One row per record: ecg_id, patient_id, strat_fold, split, half."""
    from ecgtransfer.data.manifests import load_manifest
    from ecgtransfer.data.ptbxl import ptbxl_index
    from ecgtransfer.files import atomic_file, check_output_file

    check_output_file(config.out)
    seed = config.halves_seed
    if seed is None:
        seed = int(load_manifest("ptbxl").halves["seed"])
    table = ptbxl_index(ptbxl_root(config), seed)[["patient_id", "strat_fold", "split", "half"]]
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as f:
        table.to_csv(f)
    return StageResult(str(out), f"{out}: {len(table)} records, half A "
                       f"{int((table['half'] == 'A').sum())}, half B "
                       f"{int((table['half'] == 'B').sum())} (seed {seed})", details=table)


register_stage(Stage(
    "splits", SplitsConfig, splits, command=("data", "splits"), output="splits.csv",
    help="write the split table of a dataset",
    description="Write one row per record: ecg_id, patient_id, strat_fold, split (folds "
                "1-8/9/10) and the patient-disjoint half (A/B)."))
