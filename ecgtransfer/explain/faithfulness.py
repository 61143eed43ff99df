"""Is an attribution faithful to the model? Deletion and insertion curves (Petsiuk et al., BMVC
2018, on beat segments instead of pixels) and the model-randomisation check (Adebayo et al.,
NeurIPS 2018).

Deletion sets the segments an attribution ranks highest to 0 mV first and follows the output;
insertion starts from the flat ECG and puts them back first. The output is read as the fraction
of the way from the flat ECG's output to the record's own,
``(s - s_flat) / (s_record - s_flat)``: deletion falls from 1 to 0, insertion rises from 0 to 1,
for any output (a logit, an interval in ms). A faithful attribution makes deletion fall fast
(a small area under the curve) and insertion rise fast (a large area), more so than a random
order of the same segments. Segments are ranked by their attribution towards the record's output
(``attribution * sign(s_record - s_flat)``), so that evidence for the output comes first whether
the output lies above or below the flat ECG's.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

__all__ = ["Curves", "deletion_insertion", "randomized_model", "rank_correlation", "area"]


class Curves:
    """One record's deletion and insertion curves for one ranking.

    Attributes
    ----------
    fractions : numpy.ndarray
        Fraction of the record's samples removed (deletion) or inserted (insertion).
    deletion, insertion : numpy.ndarray
        The output at each fraction, as the fraction of the way from the flat ECG's output to
        the record's (NaN when the two outputs are the same).
    full, flat : float
        The record's output and the flat ECG's.
    """

    def __init__(self, fractions, deletion, insertion, full, flat):
        self.fractions = fractions
        self.deletion = deletion
        self.insertion = insertion
        self.full = full
        self.flat = flat


def area(fractions: np.ndarray, curve: np.ndarray) -> float:
    """Area under a curve over the fraction of samples (trapezoids)."""
    return float(np.trapezoid(curve, fractions))


def _outputs(model: nn.Module, inputs: torch.Tensor, target: int, batch_size: int) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(inputs[i:i + batch_size])[:, target]
                          for i in range(0, len(inputs), batch_size)]).numpy().astype(float)


def deletion_insertion(model: nn.Module, signal: np.ndarray, target: int,
                       attribution: np.ndarray | None, mask: np.ndarray, *, steps: int = 20,
                       rng: np.random.Generator | None = None, batch_size: int = 64) -> Curves:
    """Deletion and insertion curves of one record for one attribution (or a random order).

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode, taking ``(B, leads, n_samples)`` mV.
    signal : numpy.ndarray
        ``(leads, n_samples)`` mV.
    target : int
        The output column.
    attribution : numpy.ndarray or None
        ``(leads, n_samples)`` density; None ranks the segments in a random order drawn from
        ``rng``.
    mask : numpy.ndarray
        ``(leads, n_samples)`` segment numbers: what is removed or inserted at once.
    steps : int
        Points of each curve after the first (fractions 0, 1/steps, ..., 1).
    rng : numpy.random.Generator, optional
        For the random order (required when ``attribution`` is None).
    batch_size : int
        Inputs per forward pass.
    """
    x = torch.as_tensor(np.asarray(signal, dtype=np.float32))
    n_seg = int(mask.max()) + 1
    sizes = np.bincount(mask.ravel(), minlength=n_seg)
    full, flat = _outputs(model, torch.stack([x, torch.zeros_like(x)]), target, 2)
    if attribution is None:
        if rng is None:
            raise ValueError("a random order needs rng")
        order = rng.permutation(n_seg)
    else:
        score = np.bincount(mask.ravel(), weights=np.asarray(attribution, float).ravel(),
                            minlength=n_seg) * (1.0 if full >= flat else -1.0)
        order = np.argsort(-score, kind="stable")
    rank = np.empty(n_seg, dtype=np.int64)
    rank[order] = np.arange(n_seg)
    covered = np.cumsum(sizes[order]) / sizes.sum()  # after the first k+1 segments
    fractions = np.linspace(0.0, 1.0, steps + 1)
    # the number of segments taken at each fraction: the fewest that cover it
    taken = np.searchsorted(covered, fractions - 1e-12) + (fractions > 0)
    taken[0] = 0
    seg_rank = torch.as_tensor(rank[mask])
    keep = torch.stack([seg_rank >= k for k in taken])  # True: the record's own sample stays
    deleted = torch.where(keep, x, torch.zeros_like(x))
    inserted = torch.where(~keep, x, torch.zeros_like(x))
    out = _outputs(model, torch.cat([deleted, inserted]), target, batch_size)
    scale = full - flat
    if abs(scale) <= 1e-9 * max(abs(full), abs(flat), 1.0):
        norm = np.full(len(out), np.nan)
    else:
        norm = (out - flat) / scale
    frac = np.r_[0.0, covered][taken]
    return Curves(frac, norm[:steps + 1], norm[steps + 1:], float(full), float(flat))


def randomized_model(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every layer's parameters re-initialised (batch-norm statistics
    too), keeping its input normalisation and output scaling: Adebayo et al.'s randomised
    model. The caller's random generator is not drawn from."""
    other = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in other.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset) and module is not other:
                reset()
    return other.eval()


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two attributions' magnitudes, sample by sample (NaN when
    one is constant)."""
    from scipy.stats import spearmanr

    a, b = np.abs(np.ravel(a)), np.abs(np.ravel(b))
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)
