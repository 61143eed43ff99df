"""A trained interval regressor as one module: per-lead normalisation, the network, and the
target de-standardisation, so that it takes an ECG in mV and returns intervals in ms / bpm.

This is what ``pretrain`` saves (``model.pt``) and logs to MLflow; ``finetune`` takes its trunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ecgtransfer.files import load_tensors, save_tensors
from ecgtransfer.models.base import ECGModel, TransferModel
from ecgtransfer.models.registry import create_model

__all__ = ["IntervalRegressor", "blank_regressor", "save_regressor", "load_regressor", "load_weights",
           "save_plain", "load_plain", "REGRESSOR_FORMAT"]

REGRESSOR_FORMAT = "ecgtransfer-regressor/1"


class IntervalRegressor(TransferModel):
    """ECG in mV ``(B, leads, n_samples)`` at :attr:`fs` -> intervals ``(B, n_targets)``.

    The transfer interface is the network's, around the normalisation: :meth:`forward_features`
    normalises the leads first, :meth:`forward_head` de-standardises the head's outputs, and
    :meth:`reset_head` replaces the network's head (``reset_head(0)``: no head, the regressor
    returns its features, as a trunk under a classifier).

    Parameters
    ----------
    net : ECGModel
        The trained network (inputs normalised per lead, outputs standardised).
    meta : dict
        ``model``, ``model_kwargs``, ``targets``, ``units``, ``fs``, ``n_samples``, ``leads``:
        what the network is and what it expects.
    lead_mean, lead_std, target_mean, target_std : array-like
        The normalisation fitted on the training split.
    """

    def __init__(self, net: ECGModel, meta: dict[str, Any], lead_mean: Sequence[float],
                 lead_std: Sequence[float], target_mean: Sequence[float],
                 target_std: Sequence[float]):
        super().__init__()
        self.net = net
        self.meta = dict(meta)
        f32 = torch.float32
        self.register_buffer("lead_mean", torch.as_tensor(np.asarray(lead_mean), dtype=f32).view(1, -1, 1))
        self.register_buffer("lead_std", torch.as_tensor(np.asarray(lead_std), dtype=f32).view(1, -1, 1))
        self.register_buffer("target_mean", torch.as_tensor(np.asarray(target_mean), dtype=f32).view(1, -1))
        self.register_buffer("target_std", torch.as_tensor(np.asarray(target_std), dtype=f32).view(1, -1))

    @property
    def targets(self) -> list[str]:
        return list(self.meta["targets"])

    @property
    def fs(self) -> float:
        return float(self.meta["fs"])

    @property
    def num_features(self) -> int:
        return self.net.num_features

    @property
    def num_outputs(self) -> int:
        return self.net.num_outputs

    @property
    def head(self) -> nn.Module:
        return self.net.head

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """An ECG in mV normalised per lead, as the network was trained on."""
        return (x - self.lead_mean) / self.lead_std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's features ``(B, num_features)`` of an ECG in mV."""
        return self.net.forward_features(self.normalize(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """The head's outputs de-standardised (intervals in their units); the features
        themselves without a head."""
        out = self.net.forward_head(features)
        return out if self.num_outputs == 0 else out * self.target_std + self.target_mean

    def reset_head(self, num_outputs: int, head: nn.Module | None = None) -> None:
        """Replace the network's head (see :meth:`ECGModel.reset_head`); 0: no head.

        A new head's outputs are no longer the trained targets: the target scaling becomes the
        identity (zeros and ones of ``num_outputs``; set :attr:`target_mean` and
        :attr:`target_std` to train it on standardised targets), and ``meta["targets"]`` is left
        to the caller. Without a head the scaling is kept, unused, so that the weights of a
        classifier keep the regressor's keys and shapes.
        """
        self.net.reset_head(num_outputs, head)
        if num_outputs:
            self.target_mean = torch.zeros(1, num_outputs, device=self.target_mean.device)
            self.target_std = torch.ones(1, num_outputs, device=self.target_std.device)


def save_regressor(model: IntervalRegressor, path: str | Path) -> None:
    """Write ``model`` as a plain checkpoint (weights, buffers and meta; no pickled classes)."""
    save_plain(model, REGRESSOR_FORMAT, path)


def load_regressor(path: str | Path, map_location: str | torch.device = "cpu") -> IntervalRegressor:
    """A regressor written by :func:`save_regressor`. Its architecture is built and overwritten
    by the saved weights without drawing from the caller's random generator."""
    state = load_plain(path, REGRESSOR_FORMAT, "regressor", map_location)
    with torch.random.fork_rng(devices=[]):
        model = blank_regressor(state["meta"])
    load_weights(model, state["state_dict"], path)
    return model.eval()


def save_plain(model: nn.Module, fmt: str, path: str | Path) -> None:
    """``model``'s meta and weights as a checkpoint marked ``fmt``."""
    save_tensors({"format": fmt, "meta": model.meta,
                     "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}, path)


def load_plain(path: str | Path, fmt: str, kind: str,
               map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`save_plain` with ``fmt``; else a one-line error."""
    state = load_tensors(path, map_location)
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise ValueError(f"{path}: not an ecgtransfer {kind} checkpoint")
    return state


def blank_regressor(meta: dict[str, Any]) -> IntervalRegressor:
    """A regressor of the architecture ``meta`` describes, freshly initialised (drawing from
    torch's global generator), with identity normalisation."""
    n_leads, n_out = len(meta["leads"]), max(len(meta.get("targets") or []), 1)
    net = create_model(meta["model"], in_channels=n_leads, num_outputs=n_out,
                       **meta["model_kwargs"])
    return IntervalRegressor(net, meta, np.zeros(n_leads), np.ones(n_leads), np.zeros(n_out),
                             np.ones(n_out))


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str | Path) -> None:
    """``model.load_state_dict`` with a one-line error naming ``where`` and the first key that
    does not fit (weights of another architecture)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    extra = [k for k in state_dict if k not in own]
    shape = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or extra or shape:
        what = (f"{shape[0]} is {tuple(state_dict[shape[0]].shape)}, the architecture wants "
                f"{tuple(own[shape[0]].shape)}" if shape else
                f"{(missing or extra)[0]} is {'missing' if missing else 'unexpected'}")
        name = getattr(model, "meta", {}).get("model", type(model).__name__)
        raise ValueError(f"{where}: the weights do not fit the architecture {name} ({what})")
    model.load_state_dict(state_dict)
