"""Interval-warped records of a store into a new store, each re-measured by the labeller.

Record ``i`` of the warped store (``warp-0000000i``) is source record ``i mod N`` warped to a
request drawn with ``numpy.random.default_rng([seed, i])``: the same for any number of
workers, shard split or resume. For each record:

1. the labeller's row and beat marks of the source record (:func:`wave_marks`);
2. requests drawn until one fits the record (:func:`draw_request`, :func:`warp_record`; at most
   ``tries``), else the record is given up with the last reason;
3. the warp, asked through the labeller's usual response to it (:data:`PRIOR_GAIN`,
   :data:`QRS_COUPLING`), and the labeller again on the warped record. Where an interval landed
   outside its tolerance (:data:`TOLERANCE`), the warp is made again aimed by what the labeller
   measured so far (``corrections`` times at most), and the attempt that landed closest is
   kept.

With ``fraction`` below 1, a record is warped with that probability (its own seeded draw) and
is otherwise its source record as it is (``warped`` False, no request): DeepFake and warped
records in one store. The index keeps the request (``requested_*``) beside what the labeller
measured on the record (``measured_*``); labels for training come from the label stage run on
the warped store, which measures the same numbers. ``warp_report.json`` says how close the
measured intervals landed to the requested ones and how many records were given up, and why.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ecgtransfer import __version__
from ecgtransfer.config import check, setting
from ecgtransfer.errors import UserError

__all__ = ["AugmentConfig", "AugmentReport", "TOLERANCE", "augment_store", "record_id",
           "warp_one", "warp_to"]

TOLERANCE = {"hr_bpm": 2.0, "pr_ms": 10.0, "qrs_ms": 10.0, "qt_ms": 15.0}
"""How far a measured interval may land from the requested one before the warp is corrected,
and what the report counts as landed."""
_INTERVALS = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms")


class AugmentError(UserError):
    """A request or a source the stage cannot use; one line naming it."""


def record_id(index: int) -> str:
    """Store id of warped record ``index``."""
    return f"warp-{int(index):08d}"


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Settings of an interval warp: what is drawn, and how hard the warp tries."""

    n: int | None = setting(None, "warped records to make (default: one per source record); "
                            "record i warps source record i mod N")
    seed: int = setting(0, "record i's request depends only on (seed, i)")
    hr_bpm: list[float] = setting([35.0, 160.0], "range the heart rate is drawn from "
                                  "(uniform; low and high)", unit="bpm")
    pr_ms: list[float] = setting([80.0, 300.0], "range the PR interval is drawn from (the "
                                 "labeller measures PR up to 300 ms)", unit="ms")
    qrs_ms: list[float] = setting([60.0, 180.0], "range the QRS duration is drawn from",
                                  unit="ms")
    qtc_ms: list[float] = setting([350.0, 560.0], "range the corrected QT is drawn from; the QT "
                                  "is the QTc at the drawn rate by qt_rr", unit="ms")
    qt_ms: list[float] = setting([240.0, 560.0], "a QT outside this range is drawn again",
                                 unit="ms")
    qt_rr: str = setting("fridericia", "the QT-RR relation that gives a QT its rate",
                         choices=("fridericia", "bazett", "framingham"))
    change: list[str] = setting(list(_INTERVALS), "the intervals drawn; the others keep the "
                                "record's own (a kept QT follows a drawn rate by qt_rr)")
    match: str | None = setting(None, "a label file: each request is one of its rows (HR, PR, "
                                "QRS, QT measured together) instead of the ranges",
                                role="input", metavar="FILE")
    fraction: float = setting(1.0, "share of the records warped; the others are their source "
                              "record as it is (DeepFake plus warped records in one store, "
                              "for pretraining on a mix)")
    tries: int = setting(50, "requests drawn for one record before it is given up")
    corrections: int = setting(2, "warps again, the miss taken off, when an interval lands "
                               "outside its tolerance (HR 2 bpm, PR and QRS 10 ms, QT 15 ms)")
    shard_index: int = setting(0, "make records K, K+M, ... only (merge the shards with "
                               "`data merge`)", metavar="K")
    num_shards: int = setting(1, "shards the records are split into", metavar="M")

    def __post_init__(self) -> None:
        from ecgtransfer.features.warp import request_problem

        for key in ("hr_bpm", "pr_ms", "qrs_ms", "qtc_ms", "qt_ms"):
            value = getattr(self, key)
            check(not isinstance(value, (list, tuple)) or len(value) != 2
                  or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                             for v in value), key, f"a range of two numbers, got {value!r}")
        problem = request_problem(self.ranges())
        if problem:
            key, _, why = problem.partition(": ")
            check(True, key, why)
        check(self.n is not None and int(self.n) <= 0, "n", f"must be positive, got {self.n}")
        check(int(self.seed) < 0, "seed", f"must be a non-negative integer, got {self.seed}")
        check(int(self.tries) < 1, "tries", f"must be at least 1, got {self.tries}")
        check(not 0 < float(self.fraction) <= 1, "fraction",
              f"a share in (0, 1], got {self.fraction}")
        check(int(self.corrections) < 0, "corrections", "must not be negative")
        check(int(self.num_shards) < 1, "num_shards", "must be at least 1")
        check(not 0 <= int(self.shard_index) < int(self.num_shards), "shard_index",
              f"must be in 0 .. {int(self.num_shards) - 1}, got {self.shard_index}")

    def ranges(self):
        from ecgtransfer.features.warp import Ranges

        return Ranges(hr_bpm=tuple(self.hr_bpm), pr_ms=tuple(self.pr_ms),
                      qrs_ms=tuple(self.qrs_ms), qtc_ms=tuple(self.qtc_ms),
                      qt_ms=tuple(self.qt_ms), qt_rr=self.qt_rr, change=tuple(self.change))


