"""Pipelines: the quickstart in a reduced size end to end (nested MLflow runs, the comparison), a
re-run that reuses every stage, a killed run that continues, and bad files named by line before
any work; ``compare`` on runs made here gives the numbers computed by hand; a real ``mlflow
server`` serves the runs over its REST API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgtransfer.comparison.report import write_comparison
from ecgtransfer.comparison.statistics import comparison_table
from ecgtransfer.stages.compare import finetune_runs
from ecgtransfer.tracking import Tracker
from ecgtransfer.pipeline import PipelineError, load_pipeline, run_pipeline

from conftest import QUICKSTART, REPO, SMALL  # noqa: E402


def _runs(uri: str, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_quickstart_runs_every_stage_under_one_parent(quickstart):
    results = {r.name: r for r in quickstart["results"]}
    assert list(results) == ["ptbxl", "deepfake", "labels", "pretrain", "finetune", "compare"]
    assert not any(r.reused for r in results.values())
    assert len(results["finetune"].run_ids) == 4  # scratch, single, scratch x4, combined x 1 seed
    client, runs = _runs(quickstart["uri"], "quickstart")
    by_id = {r.info.run_id: r for r in runs}
    (parent,) = [r for r in runs if r.data.tags.get("ecgtransfer.stage") == "pipeline"]
    assert parent.info.status == "FINISHED"
    stage_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    kinds = [r.data.tags.get("ecgtransfer.stage_kind", r.data.tags["ecgtransfer.stage"])
             for r in stage_runs]
    assert sorted(kinds) == sorted(["prepare", "synth", "label", "pretrain", "finetune", "compare"])
    for run_id in results["finetune"].run_ids:  # fine-tunes nest under the finetune stage's run
        grand = by_id[by_id[run_id].data.tags["mlflow.parentRunId"]]
        assert grand.data.tags["ecgtransfer.stage_kind"] == "finetune"
        assert grand.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert by_id[run_id].data.tags["ecgtransfer.pipeline_run"] == parent.info.run_id
        # a cross-validation: its folds nest under it, and it pools their test records
        cv = by_id[run_id]
        assert cv.data.tags["ecgtransfer.evaluation"] == "cv" and cv.data.tags["ecgtransfer.cv"] == "3"
        folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run_id]
        assert sorted(r.data.tags["ecgtransfer.fold"] for r in folds) == ["1", "2", "3"]
        assert {r.data.tags["ecgtransfer.evaluation"] for r in folds} == {"fold"}
        assert all(r.info.run_name.endswith(f" fold{r.data.tags['ecgtransfer.fold']}") for r in folds)
        assert {r.data.tags["ecgtransfer.strategy"] for r in folds} == {cv.data.tags["ecgtransfer.strategy"]}
        n_tested = sum(int(r.data.params["data.n_test"]) for r in folds)
        assert n_tested == int(cv.data.params["data.n_test"]) > 300  # each record tested once
        assert np.isfinite(cv.data.metrics["test_macro_auroc"])

    table = pd.read_csv(Path(results["compare"].output) / "comparison.csv")
    assert sorted(table["strategy"]) == ["combined", "scratch", "scratch", "single"]
    assert (table["seeds"] == 1).all() and (table["cv"] == 3).all()
    assert table["interval"].str.startswith("bootstrap: 342 records x 1 seed, 3 folds").all()
    assert (Path(results["compare"].output) / "comparison.png").stat().st_size > 10_000
    compare_run = by_id[results["compare"].run_ids[0]]
    assert {a.path for a in client.list_artifacts(compare_run.info.run_id)} == {
        "comparison.csv", "comparison.md", "comparison.png", "pairs.csv", "per_class.csv",
        "per_class.png"}


def test_rerun_reuses_every_stage_and_a_killed_run_continues(quickstart, monkeypatch):
    pipeline = quickstart["pipeline"]
    _, before = _runs(quickstart["uri"], "quickstart")
    again = run_pipeline(pipeline, progress=False)
    assert all(r.reused for r in again)
    _, after = _runs(quickstart["uri"], "quickstart")
    assert len(after) == len(before)  # no new MLflow run

    # a changed compare setting: the stages before it are reused, compare is killed, then
    # a re-run finishes it
    changed = load_pipeline(QUICKSTART, [*SMALL, f"work={quickstart['folder'] / 'work'}",
                                         f"tracking_uri={quickstart['uri']}",
                                         "compare.metric=accuracy"])
    import dataclasses

    from ecgtransfer import stages

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    original = stages.get_stage("compare")
    monkeypatch.setitem(stages._REGISTRY, "compare", dataclasses.replace(original, run=killed))
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(changed, progress=False)
    monkeypatch.setitem(stages._REGISTRY, "compare", original)
    client, runs = _runs(quickstart["uri"], "quickstart")
    parents = [r for r in runs if r.data.tags.get("ecgtransfer.stage") == "pipeline"]
    assert sorted(r.info.status for r in parents) == ["FINISHED", "KILLED"]
    resumed = run_pipeline(changed, progress=False)
    assert [r.reused for r in resumed] == [True] * 5 + [False]
    assert resumed[-1].output != again[-1].output  # a new folder; the old comparison stays
    assert Path(again[-1].output, "comparison.csv").exists()


def test_labels_are_handed_on_by_name_not_found_by_glob(quickstart):
    """The label stage hands its file to pretrain explicitly, so a second label file in the
    store (another labeller config) does not change what the pipeline trains on; and the
    pipeline's label stage has the CLI's defaults (one config class for both)."""
    from ecgtransfer.pipeline import _configs
    from ecgtransfer.stages import get_stage

    pipeline = quickstart["pipeline"]
    results = {r.name: r for r in quickstart["results"]}
    labels_file = results["labels"].outputs["labels"]
    assert Path(labels_file).exists() and Path(labels_file).parent.name != "store"
    store = Path(results["labels"].output)
    (store / "labels-0123456789ab.csv").write_text("record_id\n")  # a stray second file
    spec = next(s for s in pipeline.stages if s.kind == "pretrain")
    settings = {k: (results["labels"].output if v == "${labels}" else v)
                for k, v in spec.settings.items()}
    ((_, config),) = _configs(pipeline, spec, settings, Path("x"), results, [])
    assert config.labels == labels_file and config.store == str(store)
    label_spec = next(s for s in pipeline.stages if s.kind == "label")
    cli_default = next(f.default for f in get_stage("label").settings() if f.name == "workers")
    assert "workers" in label_spec.settings or cli_default is None
    (store / "labels-0123456789ab.csv").unlink()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("stage: synth", "stage: synthesise"), r":\d+: stage 'deepfake': unknown stage 'synthesise'"),
    (lambda t: t.replace("store: ${deepfake}", "store: ${deepfak}"), r":\d+: stage 'labels': store refers to \$\{deepfak\}"),
    (lambda t: t.replace("store: ${labels}", "store: ${finetune}"), r"no earlier stage is named 'finetune'"),
    (lambda t: t.replace("epochs: 10\n    batch_size: 32", "epoch: 10\n    batch_size: 32"), r":\d+: stage 'pretrain': unknown key 'epoch'"),
    (lambda t: t.replace("sample: true", "root: /no/such/ptbxl"), r":\d+: stage 'ptbxl': root /no/such/ptbxl does not exist"),
    (lambda t: t.replace("{strategy: single,", "{strategy: singel,"), r"stage 'finetune': strategy: 'singel' is not"),
    (lambda t: t + "  - name: compare\n    stage: compare\n", r"stage name 'compare' is used twice"),
])
def test_bad_pipeline_files_fail_before_any_work(tmp_path, edit, message):
    path = tmp_path / "p.yaml"
    path.write_text(edit(QUICKSTART.read_text()).replace("runs/quickstart", str(tmp_path / "work")))
    with pytest.raises(PipelineError, match=message) as info:
        load_pipeline(path)
    assert str(info.value).startswith(f"{path}:")
    assert not (tmp_path / "work").exists()


def test_the_line_named_is_the_offending_one(tmp_path):
    path = tmp_path / "p.yaml"
    text = QUICKSTART.read_text().replace("stage: synth", "stage: synthesise")
    path.write_text(text)
    with pytest.raises(PipelineError) as info:
        load_pipeline(path)
    line = int(str(info.value).split(":")[1])
    assert "stage: synthesise" in text.splitlines()[line - 1]


def test_cli_run_names_a_bad_file_in_one_line(tmp_path, cli):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nstages:\n  - name: a\n    stage: pretrain\n    store: ${b}\n")
    done = cli("run", str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"ecgtransfer: error: {path}:5: stage 'a': store refers to "
                                   "${b}, and no earlier stage is named 'b'")


def _log_finetune(client, experiment_id, strategy, fraction, seed, auroc, accuracy, f1,
                  setting="s1", ci=None, source="deepfake"):
    run = client.create_run(experiment_id, tags={
        "ecgtransfer.stage": "finetune", "ecgtransfer.task": "single_label",
        "ecgtransfer.split": "folds", "ecgtransfer.source": source if strategy != "scratch" else "none",
        "ecgtransfer.source_targets": "qrs", "ecgtransfer.strategy": strategy,
        "ecgtransfer.freeze": "full", "ecgtransfer.train_fraction": f"{fraction:g}",
        "ecgtransfer.seed": str(seed), "ecgtransfer.setting": setting})
    for name, value in (("macro_auroc", auroc), ("accuracy", accuracy), ("macro_f1", f1)):
        client.log_metric(run.info.run_id, f"test_{name}", value)
        if ci:
            client.log_metric(run.info.run_id, f"test_{name}_ci_low", value - ci)
            client.log_metric(run.info.run_id, f"test_{name}_ci_high", value + ci)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_compare_against_a_source(tmp_path, cli):
    """``--against deepfake``: each other source's transfer set against DeepFake's (same
    strategy, targets, fraction and seeds), not against scratch."""
    import mlflow

    from ecgtransfer.comparison.report import sentences
    from ecgtransfer.comparison.statistics import paired_differences

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.create_experiment("src")
    for seed, a in {0: 0.70, 1: 0.74, 2: 0.78}.items():
        _log_finetune(client, exp, "single", 0.1, seed, a, 0.5, 0.3)
        _log_finetune(client, exp, "single", 0.1, seed, a + 0.05 + seed / 100, 0.5, 0.3,
                      source="deepfake+warped")
        _log_finetune(client, exp, "scratch", 0.1, seed, a - 0.1, 0.4, 0.2)
    runs = finetune_runs(Tracker(uri), ["src"])
    against = paired_differences(runs, against="deepfake")
    assert list(against["source"]) == ["deepfake+warped"]  # deepfake has no baseline of its own
    assert against["delta"].iloc[0] == pytest.approx(0.06)
    assert against["pairs"].iloc[0] == 3 and against["wins"].iloc[0] == 3
    assert "vs single qrs from deepfake (full)" in sentences(against)[0]
    assert len(paired_differences(runs)) == 2  # against scratch: both sources
    done = cli("compare", "--experiment", "src", "--tracking-uri", uri, "--against", "deepfake",
               "--out", str(tmp_path / "c"))
    assert done.returncode == 0 and "+0.060" in done.stdout
    bad = cli("compare", "--experiment", "src", "--tracking-uri", uri, "--against", "ptbxl",
              "--out", str(tmp_path / "d"))
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode != 0 and len(lines) == 1
    assert "--against ptbxl" in lines[0] and "deepfake, deepfake+warped" in lines[0]


def test_compare_gives_the_numbers_computed_by_hand(tmp_path, cli, monkeypatch):
    import mlflow
    from scipy import stats

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.create_experiment("cmp")
    aurocs = {0: 0.70, 1: 0.74, 2: 0.78}
    for seed, a in aurocs.items():
        _log_finetune(client, exp, "single", 0.1, seed, a, 0.5 + seed / 10, 0.3)
        _log_finetune(client, exp, "scratch", 0.1, seed, a - 0.1, 0.4, 0.2)
    _log_finetune(client, exp, "single", 1.0, 0, 0.9, 0.8, 0.6, ci=0.05)
    _log_finetune(client, exp, "single", 1.0, 0, 0.5, 0.5, 0.5, setting="other lr")
    client.create_run(exp, tags={"ecgtransfer.stage": "finetune"})  # unfinished: left out

    runs = finetune_runs(Tracker(uri), ["cmp"])
    assert len(runs) == 8
    table = comparison_table(runs).set_index(["strategy", "train_fraction", "setting"])
    row = table.loc[("single", 0.1, "s1")]
    values = np.array(list(aurocs.values()))
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    assert row["seeds"] == 3 and row["macro_auroc"] == pytest.approx(0.74)
    assert row["macro_auroc_low"] == pytest.approx(0.74 - half)
    assert row["macro_auroc_high"] == pytest.approx(0.74 + half)
    assert row["accuracy"] == pytest.approx(0.6)
    assert table.loc[("scratch", 0.1, "s1"), "macro_auroc"] == pytest.approx(0.64)
    one = table.loc[("single", 1.0, "s1")]  # one seed: its own bootstrap interval
    assert one["seeds"] == 1 and one["interval"] == "bootstrap"
    assert (one["macro_auroc_low"], one["macro_auroc_high"]) == pytest.approx((0.85, 0.95))
    assert table.loc[("single", 1.0, "other lr"), "macro_auroc"] == pytest.approx(0.5)  # not pooled

    from ecgtransfer.comparison.report import sentences
    from ecgtransfer.comparison.statistics import paired_differences

    diffs = paired_differences(runs).set_index(["strategy", "train_fraction", "setting"])
    assert len(diffs) == 1  # single at 1.0 has no scratch baseline; "other lr" neither
    paired = diffs.loc[("single", 0.1, "s1")]
    assert paired["pairs"] == 3 and paired["wins"] == 3
    assert paired["delta"] == pytest.approx(0.1)
    assert (paired["delta_low"], paired["delta_high"]) == pytest.approx((0.1, 0.1))
    (said,) = sentences(paired_differences(runs))
    assert "vs scratch at train fraction 0.1: +0.100 macro AUROC [+0.100, +0.100] over 3 seeds" in said

    paths = write_comparison(comparison_table(runs), tmp_path / "out")
    assert pd.read_csv(paths["csv"]).shape[0] == 4
    assert "0.740 [" in paths["md"].read_text()
    done = cli("compare", "--experiment", "cmp", "--tracking-uri", uri, "--out", str(tmp_path / "c"))
    assert done.returncode == 0 and "4 groups" in done.stdout
    missing = cli("compare", "--experiment", "nope", "--tracking-uri", uri)
    assert missing.returncode == 2 and "--experiment nope: no such MLflow experiment" in missing.stderr

    # a kill while the files are written leaves the old files whole and no temporary file
    # (SIGTERM reaches here as KeyboardInterrupt); one left by SIGKILL goes on the next run
    from matplotlib.figure import Figure

    out = tmp_path / "out"
    before = paths["png"].read_bytes()
    (out / ".comparison.csv.stale.tmp").write_text("half")

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", killed)
    with pytest.raises(KeyboardInterrupt):
        write_comparison(comparison_table(runs), out)
    assert not list(out.glob("*.tmp")) and paths["png"].read_bytes() == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser():
    """Headless Chromium through Selenium (Debian's chromium and chromium-driver), or None."""
    import shutil

    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        return None
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1600,1000"):
        options.add_argument(arg)
    options.binary_location = binary
    return lambda: webdriver.Chrome(service=Service(driver), options=options)


def _see_the_comparison(link: str, quickstart) -> None:
    """Open ``link`` in the browser: the fine-tune runs, named by strategy, and the test macro
    AUROC column are on the page with no click; the screenshot goes to the test's folder."""
    expected = {r.name: r for r in quickstart["results"]}["finetune"].run_ids
    client, _ = _runs(quickstart["uri"], "quickstart")
    names = [client.get_run(i).data.tags["mlflow.runName"] for i in expected]
    assert {n.split()[0] for n in names} == {"scratch", "single", "combined"}  # strategy first
    wanted = [f"{len(expected)} matching runs", "test_macro_a", *names]
    browser = _browser()()
    try:
        browser.get(link)
        deadline = time.time() + 60
        text = ""
        while time.time() < deadline:  # the table fills in after the page
            text = browser.find_element("tag name", "body").text
            if all(w in text for w in wanted):
                break
            time.sleep(0.5)
        browser.save_screenshot(str(quickstart["folder"] / "ui.png"))
    finally:
        browser.quit()
    missing = [w for w in wanted if w not in text]
    assert not missing, (missing, text[:2000])
    assert "test_macro_a" in text and "Sort: test_macro_auroc" in text


@pytest.fixture(scope="module")
def ui(quickstart):
    """``ecgtransfer ui`` on 127.0.0.1 against the quickstart's store: the link it printed and
    the server behind it. SIGTERM stops both at the end (exit 0, the port closed)."""
    import signal

    port = _free_port()
    uri = f"sqlite:///{quickstart['folder'] / 'mlflow.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "ecgtransfer", "ui", "--tracking-uri", uri,
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        line = proc.stdout.readline()  # printed once the server answers
        assert line.startswith("MLflow UI (experiment 'quickstart') at "), (
            line + proc.stderr.read()[-2000:] if proc.poll() is not None else line)
        # the server runs without MLflow's job processes (huey consumers): nothing of ours
        # uses them, and their start-up doubled the first visit's wait on 2 cores
        below = subprocess.run(["ps", "-eo", "ppid,pid,args"], capture_output=True,
                               text=True).stdout.splitlines()
        tree, rows = {proc.pid}, [r.split(None, 2) for r in below[1:]]
        for _ in range(4):
            tree |= {int(r[1]) for r in rows if int(r[0]) in tree}
        commands = [r[2] for r in rows if int(r[1]) in tree and len(r) == 3]
        assert any("mlflow" in c for c in commands), commands  # the check sees the server
        assert not [c for c in commands if "huey" in c or "_job_runner" in c], commands
        yield {"link": line.split(" at ", 1)[1].strip(), "base": base, "uri": uri}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "MLflow UI stopped" in out
        with pytest.raises(OSError):  # the server went with it
            urllib.request.urlopen(f"{base}/health", timeout=2)
    finally:
        if proc.poll() is None:  # a failed check: SIGTERM stops the server with it
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_ui_serves_the_quickstart_runs_at_the_printed_link(ui, quickstart):
    """The printed link opens the saved fine-tune view of the latest pipeline's experiment; the
    server behind it returns exactly the fine-tune runs, with their tags and test metrics,
    through the REST API."""
    base = ui["base"]
    page, _, query = ui["link"].partition("?")
    exp_id = page.rsplit("/", 2)[-2]
    assert page == f"{base}/#/experiments/{exp_id}/runs"
    assert query == "workflowType=machine_learning&viewStateShareKey=ecgtransfer-finetune"
    client, _ = _runs(ui["uri"], "quickstart")
    view = json.loads(client.get_experiment(exp_id).tags[
        "mlflow.sharedViewState.ecgtransfer-finetune"])
    from ecgtransfer.tracking import FINETUNE_FILTER

    assert view["searchFilter"] == FINETUNE_FILTER
    assert "metrics.`test_macro_auroc`" in view["selectedColumns"]
    with urllib.request.urlopen(f"{base}/", timeout=30) as r:
        assert r.status == 200 and b"<html" in r.read().lower()

    def api(path: str, body: dict) -> dict:
        request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?"
                                "experiment_name=quickstart", timeout=30) as r:
        assert json.loads(r.read())["experiment"]["experiment_id"] == exp_id
    found = api("runs/search", {"experiment_ids": [exp_id], "filter": view["searchFilter"]})
    runs = found["runs"]  # the cross-validations, one row each; not their fold runs
    expected = {r.name: r for r in quickstart["results"]}["finetune"].run_ids
    assert sorted(r["info"]["run_id"] for r in runs) == sorted(expected)
    every = api("runs/search", {"experiment_ids": [exp_id],
                                "filter": "tags.`ecgtransfer.stage` = 'finetune'"})["runs"]
    assert len(every) == len(expected) * 4  # each with its 3 folds
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert tags["ecgtransfer.strategy"] in ("scratch", "single", "combined")
        assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_a_person_sees_the_comparison_at_the_link(ui, quickstart):
    """Headless Chromium at the printed link: the fine-tune runs, named by strategy, with the
    test macro AUROC column, sorted by it, with no click."""
    if _browser() is None:
        pytest.skip("no browser: needs Debian's chromium and chromium-driver and the selenium "
                    "package (.ci/run installs them)")
    _see_the_comparison(ui["link"], quickstart)


