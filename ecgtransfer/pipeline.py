"""Whole experiments as YAML pipelines: registered stages run in order under one MLflow parent run.

A pipeline file::

    name: quickstart
    experiment: quickstart            # MLflow experiment (default: the name)
    work: runs/quickstart             # where stage outputs go (default runs/<name>)
    stages:
      - name: deepfake                # any name, unique
        stage: synth                  # a registered stage (ecgtransfer.stages.list_stages())
        n: 256                        # the stage's settings: its config's fields
      - name: labels
        stage: label
        store: ${deepfake}            # ${stage} is that stage's output
      - name: pretrain
        stage: pretrain
        store: ${other.yaml:labels}   # a stage of another pipeline file (beside this one)
      ...

A reference ``${FILE:stage}`` names a stage of another pipeline file (a path relative to this
file's folder): its output as that file defines it now, which must have finished (``ecgtransfer
run FILE`` first); its fingerprint enters this pipeline's, so a change there is a change here.
This is how a labelled store or a pretrain run is reused without pasting its hashed folder.

Each stage's settings are checked against the stage's own config class (the one its CLI command
builds its flags from), the whole file before any work; an error names the file and line. A
stage may also take ``runs`` (a list of settings mappings) and ``grid`` (setting -> list of
values): it then runs once per entry of ``runs`` crossed with ``grid``. A grid entry that is a
mapping holds axes of a mapping setting: ``model_kwargs: {width: [16, 32, 64]}`` (or the dotted
``model_kwargs.width: [...]``) varies one key and keeps the setting's others.

Each stage's output lives in ``WORK/<stage name>/<fingerprint>/``; the runs of a stage with
``runs``/``grid`` live in ``WORK/<stage name>/runs/<hash of that run's settings>/``, so a grid
that grows runs only what is new. The fingerprint hashes the
stage's kind, settings, the ecgtransfer version and the stage's algorithm version (the labeller's,
the generator's) with the fingerprints of the stages it refers to, so a stage whose inputs,
settings and code are unchanged is reused (its ``stage.json`` says it finished), a changed one gets
a new folder (the old one stays), and a killed pipeline re-run continues the stage it was in
(every stage is resumable).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import re
import shutil
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ecgtransfer.config import ConfigError, apply_overrides, from_dict, read_yaml
from ecgtransfer.stages import Context, Stage, StageResult as _Result, get_stage, list_stages
from ecgtransfer.tags import tag_values

__all__ = ["PipelineError", "Pipeline", "StageSpec", "StageResult", "load_pipeline",
           "run_pipeline"]

log = logging.getLogger(__name__)

_REF = re.compile(r"\$\{([^}]*)\}")
_TOP_KEYS = ("name", "description", "experiment", "work", "tracking_uri", "stages")
_EXPAND = ("runs", "grid")
_PLACEHOLDER = "<output>"


class PipelineError(ValueError):
    """A pipeline file that cannot run; the message names the file and line."""


class _Circle(PipelineError):
    """Pipeline files that refer to each other in a circle: said once, where it closes."""


NAME = re.compile(r"[A-Za-z0-9_-]+")
"""What a stage name (and a pipeline name that names the work folder) may be: it becomes a
folder under the work folder, so nothing else (``/``, ``..``, a leading ``/``) is accepted."""
NAME_RULE = "use letters, digits, '_' and '-' only"


@dataclass
class StageSpec:
    """One stage as written: its settings may hold ``${stage}`` references."""

    name: str
    kind: str
    settings: dict[str, Any]
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)

    @property
    def stage(self) -> Stage:
        return get_stage(self.kind)

    def where(self, key: str | None = None) -> int:
        return self.key_lines.get(key, self.line) if key else self.line


@dataclass
class Pipeline:
    """A checked pipeline file."""

    path: Path
    name: str
    experiment: str
    work: Path
    tracking_uri: str | None
    stages: list[StageSpec]
    description: str = ""


@dataclass
class StageResult:
    """What a pipeline stage left: its output path, fingerprint, run id(s), and whether it was
    reused."""

    name: str
    kind: str
    output: str
    fingerprint: str
    reused: bool
    run_ids: list[str] = field(default_factory=list)
    summary: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    basis: dict[str, Any] = field(default_factory=dict)
    """What the fingerprint was made of (settings, code hashes, algorithm version, upstream
    fingerprints, number of runs), so that ``--plan`` can say why a stage runs again."""


# ---- reading and checking ---------------------------------------------------------------
def _stage_lines(path: Path) -> list[tuple[int, dict[str, int]]]:
    """For each stage of the file: its line and its keys' lines."""
    import yaml

    try:
        node = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return []
    out = []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "stages" and isinstance(value, yaml.SequenceNode):
                for item in value.value:
                    keys = {}
                    if isinstance(item, yaml.MappingNode):
                        keys = {k.value: k.start_mark.line + 1 for k, _ in item.value}
                    out.append((item.start_mark.line + 1, keys))
    return out


