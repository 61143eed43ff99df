"""The export stage: a trained regressor or classifier as an ONNX or TorchScript file with its
input contract (rate, leads, units, normalisation, outputs) in the file's metadata, checked
against the PyTorch model before it is written (:mod:`ecgtransfer.models.export`)."""

from __future__ import annotations

from dataclasses import dataclass

from ecgtransfer.config import check, setting
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

__all__ = ["ExportConfig", "export"]

FORMATS = ("onnx", "torchscript")  # ecgtransfer.models.export.FORMATS (not imported: torch)


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Settings of ``ecgtransfer export``."""

    model: str = setting("", "the model: a model.pt of pretrain or finetune, its run folder, an "
                         "MLflow run id or model URI", positional=True, role="input",
                         metavar="MODEL")
    format: str = setting("onnx", "onnx (ONNX Runtime and other runtimes) or torchscript "
                          "(PyTorch without ecgtransfer)", choices=FORMATS)
    out: str = setting("", "the file to write (replaced if it exists)", role="output",
                       metavar="FILE")
    check_store: str | None = setting(None, "check the export on records of this store (at the "
                                      "model's rate and leads); default: two seeded random "
                                      "records", role="input", metavar="STORE")
    check_records: int = setting(8, "records of --check-store to check on")
    tracking_uri: str | None = setting(None, "where a run id or model URI is looked up "
                                       "(default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
                                       role="tracking", metavar="URI")

    def __post_init__(self) -> None:
        check(not self.model, "model", "name the model to export")
        check(not self.out, "out", "name the file to write (--out FILE)")
        check(self.format not in FORMATS, "format", " or ".join(FORMATS))
        check(self.check_records < 1, "check_records", "must be at least 1")


def _check_records(config: ExportConfig, model):
    """Records of ``--check-store`` as the model takes them (raw mV at its rate, its leads,
    cut or zero-padded to its length), each resampled on its own (a few records do not need
    the store's resampled copy); None without a store."""
    if not config.check_store:
        return None
    import numpy as np

    from ecgtransfer.data.store import SignalStore
    from ecgtransfer.data.transforms import resample

    store = SignalStore(config.check_store)
    meta = model.meta
    missing = [lead for lead in meta["leads"] if lead not in store.leads]
    if missing:
        raise ValueError(f"--check-store {store.path}: has no lead {missing[0]}, which the model "
                         "takes")
    rows = [store.leads.index(lead) for lead in meta["leads"]]
    n = int(meta["n_samples"])
    out = np.zeros((min(config.check_records, len(store)), len(rows), n), dtype=np.float32)
    for i in range(len(out)):
        x = resample(store[i][rows], store.fs, float(meta["fs"]))[:, :n]
        out[i, :, :x.shape[1]] = x
    return out


def export(config: ExportConfig, context: Context) -> StageResult:
    """Write ``config.model`` as ``config.format`` to ``config.out`` (see the module's notes)."""
    from ecgtransfer.files import check_output_file, on_disk_full
    from ecgtransfer.models.export import TOLERANCE, export_model
    from ecgtransfer.transfer import load_model

    out = check_output_file(config.out)
    loaded = load_model(config.model, tracker=context.tracker_for(config.tracking_uri))
    records = _check_records(config, loaded.model)
    source = {"ref": config.model, "run_id": loaded.run_id}
    with on_disk_full(ValueError, out, out.name):
        done = export_model(loaded.model, loaded.kind, out, config.format, check=records,
                            source=source)
    terms = done.contract
    on = (f"{len(records)} records of {config.check_store}" if records is not None
          else "2 seeded random records")
    summary = (f"{out}: {loaded.kind} as {config.format}, "
               f"{terms['input']['shape'][1]} leads x {terms['input']['shape'][2]} samples at "
               f"{terms['input']['fs']:g} Hz in mV -> {terms['output']['name']} "
               f"({', '.join(terms['output']['names'])}); max |difference| from PyTorch "
               f"{done.max_abs_diff:.1e} on {on} (limit {TOLERANCE:g})")
    return StageResult(str(out), summary, outputs={"file": str(out)},
                       details=done)


register_stage(Stage(
    "export", ExportConfig, export, command=("export",), output="model",
    help="write a trained model as ONNX or TorchScript, with its input contract",
    description="Write a pretrained regressor or fine-tuned classifier as an ONNX file (for "
                "ONNX Runtime and other runtimes) or a TorchScript file, from raw ECG in mV to "
                "intervals or class probabilities. The file's metadata holds the input contract "
                "(rate, leads, samples, units, the normalisation inside, the outputs and any "
                "decision thresholds). The file is written only after it gives the PyTorch "
                "model's outputs within 1e-4, on records of --check-store if given. See "
                "docs/scale.md."))
