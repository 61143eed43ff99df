"""A plain CNN: stacked convolution, batch norm, ReLU and max-pool blocks (the study's "CNN")."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ecgtransfer.models.base import ECGModel
from ecgtransfer.models.registry import register_model

__all__ = ["PlainCNN", "cnn"]


class PlainCNN(ECGModel):
    """Stacked ``conv -> BN -> ReLU -> max-pool`` blocks, global average pooling, a head.

    Parameters
    ----------
    in_channels, num_outputs : int
        Leads in, outputs of the head.
    channels : tuple of int
        Output channels of each block.
    kernel_size : int
        Kernel of every convolution.
    pool : int
        Max-pool size (and stride) after each block.
    head_hidden, head_dropout
        The head.
    """

    def __init__(self, in_channels: int = 8, num_outputs: int = 1,
                 channels: tuple[int, ...] = (32, 64, 128, 128, 256), kernel_size: int = 7,
                 pool: int = 2, head_hidden: int | None = 128, head_dropout: float = 0.25):
        super().__init__(head_hidden, head_dropout)
        layers, c_in = [], in_channels
        for c in channels:
            layers += [nn.Conv1d(c_in, c, kernel_size, padding=kernel_size // 2, bias=False),
                       nn.BatchNorm1d(c), nn.ReLU(inplace=True), nn.MaxPool1d(pool, pool)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.num_features = c_in
        self.reset_head(num_outputs)

    def feature_map(self) -> nn.Module:
        """The last convolution block (after its pooling)."""
        return self.body

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=-1)


@register_model(PlainCNN)
def cnn(**kwargs: Any) -> PlainCNN:
    """Five plain convolution blocks (32-64-128-128-256 channels, kernel 7), a 256 -> 128 ->
    outputs head: :class:`PlainCNN` as it is."""
