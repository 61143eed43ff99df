"""The PhysioNet/CinC Challenge 2021 scores, as its official evaluation computes them.

The challenge metric rewards each decision by the Challenge's ``weights.csv`` (a wrong but
similar diagnosis earns partial credit) and is normalised so that the classifier that always
outputs sinus rhythm (``426783006``) scores 0 and a perfect one 1. Beside it, as the official
``evaluate_model.py`` reports them: macro AUROC and AUPRC over the classes (NaN classes left
out), accuracy (records whose every decision is right) and macro F-measure.

Classes are the 26 scored ones of ``weights.csv``; a header cell ``a|b`` is one class made of
equivalent SNOMED-CT codes (733534002|164909002, 713427006|59118001, 284470004|63593006,
427172004|17338001), named by its first code. The tables ship in ``data_manifests/``
(``cinc2021-*``, BSD 2-Clause).

AUROC and AUPRC are scikit-learn's ``roc_auc_score`` and ``average_precision_score``: the same
numbers as the official trapezoid over (sensitivity, specificity) and step sum of precision
over recall at every distinct output value (a test checks both against hand-computed cases).
"""

from __future__ import annotations

import numpy as np

from ecgtransfer.data.challenge2021 import NORMAL_CLASS, Scoring, load_scoring

__all__ = ["NORMAL_CLASS", "Scoring", "load_scoring", "challenge_metric", "challenge_scores",
           "class_auc", "f_measure", "tune_thresholds"]

def _modified_confusion(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The Challenge's multi-label confusion matrix: each record adds ``1 / n`` to every (label,
    output) pair it has, ``n`` being the number of classes among its labels or outputs (at
    least 1)."""
    labels = labels.astype(np.float64)
    outputs = outputs.astype(np.float64)
    n = np.maximum(np.logical_or(labels, outputs).sum(axis=1), 1).astype(np.float64)
    return labels.T @ (outputs / n[:, None])


def challenge_metric(scoring: Scoring, labels: np.ndarray, outputs: np.ndarray) -> float:
    """The challenge metric of binary ``outputs`` against ``labels`` (both ``(n, k)``, 0/1 over
    ``scoring.classes``): ``(observed - inactive) / (correct - inactive)`` where each score is
    the weighted sum of the modified confusion matrix of the outputs, of the labels themselves,
    and of always sinus rhythm; 0 when the last two are equal (all records sinus rhythm only).
    A ``scoring`` without sinus rhythm is a ``ValueError`` (the metric has no zero point)."""
    if NORMAL_CLASS not in scoring.classes:
        raise ValueError(f"the scored classes hold no sinus rhythm ({NORMAL_CLASS}), the "
                         "challenge metric's zero point")
    labels = np.asarray(labels, dtype=bool)
    outputs = np.asarray(outputs, dtype=bool)
    w = scoring.weights
    observed = np.nansum(w * _modified_confusion(labels, outputs))
    correct = np.nansum(w * _modified_confusion(labels, labels))
    inactive_outputs = np.zeros_like(labels)
    inactive_outputs[:, scoring.classes.index(NORMAL_CLASS)] = True
    inactive = np.nansum(w * _modified_confusion(labels, inactive_outputs))
    if correct == inactive:
        return 0.0
    return float((observed - inactive) / (correct - inactive))


def class_auc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AUPRC of every class (columns of ``(n, k)`` arrays). A class no record has gets
    NaN for both; a class every record has gets NaN AUROC and AUPRC 1, as the official
    evaluation gives them."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    k = labels.shape[1]
    auroc, auprc = np.full(k, np.nan), np.full(k, np.nan)
    for j in range(k):
        positives = int(labels[:, j].sum())
        if positives == 0:
            continue
        auprc[j] = average_precision_score(labels[:, j], scores[:, j])
        if positives < len(labels):
            auroc[j] = roc_auc_score(labels[:, j], scores[:, j])
    return auroc, auprc


def f_measure(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """F-measure ``2TP / (2TP + FP + FN)`` of every class; NaN where a class has no label and no
    output."""
    labels = np.asarray(labels, dtype=bool)
    outputs = np.asarray(outputs, dtype=bool)
    tp = (labels & outputs).sum(axis=0).astype(np.float64)
    wrong = (labels != outputs).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(2 * tp + wrong > 0, 2 * tp / (2 * tp + wrong), np.nan)


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def challenge_scores(scoring: Scoring, labels: np.ndarray, outputs: np.ndarray,
                     scores: np.ndarray) -> dict:
    """Everything the official evaluation reports: ``auroc``, ``auprc``, ``accuracy``,
    ``f_measure``, ``challenge_metric`` and, per class, ``auroc_classes``, ``auprc_classes``
    and ``f_measure_classes`` (arrays in the order of ``scoring.classes``).

    Parameters
    ----------
    labels, outputs : numpy.ndarray
        ``(n, k)`` 0/1: the diagnoses and the model's decisions.
    scores : numpy.ndarray
        ``(n, k)``: the model's probabilities (NaN read as 0, as the official evaluation does).
    """
    labels = np.asarray(labels, dtype=bool)
    outputs = np.asarray(outputs, dtype=bool)
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    auroc, auprc = class_auc(labels, scores)
    f1 = f_measure(labels, outputs)
    return {"auroc": _nanmean(auroc), "auprc": _nanmean(auprc),
            "accuracy": float((labels == outputs).all(axis=1).mean()) if len(labels) else np.nan,
            "f_measure": _nanmean(f1), "challenge_metric": challenge_metric(scoring, labels, outputs),
            "auroc_classes": auroc, "auprc_classes": auprc, "f_measure_classes": f1}


def tune_thresholds(scoring: Scoring, labels: np.ndarray, probabilities: np.ndarray, *,
                    grid: np.ndarray | None = None, rounds: int = 2) -> np.ndarray:
    """Per-class decision thresholds that maximise the challenge metric on ``labels`` (the
    validation records), by coordinate ascent as the best 2021 entries tuned theirs: starting
    at 0.5 everywhere, each class in turn takes the ``grid`` value (default 0.05, 0.10, ...,
    0.95) that scores best with the others fixed; ``rounds`` passes. Ties keep the current
    threshold, so a class the validation records never show stays at 0.5."""
    labels = np.asarray(labels, dtype=bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2) if grid is None else np.asarray(grid)
    thresholds = np.full(labels.shape[1], 0.5)
    best = challenge_metric(scoring, labels, probabilities >= thresholds)
    for _ in range(rounds):
        for j in range(labels.shape[1]):
            for t in grid:
                trial = thresholds.copy()
                trial[j] = t
                score = challenge_metric(scoring, labels, probabilities >= trial)
                if score > best + 1e-12:
                    best, thresholds = score, trial
    return thresholds
