"""What a classifier learns to predict: the classes and targets of a store's records, the reason
a record is unusable for a task, and the class weights of the training records.

Two families of tasks: the diagnostic classes a store's index holds as 0/1 columns (PTB-XL's
five superclasses, or a Challenge 2021 store's scored classes), single- or multi-label; and the
PTB-XL benchmark's statement tasks (``diagnostic``, ``form``, ``rhythm`` ...), multi-label over
the statements the store's records have.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ecgtransfer.data.ptbxl import BENCHMARK_TASKS, SUPERCLASSES

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ClassTargets", "class_targets", "class_weights", "diagnostic_targets",
           "statement_targets", "store_classes"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassTargets:
    """A store's records' targets for one classification task (what :func:`class_targets`
    reads).

    Attributes
    ----------
    classes : tuple of str
    targets : numpy.ndarray
        Per record: its class index (-1 for none) for a single-label task, a 0/1 row per class
        for a multi-label one.
    reasons : numpy.ndarray of str
        Why each record cannot be used for the task ("" when it can).
    multilabel : bool
    """

    classes: tuple[str, ...]
    targets: np.ndarray
    reasons: np.ndarray
    multilabel: bool

    def indicators(self) -> np.ndarray:
        """0/1 per record and class (what a stratified split balances)."""
        if self.multilabel:
            return self.targets.astype(np.int64)
        one_hot = np.eye(len(self.classes), dtype=np.int64)[np.maximum(self.targets, 0)]
        return one_hot * (self.targets >= 0)[:, None]

    @property
    def label_column(self) -> str | None:
        """The label's column in :meth:`table` (None: one column per class)."""
        return None if self.multilabel else "superclass"

    def table(self, record_ids: np.ndarray) -> pd.DataFrame:
        """Record id and label of every record (what a run logs as its dataset inputs)."""
        import pandas as pd

        if self.multilabel:
            table = pd.DataFrame(self.targets.astype(float), columns=list(self.classes))
            table.insert(0, "record_id", record_ids)
            return table
        labels = np.array([self.classes[t] if t >= 0 else "" for t in self.targets])
        return pd.DataFrame({"record_id": record_ids, self.label_column: labels})


def class_targets(store, task: str) -> ClassTargets:
    """The targets of ``store``'s records for ``task``: a PTB-XL benchmark statement task
    (:data:`~ecgtransfer.data.ptbxl.BENCHMARK_TASKS`, multi-label), or the diagnostic classes
    its index holds (``single_label``, ``multi_label``). Problems are one line naming the store."""
    where = str(store.path)
    if task in BENCHMARK_TASKS:
        classes, targets, reasons = statement_targets(store.index, task, where)
    else:
        classes = store_classes(store)
        targets, reasons = diagnostic_targets(store.index, task, where, classes)
    return ClassTargets(tuple(classes), targets, reasons, task != "single_label")


def store_classes(store) -> tuple[str, ...]:
    """The diagnostic classes a store's index holds as 0/1 columns: a Challenge 2021 store's
    scored classes (its ``store.json`` names them), else PTB-XL's five superclasses."""
    classes = (store.meta.get("info") or {}).get("classes")
    return tuple(classes) if classes else SUPERCLASSES