def test_the_pipeline_run_carries_the_answer(quickstart):
    client, runs = _runs(quickstart["uri"], "quickstart")
    compare_run = {r.name: r for r in quickstart["results"]}["compare"].run_ids[0]
    parent = client.get_run(client.get_run(compare_run).data.tags["ecgtransfer.pipeline_run"])
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("**Does pretraining help?** ") and "vs scratch at train fraction 1" in note
    assert "| task" in note and "n_test" in note  # the Markdown table, with its sizes
    assert parent.data.tags.get("mlflow.user")  # who ran it, as on every run
    metrics = parent.data.metrics
    assert any(k.startswith("test_macro_auroc.scratch") for k in metrics)
    assert any(k.startswith("delta_macro_auroc.single") for k in metrics)
    files = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert {"comparison/comparison.json", "comparison/comparison.png",
            "comparison/answer.md"} <= files
    exp = client.get_experiment(parent.info.experiment_id)
    assert exp.tags["mlflow.note.content"].startswith("DeepFake-pretrained")


def test_a_long_answer_is_shortened_in_the_description_not_cut(monkeypatch):
    """MLflow keeps 8,000 characters of a description: a longer answer (per-class sentences of
    two tasks) keeps whole sentences there and points at answer.md, which holds all of it."""
    from ecgtransfer.stages.compare import _answer

    class Run:
        def __init__(self):
            self.texts, self.note = {}, None

        def log_metrics(self, values):
            pass

        def log_table(self, table, name):
            pass

        def log_artifact(self, path, folder=None):
            pass

        def log_text(self, text, name):
            self.texts[name] = text

        def set_note(self, text):
            self.note = text

    said = [f"combined from deepfake vs scratch at train fraction 0.{i}: +0.0{i} macro AUROC "
            + "x" * 300 for i in range(40)]
    from ecgtransfer.comparison import report

    monkeypatch.setattr(report, "markdown", lambda table, notes=(): "| task | ... |")
    run = Run()
    _answer(run, pd.DataFrame(columns=["task"]), pd.DataFrame(), "macro_auroc", said, {}, [])
    assert len(run.note) <= 8000 and "comparison/answer.md" in run.note
    assert run.note.count("x" * 300) == run.note.count("macro AUROC") > 5  # whole sentences
    assert all(s in run.texts["comparison/answer.md"] for s in said)


