"""Compare fine-tune runs: scratch against transfer, by source, freezing and train fraction.

Reads finished ``finetune`` runs from MLflow (their tags say what each run was), groups the runs
that differ only in seed, and reports each metric as the mean over seeds with a 95% interval.

Where the runs logged their predictions (``test_predictions.csv``; a cross-validation's pooled
``oof_predictions.csv``), the interval is a bootstrap over records and seeds together: each
resample draws the seeds and the records with replacement and averages the metric over the drawn
seeds, so it covers the test set's own sampling as well as training randomness. Transfer and
its scratch baseline are resampled identically (same records, same seeds), which makes the
difference's interval a paired one. Runs logged without predictions fall back to a t interval
over seeds (one seed: the run's own bootstrap interval); column ``interval`` says which, and where
other runs have predictions the fallback is also said in a warning and in ``comparison.md``.

A run whose predictions file is there but unusable (not a CSV table, empty, its columns not
those of a predictions table, a NaN or out-of-range probability) is left out of the comparison,
never averaged in nor quietly switched to another interval: a warning, the printed summary,
``comparison.md`` and the ``left_out`` column of ``comparison.csv`` name the run, the file and
what is wrong with it (the run's logged metrics came from those same predictions).

This module reads the runs and writes the answer; the statistics and the report are
:mod:`ecgtransfer.comparison`'s, which know nothing of MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ecgtransfer.comparison import COSTS, GROUP, METRICS
from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

if TYPE_CHECKING:
    import pandas as pd

    from ecgtransfer.tracking import Tracker

log = logging.getLogger(__name__)

__all__ = ["CompareConfig", "PredictionFiles", "compare", "finetune_runs", "run_predictions"]

_COLUMNS = ["run_id", "run_name", *GROUP, "seed", "evaluation", "n_train", "n_test", "model",
            "model_kwargs"] + [f"{m}{s}" for m in METRICS for s in ("", "_ci_low", "_ci_high")] + [
    f"cost_{c}" for c in COSTS]
_PREDICTIONS = {"cv": "oof_predictions.csv", "test": "test_predictions.csv"}
"""The predictions file of each kind of evaluation (``ecgtransfer.training.predictions``'s
``OOF_PREDICTIONS`` and ``TEST_PREDICTIONS``; a test checks they agree)."""
_DEFAULT_MODEL = "resnet1d_fast"
"""The architecture of a scratch run that names none (``ecgtransfer.models.DEFAULT_MODEL``,
not imported here: that would import torch with the command line)."""


def finetune_runs(tracker: Tracker, experiments: Sequence[str] = ("ecgtransfer-finetune",),
                  pipeline_run: str | None = None,
                  run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per finished fine-tune evaluation: what it was (tags) and its test metrics. A
    cross-validation is one row (its pooled out-of-fold metrics); its fold runs are left out.

    Parameters
    ----------
    tracker : ecgtransfer.tracking.Tracker
        The store the runs were logged to (``Tracker(uri)``).
    experiments : sequence of str
        MLflow experiment names; one that does not exist is an error naming it.
    pipeline_run : str, optional
        Only the runs of this pipeline run (tag ``ecgtransfer.pipeline_run``).
    run_ids : sequence of str, optional
        Only these runs.
    """
    import pandas as pd

    from ecgtransfer.comparison.statistics import param_value

    chosen = {"pipeline_run": pipeline_run} if pipeline_run else {}
    runs = tracker.find_runs(list(experiments), status="FINISHED", run_ids=run_ids,
                             stage="finetune", **chosen)
    rows = []
    for run in runs:
        metrics = run.metrics
        evaluation = run.tag("evaluation", "test")
        if evaluation == "fold":
            continue
        row = {"run_id": run.run_id, "run_name": run.name,
               **{k: run.tag(k) for k in GROUP}, "seed": run.tag("seed"),
               "evaluation": evaluation}
        row["train_fraction"] = float(row["train_fraction"] or 1.0)
        for n in ("n_train", "n_test"):
            row[n] = float(run.params.get(f"data.{n}", "nan") or "nan")
        if not row["trunks"]:  # a run from before the tag: one trunk per source target
            row["trunks"] = str(len([t for t in row["source_targets"].split(",") if t]) or 1)
        if row["strategy"] == "scratch":  # older runs were tagged with the borrowed source
            row["source"], row["source_targets"] = "none", ""
        for m in METRICS:
            row[m] = metrics.get(f"test_{m}", np.nan)
            row[f"{m}_ci_low"] = metrics.get(f"test_{m}_ci_low", np.nan)
            row[f"{m}_ci_high"] = metrics.get(f"test_{m}_ci_high", np.nan)
        params = run.params
        row["model"] = params.get("model", "") or (_DEFAULT_MODEL if row["strategy"] == "scratch"
                                                    else "")
        row["model_kwargs"] = json.dumps({k.split(".", 1)[1]: param_value(v) for k, v in
                                          sorted(params.items())
                                          if k.startswith("model_kwargs.")})
        for c in COSTS:
            row[f"cost_{c}"] = metrics.get(f"cost_{c}", np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=_COLUMNS)