@dataclass
class AugmentReport:
    """What an augment run did: the complete store, records warped now, already there and
    given up, and the report's numbers (``warp_report.json``)."""

    store: Any
    written: int
    skipped: int
    given_up: int
    seconds: float
    report: dict


# ---- one record ------------------------------------------------------------------------------
def _misses(measured: dict, request) -> dict[str, float]:
    """Measured minus requested, per requested interval (NaN where the labeller abstained)."""
    out = {}
    for k in _INTERVALS:
        want = float(getattr(request, k))
        if np.isfinite(want):
            got = measured.get(k, math.nan)
            out[k] = float(got) - want if got is not None and np.isfinite(got) else math.nan
    return out


PRIOR_GAIN = {"hr_bpm": 1.0, "pr_ms": 1.0, "qrs_ms": 0.65, "qt_ms": 0.9}
"""How much of a warp's change of each interval the labeller measures, before a record has
said: the first warp asks for the change divided by it. The labeller's QRS edges are where the
slope falls below a share of the QRS's steepest, and a slowed QRS has lower slopes, so it sees
about two thirds of a widening or narrowing (median gain 0.67 and 0.62 on 300 DeepFake records,
10th-90th percentile 0.45-0.8; QT 0.9, PR and HR 1.0; ``docs/synth.md``)."""
QRS_COUPLING = {"pr_ms": 0.08, "qt_ms": -0.08}
"""What the labeller adds to PR and QT per ms of QRS change the warp asks: the part of a QRS's
widening it does not see is partly at its onset, so its QRS onset lies later than the warp's,
lengthening the PR and shortening the QT (slopes of the miss on the QRS ask: PR +0.07 widening,
+0.12 narrowing; QT -0.05, -0.07; 300 DeepFake records)."""
_GAIN_LIMITS = (0.3, 2.0)