def test_compare_without_flags_reads_the_latest_pipeline(quickstart, cli):
    uri = f"sqlite:///{quickstart['folder'] / 'mlflow.db'}"
    done = cli("compare", "--tracking-uri", uri, "--out", "c")
    assert done.returncode == 0, done.stderr
    assert "4 runs in 4 groups" in done.stdout and "scratch" in done.stdout


@pytest.mark.parametrize("name", ["baseline", "ptbxl_a_to_b", "deepfake_to_ptbxl", "label_fraction"])
def test_study_pipelines_are_valid(name, ptbxl_root, tmp_path):
    """The full-size pipelines check out (pointed at the sample instead of a full download),
    and without a download they say so on the line of ``root``."""
    path = REPO / "pipelines" / f"{name}.yaml"
    pipeline = load_pipeline(path, [f"ptbxl.root={ptbxl_root}", f"work={tmp_path / 'w'}"])
    kinds = [s.kind for s in pipeline.stages]
    assert kinds[-1] == "compare" and "finetune" in kinds
    if not Path("data/ptbxl").exists():
        with pytest.raises(PipelineError, match=r":\d+: stage 'ptbxl': root data/ptbxl does not exist"):
            load_pipeline(path)


@pytest.mark.parametrize("name", ["pathology_study", "pathology_study_full"])
def test_the_pathology_pipelines_are_valid(name, ptbxl_root, ludb_root, tmp_path):
    """The pathology study (and its full-size twin) check out with LUDB pointed at, each score
    stage naming both pretraining sources; without LUDB they name the line of its input."""
    path = REPO / "pipelines" / f"{name}.yaml"
    ludb = str(ludb_root / "data")
    sets = [f"ludb.input={ludb}", f"ludb_scores.reference={ludb}", f"work={tmp_path / 'w'}"]
    if name.endswith("full"):
        sets.append(f"ptbxl.root={ptbxl_root}")
    pipeline = load_pipeline(path, sets)
    kinds = [s.kind for s in pipeline.stages]
    assert kinds.count("augment") == 1 and kinds.count("score") == 2
    assert kinds[-2:] == ["compare", "compare"]
    scores = [s for s in pipeline.stages if s.kind == "score"]
    for stage in scores:
        names = [m.split("=")[0] for m in stage.settings["models"]]
        assert set(names) == {"deepfake", "deepfake+warped"}
        assert names.count("deepfake") == names.count("deepfake+warped") >= 2
    if not Path("data/ludb/data").exists():
        with pytest.raises(PipelineError, match=r":\d+: stage 'ludb': input data/ludb/data does "
                                                r"not exist"):
            load_pipeline(path, [f"ptbxl.root={ptbxl_root}"] if name.endswith("full") else [])


