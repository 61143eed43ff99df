"""The fine-tuned classifier: pretrained (or freshly initialised) trunks side by side, their
features concatenated into one new head; saved and loaded without pickling classes.

Each trunk is an :class:`~ecgtransfer.models.regressor.IntervalRegressor` whose head is dropped
(``reset_head(0)``): it keeps the lead normalisation it was trained with, so the classifier takes
the ECG in mV at the trunks' common rate. The classifier has the transfer interface of every model
(``forward_features``, ``forward_head``, ``reset_head``, ``num_features``, ``trunk_parameters``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ecgtransfer.models.base import ECGModel
from ecgtransfer.models.regressor import (IntervalRegressor, blank_regressor, load_plain, load_weights,
                                          save_plain)

__all__ = ["TransferClassifier", "set_trunk_trainable", "save_classifier", "load_classifier",
           "CLASSIFIER_FORMAT"]

CLASSIFIER_FORMAT = "ecgtransfer-classifier/1"


class TransferClassifier(ECGModel):
    """Trunks side by side under one new head: features ``(B, sum of the trunks' features)``.

    Parameters
    ----------
    regressors : sequence of IntervalRegressor
        The sources; their networks' heads are dropped.
    num_outputs : int
        Classes.
    head_hidden : int, optional
        Hidden width of the new head (None: linear).
    head_dropout : float
    names : sequence of str, optional
        Names of the sources, for error messages.
    meta : dict, optional
        Extra description kept in :attr:`meta` (``classes``, ``multilabel``, ...).
    """

    def __init__(self, regressors: Sequence[IntervalRegressor], num_outputs: int,
                 head_hidden: int | None = None, head_dropout: float = 0.0,
                 names: Sequence[str] | None = None, meta: dict[str, Any] | None = None):
        super().__init__(head_hidden, head_dropout)
        if not regressors:
            raise ValueError("no trunk to transfer")
        names = list(names or [f"source {i}" for i in range(len(regressors))])
        first = regressors[0].meta
        for name, r in zip(names, regressors):
            for key in ("fs", "n_samples", "leads"):
                if r.meta[key] != first[key]:
                    raise ValueError(f"{name}: {key} {r.meta[key]!r} differs from "
                                     f"{names[0]}'s {first[key]!r}; trunks must share it")
        self.meta = {**(meta or {}), "fs": first["fs"], "n_samples": first["n_samples"],
                     "leads": list(first["leads"]), "num_outputs": num_outputs,
                     "head_hidden": head_hidden, "head_dropout": head_dropout,
                     "sources": [dict(r.meta) for r in regressors]}
        self.trunks = nn.ModuleList(regressors)
        for r in self.trunks:
            r.reset_head(0)
        self.num_features = sum(r.num_features for r in self.trunks)
        self.reset_head(num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """An ECG in mV -> the trunks' features side by side, ``(B, num_features)``."""
        return torch.cat([r.forward_features(x) for r in self.trunks], dim=1)

    def reset_head(self, num_outputs: int, head: nn.Module | None = None) -> None:
        """Replace the head (see :meth:`ECGModel.reset_head`; 0: no head) and record its
        outputs in :attr:`meta`, which saving writes."""
        super().reset_head(num_outputs, head)
        self.meta["num_outputs"] = num_outputs


def set_trunk_trainable(model: TransferClassifier, trainable: bool) -> None:
    """Freeze (``False``) or unfreeze the trunks; the head always trains. A frozen trunk also
    keeps its batch-norm statistics: call after ``model.train()``."""
    for trunk in model.trunks:
        for p in trunk.parameters():
            p.requires_grad_(trainable)
        trunk.train(trainable and model.training)


def save_classifier(model: TransferClassifier, path: str | Path) -> None:
    """Write ``model`` as a plain checkpoint (weights and meta; no pickled classes)."""
    save_plain(model, CLASSIFIER_FORMAT, path)


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> TransferClassifier:
    """A classifier written by :func:`save_classifier`, in eval mode (built without drawing from
    the caller's random generator)."""
    state = load_plain(path, CLASSIFIER_FORMAT, "classifier", map_location)
    meta = dict(state["meta"])
    with torch.random.fork_rng(devices=[]):
        trunks = [blank_regressor(m) for m in meta.pop("sources")]
        model = TransferClassifier(trunks, meta.pop("num_outputs"), meta.pop("head_hidden"),
                                   meta.pop("head_dropout"), meta=meta)
    load_weights(model, state["state_dict"], path)
    return model.eval()
