"""The evaluate stage: any model's outputs scored as a benchmark's official evaluation scores
them (the PhysioNet/CinC Challenge 2021: AUROC, AUPRC, accuracy, F-measure, challenge metric)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

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
    lines (names, values) and writes ``--scores`` / ``--class-scores`` when asked.

    Every path is checked before any work, each problem one line naming it: a folder that is a
    file, a ``--scores`` / ``--class-scores`` that is a folder, sits in no folder, or is one of
    the files being scored, an unreadable weights table."""
    from ecgtransfer.data.challenge2021 import read_folders
    from ecgtransfer.files import atomic_file
    from ecgtransfer.training.challenge import challenge_scores

    labels, outputs = Path(config.labels), Path(config.outputs)
    for name, folder in (("LABELS_DIR", labels), ("OUTPUTS_DIR", outputs)):
        if not folder.exists():
            raise ValueError(f"{name} {folder}: no such folder")
        if not folder.is_dir():
            raise ValueError(f"{name} {folder}: is a file, not a folder")
    targets = {flag: _target(flag, path, labels, outputs, config.weights)
               for flag, path in (("--scores", config.scores),
                                  ("--class-scores", config.class_scores)) if path}
    if len(targets) == 2 and targets["--scores"].resolve() == targets["--class-scores"].resolve():
        raise ValueError(f"--scores and --class-scores both name {config.scores}; give two files")
    scoring = _scoring(config.weights)
    try:
        files = read_folders(labels, outputs, scoring, subset=config.subset)
    except OSError as exc:  # a folder or header that cannot be listed or read
        raise ValueError(f"{exc.filename or labels}: cannot read ({exc.strerror})") from None
    values = challenge_scores(scoring, files.labels, files.outputs, files.scores)
    table = "AUROC,AUPRC,Accuracy,F-measure,Challenge metric\n" + _line(values)

    def row(name: str, key: str) -> str:
        return name + "," + ",".join(f"{v:.3f}" for v in values[key])

    texts = {"--scores": table + "\n",
             "--class-scores": "\n".join([f"Classes,{','.join(scoring.classes)}",
                                          row("AUROC", "auroc_classes"),
                                          row("AUPRC", "auprc_classes"),
                                          row("F-measure", "f_measure_classes")]) + "\n"}
    for flag, target in targets.items():
        with _writing(flag, target), atomic_file(target) as f:
            f.write(texts[flag])
    lines = [*files.problems, table,
             f"{len(files.records)} records, {len(scoring.classes)} scored classes"
             f" ({int(files.labels.any(axis=0).sum())} present in the labels)"]
    return StageResult(str(config.outputs), "\n".join(lines), details=values)


def _target(flag: str, path: str, labels: Path, outputs: Path, weights: str | None) -> Path:
    """``path`` as a file evaluate may write: not a folder, in a folder that exists, and none
    of the files it reads (a header or a signal of ``labels``, a record's output file, the
    weights table)."""
    target = Path(path)
    if target.is_dir():
        example = target / ("scores.csv" if flag == "--scores" else "class_scores.csv")
        raise ValueError(f"{flag} {target}: is a folder; give the name of the CSV file to write "
                         f"(e.g. {example})")
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"{flag} {target}: {folder} is not a folder to write it in")
    if target.exists():
        here = target.resolve().parent
        record = (labels / f"{target.stem}.hea").is_file()
        read = ((labels.is_dir() and here == labels.resolve()
                 and (target.suffix.lower() != ".csv" or record))
                or (outputs.is_dir() and here == outputs.resolve()
                    and target.suffix.lower() == ".csv" and record)
                or (weights is not None and target.resolve() == Path(weights).resolve()))
        if read:
            raise ValueError(f"{flag} {target}: is one of the files evaluate reads (a record's "
                             "header, signal or output file, or the weights table); choose "
                             "another file")
    return target


def _scoring(weights: str | None):
    """The weights table, any problem with it one line naming ``--weights``."""
    import csv

    from ecgtransfer.training.challenge import NORMAL_CLASS, load_scoring

    try:
        scoring = load_scoring(weights)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"--weights {weights}: not a readable CSV table ({type(exc).__name__})"
                         ) from None
    if NORMAL_CLASS not in scoring.classes:
        raise ValueError(f"--weights {weights}: no sinus rhythm class ({NORMAL_CLASS}), which "
                         "the challenge metric's zero point needs")
    return scoring


@contextlib.contextmanager
def _writing(flag: str, path: Path):
    """An error writing ``path`` as one line naming it (a full disk passes on as it is, for the
    command line's own message)."""
    from ecgtransfer.files import disk_full

    try:
        yield
    except OSError as exc:
        if disk_full(exc):
            raise
        raise ValueError(f"{flag} {path}: cannot write it ({exc.strerror or type(exc).__name__})"
                         ) from None


register_stage(Stage(
    "evaluate", EvaluateConfig, evaluate, command=("evaluate",), pipeline=False, output=None,
    help="score a model's outputs as a benchmark's official evaluation does",
    description="Score the output files of any model against the labels as the PhysioNet/CinC "
                "Challenge 2021's official evaluation does: macro AUROC and AUPRC, accuracy, "
                "macro F-measure and the challenge metric (the Challenge's weights.csv, "
                "equivalent codes merged, always-sinus-rhythm = 0, perfect = 1). Labels are the "
                "Challenge's .hea files ('#Dx:' or '# Dx:'); outputs one CSV per record."))
