"""Is an attribution faithful to the model? Deletion and insertion curves (Petsiuk et al., BMVC
2018, on beat segments instead of pixels) and the model-randomisation check (Adebayo et al.,
NeurIPS 2018).

Deletion sets the segments an attribution ranks highest to 0 mV first and follows a score of the
output; insertion starts from the flat ECG and puts them back first. What is scored (``readout``):

* a class (``readout`` is its task's ``probabilities``, the function that turns the
  classifier's outputs into probabilities as it was trained: sigmoid or softmax): its
  probability, as Petsiuk et al. score it. Segments are ranked by their attribution (evidence for the class
  first). A faithful attribution makes deletion fall fast and insertion rise fast.
* an interval (``"closeness"``): how close the output stays to the record's own prediction,
  ``-|y - y_record| / scale`` (``scale``: the target's standard deviation in training, so
  the score is in standard deviations; 0 is the record's own prediction). Segments are ranked by
  the magnitude of their attribution (removing evidence of either sign moves an interval). A
  faithful attribution again makes deletion fall fast and insertion rise fast.

So for both, a smaller area under the deletion curve and a larger area under the insertion curve
than a random order of the same segments gives is better.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["Curves", "READOUTS", "deletion_insertion", "randomized_model", "rank_correlation", "area"]


class Curves:
    """One record's deletion and insertion curves for one ranking.

    Attributes
    ----------
    fractions : numpy.ndarray
        Fraction of the record's samples removed (deletion) or inserted (insertion).
    deletion, insertion : numpy.ndarray
        The score at each fraction (see the module's notes).
    full, flat : float
        The record's score and the flat ECG's.
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


READOUTS = ("closeness", "raw")
"""The readouts named by text; a class's probability is its task's ``probabilities``."""


def _scores(outputs: torch.Tensor, target: int, readout, reference: float,
            scale: float) -> np.ndarray:
    z = outputs.double()
    if callable(readout):  # the task's probabilities of every class
        return np.asarray(readout(z.numpy()), dtype=np.float64)[:, target]
    if readout == "closeness":
        s = -(z[:, target] - reference).abs() / scale
    elif readout == "raw":
        s = z[:, target]
    else:
        raise ValueError(f"unknown readout {readout!r} (known: {', '.join(READOUTS)})")
    return s.numpy()


def deletion_insertion(model: nn.Module, signal: np.ndarray, target: int,
                       attribution: np.ndarray | None, mask: np.ndarray, *,
                       readout: Any = "raw", scale: float = 1.0, steps: int = 20,
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
    readout : callable or {"closeness", "raw"}
        What is scored (see the module's notes): a classifier task's ``probabilities``
        (outputs to probabilities, ``(B, classes)``), ``"closeness"`` for a regressor, or
        ``"raw"``: the output itself, ranked by signed attribution.
    scale : float
        ``"closeness"``'s unit (the target's standard deviation).
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
    with torch.no_grad():
        ends = model(torch.stack([x, torch.zeros_like(x)]))
    reference = float(ends[0, target])
    full, flat = _scores(ends, target, readout, reference, scale)
    if attribution is None:
        if rng is None:
            raise ValueError("a random order needs rng")
        order = rng.permutation(n_seg)
    else:
        a = np.asarray(attribution, float).ravel()
        score = np.bincount(mask.ravel(), weights=np.abs(a) if readout == "closeness" else a,
                            minlength=n_seg)
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
    inputs = torch.cat([torch.where(keep, x, torch.zeros_like(x)),
                        torch.where(~keep, x, torch.zeros_like(x))])
    with torch.no_grad():
        out = torch.cat([model(inputs[i:i + batch_size])
                         for i in range(0, len(inputs), batch_size)])
    values = _scores(out, target, readout, reference, scale)
    frac = np.r_[0.0, covered][taken]
    return Curves(frac, values[:steps + 1], values[steps + 1:], float(full), float(flat))


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