def _apply_overrides(data: dict, overrides: Sequence[str], path: Path) -> dict:
    """``STAGE.KEY=VALUE`` (value as YAML) sets a stage's setting; ``KEY=VALUE`` a top-level
    one; ``STAGE.grid.seed=[0]`` one key of a mapping setting."""
    from ecgtransfer.config import parse_override

    stages = data.get("stages") if isinstance(data.get("stages"), list) else []
    by_name = {s.get("name"): s for s in stages if isinstance(s, dict)}
    top: list[str] = []
    for item in overrides:
        try:
            parts, _ = parse_override(item)
        except ConfigError as exc:
            raise PipelineError(str(exc)) from None
        if len(parts) == 1:
            top.append(item)
            continue
        if parts[0] not in by_name:
            raise PipelineError(f"--set {item!r}: {path} has no stage named {parts[0]!r} (its "
                                f"stages: {', '.join(str(n) for n in by_name)})")
        key = item.split(".", 1)[1]
        try:
            by_name[parts[0]].update(apply_overrides(by_name[parts[0]], [key]))
        except ConfigError as exc:
            raise PipelineError(f"--set {item!r}: {str(exc).split(': ', 1)[-1]}") from None
    try:
        return apply_overrides(data, top)
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None


def load_pipeline(path: str | Path, overrides: Sequence[str] = (), *,
                  _chain: tuple[Path, ...] = ()) -> Pipeline:
    """Read and check a pipeline file (and ``--set`` overrides) before any work.

    Raises
    ------
    PipelineError
        ``FILE:LINE: ...`` for an unknown key or stage, a bad setting, a reference to a stage
        that does not exist (or comes later), or an input path that does not exist.
    """
    path = Path(path)
    _chain = (*_chain, path.resolve())
    try:
        data, top_lines = read_yaml(path)
    except ConfigError as exc:
        message = str(exc).replace("no such file", "no such pipeline file")
        raise PipelineError(message) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PipelineError(f"{path}:1: expected a mapping with name and stages")
    data = _apply_overrides(data, overrides, path)
    for key in data:  # after the overrides: `--set epochs=3` is no top-level key either
        if key not in _TOP_KEYS:
            where = f":{top_lines[key]}" if key in top_lines else " (--set)"
            raise PipelineError(f"{path}{where}: unknown key {key!r} (known: "
                                f"{', '.join(_TOP_KEYS)}; a stage's setting is --set "
                                "STAGE.KEY=VALUE)")
    for key in ("name", "experiment", "work", "tracking_uri", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise PipelineError(f"{path}:{top_lines.get(key, 1)}: {key}: expected a string, got "
                                f"{data[key]!r}")
    name = str(data.get("name") or path.stem)
    if not data.get("work") and not NAME.fullmatch(name):
        raise PipelineError(f"{path}:{top_lines.get('name', 1)}: name {name!r} names the work "
                            f"folder (runs/NAME): {NAME_RULE}, or set work:")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise PipelineError(f"{path}:{top_lines.get('stages', 1)}: stages: expected a list of "
                            "stages")
    lines = _stage_lines(path)
    specs: list[StageSpec] = []
    every = {s.get("name") for s in raw_stages if isinstance(s, dict)}
    for i, raw in enumerate(raw_stages):
        line, key_lines = lines[i] if i < len(lines) else (1, {})
        specs.append(_check_stage(path, raw, line, key_lines, specs, every, _chain))
    pipeline = Pipeline(path=path, name=name, experiment=str(data.get("experiment") or name),
                        work=Path(data.get("work") or Path("runs") / name),
                        tracking_uri=data.get("tracking_uri"), stages=specs,
                        description=str(data.get("description") or ""))
    for spec in specs:  # every stage's settings, with placeholder outputs for references
        _validate(pipeline, spec)
    return pipeline


def _check_stage(path: Path, raw: Any, line: int, key_lines: dict[str, int],
                 before: list[StageSpec], every: set, chain: tuple[Path, ...] = ()) -> StageSpec:
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}:{line}: a stage is a mapping with name and stage")
    name, kind = raw.get("name"), raw.get("stage")
    if not name or not isinstance(name, str):
        raise PipelineError(f"{path}:{line}: stage without a name")
    if not NAME.fullmatch(name):  # it names the stage's folder under work/: nothing may escape
        raise PipelineError(f"{path}:{key_lines.get('name', line)}: stage name {name!r}: "
                            f"{NAME_RULE}")
    known = [s.name for s in list_stages() if s.pipeline]
    if kind not in known:
        raise PipelineError(f"{path}:{key_lines.get('stage', line)}: stage {name!r}: unknown "
                            f"stage {kind!r} (known: {', '.join(known)})")
    if any(s.name == name for s in before):
        raise PipelineError(f"{path}:{line}: stage name {name!r} is used twice")
    spec = StageSpec(name, kind, {k: v for k, v in raw.items() if k not in ("name", "stage")},
                     line, key_lines)
    earlier = {s.name for s in before}
    for key, value in spec.settings.items():
        for ref in _refs(value):
            target, _ = _split_ref(ref)
            if ":" in target:
                _check_external(path, spec.where(key), name, key, target, chain)
            elif target not in earlier:
                later = " (it comes later; stages run in order)" if target in every else ""
                raise PipelineError(f"{path}:{spec.where(key)}: stage {name!r}: {key} refers to "
                                    f"${{{ref}}}, and no earlier stage is named {target!r}{later}")
    stage = spec.stage
    managed = [f.name for f in stage.settings() if f.metadata.get("role") in ("output", "tracking")]
    for key in spec.settings:
        if key in managed:
            raise PipelineError(f"{path}:{spec.where(key)}: stage {name!r}: {key} is set by the "
                                "pipeline (work, experiment, tracking_uri at the top)")
    if stage.reads:
        wrong = [n for n in spec.settings.get("stages") or []
                 if n not in {s.name for s in before if s.kind == stage.reads}]
        if wrong:
            raise PipelineError(f"{path}:{spec.where('stages')}: stage {name!r}: {wrong[0]!r} is "
                                f"not an earlier {stage.reads} stage of this pipeline")
    return spec


