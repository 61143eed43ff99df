"""Where pretrained trunks come from: ``--from`` references resolved to regressors, with the
pretrain runs they came from (for the fine-tune run's links).

A reference is a ``model.pt`` written by ``pretrain``, the folder holding it, a pretrain run
folder (every model in it), an MLflow model URI (``models:/...``, ``runs:/.../model``) or an
MLflow run id (the run's ``ecgtransfer.model_uri`` tag; a parent run stands for all its child
regressors). MLflow references are looked up in the caller's tracker's store, and their regressor is
read from the plain weights file logged beside the MLflow model: nothing is unpickled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ecgtransfer.tracking import Tracker
from ecgtransfer.models.regressor import IntervalRegressor, load_regressor
from ecgtransfer.tags import read_tags

__all__ = ["Source", "load_sources", "load_trunks", "LoadedModel", "load_model", "load_folds"]

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Source:
    """One pretrained regressor and where it came from."""

    ref: str
    regressor: IntervalRegressor
    run_id: str = ""
    model_uri: str = ""
    dataset: str = ""

    @property
    def name(self) -> str:
        """The regressor's targets, ``qrs`` or ``hr+pr+qrs+qt``."""
        return "+".join(self.regressor.meta.get("targets") or ["?"])


def _from_file(ref: str, path: Path, tracker: Tracker) -> Source:
    info = {}
    result = path.parent / "result.json"
    if result.exists():
        try:
            info = json.loads(result.read_text())
        except ValueError:
            info = {}
    regressor = load_regressor(path)
    run_id = str(info.get("run_id") or "")
    dataset = (regressor.meta.get("dataset")
               or read_tags(tracker.run_tags(run_id)).get("dataset", ""))
    return Source(ref, regressor, run_id, str(info.get("model_uri") or ""), dataset)


def _load_uri(ref: str, uri: str, tracker: Tracker) -> IntervalRegressor:
    """The regressor logged as ``uri``, read from the plain weights file logged beside the
    MLflow model (never by unpickling the logged model)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = tracker.download_plain_model(uri, tmp)
            return load_regressor(path)
        except ValueError as exc:
            raise ValueError(f"--from {ref}: {exc}") from None


def _from_run(run_id: str, tracker: Tracker) -> list[Source]:
    try:
        run = tracker.get_run(run_id)
    except ValueError as exc:
        raise ValueError(f"--from {exc}") from None
    runs = [run]
    if not run.tag("model_uri"):
        runs = [r for r in tracker.child_runs(run) if r.tag("model_uri")]
        if not runs:
            raise ValueError(f"--from {run_id}: the run holds no pretrained regressor (not a "
                             "finished pretrain run?)")
    return [Source(run_id, _load_uri(run_id, r.tag("model_uri"), tracker), r.run_id, r.tag("model_uri"),
                   r.tag("dataset")) for r in runs]


def load_sources(ref: str, *, tracker: Tracker) -> list[Source]:
    """The pretrained regressor(s) ``ref`` names (see the module docstring); MLflow references
    are looked up in ``tracker``'s store."""
    path = Path(ref)
    if path.is_dir() and not (path / "model.pt").exists():
        found = sorted(path.glob("*/model.pt"))
        if not found:
            raise ValueError(f"--from {ref}: the folder holds no model.pt (an unfinished "
                             "pretrain run?)")
        return [_from_file(ref, p, tracker) for p in found]
    if path.is_dir():
        path = path / "model.pt"
    if path.is_file():
        return [_from_file(ref, path, tracker)]
    if ref.startswith(("models:/", "runs:/")):
        run_id = ref.split("/")[1] if ref.startswith("runs:/") else tracker.logged_model_run(ref)
        dataset = read_tags(tracker.run_tags(run_id)).get("dataset", "")
        return [Source(ref, _load_uri(ref, ref, tracker), run_id, ref, dataset)]
    if _RUN_ID.match(ref):
        return _from_run(ref, tracker)
    raise ValueError(f"--from {ref}: not a model.pt, a pretrain folder, a model URI or a run id")


def load_trunks(refs: Sequence[str], *, strategy: str, model: str | None,
                leads: Sequence[str], where: str, tracker: Tracker) -> list[Source]:
    """The pretrained regressors ``refs`` name (each as :func:`load_sources` reads it), checked
    for a fine-tune: one trunk for ``single``, two or more for ``combined``, each of the
    architecture ``model`` (when given) and taking only leads among ``leads`` (the store at
    ``where``). Each problem is a one-line error naming the reference."""
    from ecgtransfer.config import ConfigError

    sources = [s for ref in refs for s in load_sources(ref, tracker=tracker)]
    n = len(sources)
    if strategy == "single" and n != 1:
        names = ", ".join(f"{s.name} ({s.ref})" for s in sources)
        raise ConfigError(f"--from: strategy single takes one trunk, and {n} were given "
                          f"({names}); name one, or use --strategy combined", "sources")
    if strategy == "combined" and n < 2:
        raise ConfigError(f"--from: strategy combined takes two or more trunks, and {n} was "
                          "given; use --strategy single", "sources")
    for s in sources:
        meta = s.regressor.meta
        if model and meta["model"] != model:
            raise ConfigError(f"--from {s.ref}: its trunk is a {meta['model']}, not the "
                              f"model {model} asked for", "model")
        lacking = [lead for lead in meta["leads"] if lead not in leads]
        if lacking:
            raise ValueError(f"--from {s.ref}: the trunk takes lead(s) {', '.join(lacking)}, "
                             f"which {where} lacks")
    return sources


