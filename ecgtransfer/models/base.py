"""The interface every model shares: a trunk that maps an ECG to a feature vector, and a
replaceable head."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ECGModel", "make_head"]


def make_head(in_features: int, num_outputs: int, hidden: int | None = None,
              dropout: float = 0.0) -> nn.Module:
    """A linear head, or ``in -> hidden -> out`` with batch norm, ReLU and dropout.

    Parameters
    ----------
    in_features : int
        Size of the trunk's feature vector.
    num_outputs : int
        Outputs.
    hidden : int, optional
        Width of one hidden layer; None for a single linear layer.
    dropout : float
        Dropout before each linear layer.
    """
    if not hidden:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_outputs))
    return nn.Sequential(
        nn.BatchNorm1d(in_features), nn.Dropout(dropout), nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True), nn.BatchNorm1d(hidden), nn.Dropout(dropout),
        nn.Linear(hidden, num_outputs))


class ECGModel(nn.Module):
    """Base of every registered model.

    Subclasses build ``self.trunk`` pieces, set :attr:`num_features` and implement
    :meth:`forward_features`; the head is ``self.head``, built by :meth:`reset_head`.

    Attributes
    ----------
    num_features : int
        Size ``D`` of the feature vector from :meth:`forward_features`.
    num_outputs : int
        Outputs of the current head.
    """

    num_features: int
    num_outputs: int

    def __init__(self, head_hidden: int | None = None, head_dropout: float = 0.0):
        super().__init__()
        self.head_hidden = head_hidden
        self.head_dropout = head_dropout

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, leads, samples)`` -> ``(B, num_features)``."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, num_features)`` -> ``(B, num_outputs)``."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_head(self, num_outputs: int, head: nn.Module | None = None) -> None:
        """Replace the head: by ``head`` if given, else by a new one of the model's kind."""
        self.num_outputs = num_outputs
        self.head = head if head is not None else make_head(
            self.num_features, num_outputs, self.head_hidden, self.head_dropout)

    def trunk_parameters(self):
        """Every parameter outside the head."""
        head = {id(p) for p in self.head.parameters()}
        return [p for p in self.parameters() if id(p) not in head]
