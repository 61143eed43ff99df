"""Comparing fine-tune runs: the statistics and the report behind ``ecgtransfer compare``.

* :mod:`~ecgtransfer.comparison.statistics`: runs grouped by what they were (runs of a group
  differ only in seed), the seed-and-record bootstrap of their predictions, paired differences
  of transfer against its scratch baseline, per-class AUROC, the Pareto front of score against
  cost, and the architecture axes;
* :mod:`~ecgtransfer.comparison.report`: the comparison as files (CSV, Markdown, figures) and as
  sentences a researcher reads.

They take plain tables (one row per run, as ``ecgtransfer.stages.compare.finetune_runs`` reads
them from MLflow, and each run's predictions table) and know nothing of MLflow. The names below
are the vocabulary of those tables; importing this package imports nothing else.
"""

__all__ = ["COSTS", "DEFAULT_STRATA", "GROUP", "METRICS"]

METRICS = ("accuracy", "macro_auroc", "macro_f1")
"""The metrics compared (each run's ``test_<metric>``)."""
GROUP = ("task", "split", "cv", "source", "source_targets", "strategy", "trunks", "freeze",
         "train_fraction", "setting")
"""What makes runs comparable: runs equal in all of these differ only in seed. ``setting`` is a
hash of every other fine-tune setting (epochs, lr, head, ...), so runs with other
hyperparameters are never averaged together; ``cv`` is the number of cross-validation folds
("" for one test split)."""
COSTS = ("params", "macs", "latency_ms_b1", "latency_ms_b64")
"""The cost report's figures (metrics ``cost_<name>`` of every run) that compare carries."""
DEFAULT_STRATA = ("all", "qrs>=120", "pr>200", "qt>450", "hr<55", "hr>100")
"""The strata ``ecgtransfer score`` reports by default (:mod:`~ecgtransfer.comparison.strata`):
where DeepFake's normal range never goes - bundle branch block widths, first-degree AV block,
long QT, bradycardia and tachycardia (by the truth's own values)."""