@dataclass
class LoadedModel:
    """A trained model of either kind and where it came from.

    Attributes
    ----------
    ref : str
        The reference it was loaded by.
    model : torch.nn.Module
        A :class:`~ecgtransfer.models.classifier.TransferClassifier` or an
        :class:`~ecgtransfer.models.regressor.IntervalRegressor`, in eval mode.
    kind : str
        ``"classifier"`` or ``"regressor"``.
    run_id : str
        The MLflow run that made it ("" when unknown: a bare file).
    folder : Path, optional
        The run folder it was read from (its ``test_predictions.csv``), when it was a file.
    """

    ref: str
    model: object
    kind: str
    run_id: str = ""
    folder: Path | None = None

    @property
    def outputs(self) -> list[str]:
        """Its outputs' names: the classes, or the intervals."""
        meta = self.model.meta
        return list(meta["classes"] if self.kind == "classifier" else meta["targets"])


def _read_model(ref: str, path: Path):
    """The model in ``path`` and its kind, by the format the checkpoint declares."""
    from ecgtransfer.files import load_tensors
    from ecgtransfer.models.classifier import CLASSIFIER_FORMAT, load_classifier
    from ecgtransfer.models.regressor import REGRESSOR_FORMAT

    loaders = {REGRESSOR_FORMAT: (load_regressor, "regressor"),
               CLASSIFIER_FORMAT: (load_classifier, "classifier")}
    try:
        state = load_tensors(path)
        fmt = state.get("format") if isinstance(state, dict) else None
        if fmt not in loaders:
            raise ValueError(f"{path} is neither a pretrained regressor nor a fine-tuned "
                             "classifier")
        load, kind = loaders[fmt]
        return load(path), kind
    except ValueError as exc:
        text = str(exc)
        raise ValueError(f"--model {text}" if text.startswith(str(path)) and str(path) == ref
                         else f"--model {ref}: {text}") from None


def load_model(ref: str, *, tracker: Tracker) -> LoadedModel:
    """The one trained model ``ref`` names: a ``model.pt`` (of ``pretrain`` or ``finetune``), its
    run folder, an MLflow model URI or a run id (a run that logged a model). Nothing is
    unpickled.

    Raises
    ------
    ValueError
        One line naming ``ref``: not found, several models (a pretrain folder of several
        regressors, a cross-validation's parent run: pass one of them), or not a model.
    """
    import tempfile

    path = Path(ref)
    if path.is_dir() and not (path / "model.pt").exists():
        found = sorted(path.glob("*/model.pt"))
        if not found:
            raise ValueError(f"--model {ref}: the folder holds no model.pt (an unfinished run?)")
        if len(found) > 1:
            raise ValueError(f"--model {ref}: the folder holds {len(found)} models; pass one: "
                             + ", ".join(str(p.parent) for p in found[:4]))
        path = found[0]
    if path.is_dir():
        path = path / "model.pt"
    if path.is_file():
        model, kind = _read_model(ref, path)
        info = {}
        try:
            info = json.loads((path.parent / "result.json").read_text())
        except (OSError, ValueError):
            pass
        return LoadedModel(ref, model, kind, str(info.get("run_id") or ""), path.parent)
    if ref.startswith(("models:/", "runs:/")):
        run_id = ref.split("/")[1] if ref.startswith("runs:/") else tracker.logged_model_run(ref)
        uri = ref
    elif _RUN_ID.match(ref):
        try:
            run = tracker.get_run(ref)
        except ValueError as exc:
            raise ValueError(f"--model {exc}") from None
        uri = run.tag("model_uri")
        if not uri:
            raise ValueError(f"--model {ref}: the run logged no model (a cross-validation's or "
                             "a search's parent run? pass one of its child runs)")
        run_id = ref
    else:
        raise ValueError(f"--model {ref}: not a model.pt, a run folder, a model URI or a run id")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            file = tracker.download_plain_model(uri, tmp)
        except ValueError as exc:
            text = str(exc)
            raise ValueError(f"--model {text}" if text.startswith(ref) else
                             f"--model {ref}: {text}") from None
        model, kind = _read_model(ref, file)
    return LoadedModel(ref, model, kind, run_id)


def load_folds(ref: str, *, tracker: Tracker) -> tuple[list[LoadedModel], str] | None:
    """The fold models of a cross-validated fine-tune's run folder (``fold1/model.pt`` ...), in
    fold order, with the cross-validation's parent MLflow run id ("" when unknown); None when
    ``ref`` is not such a folder."""
    path = Path(ref)
    if not path.is_dir() or (path / "model.pt").exists():
        return None
    folds = sorted((p for p in path.glob("fold*/model.pt") if p.parent.name[4:].isdigit()),
                   key=lambda p: int(p.parent.name[4:]))
    if not folds:
        return None
    parent = ""
    for name in ("parent_run.json", "result.json"):
        try:
            parent = str(json.loads((path / name).read_text()).get("run_id") or "")
        except (OSError, ValueError, AttributeError):
            continue
        if parent:
            break
    return [load_model(str(p.parent), tracker=tracker) for p in folds], parent