class PredictionFiles(Mapping):
    """Runs' predictions tables by run id, read from their downloaded files when asked: what
    a comparison of many runs holds is one group's tables at a time, not every run's.

    The files live in ``folder``, or in a temporary folder removed with this object.
    """

    def __init__(self, paths: dict[str, Path], folder: tempfile.TemporaryDirectory | None = None):
        self._paths = paths
        self._folder = folder  # kept alive as long as the tables may be read

    def __getitem__(self, run_id: str) -> pd.DataFrame:
        from ecgtransfer.training.predictions import read_predictions

        return read_predictions(self._paths[run_id])

    def __contains__(self, run_id) -> bool:  # Mapping's own would read the file
        return run_id in self._paths

    def __iter__(self):
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def run_predictions(tracker: Tracker, runs: pd.DataFrame,
                    problems: dict[str, str] | None = None) -> PredictionFiles:
    """Each run's logged predictions by run id (``oof_predictions.csv`` of a cross-validation,
    ``test_predictions.csv`` else), as :func:`read_predictions` reads them: record id, truth,
    class probabilities (and fold). The files are downloaded and checked now, and read again
    when a table is asked for (:class:`PredictionFiles`).

    A run logged without them is left out of the result. So is a run whose file is there but
    unusable; given ``problems``, it is named there (run id -> ``"FILE: what is wrong"``).
    """
    from ecgtransfer.training.predictions import read_predictions

    folder = tempfile.TemporaryDirectory(prefix="ecgtransfer-compare-")
    paths: dict[str, Path] = {}
    for run_id, evaluation in zip(runs["run_id"], runs["evaluation"]):
        name = _PREDICTIONS.get(evaluation, "")
        path = tracker.download_artifact(run_id, name, Path(folder.name) / run_id) if name else None
        if path is None:
            continue
        try:
            read_predictions(path)
        except ValueError as exc:
            if problems is not None:
                problems[run_id] = f"{name}: {exc}"
            continue
        paths[run_id] = path
    return PredictionFiles(paths, folder)


