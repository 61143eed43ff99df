"""InceptionTime for 1D signals: the network the study called its "1D-CNN".

Blocks of three parallel convolutions (kernels 39, 19, 9) on a 32-channel bottleneck plus a
max-pool branch, concatenated to 128 channels; a residual shortcut every three blocks; concat
pooling (mean and max) and a 256 -> 128 -> outputs head (Fawaz et al. 2020; the fastai1
implementation used by the PTB-XL benchmark).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ecgtransfer.models.base import ECGModel
from ecgtransfer.models.registry import register_model

__all__ = ["Inception1d", "inception1d"]


class _InceptionBlock(nn.Module):
    def __init__(self, in_channels: int, filters: int, kernels: tuple[int, ...],
                 bottleneck: int):
        super().__init__()
        self.bottleneck = (nn.Conv1d(in_channels, bottleneck, 1, bias=False)
                           if in_channels > 1 and bottleneck else nn.Identity())
        width = bottleneck if in_channels > 1 and bottleneck else in_channels
        self.convs = nn.ModuleList(
            nn.Conv1d(width, filters, k, padding=k // 2, bias=False) for k in kernels)
        self.pool = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1),
                                  nn.Conv1d(in_channels, filters, 1, bias=False))
        self.out = nn.Sequential(nn.BatchNorm1d(filters * (len(kernels) + 1)), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bottleneck(x)
        return self.out(torch.cat([c(b) for c in self.convs] + [self.pool(x)], dim=1))


class _Shortcut(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Inception1d(ECGModel):
    """InceptionTime trunk with concat pooling and a replaceable head.

    Parameters
    ----------
    in_channels, num_outputs : int
        Leads in, outputs of the head.
    depth : int
        Number of Inception blocks.
    filters : int
        Channels of each branch (4 branches: ``4 * filters`` out).
    bottleneck : int
        Channels of the 1x1 bottleneck before the long kernels.
    kernels : tuple of int
        Kernel sizes of the parallel convolutions.
    residual_every : int
        A shortcut around every this many blocks.
    head_hidden, head_dropout
        The head: ``2 * 4 * filters -> head_hidden -> outputs``.
    """

    def __init__(self, in_channels: int = 8, num_outputs: int = 1, depth: int = 6,
                 filters: int = 32, bottleneck: int = 32, kernels: tuple[int, ...] = (39, 19, 9),
                 residual_every: int = 3, head_hidden: int | None = 128,
                 head_dropout: float = 0.25):
        super().__init__(head_hidden, head_dropout)
        width = filters * (len(kernels) + 1)
        self.blocks = nn.ModuleList()
        self.shortcuts = nn.ModuleDict()
        channels = res_channels = in_channels
        for d in range(depth):
            self.blocks.append(_InceptionBlock(channels, filters, tuple(kernels), bottleneck))
            channels = width
            if residual_every and d % residual_every == residual_every - 1:
                self.shortcuts[str(d)] = _Shortcut(res_channels, width)
                res_channels = width
        self.residual_every = residual_every
        self.num_features = 2 * width
        self.reset_head(num_outputs)

    def feature_map(self) -> nn.Module:
        """The last inception block (before its shortcut is added)."""
        return self.blocks[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        res = x
        for d, block in enumerate(self.blocks):
            x = block(x)
            if str(d) in self.shortcuts:
                x = torch.relu(x + self.shortcuts[str(d)](res))
                res = x
        return torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)


@register_model(Inception1d)
def inception1d(**kwargs: Any) -> Inception1d:
    """The study's 1D-CNN (InceptionTime): depth 6, kernels 39/19/9, 128 channels;
    :class:`Inception1d` as it is."""