def _next_ask(tried: list[tuple[float, float]], want: float, prior: float) -> float:
    """The next change to ask for (warp space) to make the labeller see ``want`` (a change from
    the record's own value), given the ``(asked, seen)`` pairs tried so far: between the closest
    attempts on either side of ``want`` when there are (regula falsi), else along the gain of the
    last attempt (its line through no change, seen nothing), the gain kept within
    :data:`_GAIN_LIMITS` and ``prior`` for a move under 5 ms."""
    below = [(a, s) for a, s in tried if s < want]
    above = [(a, s) for a, s in tried if s > want]
    if below and above:
        a0, s0 = max(below, key=lambda t: t[1])
        a1, s1 = min(above, key=lambda t: t[1])
        return a0 + (want - s0) * (a1 - a0) / (s1 - s0)
    asked, seen = tried[-1]
    gain = float(np.clip(seen / asked, *_GAIN_LIMITS)) if abs(asked) >= 5 else prior
    return asked + (want - seen) / gain


def _badness(misses: dict[str, float]) -> float:
    return sum(abs(v) / TOLERANCE[k] if np.isfinite(v) else 1e6 for k, v in misses.items())


def _wanted(row: dict, request) -> dict[str, float]:
    """Per requested interval the change from the record's own value (the others left out)."""
    out = {}
    for k in _INTERVALS:
        want, have = float(getattr(request, k)), float(row.get(k, math.nan))
        if np.isfinite(want) and np.isfinite(have):
            out[k] = want - have
    return out


def _base(row: dict, request, asks: dict[str, float]) -> dict[str, float]:
    """The values :func:`warp_record` moves from so that it changes each interval by ``asks``."""
    out = {k: float(row.get(k, math.nan)) for k in _INTERVALS}
    out.update({k: float(getattr(request, k)) - a for k, a in asks.items()})
    return out


def first_ask(row: dict, request) -> dict[str, float]:
    """The changes the first warp asks, per requested interval: the QRS's change divided by
    the labeller's usual gain (:data:`PRIOR_GAIN`), PR's and QT's less what that QRS ask moves
    them (:data:`QRS_COUPLING`), each divided by its own gain."""
    wanted = _wanted(row, request)
    asks = {}
    if "qrs_ms" in wanted:
        asks["qrs_ms"] = wanted["qrs_ms"] / PRIOR_GAIN["qrs_ms"]
    for k, want in wanted.items():
        if k != "qrs_ms":
            want -= QRS_COUPLING.get(k, 0.0) * asks.get("qrs_ms", 0.0)
            asks[k] = want / PRIOR_GAIN[k]
    return asks


def first_warp(x: np.ndarray, fs: float, marks: np.ndarray, row: dict,
               request) -> tuple[np.ndarray, dict[str, float]]:
    """The first attempt at ``request`` and the changes it asked: :func:`first_ask`'s, or the
    request's own changes where those do not fit the record (a QRS asked wider than the request
    can leave too short an ST-T).

    Raises
    ------
    WarpError
        The request itself does not fit the record.
    """
    from ecgtransfer.features.warp import NotWarpable, WarpError, warp_record

    asks = first_ask(row, request)
    try:
        return warp_record(x, fs, marks, _base(row, request, asks), request), asks
    except NotWarpable:
        raise
    except WarpError:
        asks = _wanted(row, request)
        return warp_record(x, fs, marks, _base(row, request, asks), request), asks