@dataclass(frozen=True, kw_only=True)
class CompareConfig:
    """Settings of ``ecgtransfer compare``."""

    experiment: list[str] = setting([], "MLflow experiment(s) of the fine-tune runs "
                                    "(comma-separated; default: the most recent pipeline's, else "
                                    "ecgtransfer-finetune)", role="tracking", metavar="NAME")
    tracking_uri: str | None = setting(None, "default: $MLFLOW_TRACKING_URI or "
                                       "sqlite:///mlflow.db", role="tracking", metavar="URI")
    pipeline_run: str | None = setting(None, "only the runs of this pipeline run",
                                       metavar="RUN_ID")
    runs: list[str] | None = setting(None, "only these run ids (a pipeline passes those of its "
                                     "finetune stages)", cli=False)
    metric: str = setting("macro_auroc", "the metric of the plot and of the differences to "
                          "the baseline", choices=METRICS)
    against: str = setting("scratch", "each transfer group's baseline: scratch of the same "
                           "size, or a pretraining source (e.g. deepfake: transfer from it with "
                           "the same strategy, trunks, freezing and fraction), which asks what "
                           "a source adds over that one", metavar="scratch|SOURCE")
    cost: bool = setting(False, "also plot the metric against each group's MACs and CPU "
                         "latency with the Pareto front marked (cost.png, cost.csv)")
    axes: list[str] = setting([], "also plot the metric along each of these architecture "
                              "settings with the others held fixed (axes.png, axes.csv), e.g. "
                              "model_kwargs.layers,model_kwargs.width,model_kwargs.kernel_size",
                              metavar="AXIS[,AXIS...]")
    bootstrap: int = setting(1000, "resamples of the bootstrap over records and seeds (0: t "
                             "over seeds only)")
    seed: int = setting(0, "seed of the bootstrap's resamples")
    out: str = setting("runs/compare", "folder of comparison.csv, .md, .png and pairs.csv",
                       role="output", metavar="DIR")

    def __post_init__(self) -> None:
        check(self.metric not in METRICS, "metric", f"{self.metric!r} is not "
              f"{', '.join(METRICS)}")
        check(self.bootstrap < 0, "bootstrap", "must not be negative")
        check(self.seed < 0, "seed", "must not be negative")
        check(not str(self.against).strip(), "against", "scratch or a source's name")
        for axis in self.axes:
            check(axis != "model" and (not axis.startswith("model_kwargs.")
                                       or axis == "model_kwargs."), "axes",
                  f"{axis!r} is not model or model_kwargs.<key>")
        for key, ids in (("pipeline_run", [self.pipeline_run] if self.pipeline_run else []),
                         ("runs", self.runs or [])):
            for run_id in ids:  # they go into an MLflow search: no quotes, no spaces
                check(not _RUN_ID.fullmatch(str(run_id)), key,
                      f"{run_id!r} is not an MLflow run id (letters, digits, - and _)")


def compare(config: CompareConfig, context: Context) -> StageResult:
    """The comparison table of the finished fine-tune runs ``config`` selects, written as CSV,
    Markdown and PNG (and logged to the pipeline stage's run, if any); exit status 1 when no run
    is found.

    Runs whose predictions file is unusable are left out and named (see the module's text);
    a one-line ``ValueError`` when that leaves none, when ``--out`` may not be written (a file,
    or a folder holding anything but compare's own output), or when an ``--axes`` setting is
    one no run has."""
    import pandas as pd

    from ecgtransfer.comparison.report import (per_class_sentences, plot_axes, plot_cost,
                                               sentences, summary_text, write_comparison,
                                               write_figure, write_per_class)
    from ecgtransfer.comparison.statistics import (Bootstrap, axes_table, comparison_table,
                                                   left_out_text, paired_differences,
                                                   per_class)

    out = Path(config.out)
    if context.pipeline_run is None and context.stage_run is None:
        _check_out(out)  # a pipeline's compare writes into the stage folder the pipeline made
    from ecgtransfer.tracking import latest_pipeline_experiment

    tracker = context.tracker_for(config.tracking_uri)
    _check_store(tracker.uri)
    experiments = config.experiment
    if not experiments:
        experiments = [latest_pipeline_experiment(tracker) or "ecgtransfer-finetune"]
    if config.pipeline_run:
        try:
            tracker.get_run(config.pipeline_run)
        except ValueError as exc:
            raise ValueError(f"--pipeline-run {exc}") from None
    runs = finetune_runs(tracker, experiments, config.pipeline_run, run_ids=config.runs)
    problems: dict[str, str] = {}
    predictions = (run_predictions(tracker, runs, problems) if config.bootstrap
                   and not runs.empty else {})
    left = runs[runs["run_id"].isin(problems)].assign(
        reason=lambda d: d["run_id"].map(problems))
    runs = runs[~runs["run_id"].isin(problems)]
    if len(left) and runs.empty:
        named = [left_out_text(r) for _, r in left.sort_values("run_name").head(3).iterrows()]
        more = f"; and {len(left) - 3} more" if len(left) > 3 else ""
        raise ValueError(f"nothing left to compare: all {len(left)} fine-tune runs were left out "
                         f"for unusable predictions ({'; '.join(named)}{more})")
    sources = set(runs["source"]) if not runs.empty else set()
    if config.against != "scratch" and sources and config.against not in sources:
        known = sorted({str(x) for x in runs["source"] if x and str(x) != "none"})
        raise ValueError(f"--against {config.against}: no fine-tune run here transferred from it "
                         f"(sources: {', '.join(known) or 'none'})")
    notes = _notes(runs, left, predictions)
    for note in notes:
        log.warning("compare: %s", note)
    bootstrap = (Bootstrap(predictions, config.bootstrap, config.seed)
                 if config.bootstrap and not runs.empty else None)
    table = comparison_table(runs, bootstrap=bootstrap, left_out=left)
    summary = summary_text(table, notes)
    if table.empty:
        return StageResult(str(config.out), summary.rstrip("\n"), exit_code=1, details=table)
    along = axes_table(table, config.metric, config.axes) if config.axes else None
    pairs: list[dict] = []
    diffs = paired_differences(runs, config.metric, bootstrap=bootstrap, pairs=pairs,
                               against=config.against)
    said = sentences(diffs, config.metric)
    classes = (per_class(runs, bootstrap, config.against) if bootstrap is not None
               else pd.DataFrame())
    with _writing(out):
        paths = write_comparison(table, out, config.metric, pd.DataFrame(pairs), notes)
        if config.cost:
            paths.update(write_figure(table, out, "cost", plot_cost(table, config.metric)))
        if along is not None:
            paths.update(write_figure(along, out, "axes",
                                       plot_axes(along, config.metric, config.axes)))
        if not classes.empty:
            paths.update(write_per_class(classes, out))
        # an earlier comparison's files this one did not write (its --cost, --axes, pairs)
        # would read as this one's: removed once the new files are in place
        written = {Path(p).name for p in paths.values()}
        for name in _OUTPUTS:
            if name not in written:
                (out / name).unlink(missing_ok=True)
    if not classes.empty:
        said += per_class_sentences(classes)
    if context.stage_run is not None:
        for p in paths.values():
            context.stage_run.log_artifact(p)
    if context.pipeline_run is not None:
        _answer(context.pipeline_run, table, diffs, config.metric, said, paths, notes,
                config.against)
    summary += "".join(f"{line}\n" for line in said)
    summary += (f"{len(runs)} runs in {len(table)} groups"
                + (f" ({len(left)} left out)" if len(left) else "") + "; wrote "
                + ", ".join(str(p) for p in paths.values()))
    return StageResult(str(config.out), summary, details=table)


