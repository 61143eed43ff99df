"""Trained models as files that other runtimes load: ONNX (ONNX Runtime, on a phone or a
wearable's gateway) and TorchScript (PyTorch without ecgtransfer).

The file holds the whole model from raw ECG to answer, and its input contract in its metadata:
- **In:** ``(batch, leads, samples)`` float32 in mV, the leads in the listed order, at the listed
  rate. Each trunk's per-lead normalisation is inside the model.
- **Out:** a regressor gives its intervals in their units. A classifier gives probabilities:
  sigmoid for a multi-label task, softmax for a single-label one, and the decision thresholds
  it was tuned with, if any.

ONNX carries the contract as the metadata property ``ecgtransfer`` (JSON); TorchScript carries
it as the extra file ``ecgtransfer.json``.

Both are written with TorchScript tracing: ``torch.onnx.export(dynamo=False)`` and
``torch.jit.trace``. torch 2.13's dynamo exporter took 1.4-26 s a model and could not keep the
batch dimension free for ``lstm`` and ``vit1d``; the traced exporter takes 0.02-0.6 s and exports
all seven registered families with a free batch size. A file is written only after it gives the
PyTorch model's outputs (max absolute difference at most :data:`TOLERANCE`) on the records it
is checked on; it is written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["FORMATS", "TOLERANCE", "Exported", "contract", "export_model", "run_exported",
           "onnx_latency_ms"]

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4
"""The largest absolute difference from the PyTorch model's outputs an export may show."""
_META_KEY = "ecgtransfer"
_EXTRA_FILE = "ecgtransfer.json"


