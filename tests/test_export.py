"""``ecgtransfer export``: a regressor or classifier as ONNX or TorchScript that gives the
PyTorch model's outputs on real records (within 1e-4), any batch size, with its input contract
in the file; nothing written when the check fails."""

import json

import numpy as np
import pytest
import torch

from ecgtransfer.data.dataset import StoreDataset
from ecgtransfer.data.leads import LEADS_8
from ecgtransfer.models import list_models
from ecgtransfer.models.classifier import TransferClassifier, save_classifier
from ecgtransfer.models.export import TOLERANCE, export_model, run_exported
from ecgtransfer.models.regressor import blank_regressor, save_regressor
from ecgtransfer.stages import Context, get_stage
from ecgtransfer.stages.export import ExportConfig


def _regressor(model="resnet1d_fast", seed=0, fs=100.0):
    meta = {"model": model, "model_kwargs": {}, "targets": ["qrs", "qt"], "units": ["ms", "ms"],
            "fs": fs, "n_samples": int(10 * fs), "leads": list(LEADS_8)}
    torch.manual_seed(seed)
    r = blank_regressor(meta)
    r.lead_mean.copy_(torch.linspace(-0.05, 0.05, 8).view(1, -1, 1))  # a trained model's look
    r.lead_std.copy_(torch.linspace(0.1, 0.3, 8).view(1, -1, 1))
    r.target_mean.fill_(400.0)
    r.target_std.fill_(40.0)
    return r.eval()


def _classifier(task="multi_label"):
    torch.manual_seed(3)
    classes = ["NORM", "MI", "STTC", "CD", "HYP"]
    model = TransferClassifier([_regressor(seed=1), _regressor(seed=2)], len(classes),
                               meta={"classes": classes, "task": task, "strategy": "combined",
                                     "thresholds": [0.5, 0.4, 0.3, 0.3, 0.2]})
    return model.eval()


def _records(store, model, n=8):
    meta = model.meta
    ds = StoreDataset(store, range(n), None, np.zeros(8), np.ones(8), meta["fs"],
                      meta["n_samples"])
    return np.stack([ds.signal(i) for i in range(n)])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_an_export_gives_the_models_outputs_on_real_records_with_its_contract(
        tmp_path, ptbxl_store, fmt, kind):
    model = _regressor() if kind == "regressor" else _classifier()
    path = tmp_path / "model.pt"
    (save_regressor if kind == "regressor" else save_classifier)(model, path)
    out = tmp_path / f"exported.{fmt}"
    result = get_stage("export").run(ExportConfig(model=str(path), format=fmt, out=str(out),
                                                  check_store=str(ptbxl_store.path)),
                                     Context(progress=False))
    assert out.is_file() and not list(tmp_path.glob(".*.tmp"))
    x = _records(ptbxl_store, model)  # 500 Hz records at the model's 100 Hz
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    if kind == "classifier":
        expected = 1.0 / (1.0 + np.exp(-expected))  # multi-label: probabilities
    got = run_exported(out, fmt, x)
    assert got.shape == expected.shape == (8, 2 if kind == "regressor" else 5)
    assert np.abs(got - expected).max() <= TOLERANCE
    assert result.details.max_abs_diff <= TOLERANCE and "max |difference|" in result.summary
    if fmt == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        terms = json.loads(props["ecgtransfer"])
    else:
        files = {"ecgtransfer.json": ""}
        torch.jit.load(str(out), _extra_files=files)
        terms = json.loads(files["ecgtransfer.json"])
    assert terms["input"]["fs"] == 100.0 and terms["input"]["leads"] == list(LEADS_8)
    assert terms["input"]["shape"] == ["batch", 8, 1000] and terms["input"]["unit"] == "mV"
    trunks = model.trunks if kind == "classifier" else [model]
    np.testing.assert_allclose([t["lead_std"] for t in terms["input"]["trunks"]],
                               [t.lead_std.flatten().tolist() for t in trunks], rtol=1e-6)
    if kind == "classifier":
        assert terms["output"]["activation"] == "sigmoid"
        assert terms["output"]["thresholds"] == [0.5, 0.4, 0.3, 0.3, 0.2]
        assert ((got >= 0) & (got <= 1)).all()
    else:
        assert terms["output"]["names"] == ["qrs", "qt"] and terms["output"]["units"] == ["ms", "ms"]


def test_a_single_label_classifier_exports_softmax_probabilities(tmp_path, ptbxl_store):
    model = _classifier("single_label")
    x = _records(ptbxl_store, model, 4)
    done = export_model(model, "classifier", tmp_path / "m.onnx", "onnx", check=x)
    got = run_exported(done.path, "onnx", x)
    assert done.contract["output"]["activation"] == "softmax"
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", list_models())
def test_every_model_family_exports_with_a_free_batch_size(tmp_path, ptbxl_store, name):
    model = _regressor(name)
    x = _records(ptbxl_store, model, 3)  # traced at batch 1, run at 3
    done = export_model(model, "regressor", tmp_path / f"{name}.onnx", "onnx", check=x)
    assert done.max_abs_diff <= TOLERANCE


def test_an_export_that_differs_writes_nothing(tmp_path, monkeypatch):
    from ecgtransfer.models import export as export_module

    real = export_module.run_exported
    monkeypatch.setattr(export_module, "run_exported",
                        lambda *a, **k: real(*a, **k) + 1e-3)  # a runtime that drifts
    out = tmp_path / "m.onnx"
    out.write_text("the earlier export")
    with pytest.raises(ValueError, match=r"m.onnx: the onnx export differs from the PyTorch "
                                         r"model by 1\.0\de-03 .*nothing was written"):
        export_model(_regressor(), "regressor", out, "onnx")
    assert out.read_text() == "the earlier export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_export_refuses_what_is_not_a_model_in_one_line(cli, tmp_path):
    (tmp_path / "notes.pt").write_bytes(b"not a checkpoint")
    done = cli("export", str(tmp_path / "notes.pt"), "--out", str(tmp_path / "m.onnx"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "notes.pt" in done.stderr and not (tmp_path / "m.onnx").exists()
    (tmp_path / "folder").mkdir()
    torch.manual_seed(0)
    save_regressor(_regressor(), tmp_path / "r.pt")
    done = cli("export", str(tmp_path / "r.pt"), "--out", str(tmp_path / "folder"))
    assert done.returncode == 2 and "folder" in done.stderr, done.stderr



def test_checking_on_a_store_at_another_rate_makes_no_copy_of_it(tmp_path, ludb_root):
    """A few records are resampled one by one: the export does not make the store's resampled
    copy (at full size, minutes and gigabytes for eight records)."""
    from ecgtransfer.data.store import StoreWriter
    from ecgtransfer.data.wfdb_io import read_record

    w = StoreWriter(tmp_path / "s", source="wfdb", fs=500, leads=LEADS_8)
    for i in range(1, 4):
        w.add(f"r{i}", read_record(ludb_root / "data" / str(i), leads=LEADS_8).signal)
    store = w.finalize()
    save_regressor(_regressor(), tmp_path / "r.pt")
    result = get_stage("export").run(ExportConfig(model=str(tmp_path / "r.pt"),
                                                  out=str(tmp_path / "m.onnx"),
                                                  check_store=str(store.path)),
                                     Context(progress=False))
    assert "3 records of" in result.summary and result.details.max_abs_diff <= TOLERANCE
    assert not (store.path / "resampled").exists()
