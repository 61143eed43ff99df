"""The stage contract: every registered stage has a CLI command built from its config, a pipeline
key check and help texts; imports run one way along the flow; MLflow is imported by tracking.py
alone; files are loaded without running code; overrides and damaged inputs fail in one line."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

from ecgtransfer.cli import build_parser, main
from ecgtransfer.stages import get_stage, list_stages

PACKAGE = Path(__file__).resolve().parents[1] / "ecgtransfer"

# The flow, lowest first: a module may import its own layer and those below it, never above.
LAYERS = [
    ("ecgtransfer", "ecgtransfer.config", "ecgtransfer.errors", "ecgtransfer.files",
     "ecgtransfer.plots", "ecgtransfer.tags"),
    ("ecgtransfer.data",),
    ("ecgtransfer.features",),
    ("ecgtransfer.models", "ecgtransfer.training", "ecgtransfer.explain",
     "ecgtransfer.comparison"),
    ("ecgtransfer.tracking", "ecgtransfer.transfer"),
    ("ecgtransfer.stages",),
    ("ecgtransfer.pipeline",),
    ("ecgtransfer.cli", "ecgtransfer.__main__"),
]


def _layer(module: str) -> int:
    best, depth = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            hit = module == name or (name != "ecgtransfer" and module.startswith(name + "."))
            if hit and len(name) > depth:
                best, depth = i, len(name)
    if best is None and module.startswith("ecgtransfer"):
        raise AssertionError(f"{module}: not placed in LAYERS")
    return 0 if best is None else best


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every ``ecgtransfer`` module a file imports (at any depth), with the line."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, node.lineno)]
            out += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
    return sorted({(m, line) for m, line in out if m.split(".")[0] == "ecgtransfer"})


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolved(target: str) -> str:
    """``ecgtransfer.data.store.SignalStore`` -> the module part, ``ecgtransfer.data.store``."""
    parts = target.split(".")
    while parts:
        candidate = PACKAGE.parent.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return target


def test_imports_run_one_way_along_the_flow():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "data_manifests" in path.parts:
            continue
        here = _module(path)
        for target, line in _imports(path):
            there = _resolved(target)
            if _layer(there) > _layer(here):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} -> {there}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_only_tracking_imports_mlflow_and_only_wfdb_io_imports_wfdb():
    owners = {"mlflow": {"ecgtransfer/tracking.py"}, "wfdb": {"ecgtransfer/data/wfdb_io.py"}}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top in owners:
                    assert rel in owners[top], f"{rel}:{node.lineno} imports {name}"


def test_every_stage_has_a_command_a_pipeline_check_and_help(tmp_path):
    from ecgtransfer.pipeline import PipelineError, load_pipeline

    parser = build_parser()
    stages = list_stages()
    assert {s.name for s in stages} >= {"prepare", "synth", "label", "pretrain", "finetune",
                                        "compare"}
    for stage in stages:
        assert stage.help and stage.description, stage.name
        for f in dataclasses.fields(stage.config):
            assert f.metadata.get("help"), f"{stage.name}.{f.name} has no help text"
        # the CLI command exists and parses its --help
        with pytest.raises(SystemExit) as info:
            parser.parse_args([*stage.command, "--help"])
        assert info.value.code == 0
        if not stage.pipeline:
            continue
        # the pipeline refuses an unknown key of this stage, naming file, line and key
        path = tmp_path / f"{stage.name}.yaml"
        path.write_text(f"name: t\nstages:\n  - name: s\n    stage: {stage.name}\n"
                        "    no_such_setting: 1\n")
        with pytest.raises(PipelineError, match=rf"{path}:5: stage 's': unknown key "
                                                r"'no_such_setting'"):
            load_pipeline(path)


_HELP_IMPORTS = """
import sys
from ecgtransfer.cli import build_parser, main
parser = build_parser()
words = [[]]
for action in parser._subparsers._group_actions:
    for name, sub in action.choices.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        words += [[name, n] for a in nested for n in a.choices] if nested else [[name]]
for command in words:
    try:
        main([*command, "--help"])
    except SystemExit:
        pass