class _Deployed(nn.Module):
    """The model as deployed: a classifier's logits turned into probabilities."""

    def __init__(self, model: nn.Module, kind: str):
        super().__init__()
        self.model = model
        task = model.meta.get("task", "single_label") if kind == "classifier" else ""
        self.activation = ("" if kind != "classifier" else
                           "softmax" if task == "single_label" else "sigmoid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.activation == "sigmoid":
            return torch.sigmoid(out)
        if self.activation == "softmax":
            return torch.softmax(out, dim=1)
        return out


def _trunks(model: nn.Module, kind: str) -> list[nn.Module]:
    return list(model.trunks) if kind == "classifier" else [model]


def contract(model: nn.Module, kind: str, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a runtime needs to feed the exported ``model`` and read its answer (see the module's
    notes), as JSON-ready values."""
    from ecgtransfer import __version__

    meta = model.meta
    deployed = _Deployed(model, kind)
    fs, n_samples = float(meta["fs"]), int(meta["n_samples"])
    normalisation = [{"lead_mean": t.lead_mean.flatten().tolist(),
                      "lead_std": t.lead_std.flatten().tolist()} for t in _trunks(model, kind)]
    if kind == "classifier":
        output = {"name": "probabilities", "names": list(meta["classes"]),
                  "activation": deployed.activation, "task": meta.get("task", ""),
                  "thresholds": meta.get("thresholds")}
    else:
        output = {"name": "intervals", "names": list(meta["targets"]),
                  "units": list(meta.get("units") or [])}
    return {"ecgtransfer": __version__, "kind": kind,
            "input": {"name": "ecg", "shape": ["batch", len(meta["leads"]), n_samples],
                      "dtype": "float32", "unit": "mV", "fs": fs, "leads": list(meta["leads"]),
                      "seconds": n_samples / fs,
                      "normalisation": "inside the model, per trunk: (x - lead_mean) / lead_std",
                      "trunks": normalisation},
            "output": output, "source": dict(source or {})}


@dataclass(frozen=True)
class Exported:
    """What :func:`export_model` wrote."""

    path: Path
    format: str
    max_abs_diff: float
    """Against the PyTorch model on the records it was checked on."""
    contract: dict[str, Any]


def export_model(model: nn.Module, kind: str, path: str | Path, fmt: str, *,
                 check: np.ndarray | None = None,
                 source: dict[str, Any] | None = None) -> Exported:
    """Write ``model`` (a :class:`~ecgtransfer.models.regressor.IntervalRegressor` or a
    :class:`~ecgtransfer.models.classifier.TransferClassifier`, ``kind``) to ``path`` as
    ``fmt``, with its contract, once it gives the model's outputs on ``check`` (records as the
    contract's input; default two seeded random records).

    Raises
    ------
    ValueError
        An unknown format, or outputs that differ by more than :data:`TOLERANCE` (nothing is
        written).
    OSError
        ``path`` cannot be written (nothing is left half-written).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt}: one of {', '.join(FORMATS)}")
    path = Path(path)
    model = model.cpu().eval()
    deployed = _Deployed(model, kind).eval()
    terms = contract(model, kind, source)
    shape = terms["input"]["shape"][1:]
    if check is None:
        check = np.random.default_rng(0).normal(0.0, 0.3, (2, *shape)).astype(np.float32)
    check = np.ascontiguousarray(check, dtype=np.float32)
    example = torch.from_numpy(check[:1])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings():  # the tracer's notices (deprecations, constants)
            warnings.simplefilter("ignore")
            if fmt == "onnx":
                _write_onnx(deployed, example, tmp, terms)
            else:
                _write_torchscript(deployed, example, tmp, terms)
            with torch.no_grad():
                expected = deployed(torch.from_numpy(check)).numpy()
            got = run_exported(tmp, fmt, check)
        diff = float(np.abs(got - expected).max()) if got.size else 0.0
        if not diff <= TOLERANCE:
            raise ValueError(f"{path}: the {fmt} export differs from the PyTorch model by "
                             f"{diff:.2e} (more than {TOLERANCE:g}); nothing was written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return Exported(path, fmt, diff, terms)


def _write_onnx(deployed: nn.Module, example: torch.Tensor, path: Path, terms: dict) -> None:
    import onnx

    torch.onnx.export(deployed, (example,), str(path), dynamo=False, input_names=["ecg"],
                      output_names=[terms["output"]["name"]],
                      dynamic_axes={"ecg": {0: "batch"}, terms["output"]["name"]: {0: "batch"}})
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = _META_KEY, json.dumps(terms)
    proto.doc_string = (f"ecgtransfer {terms['kind']}: {terms['input']['shape'][1]} leads x "
                        f"{terms['input']['shape'][2]} samples at {terms['input']['fs']:g} Hz "
                        f"in mV -> {terms['output']['name']}; metadata '{_META_KEY}' holds the "
                        "input contract")
    onnx.save(proto, str(path))


def _write_torchscript(deployed: nn.Module, example: torch.Tensor, path: Path,
                       terms: dict) -> None:
    traced = torch.jit.trace(deployed, example, check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={_EXTRA_FILE: json.dumps(terms)})


def run_exported(path: str | Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """Outputs of an exported file (one this module wrote) on ``x``: by ONNX Runtime on the CPU,
    or by ``torch.jit.load``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(torch.from_numpy(x)).numpy()


def onnx_latency_ms(model: nn.Module, leads: int, n_samples: int, budget_s: float = 1.0,
                    max_repeats: int = 20) -> float:
    """Median CPU milliseconds of one record (batch 1) through ONNX Runtime (its default
    threads), on the model exported as :func:`export_model` exports it."""
    import onnxruntime as ort

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    x = torch.zeros(1, leads, n_samples)
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            file = Path(tmp) / "model.onnx"
            torch.onnx.export(model.cpu().eval(), (x,), str(file), dynamo=False,
                              input_names=["ecg"])
            session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    finally:
        model.to(device).train(was_training)
    feed = {"ecg": x.numpy()}
    session.run(None, feed)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (len(times) < max_repeats and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1000.0 * times[len(times) // 2]
