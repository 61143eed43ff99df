"""Classification metrics on cases worked out by hand, bootstrap intervals, and the
classification task's loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgtransfer.training.metrics import bootstrap_interval, classification_metrics
from ecgtransfer.training.tasks import ClassificationTask

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.4, 0.35, 0.25]])
Y = np.array([0, 1, 2, 0])


def test_single_label_by_hand():
    m = classification_metrics(PROBS, Y, ["A", "B", "C"])
    assert m["accuracy"] == pytest.approx(0.75)          # record 2 is called B
    assert m["auroc_A"] == pytest.approx(1.0)
    assert m["auroc_B"] == pytest.approx(1.0)
    assert m["auroc_C"] == pytest.approx(2.5 / 3)        # one tie with record 1
    assert m["macro_auroc"] == pytest.approx((2 + 2.5 / 3) / 3)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_multi_label_by_hand():
    probs = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.4], [0.1, 0.1]])
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    m = classification_metrics(probs, y, ["X", "Y"], multilabel=True)
    assert m["accuracy"] == pytest.approx(0.75)          # record 2 misses Y at 0.5
    assert m["auroc_X"] == pytest.approx(1.0) and m["auroc_Y"] == pytest.approx(1.0)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)


def test_absent_class_has_no_auroc():
    m = classification_metrics(PROBS[:2], Y[:2], ["A", "B", "C"])
    assert np.isnan(m["auroc_C"])
    assert m["macro_auroc"] == pytest.approx(1.0)


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    probs = rng.dirichlet([1, 1, 1], 300)
    probs[np.arange(300), y] += 0.5
    probs /= probs.sum(axis=1, keepdims=True)

    def metric(p, t):
        return classification_metrics(p, t, ["A", "B", "C"])

    point = metric(probs, y)
    ci = bootstrap_interval(metric, probs, y, n_resamples=200, seed=1)
    assert ci == bootstrap_interval(metric, probs, y, n_resamples=200, seed=1)
    for key in ("accuracy", "macro_auroc", "macro_f1"):
        low, high = ci[key]
        assert low < point[key] < high and high - low < 0.2
    small = bootstrap_interval(metric, probs[:60], y[:60], n_resamples=200, seed=1)
    assert np.diff(small["accuracy"]) > np.diff(ci["accuracy"])


def test_classification_task_loss_and_score():
    task = ClassificationTask(["A", "B", "C"], class_weights=[1.0, 2.0, 0.5])
    logits = torch.log(torch.tensor(PROBS, dtype=torch.float32))
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor(Y),
                                                 weight=torch.tensor([1.0, 2.0, 0.5]))
    assert task.loss(logits, torch.tensor(Y)).item() == pytest.approx(expected.item())
    np.testing.assert_allclose(task.probabilities(logits.numpy()), PROBS, rtol=1e-6)
    m = task.metrics(logits.numpy(), Y, "val")
    assert m["val_score"] == pytest.approx(1 - m["val_macro_auroc"])
    multi = ClassificationTask(["X", "Y"], multilabel=True)
    out = torch.tensor([[2.0, -1.0]])
    assert multi.loss(out, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(out, torch.tensor([[1.0, 0.0]])).item())


def test_focal_loss_by_hand():
    """Focal loss: each record's (weighted) cross-entropy scaled by (1 - p_t)^2, a weighted mean
    as cross_entropy's; multi-label the same per class on the BCE terms."""
    w = np.array([1.0, 2.0, 0.5])
    task = ClassificationTask(["A", "B", "C"], class_weights=w, loss="focal")
    logits = torch.log(torch.tensor(PROBS, dtype=torch.float32))
    p_t = PROBS[np.arange(4), Y]                       # 0.7, 0.6, 0.3, 0.4
    w_i = w[Y]
    by_hand = np.sum(w_i * (1 - p_t) ** 2 * -np.log(p_t)) / np.sum(w_i)
    assert task.loss(logits, torch.tensor(Y)).item() == pytest.approx(by_hand, rel=1e-5)
    plain = ClassificationTask(["A", "B", "C"], class_weights=w)
    assert task.loss(logits, torch.tensor(Y)).item() < plain.loss(logits, torch.tensor(Y)).item()

    multi = ClassificationTask(["X", "Y"], multilabel=True, loss="focal",
                               class_weights=[3.0, 1.0])   # pos_weight: weighted BCE
    out = torch.tensor([[2.0, -1.0]])
    p = 1 / (1 + np.exp(-np.array([2.0, -1.0])))
    bce = np.array([-3.0 * np.log(p[0]), -np.log(1 - p[1])])
    p_t = np.array([p[0], 1 - p[1]])
    assert multi.loss(out, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        np.mean((1 - p_t) ** 2 * bce), rel=1e-5)
    with pytest.raises(ValueError, match="loss: 'hinge' is not ce or focal"):
        ClassificationTask(["A"], loss="hinge")


