"""The one door to MLflow: where runs go, how they are opened, reopened and ended, and what a run
records. No other module imports ``mlflow``.

Default tracking is an embedded SQLite store, ``sqlite:///mlflow.db`` in the working folder,
with artifacts beside it in ``mlruns/``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` points
elsewhere (a server). Tags use the ``ecgtransfer.`` prefix (:data:`TAG`) so the MLflow UI can
filter on them.

A :class:`Tracker` is one store. The caller of a stage makes it and hands it over in the stage's
``Context``; nothing here sets MLflow's process-wide tracking URI for longer than one run's block.
A stage asks the tracker for a run with :meth:`Tracker.open_run` (new, or reopened from a marker
file in its output folder) and logs through the :class:`Run` it gets. Runs that must stay open
while other runs nest under them (a pipeline's, a pipeline stage's) come from
:meth:`Tracker.open_parent_run`. Models are logged with their plain weights beside the MLflow
model, and :meth:`Tracker.download_plain_model` reads those back, so that loading a model never
unpickles anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ecgtransfer.tags import PREFIX, check_keys
from ecgtransfer.tags import key as tag_key

__all__ = ["DEFAULT_TRACKING_URI", "TAG", "Tracker", "Run", "RunRecord", "EndedEarly",
           "tracking_uri", "sqlite_folder", "code_version", "store_hash", "text", "flat_params",
           "PLAIN_MODEL_FILE", "ui_link", "latest_pipeline_experiment", "start_ui",
           "FINETUNE_FILTER", "FINETUNE_VIEW"]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TAG = PREFIX
"""The prefix of every ecgtransfer tag; the names and their meanings are
:data:`ecgtransfer.tags.VOCABULARY`."""
PLAIN_MODEL_FILE = "model.pt"
"""The plain weights file logged inside every model (``<model>/extra_files/model.pt``)."""
log = logging.getLogger(__name__)


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else :data:`DEFAULT_TRACKING_URI`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _sqlite_dir(uri: str) -> Path | None:
    m = re.match(r"sqlite:///(.+)$", uri)
    return Path(m.group(1)).resolve().parent if m else None


def sqlite_folder(uri: str) -> Path | None:
    """The folder of an SQLite tracking store (where its artifacts and a search's optuna.db
    go), None for a server or another store."""
    return _sqlite_dir(uri)


@functools.lru_cache(maxsize=16)
def _client_of(uri: str):
    """One MLflow client per URI per process (making one resolves the store anew, a few ms
    that every log call paid)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def _open_store(uri: str) -> None:
    """Check the store at ``uri`` once per process: an SQLite store's folder must exist (a typo
    is not a place to create one), a new one has its tables made by the first process to open
    it while the others wait, and a damaged database or an unreachable server is a one-line
    ``ValueError`` naming it."""
    folder = _sqlite_dir(uri)
    if folder is not None and not folder.is_dir():
        raise ValueError(f"{uri}: the folder {folder} "
                         + ("is a file" if folder.exists() else "does not exist; create it")
                         + ", or pass another --tracking-uri")
    if _opened(uri, folder):
        return
    with _store_creation(uri, folder):
        try:
            _client_of(uri).search_experiments(max_results=1)
        except Exception as exc:  # MLflow and SQLAlchemy raise many kinds
            raise ValueError(f"{uri}: not a usable MLflow tracking store "
                             f"({type(exc).__name__}); check the path or server, or pass "
                             "another --tracking-uri") from None
    _OPENED[uri] = _identity(folder, uri)


