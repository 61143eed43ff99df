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


def pytest_collection_modifyitems(config, items):
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

    out = tmp_path_factory.mktemp("stores") / "ptbxl500"
    return prepare_ptbxl(ptbxl_root, out, progress=False).store


def copy_records(src_dir: Path, names, dest: Path) -> Path:
    """Copy WFDB records (all their files) into ``dest`` for corrupting."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        for f in src_dir.glob(f"{name}.*"):
            shutil.copyfile(f, dest / f.name)
    return dest
