"""1D ResNets with depth, width and kernel size as parameters.

A scaling study of ECG ResNets (Nonaka & Seita 2021, "In-depth benchmarking of deep neural
network architectures for ECG diagnosis") found shallower, wider, smaller-kernel networks do
better on ECG than image-style depth. ``resnet1d_fast`` is the package default: a strided stem
that brings 500 Hz down to 62.5 Hz feature maps before the residual stages, so it trains fast on
a CPU while keeping the full-rate input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ecgtransfer.models.base import ECGModel
from ecgtransfer.models.registry import register_model

__all__ = ["ResNet1d", "resnet1d", "resnet1d_fast"]


class _BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.down = None
        if stride != 1 or in_channels != out_channels:
            self.down = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1, stride, bias=False),
                                      nn.BatchNorm1d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet1d(ECGModel):
    """A 1D ResNet of basic blocks.

    Parameters
    ----------
    in_channels, num_outputs : int
        Leads in, outputs of the head.
    layers : tuple of int
        Blocks per stage; each stage after the first halves the length and doubles the width.
    width : int
        Channels of the stem and the first stage.
    kernel_size : int
        Kernel of the residual blocks.
    stem_kernel, stem_stride, stem_pool : int
        The stem: a convolution of ``stem_kernel`` with ``stem_stride``, then a max-pool of
        ``stem_pool`` (1 for none).
    head_hidden, head_dropout
        The head on the concat-pooled (mean and max) features.
    """

    def __init__(self, in_channels: int = 8, num_outputs: int = 1,
                 layers: tuple[int, ...] = (2, 2, 2, 2), width: int = 64, kernel_size: int = 7,
                 stem_kernel: int = 15, stem_stride: int = 2, stem_pool: int = 2,
                 head_hidden: int | None = None, head_dropout: float = 0.0):
        super().__init__(head_hidden, head_dropout)
        stem = [nn.Conv1d(in_channels, width, stem_kernel, stem_stride, stem_kernel // 2, bias=False),
                nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        if stem_pool > 1:
            stem.append(nn.MaxPool1d(stem_pool, stem_pool))
        self.stem = nn.Sequential(*stem)
        stages, channels = [], width
        for s, n in enumerate(layers):
            out = width * 2 ** s
            blocks = [_BasicBlock(channels, out, kernel_size, 1 if s == 0 else 2)]
            blocks += [_BasicBlock(out, out, kernel_size, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.num_features = 2 * channels
        self.reset_head(num_outputs)

    def feature_map(self) -> nn.Module:
        """The last residual stage."""
        return self.stages

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)


@register_model(ResNet1d)
def resnet1d(**kwargs: Any) -> ResNet1d:
    """A parametrised 1D ResNet: 4 stages of 2 blocks, width 64, kernel 7, a linear head;
    :class:`ResNet1d` as it is."""


@register_model(ResNet1d, layers=(1, 1, 1), width=32, kernel_size=5, stem_stride=4,
                head_hidden=128, head_dropout=0.25)
def resnet1d_fast(**kwargs: Any) -> ResNet1d:
    """The default: shallow (3 stages of 1 block), narrow (width 32), small-kernel (5) ResNet
    with a stride-8 stem (stride 4, then the max-pool of 2), fast on CPU, and the same
    256 -> 128 -> outputs head as ``inception1d``."""
