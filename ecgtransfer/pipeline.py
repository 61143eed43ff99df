"""Whole experiments as YAML pipelines: stages run in order under one MLflow parent run.

A pipeline file::

    name: quickstart
    experiment: quickstart            # MLflow experiment (default: the name)
    work: runs/quickstart             # where stage outputs go (default runs/<name>)
    stages:
      - name: deepfake                # any name, unique
        stage: synth                  # prepare | synth | label | pretrain | finetune | compare
        n: 256                        # the stage's settings
      - name: labels
        stage: label
        store: ${deepfake}            # ${stage} is that stage's output
      ...

Each stage's output lives in ``WORK/<stage name>/<fingerprint>/``. The fingerprint hashes the
stage's kind and settings with the fingerprints of the stages it refers to, so a stage whose
inputs and settings are unchanged is reused (its ``stage.json`` says it finished), a changed one
gets a new folder (the old one stays), and a killed pipeline re-run continues the stage it was
in (every stage is resumable). The file is checked whole before any work starts; an error names
the file and line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["PipelineError", "Pipeline", "StageSpec", "StageResult", "load_pipeline",
           "run_pipeline", "STAGE_KINDS"]

log = logging.getLogger(__name__)

STAGE_KINDS = ("prepare", "synth", "label", "pretrain", "finetune", "compare")
_REF = re.compile(r"\$\{([^}]*)\}")
_TOP_KEYS = ("name", "description", "experiment", "work", "tracking_uri", "stages")
# Set by the pipeline for every training stage; a stage may not set them.
_MANAGED = ("out", "experiment", "tracking_uri")


class PipelineError(ValueError):
    """A pipeline file that cannot run; the message names the file and line."""


@dataclass
class StageSpec:
    """One stage as written: its settings may hold ``${stage}`` references."""

    name: str
    kind: str
    settings: dict[str, Any]
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)

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
    """What a stage left: its output path, fingerprint, run id(s), and whether it was reused."""

    name: str
    kind: str
    output: str
    fingerprint: str
    reused: bool
    run_ids: list[str] = field(default_factory=list)
    summary: str = ""


# ---- reading and checking ---------------------------------------------------------------
def _lines(node: Any) -> dict:
    """The YAML node tree as nested line numbers: for each stage, its line and its keys'."""
    import yaml

    out: dict[str, Any] = {"top": {}, "stages": []}
    if not isinstance(node, yaml.MappingNode):
        return out
    for key, value in node.value:
        out["top"][key.value] = key.start_mark.line + 1
        if key.value == "stages" and isinstance(value, yaml.SequenceNode):
            for item in value.value:
                keys = {}
                if isinstance(item, yaml.MappingNode):
                    keys = {k.value: k.start_mark.line + 1 for k, _ in item.value}
                out["stages"].append((item.start_mark.line + 1, keys))
    return out