@contextlib.contextmanager
def _pointed(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking URI (and the ``MLFLOW_TRACKING_URI`` it exports) set to
    ``uri`` for the block and put back after: only MLflow's own run and model logging
    (``mlflow.start_run``, ``mlflow.pytorch.log_model``) reads it, inside :meth:`Tracker.open_run`."""
    import mlflow

    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


_OPENED: dict[str, Any] = {}
"""Stores this process has opened and checked, with what their database file was then."""


def _identity(folder: Path | None, uri: str) -> Any:
    """What says an SQLite store is still the one checked: its file's inode and device (None
    for a server)."""
    if folder is None:
        return None
    try:
        stat = Path(re.match(r"sqlite:///(.+)$", uri).group(1)).stat()
    except OSError:
        return "missing"
    return (stat.st_dev, stat.st_ino)


def _opened(uri: str, folder: Path | None) -> bool:
    """Whether this process opened and checked ``uri`` already, and its database is the same
    file (a store deleted or replaced since is checked again)."""
    return uri in _OPENED and _OPENED[uri] == _identity(folder, uri) != "missing"


STORE_WAIT_S = 300.0
"""How long a process waits for another one creating the same SQLite tracking store."""


@contextlib.contextmanager
def _store_creation(uri: str, folder: Path | None):
    """Hold ``.<database>.lock`` beside an SQLite store while MLflow opens it (and creates its
    tables when new), waiting for another process doing the same; nothing for a server."""
    if folder is None:
        yield
        return
    from ecgtransfer.files import waiting_lock

    lock = folder / f".{Path(re.match(r'sqlite:///(.+)$', uri).group(1)).name}.lock"
    held = waiting_lock(lock, STORE_WAIT_S, on_wait=lambda: log.info(
        "%s: another process is creating or opening this tracking store; waiting for it", uri))
    try:
        held.__enter__()
    except TimeoutError:
        raise ValueError(f"{uri}: another process has held this tracking store's set-up "
                         f"lock ({lock}) for {STORE_WAIT_S:.0f} s; wait for it or stop "
                         "it") from None
    except PermissionError:  # a read-only folder: nobody creates a store there
        held = None
    try:
        yield
    finally:
        if held is not None:
            held.__exit__(None, None, None)


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit (``+dirty`` with local changes) when the
    package runs from a git checkout.

    Read once per process: the code a process runs is what it imported, and a search of 200
    trials asked git twice for each trial's run."""
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
    """12 hex digits identifying a store's content (:func:`ecgtransfer.data.store.content_hash`)."""
    from ecgtransfer.data.store import content_hash

    return content_hash(store_path)