def test_macro_averages_cover_the_same_classes():
    """A class absent from the test set (HYP in a small fold) is left out of macro F1 as it is
    out of macro AUROC, and the classes covered are counted and named."""
    from sklearn.metrics import f1_score

    from ecgtransfer.training.metrics import classification_metrics, macro_classes

    classes = ["NORM", "MI", "STTC", "CD", "HYP"]
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2, 3] * 10)  # no HYP
    probs = rng.dirichlet(np.ones(5), size=len(y))
    out = classification_metrics(probs, y, classes)
    assert out["macro_classes"] == 4 and np.isnan(out["auroc_HYP"])
    assert out["macro_f1"] == pytest.approx(
        f1_score(y, probs.argmax(axis=1), labels=[0, 1, 2, 3], average="macro", zero_division=0))
    assert macro_classes(y, classes) == ["NORM", "MI", "STTC", "CD"]
    multi = np.zeros((len(y), 5), dtype=int)
    multi[np.arange(len(y)), y] = 1
    multi[:, 0] = 1  # every record NORM: no negative, no AUROC, out of both averages
    both = classification_metrics(probs, multi, classes, multilabel=True)
    assert both["macro_classes"] == 3 and np.isnan(both["auroc_NORM"])
    assert macro_classes(multi, classes, multilabel=True) == ["MI", "STTC", "CD"]


@pytest.mark.parametrize("multilabel", [False, True])
def test_metrics_equal_scikit_learns_ties_and_absent_classes_included(multilabel):
    """The vectorised AUROC and F1 are scikit-learn's values (rounded scores make ties)."""
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(3)
    n, k = 157, 5
    probs = np.round(rng.dirichlet(np.ones(k), n), 1)
    if multilabel:
        y = (rng.random((n, k)) < probs + 0.1).astype(int)
        y[:, 4] = 0  # a class no record has
        truth, decided = y, (probs >= 0.5).astype(int)
    else:
        y = np.where(rng.random(n) < 0.5, probs.argmax(axis=1), rng.integers(0, k - 1, n))
        y[y == 4] = 0  # a class no record has
        truth, decided = np.eye(k, dtype=int)[y], np.eye(k, dtype=int)[probs.argmax(axis=1)]
    m = classification_metrics(probs, y, list("ABCDE"), multilabel=multilabel)
    covered = [j for j in range(k) if 0 < truth[:, j].sum() < n]
    assert len(covered) == 4
    for j in covered:
        assert m[f"auroc_{'ABCDE'[j]}"] == pytest.approx(roc_auc_score(truth[:, j], probs[:, j]))
    expected_f1 = (f1_score(truth[:, covered], decided[:, covered], average="macro",
                            zero_division=0) if multilabel else
                   f1_score(y, probs.argmax(axis=1), labels=covered, average="macro",
                            zero_division=0))
    assert m["macro_f1"] == pytest.approx(expected_f1)


