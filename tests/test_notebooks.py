"""The notebooks run top to bottom (nbclient, a real kernel) on small inputs: label quality on a
few LUDB and PTB-XL records and 16 DeepFake ECGs; transfer results on the test quickstart's
MLflow store. A cell that fails fails the test."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, SHARED

NOTEBOOKS = REPO / "notebooks"
pytestmark = pytest.mark.slow  # a real kernel per notebook


def _execute(name: str, env: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == kind]


def test_label_quality_notebook_runs(shared_data, monkeypatch):
    nb = _execute("label_quality.ipynb", {"ECGTRANSFER_SHARED_DATA": str(SHARED),
                                          "ECGTRANSFER_NB_EVERY": "20",
                                          "ECGTRANSFER_NB_SYNTH": "16"}, monkeypatch)
    tables = [o["data"]["text/html"] for o in _outputs(nb, "execute_result")
              if "text/html" in o["data"]]
    assert any("coverage" in t and "qrs_ms" in t for t in tables)  # the LUDB agreement table
    assert any("DeepFake" in t and "PTB-XL" in t for t in tables)  # the realism summary
    assert any("image/png" in o["data"] for o in _outputs(nb, "display_data")
               + _outputs(nb, "execute_result"))


def test_transfer_results_notebook_runs(quickstart, monkeypatch):
    nb = _execute("transfer_results.ipynb", {"ECGTRANSFER_TRACKING_URI": quickstart["uri"],
                                             "ECGTRANSFER_EXPERIMENTS": "quickstart"},
                  monkeypatch)
    html = " ".join(o["data"].get("text/html", "") for o in _outputs(nb, "execute_result"))
    for strategy in ("scratch", "single", "combined"):
        assert strategy in html
    pngs = [o for o in _outputs(nb, "display_data") + _outputs(nb, "execute_result")
            if "image/png" in o["data"]]
    assert len(pngs) >= 2