def text(value: Any) -> str:
    """The one way a value is written into a param or a tag, so a filter on either finds the
    same runs: ``1.0`` -> ``1``, ``0.5`` -> ``0.5``, ``True`` -> ``true``, lists comma-joined,
    None -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        shown = repr(value)
        return shown[:-2] if shown.endswith(".0") else shown
    if isinstance(value, (list, tuple)):
        return ",".join(text(v) for v in value)
    return str(value)


def flat_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as ``a.b`` keys with :func:`text` values; unset (None) settings and
    empty lists or mappings are left out, so the UI offers no empty columns."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        elif value is not None and value != [] and value != ():
            out[name] = text(value)
    return out


# ---- one run ------------------------------------------------------------------------------
def _shielded(method):
    """Run ``method`` with SIGINT and SIGTERM held back (main thread): a signal that arrives
    during a write to the tracking store is delivered when the write is over. Raised in the
    middle of one, the interrupt would leave the store's SQLite transaction open, and marking
    the run KILLED would then wait on that lock and fail ("database is locked").

    The signals' Python handlers are swapped for one that notes them, and the noted ones are
    raised again once the real handlers are back. (Blocking them in the main thread alone is not
    enough: the kernel hands a process's signal to any thread that does not block it, torch's
    and tqdm's threads among them, and Python then runs the handler in the main thread at once.)
    """
    import functools

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return method(*args, **kwargs)
        noted: list[int] = []
        held = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(signum)
            if current is None:  # a handler set outside Python: leave it alone
                continue
            held[signum] = signal.signal(signum, lambda number, frame: noted.append(number))
        try:
            return method(*args, **kwargs)
        finally:
            for signum, handler in held.items():
                signal.signal(signum, handler)
            for signum in dict.fromkeys(noted):  # each held signal once, to its own handler
                signal.raise_signal(signum)

    return wrapper


@_shielded
def _call(function, *args, **kwargs):
    """``function(*args, **kwargs)`` with SIGINT and SIGTERM held back (see :func:`_shielded`)."""
    return function(*args, **kwargs)


class Run:
    """One MLflow run, for a stage to log through.

    Parameters
    ----------
    tracker : Tracker
        The store the run is in.
    run_id : str
    new : bool
        Made now (not reopened): its params, inputs and description are still to log.
    """

    def __init__(self, tracker: "Tracker", run_id: str, new: bool = False):
        self.tracker = tracker
        self.id = run_id
        self.new = new

    @property
    def _client(self):
        return self.tracker.client

    @_shielded
    def log_params(self, values: Mapping[str, Any]) -> None:
        """Settings as params (nested keys flattened), skipping keys logged already: a resumed
        run keeps its params (MLflow refuses to change one)."""
        from mlflow.entities import Param

        client = self._client
        have = client.get_run(self.id).data.params
        new = [Param(k, v[:6000]) for k, v in flat_params(values).items() if k not in have]
        for i in range(0, len(new), 100):
            client.log_batch(self.id, params=new[i:i + 100])

    @_shielded
    def log_metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        """Finite values only (an AUROC of an absent class is NaN: left out)."""
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step or 0) for k, v in values.items()
                   if v is not None and math.isfinite(float(v))]
        for i in range(0, len(metrics), 500):
            self._client.log_batch(self.id, metrics=metrics[i:i + 500])

    @_shielded
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags, their values written by :func:`text`; an ``ecgtransfer.`` tag must be one of
        :data:`ecgtransfer.tags.VOCABULARY`."""
        from mlflow.entities import RunTag

        check_keys(tags)
        if tags:
            self._client.log_batch(self.id, tags=[RunTag(k, text(v)) for k, v in tags.items()])

    def set_note(self, text: str) -> None:
        """The run's description in the MLflow UI (Markdown)."""
        self.set_tags({"mlflow.note.content": text})

    def log_text(self, text: str, name: str) -> None:
        self._client.log_text(self.id, text, name)

    def log_figure(self, fig: Any, name: str) -> None:
        """A matplotlib figure as a PNG artifact."""
        self._client.log_figure(self.id, fig, name)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self._client.log_artifact(self.id, str(path), folder)

    def log_artifacts(self, directory: str | Path, folder: str | None = None) -> None:
        """Every file of ``directory`` (a folder of outputs) under ``folder``, bar hidden
        bookkeeping (``.ecgtransfer-output``, lock files)."""
        directory = Path(directory)
        hidden = [p for p in directory.rglob(".*")]
        if not hidden:
            self._client.log_artifacts(self.id, str(directory), folder)
            return
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                parent = relative.parent.as_posix()
                where = "/".join(p for p in (folder, parent if parent != "." else None) if p)
                self._client.log_artifact(self.id, str(path), where or None)

    @_shielded
    def log_table(self, table: Any, name: str) -> None:
        """A pandas table as an MLflow table artifact (the UI's evaluation view reads it)."""
        self._client.log_table(self.id, table, name)

    @_shielded
    def log_inputs(self, store_path: str | Path, table: Any, splits: Mapping[str, Any],
                   targets: str | None = None) -> None:
        """Each split's records as an MLflow dataset input named by what the store holds
        (``ptbxl:train``, ``deepfake:val``, ...), with the store's hash as its digest.

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

        import mlflow.data
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        store = Path(store_path)
        try:
            source = json.loads((store / "store.json").read_text()).get("source") or store.name
        except (OSError, ValueError):
            source = store.name
        digest = store_hash(store)
        context = {"train": "training", "val": "validation", "test": "testing"}
        inputs = []
        for split, pos in splits.items():
            with warnings.catch_warnings():  # MLflow registers two local-file source classes
                warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
                ds = mlflow.data.from_pandas(table.iloc[pos].reset_index(drop=True),
                                             source=store.resolve().as_uri(),
                                             name=f"{source}:{split}", targets=targets,
                                             digest=digest)
            fields = ds.to_dict()
            inputs.append(DatasetInput(
                Dataset(fields["name"], fields["digest"], fields["source_type"],
                        fields["source"], fields.get("schema"), fields.get("profile")),
                [InputTag(MLFLOW_DATASET_CONTEXT, context.get(split, split))]))
        self._client.log_inputs(self.id, datasets=inputs)

    def _check_active(self) -> None:
        import mlflow

        active = mlflow.active_run()
        if active is None or active.info.run_id != self.id:
            raise RuntimeError("log_model needs the run opened by Tracker.open_run, inside its block")

    @_shielded
    def log_model(self, model: Any, example: Any, plain_file: str | Path) -> str:
        """Log a model of :mod:`ecgtransfer.models` with ``mlflow.pytorch.log_model`` (its
        signature, an input example and the code it unpickles with, for MLflow's own tools) and
        its plain weights file ``plain_file`` beside it (``extra_files/model.pt``), which is what
        ecgtransfer loads (:func:`download_plain_model`); returns the model URI."""
        import tempfile

        import mlflow
        import numpy as np
        import torch
        from mlflow.models import infer_signature

        model.eval()
        with torch.no_grad():
            out = model(torch.from_numpy(example)).numpy()
        quiet = logging.getLogger("mlflow.pytorch")  # its warning about pickling: see above
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            self._check_active()
            with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
                info = mlflow.pytorch.log_model(
                    model, name=_model_name(model), signature=infer_signature(example, out),
                    input_example=example, serialization_format="pickle",
                    code_paths=[str(_model_code_dir(Path(tmp)))],
                    extra_files=[str(plain_file)],
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                                      f"numpy=={np.__version__}"])
        finally:
            quiet.setLevel(level)
        return info.model_uri


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow artifact progress bars on stderr (a log file or a one-line error)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _model_name(model: Any) -> str:
    return "classifier" if type(model).__name__ == "TransferClassifier" else "regressor"


def _model_code_dir(tmp: Path) -> Path:
    """A copy of the code a logged model needs to unpickle (the package root, files.py and
    models/)."""
    import shutil

    import ecgtransfer

    src = Path(ecgtransfer.__file__).parent
    dst = tmp / "ecgtransfer"
    (dst / "models").mkdir(parents=True)
    for name in ("__init__.py", "files.py"):
        shutil.copy(src / name, dst / name)
    for f in (src / "models").glob("*.py"):
        shutil.copy(f, dst / "models" / f.name)
    return dst


# ---- markers and run states ------------------------------------------------------------------
def _read_marker(marker: Path | None) -> str | None:
    if marker is None or not marker.exists():
        return None
    try:
        return str(json.loads(marker.read_text())["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{marker}: damaged run marker; delete it to start a new MLflow "
                         "run") from None


def _write_marker(marker: Path, run_id: str, **extra: Any) -> None:
    from ecgtransfer.files import atomic_file

    marker.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(marker) as f:
        json.dump({"run_id": run_id, **extra}, f)


class EndedEarly(Exception):
    """Raised inside a run to stop it on purpose before it is done (a search's pruner stopping
    an unpromising trial): the run ends FINISHED, not FAILED, with what it logged so far."""


def _status_of(exc: BaseException | None) -> str:
    if exc is None or isinstance(exc, EndedEarly):
        return "FINISHED"
    return "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"


@contextlib.contextmanager
def _ending(run_id: str, end) -> Iterator[None]:
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        end(_status_of(error))


def _user() -> str:
    """Who runs this (MLflow's fluent runs record it themselves; client-made ones do not)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        return str(os.getuid()) if hasattr(os, "getuid") else ""


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A run as plain values (what :meth:`Tracker.find_runs` returns): no MLflow object leaves
    this module through it."""

    run_id: str
    name: str
    status: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    experiment_id: str = ""

    def tag(self, name: str, default: str = "") -> str:
        """The ecgtransfer tag ``name`` (``stage`` reads ``ecgtransfer.stage``); a name that
        is not in :data:`ecgtransfer.tags.VOCABULARY` is a ``ValueError``."""
        return self.tags.get(tag_key(name), default)


def _record(run) -> RunRecord:
    return RunRecord(run.info.run_id, run.data.tags.get("mlflow.runName", ""), run.info.status,
                     dict(run.data.tags), dict(run.data.params), dict(run.data.metrics),
                     run.info.experiment_id)


_TAG_VALUE = re.compile(r"[^'\\`]*")


def _search_clauses(status: str | None, run_ids: Sequence[str] | None,
                    tags: Mapping[str, str]) -> str:
    clauses = []
    for name, value in tags.items():
        if not _TAG_VALUE.fullmatch(str(value)):
            raise ValueError(f"{name}: {value!r} cannot be searched for (it holds a quote)")
        clauses.append(f"tags.`{tag_key(name)}` = '{value}'")
    if status is not None:
        clauses.append(f"attributes.status = '{status}'")
    if run_ids is not None:
        bad = [r for r in run_ids if not re.fullmatch(r"[A-Za-z0-9_-]+", str(r))]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an MLflow run id")
        clauses.append("attributes.run_id IN (" + ", ".join(f"'{r}'" for r in run_ids) + ")")
    return " and ".join(clauses)


# ---- the tracker ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, init=False)
class Tracker:
    """One MLflow tracking store: where a stage's runs go and where runs are read back from.

    The caller makes one (the CLI from ``--tracking-uri``, a pipeline from its file, a search
    for its trials) and hands it to the stages it runs in
    :attr:`ecgtransfer.stages.Context.tracker`; two trackers in one process log to two stores.
    Nothing points MLflow's process-wide state anywhere except inside :meth:`open_run`'s block,
    and that is put back when the block ends.

    Parameters
    ----------
    uri : str, optional
        The store: ``sqlite:///PATH`` or a server's URL; default ``$MLFLOW_TRACKING_URI``, else
        :data:`DEFAULT_TRACKING_URI`.
    """

    uri: str

    def __init__(self, uri: str | None = None):
        object.__setattr__(self, "uri", tracking_uri(uri))

    @property
    def client(self):
        """The store's MLflow client; the store is checked on first use (once per process)."""
        _open_store(self.uri)
        return _client_of(self.uri)

    # -- experiments --
    def experiment(self, name: str) -> str:
        """The id of experiment ``name``, created if new (in an SQLite store with its artifacts
        in ``mlruns/<name>`` beside the database)."""
        client = self.client
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        folder = _sqlite_dir(self.uri)
        location = None
        if folder is not None:
            location = (folder / "mlruns" / re.sub(r"[^A-Za-z0-9._-]+", "_", name)).as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except Exception:  # created meanwhile by another process
            return client.get_experiment_by_name(name).experiment_id

    def describe_experiment(self, name: str, text: str) -> None:
        """Create experiment ``name`` if new and give it a description (``mlflow.note.content``,
        shown at the top of its page) unless it has one: one someone wrote is never replaced."""
        client = self.client
        found = client.get_experiment(self.experiment(name))
        if text and not found.tags.get("mlflow.note.content"):
            client.set_experiment_tag(found.experiment_id, "mlflow.note.content", text)

    def experiment_id(self, name: str) -> str:
        """The id of existing experiment ``name``; a missing one is a one-line error naming it."""
        found = self.client.get_experiment_by_name(name)
        if found is None:
            raise ValueError(f"--experiment {name}: no such MLflow experiment at {self.uri}")
        return found.experiment_id

    # -- opening and ending runs --
    @contextlib.contextmanager
    def open_parent_run(self, *, experiment: str, name: str, tags: Mapping[str, str],
                        marker: Path | None = None, parent: str | None = None) -> Iterator[Run]:
        """A run other runs nest under (a pipeline's, a pipeline stage's, a cross-validation's):
        reopened (set RUNNING) when ``marker`` names one, else created and recorded in
        ``marker``. It ends FINISHED when the block ends, FAILED on an error, KILLED on Ctrl-C
        or SIGTERM (which the CLI turns into ``KeyboardInterrupt``)."""
        check_keys(tags)
        run_id = _read_marker(marker)
        new = run_id is None
        client = self.client
        if not new:
            _call(client.update_run, run_id, status="RUNNING")
        else:
            all_tags = {**tags, **({"mlflow.parentRunId": parent} if parent else {}),
                        "mlflow.user": _user()}
            run_id = _call(client.create_run, self.experiment(experiment), run_name=name,
                           tags={k: text(v) for k, v in all_tags.items()}).info.run_id
            if marker is not None:
                _write_marker(marker, run_id)
        with _ending(run_id, lambda status: self.end_run(run_id, status)):
            yield Run(self, run_id, new)

    @contextlib.contextmanager
    def open_run(self, *, experiment: str, name: str, tags: Mapping[str, str],
                 marker: Path | None = None, resume: bool = False,
                 parent: str | None = None) -> Iterator[Run]:
        """A stage's run: with ``resume`` and a ``marker`` naming a run, that run reopened; else
        a new one (``Run.new``), recorded in ``marker``. While the block runs it is MLflow's
        active run and MLflow points at this store (what ``mlflow.pytorch.log_model`` reads);
        both are put back after. It ends as :meth:`open_parent_run`'s does."""
        import mlflow

        check_keys(tags)
        run_id = _read_marker(marker) if resume else None
        new = run_id is None
        all_tags = {**tags, **({"mlflow.parentRunId": parent} if parent else {})}
        all_tags = {k: text(v) for k, v in all_tags.items()}
        experiment_id = self.experiment(experiment)
        with _pointed(self.uri):
            run = _call(mlflow.start_run, run_id=run_id, experiment_id=experiment_id,
                        run_name=name if new else None, nested=mlflow.active_run() is not None,
                        tags=all_tags if new else None)
            if new and marker is not None:
                _write_marker(marker, run.info.run_id)
            with _ending(run.info.run_id, lambda status: _call(mlflow.end_run, status)):
                yield Run(self, run.info.run_id, new)

    @_shielded
    def end_run(self, run_id: str, status: str) -> None:
        """Mark a run FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status)

    def run(self, run_id: str) -> Run:
        """A run made earlier, to tag or log to."""
        return Run(self, run_id)

    def marked_run(self, marker: Path) -> Run | None:
        """The run a stage recorded in ``marker`` (its ``run.json``), to tag or log to after the
        stage returned; None when there is no marker."""
        run_id = _read_marker(Path(marker))
        return None if run_id is None else Run(self, run_id)

    # -- reading runs back --
    def find_runs(self, experiments: Sequence[str], *, status: str | None = None,
                  run_ids: Sequence[str] | None = None, **tags: str) -> list[RunRecord]:
        """Runs of the named experiments whose ecgtransfer tags have the given values
        (``find_runs(["ft"], stage="finetune", pipeline_run=ID, status="FINISHED")``),
        optionally among ``run_ids`` only.

        Raises
        ------
        ValueError
            An experiment that does not exist, or a value that cannot be searched for (a
            quote), naming it.
        """
        if run_ids is not None and not run_ids:
            return []
        where = _search_clauses(status, run_ids, tags)
        ids = [self.experiment_id(name) for name in experiments]
        return [_record(r) for r in self.client.search_runs(ids, where, max_results=50000)]

    def get_run(self, run_id: str) -> RunRecord:
        """A run, or a one-line ``ValueError`` naming it when the store has none such."""
        from mlflow.exceptions import MlflowException

        try:
            return _record(self.client.get_run(run_id))
        except MlflowException:
            raise ValueError(f"{run_id}: no such MLflow run at {self.uri}") from None

    def child_runs(self, run: RunRecord) -> list[RunRecord]:
        """The runs nested directly under ``run``, oldest first."""
        found = self.client.search_runs([run.experiment_id],
                                        f"tags.mlflow.parentRunId = '{run.run_id}'",
                                        order_by=["attributes.start_time ASC"])
        return [_record(r) for r in found]

    def run_tags(self, run_id: str) -> dict[str, str]:
        """Tags of a run, or {} when the run cannot be reached (a copied folder, another
        store)."""
        if not run_id:
            return {}
        try:
            return dict(self.client.get_run(run_id).data.tags)
        except Exception:  # the link is informative only
            return {}

    def experiment_of(self, run_id: str) -> str:
        """The experiment id of a run ("" when it cannot be reached)."""
        try:
            return self.client.get_run(run_id).info.experiment_id
        except Exception:  # a run of another tracking store
            return ""

    def logged_model_run(self, uri: str) -> str:
        """The run a ``models:/m-...`` logged model came from ("" when unknown)."""
        try:
            return self.client.get_logged_model(uri.split("/")[1]).source_run_id or ""
        except Exception:  # a registered-model URI, or another store: informative only
            return ""

    # -- artifacts --
    def download_plain_model(self, uri: str, dst: str | Path) -> Path:
        """The plain weights file logged with model ``uri`` (``models:/...`` or ``runs:/...``),
        downloaded into ``dst``. The pickled MLflow model beside it is never loaded.

        Raises
        ------
        ValueError
            One line naming the URI: not reachable, or logged without a plain weights file
            (by an ecgtransfer before 0.2; load its run folder's ``model.pt`` instead).
        """
        import mlflow.artifacts

        logged = re.fullmatch(r"models:/(m-[0-9a-f]+)/?", uri)
        path: Path | None = None
        reason = ""
        try:
            with _quiet_downloads():
                if logged:  # one file of a logged model
                    base = self.client.get_logged_model(logged.group(1)).artifact_location
                    path = Path(mlflow.artifacts.download_artifacts(
                        artifact_uri=f"{base}/extra_files/{PLAIN_MODEL_FILE}",
                        dst_path=str(dst), tracking_uri=self.uri))
                else:  # runs:/..., a registered model: the model folder, read as files only
                    folder = Path(mlflow.artifacts.download_artifacts(
                        artifact_uri=uri, dst_path=str(dst), tracking_uri=self.uri))
                    path = folder / "extra_files" / PLAIN_MODEL_FILE
        except Exception as exc:  # MLflow raises several kinds for a missing URI or file
            reason = type(exc).__name__
        if path is None or not path.is_file():
            why = f" ({reason})" if reason else ""
            raise ValueError(f"{uri}: no plain weights file in this logged model{why}; it may "
                             "predate ecgtransfer 0.2 - pass the run folder's model.pt instead "
                             "(ecgtransfer never unpickles a logged model)")
        return path

    def download_artifact(self, run_id: str, path: str, dst: str | Path) -> Path | None:
        """The artifact ``path`` of run ``run_id``, downloaded into ``dst``; None when the run
        has no such artifact (a run logged before it existed) or its store cannot be reached."""
        import mlflow.artifacts

        try:
            with _quiet_downloads():
                found = Path(mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=self.uri))
        except Exception:  # MLflow raises several kinds for a missing artifact
            return None
        return found if found.is_file() else None


# ---- the UI ---------------------------------------------------------------------------------
FINETUNE_FILTER = (f"tags.`{tag_key('stage')}` = 'finetune' "
                   f"and tags.`{tag_key('evaluation')}` != 'fold'")
"""The search that shows the fine-tune runs in the MLflow UI, one row per evaluation: a run on
one test split, or a cross-validation with its pooled out-of-fold metrics (not its fold runs,
nested under it)."""


FINETUNE_VIEW = "ecgtransfer-finetune"
"""The key of the saved UI view that shows the fine-tune comparison."""


def _finetune_view() -> dict[str, Any]:
    """The MLflow UI's state for the fine-tune comparison: the fine-tune runs, best test macro
    AUROC first, with the columns that say what each run was and how it did."""
    tags = [f"tags.`{tag_key(k)}`" for k in ("strategy", "source", "source_targets", "trunks",
                                         "freeze", "train_fraction", "seed", "cv")]
    metrics = [f"metrics.`test_{m}`" for m in ("macro_auroc", "accuracy", "macro_f1")]
    return {"searchFilter": FINETUNE_FILTER, "orderByKey": "metrics.`test_macro_auroc`",
            "orderByAsc": False, "selectedColumns": metrics + tags}


def ui_link(tracker: Tracker, base_url: str, experiment: str | None) -> str:
    """The MLflow UI page that opens ``experiment``'s fine-tune comparison with no further click:
    its runs in the model-training view, filtered to the fine-tune runs, sorted by test macro
    AUROC, with strategy, source, fraction, seed and the test metrics as columns. The view is
    saved in the experiment (MLflow's shared views: the tag ``mlflow.sharedViewState.<key>``)
    and the link names it; the UI's front page when there is no such experiment."""
    base = base_url.rstrip("/")
    client = tracker.client
    found = client.get_experiment_by_name(experiment) if experiment else None
    if found is None:
        return f"{base}/"
    client.set_experiment_tag(found.experiment_id, f"mlflow.sharedViewState.{FINETUNE_VIEW}",
                              json.dumps(_finetune_view()))
    return (f"{base}/#/experiments/{found.experiment_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={FINETUNE_VIEW}")


def latest_pipeline_experiment(tracker: Tracker) -> str | None:
    """The experiment of the most recently started pipeline run in the store, if any."""
    client = tracker.client
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return None
    runs = client.search_runs(ids, f"tags.`{tag_key('stage')}` = 'pipeline'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    return client.get_experiment(runs[0].info.experiment_id).name if runs else None


def start_ui(tracker: Tracker, host: str, port: int, workers: int = 1,
             experiment_id: str | None = None):
    """Start ``mlflow ui`` on ``host:port`` against ``tracker``'s store with ``workers`` server
    processes (a subprocess); returns it once it answers, or raises a one-line error if it
    stops first or does not answer in 60 s.

    Before returning it asks the server once for what the page of ``experiment_id`` asks
    first (:func:`_warm_ui`): a server's first answers open its store and load its handlers,
    which its first visitor would otherwise wait for. (Most of the first visit's wait on 2
    cores was MLflow's job processes, turned off below: 5.5-7.5 s -> 1.0-3.3 s together.)"""
    import subprocess
    import sys
    import tempfile
    import time
    import urllib.request

    uri = tracker.uri
    log_file = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads would stall the server
    env = dict(os.environ)
    if not {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "MLFLOW_SQL_TRACE_ROLLUPS_ENABLED"} & set(env):
        # MLflow 3 starts 7 job processes for its GenAI features (scorers, trace rollups) that
        # no ecgtransfer page uses; on 2 cores their start-up doubled the first visit's wait
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                             "--host", host, "--port", str(port), "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=log_file, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log_file.seek(0)
            err = log_file.read().strip().splitlines()
            raise ValueError(f"mlflow ui on {host}:{port} stopped at once "
                             f"({err[-1] if err else 'no message'}); is the port taken?")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2):
                pass
        except OSError:
            time.sleep(0.3)
            continue
        _warm_ui(f"http://{host}:{port}", experiment_id)
        return proc
    proc.terminate()
    raise ValueError(f"mlflow ui on {host}:{port} did not answer within 60 s")


def _warm_ui(base: str, experiment_id: str | None) -> None:
    """Ask a new MLflow server what the runs page asks first (the experiment, a page of its
    runs, the GraphQL endpoint), so that its first visitor does not wait for the server to
    open its store. Best effort: an answer that fails changes nothing for the visitor."""
    import urllib.request

    asks = [("/graphql", {"query": "query { __typename }"})]
    if experiment_id is not None:
        asks[:0] = [(f"/ajax-api/2.0/mlflow/experiments/get?experiment_id={experiment_id}", None),
                    ("/ajax-api/2.0/mlflow/runs/search",
                     {"experiment_ids": [experiment_id], "max_results": 1})]
    for path, body in asks:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                answer.read()
        except OSError:  # HTTPError included: the visitor will meet the same answer
            pass
