"""Pipeline outputs follow the code that made them: a stage's fingerprint holds a hash of every
module it may run, so editing its code runs it (and what is downstream) again, and editing
anything else (docs, comments, another stage's module) reuses it; ``--rerun`` forces stages and
``--plan`` says what would happen and why."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import copy_records


def test_a_code_hash_ignores_comments_docstrings_and_layout():
    from ecgtransfer.stages import code_hash

    a = 'def f(x):\n    "Add one."\n    return x+1  # plus one\n'
    b = 'def f(x):\n    """Add one, documented otherwise."""\n\n    return (x + 1)\n'
    c = 'def f(x):\n    "Add one."\n    return x+2\n'
    assert code_hash(a) == code_hash(b)
    assert code_hash(a) != code_hash(c)


def test_a_stage_holds_the_code_it_runs_and_no_other_stage():
    from ecgtransfer.stages import get_stage, list_stages

    label = set(get_stage("label").code_hashes())
    assert {"ecgtransfer.stages.label", "ecgtransfer.features.intervals",
            "ecgtransfer.features.labels", "ecgtransfer.data.store"} <= label
    pretrain = set(get_stage("pretrain").code_hashes())
    assert {"ecgtransfer.stages.trained", "ecgtransfer.training.loop",
            "ecgtransfer.models.registry"} <= pretrain
    # a search runs the stages it searches: their code is its code
    tune = set(get_stage("tune").code_hashes())
    assert {"ecgtransfer.stages.finetune", "ecgtransfer.stages.pretrain"} <= tune
    shared = {"ecgtransfer.stages", "ecgtransfer.stages.trained", "ecgtransfer.stages._ptbxl"}
    for stage in list_stages():
        others = {f"ecgtransfer.stages.{s}" for s in (stage.name, *stage.flags_from)}
        modules = set(stage.code_hashes())
        assert not {m for m in modules if m.startswith("ecgtransfer.stages.")} - others - shared, \
            stage.name
        assert all(m.startswith("ecgtransfer") for m in modules)


@pytest.fixture
def small(tmp_path, ludb_root):
    """A two-stage pipeline (prepare two LUDB records, label them), not yet run."""
    records = copy_records(ludb_root / "data", ["1", "2"], tmp_path / "ludb")
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\nwork: {tmp_path / 'work'}\ntracking_uri: sqlite:///"
                    f"{tmp_path / 'mlflow.db'}\nstages:\n"
                    f"  - name: ludb\n    stage: prepare\n    source: wfdb\n"
                    f"    input: {records}\n    fs: 100\n"
                    "  - name: labels\n    stage: label\n    store: ${ludb}\n")
    return path


def _ran(path, **kw) -> dict[str, bool]:
    from ecgtransfer.pipeline import load_pipeline, run_pipeline

    return {r.name: not r.reused for r in run_pipeline(load_pipeline(path), progress=False,
                                                       **kw)}


def _edited(monkeypatch, module: str) -> None:
    """As if ``module``'s code had been edited."""
    import ecgtransfer.stages as stages

    real = stages._module_hash
    monkeypatch.setattr(stages, "_module_hash",
                        lambda m: real(m) + ("-edited" if m == module else ""))


@pytest.mark.slow
def test_editing_a_stages_code_runs_it_and_its_downstream_again_and_nothing_else(small,
                                                                                 monkeypatch):
    from ecgtransfer.pipeline import load_pipeline, plan_pipeline

    assert _ran(small) == {"ludb": True, "labels": True}
    assert _ran(small) == {"ludb": False, "labels": False}
    with monkeypatch.context() as m:  # another stage's module: nothing runs
        _edited(m, "ecgtransfer.stages.finetune")
        assert _ran(small) == {"ludb": False, "labels": False}
    with monkeypatch.context() as m:  # the labeller: the label stage runs, prepare is reused
        _edited(m, "ecgtransfer.features.intervals")
        plan = {r.name: r for r in plan_pipeline(load_pipeline(small))}
        assert plan["ludb"].action == "reuse"
        assert plan["labels"].action == "run"
        assert plan["labels"].why == "changed code (features.intervals)"
        assert plan["labels"].estimate_s is not None and plan["labels"].estimate_s > 0
        assert _ran(small) == {"ludb": False, "labels": True}
    with monkeypatch.context() as m:  # the store's ingest: prepare and, downstream, label
        _edited(m, "ecgtransfer.data.ingest")
        plan = {r.name: r for r in plan_pipeline(load_pipeline(small))}
        assert plan["ludb"].why.startswith("changed code (data.ingest")
        # against its last run, made with the edited labeller: both differ now
        assert plan["labels"].why == ("changed code (features.intervals); upstream changed "
                                      "(ludb)")
        assert _ran(small) == {"ludb": True, "labels": True}


@pytest.mark.slow
def test_rerun_forces_a_stage_and_its_downstream_and_a_failed_rerun_loses_nothing(
        small, monkeypatch):
    import ecgtransfer.stages as stages
    from ecgtransfer.pipeline import PipelineError, load_pipeline, plan_pipeline

    _ran(small)
    assert _ran(small, rerun=["labels"]) == {"ludb": False, "labels": True}
    plan = plan_pipeline(load_pipeline(small), ["ludb"])
    assert [(r.action, r.why) for r in plan] == [("run", "--rerun"),
                                                 ("run", "upstream runs again (--rerun)")]
    assert _ran(small, rerun=["all"]) == {"ludb": True, "labels": True}
    with pytest.raises(PipelineError, match="--rerun nope: .* has no stage named 'nope'"):
        _ran(small, rerun=["nope"])
    # a re-run that fails puts the earlier outputs back whole
    folder = next((small.parent / "work" / "labels").glob("*/stage.json")).parent
    before = sorted(p.name for p in folder.rglob("*"))

    def boom(config, context):
        raise RuntimeError("the labeller broke")

    label = stages.get_stage("label")
    monkeypatch.setitem(stages._REGISTRY, "label", dataclasses.replace(label, run=boom))
    with pytest.raises(RuntimeError, match="the labeller broke"):
        _ran(small, rerun=["labels"])
    assert sorted(p.name for p in folder.rglob("*")) == before
    assert not list(folder.parent.glob(".*rerun*"))


def test_plan_prints_each_stage_without_running_anything(small, cli):
    text = small.read_text() + "    grid: {workers: [1, 2]}\n"
    small.write_text(text)
    done = cli("run", str(small), "--plan")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("prepare ludb" in line and "| run" in line and "never run here" in line
               for line in lines), done.stdout
    assert any("label labels" in line and "|      2 |" in line for line in lines), done.stdout
    assert lines[-1] == "2 of 2 stages run, about 0 s plus 2 never timed here"
    assert not (small.parent / "work").exists() and not (small.parent / "mlflow.db").exists()
