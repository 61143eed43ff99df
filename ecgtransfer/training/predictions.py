"""The predictions tables: what a model said of each test record, and the truth.

A classifier's: one row per record: ``record_id``; the truth, as ``true`` (the class,
single-label) or ``true_<class>`` (0 or 1 per class, multi-label); ``p_<class>``, the
probability of each class; and, pooled over a cross-validation's folds, ``fold``. ``finetune``
writes it (``test_predictions.csv``, a cross-validation's ``oof_predictions.csv``); ``compare``
reads it back to resample records, and a cross-validation pools its folds' tables.

A regressor's (``pretrain``): ``record_id``, and per target ``true_<target>`` and
``pred_<target>`` in the target's unit (and ``fold``), in the same two files.

This module is the one writer and the one reader of both formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["TEST_PREDICTIONS", "OOF_PREDICTIONS", "predictions_table", "write_predictions",
           "read_predictions", "prediction_arrays", "regression_table",
           "read_regression_predictions", "regression_arrays", "pool_predictions"]

TEST_PREDICTIONS = "test_predictions.csv"
"""A run's predictions on its test records (a file in its folder and an MLflow artifact)."""
OOF_PREDICTIONS = "oof_predictions.csv"
"""A cross-validation's pooled out-of-fold predictions, with each record's ``fold``."""


def predictions_table(ids: Sequence[str], classes: Sequence[str], probs: np.ndarray,
                      y: np.ndarray, multilabel: bool) -> pd.DataFrame:
    """The table of ``probs`` (``(n, k)``) and the truth ``y`` (``(n, k)`` 0/1 when
    ``multilabel``, else ``(n,)`` class indices) of records ``ids``."""
    columns: dict = {"record_id": list(ids)}
    if multilabel:
        columns.update({f"true_{c}": np.asarray(y)[:, j].astype(int)
                        for j, c in enumerate(classes)})
    else:
        columns["true"] = [classes[int(t)] for t in y]
    columns.update({f"p_{c}": np.asarray(probs)[:, j] for j, c in enumerate(classes)})
    return pd.DataFrame(columns)


def write_predictions(table: pd.DataFrame, path: str | Path) -> Path:
    """``table`` written whole (or not at all) as CSV at ``path``; returns the path."""
    from ecgtransfer.files import atomic_file

    path = Path(path)
    with atomic_file(path) as f:
        table.to_csv(f, index=False)
    return path


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions table (``test_predictions.csv``, ``oof_predictions.csv``), checked: a
    ``record_id`` column, ``p_<class>`` probabilities in [0, 1], the truth (``true``, one of the
    classes, single-label; ``true_<class>``, 0 or 1, multi-label) and, if there, whole ``fold``
    numbers.

    Returns
    -------
    pandas.DataFrame
        The table, ``record_id`` and ``true`` as text, probabilities as floats.

    Raises
    ------
    ValueError
        What is wrong with the file, in a few words (the caller names the file and its run).
    """
    table = _read_csv(path)
    columns = [str(c) for c in table.columns]
    classes = [c[2:] for c in columns if c.startswith("p_")]
    if "record_id" not in columns:
        raise ValueError("no record_id column (not a predictions table)")
    if not classes:
        raise ValueError("no probability columns (p_<class>)")
    if table.empty:
        raise ValueError("no rows")
    if table["record_id"].isna().any():
        raise ValueError(f"{int(table['record_id'].isna().sum())} rows without a record_id")
    if "true" in columns:
        table["true"] = table["true"].astype(str)
        wrong = ~table["true"].isin(classes)
        if wrong.any():
            raise ValueError(f"{int(wrong.sum())} true labels not among its classes "
                             f"({', '.join(classes)}), e.g. {table['true'][wrong].iloc[0]!r}")
    else:
        missing = [f"true_{c}" for c in classes if f"true_{c}" not in columns]
        if missing:
            raise ValueError("no truth: neither a true column (single-label) nor "
                             f"{', '.join(missing)} (multi-label)")
        for c in classes:
            truth = pd.to_numeric(table[f"true_{c}"], errors="coerce")
            if not truth.isin([0, 1]).all():
                raise ValueError(f"true_{c} holds values other than 0 and 1")
    probs = table[[f"p_{c}" for c in classes]]
    numeric = probs.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    said = []
    for text, bad in (("{n} NaN {p}", probs.isna()),
                      ("{n} {p} not a number", numeric.isna() & probs.notna()),
                      ("{n} infinite {p}", np.isinf(numeric)),
                      ("{n} {p} outside [0, 1]",
                       np.isfinite(numeric) & ((numeric < 0) | (numeric > 1)))):
        count = int(bad.to_numpy().sum())
        if count:
            where = ", ".join(c for c in bad.columns if bad[c].any())
            said.append(text.format(n=count, p="probability" if count == 1 else "probabilities")
                        + f" ({where})")
    if said:
        raise ValueError("; ".join(said))
    table[numeric.columns] = numeric
    _check_folds(table)
    return table


def _read_csv(path: str | Path) -> pd.DataFrame:
    """A CSV table with text record ids; what keeps it from being read, in a few words."""
    try:
        return pd.read_csv(path, dtype={"record_id": str})
    except pd.errors.EmptyDataError:
        raise ValueError("empty file") from None
    except (ValueError, OSError) as exc:  # ParserError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"not a readable CSV table ({type(exc).__name__})") from None


def _check_folds(table: pd.DataFrame) -> None:
    """A pooled table's ``fold`` column, if any, holds whole numbers."""
    if "fold" in table.columns:
        folds = pd.to_numeric(table["fold"], errors="coerce")
        if not (np.isfinite(folds) & (folds == np.round(folds))).all():
            raise ValueError("fold holds values that are not whole numbers")