def _split_ref(ref: str) -> tuple[str, str]:
    """``stage/sub`` -> (``stage``, ``sub``); ``FILE:stage/sub`` -> (``FILE:stage``, ``sub``)."""
    if ":" in ref:
        file, _, after = ref.partition(":")
        stage, _, rest = after.partition("/")
        return f"{file}:{stage}", rest
    target, _, rest = ref.partition("/")
    return target, rest


def _external_path(path: Path, target: str) -> tuple[Path, str]:
    file, _, stage = target.partition(":")
    return (path.parent / file), stage


def _check_external(path: Path, line: int, name: str, key: str, target: str,
                    chain: tuple[Path, ...] = ()) -> None:
    other, stage = _external_path(path, target)
    where = f"{path}:{line}: stage {name!r}: {key} refers to ${{{target}}}"
    if not other.is_file():
        raise PipelineError(f"{where}, and there is no pipeline file {other}")
    if other.resolve() == path.resolve():
        raise PipelineError(f"{where}: that is this file; write ${{{stage}}}")
    if other.resolve() in chain:
        start = chain.index(other.resolve())
        circle = " -> ".join(p.name for p in (*chain[start:], other.resolve()))
        raise _Circle(f"{path}:{line}: pipeline files refer to each other in a circle: {circle}")
    try:
        found = load_pipeline(other, _chain=chain)
    except _Circle:
        raise
    except PipelineError as exc:
        raise PipelineError(f"{where}: {exc}") from None
    if stage not in [s.name for s in found.stages]:
        raise PipelineError(f"{where}, and {other} has no stage named {stage!r} (it has "
                            f"{', '.join(s.name for s in found.stages)})")


