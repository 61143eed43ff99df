"""Stages: every capability of ecgtransfer as a typed config plus one ``run(config, context)``.

A stage is written once and driven from every entry point: the CLI builds its subcommand and
flags from the stage's config dataclass (:mod:`ecgtransfer.cli`), a pipeline validates its YAML
against the same class and runs the same function (:mod:`ecgtransfer.pipeline`), and Python
callers use it directly::

    from ecgtransfer.stages import Context, get_stage
    stage = get_stage("pretrain")
    result = stage.run(stage.config(store="stores/deepfake", targets=["qrs"]), Context())

Adding a stage is one module that calls :func:`register_stage` and its name in
:data:`_BUILTIN` (see docs/architecture.md).
"""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Stage", "Context", "StageResult", "register_stage", "get_stage", "list_stages"]

_log = logging.getLogger("ecgtransfer")

_BUILTIN = ("prepare", "verify", "fetch", "info", "splits", "merge", "synth", "augment", "label",
            "pretrain", "score", "finetune", "tune", "explain", "compare", "evaluate", "models",
            "export", "ui")
"""The stage modules of this package, in the order of the data's flow (and of ``--help``)."""


@dataclass
class Context:
    """How a stage is being run: what the caller (CLI or pipeline) decides, not the config.

    Attributes
    ----------
    progress : bool
        Progress bars (a terminal) or not (a log file, a test).
    resume : bool
        Continue an interrupted run in the config's output folder; a finished one is reused.
    parent_run : str, optional
        The MLflow run the stage's own runs nest under (a pipeline's or a pipeline stage's).
    stage_run : object, optional
        The :class:`ecgtransfer.tracking.Run` a pipeline opened for this stage, for a stage
        that logs artifacts to it (compare).
    pipeline_run : object, optional
        The pipeline's own :class:`ecgtransfer.tracking.Run`, for a stage whose result is the
        pipeline's answer (compare).
    tags : dict
        Extra MLflow tags of every run the stage makes (which pipeline it belongs to).
    say : callable
        Tells the person running the stage something at once, before the stage returns (the
        link of a server it keeps running); the CLI prints it, others log it.
    callbacks : list
        Training-loop callbacks (:class:`ecgtransfer.training.callbacks.Callback`) added to
        every model a training stage trains, after its own (the run's metrics are logged
        first): a search's pruner, which may stop the model by raising
        :class:`ecgtransfer.tracking.EndedEarly`.
    tracker : ecgtransfer.tracking.Tracker, optional
        The MLflow store the stage logs to and reads runs from (a pipeline's, a search's).
        None: the one its config's ``tracking_uri`` names (see :meth:`tracker_for`).
    """

    progress: bool = True
    resume: bool = False
    parent_run: str | None = None
    stage_run: Any = None
    pipeline_run: Any = None
    tags: dict[str, str] = field(default_factory=dict)
    say: Callable[[str], None] = field(default=lambda text: _log.info("%s", text))
    callbacks: list = field(default_factory=list)
    tracker: Any = None

    def tracker_for(self, uri: str | None):
        """The :class:`~ecgtransfer.tracking.Tracker` a stage logs to: the caller's, else one
        for ``uri`` (its config's ``tracking_uri``). A config naming another store than the
        caller's tracker is a one-line ``ConfigError``: its runs would be split between two."""
        from ecgtransfer.config import ConfigError
        from ecgtransfer.tracking import Tracker

        if self.tracker is None:
            return Tracker(uri)
        if uri is not None and Tracker(uri) != self.tracker:
            raise ConfigError(f"tracking_uri: {uri}, but this stage is run for "
                              f"{self.tracker.uri}; leave tracking_uri unset to log there",
                              "tracking_uri")
        return self.tracker


@dataclass
class StageResult:
    """What a stage left.

    Attributes
    ----------
    output : str
        Its main output (a store, a label file, a run folder): what ``${stage}`` means in a
        pipeline.
    summary : str
        What it did, for a person: the CLI prints it.
    outputs : dict
        Named outputs handed to a later stage's settings of the same name when that stage
        refers to this one (a label stage hands its ``labels`` file to ``pretrain``).
    run_ids : list of str
        The MLflow runs it made (a compare stage reads a finetune stage's).
    exit_code : int
        The CLI's exit status (1: finished, but with something the user asked to fail on).
    details : object
        The stage's own result object, for Python callers (pretrain: a list of
        ``PretrainResult``; finetune: a ``FinetuneResult``; compare: the comparison table).
    trained : list
        The models a training stage trained or reused, each a
        :class:`~ecgtransfer.stages.trained.TrainingResult` (run folder, MLflow run, best
        epoch): what a caller that drives any training stage reads (a search).
    """

    output: str
    summary: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    exit_code: int = 0
    details: Any = None
    trained: list = field(default_factory=list)