print("heavy:" + ",".join(m for m in ("torch", "pandas", "scipy", "mlflow", "matplotlib",
                                      "neurokit2", "captum", "optuna", "wfdb")
                          if m in sys.modules), file=sys.stderr)
print("commands:", len(words), file=sys.stderr)
"""


@pytest.mark.slow
def test_help_imports_none_of_the_heavy_libraries():
    """``ecgtransfer --help`` and every command's ``--help`` build the parser from the stage
    registry without importing torch, pandas, SciPy or MLflow (their time is measured by
    benchmarks/bench_cli.py)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _HELP_IMPORTS], capture_output=True, text=True,
                         timeout=120)
    lines = out.stderr.splitlines()
    heavy = [t for t in lines if t.startswith("heavy:")]
    assert heavy, out.stderr[-2000:]
    assert heavy[-1] == "heavy:", f"--help imported {heavy[-1][6:]}"
    assert int([t for t in lines if t.startswith("commands:")][-1].split()[1]) >= 15


def test_get_stage_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown stage 'pretrian' .*pretrain"):
        get_stage("pretrian")


def test_flags_and_file_keys_are_the_same_settings(tmp_path):
    """A flag, a --config key and --set reach the same config field; types are checked by the
    config in one line."""
    from ecgtransfer.config import load_config

    stage = get_stage("finetune")
    args = build_parser().parse_args(["finetune", "--from", "a,b", "--from", "c",
                                      "--train-fraction", "0.5", "--no-amp"])
    from ecgtransfer.cli import _flag_values

    config = load_config(stage.config, None, ["head_hidden=null"],
                         **_flag_values(args, stage.config))
    assert config.sources == ["a", "b", "c"] and config.train_fraction == 0.5
    assert config.amp is False and config.head_hidden is None


@pytest.mark.parametrize("args, message", [
    (["pretrain", "--store", "x", "--set", "epochs.x=1"],
     "epochs: expected an integer, got {'x': 1}"),
    (["pretrain", "--store", "x", "--epochs", "abc"], "epochs: expected an integer, got 'abc'"),
    (["pretrain", "--store", "x", "--set", "model_kwargs=[1,"], "not valid YAML"),
    (["synth", "--n", "0", "--out", "x"], "n: must be positive"),
    (["pretrain", "--store", "x", "--set", "model_kwargs.width=abc"],
     "model_kwargs.width: expected an integer, got 'abc'"),
    (["finetune", "--store", "x", "--strategy", "scratch", "--set", "model_kwargs.layers=[1,a]"],
     "model_kwargs.layers: expected a list of integers"),
    (["label", "--store", "a", "--input", "b"], "store: give a store"),
])
def test_bad_settings_fail_in_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_pipeline_overrides_are_checked_in_one_line(tmp_path, capsys):
    from conftest import QUICKSTART

    work = f"work={tmp_path / 'w'}"
    for override, message in [("deepfake.n=[1,", "not valid YAML"),
                              ("epochs=abc", "unknown key 'epochs'"),
                              ("nosuch.n=1", "no stage named 'nosuch'"),
                              ("deepfake.n.x=1", "n is 256, not a mapping")]:
        assert main(["run", str(QUICKSTART), "--set", override, "--set", work]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (override, err)
    assert not (tmp_path / "w").exists()


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(_Boom.target),))


