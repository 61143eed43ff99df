"""A stage as a new stage author writes one, outside the package: a config, one function and
its registration (``tests/test_stages.py`` registers it and runs it from the command line and
from a pipeline). It reports the median peak-to-peak amplitude of one lead over a store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult


@dataclass(frozen=True, kw_only=True)
class ToyConfig:
    """Settings of ``ecgtransfer toy``."""

    store: str = setting(help="signal store", role="input", metavar="STORE")
    lead: str = setting("II", "the lead whose amplitude is reported")
    records: int = setting(20, "records read, from the first")
    out: str = setting("runs/toy", "folder of amplitude.json", role="output", metavar="DIR")

    def __post_init__(self) -> None:
        check(not self.store, "store", "name a signal store")
        check(int(self.records) < 1, "records", f"must be positive, got {self.records}")


def toy(config: ToyConfig, context: Context) -> StageResult:
    """The median peak-to-peak amplitude of ``config.lead`` over the store's first records,
    written to ``out/amplitude.json``."""
    import numpy as np

    from ecgtransfer.data.store import SignalStore
    from ecgtransfer.files import atomic_file

    store = SignalStore(config.store)
    if config.lead not in store.leads:
        raise ValueError(f"lead: {store.path} has no lead {config.lead!r}")
    k = list(store.leads).index(config.lead)
    n = min(int(config.records), len(store))
    amplitude = float(np.median([np.ptp(store[i][k]) for i in range(n)]))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "amplitude.json") as f:
        json.dump({"lead": config.lead, "records": n, "median_mv": amplitude}, f)
    return StageResult(str(out), f"{n} records: median peak-to-peak of {config.lead} "
                       f"{amplitude:.2f} mV", details=amplitude)


STAGE = Stage("toy", ToyConfig, toy, command=("toy",), output="",
              help="median peak-to-peak amplitude of one lead",
              description="A toy stage: the median peak-to-peak amplitude of one lead over the "
                          "first records of a store.")
"""Its registration: ``register_stage(STAGE)`` (the package's own stages call it at import)."""
