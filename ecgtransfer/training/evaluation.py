"""Evaluators: how a model's held-out predictions become its test figures.

An evaluator takes the records' ids, the predictions (a classifier's: the task's
probabilities) and the truth, writes the predictions table, logs the metrics with their
bootstrap intervals and the figures to the run it is given, and returns what ``result.json``
keeps. Three kinds:

* :class:`RegressionEvaluator`: a regressor's MAE per target with its 95% bootstrap interval
  over records, and the scatter of predicted against labelled values;

* :class:`TestEvaluator`: macro AUROC, accuracy and macro F1 with their 95% bootstrap intervals
  over records, the confusion matrix and ROC curves;
* :class:`ChallengeEvaluator`: the same, and the PhysioNet Challenge 2021 scores of the records
  decided at per-class thresholds chosen on the validation records (a cross-validation's pooled
  records each at their own fold's thresholds), with the outputs in the Challenge's format.

A stage chooses its evaluator once (:func:`evaluator_for`); nothing else branches on the kind.
The run is anything with the tracking layer's ``Run`` methods: this module does not talk to
MLflow itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ecgtransfer.files import json_safe
from ecgtransfer.tags import tag_values

__all__ = ["TestEvaluator", "ChallengeEvaluator", "RegressionEvaluator", "evaluator_for",
           "evaluate"]

log = logging.getLogger(__name__)


def evaluate(classes: Sequence[str], multilabel: bool, probs: np.ndarray, y: np.ndarray,
             n_resamples: int, seed: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Test metrics of ``probs`` against ``y`` and their 95% bootstrap intervals over records
    (none when ``n_resamples`` is 0)."""
    from ecgtransfer.training.metrics import RankedPredictions, percentile_interval

    ranked = RankedPredictions(np.asarray(probs)[None], y, list(classes), multilabel)
    values = ranked.metrics()
    intervals = {}
    if n_resamples:  # the records resampled as bootstrap_interval draws them
        rng = np.random.default_rng(seed)
        draws = {k: np.empty(n_resamples) for k in values if k != "macro_classes"}
        for i in range(n_resamples):
            resample = ranked.metrics(np.bincount(rng.integers(0, len(y), len(y)),
                                                  minlength=len(y)))
            for k in draws:
                draws[k][i] = resample[k]
        intervals = {k: list(percentile_interval(v)) for k, v in draws.items()}
    return values, intervals


@dataclass(frozen=True)
class TestEvaluator:
    """The test figures of a classifier on its held-out records.

    Parameters
    ----------
    classes : tuple of str
        The task's classes, in the order of the probabilities' columns.
    multilabel : bool
        Multi-label (0/1 rows of truth) or single-label (class indices).
    bootstrap : int
        Resamples of the intervals' bootstrap over records (0: none).
    seed : int
        Seed of the resamples.
    """

    classes: tuple[str, ...]
    multilabel: bool
    bootstrap: int
    seed: int

    uses_validation = False
    """Whether :meth:`evaluate` needs the validation records' predictions."""

    def evaluate(self, run, ids: np.ndarray, probs: np.ndarray, y: np.ndarray, folder: Path, *,
                 validation: tuple[np.ndarray, np.ndarray] | None = None,
                 pooled: bool = False, fold_thresholds: np.ndarray | None = None) -> dict:
        """Write the predictions table into ``folder`` (``oof_predictions.csv`` for a
        cross-validation's ``pooled`` records, else ``test_predictions.csv``) and log the test
        figures to ``run``; returns ``{"test": metrics, "intervals": intervals}`` (and what a
        subclass adds). ``validation`` (probabilities and truth of the validation records) and
        ``fold_thresholds`` (each pooled record's fold's thresholds) serve the Challenge's
        evaluator."""
        from ecgtransfer import plots
        from ecgtransfer.training.metrics import interval_text, macro_classes
        from ecgtransfer.training.predictions import (OOF_PREDICTIONS, TEST_PREDICTIONS,
                                                      predictions_table, write_predictions)

        path = folder / (OOF_PREDICTIONS if pooled else TEST_PREDICTIONS)
        if not pooled:  # a cross-validation's pooled table is written with its fold column
            write_predictions(predictions_table(ids, list(self.classes), probs, y,
                                                self.multilabel), path)
        test, intervals = evaluate(self.classes, self.multilabel, probs, y, self.bootstrap,
                                   self.seed)
        run.log_metrics({f"test_{k}": v for k, v in test.items()})
        run.log_metrics({f"test_{k}_ci_{side}": b for k, (lo, hi) in intervals.items()
                         for side, b in (("low", lo), ("high", hi))})
        run.log_artifact(path)
        over = macro_classes(y, list(self.classes), self.multilabel)
        run.log_text(json.dumps(json_safe({"metrics": test, "ci95": intervals, "n": int(len(y)),
                                        "macro_over": over}), indent=2), "test_metrics.json")
        run.set_tags(tag_values(macro_over=",".join(over)))
        run.log_figure(plots.confusion_matrix(y, probs, self.classes, self.multilabel),
                       "plots/confusion_matrix_test.png")
        run.log_figure(plots.roc_curves(y, probs, self.classes, self.multilabel),
                       "plots/roc_test.png")
        log.info("finetune: %s macro AUROC %.3f %s, accuracy %.3f, macro F1 %.3f",
                 "out-of-fold" if pooled else "test", test["macro_auroc"],
                 interval_text(intervals.get("macro_auroc")) or "(no interval)",
                 test["accuracy"], test["macro_f1"])
        return {"test": test, "intervals": intervals}


