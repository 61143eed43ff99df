"""``ecgtransfer explain``: where on the ECG a classifier or an interval regressor looks, drawn
on the leads, summarised per wave of the beat, and tested for faithfulness.

For each record and each explained output (a class, or an interval), every method of
:mod:`ecgtransfer.explain.attribution` (Captum) attributes the output to each sample of each
lead. The stage then writes, into ``--out``:

* ``figures/<record>_<output>.png``: the record on ECG paper with a band per method under each
  lead, the labeller's waves above the leads and the predicted and true labels; ``explain.pdf``
  holds them all;
* ``wave_share.csv`` / ``.png``: the share of |attribution| on the P wave, PR segment, QRS, ST
  segment, T wave and elsewhere, per output and method, averaged over the records (for a class:
  the records that have it), beside each part's share of the time; for an interval, whether the
  attribution sits on the wave that defines it;
* ``faithfulness.csv`` / ``.png``: the areas under the deletion and insertion curves of each
  method against a random order of the same segments (a class's probability; an interval's
  closeness to the record's own prediction in training standard deviations: see
  :mod:`ecgtransfer.explain.faithfulness`);
* ``sanity.csv``: the rank correlation between the trained model's attributions and those of
  the same model with re-initialised weights (Adebayo et al. 2018);
* ``records.csv`` (one row per record and output: prediction, truth, the labeller's intervals,
  each method's seconds), ``attributions/<record>.npz`` and ``explain.json`` (the settings).

The folder is written aside and takes its name at the end: an interrupted run leaves the previous
one whole. The outputs are logged to the model's MLflow run under ``explain/<settings hash>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecgtransfer.config import check, setting
from ecgtransfer.explain import summary
from ecgtransfer.explain.attribution import METHODS
from ecgtransfer.explain.summary import PARTS as _PARTS
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ExplainConfig", "explain"]

log = logging.getLogger("ecgtransfer")

EXPLAIN_VERSION = 1
"""Bumped whenever the stage's algorithm changes what it computes (a pipeline re-runs it)."""


@dataclass(frozen=True, kw_only=True)
class ExplainConfig:
    """Settings of ``ecgtransfer explain``."""

    model: str = setting("", "the model: a model.pt of pretrain or finetune, its run folder, an "
                         "MLflow run id or model URI", role="input", metavar="REF")
    store: str = setting("", "signal store the records are read from", role="input",
                         metavar="DIR")
    records: list[str] = setting(["test"], "record ids, 'test' (the model's test records, from "
                                 "its run's test_predictions.csv) or a CSV file with a "
                                 "record_id column", metavar="ID[,ID...]")
    max_records: int = setting(0, "explain at most this many of them, in order (0: all)")
    outputs: list[str] = setting([], "outputs to explain, by name (classes or intervals); "
                                 "default: each record's true classes (a classifier; its "
                                 "predicted class where it has none) or every interval (a "
                                 "regressor)", metavar="NAME[,NAME...]")
    methods: list[str] = setting(list(METHODS), "attribution methods (Captum)",
                                 choices=METHODS, metavar="METHOD[,METHOD...]")
    ig_steps: int = setting(32, "Integrated Gradients' steps from the flat ECG")
    curve_steps: int = setting(20, "points of each deletion and insertion curve after the first")
    random_orders: int = setting(5, "random segment orders per record and output for the "
                                 "faithfulness baseline")
    sanity: bool = setting(True, "the model-randomisation check: attributions of the model "
                           "with re-initialised weights, rank-correlated with the trained "
                           "model's")
    figures: bool = setting(True, "one ECG-paper figure per record and output, and the PDF")
    other_window_s: float = setting(0.2, "occlusion removes samples outside every wave (and "
                                    "whole records the labeller cannot delineate) in windows "
                                    "this long", unit="s")
    baseline: str | None = setting(None, "another explain folder of the same records (another "
                                   "model's): the paired differences of the wave shares, with "
                                   "95% intervals (wave_share_vs_baseline.csv)", role="input",
                                   metavar="DIR")
    bootstrap: int = setting(1000, "resamples of the records for the 95% intervals (0: none)")
    batch_size: int = setting(64, "inputs per forward pass")
    seed: int = setting(0, "seed of the random orders and of the randomised model")
    log: bool = setting(True, "log the outputs to the model's MLflow run (when it has one)")
    tracking_uri: str | None = setting(None, "default: $MLFLOW_TRACKING_URI or "
                                       "sqlite:///mlflow.db", role="tracking", metavar="URI")
    out: str = setting("runs/explain", "output folder", role="output", metavar="DIR")

    def __post_init__(self) -> None:
        check(not self.model, "model", "give the model to explain (--model)")
        check(not self.store, "store", "give the store of the records (--store)")
        check(not self.records, "records", "give record ids, 'test' or a CSV file")
        check(not self.methods, "methods", f"at least one of {', '.join(METHODS)}")
        for m in self.methods:
            check(m not in METHODS, "methods", f"{m!r} is not one of {', '.join(METHODS)}")
        check(self.max_records < 0, "max_records", "must not be negative")
        check(self.ig_steps < 2, "ig_steps", "must be at least 2")
        check(self.curve_steps < 2, "curve_steps", "must be at least 2")
        check(self.random_orders < 1, "random_orders", "must be at least 1")
        check(not self.other_window_s > 0, "other_window_s", "must be positive")
        check(self.batch_size < 1, "batch_size", "must be at least 1")
        check(self.bootstrap < 0, "bootstrap", "must not be negative")

    def settings_hash(self) -> str:
        """8 hex digits of what the outputs depend on (not where they go or are logged)."""
        values = {k: v for k, v in asdict(self).items()
                  if k not in ("out", "log", "tracking_uri", "batch_size", "baseline")}
        text = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