def diagnostic_targets(index: pd.DataFrame, task: str, where: str = "store",
                       classes: tuple[str, ...] = SUPERCLASSES
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Class targets of every row of a PTB-XL store's index, and why a row is unusable.

    Parameters
    ----------
    index : pandas.DataFrame
        The store's index, with one 0/1 column per superclass (``NORM`` ... ``HYP``).
    task : str
        ``single_label``: class index of records with exactly one superclass. ``multi_label``:
        the 0/1 row of records with at least one.
    where : str
        Names the store in errors.

    Returns
    -------
    targets : numpy.ndarray
        ``(n,)`` int64 (single-label; -1 where unusable) or ``(n, 5)`` float32.
    reasons : numpy.ndarray
        ``""`` for a usable row, else ``"no superclass"``, ``"several superclasses"`` or
        ``"index: <problem>"``.
    """
    missing = [c for c in classes if c not in index.columns]
    if missing:
        raise ValueError(f"{where}: no diagnostic labels (the index lacks {', '.join(missing)}); "
                         "finetune needs a PTB-XL or Challenge 2021 store (`ecgtransfer data "
                         "prepare ptbxl|challenge2021`)")
    onehot = index[list(classes)].fillna(0).to_numpy(np.int64)
    n_classes = onehot.sum(axis=1)
    reasons = np.full(len(index), "", dtype=object)
    if classes == SUPERCLASSES or task == "single_label":
        # PTB-XL's benchmark leaves out records without a superclass; a Challenge record
        # without a scored class is an all-negative row, as the Challenge scores it
        reasons[n_classes == 0] = "no superclass" if classes == SUPERCLASSES else "no scored class"
    if task == "single_label":
        reasons[n_classes > 1] = ("several superclasses" if classes == SUPERCLASSES
                                  else "several scored classes")
        targets = np.where(n_classes == 1, onehot.argmax(axis=1), -1).astype(np.int64)
    else:
        targets = onehot.astype(np.float32)
    if "problem" in index.columns:
        problem = index["problem"].fillna("").astype(str).to_numpy()
        reasons[problem != ""] = [f"index: {p}" for p in problem[problem != ""]]
    return targets, reasons


def statement_targets(index: pd.DataFrame, task: str, where: str = "store"
                      ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The classes, multi-hot targets and unusable-row reasons of a PTB-XL benchmark task.

    As the benchmark does (Strodthoff et al. 2021, ``select_data`` with ``min_samples = 0``):
    the classes are the statements of the task that at least one usable record of the store
    has, sorted; a record with none of them is left out ("no <task> statement").
    """
    column = f"scp_{task}"
    if column not in index.columns:
        raise ValueError(f"{where}: no PTB-XL statements for task {task!r} (the index lacks "
                         f"{column}); prepare the store again with this ecgtransfer "
                         "(`ecgtransfer data prepare ptbxl`)")
    problem = (index["problem"].fillna("").astype(str).to_numpy() if "problem" in index.columns
               else np.full(len(index), ""))
    sets = [[c for c in str(v).split("|") if c] if isinstance(v, str) else []
            for v in index[column].to_numpy()]
    classes = tuple(sorted({c for s, p in zip(sets, problem) if not p for c in s}))
    position = {c: j for j, c in enumerate(classes)}
    targets = np.zeros((len(index), len(classes)), dtype=np.float32)
    for i, s in enumerate(sets):
        for c in s:
            if c in position:
                targets[i, position[c]] = 1.0
    reasons = np.full(len(index), "", dtype=object)
    reasons[targets.sum(axis=1) == 0] = f"no {task} statement"
    reasons[problem != ""] = [f"index: {p}" for p in problem[problem != ""]]
    if not classes:
        raise ValueError(f"{where}: no record has a {task} statement")
    return classes, targets, reasons


def class_weights(y: np.ndarray, multilabel: bool, where: str,
                   classes: tuple[str, ...] = SUPERCLASSES) -> np.ndarray:
    """Inverse-frequency weights of the training records' classes; a class no training record
    has (a small fold, a low train fraction) gets weight 0, with a warning naming it: it has no
    positive record for a weight to act on."""
    k = len(classes)
    counts = (y.sum(axis=0) if multilabel else np.bincount(y, minlength=k)).astype(np.float64)
    absent = [c for c, n in zip(classes, counts) if n == 0]
    if absent:
        log.warning("%s: class weights, but no training record has %s: weight 0 (raise "
                    "train_fraction to learn it)", where, ", ".join(absent))
    present = counts > 0
    weights = np.zeros(k, dtype=np.float64)
    if multilabel:
        weights[present] = (len(y) - counts[present]) / counts[present]
    else:
        weights[present] = len(y) / (k * counts[present])
    return weights