@dataclass(frozen=True)
class ChallengeEvaluator(TestEvaluator):
    """:class:`TestEvaluator`'s figures and the Challenge 2021's scores.

    A model's records are decided at per-class thresholds tuned on its validation records for
    the challenge metric (kept with the model, in ``result["thresholds"]``); a
    cross-validation's pooled records each at their own fold's thresholds.

    Parameters
    ----------
    scoring : ecgtransfer.training.challenge.Scoring
        The Challenge's classes, equivalences and weights (the store's classes, in order).
    """

    scoring: Any = None
    uses_validation = True

    def evaluate(self, run, ids: np.ndarray, probs: np.ndarray, y: np.ndarray, folder: Path, *,
                 validation: tuple[np.ndarray, np.ndarray] | None = None,
                 pooled: bool = False, fold_thresholds: np.ndarray | None = None) -> dict:
        from ecgtransfer.training.challenge import tune_thresholds

        result = super().evaluate(run, ids, probs, y, folder, pooled=pooled)
        if pooled:
            if fold_thresholds is not None:
                self._score(run, ids, probs, y, fold_thresholds, result,
                            "out-of-fold, each fold's own thresholds", folder)
            return result
        val_probs, val_y = validation
        thresholds = tune_thresholds(self.scoring, val_y, val_probs)
        result["thresholds"] = [float(t) for t in thresholds]
        self._score(run, ids, probs, y, np.broadcast_to(thresholds, probs.shape), result,
                    f"thresholds tuned on {len(val_y)} validation records", folder)
        run.log_text(json.dumps({"classes": self.scoring.classes, "names": self.scoring.names,
                                 "thresholds": result["thresholds"]}, indent=2),
                     "thresholds.json")
        return result

    def _score(self, run, ids: np.ndarray, probs: np.ndarray, y: np.ndarray,
               thresholds: np.ndarray, result: dict, how: str, folder: Path) -> None:
        """The Challenge's scores of records decided at ``thresholds`` (one row per record):
        logged (the metric with its bootstrap interval over records), added to ``result``, and
        the outputs written in the Challenge's format (``challenge_outputs/<record>.csv``,
        scored by ``ecgtransfer evaluate challenge2021``) and logged."""
        from ecgtransfer.data.challenge2021 import write_outputs
        from ecgtransfer.training.challenge import challenge_metric, challenge_scores
        from ecgtransfer.training.metrics import bootstrap_interval, interval_text

        scoring = self.scoring
        decided = probs >= thresholds
        scores = challenge_scores(scoring, y, decided, probs)
        values = {k: scores[k] for k in ("challenge_metric", "auprc", "f_measure")}
        values["accuracy_challenge"] = scores["accuracy"]
        intervals = {}
        if self.bootstrap:  # margins over the thresholds: resampled with their records
            intervals = bootstrap_interval(
                lambda margin, t: {"challenge_metric": challenge_metric(scoring, t, margin >= 0)},
                probs - thresholds, y, n_resamples=self.bootstrap, seed=self.seed)
        run.log_metrics({f"test_{k}": v for k, v in values.items()})
        run.log_metrics({f"test_{k}_ci_{side}": b for k, (lo, hi) in intervals.items()
                         for side, b in (("low", lo), ("high", hi))})
        out = folder / "challenge_outputs"
        out.mkdir(parents=True, exist_ok=True)
        for record, d, p in zip(ids, decided, probs):
            write_outputs(out / f"{record}.csv", str(record), scoring.classes, d, p)
        run.log_artifacts(out, "challenge_outputs")
        result["test"].update(values)
        result["intervals"].update({k: list(v) for k, v in intervals.items()})
        log.info("finetune: challenge metric %.3f %s, %s", values["challenge_metric"],
                 interval_text(intervals.get("challenge_metric")) or "(no interval)", how)