def warp_to(signal: np.ndarray, fs: float, leads: Sequence[str], row: dict, marks: np.ndarray,
            request, first: tuple[np.ndarray, dict] | None = None,
            corrections: int = 2) -> tuple[np.ndarray, dict[str, Any]]:
    """``signal`` warped to ``request`` (its labeller ``row`` and beat ``marks`` given), and the
    labeller's row of the result.

    The first warp asks each change as :func:`first_ask` says. Where an interval then landed
    outside :data:`TOLERANCE`, the record is warped again (``corrections`` times at most), each
    interval's ask moved by a root-finding step on what the labeller measured so far
    (:func:`_next_ask`; PR and QT with what the QRS ask moves them taken off), and the attempt
    that landed closest over all intervals is kept. ``first``: the first attempt and its asks,
    when already made (:func:`first_warp`).

    Raises
    ------
    WarpError
        The request does not fit the record (the first attempt's reason).
    """
    from ecgtransfer.features.intervals import ecg_intervals
    from ecgtransfer.features.warp import WarpError, warp_record

    x = np.asarray(signal, dtype=np.float64)
    own = {k: float(row.get(k, math.nan)) for k in _INTERVALS}
    wanted = _wanted(row, request)
    warped, asks = first if first is not None else first_warp(x, fs, marks, row, request)
    measured = ecg_intervals(warped, fs, leads)
    misses = _misses(measured, request)
    tried: dict[str, list[tuple[float, float]]] = {k: [] for k in wanted}
    seen = measured
    for _ in range(int(corrections)):
        if all(np.isfinite(v) and abs(v) <= TOLERANCE[k] for k, v in misses.items()):
            break
        # QRS first: its next ask moves PR's and QT's targets
        nxt = dict(asks)
        for k in sorted(wanted, key=lambda k: k != "qrs_ms"):
            got = float(seen.get(k, math.nan)) - own[k]
            if not np.isfinite(got):
                continue
            c = QRS_COUPLING.get(k, 0.0)
            tried[k].append((asks[k], got - c * asks.get("qrs_ms", 0.0)))
            nxt[k] = _next_ask(tried[k], wanted[k] - c * nxt.get("qrs_ms", 0.0), PRIOR_GAIN[k])
        try:
            again = warp_record(x, fs, marks, _base(row, request, nxt), request)
        except WarpError:
            break
        asks, seen = nxt, ecg_intervals(again, fs, leads)
        misses_again = _misses(seen, request)
        if _badness(misses_again) < _badness(misses):
            warped, measured, misses = again, seen, misses_again
    return warped, measured


def warped_here(config: AugmentConfig, index: int) -> bool:
    """Whether record ``index`` is warped (else its source record is kept as it is): a draw
    below ``config.fraction`` from ``default_rng([seed, index, 1])``, a stream of its own, so
    a record's request does not depend on the fraction."""
    if float(config.fraction) >= 1:
        return True
    return bool(np.random.default_rng([int(config.seed), int(index), 1]).uniform()
                < float(config.fraction))