def _apply_overrides(data: dict, overrides: Sequence[str], where: str) -> dict:
    """``STAGE.KEY=VALUE`` (value as YAML) sets a stage's setting; ``KEY=VALUE`` a top-level
    one; ``STAGE.grid.seed=[0]`` one key of a mapping setting."""
    import yaml

    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise PipelineError(f"--set {item!r}: expected STAGE.KEY=VALUE")
        value = yaml.safe_load(text) if text.strip() else None
        parts = key.strip().split(".")
        if len(parts) == 1:
            data[parts[0]] = value
            continue
        stage = next((s for s in data.get("stages") or [] if isinstance(s, dict)
                      and s.get("name") == parts[0]), None)
        if stage is None:
            raise PipelineError(f"--set {item!r}: {where} has no stage named {parts[0]!r}")
        target = stage
        for part in parts[1:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise PipelineError(f"--set {item!r}: {part} is not a mapping")
        target[parts[-1]] = value
    return data


def load_pipeline(path: str | Path, overrides: Sequence[str] = ()) -> Pipeline:
    """Read and check a pipeline file (and ``--set`` overrides) before any work.

    Raises
    ------
    PipelineError
        ``FILE:LINE: ...`` for an unknown key or stage kind, a bad setting, a reference to a
        stage that does not exist (or comes later), or an input path that does not exist.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PipelineError(f"{path}: no such pipeline file") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise PipelineError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}:1: expected a mapping with name and stages")
    lines = _lines(node)
    for key in data:
        if key not in _TOP_KEYS:
            raise PipelineError(f"{path}:{lines['top'].get(key, 1)}: unknown key {key!r} (known: "
                                f"{', '.join(_TOP_KEYS)})")
    data = _apply_overrides(data, overrides, str(path))
    name = str(data.get("name") or path.stem)
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise PipelineError(f"{path}:{lines['top'].get('stages', 1)}: stages: expected a list of "
                            "stages")
    specs: list[StageSpec] = []
    every = {s.get("name") for s in raw_stages if isinstance(s, dict)}
    for i, raw in enumerate(raw_stages):
        line, key_lines = lines["stages"][i] if i < len(lines["stages"]) else (1, {})
        specs.append(_check_stage(path, raw, line, key_lines, specs, every))
    pipeline = Pipeline(path=path, name=name, experiment=str(data.get("experiment") or name),
                        work=Path(data.get("work") or Path("runs") / name),
                        tracking_uri=data.get("tracking_uri"), stages=specs,
                        description=str(data.get("description") or ""))
    for spec in specs:  # every stage's settings, with placeholder outputs for references
        _validate_settings(pipeline, spec)
    return pipeline


def _check_stage(path: Path, raw: Any, line: int, key_lines: dict[str, int],
                 before: list[StageSpec], every: set) -> StageSpec:
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}:{line}: a stage is a mapping with name and stage")
    name, kind = raw.get("name"), raw.get("stage")
    if not name or not isinstance(name, str):
        raise PipelineError(f"{path}:{line}: stage without a name")
    if kind not in STAGE_KINDS:
        raise PipelineError(f"{path}:{key_lines.get('stage', line)}: stage {name!r}: unknown "
                            f"stage {kind!r} (known: {', '.join(STAGE_KINDS)})")
    if any(s.name == name for s in before):
        raise PipelineError(f"{path}:{line}: stage name {name!r} is used twice")
    settings = {k: v for k, v in raw.items() if k not in ("name", "stage")}
    spec = StageSpec(name, kind, settings, line, key_lines)
    known = {s.name for s in before}
    for key, value in settings.items():
        for ref in _refs(value):
            target = ref.split("/", 1)[0]
            if target not in known:
                later = " (it comes later; stages run in order)" if target in every else ""
                raise PipelineError(f"{path}:{spec.where(key)}: stage {name!r}: {key} refers to "
                                    f"${{{ref}}}, and no earlier stage is named {target!r}{later}")
    for key in _MANAGED:
        if key in settings:
            raise PipelineError(f"{path}:{spec.where(key)}: stage {name!r}: {key} is set by the "
                                "pipeline (work, experiment, tracking_uri at the top)")
    return spec


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
            target, _, rest = m.group(1).partition("/")
            return outputs[target] + (f"/{rest}" if rest else "")
        return _REF.sub(sub, value)
    if isinstance(value, list):
        return [_resolve(v, outputs) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, outputs) for k, v in value.items()}
    return value


def _validate_settings(pipeline: Pipeline, spec: StageSpec) -> None:
    placeholder = {s.name: str(pipeline.work / s.name / "<output>") for s in pipeline.stages}
    settings = _resolve(spec.settings, placeholder)
    try:
        _STAGES[spec.kind].check(settings, pipeline, spec)
    except PipelineError:
        raise
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0]
        unknown = re.search(r"unknown key '([^']+)'", message)
        key = unknown.group(1) if unknown else message.split(":", 1)[0].strip().split(".")[0]
        raise PipelineError(f"{pipeline.path}:{spec.where(key if key in spec.settings else None)}: "
                            f"stage {spec.name!r}: {message}") from None


def _must_exist(pipeline: Pipeline, spec: StageSpec, key: str, value: Any) -> None:
    if value is None or "<output>" in str(value):
        return
    if not Path(str(value)).exists():
        raise PipelineError(f"{pipeline.path}:{spec.where(key)}: stage {spec.name!r}: {key} "
                            f"{value} does not exist")


def _known_keys(spec: StageSpec, pipeline: Pipeline, settings: dict, known: Sequence[str]) -> None:
    for key in settings:
        if key not in known:
            raise PipelineError(f"{pipeline.path}:{spec.where(key)}: stage {spec.name!r}: unknown "
                                f"key {key!r} for a {spec.kind} stage (known: {', '.join(known)})")


# ---- the stages ---------------------------------------------------------------------------
@dataclass
class _Kind:
    check: Callable[[dict, Pipeline, StageSpec], None]
    run: Callable[["_Context", StageSpec, dict, Path, "str | None"], StageResult]


@dataclass
class _Context:
    pipeline: Pipeline
    parent_run_id: str
    progress: bool
    results: dict[str, StageResult]

    @property
    def tags(self) -> dict[str, str]:
        return {"ecgtransfer.pipeline": self.pipeline.name,
                "ecgtransfer.pipeline_run": self.parent_run_id}


_PREPARE_KEYS = ("source", "root", "sample", "input", "fs", "leads", "halves_seed")


def _check_prepare(settings: dict, pipeline: Pipeline, spec: StageSpec) -> None:
    _known_keys(spec, pipeline, settings, _PREPARE_KEYS)
    source = settings.get("source", "ptbxl")
    if source not in ("ptbxl", "wfdb"):
        raise ValueError(f"source: {source!r} is not ptbxl or wfdb")
    if source == "ptbxl" and not settings.get("sample") and not settings.get("root"):
        raise ValueError("root: a ptbxl stage needs root (a PTB-XL folder) or sample: true")
    if source == "wfdb" and not settings.get("input"):
        raise ValueError("input: a wfdb stage needs input (a folder of WFDB records)")
    _must_exist(pipeline, spec, "root", settings.get("root"))
    _must_exist(pipeline, spec, "input", settings.get("input"))
    if int(settings.get("leads", 8)) not in (8, 12):
        raise ValueError("leads: 8 or 12")


def _run_prepare(ctx: _Context, spec: StageSpec, settings: dict, folder: Path,
                 stage_run: str | None) -> StageResult:
    from ecgtransfer.data.leads import lead_set

    out = folder / "store"
    leads = lead_set(int(settings.get("leads", 8)))
    if settings.get("source", "ptbxl") == "ptbxl":
        from ecgtransfer.data.ptbxl import prepare_ptbxl, sample_ptbxl_root

        root = sample_ptbxl_root() if settings.get("sample") else Path(settings["root"])
        report = prepare_ptbxl(root, out, fs=int(settings.get("fs", 500)), leads=leads,
                               halves_seed=settings.get("halves_seed"), progress=ctx.progress)
    else:
        from ecgtransfer.data.ingest import prepare_wfdb

        report = prepare_wfdb(settings["input"], out, fs=float(settings.get("fs", 500)),
                              leads=leads, progress=ctx.progress)
    store = report.store
    return StageResult(spec.name, spec.kind, str(out), "", False,
                       summary=f"{len(store)} records at {store.fs:g} Hz, {store.n_leads} leads")


def _synth_config(settings: dict):
    from ecgtransfer.config import from_dict
    from ecgtransfer.data.deepfake import SynthConfig

    return from_dict(SynthConfig, settings)


def _check_synth(settings: dict, pipeline: Pipeline, spec: StageSpec) -> None:
    _synth_config(settings)


def _run_synth(ctx: _Context, spec: StageSpec, settings: dict, folder: Path,
               stage_run: str | None) -> StageResult:
    from ecgtransfer.data.deepfake import synthesize

    out = folder / "store"
    report = synthesize(out, _synth_config(settings), progress=ctx.progress)
    return StageResult(spec.name, spec.kind, str(out), "", False,
                       summary=f"{len(report.store)} DeepFake ECGs")


def _check_label(settings: dict, pipeline: Pipeline, spec: StageSpec) -> None:
    _known_keys(spec, pipeline, settings, ("store", "workers"))
    if "store" not in settings:
        raise ValueError("store: a label stage needs store (e.g. store: ${deepfake})")
    _must_exist(pipeline, spec, "store", settings["store"])
    if int(settings.get("workers", 1)) < 1:
        raise ValueError("workers: must be at least 1")


def _run_label(ctx: _Context, spec: StageSpec, settings: dict, folder: Path,
               stage_run: str | None) -> StageResult:
    from ecgtransfer.features.labels import label_records

    report = label_records(settings["store"], workers=int(settings.get("workers", 2)),
                           progress=ctx.progress)
    shown = ", ".join(f"{k.replace('_status', '')} {v}" for k, v in report.n_ok.items())
    return StageResult(spec.name, spec.kind, str(settings["store"]), "", False,
                       summary=f"{report.n_records} records labelled ({shown})")


def _stage_config(cls: type, settings: dict, ctx_or_pipeline, out: Path):
    from ecgtransfer.config import from_dict

    pipeline = getattr(ctx_or_pipeline, "pipeline", ctx_or_pipeline)
    return from_dict(cls, {**settings, "out": str(out), "experiment": pipeline.experiment,
                           "tracking_uri": pipeline.tracking_uri})


def _check_pretrain(settings: dict, pipeline: Pipeline, spec: StageSpec) -> None:
    from ecgtransfer.config import PretrainConfig

    _stage_config(PretrainConfig, settings, pipeline, Path("."))
    _must_exist(pipeline, spec, "store", settings.get("store"))


def _run_pretrain(ctx: _Context, spec: StageSpec, settings: dict, folder: Path,
                  stage_run: str | None) -> StageResult:
    from ecgtransfer.config import PretrainConfig
    from ecgtransfer.pretrain import pretrain

    config = _stage_config(PretrainConfig, settings, ctx, folder)
    results = pretrain(config, resume=True, progress=ctx.progress,
                       parent_run_id=ctx.parent_run_id, tags=ctx.tags)
    shown = "; ".join(f"{r.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.test_mae.items())
                      for r in results)
    return StageResult(spec.name, spec.kind, str(folder), "", False,
                       [r.run_id for r in results if r.run_id], summary=f"test MAE {shown}")


_FINETUNE_EXTRA = ("runs", "grid")


def _finetune_configs(settings: dict, ctx_or_pipeline, folder: Path) -> list:
    """One config per entry of ``runs`` (default one) crossed with ``grid``."""
    import itertools

    from ecgtransfer.config import FinetuneConfig

    base = {k: v for k, v in settings.items() if k not in _FINETUNE_EXTRA}
    runs = settings.get("runs") or [{}]
    grid = settings.get("grid") or {}
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ValueError("runs: expected a list of mappings of settings")
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError("grid: expected a mapping of setting -> non-empty list of values")
    configs = []
    for i, run in enumerate(runs):
        for combo in itertools.product(*grid.values()):
            values = {**base, **run, **dict(zip(grid, combo))}
            configs.append(_stage_config(FinetuneConfig, values, ctx_or_pipeline,
                                         folder / f"{len(configs):03d}"))
    return configs


def _check_finetune(settings: dict, pipeline: Pipeline, spec: StageSpec) -> None:
    from ecgtransfer.config import ConfigError

    try:
        configs = _finetune_configs(settings, pipeline, Path("."))
    except ConfigError as exc:  # name the run whose settings are wrong
        raise ValueError(str(exc)) from None
    _must_exist(pipeline, spec, "store", configs[0].store)


def _run_finetune(ctx: _Context, spec: StageSpec, settings: dict, folder: Path,
                  stage_run: str | None) -> StageResult:
    from ecgtransfer.finetune import finetune

    results = [finetune(config, resume=True, progress=ctx.progress, parent_run_id=stage_run,
                        tags=ctx.tags)
               for config in _finetune_configs(settings, ctx, folder)]
    return StageResult(spec.name, spec.kind, str(folder), "", False,
                       [r.run_id for r in results if r.run_id],
                       summary=f"{len(results)} fine-tune runs")


def _check_compare(settings: dict, pipeline: Pipeline, spec: StageSpec) -> None:
    _known_keys(spec, pipeline, settings, ("metric", "stages"))
    if settings.get("metric", "macro_auroc") not in ("macro_auroc", "accuracy", "macro_f1"):
        raise ValueError("metric: macro_auroc, accuracy or macro_f1")
    names = settings.get("stages")
    if names is not None:
        finetunes = {s.name for s in pipeline.stages if s.kind == "finetune"}
        for n in names:
            if n not in finetunes:
                raise PipelineError(f"{pipeline.path}:{spec.where('stages')}: stage "
                                    f"{spec.name!r}: {n!r} is not a finetune stage of this "
                                    "pipeline")


def _run_compare(ctx: _Context, spec: StageSpec, settings: dict, folder: Path,
                 stage_run: str | None) -> StageResult:
    from ecgtransfer.compare import comparison_table, finetune_runs, summary_text, write_comparison

    names = settings.get("stages") or [n for n, r in ctx.results.items() if r.kind == "finetune"]
    run_ids = [i for n in names for i in ctx.results[n].run_ids]
    runs = finetune_runs([ctx.pipeline.experiment], ctx.pipeline.tracking_uri, run_ids=run_ids)
    table = comparison_table(runs)
    paths = write_comparison(table, folder, settings.get("metric", "macro_auroc"))
    for p in paths.values():
        _client().log_artifact(stage_run, str(p))
    return StageResult(spec.name, spec.kind, str(folder), "", False,
                       summary=summary_text(table))


_STAGES = {"prepare": _Kind(_check_prepare, _run_prepare),
           "synth": _Kind(_check_synth, _run_synth),
           "label": _Kind(_check_label, _run_label),
           "pretrain": _Kind(_check_pretrain, _run_pretrain),
           "finetune": _Kind(_check_finetune, _run_finetune),
           "compare": _Kind(_check_compare, _run_compare)}


# ---- running ------------------------------------------------------------------------------
def _client():
    """The MLflow client of the current tracking URI."""
    import mlflow

    return mlflow.MlflowClient()


def _fingerprint(spec: StageSpec, results: dict[str, StageResult]) -> str:
    """The stage's kind and settings, with each reference replaced by the referred stage's
    fingerprint (so a changed upstream stage changes this one); a compare stage also takes the
    fingerprints of the finetune stages it reads."""
    marked = _resolve(spec.settings, {n: f"<{r.fingerprint}>" for n, r in results.items()})
    inputs = []
    if spec.kind == "compare":  # it reads the finetune stages without naming them
        names = spec.settings.get("stages") or [n for n, r in results.items() if r.kind == "finetune"]
        inputs = [results[n].fingerprint for n in names]
    text = json.dumps({"kind": spec.kind, "settings": marked, "inputs": inputs}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _stage_run(ctx: _Context, spec: StageSpec, settings: dict, folder: Path) -> str:
    """The stage's own MLflow run (a child of the pipeline run), reopened on a re-run. Tagged
    ``ecgtransfer.stage = pipeline-stage`` (and ``stage_kind``), so that searching for the
    fine-tune runs themselves (``stage = finetune``) does not find the stage's run."""
    from ecgtransfer import tracking

    marker = folder / "stage_run.json"
    if marker.exists():
        run_id = json.loads(marker.read_text())["run_id"]
        _client().update_run(run_id, status="RUNNING")
        return run_id
    client = _client()
    experiment = client.get_experiment_by_name(ctx.pipeline.experiment).experiment_id
    run = client.create_run(experiment, run_name=f"{spec.kind} {spec.name}", tags={
        **ctx.tags, "mlflow.parentRunId": ctx.parent_run_id,
        tracking.TAG + "stage": "pipeline-stage", tracking.TAG + "stage_kind": spec.kind,
        tracking.TAG + "stage_name": spec.name})
    for key, value in tracking.flat_params(settings).items():
        client.log_param(run.info.run_id, key, value[:6000])
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"run_id": run.info.run_id}))
    return run.info.run_id