def prediction_arrays(table: pd.DataFrame, classes: Sequence[str] | None = None
                      ) -> tuple[list[str], np.ndarray, np.ndarray, bool]:
    """A table's classes (its ``p_`` columns, or ``classes``), probabilities ``(n, k)``,
    truth (``(n, k)`` 0/1 multi-label, ``(n,)`` class indices single-label; -1 for a class
    the table's classes lack) and whether it is multi-label."""
    classes = list(classes) if classes is not None else [
        str(c)[2:] for c in table.columns if str(c).startswith("p_")]
    probs = table[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    multilabel = "true" not in table.columns
    if multilabel:
        y = table[[f"true_{c}" for c in classes]].to_numpy(np.int64)
    else:
        index = {c: j for j, c in enumerate(classes)}
        y = np.array([index.get(str(t), -1) for t in table["true"]], dtype=np.int64)
    return classes, probs, y, multilabel


def regression_table(ids: Sequence[str], names: Sequence[str], pred: np.ndarray,
                     true: np.ndarray) -> pd.DataFrame:
    """A regressor's table: ``pred`` and ``true`` (``(n, targets)``, in the targets' units) of
    records ``ids``."""
    columns: dict = {"record_id": list(ids)}
    for j, name in enumerate(names):
        columns[f"true_{name}"] = np.asarray(true, dtype=np.float64)[:, j]
        columns[f"pred_{name}"] = np.asarray(pred, dtype=np.float64)[:, j]
    return pd.DataFrame(columns)


def read_regression_predictions(path: str | Path) -> pd.DataFrame:
    """A regressor's predictions table, checked: ``record_id``, and ``true_<t>`` with
    ``pred_<t>`` for each target, finite numbers (and whole ``fold`` numbers, if there).

    Raises
    ------
    ValueError
        What is wrong with the file, in a few words (the caller names the file).
    """
    table = _read_csv(path)
    columns = [str(c) for c in table.columns]
    names = [c[5:] for c in columns if c.startswith("pred_")]
    if "record_id" not in columns or not names:
        raise ValueError("no record_id or no pred_<target> columns (not a regressor's "
                         "predictions table)")
    missing = [f"true_{n}" for n in names if f"true_{n}" not in columns]
    if missing:
        raise ValueError(f"no truth: {', '.join(missing)}")
    if table.empty:
        raise ValueError("no rows")
    values = table[[f"{kind}_{n}" for n in names for kind in ("true", "pred")]]
    numeric = values.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    bad = ~np.isfinite(numeric.to_numpy())
    if bad.any():
        where = ", ".join(c for c, b in zip(numeric.columns, bad.any(axis=0)) if b)
        raise ValueError(f"{int(bad.sum())} values that are not finite numbers ({where})")
    table[numeric.columns] = numeric
    _check_folds(table)
    return table


def regression_arrays(table: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A regressor's table as its targets, predictions and truth (``(n, targets)`` each)."""
    names = [str(c)[5:] for c in table.columns if str(c).startswith("pred_")]
    pred = table[[f"pred_{n}" for n in names]].to_numpy(np.float64)
    true = table[[f"true_{n}" for n in names]].to_numpy(np.float64)
    return names, pred, true


def pool_predictions(files: Sequence[Path], out: Path, read=read_predictions) -> pd.DataFrame:
    """The folds' test predictions (fold ``i`` is ``files[i - 1]``) as one table with a
    ``fold`` column, written whole as ``out``; ``read`` is the table's checked reader.

    Raises
    ------
    ValueError
        A fold's file that cannot be used, naming it and how to redo that fold.
    """
    tables = []
    for k, f in enumerate(files):
        try:
            table = read(f)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{f}: unusable fold predictions ({exc}); delete {Path(f).parent} "
                             "to redo that fold") from None
        tables.append(table.assign(fold=k + 1))
    pooled = pd.concat(tables, ignore_index=True)
    write_predictions(pooled, out)
    return pooled