def _external_results(pipeline: Pipeline) -> dict[str, StageResult]:
    """The finished stages of other pipeline files that ``pipeline`` refers to, by reference
    (``FILE:stage``)."""
    out: dict[str, StageResult] = {}
    for spec in pipeline.stages:
        for ref in _refs(spec.settings):
            target, _ = _split_ref(ref)
            if ":" in target and target not in out:
                out[target] = _finished_stage(*_external_path(pipeline.path, target))
    return out


def _finished_stage(path: Path, name: str) -> StageResult:
    """Stage ``name`` of the pipeline file ``path`` as that file defines it now: its result,
    when it has finished (its fingerprint's folder holds ``stage.json``)."""
    other = load_pipeline(path)
    known: dict[str, StageResult] = _external_results(other)
    results: dict[str, StageResult] = {}
    for spec in other.stages:
        fp = _fingerprint(spec, {**known, **results})
        done = other.work / spec.name / fp / "stage.json"
        if done.exists():
            results[spec.name] = StageResult(**json.loads(done.read_text()))
        else:
            results[spec.name] = StageResult(spec.name, spec.kind, "", fp, False)
        if spec.name == name:
            if not done.exists():
                raise PipelineError(f"{path}: stage {name!r} has not finished with that file's "
                                    f"current settings (no {done}); run `ecgtransfer run "
                                    f"{path}` first")
            return results[name]
    raise PipelineError(f"{path}: no stage named {name!r}")


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return _REF.findall(value)
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    return []


