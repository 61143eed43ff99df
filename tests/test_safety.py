"""What nothing may do (docs/safety.md): replace a folder it did not write, write outside the
work folder, create a folder a typo named, trip over another process creating the same MLflow
store, or answer bad input with a traceback or a 770-character line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _fake_store(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    (folder / "store.json").write_text('{"source": "deepfake"}')
    (folder / "signals.i16").write_bytes(bytes(range(256)) * 8)
    (folder / "index.csv").write_text("record_id\n00001\n")
    return _snapshot(folder)


# ---- output folders ----------------------------------------------------------------------
def test_an_output_folder_is_written_only_by_its_own_command(tmp_path):
    from ecgtransfer.files import OUTPUT_MARKER, check_output_folder, mark_output_folder

    check_output_folder(tmp_path / "new", "compare")  # absent: fine, and not created
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", "compare")
    mark_output_folder(tmp_path / "empty", "compare")
    check_output_folder(tmp_path / "empty", "compare")  # its own
    with pytest.raises(ValueError, match="holds the output of `ecgtransfer compare`, which "
                                         "`ecgtransfer tune` may not replace"):
        check_output_folder(tmp_path / "empty", "tune")
    before = _fake_store(tmp_path / "store")
    with pytest.raises(ValueError, match=r"--out .*store: holds files that `ecgtransfer "
                                         r"explain` did not write \(index.csv, signals.i16, "
                                         r"store.json\)"):
        check_output_folder(tmp_path / "store", "explain", legacy=("explain.json",))
    assert _snapshot(tmp_path / "store") == before
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "file.txt", "compare")
    # a folder of an earlier version (no marker) is recognised by its own files
    old = tmp_path / "old"
    old.mkdir()
    (old / "comparison.csv").write_text("x\n")
    check_output_folder(old, "compare", legacy=("comparison.csv",))
    assert not (old / OUTPUT_MARKER).exists()


def test_pretrain_and_finetune_refuse_a_folder_they_did_not_write(deepfake_labelled, ptbxl_store,
                                                                 tmp_path):
    from conftest import run_stage
    from ecgtransfer.stages.finetune import FinetuneConfig
    from ecgtransfer.stages.pretrain import PretrainConfig

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = tmp_path / "store"
    before = _fake_store(store)
    with pytest.raises(ValueError, match="holds files that `ecgtransfer pretrain` did not write"):
        run_stage("pretrain", PretrainConfig(store=str(deepfake_labelled.path), targets=["qrs"],
                                             epochs=1, device="cpu", out=str(store),
                                             tracking_uri=uri))
    with pytest.raises(ValueError, match="holds files that `ecgtransfer finetune` did not write"):
        run_stage("finetune", FinetuneConfig(store=str(ptbxl_store.path), strategy="scratch",
                                             epochs=1, device="cpu", out=str(store),
                                             tracking_uri=uri))
    assert _snapshot(store) == before
    # another stage's run folder: refused by name
    ran = tmp_path / "ran"
    ran.mkdir()
    (ran / ".ecgtransfer-output").write_text('{"command": "pretrain"}')
    with pytest.raises(ValueError, match="holds the output of `ecgtransfer pretrain`"):
        run_stage("finetune", FinetuneConfig(store=str(ptbxl_store.path), strategy="scratch",
                                             epochs=1, device="cpu", out=str(ran),
                                             tracking_uri=uri))


# ---- pipelines ---------------------------------------------------------------------------
def _pipeline(folder: Path, name: str, stages: str, file: str = "p.yaml") -> Path:
    path = folder / file
    path.write_text(f"name: {name}\nwork: {folder / 'work'}\nstages:\n"
                    + textwrap.indent(textwrap.dedent(stages), "  "))
    return path


@pytest.mark.parametrize("name", ["../../../escaped", "/tmp/anywhere", "a/b", "a b", ".."])
def test_a_stage_name_is_an_identifier(tmp_path, name):
    from ecgtransfer.pipeline import PipelineError, load_pipeline

    path = _pipeline(tmp_path, "p", f"""\
        - name: ok
          stage: synth
          n: 4
        - name: '{name}'
          stage: synth
          n: 4
        """)
    with pytest.raises(PipelineError, match=rf"^{path}:7: stage name .*letters, digits, '_' "
                                            r"and '-' only"):
        load_pipeline(path)
    assert not (tmp_path / "work").exists() and not Path("/tmp/anywhere").exists()


def test_a_pipeline_name_that_makes_the_work_folder_is_an_identifier(tmp_path):
    from ecgtransfer.pipeline import PipelineError, load_pipeline

    path = tmp_path / "p.yaml"
    path.write_text("name: ../up\nstages:\n  - name: s\n    stage: synth\n    n: 4\n")
    with pytest.raises(PipelineError, match=rf"^{path}:1: name '../up' names the work folder"):
        load_pipeline(path)
    path.write_text(f"name: ../up\nwork: {tmp_path / 'w'}\nstages:\n  - name: s\n"
                    "    stage: synth\n    n: 4\n")
    assert load_pipeline(path).work == tmp_path / "w"  # with its own work folder, any name


def test_pipeline_files_in_a_circle_are_named_in_one_short_line(tmp_path):
    from ecgtransfer.pipeline import PipelineError, load_pipeline

    for me, other in (("a", "b"), ("b", "c"), ("c", "a")):
        _pipeline(tmp_path, me, f"""\
            - name: s
              stage: label
              store: ${{{other}.yaml:s}}
            """, file=f"{me}.yaml")
    with pytest.raises(PipelineError) as caught:
        load_pipeline(tmp_path / "a.yaml")
    message = str(caught.value)
    assert "in a circle: a.yaml -> b.yaml -> c.yaml -> a.yaml" in message, message
    assert len(message.splitlines()) == 1 and len(message) < 300, message


def test_a_duplicate_key_in_a_yaml_file_is_refused_with_its_line(tmp_path):
    from ecgtransfer.pipeline import PipelineError, load_pipeline

    path = _pipeline(tmp_path, "p", """\
        - name: s
          stage: synth
          n: 4
          n: 8
        """)
    with pytest.raises(PipelineError, match=rf"^{path}:7: 'n' is given twice \(first on line 6\)"):
        load_pipeline(path)


# ---- the tracking store ------------------------------------------------------------------
def test_a_tracking_uri_in_a_missing_folder_is_one_line_and_creates_nothing(cli, tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    done = cli("compare", "--tracking-uri", f"sqlite:///{missing}/m.db")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip().splitlines() == [
        f"ecgtransfer: error: sqlite:///{missing}/m.db: the folder {missing} does not exist; "
        "create it, or pass another --tracking-uri"]
    assert not (tmp_path / "no").exists()


@pytest.mark.slow
def test_processes_opening_a_new_tracking_store_at_once_wait_for_each_other(tmp_path):
    """Several processes opening the same new SQLite store within a second (two `ecgtransfer
    run` in a fresh folder): the first creates the tables, the others wait and find them."""
    code = ("import sys; from ecgtransfer import tracking; "
            "tracking.Tracker(sys.argv[1]).experiment(sys.argv[2]); print('ok')")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", code, uri, f"e{i}"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    import mlflow

    names = {e.name for e in mlflow.MlflowClient(uri).search_experiments()}
    assert {"e0", "e1", "e2"} <= names


def test_a_pipeline_work_folder_must_be_its_own(tmp_path):
    from ecgtransfer.pipeline import load_pipeline, run_pipeline

    path = tmp_path / "p.yaml"
    path.write_text("name: p\nstages:\n  - name: s\n    stage: synth\n    n: 2\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = _fake_store(tmp_path / "store")
    (tmp_path / "file").write_text("x")
    for work, message in ((tmp_path / "store", "holds files that `ecgtransfer run` did not write"),
                          (tmp_path / "file", "is a file, not a folder"),
                          (tmp_path / "file" / "sub", "cannot be made")):
        pipeline = load_pipeline(path, [f"work={work}", f"tracking_uri={uri}"])
        with pytest.raises(ValueError, match=rf"^work {work}: .*{message}"):
            run_pipeline(pipeline, progress=False)
    assert _snapshot(tmp_path / "store") == before and (tmp_path / "file").read_text() == "x"


def test_an_output_file_named_as_a_folder_is_one_line(cli, tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    for args, message in ((["models", "--out", "folder"], "--out folder: is a folder"),
                          (["models", "--out", "file/t.csv"], "file is a file, not a folder")):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip().splitlines() == [f"ecgtransfer: error: {message}; name a file "
                                                    "to write" if "is a folder" in message else
                                                    f"ecgtransfer: error: --out file/t.csv: "
                                                    f"{message}"], done.stderr
    assert (tmp_path / "file").read_text() == "x" and not any((tmp_path / "folder").iterdir())


@pytest.mark.slow
def test_a_training_stage_writes_into_the_folder_its_pipeline_made(ptbxl_store, tmp_path):
    """The pipeline leaves stage_run.json in a stage's folder before the stage runs; the stage
    (finetune here, without a grid) still finds the folder its own, and a re-run reuses it."""
    from ecgtransfer.pipeline import load_pipeline, run_pipeline

    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\nwork: {tmp_path / 'work'}\nstages:\n  - name: ft\n"
                    f"    stage: finetune\n    store: {ptbxl_store.path}\n"
                    "    strategy: scratch\n    fs: 100\n    epochs: 1\n    bootstrap: 0\n"
                    "    model_kwargs: {width: 8}\n")
    settings = [f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    first = run_pipeline(load_pipeline(path, settings), progress=False)
    assert (Path(first[0].output) / "model.pt").is_file() and not first[0].reused
    assert (Path(first[0].output) / "stage_run.json").is_file()
    assert run_pipeline(load_pipeline(path, settings), progress=False)[0].reused


@pytest.mark.parametrize("saved", ["folder", "- a list\n", "\xff\xfe"])
def test_a_damaged_run_config_is_one_line_on_resume(tmp_path, saved):
    from ecgtransfer.config import ConfigError, check_run_folder
    from ecgtransfer.stages.pretrain import PretrainConfig

    config = tmp_path / "config.yaml"
    if saved == "folder":
        config.mkdir()
    else:
        config.write_bytes(saved.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"config.yaml: .*the run folder is damaged"):
        check_run_folder(tmp_path, PretrainConfig(store="s"), resume=True, stage="pretrain")


def test_run_searches_take_plain_values_and_refuse_quotes(tmp_path):
    """Stages find runs by tag values through Tracker.find_runs (MLflow's query language stays
    inside tracking); a value that would change the query is refused, not spliced in."""
    from ecgtransfer import tracking

    tracker = tracking.Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(ValueError, match="pipeline_run: \"x' or '1'='1\" cannot be searched"):
        tracker.find_runs(["any"], pipeline_run="x' or '1'='1")
    with pytest.raises(ValueError, match="'a b' is not an MLflow run id"):
        tracker.find_runs(["any"], run_ids=["a b"])
    assert tracker.find_runs(["any"], run_ids=[]) == []
