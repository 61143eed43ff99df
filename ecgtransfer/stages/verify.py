"""The verify stage: a dataset folder checked file by file against its manifest."""

from __future__ import annotations

from dataclasses import dataclass

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage
from ecgtransfer.stages._ptbxl import check_ptbxl_source, ptbxl_root

__all__ = ["VerifyConfig", "verify"]


@dataclass(frozen=True, kw_only=True)
class VerifyConfig:
    """Settings of ``ecgtransfer data verify``."""

    dataset: str = setting("ptbxl", "the dataset: PTB-XL 1.0.3", choices=("ptbxl",),
                           positional=True, metavar="DATASET")
    root: str | None = setting(None, "the dataset folder", role="input", metavar="DIR")
    sample: bool = setting(False, "the PTB-XL sample shipped with ecgtransfer (350 records at "
                           "100 Hz)")
    fs: list[int] | None = setting(None, "record folders to check: 500, 100 or 500,100 "
                                   "(default both; 100 for --sample, which ships 100 Hz only)",
                                   metavar="RATES")

    def __post_init__(self) -> None:
        check(self.dataset != "ptbxl", "dataset", f"{self.dataset!r}: only ptbxl has a manifest")
        check_ptbxl_source(self)
        check(self.fs is not None and (not self.fs or not set(self.fs) <= {500, 100}), "fs",
              f"expected 500, 100 or 500,100, got {self.fs}")


def verify(config: VerifyConfig, context: Context) -> StageResult:
    """Check every file whose SHA-256 the manifest (and the publisher's SHA256SUMS.txt, when
    present) gives; exit status 1 when any is missing or differs."""
    from ecgtransfer.data.manifests import load_manifest, verify_tree
    from ecgtransfer.data.ptbxl import expected_files

    root = ptbxl_root(config)
    rates = config.fs or ([100] if config.sample else [500, 100])
    report = verify_tree(root, load_manifest("ptbxl"), progress=context.progress,
                         include=expected_files(root, rates))
    lines = [f"missing: {rel}" for rel in report.missing]
    lines += [f"checksum mismatch: {rel}" for rel in report.mismatched]
    lines.append(f"{root}: {'OK' if report.ok else 'FAILED'}, {report.checked} files checked "
                 f"against {' + '.join(report.sources)}: {len(report.missing)} missing, "
                 f"{len(report.mismatched)} mismatching")
    return StageResult(str(root), "\n".join(lines), exit_code=0 if report.ok else 1,
                       details=report)


register_stage(Stage(
    "verify", VerifyConfig, verify, command=("data", "verify"), output=None,
    help="check a dataset folder against its manifest",
    description="Check every file of a dataset folder whose SHA-256 the manifest (and the "
                "publisher's SHA256SUMS.txt, when present) gives; name missing and mismatching "
                "files. Exit 1 if any."))
