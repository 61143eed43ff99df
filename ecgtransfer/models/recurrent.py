"""Recurrent comparison models: an Elman RNN and an LSTM over the ECG's time steps."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ecgtransfer.models.base import ECGModel
from ecgtransfer.models.registry import register_model

__all__ = ["Recurrent", "rnn", "lstm"]


class Recurrent(ECGModel):
    """A recurrent trunk: optional average-pooling of the input, stacked RNN/LSTM layers, and
    features made of the last hidden state and the mean over time (``2 * hidden * directions``).

    Parameters
    ----------
    in_channels, num_outputs : int
        Leads in, outputs of the head.
    cell : {"rnn", "lstm"}
        The recurrent layer.
    hidden : int
        Hidden size.
    num_layers : int
        Stacked layers.
    bidirectional : bool
        Run both directions.
    pool : int
        Average-pool the input by this factor first (1: every sample is a time step).
    head_hidden, head_dropout
        The head.
    """

    def __init__(self, in_channels: int = 8, num_outputs: int = 1, cell: str = "lstm",
                 hidden: int = 128, num_layers: int = 2, bidirectional: bool = False,
                 pool: int = 5, head_hidden: int | None = None, head_dropout: float = 0.0):
        super().__init__(head_hidden, head_dropout)
        cells = {"rnn": nn.RNN, "lstm": nn.LSTM}
        if cell not in cells:
            raise ValueError(f"cell: expected 'rnn' or 'lstm', got {cell!r}")
        kind = cells[cell]
        self.pool = nn.AvgPool1d(pool, pool) if pool > 1 else nn.Identity()
        self.rnn = kind(in_channels, hidden, num_layers, batch_first=True,
                        bidirectional=bidirectional)
        self.num_features = 2 * hidden * (2 if bidirectional else 1)
        self.reset_head(num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.rnn(self.pool(x).transpose(1, 2))
        return torch.cat([seq[:, -1], seq.mean(dim=1)], dim=1)


@register_model(Recurrent, cell="rnn")
def rnn(**kwargs: Any) -> Recurrent:
    """A 2-layer tanh RNN, hidden 128, on the input average-pooled by 5."""


@register_model(Recurrent)
def lstm(**kwargs: Any) -> Recurrent:
    """A 2-layer LSTM, hidden 128, on the input average-pooled by 5: :class:`Recurrent` as it
    is."""
