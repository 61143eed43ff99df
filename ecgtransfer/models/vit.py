"""A 1D Vision Transformer: patches of the ECG embedded by a strided convolution, a class
token, sinusoidal positions and a pre-norm transformer encoder.

The default size is the one a neural-architecture search found best for ECG: embedding 384,
depth 4, 4 heads, MLP ratio 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ecgtransfer.models.base import ECGModel
from ecgtransfer.models.registry import register_model

__all__ = ["ViT1d", "vit1d"]


def _positions(n: int, dim: int, device, dtype) -> torch.Tensor:
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))
    out = torch.zeros(n, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)
    return out.to(dtype)


class ViT1d(ECGModel):
    """Patch-embedding transformer for ``(B, leads, samples)``; features are the class token.

    Parameters
    ----------
    in_channels, num_outputs : int
        Leads in, outputs of the head.
    patch_size : int
        Samples per patch (50 = 100 ms at 500 Hz). A trailing part shorter than a patch is
        dropped.
    embed_dim, depth, num_heads : int
        Transformer size.
    mlp_ratio : float
        Feed-forward width as a multiple of ``embed_dim``.
    dropout : float
        Dropout inside the encoder.
    head_hidden, head_dropout
        The head.
    """

    def __init__(self, in_channels: int = 8, num_outputs: int = 1, patch_size: int = 50,
                 embed_dim: int = 384, depth: int = 4, num_heads: int = 4,
                 mlp_ratio: float = 1.0, dropout: float = 0.1, head_hidden: int | None = None,
                 head_dropout: float = 0.0):
        super().__init__(head_hidden, head_dropout)
        self.patch = nn.Conv1d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.cls, std=0.02)
        layer = nn.TransformerEncoderLayer(embed_dim, num_heads, int(embed_dim * mlp_ratio),
                                           dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.num_features = embed_dim
        self.reset_head(num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).transpose(1, 2)
        tokens = tokens + _positions(tokens.shape[1], tokens.shape[2], tokens.device, tokens.dtype)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return self.norm(self.encoder(tokens)[:, 0])


@register_model(ViT1d)
def vit1d(**kwargs: Any) -> ViT1d:
    """ViT for 1D ECG: embedding 384, depth 4, 4 heads, MLP ratio 1, 100 ms patches at 500 Hz;
    :class:`ViT1d` as it is."""