def _parent_run(pipeline: Pipeline) -> str:
    """The pipeline's MLflow run: reopened when the same pipeline runs again."""
    from ecgtransfer import tracking

    text = json.dumps([pipeline.name, [(s.name, s.kind, s.settings) for s in pipeline.stages]],
                      sort_keys=True, default=str)
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    marker = pipeline.work / f"pipeline-{key}.json"
    client = _client()
    if marker.exists():
        run_id = json.loads(marker.read_text())["run_id"]
        client.update_run(run_id, status="RUNNING")
        return run_id
    experiment = client.get_experiment_by_name(pipeline.experiment).experiment_id
    run = client.create_run(experiment, run_name=f"pipeline {pipeline.name}", tags={
        tracking.TAG + "stage": "pipeline", tracking.TAG + "pipeline": pipeline.name,
        tracking.TAG + "code_version": tracking.code_version(),
        "mlflow.note.content": pipeline.description or f"Pipeline {pipeline.path}"})
    client.log_text(run.info.run_id, pipeline.path.read_text(), "pipeline.yaml")
    pipeline.work.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"run_id": run.info.run_id, "file": str(pipeline.path)}))
    return run.info.run_id


def _run_stage(ctx: _Context, spec: StageSpec, settings: dict, folder: Path) -> StageResult:
    """Run one stage. Every stage but ``pretrain`` (whose runs nest under the pipeline run
    themselves) gets its own MLflow run, a child of the pipeline's."""
    from ecgtransfer import tracking

    kind = _STAGES[spec.kind]
    if spec.kind == "pretrain":
        return kind.run(ctx, spec, settings, folder, None)
    stage_run = _stage_run(ctx, spec, settings, folder)
    client = _client()
    status = "FAILED"
    try:
        result = kind.run(ctx, spec, settings, folder, stage_run)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(stage_run, status)
    client.set_tag(stage_run, tracking.TAG + "output", result.output)
    if spec.kind != "finetune":  # a finetune stage's run ids are its fine-tune runs
        result.run_ids = [stage_run]
    return result