@dataclass(frozen=True)
class RegressionEvaluator:
    """The test figures of an interval regressor on its held-out records.

    Parameters
    ----------
    names, units : tuple of str
        The targets (``qrs``) and their units (``ms``): metrics read ``test_mae_qrs_ms``.
    bootstrap : int
        Resamples of the intervals' bootstrap over records (0: none).
    seed : int
        Seed of the resamples.
    """

    names: tuple[str, ...]
    units: tuple[str, ...]
    bootstrap: int
    seed: int

    def evaluate(self, run, ids: np.ndarray, pred: np.ndarray, true: np.ndarray, folder: Path,
                 *, pooled: bool = False) -> dict:
        """Write the predictions table into ``folder`` (a cross-validation's ``pooled`` one is
        written with its folds) and log MAE per target with its interval, the table and the
        scatter plot to ``run``; returns ``{"test_mae": ..., "intervals": ...}`` keyed
        ``<target>_<unit>``."""
        from ecgtransfer import plots
        from ecgtransfer.training.metrics import bootstrap_interval, interval_text
        from ecgtransfer.training.predictions import (OOF_PREDICTIONS, TEST_PREDICTIONS,
                                                      regression_table, write_predictions)

        keys = [f"{n}_{u}" for n, u in zip(self.names, self.units)]
        path = folder / (OOF_PREDICTIONS if pooled else TEST_PREDICTIONS)
        if not pooled:
            write_predictions(regression_table(ids, self.names, pred, true), path)

        def metric(p, t):
            return dict(zip(keys, (float(e) for e in np.abs(p - t).mean(axis=0))))

        mae = metric(pred, true)
        intervals = {}
        if self.bootstrap:
            intervals = {k: list(v) for k, v in bootstrap_interval(
                metric, pred, true, n_resamples=self.bootstrap, seed=self.seed).items()}
        run.log_metrics({f"test_mae_{k}": v for k, v in mae.items()})
        run.log_metrics({f"test_mae_{k}_ci_{side}": b for k, (lo, hi) in intervals.items()
                         for side, b in (("low", lo), ("high", hi))})
        run.log_artifact(path)
        run.log_figure(plots.scatter_true_pred(true, pred, self.names, self.units,
                                               title="out-of-fold" if pooled else "test"),
                       "plots/scatter_test.png")
        log.info("pretrain: %s MAE %s", "out-of-fold" if pooled else "test", ", ".join(
            f"{k} {v:.2f} {interval_text(intervals.get(k))}".rstrip() for k, v in mae.items()))
        return {"test_mae": mae, "intervals": intervals}


def evaluator_for(classes: Sequence[str], multilabel: bool, bootstrap: int, seed: int,
                  scoring: Any = None) -> TestEvaluator:
    """The Challenge's evaluator when there is a Challenge ``scoring``, else the test split's."""
    if scoring is not None:
        return ChallengeEvaluator(tuple(classes), multilabel, bootstrap, seed, scoring)
    return TestEvaluator(tuple(classes), multilabel, bootstrap, seed)