_RUN_ID = re.compile(r"[A-Za-z0-9_-]+")
_NOTE_LIMIT = 8000
"""The longest run description MLflow keeps (a tag value); a longer answer is shortened and
points at its whole text (``answer.md``)."""
_OUTPUTS = ("comparison.csv", "comparison.md", "comparison.png", "pairs.csv", "cost.csv",
            "cost.png", "axes.csv", "axes.png", "per_class.csv", "per_class.png")
"""Every file compare may write into its folder."""


def _notes(runs: pd.DataFrame, left: pd.DataFrame,
           predictions: dict[str, pd.DataFrame]) -> list[str]:
    """What a reader of the table must know: the runs left out and why; where the bootstrap
    is run for some runs, the runs whose group falls back to another interval; and runs whose
    logged metrics (what a group without predictions averages) are missing."""
    from ecgtransfer.comparison.statistics import left_out_text

    notes = [f"left out: {left_out_text(r)}" for _, r in left.iterrows()]
    for _, r in runs[~runs["run_id"].isin(predictions)].iterrows():
        if predictions:
            notes.append(f"no predictions: run {r['run_name']} ({r['run_id']}) logged no "
                         f"{_PREDICTIONS.get(r['evaluation'], 'predictions file')}; its group's "
                         "interval is a t over seeds (or its own), not the bootstrap over records")
        unset = [f"test_{m}" for m in METRICS if not np.isfinite(r[m])]
        if unset:
            notes.append(f"no {', '.join(unset)}: run {r['run_name']} ({r['run_id']}) logged "
                         "none (or NaN); its group's mean over seeds leaves it out")
    return notes


def _check_out(out: Path) -> None:
    """Refuse, touching nothing, an ``--out`` compare may not write: a file, a path under a
    file, or a folder holding anything but compare's own output."""
    from ecgtransfer.files import check_output_folder

    check_output_folder(out, "compare", legacy=("comparison.csv",))


