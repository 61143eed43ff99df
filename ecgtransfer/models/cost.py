"""What a model costs: parameters, multiply-accumulates per record, size on disk and CPU
inference latency, as the vision-model scaling studies report them.

Multiply-accumulates come from PyTorch's own :class:`torch.utils.flop_counter.FlopCounterMode`
(convolutions, matrix products and attention; one MAC is two FLOPs), not from a hand count.
Normalisation, activations and pooling are not counted, as is usual for MACs.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["ModelCost", "count_parameters", "count_macs", "state_size", "latency_ms",
           "model_cost"]


@dataclass(frozen=True)
class ModelCost:
    """The cost of one model at one input shape.

    Attributes
    ----------
    params : int
        Parameters (trainable and frozen).
    macs : int
        Multiply-accumulates of one forward pass of one record.
    size_mb : float
        Its weights as saved (``torch.save`` of the state dict), MB (10^6 bytes).
    latency_ms_b1, latency_ms_b64 : float
        CPU milliseconds per record, at batch 1 and batch 64 (median of repeats; NaN when not
        measured).
    onnx_latency_ms_b1 : float
        CPU milliseconds of one record through ONNX Runtime, the model exported as
        ``ecgtransfer export`` writes it (NaN when not measured).
    fs : float
    n_samples, leads : int
        The input shape the MACs and latency are of.
    """

    params: int
    macs: int
    size_mb: float
    latency_ms_b1: float
    latency_ms_b64: float
    onnx_latency_ms_b1: float
    fs: float
    n_samples: int
    leads: int

    def metrics(self) -> dict[str, float]:
        """As MLflow metrics: ``cost_params``, ``cost_macs``, ``cost_size_mb``, ...; the input
        shape is a param, not a metric."""
        values = asdict(self)
        return {f"cost_{k}": float(v) for k, v in values.items()
                if k not in ("fs", "n_samples", "leads")}


def count_parameters(model: nn.Module) -> int:
    """Every parameter of ``model``, trainable or not."""
    return int(sum(p.numel() for p in model.parameters()))


def _example(model: nn.Module, leads: int, n_samples: int, batch: int) -> torch.Tensor:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(batch, leads, n_samples, device=device)


def _rnn_layer_flops(input_shape, w_ih_shape, w_hh_shape, *args, **kwargs) -> int:
    """FLOPs of one fused recurrent layer (``aten.mkldnn_rnn_layer``, what an LSTM runs as on
    the CPU), which ``FlopCounterMode`` has no formula for: every time step of every sequence
    multiplies its input by ``W_ih`` and its hidden state by ``W_hh`` (all gates at once)."""
    steps = 1
    for d in input_shape[:-1]:
        steps *= d
    return 2 * steps * (w_ih_shape[0] * w_ih_shape[1] + w_hh_shape[0] * w_hh_shape[1])


def _extra_formulas() -> dict:
    ops = {}
    layer = getattr(torch.ops.aten, "mkldnn_rnn_layer", None)
    if layer is not None:
        ops[layer] = _rnn_layer_flops  # the counter looks formulas up by overload packet
    return ops


def count_macs(model: nn.Module, leads: int, n_samples: int) -> int:
    """Multiply-accumulates of one record's forward pass, counted by ``FlopCounterMode``.

    The model runs in eval mode with gradients enabled, so that PyTorch's fused inference path
    of transformer layers (which the counter does not see) is not taken; its mode is restored.
    The counter is given a formula for the fused recurrent layer an LSTM runs as on the CPU
    (it has none). Count on the CPU: the GPU's fused recurrent kernels are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), FlopCounterMode(display=False,
                                                  custom_mapping=_extra_formulas()) as counter:
            model(_example(model, leads, n_samples, 1))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)


def state_size(model: nn.Module) -> float:
    """MB of ``torch.save(model.state_dict())``: the weights file's size."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6


@torch.no_grad()
def latency_ms(model: nn.Module, leads: int, n_samples: int, batch: int,
               budget_s: float = 1.0, max_repeats: int = 20) -> float:
    """Median CPU milliseconds per record of a forward pass at ``batch``: one warm-up pass,
    then repeats until ``budget_s`` or ``max_repeats`` (at least 3). The model is moved to
    the CPU for it and back."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.cpu().eval()
    try:
        x = torch.zeros(batch, leads, n_samples)
        model(x)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 3 or (len(times) < max_repeats
                                 and time.perf_counter() - start < budget_s):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    finally:
        model.to(device).train(was_training)
    times.sort()
    return 1000.0 * times[len(times) // 2] / batch


def model_cost(model: nn.Module, fs: float, n_samples: int, leads: int = 8,
               latency: bool = True, budget_s: float = 1.0) -> ModelCost:
    """Parameters, MACs, size and (with ``latency``) CPU latency at batch 1 and 64 of ``model``
    on records of ``leads`` x ``n_samples`` at ``fs``, and ONNX Runtime's at batch 1."""
    from ecgtransfer.models.export import onnx_latency_ms

    nan = float("nan")
    return ModelCost(
        params=count_parameters(model), macs=count_macs(model, leads, n_samples),
        size_mb=state_size(model),
        latency_ms_b1=latency_ms(model, leads, n_samples, 1, budget_s) if latency else nan,
        latency_ms_b64=latency_ms(model, leads, n_samples, 64, budget_s) if latency else nan,
        onnx_latency_ms_b1=(onnx_latency_ms(model, leads, n_samples, budget_s) if latency
                            else nan),
        fs=float(fs), n_samples=int(n_samples), leads=int(leads))
