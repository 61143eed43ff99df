"""The fetch stage: a dataset downloaded from its publisher, resumable and verified."""

from __future__ import annotations

from dataclasses import dataclass

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

__all__ = ["FetchConfig", "fetch"]


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    """Settings of ``ecgtransfer data fetch``."""

    dataset: str = setting("ptbxl", "the dataset: PTB-XL 1.0.3 from PhysioNet (about 3 GB for "
                           "both rates)", choices=("ptbxl",), positional=True, metavar="DATASET")
    root: str = setting(help="destination folder", metavar="DIR")
    base_url: str | None = setting(None, "folder URL to download from (default: the manifest's "
                                   "PhysioNet URL)", metavar="URL")
    fs: list[int] = setting([500, 100], "record folders to fetch: 500, 100 or 500,100",
                            metavar="RATES")
    jobs: int = setting(8, "parallel downloads")

    def __post_init__(self) -> None:
        check(self.dataset != "ptbxl", "dataset", f"{self.dataset!r}: only ptbxl has a manifest")
        check(not self.fs or not set(self.fs) <= {500, 100}, "fs",
              f"expected 500, 100 or 500,100, got {self.fs}")
        check(self.jobs < 1, "jobs", "must be at least 1")


def fetch(config: FetchConfig, context: Context) -> StageResult:
    """Download every file of the manifest not yet verified in ``root``; each is checked against
    its SHA-256 before it takes its final name."""
    from ecgtransfer.data.fetch import fetch_dataset
    from ecgtransfer.data.manifests import load_manifest

    report = fetch_dataset(config.root, load_manifest(config.dataset), base_url=config.base_url,
                           rates=config.fs, jobs=config.jobs, progress=context.progress)
    lines = [f"failed: {rel}: {reason}" for rel, reason in report.failed]
    lines.append(f"{config.root}: {len(report.downloaded)} downloaded, {len(report.reused)} "
                 f"already verified, {len(report.failed)} failed")
    if report.failed:
        lines.append("re-run the same command to continue")
    return StageResult(str(config.root), "\n".join(lines), exit_code=0 if report.ok else 1,
                       details=report)


register_stage(Stage(
    "fetch", FetchConfig, fetch, command=("data", "fetch"), output=None,
    help="download a dataset, resumable and verified",
    description="Download a dataset from its publisher into a folder. Each file is checked "
                "against its SHA-256 before it takes its final name; re-running continues an "
                "interrupted download."))
