"""Callbacks: what the training loop does around each epoch beside training, as one list.

Lightning's pattern: a :class:`Callback` has a hook per moment of the loop, each doing nothing
by default, and the :class:`~ecgtransfer.training.loop.Trainer` calls every callback in its list
in order. What a stage adds (logging to its MLflow run, freezing its trunks for some epochs, a
search's pruner) is a callback, and so are the loop's own progress line and checkpoint.

Hooks:

* ``on_fit_start(trainer, resume)``: every rank, before the first epoch (a checkpoint restores
  the state a killed run had);
* ``on_epoch_start(trainer, epoch)``: every rank, after ``model.train()`` and before the first
  batch; it must depend on the epoch alone, so that a resumed run repeats it;
* ``on_epoch_end(trainer, metrics)``: rank 0, after the epoch's metrics (a dict with ``epoch``)
  and early-stopping state (``trainer.best``, ``trainer.history``, ``trainer.done``) are
  known. A callback may stop the model by raising
  (:class:`ecgtransfer.tracking.EndedEarly`, a search's pruner): the callbacks after it do not
  run for that epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

__all__ = ["Callback", "LambdaCallback", "LogProgress", "SaveCheckpoint", "LogToRun"]

log = logging.getLogger("ecgtransfer.training.loop")


class Callback:
    """A hook into the training loop; every method does nothing unless overridden."""

    def on_fit_start(self, trainer: Any, resume: bool) -> None:
        """Before the first epoch, on every rank."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """After ``model.train()`` and before the epoch's first batch, on every rank."""

    def on_epoch_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        """After the epoch's metrics, on rank 0."""


class LambdaCallback(Callback):
    """A callback made of plain functions (Lightning's ``LambdaCallback``):
    ``on_epoch_start(trainer, epoch)`` and ``on_epoch_end(trainer, metrics)``."""

    def __init__(self, on_epoch_start: Callable[[Any, int], None] | None = None,
                 on_epoch_end: Callable[[Any, dict], None] | None = None):
        self._start = on_epoch_start
        self._end = on_epoch_end

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        if self._start is not None:
            self._start(trainer, epoch)

    def on_epoch_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        if self._end is not None:
            self._end(trainer, metrics)


class LogProgress(Callback):
    """The loop's log line per epoch: losses, the task's validation figures, whether it is
    the best epoch so far, and how long it took."""

    def on_epoch_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        shown = trainer.task.describe(metrics, "val")
        mark = " (best)" if trainer.best["epoch"] == metrics["epoch"] else ""
        log.info("%s epoch %d/%d: train loss %.4f, val loss %.4f, %s%s [%.0f s]", trainer.desc,
                 metrics["epoch"], trainer.config.epochs, metrics["train_loss"],
                 metrics["val_loss"], shown, mark, metrics["epoch_seconds"])


class SaveCheckpoint(Callback):
    """The checkpoint a killed run resumes from: written (whole or not at all) after every
    epoch, restored before the first one when resuming. It holds the model, optimizer,
    schedule, AMP scaler, early-stopping state, history and torch's random state, so a resumed
    run ends at the same weights as one that was never stopped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_fit_start(self, trainer: Any, resume: bool) -> None:
        from ecgtransfer.training.checkpoint import load_checkpoint

        if resume and self.path.exists():
            trainer.restore(load_checkpoint(self.path, map_location=trainer.device), self.path)

    def on_epoch_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        from ecgtransfer.training.checkpoint import save_checkpoint

        save_checkpoint(trainer.state(int(metrics["epoch"])), self.path)


class LogToRun(Callback):
    """Each epoch's metrics on a tracked run (step = epoch), through the tracking layer's
    ``Run``."""

    def __init__(self, run: Any):
        self.run = run

    def on_epoch_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        self.run.log_metrics({k: v for k, v in metrics.items() if k != "epoch"},
                             step=int(metrics["epoch"]))
