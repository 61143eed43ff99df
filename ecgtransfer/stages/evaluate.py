"""The evaluate stage: any model's outputs scored as a benchmark's official evaluation scores
them (the PhysioNet/CinC Challenge 2021: AUROC, AUPRC, accuracy, F-measure, challenge metric)."""

from __future__ import annotations

from dataclasses import dataclass

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

__all__ = ["EvaluateConfig", "evaluate"]


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """Settings of ``ecgtransfer evaluate``."""

    benchmark: str = setting("challenge2021", "the benchmark: the PhysioNet/CinC Challenge 2021",
                             choices=("challenge2021",), positional=True, metavar="BENCHMARK")
    labels: str = setting("", "folder of the Challenge's header files (.hea with '#Dx:')",
                          positional=True, role="input", metavar="LABELS_DIR")
    outputs: str = setting("", "folder of one output CSV per record (<record>.csv: classes, "
                           "decisions, probabilities)", positional=True, role="input",
                           metavar="OUTPUTS_DIR")
    scores: str | None = setting(None, "also write the scores to this CSV (the official "
                                 "evaluation's scores.csv)", metavar="FILE")
    class_scores: str | None = setting(None, "also write AUROC, AUPRC and F-measure per class "
                                       "to this CSV", metavar="FILE")
    weights: str | None = setting(None, "the Challenge's weights.csv (default: the copy "
                                  "shipped in data_manifests/)", metavar="FILE")
    subset: bool = setting(False, "score only the records that have an output file (a "
                           "fine-tune's test split against the whole labels folder); without "
                           "it, a header without its output file is an error, as officially")

    def __post_init__(self) -> None:
        check(self.benchmark != "challenge2021", "benchmark",
              f"{self.benchmark!r}: only challenge2021 is known")
        check(not self.labels, "labels", "give the folder of header files")
        check(not self.outputs, "outputs", "give the folder of output files")


def _line(values: dict) -> str:
    return ",".join(f"{values[k]:.3f}" for k in ("auroc", "auprc", "accuracy", "f_measure",
                                                  "challenge_metric"))


def evaluate(config: EvaluateConfig, context: Context) -> StageResult:
    """Score ``config.outputs`` against ``config.labels``; prints the official evaluation's two
    lines (names, values) and writes ``--scores`` / ``--class-scores`` when asked."""
    from ecgtransfer.data.challenge2021 import read_folders
    from ecgtransfer.files import atomic_file
    from ecgtransfer.training.challenge import challenge_scores, load_scoring

    scoring = load_scoring(config.weights)
    files = read_folders(config.labels, config.outputs, scoring, subset=config.subset)
    values = challenge_scores(scoring, files.labels, files.outputs, files.scores)
    table = "AUROC,AUPRC,Accuracy,F-measure,Challenge metric\n" + _line(values)
    if config.scores:
        with atomic_file(config.scores) as f:
            f.write(table + "\n")
    if config.class_scores:
        def row(name: str, key: str) -> str:
            return name + "," + ",".join(f"{v:.3f}" for v in values[key])

        with atomic_file(config.class_scores) as f:
            f.write("\n".join([f"Classes,{','.join(scoring.classes)}",
                               row("AUROC", "auroc_classes"), row("AUPRC", "auprc_classes"),
                               row("F-measure", "f_measure_classes")]) + "\n")
    lines = [*files.problems, table,
             f"{len(files.records)} records, {len(scoring.classes)} scored classes"
             f" ({int(files.labels.any(axis=0).sum())} present in the labels)"]
    return StageResult(str(config.outputs), "\n".join(lines), details=values)


register_stage(Stage(
    "evaluate", EvaluateConfig, evaluate, command=("evaluate",), pipeline=False, output=None,
    help="score a model's outputs as a benchmark's official evaluation does",
    description="Score the output files of any model against the labels as the PhysioNet/CinC "
                "Challenge 2021's official evaluation does: macro AUROC and AUPRC, accuracy, "
                "macro F-measure and the challenge metric (the Challenge's weights.csv, "
                "equivalent codes merged, always-sinus-rhythm = 0, perfect = 1). Labels are the "
                "Challenge's .hea files ('#Dx:' or '# Dx:'); outputs one CSV per record."))