def _resolve(value: Any, outputs: dict[str, str]) -> Any:
    """``${stage}`` and ``${stage}/sub`` replaced by that stage's output path."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            target, rest = _split_ref(m.group(1))
            return outputs[target] + (f"/{rest}" if rest else "")
        return _REF.sub(sub, value)
    if isinstance(value, list):
        return [_resolve(v, outputs) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, outputs) for k, v in value.items()}
    return value


def _combinations(spec: StageSpec, settings: dict) -> list[dict]:
    """The settings of each run of the stage: one per entry of ``runs`` crossed with ``grid``."""
    pipeline_only = (*_EXPAND, "stages") if spec.stage.reads else _EXPAND
    base = {k: v for k, v in settings.items() if k not in pipeline_only}
    runs = settings.get("runs") or [{}]
    grid = _flat_grid(settings.get("grid") or {})
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ConfigError("runs: expected a list of mappings of settings", "runs")
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError("grid: expected a mapping of setting -> non-empty list of values",
                          "grid")
    return [_with_dotted({**base, **run}, dict(zip(grid, combo)))
            for run in runs for combo in itertools.product(*grid.values())]


def _flat_grid(grid: Any, prefix: str = "") -> Any:
    """A grid whose mapping values are axes of a mapping setting (``model_kwargs: {width:
    [16, 32]}``), as dotted axes (``model_kwargs.width: [16, 32]``)."""
    if not isinstance(grid, dict):
        return grid
    out: dict = {}
    for key, value in grid.items():
        if isinstance(value, dict):
            out.update(_flat_grid(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _with_dotted(settings: dict, values: dict) -> dict:
    """``settings`` with ``values`` set; a dotted key sets one key of a mapping setting
    (``model_kwargs.width: 64`` keeps the other keys of ``model_kwargs``)."""
    out = dict(settings)
    for key, value in values.items():
        *parents, last = str(key).split(".")
        target = out
        for depth, part in enumerate(parents):
            inner = target.get(part) or {}
            if not isinstance(inner, dict):
                raise ConfigError(f"grid: {key}: {'.'.join(parents[:depth + 1])} is not a "
                                  "mapping", "grid")
            target[part] = inner = dict(inner)
            target = inner
        target[last] = value
    return out


def _handoffs(spec: StageSpec, settings: dict, results: dict[str, Any]) -> dict:
    """Named outputs of the stages a setting refers to whole (``store: ${labels}``), handed to
    the settings of the same name this stage leaves unset (``labels``)."""
    names = {f.name for f in spec.stage.settings()}
    extra: dict[str, Any] = {}
    for key, value in spec.settings.items():
        m = _REF.fullmatch(value) if isinstance(value, str) else None
        if m and not _split_ref(m.group(1))[1] and m.group(1) in results:
            for out_name, out_value in getattr(results[m.group(1)], "outputs", {}).items():
                if out_name in names and out_name not in settings and out_name != key:
                    extra[out_name] = out_value
    return extra


def _configs(pipeline: Pipeline, spec: StageSpec, settings: dict, folder: Path,
             results: dict[str, Any], reads: list[str]) -> list[tuple[Path, Any]]:
    """Each run's (folder, config): the settings with the pipeline's managed ones filled in."""
    stage = spec.stage
    hints = typing.get_type_hints(stage.config)
    combos = _combinations(spec, settings)
    expanded = any(k in spec.settings for k in _EXPAND)
    out = []
    for combo in combos:
        values = {**combo, **_handoffs(spec, combo, results)}
        sub = folder
        if expanded:  # each run keyed by its own settings, so a grown grid redoes none of them
            key = _digest({"settings": combo, "version": stage.algorithm_version()})[:12]
            sub = folder.parent / "runs" / key
        for f in stage.settings():
            role = f.metadata.get("role")
            if role == "output" and stage.output is not None:
                values[f.name] = str(sub / stage.output) if stage.output else str(sub)
            elif f.name == "experiment" and role == "tracking":
                is_list = typing.get_origin(hints[f.name]) is list
                values[f.name] = [pipeline.experiment] if is_list else pipeline.experiment
            elif f.name == "tracking_uri" and role == "tracking":
                values[f.name] = pipeline.tracking_uri
        if stage.reads:
            values["runs"] = reads
        out.append((sub, from_dict(stage.config, values)))
    return out


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _validate(pipeline: Pipeline, spec: StageSpec) -> None:
    placeholder = {s.name: str(pipeline.work / s.name / _PLACEHOLDER) for s in pipeline.stages}
    external = {t: _PLACEHOLDER for t in (_split_ref(r)[0] for r in _refs(spec.settings))
                if ":" in t}
    settings = _resolve(spec.settings, {**placeholder, **external})
    fake = {s.name: _Result(placeholder[s.name], outputs=dict.fromkeys(s.stage.hands,
                                                                       placeholder[s.name]))
            for s in pipeline.stages}
    fake.update({t: _Result(_PLACEHOLDER, outputs={}) for t in external})
    try:
        configs = _configs(pipeline, spec, settings, Path("."), fake, [])
    except ConfigError as exc:
        key = exc.key if exc.key in spec.settings else next(
            (k for k in _EXPAND if k in spec.settings), None)
        message = str(exc).splitlines()[0]
        raise PipelineError(f"{pipeline.path}:{spec.where(key)}: stage {spec.name!r}: "
                            f"{message}") from None
    for _, config in configs:
        for f in spec.stage.settings():
            if f.metadata.get("role") != "input":
                continue
            values = getattr(config, f.name)
            for value in values if isinstance(values, list) else [values]:
                if value and _PLACEHOLDER not in str(value) and not Path(str(value)).exists():
                    raise PipelineError(f"{pipeline.path}:{spec.where(f.name)}: stage "
                                        f"{spec.name!r}: {f.name} {value} does not exist")


# ---- running ------------------------------------------------------------------------------
def _fingerprint(spec: StageSpec, results: dict[str, StageResult]) -> str:
    """The stage's kind, settings, code (a hash of every module it may run) and algorithm
    version, with each reference replaced by the referred stage's fingerprint (so a changed
    upstream stage changes this one); a stage that reads others' runs also takes the
    fingerprints of those it reads."""
    marked = _resolve(spec.settings, {n: f"<{r.fingerprint}>" for n, r in results.items()})
    inputs = [results[n].fingerprint for n in _read_names(spec, results)]
    text = json.dumps({"kind": spec.kind, "settings": marked, "inputs": inputs,
                       "version": spec.stage.algorithm_version()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _basis(spec: StageSpec, results: dict[str, StageResult]) -> dict[str, Any]:
    """The parts of :func:`_fingerprint`, kept in ``stage.json`` to explain a re-run."""
    own = spec.stage.version() if spec.stage.version is not None else ""
    upstream = {n: results[n].fingerprint for n in _depends_on(spec, results)}
    try:
        runs = len(_combinations(spec, spec.settings))
    except ConfigError:
        runs = 1
    return {"settings": _digest(spec.settings)[:12], "code": spec.stage.code_hashes(),
            "version": own, "upstream": upstream, "runs": runs}


def _depends_on(spec: StageSpec, results: dict[str, StageResult]) -> list[str]:
    """The stages (of this file, or ``FILE:stage``) whose outputs or runs ``spec`` uses."""
    names = [_split_ref(ref)[0] for ref in _refs(spec.settings)]
    names += _read_names(spec, results)
    return [n for n in dict.fromkeys(names) if n in results]


def _read_names(spec: StageSpec, results: dict[str, StageResult]) -> list[str]:
    stage = spec.stage
    if not stage.reads:
        return []
    return spec.settings.get("stages") or [n for n, r in results.items()
                                           if r.kind == stage.reads and ":" not in n]


def _tags(pipeline: Pipeline, parent: str) -> dict[str, str]:
    return tag_values(pipeline=pipeline.name, pipeline_run=parent)


def _run_stage(pipeline: Pipeline, spec: StageSpec, folder: Path, results: dict,
               parent: Any, progress: bool) -> StageResult:
    """Run one stage (each of its runs, for ``runs``/``grid``), in an MLflow run of its own
    under the pipeline's unless the stage's runs nest under the pipeline's themselves."""
    import contextlib

    from ecgtransfer.config import to_dict

    stage = spec.stage
    reads = [i for n in _read_names(spec, results) for i in results[n].run_ids]
    settings = _resolve(spec.settings, {n: r.output for n, r in results.items()})
    configs = _configs(pipeline, spec, settings, folder, results, reads)
    stage_run = contextlib.nullcontext(None)
    if stage.pipeline_run:
        stage_run = parent.tracker.open_parent_run(
            experiment=pipeline.experiment, name=f"{spec.kind} {spec.name}", parent=parent.id,
            marker=folder / "stage_run.json",
            tags={**_tags(pipeline, parent.id),
                  **tag_values(stage="pipeline-stage", stage_kind=spec.kind,
                               stage_name=spec.name)})
    with stage_run as run:
        if run is not None and run.new:
            run.log_params(settings if len(configs) > 1 else to_dict(configs[0][1]))
        context = Context(progress=progress, resume=True,
                          parent_run=run.id if run else parent.id, stage_run=run,
                          pipeline_run=parent, tags=_tags(pipeline, parent.id),
                          tracker=parent.tracker)
        done = [stage.run(config, context) for _, config in configs]
        if run is not None:
            run.set_tags(tag_values(output=str(folder)))
    failed = [r for r in done if r.exit_code]
    if failed and not stage.answers:
        raise PipelineError(f"stage {spec.name!r}: {failed[0].summary.splitlines()[-1]}")
    one = done[0] if len(done) == 1 else None
    run_ids = [i for r in done for i in r.run_ids]
    if run is not None and not run_ids:
        run_ids = [run.id]
    return StageResult(spec.name, spec.kind, one.output if one else str(folder), "", False,
                       run_ids, one.summary if one else f"{len(done)} {spec.kind} runs",
                       dict(one.outputs) if one else {})


