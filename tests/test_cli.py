"""The ``ecgtransfer`` command: help, version, exit codes and one-line errors."""

import subprocess
import sys

import pytest

from ecgtransfer import __version__
from ecgtransfer.cli import main

HELP = [
    [], ["data"], ["data", "prepare"], ["data", "prepare", "ptbxl"], ["data", "prepare", "wfdb"],
    ["data", "verify"], ["data", "verify", "ptbxl"], ["data", "fetch", "ptbxl"],
    ["data", "info"], ["data", "splits", "ptbxl"], ["data", "merge"], ["synth"], ["label"],
]


@pytest.mark.parametrize("words", HELP, ids=lambda w: " ".join(w) or "top")
def test_every_command_explains_itself(words, capsys):
    with pytest.raises(SystemExit) as info:
        main([*words, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ecgtransfer") and len(out.splitlines()) > 4


@pytest.mark.slow
def test_version_and_console_script():
    out = subprocess.run([sys.executable, "-m", "ecgtransfer", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"ecgtransfer {__version__}"


def test_prepare_sample_then_info(tmp_path, capsys):
    assert main(["data", "prepare", "ptbxl", "--sample", "--out", str(tmp_path / "s"), "-q"]) == 0
    assert "350 records at 100 Hz, 8 leads" in capsys.readouterr().out
    assert main(["data", "info", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "superclass:" in out and "HYP 6" in out
    assert main(["data", "verify", "ptbxl", "--sample", "-q"]) == 0
    assert main(["data", "prepare", "ptbxl", "--sample", "--fs", "500",
                 "--out", str(tmp_path / "t")]) == 2  # the sample has no 500 Hz records
    assert "the package sample has records at 100 Hz only" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a signal store" in err
    assert main(["data", "prepare", "ptbxl", "--root", str(tmp_path), "--out",
                 str(tmp_path / "s"), "-q"]) == 2
    assert "ptbxl_database.csv: missing" in capsys.readouterr().err


def test_strict_turns_rejects_into_exit_1(tmp_path, ludb_root, capsys):
    from conftest import copy_records

    folder = copy_records(ludb_root / "data", ["1", "2"], tmp_path / "in")
    (folder / "2.dat").write_bytes(b"\x00" * 10)
    args = ["data", "prepare", "wfdb", "--input", str(folder), "-q", "--out"]
    assert main([*args, str(tmp_path / "a")]) == 0
    assert main([*args, str(tmp_path / "b"), "--strict"]) == 1
    assert "1 rejected" in capsys.readouterr().out
