"""Everything that talks to MLflow: where runs go, and what a run records.

Default tracking is an embedded SQLite store, ``sqlite:///mlflow.db`` in the working folder,
with artifacts beside it in ``mlruns/``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` points
elsewhere (a server). Run tags use the ``ecgtransfer.`` prefix so the MLflow UI can filter on
them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = ["DEFAULT_TRACKING_URI", "tracking_uri", "setup", "code_version", "store_hash",
           "flat_params", "log_params", "log_figure", "log_text", "log_model", "log_inputs", "open_run", "TAG"]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TAG = "ecgtransfer."
log = logging.getLogger(__name__)


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else :data:`DEFAULT_TRACKING_URI`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _sqlite_dir(uri: str) -> Path | None:
    m = re.match(r"sqlite:///(.+)$", uri)
    return Path(m.group(1)).resolve().parent if m else None


def setup(uri: str | None, experiment: str) -> str:
    """Point MLflow at ``uri`` and make ``experiment`` current; returns its id.

    A new experiment in a SQLite store keeps its artifacts in ``mlruns/`` beside the database.
    """
    import mlflow

    uri = tracking_uri(uri)
    folder = _sqlite_dir(uri)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        exp_id = found.experiment_id
    else:
        location = None
        if folder is not None:
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment)
            location = (folder / "mlruns" / safe).as_uri()
        try:
            exp_id = client.create_experiment(experiment, artifact_location=location)
        except Exception:  # created meanwhile by another process
            exp_id = client.get_experiment_by_name(experiment).experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def code_version() -> str:
    """The package version, plus the git commit (``+dirty`` with local changes) when the
    package runs from a git checkout."""
    from ecgtransfer import __version__

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return __version__
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


def store_hash(store_path: str | Path) -> str:
    """12 hex digits identifying a store's content: its identity in ``store.json`` and its
    index (which records, in which order, with which columns)."""
    path = Path(store_path)
    meta = json.loads((path / "store.json").read_text())
    key = {k: meta.get(k) for k in ("format", "source", "fs", "leads", "identity", "n_records")}
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    h.update((path / "index.csv").read_bytes())
    return h.hexdigest()[:12]


def flat_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as ``a.b`` keys with string values (lists comma-joined)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = "" if value is None else str(value)
    return out


def log_params(values: Mapping[str, Any]) -> None:
    """Log settings as params, skipping keys a resumed run logged already (MLflow refuses to
    change a param)."""
    import mlflow

    run = mlflow.active_run()
    have = mlflow.MlflowClient().get_run(run.info.run_id).data.params if run else {}
    new = {k: v for k, v in flat_params(values).items() if k not in have}
    if new:
        mlflow.log_params(new)


def log_figure(fig: Any, name: str) -> None:
    """A matplotlib figure as a PNG artifact."""
    import mlflow

    mlflow.log_figure(fig, name)


def log_text(text: str, name: str) -> None:
    import mlflow

    mlflow.log_text(text, name)


def log_inputs(store_path: str | Path, table: Any, splits: Mapping[str, Any],
                targets: str | None = None) -> None:
    """Log each split's records as an MLflow dataset input (``<store>:train``, ...).

    Parameters
    ----------
    store_path : path
        The store (the datasets' source).
    table : pandas.DataFrame
        One row per store record: ``record_id`` and the values trained on.
    splits : mapping of str to row positions
        ``train``, ``val``, ``test``.
    targets : str, optional
        The target column, when there is one.
    """
    import warnings

    import mlflow
    import mlflow.data

    context = {"train": "training", "val": "validation", "test": "testing"}
    for split, pos in splits.items():
        with warnings.catch_warnings():  # MLflow registers two local-file source classes
            warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
            ds = mlflow.data.from_pandas(table.iloc[pos].reset_index(drop=True),
                                         source=Path(store_path).resolve().as_uri(),
                                         name=f"{Path(store_path).name}:{split}", targets=targets)
        mlflow.log_input(ds, context=context.get(split, split))


def _model_code_dir(tmp: Path) -> Path:
    """A copy of the code a logged model needs to unpickle (the package root and models/)."""
    import shutil

    import ecgtransfer

    src = Path(ecgtransfer.__file__).parent
    dst = tmp / "ecgtransfer"
    (dst / "models").mkdir(parents=True)
    shutil.copy(src / "__init__.py", dst / "__init__.py")
    for f in (src / "models").glob("*.py"):
        shutil.copy(f, dst / "models" / f.name)
    return dst


def log_model(model: Any, example: Any) -> str:
    """Log a model of :mod:`ecgtransfer.models` with ``mlflow.pytorch.log_model``: its
    signature, an input example (a NumPy batch) and the code it unpickles with; returns the model
    URI. Pickled (not ``torch.export``-ed) so that the loaded model keeps ``forward_features``
    for transfer."""
    import tempfile

    import mlflow
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(example)).numpy()
    quiet = logging.getLogger("mlflow.pytorch")  # its warning about pickling is the choice above
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            info = mlflow.pytorch.log_model(
                model, name="model", signature=infer_signature(example, out),
                input_example=example, serialization_format="pickle",
                code_paths=[str(_model_code_dir(Path(tmp)))],
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                                  f"numpy=={np.__version__}"])
    finally:
        quiet.setLevel(level)
    return info.model_uri


@contextlib.contextmanager
def open_run(run_id: str | None, *, run_name: str | None = None, nested: bool = False,
             tags: Mapping[str, str] | None = None, parent_run_id: str | None = None) -> Iterator[Any]:
    """Start a run, or reopen ``run_id`` (a resumed stage). The run ends FINISHED on success,
    FAILED on an error and KILLED on Ctrl-C."""
    import mlflow

    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, nested=nested,
                           tags=all_tags or None)
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")
