"""``ecgtransfer models``: every registered model with what it costs (parameters,
multiply-accumulates per record at each input rate, size, and optionally CPU latency)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path


from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ModelsConfig", "cost_table"]


@dataclass(frozen=True, kw_only=True)
class ModelsConfig:
    """What ``ecgtransfer models`` reports."""

    fs: list[float] = setting([100.0, 500.0], "input rates to count MACs (and latency) at",
                              unit="Hz")
    seconds: float = setting(10.0, "record length", unit="s")
    leads: int = setting(8, "input leads")
    num_outputs: int = setting(5, "outputs of the head (5: PTB-XL's superclasses)")
    latency: bool = setting(False, "also measure CPU latency per record at batch 1 and 64, "
                            "and ONNX Runtime's at batch 1 (a few seconds per model and rate)")
    threads: int | None = setting(None, "CPU threads for the latency (default: torch's own)")
    models: list[str] = setting([], "only these registered models (default: all)",
                                metavar="NAME[,NAME...]")
    out: str | None = setting(None, "also write the table as CSV here", role="output",
                              metavar="FILE")

    def __post_init__(self) -> None:
        check(not self.fs or min(self.fs) <= 0, "fs", "positive rates")
        check(self.seconds <= 0, "seconds", "must be positive")
        check(self.leads < 1, "leads", "must be at least 1")
        check(self.num_outputs < 1, "num_outputs", "must be at least 1")
        check(self.threads is not None and self.threads < 1, "threads", "must be at least 1")


def cost_table(config: ModelsConfig) -> pd.DataFrame:
    """One row per model and rate: ``model``, ``fs_hz``, ``n_samples``, ``params``,
    ``macs_m`` (millions per record), ``size_mb`` and the latencies (NaN unless measured).

    The models are built with the same seed, in eval mode, on the CPU.
    """
    import pandas as pd
    import torch

    from ecgtransfer.models import DEFAULT_MODEL, create_model, list_models
    from ecgtransfer.models.cost import model_cost

    names = config.models or list_models()
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        raise ValueError(f"models: unknown model(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(list_models())}")
    before = torch.get_num_threads()  # the setting is this table's, not the process's
    if config.threads:
        torch.set_num_threads(config.threads)
    rows = []
    try:
        for name in names:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                net = create_model(name, in_channels=config.leads,
                                   num_outputs=config.num_outputs)
            for fs in config.fs:
                n = int(round(fs * config.seconds))
                c = model_cost(net, fs, n, config.leads, latency=config.latency)
                rows.append({"model": name + (" (default)" if name == DEFAULT_MODEL else ""),
                             "fs_hz": fs, "n_samples": n, "params": c.params,
                             "macs_m": c.macs / 1e6, "size_mb": c.size_mb,
                             "latency_ms_b1": c.latency_ms_b1,
                             "latency_ms_b64": c.latency_ms_b64,
                             "onnx_latency_ms_b1": c.onnx_latency_ms_b1})
    finally:
        torch.set_num_threads(before)
    return pd.DataFrame(rows)


def run_models(config: ModelsConfig, context: Context) -> StageResult:
    import pandas as pd
    from ecgtransfer.files import atomic_file, check_output_file

    if config.out:  # before the measuring, which takes a while
        check_output_file(config.out)
    table = cost_table(config)
    wide = table.pivot_table(index="model", columns="fs_hz", values="macs_m", sort=False)
    wide.columns = [f"MMACs @ {fs:g} Hz" for fs in wide.columns]
    first = table.drop_duplicates("model").set_index("model")
    shown = pd.concat([first[["params", "size_mb"]], wide], axis=1)
    if config.latency:
        for fs in config.fs:
            part = table[table["fs_hz"] == fs].set_index("model")
            shown[f"ms/record b1 @ {fs:g} Hz"] = part["latency_ms_b1"]
            shown[f"ms/record b64 @ {fs:g} Hz"] = part["latency_ms_b64"]
            shown[f"ONNX Runtime ms b1 @ {fs:g} Hz"] = part["onnx_latency_ms_b1"]
    shown = shown.reset_index()
    text = shown.to_markdown(index=False, floatfmt=".3g", intfmt=",")
    note = (f"{config.leads} leads, {config.seconds:g} s records, {config.num_outputs} outputs; "
            "MACs by torch.utils.flop_counter.FlopCounterMode (convolutions, matrix products, "
            "attention)")
    output = ""
    if config.out:
        Path(config.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(config.out) as f:
            table.to_csv(f, index=False)
        output = config.out
    return StageResult(output, f"{text}\n{note}", details=table)


register_stage(Stage(
    "models", ModelsConfig, run_models, command=("models",), output="models.csv",
    pipeline_run=False,
    help="list every registered model with its parameters, MACs per record and size",
    description="Every registered architecture with its parameter count, multiply-accumulates "
                "per record at each input rate (PyTorch's FlopCounterMode), the size of its "
                "weights and, with --latency, CPU milliseconds per record at batch 1 and 64 "
                "(PyTorch) and at batch 1 (ONNX Runtime, the model as `ecgtransfer export` "
                "writes it). --out writes the table as CSV. See docs/pretrain.md (Models)."))
