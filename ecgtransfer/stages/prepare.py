"""The prepare stage: records of PTB-XL or of any WFDB folder copied into a signal store."""

from __future__ import annotations

from dataclasses import dataclass

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage
from ecgtransfer.stages._ptbxl import check_ptbxl_source, ptbxl_root

__all__ = ["PrepareConfig", "prepare"]


@dataclass(frozen=True, kw_only=True)
class PrepareConfig:
    """Settings of ``ecgtransfer data prepare``."""

    source: str = setting("ptbxl", "ptbxl: PTB-XL with its five superclasses, strat_fold, the "
                          "standard split and the patient-disjoint A/B halves; challenge2021: "
                          "PhysioNet/CinC Challenge 2021 records with age, sex, source database "
                          "and the 26 scored classes; wfdb: every WFDB record under a folder "
                          "(LUDB, ...)", choices=("ptbxl", "challenge2021", "wfdb"),
                          positional=True, metavar="SOURCE")
    out: str = setting(help="store folder", role="output", metavar="STORE")
    root: str | None = setting(None, "ptbxl: the PTB-XL folder (ptbxl_database.csv, "
                               "scp_statements.csv, records500/...)", role="input", metavar="DIR")
    sample: bool = setting(False, "ptbxl: the PTB-XL sample shipped with ecgtransfer (350 "
                           "records at 100 Hz)")
    input: str | None = setting(None, "wfdb, challenge2021: folder searched recursively for .hea "
                                "files; lead names match case-insensitively", role="input",
                                metavar="DIR")
    fs: float | None = setting(None, "store rate (default 500; 100 for the sample); ptbxl reads "
                               "records500 (500) or records100 (100), wfdb resamples records "
                               "at other rates", unit="Hz")
    leads: int = setting(8, "8 = I, II, V1-V6 (the DeepFake generator's order); 12 = all",
                         choices=(8, 12))
    halves_seed: int | None = setting(None, "ptbxl: seed of the A/B patient halves (default: "
                                      "the manifest's)")
    strict: bool = setting(False, "exit 1 if any record is rejected")

    def __post_init__(self) -> None:
        check(self.source not in ("ptbxl", "challenge2021", "wfdb"), "source",
              f"{self.source!r} is not ptbxl, challenge2021 or wfdb")
        check(self.leads not in (8, 12), "leads", "8 or 12")
        check(self.fs is not None and self.fs <= 0, "fs", "must be positive")
        if self.source == "ptbxl":
            check_ptbxl_source(self)
            check(self.fs not in (None, 500, 100), "fs", "PTB-XL has records at 500 or 100 Hz")
            check(self.sample and self.fs == 500, "fs", "the package sample has records at 100 Hz "
                  "only (records100); give a PTB-XL download (root) for 500 Hz")
        else:
            check(not self.input, "input", f"a {self.source} source needs input (a folder of "
                  "WFDB records)")


def prepare(config: PrepareConfig, context: Context) -> StageResult:
    """Copy the records into the store ``config.out``; re-running continues an interrupted run."""
    from ecgtransfer.data.leads import lead_set

    leads = lead_set(config.leads)
    fs = config.fs or (100.0 if config.sample else 500.0)
    if config.source == "ptbxl":
        from ecgtransfer.data.ptbxl import prepare_ptbxl

        report = prepare_ptbxl(ptbxl_root(config), config.out, fs=int(fs), leads=leads,
                               halves_seed=config.halves_seed, progress=context.progress)
    elif config.source == "challenge2021":
        from ecgtransfer.data.challenge2021 import prepare_challenge2021

        report = prepare_challenge2021(config.input, config.out, fs=fs, leads=leads,
                                       progress=context.progress)
    else:
        from ecgtransfer.data.ingest import prepare_wfdb

        report = prepare_wfdb(config.input, config.out, fs=fs, leads=leads,
                              progress=context.progress)
    store = report.store
    summary = (f"{store.path}: {len(store)} records at {store.fs:g} Hz, {store.n_leads} leads "
               f"({report.written} written now, {report.skipped} already there, "
               f"{len(report.rejects)} rejected)")
    if report.rejects:
        summary += f"\nrejected records and reasons: {store.path / 'rejects.csv'}"
    return StageResult(str(store.path), summary, details=report,
                       exit_code=1 if config.strict and report.rejects else 0)


def _version() -> str:
    from ecgtransfer.data.ptbxl import INDEX_VERSION

    return f"ptbxl index {INDEX_VERSION}"


register_stage(Stage(
    "prepare", PrepareConfig, prepare, command=("data", "prepare"), output="store",
    version=_version,
    help="copy records into a signal store",
    description="Copy records into a signal store (int16 microvolts, memory-mapped). Re-running "
                "the same command continues an interrupted run; a record that cannot be read is "
                "named with its reason and listed in the store's rejects.csv."))