# ---- inputs ------------------------------------------------------------------------------
def _record_ids(config: ExplainConfig, loaded, tracker) -> list[str]:
    if config.records == ["test"]:
        with tempfile.TemporaryDirectory() as tmp:
            table = None
            if loaded.folder is not None and (loaded.folder / "test_predictions.csv").is_file():
                table = loaded.folder / "test_predictions.csv"
            elif loaded.run_id:
                table = tracker.download_artifact(loaded.run_id, "test_predictions.csv", tmp)
            if table is None:
                raise ValueError(f"--records test: {config.model} has no test_predictions.csv "
                                 "(a model.pt copied out of its run folder, a cross-validation's "
                                 "own run?); name the records or give a CSV file of them")
            ids = _csv_ids(table)
    elif len(config.records) == 1 and config.records[0].endswith(".csv"):
        ids = _csv_ids(Path(config.records[0]))
    else:
        ids = list(dict.fromkeys(config.records))
    return ids[:config.max_records] if config.max_records else ids


def _csv_ids(path: Path) -> list[str]:
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"record_id": str})
    except (OSError, ValueError) as exc:
        raise ValueError(f"--records {path}: cannot read it ({type(exc).__name__})") from None
    if "record_id" not in table.columns:
        raise ValueError(f"--records {path}: no record_id column")
    ids = list(dict.fromkeys(table["record_id"].dropna().astype(str).str.strip()))
    ids = [i for i in ids if i]
    if not ids:
        raise ValueError(f"--records {path}: holds no record ids (a header only?)")
    return ids


def _true_outputs(row: pd.Series, loaded) -> list[str]:
    """The classes a store record has, by the classifier's classes and task."""
    classes = loaded.outputs
    if all(c in row.index for c in classes):
        return [c for c in classes if float(row[c] or 0) == 1]
    column = f"scp_{loaded.model.meta.get('task', '')}"
    if column in row.index and isinstance(row[column], str):
        have = set(row[column].split("|"))
        return [c for c in classes if c in have]
    return []


# ---- the stage ---------------------------------------------------------------------------
@dataclass
class _Record:
    """What one record's explanation leaves for the tables."""

    rows: list[dict]
    shares: list[dict]
    curves: list[dict]
    sanity: list[dict]