def _rerun_names(pipeline: Pipeline, rerun: Sequence[str]) -> set[str]:
    """``--rerun`` names checked against the file (``all``: every stage)."""
    names = [s.name for s in pipeline.stages]
    wanted = set(names) if "all" in rerun else set(rerun)
    unknown = sorted(wanted - set(names))
    if unknown:
        raise PipelineError(f"--rerun {unknown[0]}: {pipeline.path} has no stage named "
                            f"{unknown[0]!r} (its stages: {', '.join(names)}; or all)")
    return wanted


@dataclass
class PlanRow:
    """What ``ecgtransfer run --plan`` says of one stage."""

    name: str
    kind: str
    action: str
    """``reuse`` or ``run``."""
    why: str
    runs: int
    estimate_s: float | None
    """Seconds, from the time the stage's last run here took per run; None if never run."""
    fingerprint: str


def plan_pipeline(pipeline: Pipeline, rerun: Sequence[str] = ()) -> list[PlanRow]:
    """What :func:`run_pipeline` would do, without running anything: each stage's action
    (reuse or run), why (never run here, new settings, changed code, a changed algorithm
    version, an upstream stage that changed, ``--rerun``), its number of runs (a grid's
    expansion) and an estimate of its time from its last run in this work folder."""
    forced = _rerun_names(pipeline, rerun)
    external = _external_results(pipeline)
    results: dict[str, StageResult] = {}
    rows = []
    for spec in pipeline.stages:
        known = {**external, **results}
        fp = _fingerprint(spec, known)
        basis = _basis(spec, known)
        done = pipeline.work / spec.name / fp / "stage.json"
        if forced & set(_depends_on(spec, known)):
            forced.add(spec.name)
        previous = _latest_stage_json(pipeline.work / spec.name)
        if done.exists() and spec.name not in forced:
            action, why = "reuse", "unchanged"
        elif spec.name in rerun or "all" in rerun:
            action, why = "run", "--rerun"
        elif spec.name in forced:
            action, why = "run", "upstream runs again (--rerun)"
        else:
            action, why = "run", _why(basis, previous, known)
        estimate = None
        if previous is not None and previous.seconds and (previous.basis or {}).get("runs"):
            estimate = previous.seconds / previous.basis["runs"] * basis["runs"]
        elif previous is not None and previous.seconds:
            estimate = previous.seconds
        rows.append(PlanRow(spec.name, spec.kind, action, why, basis["runs"],
                            0.0 if action == "reuse" else estimate, fp))
        results[spec.name] = StageResult(spec.name, spec.kind, "", fp, action == "reuse",
                                         basis=basis)
    return rows