def test_the_challenge_pipeline_is_valid(shared_data, tmp_path):
    """pipelines/challenge2021.yaml checks out against the Challenge sample, and without the
    data names the line of its input."""
    path = REPO / "pipelines" / "challenge2021.yaml"
    pipeline = load_pipeline(path, [f"challenge.input={shared_data / 'cinc2021-sample'}",
                                    f"work={tmp_path / 'w'}"])
    kinds = [s.kind for s in pipeline.stages]
    assert kinds == ["prepare", "synth", "label", "pretrain", "finetune", "finetune", "compare"]
    if not Path("data/challenge2021").exists():
        with pytest.raises(PipelineError, match=r":\d+: stage 'challenge': input "
                                                r"data/challenge2021 does not exist"):
            load_pipeline(path)


@pytest.mark.slow
def test_a_stage_refers_to_another_pipelines_stage_by_name(tmp_path, monkeypatch):
    """``${FILE:stage}``: the other file's stage as it is defined now, once it has finished; a
    change there is a change here. Errors name the file and line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.yaml").write_text(
        "name: data\nstages:\n  - name: ptbxl\n    stage: prepare\n    source: ptbxl\n"
        "    sample: true\n")
    study = tmp_path / "study.yaml"
    study.write_text("name: study\nstages:\n  - name: look\n    stage: merge\n"
                     "    inputs: ['${data.yaml:ptbxl}']\n")
    with pytest.raises(PipelineError, match=r"data.yaml: stage 'ptbxl' has not finished .* "
                                            r"run `ecgtransfer run .*data.yaml` first"):
        run_pipeline(load_pipeline(study), progress=False)
    (data,) = run_pipeline(load_pipeline(tmp_path / "data.yaml"), progress=False)
    (look,) = run_pipeline(load_pipeline(study), progress=False)
    assert "350 records" in look.summary
    from ecgtransfer.data.store import SignalStore

    assert len(SignalStore(look.output)) == len(SignalStore(data.output)) == 350
    again = run_pipeline(load_pipeline(study), progress=False)
    assert again[0].reused and again[0].fingerprint == look.fingerprint
    (tmp_path / "data.yaml").write_text((tmp_path / "data.yaml").read_text() + "    leads: 12\n")
    with pytest.raises(PipelineError, match="has not finished with that file's current settings"):
        run_pipeline(load_pipeline(study), progress=False)  # the other file changed
    for ref, message in (("${nope.yaml:ptbxl}", r"study.yaml:5: stage 'look': inputs refers to "
                          r"\$\{nope.yaml:ptbxl\}, and there is no pipeline file"),
                         ("${data.yaml:labels}", r"study.yaml:5: .*data.yaml has no stage named "
                          r"'labels' \(it has ptbxl\)"),
                         ("${study.yaml:look}", r"that is this file; write \$\{look\}")):
        study.write_text(f"name: study\nstages:\n  - name: look\n    stage: merge\n"
                         f"    inputs: ['{ref}']\n")
        with pytest.raises(PipelineError, match=message):
            load_pipeline(study)


def test_a_changed_finetune_stage_changes_the_compare_fingerprint(tmp_path):
    from ecgtransfer.pipeline import StageResult, _fingerprint

    def fingerprints(*overrides):
        pipeline = load_pipeline(QUICKSTART, [f"work={tmp_path}", *overrides])
        results = {}
        for spec in pipeline.stages:
            fp = _fingerprint(spec, results)
            results[spec.name] = StageResult(spec.name, spec.kind, "out", fp, False)
        return {name: r.fingerprint for name, r in results.items()}

    one, two = fingerprints(), fingerprints("finetune.epochs=3")
    assert one["pretrain"] == two["pretrain"]
    assert one["finetune"] != two["finetune"]
    assert one["compare"] != two["compare"]  # compare reads finetune without a ${ref}
    three = fingerprints("deepfake.n=64")
    assert all(three[n] != one[n] for n in ("deepfake", "labels", "pretrain", "finetune", "compare"))
    assert three["ptbxl"] == one["ptbxl"]


def test_a_grown_grid_runs_only_what_is_new(quickstart):
    """Adding a seed to the finetune grid trains only the new seed's runs: the others are keyed
    by their settings, not by position, and are reused with their MLflow runs. (Last in this
    module: it adds runs to the shared quickstart store.)"""
    before = {r.name: r for r in quickstart["results"]}["finetune"].run_ids
    grown = load_pipeline(QUICKSTART, [*SMALL, f"work={quickstart['folder'] / 'work'}",
                                       f"tracking_uri={quickstart['uri']}",
                                       "finetune.grid.seed=[0,1]"])
    results = {r.name: r for r in run_pipeline(grown, progress=False)}
    assert [results[n].reused for n in ("ptbxl", "deepfake", "labels", "pretrain")] == [True] * 4
    after = results["finetune"].run_ids
    assert len(after) == 2 * len(before) and set(before) <= set(after)
    client, runs = _runs(quickstart["uri"], "quickstart")
    tuned = [r for r in runs if r.data.tags.get("ecgtransfer.stage") == "finetune"
             and r.data.tags.get("ecgtransfer.evaluation") != "fold"]
    assert len(tuned) == len(after)  # nothing trained twice, no fold either:
    assert len([r for r in runs if r.data.tags.get("ecgtransfer.evaluation") == "fold"]) == 3 * len(after)
    assert "342 records x 2 seeds, 3 folds; higher in" in results["compare"].summary
