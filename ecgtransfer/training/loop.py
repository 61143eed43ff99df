"""The one training loop: every task (interval regression, diagnostic classification) trains here.

Adam or AdamW, a learning-rate schedule, early stopping on the task's validation score with the
best weights *copied* (not a reference to the live model), a checkpoint after every epoch that a
killed run resumes from to the same final weights, mixed precision on CUDA, and data-parallel
training under ``torchrun`` with rank 0 alone writing.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from ecgtransfer.config import LoopConfig
from ecgtransfer.training import TrainingError
from ecgtransfer.training.callbacks import Callback, LogProgress, SaveCheckpoint
from ecgtransfer.training.distributed import DistInfo, gather_objects

__all__ = ["FitResult", "Trainer", "amp_dtype"]

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` found: the best epoch's weights and every epoch's metrics."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def amp_dtype(config: Any, device: torch.device) -> torch.dtype | None:
    """The autocast type of ``config``'s mixed precision on ``device``: None on CPU or with
    ``amp`` off; ``bfloat16`` for ``amp_dtype`` bf16, or auto where the GPU has it (Ampere and
    later: H100 and H200 prefer it to fp16); else ``float16``."""
    if not config.amp or device.type != "cuda":
        return None
    want = getattr(config, "amp_dtype", "auto")
    if want == "bf16" or (want == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


class _Rows:
    """Per-batch outputs and targets copied into arrays made once for the loader's ``n`` rows.

    Keeping each batch's small output tensors alive in a list leaves them scattered among the
    batches' large freed blocks, and the C heap then grows with every batch (1.6 GB over one
    epoch of 150,000 records); one allocation up front keeps memory flat."""

    def __init__(self, n: int):
        self.n, self.filled, self.arrays = n, 0, None

    def add(self, *parts: np.ndarray) -> None:
        if self.arrays is None:
            self.arrays = [np.empty((self.n, *p.shape[1:]), p.dtype) for p in parts]
        k = len(parts[0])
        if self.filled + k > self.n:  # more rows than the loader said: grow (not expected)
            self.n = max(2 * self.n, self.filled + k)
            self.arrays = [np.resize(a, (self.n, *a.shape[1:])) for a in self.arrays]
        for a, p in zip(self.arrays, parts):
            a[self.filled:self.filled + k] = p
        self.filled += k

    def result(self) -> list[np.ndarray] | None:
        return None if self.arrays is None else [a[:self.filled] for a in self.arrays]


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class Trainer:
    """Train ``model`` on ``task``.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of inputs to outputs the task scores; trained in place.
    task : object
        A task (:class:`~ecgtransfer.training.tasks.RegressionTask`): ``loss``, ``metrics``,
        ``monitor``.
    train_set, val_set : Dataset
        ``(x, y)`` pairs.
    config : LoopConfig
    device : torch.device
    dist : DistInfo
        This process's place under ``torchrun``.
    checkpoint : Path, optional
        Where the per-epoch checkpoint lives (rank 0 writes it): a
        :class:`~ecgtransfer.training.callbacks.SaveCheckpoint`, last in the list.
    callbacks : list of Callback, optional
        What else the loop does around each epoch (:mod:`ecgtransfer.training.callbacks`):
        log to a run, freeze or unfreeze parts of the model, prune a search's trial. They run
        in order, after the loop's own progress line and before its checkpoint.
    param_groups : list of dict, optional
        Optimizer parameter groups (default: every parameter of ``model``).
    desc : str
        Label of the progress bar and log lines.
    progress : bool
        Show a progress bar (rank 0).
    """

    def __init__(self, model: nn.Module, task: Any, train_set: Dataset, val_set: Dataset,
                 config: LoopConfig, *, device: torch.device, dist: DistInfo = DistInfo(),
                 checkpoint: Path | None = None, callbacks: Sequence[Callback] = (),
                 param_groups: list[dict] | None = None, desc: str = "", progress: bool = True):
        self.task = task
        self.config = config
        self.device = device
        self.dist = dist
        self.callbacks: list[Callback] = [LogProgress(), *callbacks, *(
            [SaveCheckpoint(checkpoint)] if checkpoint else [])]
        self.desc = desc
        self.progress = progress
        self.model = model.to(device)
        self.net: nn.Module = self.model
        self._trainable: tuple[bool, ...] = ()
        self._wrap()
        groups = param_groups or [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        opt = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        wd = config.weight_decay if config.optimizer == "adamw" else 0.0
        self.optimizer = opt(groups, lr=config.lr, weight_decay=wd)
        self.scheduler: Any = None
        if config.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, config.epochs)
        elif config.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min", factor=0.5, patience=2)
        self.amp_dtype = amp_dtype(config, device)
        self.amp = self.amp_dtype is not None
        # bf16 has fp32's range: only fp16 needs its loss scaled
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.sampler = DistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank,
                                          shuffle=True, seed=config.seed, drop_last=False)
        per_rank = math.ceil(len(train_set) / dist.world_size)
        self.train_loader = DataLoader(
            train_set, batch_size=config.batch_size, sampler=self.sampler,
            num_workers=config.num_workers, drop_last=per_rank > config.batch_size,
            pin_memory=device.type == "cuda", persistent_workers=config.num_workers > 0)
        self.val_loader = self._eval_loader(val_set)

    def _wrap(self) -> None:
        """Wrap the model for data-parallel training; again whenever the set of trainable
        parameters changed (DDP synchronises the gradients of those it was built with)."""
        trainable = tuple(p.requires_grad for p in self.model.parameters())
        if not self.dist.enabled or trainable == self._trainable:
            return
        self._trainable = trainable
        self.net = nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ---- evaluation ----------------------------------------------------------------------
    def _eval_loader(self, dataset: Dataset, shard: bool = True) -> DataLoader:
        if shard and self.dist.enabled:
            dataset = Subset(dataset, range(self.dist.rank, len(dataset), self.dist.world_size))
        return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=False,
                          num_workers=self.config.num_workers,
                          pin_memory=self.device.type == "cuda")

    @torch.no_grad()
    def _outputs(self, loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
        self.model.eval()
        rows = _Rows(len(loader.sampler))
        for x, y in loader:
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float16,
                                enabled=self.amp):
                out = self.model(x.to(self.device, non_blocking=True))
            rows.add(out.float().cpu().numpy(), y.numpy())
        found = rows.result()
        if found is None:
            return np.zeros((0, 0), np.float32), np.zeros((0,), np.float32)
        return found[0], found[1]

    def predict(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Outputs and targets of the current model on ``dataset`` (this process alone)."""
        return self._outputs(self._eval_loader(dataset, shard=False))

    def _gathered(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [p for p in gather_objects((outputs, targets), self.dist) if len(p[0])]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    # ---- one epoch -----------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        from tqdm.auto import tqdm

        self.model.train()
        for callback in self.callbacks:
            callback.on_epoch_start(self, epoch)
        self._wrap()  # again if a callback changed which parameters train
        self.sampler.set_epoch(epoch)
        loss_sum, rows = 0.0, _Rows(len(self.train_loader.sampler))
        bar = tqdm(self.train_loader, desc=f"{self.desc} epoch {epoch}/{self.config.epochs}",
                   leave=False, disable=not (self.progress and self.dist.is_main),
                   unit="batch")
        for x, y in bar:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float16,
                                enabled=self.amp):
                out = self.net(x)
                loss = self.task.loss(out, y)
            if not torch.isfinite(loss):
                raise TrainingError(f"{self.desc}: training diverged at epoch {epoch} (loss is "
                                    f"{loss.item()}); try a lower lr")
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss_sum += loss.item() * len(x)
            rows.add(out.detach().float().cpu().numpy(), y.cpu().numpy())
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        out_all, y_all = self._gathered(*rows.result())
        total = sum(gather_objects(loss_sum, self.dist))
        metrics = {"train_loss": total / max(len(out_all), 1)}
        metrics.update(self.task.metrics(out_all, y_all, "train"))
        return metrics

    def _validate(self) -> dict[str, float]:
        out, y = self._gathered(*self._outputs(self.val_loader))
        loss = self.task.loss(torch.from_numpy(out), torch.from_numpy(y)).item()
        return {"val_loss": loss, **self.task.metrics(out, y, "val")}

    # ---- state -----------------------------------------------------------------------------
    def state(self, epoch: int) -> dict[str, Any]:
        """Everything a resumed run needs after ``epoch`` (what a checkpoint holds)."""
        state = {"epoch": epoch, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                 "scaler": self.scaler.state_dict(), "best": self.best,
                 "history": self.history, "done": self.done, "rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def restore(self, state: dict[str, Any], where: Path) -> None:
        """Continue from a checkpoint's ``state`` (read from ``where``): the model, optimizer,
        schedule, scaler, random state, early-stopping state and history, after its epoch. One
        that does not fit this model and loop (another architecture, a damaged or foreign
        file) is a one-line error naming the file."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state["scheduler"] is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng"])
            self.best, self.history, self.done = state["best"], state["history"], state["done"]
            self.start = state["epoch"] + 1
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TrainingError(f"{where}: this checkpoint does not fit the model and "
                                f"settings being resumed ({first[:160]}); resume with the "
                                "settings it was made with, or choose another --out") from None
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if self.dist.is_main:
            log.info("%s: resuming after epoch %d", self.desc, state["epoch"])

    # ---- fit -------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        """Train until ``epochs`` or early stopping; returns the best epoch's weights.

        With ``resume`` and a checkpoint in place, training continues after its last finished
        epoch, with the optimizer, schedule, early-stopping state and random state it had.
        Dropout and every other draw come from torch's generator seeded with ``config.seed``
        inside a fork: the caller's generator is left as it was.
        """
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            return self._fit(resume)

    def _fit(self, resume: bool) -> FitResult:
        cfg = self.config
        self.best = {"state": _copy_state(self.model), "epoch": 0, "score": math.inf, "bad": 0}
        self.history: list[dict[str, float]] = []
        self.start, self.done = 1, False
        for callback in self.callbacks:
            callback.on_fit_start(self, resume)
        best, history = self.best, self.history
        epoch = self.start - 1
        for epoch in range(self.start, cfg.epochs + 1):
            if self.done:
                break
            t0 = time.perf_counter()
            metrics = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            metrics.update({f"lr_{g.get('name', i)}": g["lr"]
                            for i, g in enumerate(self.optimizer.param_groups) if i})
            metrics.update(self._train_epoch(epoch))
            metrics["train_seconds"] = time.perf_counter() - t0
            metrics.update(self._validate())
            score = float(metrics[self.task.monitor])
            if score < best["score"]:
                best = self.best = {"state": _copy_state(self.model), "epoch": epoch,
                                    "score": score, "bad": 0}
            else:
                best["bad"] += 1
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(score)
            elif self.scheduler is not None:
                self.scheduler.step()
            metrics["epoch_seconds"] = time.perf_counter() - t0
            metrics = {k: v if k == "epoch" else float(v) for k, v in metrics.items()}  # plain values
            history.append(metrics)
            self.done = bool(cfg.patience and best["bad"] >= cfg.patience) or epoch == cfg.epochs
            if self.dist.is_main:
                for callback in self.callbacks:
                    callback.on_epoch_end(self, metrics)
        return FitResult(best_state=best["state"], best_epoch=best["epoch"],
                         best_score=best["score"], history=history,
                         stopped_early=bool(cfg.patience and best["bad"] >= cfg.patience
                                            and best["epoch"] < cfg.epochs and epoch < cfg.epochs))