def _latest_stage_json(folder: Path) -> StageResult | None:
    """The most recently finished run of a stage in a work folder (any fingerprint)."""
    found = sorted(folder.glob("*/stage.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        try:
            return StageResult(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
    return None


def _why(basis: dict[str, Any], previous: StageResult | None,
         known: dict[str, StageResult]) -> str:
    """Why a stage whose fingerprint is new runs: against its last run in the work folder."""
    if previous is None:
        return "never run here"
    old = previous.basis or {}
    if not old:
        return "its last run here predates recorded reasons (0.2.0)"
    reasons = []
    if old.get("settings") != basis["settings"]:
        reasons.append("new settings")
    changed = sorted(m for m in {*basis["code"], *old.get("code", {})}
                     if basis["code"].get(m) != old.get("code", {}).get(m))
    if changed:
        shown = ", ".join(m.removeprefix("ecgtransfer.") for m in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        reasons.append(f"changed code ({shown}{more})")
    if old.get("version") != basis["version"]:
        reasons.append(f"algorithm version {old.get('version') or '-'} -> "
                       f"{basis['version'] or '-'}")
    moved = [n for n, f in basis["upstream"].items() if old.get("upstream", {}).get(n) != f]
    if moved:
        reasons.append(f"upstream changed ({', '.join(moved)})")
    return "; ".join(reasons) or "new fingerprint"


def plan_text(rows: list[PlanRow]) -> str:
    """The plan as a table, with the total estimate."""
    import pandas as pd

    table = pd.DataFrame([{"stage": f"{r.kind} {r.name}", "action": r.action, "runs": r.runs,
                           "estimate": ("-" if r.action == "reuse" else "?" if r.estimate_s is None
                                        else f"{r.estimate_s:.0f} s"),
                           "why": r.why} for r in rows])
    known = [r.estimate_s for r in rows if r.action == "run" and r.estimate_s is not None]
    unknown = sum(r.action == "run" and r.estimate_s is None for r in rows)
    total = (f"{sum(r.action == 'run' for r in rows)} of {len(rows)} stages run, about "
             f"{sum(known):.0f} s" + (f" plus {unknown} never timed here" if unknown else ""))
    return table.to_markdown(index=False) + "\n" + total


def run_pipeline(pipeline: Pipeline, *, progress: bool = True,
                 on_stage: Callable[[StageResult], None] | None = None,
                 rerun: Sequence[str] = ()) -> list[StageResult]:
    """Run (or reuse) every stage in order; returns one result per stage.

    A stage named in ``rerun`` (``all``: every one), and every stage downstream of it, runs
    again even where its outputs could be reused; its earlier folder is set aside while it
    runs, removed when it finishes and put back if it fails.

    The pipeline's MLflow run ends FINISHED, or FAILED / KILLED with the stage that stopped it.
    """
    from ecgtransfer.files import atomic_file, check_output_folder, mark_output_folder
    from ecgtransfer.tracking import Tracker, code_version

    forced = _rerun_names(pipeline, rerun)
    # the work folder holds this command's stages only: a store or another command's output
    # named by mistake is refused before anything is written
    check_output_folder(pipeline.work, "run", legacy=("pipeline-*.json",), flag="work")
    tracker = Tracker(pipeline.tracking_uri)
    tracker.experiment(pipeline.experiment)  # the store is usable before anything is written
    try:
        mark_output_folder(pipeline.work, "run")
    except (FileExistsError, NotADirectoryError):
        raise PipelineError(f"work {pipeline.work}: cannot be made (a file is in the "
                            "way)") from None
    tracker.describe_experiment(pipeline.experiment, (
        f"{pipeline.description or 'Pipeline ' + pipeline.name}\n\nRuns of `ecgtransfer run "
        f"{pipeline.path.name}`: one pipeline run, a run per stage under it, and the fine-tune "
        "runs under the finetune stage (a cross-validation's fold runs under its own). "
        "`ecgtransfer ui` opens the fine-tune runs side by side; the pipeline run's description "
        "holds the comparison."))
    text = json.dumps([pipeline.name, [(s.name, s.kind, s.settings) for s in pipeline.stages]],
                      sort_keys=True, default=str)
    marker = pipeline.work / f"pipeline-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    results: dict[str, StageResult] = {}
    external = _external_results(pipeline)  # stages of other files: finished, or an error now
    with tracker.open_parent_run(
            experiment=pipeline.experiment, name=f"pipeline {pipeline.name}", marker=marker,
            tags={**tag_values(stage="pipeline", pipeline=pipeline.name,
                               code_version=code_version()),
                  "mlflow.note.content": pipeline.description or f"Pipeline {pipeline.path}"}
    ) as parent:
        if parent.new:
            parent.log_text(pipeline.path.read_text(), "pipeline.yaml")
        for spec in pipeline.stages:
            known = {**external, **results}
            fp = _fingerprint(spec, known)
            folder = pipeline.work / spec.name / fp
            done = folder / "stage.json"
            if forced & set(_depends_on(spec, known)):
                forced.add(spec.name)  # downstream of a stage run again: run again too
            if done.exists() and spec.name not in forced:
                result = StageResult(**json.loads(done.read_text()))
                result.reused = True
            else:
                aside = None
                if done.exists():  # --rerun: the earlier outputs wait aside until this ends
                    aside = folder.with_name(f".{fp}.rerun-{time.time_ns()}")
                    folder.rename(aside)
                try:
                    # the folder is the stage's own: a stage writing into it (finetune,
                    # explain...) finds its marker beside the pipeline's stage_run.json
                    mark_output_folder(folder, spec.kind)
                    started = time.perf_counter()
                    result = _run_stage(pipeline, spec, folder, known, parent, progress)
                    result.fingerprint = fp
                    result.seconds = time.perf_counter() - started
                    result.basis = _basis(spec, known)
                    parent.log_metrics({f"seconds.{spec.name}": result.seconds})
                    with atomic_file(done) as f:
                        json.dump(dataclasses.asdict(result), f, indent=2)
                except BaseException:
                    if aside is not None:  # the earlier outputs come back whole
                        shutil.rmtree(folder, ignore_errors=True)
                        aside.rename(folder)
                    raise
                if aside is not None:
                    shutil.rmtree(aside, ignore_errors=True)
            results[spec.name] = result
            if on_stage is not None:
                on_stage(result)
    return list(results.values())
