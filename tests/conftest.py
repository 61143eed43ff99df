"""Shared fixtures: the real recordings in ../shared/data (see its README)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def _shared_data() -> Path:
    env = os.environ.get("ECGTRANSFER_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


SHARED = _shared_data()
PTBXL = SHARED / "ptbxl-sample"
LUDB = SHARED / "ludb-sample"
CINC = SHARED / "cinc2021-sample"


WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""The pytest-xdist worker this process is (``make test-fast`` runs two), None in one process."""


def pytest_configure(config):
    if WORKER:  # two workers on two cores: one torch thread each, not two fighting for both
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def _once(tmp_path_factory, name: str, make):
    """``make(folder)`` run once for the whole session, also when pytest-xdist's workers all
    ask for it: the first builds it under a lock, the others wait and use it. Returns the
    folder."""
    from ecgtransfer.files import waiting_lock

    root = tmp_path_factory.getbasetemp()
    if WORKER:
        root = root.parent  # shared by the session's workers
    folder, done = root / "shared" / name, root / "shared" / f"{name}.done"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with waiting_lock(root / "shared" / f"{name}.lock", 900):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            make(folder)
            done.touch()
    return folder


SLOW_FIXTURES = ("quickstart", "ui")
"""Fixtures that run a whole pipeline or start a server: their tests are ``slow``, left out of
the fast loop (``make test-fast``) and run by the full suite (``make test``, CI)."""


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(name in item.fixturenames for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
    if PTBXL.exists():
        return
    # In CI the real data must be there: failing beats a suite that silently skips everything.
    if os.environ.get("CI"):
        raise pytest.UsageError(f"real ECG data not found at {SHARED}; set ECGTRANSFER_SHARED_DATA")
    skip = pytest.mark.skip(reason=f"real ECG data not found at {SHARED}")
    for item in items:
        if "shared_data" in item.fixturenames:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, its tables made once for the whole session."""
    from ecgtransfer import tracking

    folder = tmp_path_factory.mktemp("mlflow-template")
    cwd = os.getcwd()
    os.chdir(folder)  # the Default experiment's artifacts would go beside the template
    try:
        tracking.Tracker(f"sqlite:///{folder / 'mlflow.db'}").client  # opens (creates) it
    finally:
        os.chdir(cwd)
    return folder / "mlflow.db"


@pytest.fixture(autouse=True)
def _new_stores_from_the_template(monkeypatch, _mlflow_template):
    """A new SQLite tracking store that a test opens in this process starts as a copy of the
    template instead of running MLflow's ~40 table migrations again (about 0.8 s a store, and
    dozens of stores). Processes a test starts, and stores in folders that do not exist, are
    left to MLflow and ecgtransfer as they are."""
    import re

    from ecgtransfer import tracking

    real = tracking._open_store

    def open_store(uri):
        found = re.match(r"sqlite:///(.+)$", uri)
        if found:
            path = Path(found.group(1))
            if not path.exists() and path.parent.is_dir():
                shutil.copyfile(_mlflow_template, path)
        return real(uri)

    monkeypatch.setattr(tracking, "_open_store", open_store)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def ptbxl_root(shared_data) -> Path:
    return PTBXL


@pytest.fixture(scope="session")
def ludb_root(shared_data) -> Path:
    return LUDB


@pytest.fixture(scope="session")
def cinc_root(shared_data) -> Path:
    return CINC


@pytest.fixture(scope="session")
def ptbxl_store(tmp_path_factory, ptbxl_root):
    """The 350-record PTB-XL sample prepared once, 8 leads at 500 Hz."""
    from ecgtransfer.data.ptbxl import prepare_ptbxl
    from ecgtransfer.data.store import SignalStore

    return SignalStore(_once(tmp_path_factory, "ptbxl500",
                             lambda out: prepare_ptbxl(ptbxl_root, out, progress=False)))


@pytest.fixture(scope="session")
def ptbxl_labelled(tmp_path_factory, ptbxl_root):
    """The 350-record PTB-XL sample, 500 Hz, labelled."""
    from ecgtransfer.data.ptbxl import prepare_ptbxl
    from ecgtransfer.data.store import SignalStore
    from ecgtransfer.features.labels import label_records

    def make(out):
        prepare_ptbxl(ptbxl_root, out, progress=False)
        label_records(out, workers=2, progress=False)

    return SignalStore(_once(tmp_path_factory, "ptbxl-labelled", make))


@pytest.fixture(scope="session")
def deepfake_labelled(tmp_path_factory):
    """48 DeepFake ECGs, labelled."""
    from ecgtransfer.data.deepfake import SynthConfig, synthesize
    from ecgtransfer.data.store import SignalStore
    from ecgtransfer.features.labels import label_records

    def make(out):
        synthesize(out, SynthConfig(n=48, seed=0), progress=False)
        label_records(out, workers=2, progress=False)

    return SignalStore(_once(tmp_path_factory, "deepfake", make))


class _Done:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run ``ecgtransfer`` in this process (in ``tmp_path``), capturing its output."""
    from ecgtransfer.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args):
        code = main(list(args))
        out = capsys.readouterr()
        return _Done(code, out.out, out.err)

    return run


REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "pipelines" / "quickstart.yaml"
SMALL = ["deepfake.n=32", "pretrain.epochs=1", "pretrain.targets=[qrs,hr]", "finetune.epochs=1",
         "finetune.cv=3",
         "finetune.bootstrap=20", "finetune.grid.seed=[0]"]
"""Overrides that make the quickstart pipeline a test-sized run."""


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory):
    """The quickstart pipeline, reduced, run once."""
    from ecgtransfer.pipeline import load_pipeline, run_pipeline

    folder = tmp_path_factory.mktemp("quickstart")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    pipeline = load_pipeline(QUICKSTART, [*SMALL, f"work={folder / 'work'}", f"tracking_uri={uri}"])
    results = run_pipeline(pipeline, progress=False)
    return {"folder": folder, "uri": uri, "pipeline": pipeline, "results": results}


def run_stage(name: str, config, *, resume: bool = False):
    """A stage run as Python callers run it, the documented way:
    ``get_stage(name).run(config, Context(...))`` (no progress bars)."""
    from ecgtransfer.stages import Context, get_stage

    return get_stage(name).run(config, Context(progress=False, resume=resume))


def copy_records(src_dir: Path, names, dest: Path) -> Path:
    """Copy WFDB records (all their files) into ``dest`` for corrupting."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        for f in src_dir.glob(f"{name}.*"):
            shutil.copyfile(f, dest / f.name)
    return dest


def disk_fills_after(monkeypatch, budget: int) -> None:
    """From now on the disk takes ``budget`` more bytes of appended data (store samples and
    journal, label rows); the append that crosses it writes what fits, then fails with ENOSPC,
    as a full disk does, and so does every append after it."""
    import errno

    from ecgtransfer.data import store as store_module
    from ecgtransfer.features import labels as labels_module

    real = store_module.append_synced
    left = [int(budget)]

    def append(path, chunks, at):
        data = b"".join(bytes(c) for c in chunks)
        fits = data[:max(left[0], 0)]
        left[0] -= len(data)
        end = real(path, [fits], at)
        if len(fits) < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return end

    for module in (store_module, labels_module):
        monkeypatch.setattr(module, "append_synced", append)


def one_line_disk_full(exc: BaseException, name: str) -> None:
    """``exc`` is the one line a full disk gives: naming the file, saying how to go on."""
    message = str(exc)
    assert "\n" not in message
    assert f"disk full while writing {name}; free space and re-run the same command" in message
