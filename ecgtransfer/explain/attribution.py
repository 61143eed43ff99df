"""Attributions of one model output to every sample of every lead, by Captum's methods.

Every method returns a density: an array shaped like the ECG whose sum over a region is that
region's share of the output, so that the methods can be compared on the same segments.

* ``integrated_gradients``: :class:`captum.attr.IntegratedGradients` from a flat (0 mV) ECG; its
  attributions sum to the output minus the flat ECG's output (completeness).
* ``grad_cam``: :class:`captum.attr.LayerGradCam` on the trunk's last convolutional feature map
  (:meth:`~ecgtransfer.models.base.ECGModel.feature_map`), ReLU'd as Grad-CAM defines it,
  interpolated back to the input length with :meth:`captum.attr.LayerAttribution.interpolate`
  and divided among the leads (it has no lead resolution: every lead gets the same band). A
  classifier of several trunks sums its trunks' maps.
* ``occlusion``: :class:`captum.attr.FeatureAblation` over the beat segments of
  :func:`ecgtransfer.explain.waves.wave_segments` (one wave of one beat on one lead at a time,
  set to 0 mV): each segment's output drop, spread evenly over its samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn

__all__ = ["METHODS", "ecg_attribute", "feature_maps"]

METHODS: tuple[str, ...] = ("integrated_gradients", "grad_cam", "occlusion")
"""Attribution methods, in the order the reports list them."""
SHORT = {"integrated_gradients": "IG", "grad_cam": "Grad-CAM", "occlusion": "Occlusion"}


def feature_maps(model: nn.Module) -> list[nn.Module]:
    """The modules Grad-CAM reads: each trunk's last convolutional feature map.

    Raises
    ------
    ValueError
        A trunk has no convolutional feature map (recurrent, transformer), naming its
        architecture.
    """
    from ecgtransfer.models.classifier import TransferClassifier

    trunks = list(model.trunks) if isinstance(model, TransferClassifier) else [model]
    layers = []
    for trunk in trunks:
        layer = trunk.net.feature_map()
        if layer is None:
            raise ValueError(f"grad_cam: the architecture {trunk.meta.get('model', '?')} has no "
                             "convolutional feature map; use integrated_gradients or occlusion")
        layers.append(layer)
    return layers


def ecg_attribute(model: nn.Module, signal: np.ndarray, target: int, method: str, *,
                  mask: np.ndarray | None = None, n_steps: int = 32,
                  batch_size: int = 64) -> np.ndarray:
    """Attribution of output ``target`` of ``model`` on one ECG.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier (its logits are explained) or an interval regressor (its intervals), in
        eval mode, taking ``(B, leads, n_samples)`` mV.
    signal : numpy.ndarray
        ``(leads, n_samples)`` mV, as the model takes it.
    target : int
        The output (class or interval) column.
    method : str
        One of :data:`METHODS`.
    mask : numpy.ndarray, optional
        ``(leads, n_samples)`` segment numbers (:func:`~ecgtransfer.explain.waves.wave_segments`);
        needed by ``occlusion``.
    n_steps : int
        Integrated Gradients' steps along the path from the flat ECG.
    batch_size : int
        Inputs per forward pass (IG's steps, occlusion's segments).

    Returns
    -------
    numpy.ndarray
        ``(leads, n_samples)`` float32 density (see the module's notes).
    """
    import torch
    from captum.attr import FeatureAblation, IntegratedGradients, LayerAttribution, LayerGradCam

    x = torch.as_tensor(np.asarray(signal, dtype=np.float32))[None]
    flat = torch.zeros_like(x)
    if method == "integrated_gradients":
        out = IntegratedGradients(model).attribute(x, baselines=flat, target=target,
                                                    n_steps=n_steps,
                                                    internal_batch_size=batch_size)
    elif method == "grad_cam":
        out = torch.zeros(1, 1, x.shape[-1])
        for layer in feature_maps(model):
            cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
            out = out + LayerAttribution.interpolate(cam.detach(), (x.shape[-1],), "linear")
        out = out.expand_as(x) / x.shape[1]
    elif method == "occlusion":
        if mask is None:
            raise ValueError("occlusion needs the record's segments (mask)")
        feature_mask = torch.as_tensor(mask, dtype=torch.long)[None]
        out = FeatureAblation(model).attribute(x, baselines=0.0, target=target,
                                               feature_mask=feature_mask,
                                               perturbations_per_eval=batch_size)
        sizes = np.bincount(mask.ravel())
        out = out / torch.as_tensor(sizes[mask], dtype=out.dtype)[None]
    else:
        raise ValueError(f"unknown attribution method {method!r} (known: {', '.join(METHODS)})")
    return out.detach()[0].numpy().astype(np.float32)