def _explain_record(config: ExplainConfig, loaded, random_model, record_id: str, x: np.ndarray,
                    own: int, truth: list[str], folder: Path, pdf) -> _Record:
    import torch

    from ecgtransfer.explain.attribution import ecg_attribute
    from ecgtransfer.explain.faithfulness import (area, deletion_insertion, rank_correlation)
    from ecgtransfer.explain.figures import ecg_paper
    from ecgtransfer.explain.waves import OTHER, wave_labels, wave_segments
    from ecgtransfer.features.intervals import ecg_waves

    meta = loaded.model.meta
    fs, leads = float(meta["fs"]), list(meta["leads"])
    beats, intervals = ecg_waves(x[:, :own], fs, leads, record_id=record_id)
    labels = wave_labels(beats, x.shape[1])
    delineated = not beats.empty
    mask, _ = wave_segments(labels, len(leads), max_other=max(int(config.other_window_s * fs), 1))
    with torch.no_grad():
        raw = loaded.model(torch.from_numpy(x)[None])[0].numpy().astype(float)
    names = loaded.outputs
    if loaded.kind == "classifier":
        from ecgtransfer.training.tasks import ClassificationTask

        single = meta.get("task") == "single_label"  # its probabilities as its task makes them
        task = ClassificationTask(names, multilabel=not single)
        shown = task.probabilities(raw[None])[0]
        predicted = names[int(np.argmax(shown))]
        wanted = config.outputs or truth or [predicted]
    else:
        shown = raw
        wanted = config.outputs or names
    unknown = [o for o in wanted if o not in names]
    if unknown:
        raise ValueError(f"--outputs {unknown[0]}: the model's outputs are {', '.join(names)}")
    if loaded.kind == "classifier":
        readout, scales = task.probabilities, np.ones(len(names))
    else:
        readout = "closeness"
        scales = loaded.model.target_std.detach().numpy().ravel().astype(float)
    rng = np.random.default_rng([config.seed, int(hashlib.sha256(record_id.encode())
                                                  .hexdigest()[:8], 16)])
    # shares over the record's own samples (not the zeros padding a short record)
    time_share = np.bincount(labels[:own], minlength=OTHER + 1) / own
    out = _Record([], [], [], [])
    arrays: dict[str, np.ndarray] = {"signal": x, "wave_labels": labels}
    for output in wanted:
        j = names.index(output)
        attributions, seconds = {}, {}
        for method in config.methods:
            t0 = time.perf_counter()
            a = ecg_attribute(loaded.model, x, j, method, mask=mask, n_steps=config.ig_steps,
                              batch_size=config.batch_size)
            seconds[method] = time.perf_counter() - t0
            attributions[method] = a
            arrays[f"{output}/{method}"] = a
            if delineated:
                mass = np.bincount(np.broadcast_to(labels[:own], a[:, :own].shape).ravel(),
                                   weights=np.abs(a[:, :own]).ravel(), minlength=OTHER + 1)
                share = mass / mass.sum() if mass.sum() > 0 else np.full(OTHER + 1, np.nan)
                out.shares.append({"record_id": record_id, "output": output, "method": method,
                                   **{f"share_{p}": v for p, v in zip(_PARTS, share)},
                                   **{f"time_{p}": v for p, v in zip(_PARTS, time_share)}})
            c = deletion_insertion(loaded.model, x, j, a, mask, readout=readout,
                                   scale=float(scales[j]), steps=config.curve_steps,
                                   batch_size=config.batch_size)
            out.curves.append(_curve_row(record_id, output, method, c, area))
            if config.sanity:
                b = ecg_attribute(random_model, x, j, method, mask=mask,
                                  n_steps=config.ig_steps, batch_size=config.batch_size)
                out.sanity.append({"record_id": record_id, "output": output, "method": method,
                                   "spearman": rank_correlation(a, b),
                                   "spearman_input": rank_correlation(a, x)})
        for _ in range(config.random_orders):
            c = deletion_insertion(loaded.model, x, j, None, mask, readout=readout,
                                   scale=float(scales[j]), steps=config.curve_steps, rng=rng,
                                   batch_size=config.batch_size)
            out.curves.append(_curve_row(record_id, output, "random", c, area))
        row = {"record_id": record_id, "model": loaded.ref, "output": output,
               "true": " ".join(truth),
               "delineated": delineated, "labeller": intervals.get("qrs_status", ""),
               **{k: intervals.get(k, np.nan) for k in ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms")},
               "n_beats": len(beats)}
        row.update({f"pred_{n}": v for n, v in zip(names, shown)})
        row.update({f"seconds_{m}": s for m, s in seconds.items()})
        out.rows.append(row)
        if config.figures:
            fig = ecg_paper(x[:, :own], fs, leads, {m: a[:, :own] for m, a in attributions.items()},
                            labels[:own] if delineated else None,
                            title=f"{record_id}: {_what(loaded, output)}",
                            notes=_notes(loaded, names, shown, truth, intervals))
            path = folder / "figures" / f"{_safe(record_id)}_{_safe(output)}.png"
            fig.savefig(path)
            pdf.add(fig)
    np.savez_compressed(folder / "attributions" / f"{_safe(record_id)}.npz", **arrays)
    return out


def _curve_row(record_id: str, output: str, method: str, c, area) -> dict:
    return {"record_id": record_id, "output": output, "method": method,
            "deletion_auc": area(c.fractions, c.deletion),
            "insertion_auc": area(c.fractions, c.insertion),
            "fractions": c.fractions, "deletion": c.deletion, "insertion": c.insertion}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _what(loaded, output: str) -> str:
    meta = loaded.model.meta
    if loaded.kind == "classifier":
        return (f"why class {output}? ({meta.get('strategy', '?')} classifier, "
                f"{'+'.join(s.get('model', '?') for s in meta.get('sources', []))})")
    return f"why this {output.upper()}? ({meta.get('model', '?')} regressor)"


def _notes(loaded, names, shown, truth, intervals) -> list[str]:
    if loaded.kind == "classifier":
        pred = "predicted: " + ", ".join(f"{n} {p:.2f}" for n, p in zip(names, shown))
        true = "true: " + (", ".join(truth) or "(none)")
    else:
        units = loaded.model.meta.get("units") or [""] * len(names)
        pred = "predicted: " + ", ".join(f"{n.upper()} {v:.0f} {u}"
                                         for n, v, u in zip(names, shown, units))
        true = ""
    measured = [f"{k.split('_')[0].upper()} {intervals[k]:.0f} {k.split('_')[1]}"
                for k in ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms") if np.isfinite(intervals[k])]
    lab = "labeller: " + (", ".join(measured) if measured else intervals.get("qrs_status", ""))
    return [line for line in (pred, true, lab) if line]


def _replace_folder(tmp: Path, out: Path) -> None:
    """``tmp`` renamed to ``out``; an earlier ``out`` (explain's own, checked up front and again
    here) is removed only once the new one is in place."""
    from ecgtransfer.files import check_output_folder

    check_output_folder(out, "explain", legacy=("explain.json",))
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{time.time_ns()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def explain(config: ExplainConfig, context: Context) -> StageResult:
    """Explain the records ``config`` names (see the module's notes)."""
    import torch

    from ecgtransfer.data.dataset import model_input
    from ecgtransfer.data.store import SignalStore, StoreError
    from ecgtransfer.explain.faithfulness import randomized_model
    from ecgtransfer.explain.figures import Pages, faithfulness_curves, wave_share_bars
    from ecgtransfer.files import atomic_file, check_output_folder, mark_output_folder, on_disk_full
    from ecgtransfer.transfer import load_folds, load_model

    # a folder may be replaced only when it holds explain's own output (nothing else is lost)
    check_output_folder(config.out, "explain", legacy=("explain.json",))
    tracker = context.tracker_for(config.tracking_uri)
    folds = load_folds(config.model, tracker=tracker)
    models = folds[0] if folds else [load_model(config.model, tracker=tracker)]
    loaded = models[0]  # the folds of a cross-validation share their kind, outputs and input
    if "grad_cam" in config.methods:
        from ecgtransfer.explain.attribution import feature_maps

        feature_maps(loaded.model)  # refuses an architecture without a feature map, up front
    try:
        store = SignalStore(config.store)
    except StoreError as exc:
        raise ValueError(f"--store {exc}") from None
    meta = loaded.model.meta
    lacking = [lead for lead in meta["leads"] if lead not in store.leads]
    if lacking:
        raise ValueError(f"--store {config.store}: the model takes lead(s) {', '.join(lacking)}, "
                         "which the store lacks")
    if config.baseline and not (Path(config.baseline) / "wave_share_records.csv").is_file():
        raise ValueError(f"--baseline {config.baseline}: no wave_share_records.csv (not an "
                         "explain folder of this version?)")
    plan = _plan(config, models, folds is not None, tracker)
    ids = [record_id for _, record_id in plan]
    if not ids:
        raise ValueError(f"--records {','.join(config.records)}: no records to explain")
    known = set(store.record_ids)
    missing = [i for i in ids if i not in known]
    if missing:
        raise ValueError(f"--records: {missing[0]} is not in {config.store}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    randomized = {id(m): randomized_model(m.model, config.seed) if config.sanity else None
                  for m in models}
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        with on_disk_full(ValueError, out, "the explanations"):
            mark_output_folder(tmp, "explain")
            (tmp / "figures").mkdir()
            (tmp / "attributions").mkdir()
            pdf = Pages(tmp / "explain.pdf") if config.figures else None
            records = []
            index = store.index.set_index("record_id")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                for model, record_id in _progress(plan, context.progress):
                    x, own = model_input(store, record_id, meta)
                    if not np.isfinite(x).all():
                        raise ValueError(f"{config.store}: record {record_id} holds NaN")
                    truth = (_true_outputs(index.loc[record_id], model)
                             if model.kind == "classifier" else [])
                    records.append(_explain_record(config, model, randomized[id(model)],
                                                   record_id, x, own, truth, tmp, pdf))
            tables = summary.tables(
                *([r for rec in records for r in getattr(rec, part)]
                  for part in ("rows", "shares", "curves", "sanity")),
                kind=loaded.kind, bootstrap=config.bootstrap, seed=config.seed)
            if config.baseline and "wave_share_records" in tables:
                tables["wave_share_vs_baseline"] = summary.against_baseline(
                    tables["wave_share_records"], config.baseline, config.bootstrap, config.seed)
            for name, table in tables.items():
                if name == "curves":
                    continue
                with atomic_file(tmp / f"{name}.csv") as f:
                    table.to_csv(f, index=False)
            if "curves" in tables:
                faithfulness_curves(tables["curves"], (
                    "probability of the class" if loaded.kind == "classifier" else
                    "-|interval - own prediction| (SD)")).savefig(tmp / "faithfulness.png")
                with atomic_file(tmp / "curves.csv") as f:
                    tables["curves"].to_csv(f, index=False)
            if "wave_share" in tables:
                wave_share_bars(tables["wave_share"]).savefig(tmp / "wave_share.png")
            if pdf is not None:
                pdf.close()
            run_id = folds[1] if folds else loaded.run_id
            info = {"settings": {k: v for k, v in asdict(config).items()},
                    "settings_hash": config.settings_hash(), "model_kind": loaded.kind,
                    "model_run_id": run_id, "records": ids,
                    "models": {m.ref: m.run_id for m in models}}
            with atomic_file(tmp / "explain.json") as f:
                json.dump(info, f, indent=2, default=str)
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logged = ""
    if context.stage_run is not None:  # a pipeline's stage run shows what the stage made
        context.stage_run.log_artifacts(out)
    if config.log and run_id:
        folder = f"explain/{config.settings_hash()}"
        tracker.run(run_id).log_artifacts(out, folder)
        logged = f"\nlogged to MLflow run {run_id} under {folder}/"
    what = (f"{len(models)} cross-validation folds, each record explained by the fold model "
            "that held it out" if folds else loaded.kind)
    return StageResult(str(out), _summary(tables, config.model, len(ids), out, what) + logged,
                       details=tables)


def _plan(config: ExplainConfig, models: list, cross_validated: bool,
          tracker) -> list[tuple[Any, str]]:
    """(model, record id) pairs in order: a cross-validation's records each go to the fold
    model whose test records hold it."""
    if not cross_validated:
        return [(models[0], i) for i in _record_ids(config, models[0], tracker)]
    held = {m.ref: _record_ids(replace(config, records=["test"], max_records=0), m, tracker)
            for m in models}
    if config.records == ["test"]:
        plan = [(m, i) for m in models for i in held[m.ref]]
    else:
        owner = {i: m for m in models for i in held[m.ref]}
        wanted = _record_ids(replace(config, max_records=0), models[0], tracker)
        outside = [i for i in wanted if i not in owner]
        if outside:
            raise ValueError(f"--records: {outside[0]} is in no fold's test records of "
                             f"{config.model}; every fold model trained on it")
        plan = [(owner[i], i) for i in wanted]
    return plan[:config.max_records] if config.max_records else plan


def _progress(ids: list[str], show: bool):
    if not show:
        return ids
    from tqdm.auto import tqdm

    return tqdm(ids, desc="explain", unit="record")


def _summary(tables: dict[str, pd.DataFrame], ref: str, n: int, out: Path, what: str) -> str:
    lines = [f"{out}: {n} record(s) of {ref} ({what})"]
    if "timing" in tables and len(tables["timing"]):
        lines.append("seconds per record and output: " + ", ".join(
            f"{r.method} {r.seconds_per_record_output:.3f}" for r in tables["timing"].itertuples()))
    if "faithfulness" in tables:
        f = tables["faithfulness"]
        f = f[f["output"] == "all"]
        lines.append("faithfulness (deletion AUC lower, insertion AUC higher is better):")
        lines += [f"  {r.method:22s} deletion {r.deletion_auc:.3f}  insertion {r.insertion_auc:.3f}"
                  + ("" if r.method == "random" else
                     f"  vs random {r.deletion_vs_random:+.3f} {_ci(r, 'deletion')}, "
                     f"{r.insertion_vs_random:+.3f} {_ci(r, 'insertion')}")
                  + f"  n={r.n}" for r in f.itertuples()]
    if "sanity" in tables:
        lines.append("randomised weights (Spearman of |attribution| with the trained model's):")
        lines += [f"  {r.method:22s} {r.spearman_mean:.2f}: {r.randomisation} (with |ECG|: "
                  f"{r.spearman_input:.2f})" for r in tables["sanity"].itertuples()]
    if "wave_share" in tables:
        w = tables["wave_share"]
        shown = w[["output", "method", "n_records", *(f"share_{p}" for p in _PARTS)]
                  + (["on_defining_wave", "records_on_defining_wave"]
                     if "on_defining_wave" in w else [])]
        lines.append("share of |attribution| per wave:")
        lines.append(shown.to_markdown(index=False, floatfmt=".2f"))
    if "wave_share_vs_baseline" in tables:
        b = tables["wave_share_vs_baseline"]
        b = b[b["part"] == "qrs"]
        lines.append("QRS share against the baseline's, paired by record (95% interval):")
        lines += [f"  {r.output} {r.method}: {r.share:.3f} vs {r.baseline_share:.3f}, "
                  f"{r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] (n={r.n_records})"
                  for r in b.itertuples()]
    return "\n".join(lines)


def _ci(row, kind: str) -> str:
    from ecgtransfer.training.metrics import interval_text

    return interval_text((getattr(row, f"{kind}_vs_random_ci_low"),
                          getattr(row, f"{kind}_vs_random_ci_high")), signed=True)


def _version() -> str:
    from ecgtransfer.features.intervals import LABELLER_VERSION

    return f"explain{EXPLAIN_VERSION}/labeller{LABELLER_VERSION}"


register_stage(Stage(
    "explain", ExplainConfig, explain, command=("explain",), output="", version=_version,
    help="where a classifier or regressor looks on the ECG: attributions drawn on the leads, "
         "per wave of the beat, and their faithfulness",
    description="Attribute a fine-tuned classifier's class (or a pretrained regressor's "
                "interval) to every sample of every lead with Captum's Integrated Gradients, "
                "Grad-CAM on the last convolutional stage and occlusion of beat segments; draw "
                "each record on ECG paper with the attributions under its leads; sum them per "
                "wave of the beat (P, PR, QRS, ST, T) from the labeller's fiducial points; "
                "measure their faithfulness with deletion and insertion curves against a random "
                "order, and check them against the same model with randomised weights. See "
                "docs/explain.md."))