def _check_store(uri: str) -> None:
    """Refuse an SQLite tracking store that does not exist: compare only reads runs, and
    MLflow would create an empty database at a mistyped name (a missing folder is the
    tracker's to refuse)."""
    m = re.fullmatch(r"sqlite:///(.+)", uri)
    path = Path(m.group(1)) if m else None
    if path is not None and path.parent.is_dir() and not path.exists():
        raise ValueError(f"--tracking-uri {uri}: no such MLflow database ({path}); pass the "
                         "store the fine-tune runs were logged to")


@contextlib.contextmanager
def _writing(out: Path):
    """An error writing into ``out`` as one line naming it (a full disk passes on as it is, for
    the command line's own message)."""
    from ecgtransfer.files import disk_full

    try:
        yield
    except OSError as exc:
        if disk_full(exc):
            raise
        raise ValueError(f"--out {out}: cannot write there ({exc.strerror or type(exc).__name__})"
                         ) from None


def _key(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _answer(run, table: pd.DataFrame, diffs: pd.DataFrame, metric: str, said: list[str],
            paths: dict[str, Path], notes: Sequence[str] = (), against: str = "scratch") -> None:
    """Put the answer on the pipeline's run: the mean test metric per group, task and fraction
    (``test_macro_auroc.<group>.f<fraction>.<task>``) and the difference to the baseline with its
    interval (``delta_macro_auroc...``; against a source, ``delta_vs_<source>_macro_auroc...``)
    as metrics, the table (``log_table``) and files as artifacts under ``comparison/``
    (``comparison_vs_<source>/``), the sentences with the Markdown table as ``answer.md`` there
    and, against scratch, as its description (cut to the sentences that fit, pointing at
    ``answer.md``, where MLflow's limit would cut it)."""
    from ecgtransfer.comparison.report import markdown
    from ecgtransfer.comparison.statistics import group_label

    def where(r) -> str:
        return f"{group_label(r)}.f{r['train_fraction']:g}.{r['task']}"

    delta = "delta" if against == "scratch" else f"delta_vs_{against}"
    folder = "comparison" if against == "scratch" else _key(f"comparison_vs_{against}")
    values = {}
    for _, r in table.iterrows():
        values[_key(f"test_{metric}.{where(r)}")] = r[metric]
    for _, r in diffs.iterrows():
        name = _key(f"{delta}_{metric}.{where(r)}")
        values.update({name: r["delta"], f"{name}_ci_low": r["delta_low"],
                       f"{name}_ci_high": r["delta_high"]})
    run.log_metrics(values)
    run.log_table(table, f"{folder}/comparison.json")
    for p in paths.values():
        run.log_artifact(p, folder)
    question = ("Does pretraining help?" if against == "scratch"
                else f"Does each source help beyond {against}?")
    head = f"**{question}** " + (
        "; ".join(said) if said else f"no {against} baseline to compare with") + "."
    answer = "\n".join([head, "", markdown(table, notes)])
    run.log_text(answer, f"{folder}/answer.md")
    if against == "scratch":
        if len(answer) > _NOTE_LIMIT:  # MLflow would cut the description short
            answer = "\n".join([head[:_NOTE_LIMIT - 200].rsplit("; ", 1)[0], "", "(The whole "
                                 f"answer, per class and with the table: {folder}/answer.md.)"])
        run.set_note(answer)


register_stage(Stage(
    "compare", CompareConfig, compare, command=("compare",), output="", reads="finetune",
    answers=True,
    help="table and plot of fine-tune runs: strategy, source, freezing, train fraction -> "
         "test metrics over seeds",
    description="Group finished fine-tune runs (a cross-validation counts once, with its pooled "
                "out-of-fold predictions) that differ only in seed and report test accuracy, "
                "macro AUROC and macro F1 as the mean over seeds with a 95% interval: a "
                "bootstrap over records and seeds from the runs' logged predictions (runs "
                "without them: t over seeds). Each transfer group is set against its scratch "
                "baseline on the same records, folds and seeds (paired), with the count of "
                "fold-seed pairs it won. Prints the table and the differences as sentences and "
                "writes comparison.csv, comparison.md, comparison.png and pairs.csv."))