@dataclass(frozen=True)
class Stage:
    """One registered stage.

    Attributes
    ----------
    name : str
        Its name in pipeline files (``stage: pretrain``).
    config : type
        Its frozen config dataclass; fields declared with :func:`ecgtransfer.config.setting`.
    run : callable
        ``run(config, context) -> StageResult``.
    help : str
        One line, for the command list.
    description : str
        A paragraph, for ``--help``.
    command : tuple of str
        Its CLI words: ``("pretrain",)``, ``("data", "prepare")``.
    pipeline : bool
        Usable in pipeline files.
    output : str, optional
        In a pipeline, the stage's ``out`` setting is ``<stage folder>/<output>`` ("" for the
        folder itself); None when the stage has no output of its own.
    pipeline_run : bool
        In a pipeline, the stage gets an MLflow run of its own under the pipeline's (False for a
        stage whose own runs nest under the pipeline's directly).
    resume_flag : bool
        The CLI offers ``--resume`` (stages that refuse a used output folder without it).
    version : callable, optional
        The version of the stage's algorithm: part of a pipeline stage's fingerprint, so a
        changed algorithm never reuses old outputs.
    reads : str, optional
        The stage kind whose MLflow runs this stage reads in a pipeline (its ``stages`` setting
        names them; default every earlier one).
    hands : tuple of str
        Named outputs (:attr:`StageResult.outputs`) the stage hands to later stages.
    actions : dict
        Extra CLI flags that print something and exit: ``flag -> (help, callable)``.
    flags_from : tuple of str
        Stages whose flags this stage's command takes too, into its config's ``rest`` setting
        (a search takes the flags of the stages it searches).
    answers : bool
        Its summary is the pipeline's answer (compare's table and sentences): ``ecgtransfer
        run`` prints it whole at the end, and its exit status 1 (nothing to answer yet) does
        not stop the pipeline.
    """

    name: str
    config: type
    run: Callable[[Any, Context], StageResult]
    help: str
    description: str
    command: tuple[str, ...]
    pipeline: bool = True
    output: str | None = ""
    pipeline_run: bool = True
    resume_flag: bool = False
    version: Callable[[], str] | None = None
    reads: str | None = None
    hands: tuple[str, ...] = ()
    actions: dict[str, tuple[str, Callable[[], str]]] = field(default_factory=dict)
    flags_from: tuple[str, ...] = ()
    answers: bool = False

    def settings(self) -> list:
        """The config's fields (``dataclasses.Field``), in order."""
        import dataclasses

        return list(dataclasses.fields(self.config))

    def algorithm_version(self) -> str:
        """What made the stage's outputs: the package version, the hash of the stage's code
        (:meth:`code_hashes`) and its algorithm's own version (the labeller's, NeuroKit2's, the
        generator's package)."""
        from ecgtransfer import __version__

        own = self.version() if self.version is not None else ""
        code = f"{__version__}/code {code_digest(self.code_hashes())}"
        return f"{code}/{own}" if own else code

    def code_hashes(self) -> dict[str, str]:
        """Each module the stage's code may run, with a hash of its code: the stage's module
        (in the package or not), every ``ecgtransfer`` module it imports (at its top or
        inside a function), and theirs in turn, plus the modules of the stages it runs
        (``flags_from``: a search runs the stages it searches). Comments, docstrings and
        layout are not code: editing them changes nothing."""
        modules = {self.run.__module__}
        for name in self.flags_from:
            modules.add(get_stage(name).run.__module__)
        return {m: _module_hash(m) for m in sorted(_closure(frozenset(modules)))}


_REGISTRY: dict[str, Stage] = {}


# ---- what code a stage runs -----------------------------------------------------------------
def code_digest(hashes: dict[str, str]) -> str:
    """12 hex digits over ``{module: hash}`` (:meth:`Stage.code_hashes`)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:12]


def _module_file(module: str):
    """The source file of a module: an ``ecgtransfer`` module's, or a stage module's outside
    the package (a stage a user registers from their own module); None for anything else."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]  # the ecgtransfer package folder
    parts = module.split(".")
    if parts[0] != "ecgtransfer":
        import importlib.util

        try:
            origin = getattr(importlib.util.find_spec(module), "origin", None)
        except (ImportError, ValueError):
            return None
        return Path(origin) if origin and origin.endswith(".py") else None
    base = root.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=None)
def _parsed(module: str):
    import ast

    path = _module_file(module)
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def code_hash(source: str) -> str:
    """A hash of Python ``source``'s code: its syntax tree without docstrings, so comments,
    docstrings and layout do not count."""
    import ast

    return _tree_hash(ast.parse(source))


def _tree_hash(tree) -> str:
    import ast
    import copy
    import hashlib

    tree = copy.deepcopy(tree)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _module_hash(module: str) -> str:
    return _tree_hash(_parsed(module))


@functools.lru_cache(maxsize=None)
def _imports(module: str) -> frozenset[str]:
    """The ``ecgtransfer`` modules ``module`` imports anywhere in its code."""
    import ast

    found = set()
    package = module if _module_file(module).name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(_parsed(module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")  # import a.b.c runs a, a.b and a.b.c
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    # ecgtransfer's own modules: a third-party library's code is its version's, not ours
    return frozenset(m for m in found if m.split(".")[0] == "ecgtransfer"
                     and _module_file(m) is not None and m != module)


@functools.lru_cache(maxsize=None)
def _closure(modules: frozenset[str]) -> frozenset[str]:
    seen: set[str] = set()
    todo = [m for m in modules if _module_file(m) is not None]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_imports(m) - seen)
    return frozenset(seen)


def register_stage(stage: Stage) -> Stage:
    """Add ``stage`` to the registry (a stage module calls this once at import)."""
    if stage.name in _REGISTRY and _REGISTRY[stage.name] is not stage:
        raise ValueError(f"stage {stage.name!r} is already registered")
    _REGISTRY[stage.name] = stage
    return stage


def _load() -> None:
    for name in _BUILTIN:
        importlib.import_module(f"ecgtransfer.stages.{name}")


def list_stages() -> list[Stage]:
    """Every registered stage, in the order of the data's flow."""
    _load()
    order = {name: i for i, name in enumerate(_BUILTIN)}
    return sorted(_REGISTRY.values(), key=lambda s: order.get(s.name, len(order)))


def get_stage(name: str) -> Stage:
    """The stage registered as ``name``; an unknown name is a ValueError naming the known ones."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r} (known: "
                         f"{', '.join(s.name for s in list_stages())})") from None