def warp_one(signal: np.ndarray, fs: float, leads: Sequence[str], index: int, config: AugmentConfig,
             table: np.ndarray | None = None) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Warped record ``index`` of ``config`` made from ``signal``, and its index columns
    (``requested_*``, ``measured_*``, ``warp_tries``); None and ``{"reason": ...}`` when it was
    given up."""
    from ecgtransfer.features.intervals import wave_marks
    from ecgtransfer.features.warp import NotWarpable, WarpError, draw_request, longest_pr_ms

    x = np.asarray(signal, dtype=np.float64)
    if not warped_here(config, index):  # kept as it is: a mix of source and warped records
        from ecgtransfer.features.intervals import ecg_intervals

        row = ecg_intervals(x, fs, leads)
        return x.astype(np.float32), {
            **{f"requested_{k}": math.nan for k in _INTERVALS},
            **{f"measured_{k}": float(row.get(k, math.nan)) for k in _INTERVALS},
            "warped": False, "warp_tries": 0}
    row, marks = wave_marks(x, fs, leads)
    if not len(marks):
        return None, {"reason": f"not delineated ({row.get('qrs_status') or 'no beats'})"}
    rng = np.random.default_rng([int(config.seed), int(index)])
    ranges = config.ranges()
    reason = "every drawn QT fell outside qt_ms, or no PR in pr_ms fitted before it"
    for tries in range(1, int(config.tries) + 1):
        request = draw_request(rng, row, ranges, table,
                               room=lambda r: longest_pr_ms(marks, fs, row, r))
        if request is None:
            continue
        if not np.isfinite(row.get("pr_ms", math.nan)):  # no P wave (AF): PR stays unmeasured
            request = replace(request, pr_ms=math.nan)
        try:
            first = first_warp(x, fs, marks, row, request)
        except NotWarpable as exc:
            return None, {"reason": str(exc)}
        except WarpError as exc:
            reason = str(exc)
            continue
        break
    else:
        return None, {"reason": f"no request fits in {config.tries} tries (last: {reason})"}
    warped, measured = warp_to(x, fs, leads, row, marks, request, first,
                               int(config.corrections))
    columns: dict[str, Any] = {f"requested_{k}": float(getattr(request, k)) for k in _INTERVALS}
    columns.update({f"measured_{k}": float(measured.get(k, math.nan)) for k in _INTERVALS})
    columns.update(warped=True, warp_tries=tries)
    return warped.astype(np.float32), columns


# ---- a store ---------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(source: str, config: dict, table: np.ndarray | None) -> None:
    from ecgtransfer.data.store import SignalStore

    store = SignalStore(source)
    _WORKER.update(store=store, ids=store.index["record_id"].to_numpy(), table=table,
                   config=AugmentConfig(**config))


def _work(index: int) -> tuple[int, np.ndarray | None, dict[str, Any]]:
    store, config, table = _WORKER["store"], _WORKER["config"], _WORKER["table"]
    k = index % len(store)
    source = str(_WORKER["ids"][k])
    try:
        warped, columns = warp_one(store[k], store.fs, store.leads, index, config, table)
    except Exception as exc:  # noqa: BLE001 - a record must not stop the other 100,000
        message = str(exc).splitlines()[0] if str(exc) else ""
        warped, columns = None, {"reason": f"warp error: {type(exc).__name__}: {message}"}
    return index, warped, {"source_record": source, **columns}


def _results(source: Path, config: AugmentConfig, table: np.ndarray | None,
             todo: Iterator[int], workers: int) -> Iterator[tuple[int, Any, dict]]:
    if workers <= 1:
        _init_worker(str(source), asdict(config), table)
        try:
            yield from map(_work, todo)
        finally:
            _WORKER.clear()
        return
    import multiprocessing as mp

    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_init_worker,
                  initargs=(str(source), asdict(config), table)) as pool:
        yield from pool.imap(_work, todo, chunksize=4)


def _match_table(path: str) -> np.ndarray:
    """The rows of a label file with all four intervals measured, ``(n, 4)``."""
    from ecgtransfer.features.labels import read_labels

    labels = read_labels(path)
    missing = [c for c in _INTERVALS if c not in labels.columns]
    if missing:
        raise AugmentError(f"{path}: no column {missing[0]!r}; not a label file")
    table = labels[list(_INTERVALS)].to_numpy(dtype=float)
    table = table[np.isfinite(table).all(axis=1)]
    if not len(table):
        raise AugmentError(f"{path}: no record has all of HR, PR, QRS and QT measured")
    return table


def identity(source: Path, config: AugmentConfig, dataset: str = "") -> dict[str, Any]:
    """What must match for a run to continue a warped store; ``dataset`` (what the store
    holds, the name training runs are tagged with) is ``warped-<source>`` when every record is
    warped, ``<source>+warped`` when ``config.fraction`` keeps some as they are."""
    from ecgtransfer.data.store import content_hash
    from ecgtransfer.features.intervals import LABELLER_VERSION
    from ecgtransfer.features.warp import WARP_VERSION

    settings = {k: v for k, v in asdict(config).items()
                if k not in ("n", "shard_index", "num_shards", "match")}
    what = dataset or "store"
    ident = {"dataset": f"warped-{what}" if config.fraction >= 1 else f"{what}+warped",
             "source_store": content_hash(source), "warp_version": WARP_VERSION,
             "labeller_version": LABELLER_VERSION, **settings}  # flat: a clash names its key
    if config.match:
        from ecgtransfer.data.manifests import sha256_file

        ident["match_sha256"] = sha256_file(config.match)
    if config.num_shards > 1:
        ident["shard"] = f"{int(config.shard_index)}/{int(config.num_shards)}"
    return ident


def summarise(index, rejects) -> dict[str, Any]:
    """``warp_report.json``'s numbers from a warped store's index and rejects."""
    from ecgtransfer.features.warp import summarise_errors

    kept = int((~index["warped"].astype(bool)).sum()) if "warped" in index else 0
    out: dict[str, Any] = {"records": int(len(index)), "warped": int(len(index)) - kept,
                           "kept_as_they_are": kept, "given_up": int(len(rejects)),
                           "tolerance": TOLERANCE, "intervals": {}}
    for k in _INTERVALS:
        req, got = f"requested_{k}", f"measured_{k}"
        if req not in index.columns:
            continue
        r, m = index[req].to_numpy(float), index[got].to_numpy(float)
        asked = np.isfinite(r)
        err = summarise_errors(r, m)
        landed = np.abs(m[asked] - r[asked]) <= TOLERANCE[k]
        out["intervals"][k] = {**err, "requested": int(asked.sum()),
                               "not_measured": int((asked & ~np.isfinite(m)).sum()),
                               "within_tolerance": float(landed.mean()) if asked.any() else
                               math.nan}
    out["given_up_reasons"] = {}
    if len(rejects):  # grouped by reason: the source record's id and the numbers left out
        reasons = (rejects["reason"].str.split(": ", n=1).str[-1]
                   .str.replace(r"-?\d+(\.\d+)?", "N", regex=True))
        out["given_up_reasons"] = {str(k): int(v) for k, v in reasons.value_counts().items()}
    return out


def augment_store(source: str | Path, out: str | Path, config: AugmentConfig, *,
                  workers: int | None = None, progress: bool = True) -> AugmentReport:
    """Warp the records of ``source`` into the store ``out``; resumable and extendable.

    Parameters
    ----------
    source : str or Path
        A complete signal store (DeepFake first; any store the labeller delineates).
    out : str or Path
        The warped store's folder.
    config : AugmentConfig
    workers : int, optional
        Processes (default: the CPU count).
    progress : bool
        Show a progress bar.

    Returns
    -------
    AugmentReport

    Raises
    ------
    AugmentError, StoreError
        An empty or damaged source, a ``match`` file that is not a label file, a store of other
        settings in ``out``, a full disk: one line naming it; records written stay valid.
    """
    from tqdm.auto import tqdm

    from ecgtransfer.data.store import SignalStore, StoreWriter
    from ecgtransfer.files import atomic_file

    t0 = time.perf_counter()
    source = Path(source)
    src = SignalStore(source)
    if not len(src):
        raise AugmentError(f"{source}: the store holds no records to warp")
    table = _match_table(config.match) if config.match else None
    n = int(config.n) if config.n is not None else len(src)
    writer = StoreWriter(out, source="warped", fs=src.fs, leads=src.leads,
                         identity=identity(source, config, src.dataset),
                         info={"source_path": str(source), "source_kind": src.meta.get("source")})
    done = writer.done
    shard, shards = int(config.shard_index), int(config.num_shards)
    mine = range(shard, n, shards)
    todo = [i for i in mine if record_id(i) not in done]  # ints only: 100,000 is < 1 MB
    given_up = 0
    with writer, tqdm(total=len(todo), desc="augment", unit="ecg", disable=not progress) as bar:
        for i, warped, columns in _results(source, config, table, iter(todo),
                                           workers or os.cpu_count() or 1):
            if warped is None:
                writer.reject(record_id(i), f"{columns['source_record']}: {columns['reason']}")
                given_up += 1
            else:
                writer.add(record_id(i), warped, **columns)
            bar.update()
        writer.meta["info"]["n"] = max(n, int(writer.meta["info"].get("n", 0)))
        store = writer.finalize()
    report = {"ecgtransfer": __version__, **summarise(store.index, store.rejects)}
    with atomic_file(store.path / "warp_report.json") as f:
        json.dump(report, f, indent=2)
    return AugmentReport(store=store, written=len(todo) - given_up, skipped=len(mine) - len(todo),
                         given_up=given_up, seconds=time.perf_counter() - t0, report=report)
