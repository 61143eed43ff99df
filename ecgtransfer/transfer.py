"""Trunk transfer: load pretrained regressors, put their trunks side by side under a new head,
and freeze or unfreeze them.

A regressor reference is a ``model.pt`` written by ``pretrain`` (or the folder holding it), an
MLflow model URI (``models:/...``, ``runs:/.../model``) or an MLflow run id (the run's
``ecgtransfer.model_uri`` tag; a parent run stands for all its child regressors).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ecgtransfer.models.base import make_head
from ecgtransfer.models.regressor import IntervalRegressor, load_regressor

__all__ = ["load_regressors", "TransferClassifier", "set_trunk_trainable"]

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _from_run(run_id: str) -> list[IntervalRegressor]:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ValueError(f"--from {run_id}: no such MLflow run at {mlflow.get_tracking_uri()}") from None
    uri = run.data.tags.get("ecgtransfer.model_uri")
    if uri:
        return [mlflow.pytorch.load_model(uri).eval()]
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{run_id}'",
                                  order_by=["attributes.start_time ASC"])
    models = [mlflow.pytorch.load_model(c.data.tags["ecgtransfer.model_uri"]).eval()
              for c in children if "ecgtransfer.model_uri" in c.data.tags]
    if not models:
        raise ValueError(f"--from {run_id}: the run has no pretrained regressor (not a pretrain run?)")
    return models


def load_regressors(ref: str) -> list[IntervalRegressor]:
    """The pretrained regressor(s) ``ref`` names (see the module docstring)."""
    path = Path(ref)
    if path.is_dir():
        path = path / "model.pt"
    if path.is_file():
        return [load_regressor(path)]
    if ref.startswith(("models:/", "runs:/")):
        import mlflow

        try:
            return [mlflow.pytorch.load_model(ref).eval()]
        except Exception as exc:  # MLflow raises several kinds for a bad URI
            raise ValueError(f"--from {ref}: cannot load the model ({type(exc).__name__})") from None
    if _RUN_ID.match(ref):
        return _from_run(ref)
    raise ValueError(f"--from {ref}: not a model.pt, a pretrain folder, a model URI or a run id")


class TransferClassifier(nn.Module):
    """Pretrained trunks side by side, their features concatenated into one new head.

    Each trunk keeps the lead normalisation it was trained with, so the input is the ECG in mV
    at the trunks' common rate.

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
    """

    def __init__(self, regressors: Sequence[IntervalRegressor], num_outputs: int,
                 head_hidden: int | None = None, head_dropout: float = 0.0,
                 names: Sequence[str] | None = None):
        super().__init__()
        if not regressors:
            raise ValueError("no trunk to transfer")
        names = list(names or [f"source {i}" for i in range(len(regressors))])
        first = regressors[0].meta
        for name, r in zip(names, regressors):
            for key in ("fs", "n_samples", "leads"):
                if r.meta[key] != first[key]:
                    raise ValueError(f"{name}: {key} {r.meta[key]!r} differs from "
                                     f"{names[0]}'s {first[key]!r}; trunks must share it")
        self.meta = {"fs": first["fs"], "n_samples": first["n_samples"], "leads": first["leads"],
                     "sources": [dict(r.meta) for r in regressors]}
        self.trunks = nn.ModuleList(regressors)
        for r in self.trunks:
            r.net.head = nn.Identity()
        self.num_features = sum(r.net.num_features for r in self.trunks)
        self.head = make_head(self.num_features, num_outputs, head_hidden, head_dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([r.forward_features(x) for r in self.trunks], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def set_trunk_trainable(model: TransferClassifier, trainable: bool) -> None:
    """Freeze (``False``) or unfreeze the trunks; the head always trains. A frozen trunk also
    keeps its batch-norm statistics: call after ``model.train()``."""
    for trunk in model.trunks:
        for p in trunk.parameters():
            p.requires_grad_(trainable)
        trunk.train(trainable and model.training)