def run_pipeline(pipeline: Pipeline, *, progress: bool = True,
                 on_stage: Callable[[StageResult], None] | None = None) -> list[StageResult]:
    """Run (or reuse) every stage in order; returns one result per stage.

    The pipeline's MLflow run ends FINISHED, or FAILED / KILLED with the stage that stopped it.
    """
    from ecgtransfer import tracking

    tracking.setup(pipeline.tracking_uri, pipeline.experiment)
    parent = _parent_run(pipeline)
    ctx = _Context(pipeline, parent, progress, {})
    status = "FAILED"
    try:
        for spec in pipeline.stages:
            fp = _fingerprint(spec, ctx.results)
            folder = pipeline.work / spec.name / fp
            done = folder / "stage.json"
            if done.exists():
                result = StageResult(**json.loads(done.read_text()))
                result.reused = True
            else:
                settings = _resolve(spec.settings, {n: r.output for n, r in ctx.results.items()})
                folder.mkdir(parents=True, exist_ok=True)
                result = _run_stage(ctx, spec, settings, folder)
                result.fingerprint = fp
                record = {k: getattr(result, k) for k in (f.name for f in fields(StageResult))}
                done.write_text(json.dumps(record, indent=2))
            ctx.results[spec.name] = result
            if on_stage is not None:
                on_stage(result)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        _client().set_terminated(parent, status)
    return list(ctx.results.values())
