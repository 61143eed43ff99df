"""Models: a registry of 1D architectures with one transfer interface.

>>> from ecgtransfer.models import create_model, list_models
>>> net = create_model("inception1d", in_channels=8, num_outputs=1)   # doctest: +SKIP
>>> net.forward_features(x).shape                                   # (B, 256)
"""

from ecgtransfer.models.base import ECGModel, TransferModel, make_head
from ecgtransfer.models.registry import (DEFAULT_MODEL, check_model_kwargs, create_model,
                                         list_models, model_defaults, register_model)

__all__ = ["ECGModel", "TransferModel", "make_head", "DEFAULT_MODEL", "check_model_kwargs",
           "create_model", "list_models", "model_defaults", "register_model"]
