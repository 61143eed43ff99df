"""The GPU benchmark's smoke mode (what runs without CUDA): every registered model, generation
and the data path give a rate, so the script works the day a GPU is at hand. Also the mixed
precision type a training run gets."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from ecgtransfer.config import ConfigError, LoopConfig
from ecgtransfer.models import list_models
from ecgtransfer.training.loop import amp_dtype

from conftest import REPO


@pytest.mark.slow
def test_the_gpu_benchmark_runs_in_smoke_mode_on_the_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "benchmarks" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu.json"
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["smoke"] and result["device"] == "cpu"
    assert {r["model"] for r in result["models"]} == set(list_models())
    for r in result["models"]:
        assert r["train_samples_per_s"] > 0 and r["inference_samples_per_s"] > 0, r
    assert result["generation_ecgs_per_s"] > 0
    assert result["data"] and all(math.isfinite(d["records_per_s"]) and d["records_per_s"] > 0
                                  for d in result["data"])


def test_mixed_precision_is_bf16_or_fp16_on_cuda_and_off_on_the_cpu():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert amp_dtype(LoopConfig(amp_dtype="bf16"), cuda) is torch.bfloat16
    assert amp_dtype(LoopConfig(amp_dtype="fp16"), cuda) is torch.float16
    assert amp_dtype(LoopConfig(amp_dtype="auto"), cuda) is (
        torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert amp_dtype(LoopConfig(amp=False, amp_dtype="bf16"), cuda) is None
    assert amp_dtype(LoopConfig(amp_dtype="bf16"), cpu) is None
    with pytest.raises(ConfigError, match="amp_dtype"):
        LoopConfig(amp_dtype="fp8")
