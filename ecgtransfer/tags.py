"""The run tags of ecgtransfer: every ``ecgtransfer.<name>`` tag a run may carry, what it means,
its writer and its reader.

A tag is how one stage tells another (and a person in the MLflow UI) what a run was: compare
groups fine-tune runs by them, a search finds its trials by them, ``--from`` finds a trunk's
model by them. So each name is declared here once with its meaning, the tracking layer refuses
to write or read an ``ecgtransfer.`` tag that is not declared (a typo would otherwise be a tag
nobody reads, or a read that always finds nothing), and stages write them with
:func:`tag_values` and read them with :func:`read_tags` or ``RunRecord.tag``.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["PREFIX", "VOCABULARY", "key", "tag_values", "read_tags", "check_keys"]

PREFIX = "ecgtransfer."

VOCABULARY: dict[str, str] = {
    # every run a stage makes
    "stage": "the kind of run: a stage's name (pretrain, finetune, tune ...), pipeline or "
             "pipeline-stage",
    "code_version": "the ecgtransfer version (and git commit, when known) that made the run",
    "pipeline": "the pipeline file's name, on every run a pipeline made",
    "pipeline_run": "the id of the pipeline's own run, on every run a pipeline made",
    # a pipeline stage's run
    "stage_kind": "a pipeline stage's kind (its `stage:`)",
    "stage_name": "a pipeline stage's name in the file",
    "output": "a pipeline stage's output folder",
    # training runs (pretrain, finetune)
    "dataset": "the name of the store the model was trained on (deepfake, ptbxl, ...)",
    "store": "the store's folder",
    "store_hash": "a hash of the store's index: which records, as they were",
    "model": "the architecture(s) of the trained network",
    "model_uri": "where the logged model is (models:/..., runs:/...)",
    "stopped_early": "true when early stopping ended the training",
    # pretrain
    "targets": "the intervals a regressor was trained to measure",
    "labels": "the label file the targets came from",
    "labeller_config_hash": "a hash of the labeller settings that made the labels",
    # score
    "scored_models": "the regressors a score run measured, as NAME=REF (one per seed)",
    "truth": "what a score run measured the regressors against: a label file, or the "
             "cardiologists' marks of LUDB records (ludb:FOLDER)",
    # finetune: what the run was (compare groups runs by these)
    "task": "the diagnostic task (superdiagnostic, challenge2021, ...)",
    "split": "how records were split into train, validation and test",
    "cv": "the number of cross-validation folds (absent: one test split)",
    "fold": "the fold (1-based) a fold run of a cross-validation held out",
    "evaluation": "test (one test split), cv (a cross-validation's pooled out-of-fold "
                  "evaluation) or fold (one of its folds)",
    "strategy": "scratch, single or combined",
    "source": "the dataset(s) the transferred trunks were pretrained on; none from scratch",
    "source_targets": "the intervals of the transferred trunks",
    "source_refs": "the --from references the trunks were loaded from",
    "source_runs": "the MLflow runs of the transferred trunks",
    "source_models": "the model URIs of the transferred trunks",
    "architecture_from": "for a scratch run, the runs whose architecture it copied (not their "
                         "weights)",
    "trunks": "the number of trunks of the classifier",
    "freeze": "full, frozen or the freezing schedule of the trunks",
    "train_fraction": "the fraction of the training records used",
    "setting": "a hash of every other fine-tune setting: runs equal in it differ only in seed",
    "seed": "the run's seed",
    "macro_over": "the classes the macro metrics average over",
    # tune
    "searched_stage": "the stage a search searches",
    "study": "the Optuna study's name",
    "search_run": "the id of the search's own run, on each of its trials",
    "trial": "the trial's number in the study",
    "trial_state": "how a trial ended: complete, pruned, failed, interrupted",
    "best_trial": "the number of the search's best trial",
    "best_config_hash": "the config hash of the search's best trial",
}
"""Every ``ecgtransfer.<name>`` tag, with what it means."""


def key(name: str) -> str:
    """``ecgtransfer.<name>``; a ``ValueError`` for a name that is not in :data:`VOCABULARY`."""
    if name not in VOCABULARY:
        raise ValueError(f"{name!r} is not an ecgtransfer tag (known: {', '.join(VOCABULARY)})")
    return PREFIX + name


def tag_values(**values: Any) -> dict[str, Any]:
    """The writer: ``{ecgtransfer.<name>: value}`` for each named value (None is left out);
    the tracking layer writes each value as text (``1.0`` as ``1``, as params are).

    >>> tag_values(stage="finetune", seed=0, cv=None)
    {'ecgtransfer.stage': 'finetune', 'ecgtransfer.seed': 0}
    """
    return {key(name): value for name, value in values.items() if value is not None}


def read_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The reader: a run's ``ecgtransfer.`` tags by their short names."""
    return {k[len(PREFIX):]: v for k, v in tags.items()
            if k.startswith(PREFIX) and k[len(PREFIX):] in VOCABULARY}


def check_keys(tags: Mapping[str, Any]) -> None:
    """A ``ValueError`` naming the first ``ecgtransfer.`` key that is not declared."""
    for k in tags:
        if k.startswith(PREFIX):
            key(k[len(PREFIX):])