@pytest.mark.parametrize("loader", ["checkpoint", "regressor", "classifier", "cli"])
def test_files_that_would_run_code_are_refused_unrun(tmp_path, loader, capsys):
    from ecgtransfer.models.classifier import load_classifier
    from ecgtransfer.models.regressor import load_regressor
    from ecgtransfer.training.checkpoint import load_checkpoint

    _Boom.target = str(tmp_path / "ran")
    bad = tmp_path / "model.pt"
    torch.save({"format": "ecgtransfer-regressor/1", "meta": _Boom()}, bad)
    if loader == "cli":
        assert main(["finetune", "--store", str(tmp_path), "--from", str(bad),
                     "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
    else:
        load = {"checkpoint": load_checkpoint, "regressor": load_regressor,
                "classifier": load_classifier}[loader]
        with pytest.raises(ValueError, match="refused to load it"):
            load(bad)
    assert not (tmp_path / "ran").exists()


def test_fingerprints_follow_code_and_algorithm_versions(monkeypatch):
    import ecgtransfer
    from ecgtransfer.features import intervals
    from ecgtransfer.pipeline import StageSpec, _fingerprint

    label = StageSpec("labels", "label", {"store": "s"}, 1)
    synth = StageSpec("deepfake", "synth", {"n": 4}, 1)
    before = (_fingerprint(label, {}), _fingerprint(synth, {}))
    prepare = StageSpec("ptbxl", "prepare", {"source": "ptbxl", "sample": True}, 1)
    prepared = _fingerprint(prepare, {})
    monkeypatch.setattr(intervals, "LABELLER_VERSION", intervals.LABELLER_VERSION + 1)
    assert _fingerprint(label, {}) != before[0]  # a new labeller never reuses old labels
    assert _fingerprint(synth, {}) == before[1]
    from ecgtransfer.data import ptbxl

    monkeypatch.setattr(ptbxl, "INDEX_VERSION", ptbxl.INDEX_VERSION + "x")
    assert _fingerprint(prepare, {}) != prepared  # nor a store whose index has changed
    monkeypatch.setattr(ecgtransfer, "__version__", ecgtransfer.__version__ + ".post1")
    assert _fingerprint(synth, {}) != before[1]  # nor a new package version any output
    monkeypatch.undo()
    import ecgtransfer.stages as stages

    real = stages._module_hash  # nor edited code: the generator's wrapper here
    monkeypatch.setattr(stages, "_module_hash",
                        lambda m: real(m) + ("x" if m == "ecgtransfer.data.deepfake" else ""))
    assert _fingerprint(synth, {}) != before[1] and _fingerprint(label, {}) == before[0]


def test_a_damaged_tracking_store_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.db").write_text("not a database")
    assert main(["compare", "--tracking-uri", f"sqlite:///{tmp_path / 'bad.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("ecgtransfer: error: sqlite:///")
    assert "not a usable MLflow tracking store" in err and "Traceback" not in err


def test_every_package_is_in_the_wheel():
    """pyproject lists packages by hand (data_manifests/ is mapped into the package), so a new
    subpackage left off the list would be missing from an installed wheel (as stages/ was)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts)
             for p in (root / "ecgtransfer").rglob("__init__.py")}
    assert found - listed == set(), f"packages missing from pyproject.toml: {found - listed}"


def test_a_signal_during_a_tracking_write_waits_for_its_end():
    """SIGTERM (or Ctrl-C) during a write to the tracking store is held until the write is
    over, so the write's SQLite transaction is never left open (marking the run KILLED would
    then fail with 'database is locked')."""
    import os
    import signal

    from ecgtransfer import tracking

    order = []
    previous = signal.signal(signal.SIGTERM, lambda *_: order.append("signal"))
    try:
        def write():
            os.kill(os.getpid(), signal.SIGTERM)
            order.append("write done")

        tracking._call(write)
        order.append("after")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert order == ["write done", "signal", "after"]


def test_a_stages_threads_setting_is_given_back(deepfake_labelled, tmp_path):
    """``threads`` is the stage's setting, not the process's: torch has the caller's number of
    threads again once the stage ends (pretrain, the models table)."""
    import torch

    from ecgtransfer.stages import Context, get_stage
    from ecgtransfer.stages.models import ModelsConfig, cost_table
    from ecgtransfer.stages.pretrain import PretrainConfig

    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    cost_table(ModelsConfig(models=["cnn"], fs=[100.0], threads=wanted))
    assert torch.get_num_threads() == before
    stage = get_stage("pretrain")
    stage.run(PretrainConfig(store=str(deepfake_labelled.path), targets=["qrs"], epochs=1,
                             fs=100.0, device="cpu", threads=wanted, out=str(tmp_path / "pre"),
                             tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
              Context(progress=False))
    assert torch.get_num_threads() == before


def test_every_tag_written_or_read_is_in_the_vocabulary(tmp_path):
    """The tag vocabulary is the one list of run tags: the package writes and reads no
    ``ecgtransfer.`` tag it does not declare (read from the source, so a new stage cannot slip
    one in), and the tracking layer refuses an undeclared one at write, read and search."""
    from ecgtransfer import tracking
    from ecgtransfer.tags import VOCABULARY, tag_values

    used = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in ("tag_values", "find_runs"):
                used |= {k.arg for k in node.keywords if k.arg} - {"status", "run_ids"}
            elif name in ("tag", "tag_key") and node.args and isinstance(node.args[0],
                                                                        ast.Constant):
                used.add(node.args[0].value)
    assert used, "found no tag in the package's source"
    assert used - set(VOCABULARY) == set(), f"undeclared tags: {used - set(VOCABULARY)}"
    with pytest.raises(ValueError, match="'stategy' is not an ecgtransfer tag"):
        tag_values(stategy="scratch")
    with pytest.raises(ValueError, match="is not an ecgtransfer tag"):
        tracking.RunRecord("r", "n", "FINISHED", {}, {}, {}).tag("sorce")
    tracker = tracking.Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(ValueError, match="'sorce' is not an ecgtransfer tag"):
        with tracker.open_run(experiment="t", name="r", tags={"ecgtransfer.sorce": "x"}):
            pass
    with pytest.raises(ValueError, match="'sorce' is not an ecgtransfer tag"):
        tracker.find_runs(["t"], sorce="x")


def test_a_new_stage_is_one_module_and_its_registration(tmp_path, ptbxl_store, monkeypatch,
                                                        capsys):
    """tests/toy_stage.py, registered: a command with its flags and help, the same one-line
    errors, a pipeline stage with its own fingerprint (its module's code in it), and the
    documented Python call; all three give the number the store holds."""
    import json

    import numpy as np
    import yaml

    import toy_stage
    from ecgtransfer import stages
    from ecgtransfer.pipeline import load_pipeline, run_pipeline
    from ecgtransfer.stages import Context, register_stage

    monkeypatch.setattr(stages, "_REGISTRY", dict(stages._REGISTRY))  # ends with the test
    register_stage(toy_stage.STAGE)
    k = list(ptbxl_store.leads).index("V1")
    expected = float(np.median([np.ptp(ptbxl_store[i][k]) for i in range(10)]))

    assert main(["toy", "--store", str(ptbxl_store.path), "--lead", "V1", "--records", "10",
                 "--out", str(tmp_path / "cli")]) == 0
    said = json.loads((tmp_path / "cli" / "amplitude.json").read_text())
    assert said["median_mv"] == pytest.approx(expected) and said["records"] == 10
    assert "median peak-to-peak of V1" in capsys.readouterr().out
    assert main(["toy", "--store", str(ptbxl_store.path), "--records", "0"]) == 2
    assert capsys.readouterr().err.strip() == "ecgtransfer: error: records: must be positive, got 0"
    with pytest.raises(SystemExit):
        main(["toy", "--help"])
    assert "--lead LEAD" in capsys.readouterr().out

    file = tmp_path / "toy.yaml"
    file.write_text(yaml.safe_dump({
        "name": "toy", "experiment": "toy", "work": str(tmp_path / "work"),
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "stages": [{"name": "amplitude", "stage": "toy", "store": str(ptbxl_store.path),
                    "lead": "V1", "records": 10}]}))
    (done,) = run_pipeline(load_pipeline(file), progress=False)
    assert json.loads((Path(done.output) / "amplitude.json").read_text()) == said
    assert "toy_stage" in toy_stage.STAGE.code_hashes()  # its code is in its fingerprint
    (again,) = run_pipeline(load_pipeline(file), progress=False)
    assert again.reused and again.fingerprint == done.fingerprint

    config = toy_stage.ToyConfig(store=str(ptbxl_store.path), lead="V1", records=10,
                                 out=str(tmp_path / "py"))
    result = stages.get_stage("toy").run(config, Context(progress=False))
    assert result.details == pytest.approx(expected)
