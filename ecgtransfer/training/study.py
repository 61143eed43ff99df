"""An Optuna study as ``ecgtransfer tune`` keeps it: its storage checked before anything is
written and opened with one-line errors, its sampler and pruner by name, the state of its trials
(counted, interrupted ones failed and queued again) and its plots. Nothing here knows of MLflow
or of the stage a search runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecgtransfer.training.search_space import SearchSpace

__all__ = ["shown_url", "check_storage", "open_storage", "has_study", "sampler", "pruner",
           "counted", "fail_interrupted", "every_trial_failed", "plots"]

log = logging.getLogger(__name__)


def shown_url(url: str) -> str:
    """A storage URL as it may be shown and logged: its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: shown as given
        return url


def check_storage(url: str, *, named: bool, out: Path, trials_done: bool,
                  tracking_uri: str) -> None:
    """Refuse, touching nothing, a storage that cannot hold the study: not a URL, an unknown
    database kind, an in-memory or unreachable SQLite file, or an SQLite study file that is
    damaged, another program's database, or empty or missing while ``out`` holds the
    search's trials (their study is lost: a new one would run over them).

    Parameters
    ----------
    url : str
        The storage (an SQLAlchemy URL).
    named : bool
        The user named it (``--storage``), rather than taking the default beside the MLflow
        store at ``tracking_uri``.
    out : path
        The search's folder.
    trials_done : bool
        ``out`` holds trials of an earlier session of the search.

    Raises
    ------
    ValueError
        One line naming ``--storage`` and its value, or the default storage's file.
    """
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    flag = f"--storage {shown_url(url)}"
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ValueError(f"--storage {url}: not a database URL; give one such as "
                         "sqlite:///optuna.db (an SQLite file) or postgresql://USER@HOST/DB"
                         ) from None
    try:
        parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise ValueError(f"{flag}: no database kind {parsed.get_backend_name()!r} is known "
                         "(sqlite, postgresql, mysql, ...)") from None
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database or ""
    if database in ("", ":memory:"):
        raise ValueError(f"{flag}: an in-memory database keeps no study between runs; name a "
                         "file, such as sqlite:///optuna.db")
    if database.startswith("file:"):  # an SQLite URI filename: SQLite's own business
        return
    path = Path(database).resolve()
    who = flag if named else str(path)
    if not path.parent.is_dir():
        problem = "is a file" if path.parent.exists() else "does not exist"
        if named:
            raise ValueError(f"{flag}: the folder {path.parent} {problem}; create it, or name "
                             "a file in an existing folder")
        if path.parent != out.resolve():  # beside the MLflow store; a new --out is made
            raise ValueError(f"{tracking_uri}: the folder {path.parent} {problem}; create it, or pass "
                             "another --tracking-uri")
    if path.is_dir():
        raise ValueError(f"{who}: is a folder, not an SQLite file")
    lost = (f"but {out} holds this search's trials (their study is lost); nothing was "
            "touched: restore the study file from a backup, or choose another --out to start a "
            "new search")
    if not path.exists():
        if trials_done:
            raise ValueError(f"{who}: no such study file, {lost}")
        return
    _check_study_file(path, who, lost if trials_done else "")


def _check_study_file(path: Path, who: str, lost: str) -> None:
    """An existing SQLite study file, read only: empty (refused when ``lost`` says why), not
    SQLite, damaged, or another program's database."""
    import sqlite3
    from urllib.parse import quote

    restore = ("nothing was touched: restore it from a backup, or move it away and start the "
               "search in a new --out")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise ValueError(f"{who}: cannot be read ({exc.strerror})") from None
    if not head:
        if lost:
            raise ValueError(f"{who}: empty (0 bytes), {lost}")
        return  # a new study file (created, then killed before its tables were written)
    if head != b"SQLite format 3\x00":
        raise ValueError(f"{who}: not an SQLite database (damaged, or another kind of file); "
                         f"{restore}")
    try:  # read-write without creating: a journal a kill left behind is rolled back
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in
                      db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        verdict, tables = str(exc).splitlines()[0] if str(exc) else type(exc).__name__, set()
    if verdict != "ok":
        raise ValueError(f"{who}: a damaged SQLite database ({verdict}); {restore}")
    if tables and not {"studies", "version_info"} <= tables:
        shown = ", ".join(sorted(tables)[:4]) + (", ..." if len(tables) > 4 else "")
        raise ValueError(f"{who}: another program's database (tables {shown}), not Optuna "
                         "studies; pass another --storage")


def open_storage(url: str, *, named: bool):
    """Optuna's storage at ``url`` (checked by :func:`check_storage`); one line if it cannot be
    opened (a server that does not answer, a missing driver, an incompatible schema)."""
    import optuna

    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # SQLAlchemy, the database's driver and Optuna raise many kinds
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        who = f"--storage {shown_url(url)}" if named else shown_url(url)
        raise ValueError(f"{who}: cannot be opened as an Optuna storage "
                         f"({type(exc).__name__}{': ' + first if first else ''})") from None


def has_study(storage, name: str) -> bool:
    """Whether ``storage`` holds a study named ``name``."""
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def sampler(name: str, seed: int, space: SearchSpace):
    """Optuna's sampler ``name`` (``tpe``, ``random``, ``grid`` over ``space``), seeded."""
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({p.name: p.grid_values() for p in space.params},
                                           seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def pruner(name: str):
    """Optuna's pruner ``name`` (``median``, ``halving``, ``none``)."""
    import optuna

    if name == "median":  # none before 3 trials finished, nor before epoch 2
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def counted(study) -> int:
    """Trials that count towards ``trials``: finished ones, not those a kill interrupted."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
               and not t.user_attrs.get("interrupted"))


def fail_interrupted(study, storage) -> None:
    """Trials left RUNNING by a killed search (this process holds the search's lock, so no one
    runs them) are marked failed and interrupted, and run again with the same values."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)
        log.info("trial %d was interrupted; it runs again with the same values", t.number)


def every_trial_failed(study, out: Path) -> str:
    """The one line for a search none of whose trials finished: the first one's reason and
    where every reason is."""
    from optuna.trial import TrialState

    failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
              if not t.user_attrs.get("interrupted")]
    first = failed[0]
    reason = first.user_attrs.get("error") or "no reason recorded"
    return (f"{out}: every trial failed ({len(failed)} of {len(failed)}); trial {first.number}: "
            f"{reason}; each trial's reason is in {out / 'trials.csv'} (user_attrs_error)")


def plots(study, folder: Path) -> list[Path]:
    """The optimisation-history plot, and the parameter-importance plot when two trials
    completed, as PNGs in ``folder``; returns their paths."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written: list[Path] = []
    plots = [("optimization_history", ovm.plot_optimization_history)]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) >= 2 and len({k for t in complete for k in t.params}) >= 1:
        plots.append(("param_importances", ovm.plot_param_importances))
    for name, plot in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's "experimental" notices
            try:
                ax = plot(study)
            except (ValueError, RuntimeError) as exc:  # e.g. importances of a constant value
                log.info("no %s plot: %s", name, exc)
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax[0].figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(folder / f"{name}.png", dpi=100)
        written.append(folder / f"{name}.png")
        plt.close(fig)
    return written
