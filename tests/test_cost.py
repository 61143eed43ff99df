"""The cost report: MACs counted by PyTorch's FlopCounterMode agree with counts by hand (the
LSTM's fused CPU layer included), and `ecgtransfer models` lists every registered model."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from ecgtransfer.models import create_model, list_models
from ecgtransfer.models.cost import count_macs, count_parameters, latency_ms, model_cost, state_size


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(8, 16, 5, padding=2)
        self.bn = nn.BatchNorm1d(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=-1))


def test_macs_by_hand():
    net = _Tiny()
    # conv: 16 outputs x 8 inputs x kernel 5 x 100 positions; linear 16 x 4
    assert count_macs(net, 8, 100) == 16 * 8 * 5 * 100 + 16 * 4
    assert count_parameters(net) == (16 * 8 * 5 + 16) + 2 * 16 + (16 * 4 + 4)
    assert net.training  # its mode is restored


def test_recurrent_macs_by_hand():
    """The LSTM runs as one fused layer op on the CPU, which FlopCounterMode alone would count
    as nothing: 4 gates of (input + hidden) x hidden per time step and layer."""
    lstm = create_model("lstm", in_channels=8, num_outputs=5)   # pool 5, hidden 128, 2 layers
    steps, h = 1000 // 5, 128
    by_hand = steps * 4 * h * (8 + h) + steps * 4 * h * (h + h) + 2 * h * 5
    assert count_macs(lstm, 8, 1000) == by_hand
    rnn = create_model("rnn", in_channels=8, num_outputs=5)
    assert count_macs(rnn, 8, 1000) == steps * h * (8 + h) + steps * h * 2 * h + 2 * h * 5


def test_every_registered_model_has_a_cost_that_grows_with_the_rate():
    for name in list_models():
        net = create_model(name, in_channels=8, num_outputs=5)
        low, high = count_macs(net, 8, 1000), count_macs(net, 8, 5000)
        assert low > 0 and 4.0 < high / low < 6.0, name     # about linear in the length
        assert state_size(net) > 4 * count_parameters(net) / 1e6 * 0.99, name


def test_latency_is_measured_per_record():
    net = create_model("resnet1d_fast", in_channels=8, num_outputs=5)
    b1 = latency_ms(net, 8, 1000, 1, budget_s=0.05)
    b64 = latency_ms(net, 8, 1000, 64, budget_s=0.05)
    assert 0 < b1 < 1e4 and 0 < b64 < 1e4
    cost = model_cost(net, 100, 1000, latency=False)
    assert math.isnan(cost.latency_ms_b1) and cost.params == count_parameters(net)
    assert set(cost.metrics()) == {"cost_params", "cost_macs", "cost_size_mb",
                                   "cost_latency_ms_b1", "cost_latency_ms_b64",
                                   "cost_onnx_latency_ms_b1"}
    measured = model_cost(net, 100, 1000, budget_s=0.05)  # ONNX Runtime is a test dependency
    assert 0 < measured.onnx_latency_ms_b1 < 1e4


def test_models_command_lists_every_model_at_both_rates(cli, tmp_path):
    done = cli("models", "--out", "models.csv")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "models.csv")
    assert set(table["model"].str.replace(" (default)", "", regex=False)) == set(list_models())
    assert sorted(set(table["fs_hz"])) == [100.0, 500.0]
    fast = table[table["model"] == "resnet1d_fast (default)"].set_index("fs_hz")
    net = create_model("resnet1d_fast", in_channels=8, num_outputs=5)
    assert fast.loc[500.0, "macs_m"] == pytest.approx(count_macs(net, 8, 5000) / 1e6)
    assert fast.loc[100.0, "params"] == count_parameters(net)
    for name in list_models():
        assert name in done.stdout
    assert "MMACs @ 100 Hz" in done.stdout and "MMACs @ 500 Hz" in done.stdout
    bad = cli("models", "--models", "resnet9000")
    assert bad.returncode == 2 and "unknown model(s) resnet9000" in bad.stderr
