"""The interface every model shares: a trunk that maps an ECG to a feature vector, and a
replaceable head.

:class:`TransferModel` is that interface (timm's ``forward_features`` / ``forward_head`` /
``reset_classifier``); :class:`ECGModel` adds the head built by :func:`make_head`, and is the base
of every registered architecture. The wrappers (``IntervalRegressor``, ``TransferClassifier``)
have the same interface.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TransferModel", "ECGModel", "make_head"]


def make_head(in_features: int, num_outputs: int, hidden: int | None = None,
              dropout: float = 0.0) -> nn.Module:
    """A linear head, or ``in -> hidden -> out`` with batch norm, ReLU and dropout; or no head.

    Parameters
    ----------
    in_features : int
        Size of the trunk's feature vector.
    num_outputs : int
        Outputs; 0 for no head (an ``nn.Identity``: the features pass through, as timm's
        ``reset_classifier(0)``).
    hidden : int, optional
        Width of one hidden layer; None for a single linear layer.
    dropout : float
        Dropout before each linear layer.

    Returns
    -------
    nn.Module
    """
    if num_outputs == 0:
        return nn.Identity()
    if not hidden:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_outputs))
    return nn.Sequential(
        nn.BatchNorm1d(in_features), nn.Dropout(dropout), nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True), nn.BatchNorm1d(hidden), nn.Dropout(dropout),
        nn.Linear(hidden, num_outputs))


class TransferModel(nn.Module):
    """The transfer interface: ``forward(x) == forward_head(forward_features(x))``.

    Attributes
    ----------
    num_features : int
        Size ``D`` of the feature vector from :meth:`forward_features`.
    num_outputs : int
        Outputs of the current head (0: no head, :meth:`forward` returns the features).
    head : nn.Module
        The head.
    """

    num_features: int
    num_outputs: int
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, leads, samples)`` -> ``(B, num_features)``."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, num_features)`` -> ``(B, num_outputs)`` (the features themselves without a
        head)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def feature_map(self) -> nn.Module | None:
        """The module whose output is the trunk's last convolutional feature map
        ``(B, channels, length)``: where Grad-CAM looks. None for a trunk without one
        (recurrent, transformer)."""
        return None

    def reset_head(self, num_outputs: int, head: nn.Module | None = None) -> None:
        """Replace the head: by ``head`` if given, else by a new one of the model's kind with
        ``num_outputs`` outputs (0: no head)."""
        raise NotImplementedError

    def trunk_parameters(self) -> list[nn.Parameter]:
        """Every parameter outside the head."""
        head = {id(p) for p in self.head.parameters()}
        return [p for p in self.parameters() if id(p) not in head]


class ECGModel(TransferModel):
    """Base of every registered model (and of the classifier that puts trunks side by side): a
    trunk, and a head made by :func:`make_head`.

    Subclasses build the trunk, set :attr:`num_features`, implement :meth:`forward_features`
    and end their ``__init__`` with ``self.reset_head(num_outputs)``.

    Parameters
    ----------
    head_hidden : int, optional
        Hidden width of the head (None: linear).
    head_dropout : float
        Dropout of the head.
    """

    def __init__(self, head_hidden: int | None = None, head_dropout: float = 0.0):
        super().__init__()
        self.head_hidden = head_hidden
        self.head_dropout = head_dropout

    def reset_head(self, num_outputs: int, head: nn.Module | None = None) -> None:
        """Replace the head: by ``head`` if given, else by a new one of the model's kind
        (``head_hidden``, ``head_dropout``) with ``num_outputs`` outputs; 0: no head, the model
        returns its features. The new head is in the model's mode (training or eval).

        Parameters
        ----------
        num_outputs : int
            Outputs of the new head.
        head : nn.Module, optional
            A head of one's own, taking ``(B, num_features)``.
        """
        self.num_outputs = num_outputs
        self.head = head if head is not None else make_head(
            self.num_features, num_outputs, self.head_hidden, self.head_dropout)
        self.head.train(self.training)