def test_seed_and_record_draws_are_paired_and_seeded():
    from ecgtransfer.training.metrics import bootstrap_draws, percentile_interval

    a = bootstrap_draws(50, 3, n_resamples=20, seed=4)
    b = bootstrap_draws(50, 3, n_resamples=20, seed=4)
    assert all((x[0] == y[0]).all() and (x[1] == y[1]).all() for x, y in zip(a, b))
    assert {len(s) for s, _ in a} == {3} and {len(r) for _, r in a} == {50}
    assert max(s.max() for s, _ in a) == 2 and max(r.max() for _, r in a) <= 49
    low, high = percentile_interval(np.r_[np.arange(101.0), np.nan])
    assert (low, high) == pytest.approx((2.5, 97.5))


@pytest.mark.parametrize("multilabel", [False, True])
def test_the_predictions_table_reads_back_what_it_wrote(tmp_path, multilabel):
    """One writer and one reader of the predictions table (finetune writes, compare and the
    cross-validation's pooling read): the arrays come back as they went in."""
    from ecgtransfer.training.predictions import (prediction_arrays, predictions_table,
                                                  read_predictions, write_predictions)

    rng = np.random.default_rng(0)
    classes = ["NORM", "MI", "CD"]
    probs = rng.random((7, 3))
    y = (rng.random((7, 3)) > 0.5).astype(int) if multilabel else rng.integers(0, 3, 7)
    ids = [f"{i:05d}" for i in range(7)]
    path = write_predictions(predictions_table(ids, classes, probs, y, multilabel),
                             tmp_path / "p.csv")
    table = read_predictions(path)
    assert list(table["record_id"]) == ids
    got_classes, got_probs, got_y, got_multi = prediction_arrays(table)
    assert got_classes == classes and got_multi == multilabel
    np.testing.assert_allclose(got_probs, probs, rtol=1e-12)
    np.testing.assert_array_equal(got_y, y)


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("decimals", [None, 1])
def test_weighted_metrics_equal_the_metrics_of_the_repeated_rows(multilabel, decimals):
    """What a bootstrap resample costs: the seeds' predictions sorted once, every resample a
    weighting of the records. Its values must be those of ranking the repeated rows afresh,
    ties included (``decimals`` rounds the scores into many ties), averaged over the drawn
    seeds with their repeats; a fold is a 0/1 weighting."""
    from ecgtransfer.training.metrics import RankedPredictions, bootstrap_draws

    rng = np.random.default_rng(3)
    seeds, n, k = 3, 120, 4
    probs = rng.random((seeds, n, k))
    if multilabel:
        y = (rng.random((n, k)) < 0.3).astype(int)
        y[:, 3] = 0                                       # a class no record has: no AUROC
    else:
        probs /= probs.sum(axis=2, keepdims=True)
        y = rng.integers(0, k, n)
    if decimals is not None:
        probs = np.round(probs, decimals)
    classes = ["A", "B", "C", "D"]
    ranked = RankedPredictions(probs, y, classes, multilabel)
    for drawn, rows in bootstrap_draws(n, seeds, n_resamples=15, seed=1):
        got = ranked.metrics(np.bincount(rows, minlength=n), drawn)
        each = [classification_metrics(probs[s][rows], y[rows], classes, multilabel)
                for s in drawn]
        for key in ("accuracy", "macro_auroc", "macro_f1", *(f"auroc_{c}" for c in classes)):
            expected = np.mean([v[key] for v in each])
            assert got[key] == pytest.approx(expected, abs=1e-12, nan_ok=True), key
    fold = (np.arange(n) % 3 == 0).astype(float)
    one = classification_metrics(probs[1][fold == 1], y[fold == 1], classes, multilabel)
    got = ranked.metrics(fold, np.array([1]))
    assert got["macro_auroc"] == pytest.approx(one["macro_auroc"], abs=1e-12)
    assert got["macro_f1"] == pytest.approx(one["macro_f1"], abs=1e-12)
