"""Training: the one loop (``loop``), task objects (``tasks``), metrics, checkpoints and
``torchrun`` helpers. Importing this package does not import torch."""

from ecgtransfer.errors import UserError


class TrainingError(UserError, RuntimeError):
    """Training that cannot go on (diverged); the message says where and what to try."""


__all__ = ["TrainingError"]
