"""The score stage: pretrained interval regressors measured on a labelled store of real records,
per stratum of abnormal intervals, against a truth (a label file, or LUDB's cardiologists' marks).

Output folder (``config.out``)::

    scores.csv        one row per model, target and stratum: records, seeds, MAE with its 95%
                      seed-and-record bootstrap interval, bias, and the paired difference to the
                      baseline model (see :mod:`ecgtransfer.comparison.strata`)
    scores.md         the same as a table, with the sentences
    scores.png        MAE per stratum, one panel per target, one bar per model
    predictions.csv   every record's true value and each regressor's prediction

The run (experiment ``ecgtransfer-score``, or under a pipeline's) carries the MAE and the
differences as metrics (``mae_qrs_ms.qrs_ge_120.warped``), the files as artifacts, and what
was scored against what as tags (``scored_models``, ``truth``, ``store``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ecgtransfer.comparison import DEFAULT_STRATA
from ecgtransfer.config import check, setting
from ecgtransfer.features.vocabulary import UNITS
from ecgtransfer.stages import Context, Stage, StageResult, register_stage

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ScoreConfig", "score"]

log = logging.getLogger(__name__)

_OUTPUTS = ("scores.csv", "scores.md", "scores.png", "predictions.csv")


@dataclass(frozen=True, kw_only=True)
class ScoreConfig:
    """Settings of ``ecgtransfer score``."""

    models: list[str] = setting([], "regressors to score as NAME=REF: REF a pretrain folder "
                                "(its regressors, one per target), a model.pt, a model URI or "
                                "a run id; a NAME given several times is one model's seeds",
                                metavar="NAME=REF[,...]")
    store: str = setting(help="signal store of the records to score on", role="input",
                         metavar="STORE")
    labels: str | None = setting(None, "the truth: a label file (default: the store's only "
                                 "labels-*.csv)", role="input", metavar="FILE")
    reference: str | None = setting(None, "the truth: the cardiologists' marks of the LUDB "
                                    "records in this folder (its data/: N.i, N.ii ...), "
                                    "instead of a label file", role="input", metavar="DIR")
    strata: list[str] = setting(list(DEFAULT_STRATA),
                                "record strata by the true interval: all, or INTERVAL OP "
                                "NUMBER (qrs>=120)", metavar="LIST")
    baseline: str | None = setting(None, "the model the others are set against (default: the "
                                   "first NAME)", metavar="NAME")
    bootstrap: int = setting(1000, "resamples of the seed-and-record bootstrap")
    seed: int = setting(0, "seed of the resamples")
    batch_size: int = setting(64, "records per forward pass")
    threads: int | None = setting(None, "CPU threads (default: torch's own)")
    out: str = setting("runs/score", "folder of the tables and figure", role="output",
                       metavar="DIR")
    experiment: str = setting("ecgtransfer-score", "MLflow experiment", role="tracking",
                              metavar="NAME")
    tracking_uri: str | None = setting(None, "default: $MLFLOW_TRACKING_URI or "
                                       "sqlite:///mlflow.db", role="tracking", metavar="URI")

    def __post_init__(self) -> None:
        from ecgtransfer.comparison.strata import parse_stratum

        check(not self.models, "models", "name at least one regressor as NAME=REF")
        names = []
        for item in self.models:
            name, sep, ref = str(item).partition("=")
            check(not sep or not name.strip() or not ref.strip(), "models",
                  f"{item!r}: write NAME=REF (deepfake=runs/pretrain)")
            names.append(name.strip())
        check(self.baseline is not None and self.baseline not in names, "baseline",
              f"{self.baseline!r} is none of the models ({', '.join(dict.fromkeys(names))})")
        check(not self.store, "store", "name the signal store to score on")
        check(bool(self.labels) and bool(self.reference), "reference",
              "give the truth once: --labels or --reference, not both")
        check(not self.strata, "strata", "name at least one stratum (all)")
        for s in self.strata:
            try:
                parse_stratum(s)
            except ValueError as exc:
                check(True, "strata", str(exc))
        check(self.bootstrap < 0, "bootstrap", "must be 0 or more")
        check(self.batch_size < 1, "batch_size", "must be at least 1")
        check(self.threads is not None and self.threads < 1, "threads", "must be at least 1")

    def groups(self) -> dict[str, list[str]]:
        """The models by name, each with its references (its seeds), in the order given."""
        out: dict[str, list[str]] = {}
        for item in self.models:
            name, _, ref = str(item).partition("=")
            out.setdefault(name.strip(), []).append(ref.strip())
        return out


def _truth(config: ScoreConfig, store) -> tuple[pd.DataFrame, str]:
    """Per store record, the true intervals (NaN where unknown), and what they are."""
    import pandas as pd

    from ecgtransfer.features.vocabulary import column

    ids = store.index["record_id"].astype(str)
    columns = [column(t) for t in UNITS]
    if config.reference:
        from ecgtransfer.features.reference import ludb_reference

        folder = Path(config.reference)
        have = [i for i in ids if (folder / f"{i}.hea").is_file()]
        if not have:
            raise ValueError(f"--reference {folder}: none of the store's records is there (a "
                             "folder of LUDB records, N.hea with N.i, N.ii ...)")
        try:
            table = ludb_reference(folder, have)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--reference {folder}: {exc}") from None
        return table.reindex(ids)[columns].reset_index(drop=True), f"ludb:{folder.resolve()}"
    from ecgtransfer.features.labels import find_labels, read_labels, target_table

    path = find_labels(store.path, config.labels)
    values, _ = target_table(store.index, read_labels(path), list(UNITS), path)
    return pd.DataFrame(values, columns=columns), str(path.resolve())


def _predict(regressors: list, store, ids: list[str], config: ScoreConfig, where: str
             ) -> pd.DataFrame:
    """Each target's prediction for every record (NaN for a record holding NaN). Regressors
    that take the same input (leads, rate, length) share each batch: a record is read and
    resampled once per input, not once per regressor."""
    import pandas as pd
    import torch

    from ecgtransfer.data.dataset import model_input
    from ecgtransfer.features.vocabulary import column

    targets = [t for r in regressors for t in r.targets]
    for t in targets:
        if targets.count(t) > 1:
            raise ValueError(f"--models {where}: two regressors of {t}; name one model.pt or "
                             "a folder with one regressor per target")
    inputs: dict[tuple, list] = {}
    for regressor in regressors:
        meta = regressor.meta
        lacking = [lead for lead in meta["leads"] if lead not in store.leads]
        if lacking:
            raise ValueError(f"--models {where}: the regressor takes lead(s) "
                             f"{', '.join(lacking)}, which {store.path} lacks")
        key = (tuple(meta["leads"]), float(meta["fs"]), int(meta["n_samples"]))
        inputs.setdefault(key, []).append(regressor)
    out = pd.DataFrame({column(t): np.full(len(ids), np.nan) for t in UNITS})
    with torch.inference_mode():
        for group in inputs.values():
            meta = group[0].meta
            for regressor in group:
                regressor.eval()
            for start in range(0, len(ids), config.batch_size):
                rows = np.arange(start, min(start + config.batch_size, len(ids)))
                batch = np.stack([model_input(store, ids[i], meta)[0] for i in rows])
                finite = np.isfinite(batch).all(axis=(1, 2))
                if not finite.any():
                    continue
                x = torch.from_numpy(batch[finite])
                for regressor in group:
                    y = regressor(x).numpy()
                    for j, target in enumerate(regressor.targets):
                        out.loc[rows[finite], column(target)] = y[:, j]
    return out


def _markdown(table: pd.DataFrame, said: list[str], truth: str) -> str:
    lines = [f"Truth: {truth}", "", "| model | target | stratum | records | MAE [95% CI] | bias "
             "| difference to baseline [95% CI] |", "|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        diff = ("" if not np.isfinite(r["delta"]) else
                f"{r['delta']:+.1f} [{r['delta_low']:+.1f}, {r['delta_high']:+.1f}]")
        mae = ("n/a" if not np.isfinite(r["mae"]) else
               f"{r['mae']:.1f} [{r['mae_low']:.1f}, {r['mae_high']:.1f}]")
        bias = f"{r['bias']:+.1f}" if np.isfinite(r["bias"]) else "n/a"
        lines.append(f"| {r['model']} | {r['target'].upper()} ({r['unit']}) | {r['stratum']} | "
                     f"{r['n_records']} | {mae} | {bias} | {diff} |")
    return "\n".join(lines + [""] + [f"- {s}" for s in said]) + "\n"


def _key(text: str) -> str:
    """``text`` as an MLflow metric name: comparisons as words (``qrs>=120`` as ``qrs_ge_120``,
    so that ``hr<55`` and ``hr>55`` stay apart), ``+`` as ``_plus_``, anything else not allowed
    as ``_``."""
    import re

    for op, word in ((">=", "_ge_"), ("<=", "_le_"), (">", "_gt_"), ("<", "_lt_"),
                     ("+", "_plus_")):
        text = text.replace(op, word)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def score(config: ScoreConfig, context: Context) -> StageResult:
    """Score ``config.models`` on ``config.store`` per stratum (see the module's notes)."""
    import pandas as pd
    import torch

    from ecgtransfer.comparison.strata import (parse_stratum, plot_strata, stratum_table,
                                               strata_sentences)
    from ecgtransfer.data.store import SignalStore, StoreError
    from ecgtransfer.files import (atomic_file, check_output_folder, mark_output_folder,
                                   on_disk_full)
    from ecgtransfer.features.vocabulary import column
    from ecgtransfer.tags import tag_values
    from ecgtransfer.tracking import code_version, store_hash
    from ecgtransfer.transfer import load_sources

    out = Path(config.out)
    check_output_folder(out, "score")
    try:
        store = SignalStore(config.store)
    except StoreError as exc:
        raise ValueError(f"--store {exc}") from None
    tracker = context.tracker_for(config.tracking_uri)
    groups = config.groups()
    seeds = {name: len(refs) for name, refs in groups.items()}
    if len(set(seeds.values())) != 1:
        raise ValueError("--models: every model needs the same number of seeds to be resampled "
                         "alike (" + ", ".join(f"{n}: {k}" for n, k in seeds.items()) + ")")
    truth, truth_text = _truth(config, store)
    ids = store.index["record_id"].astype(str).tolist()
    strata = [parse_stratum(s) for s in config.strata]
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        predictions: dict[str, list[pd.DataFrame]] = {}
        targets: list[str] = []
        for name, refs in groups.items():
            for ref in refs:
                try:
                    sources = load_sources(ref, tracker=tracker)
                except ValueError as exc:
                    raise ValueError(str(exc).replace("--from ", "--models ", 1)) from None
                regressors = [s.regressor for s in sources]
                predictions.setdefault(name, []).append(
                    _predict(regressors, store, ids, config, f"{name}={ref}"))
                for r in regressors:
                    targets += [t for t in r.targets if t not in targets]
    finally:
        torch.set_num_threads(threads)
    scored = [t for t in UNITS if t in targets and all(
        np.isfinite(p[column(t)]).any() for ps in predictions.values() for p in ps)]
    if not scored:
        raise ValueError("--models: no interval is predicted by every model (each regressor's "
                         f"targets: {', '.join(targets) or 'none'})")
    baseline = config.baseline or next(iter(groups))
    table = stratum_table(truth, predictions, strata, scored, baseline=baseline,
                          n_resamples=config.bootstrap, seed=config.seed)
    said = strata_sentences(table, baseline)

    rows = pd.DataFrame({"record_id": ids, **{f"true_{column(t)}": truth[column(t)]
                                              for t in scored}})
    for name, tables in predictions.items():
        for i, p in enumerate(tables):
            for t in scored:
                rows[f"{name}{'' if len(tables) == 1 else f'#{i + 1}'}_{column(t)}"] = p[column(t)]
    with on_disk_full(ValueError, out, "the scores"):
        mark_output_folder(out, "score")
        with atomic_file(out / "predictions.csv") as f:
            rows.to_csv(f, index=False)
        with atomic_file(out / "scores.csv") as f:
            table.to_csv(f, index=False)
        with atomic_file(out / "scores.md") as f:
            f.write(_markdown(table, said, truth_text))
        fig = plot_strata(table)
        with atomic_file(out / "scores.png", binary=True) as f:
            fig.savefig(f, format="png", dpi=110)

    tags = {**tag_values(stage="score", store=str(store.path.resolve()),
                         store_hash=store_hash(store.path), code_version=code_version(),
                         scored_models=",".join(config.models), truth=truth_text),
            **context.tags}
    against = "LUDB's cardiologists" if config.reference else "its labels"
    with tracker.open_run(experiment=config.experiment,
                          name=f"score {len(groups)} models on {store.dataset or store.path.name} "
                               f"against {against}",
                          tags=tags, parent=context.parent_run) as run:
        run.log_params({"models": ",".join(config.models), "strata": ",".join(config.strata),
                        "baseline": baseline, "bootstrap": config.bootstrap,
                        "seed": config.seed})
        values = {}
        for _, r in table.iterrows():
            if not np.isfinite(r["mae"]):
                continue
            name = _key(f"mae_{r['target']}_{r['unit']}.{r['stratum']}.{r['model']}")
            values[name] = r["mae"]
            if np.isfinite(r["delta"]):
                values[name.replace("mae_", "delta_mae_", 1)] = r["delta"]
        run.log_metrics(values)
        for name in _OUTPUTS:
            run.log_artifact(out / name)
        run.set_note(_markdown(table, said, truth_text))
        run_id = run.id
    shown = table[table["stratum"] == strata[0].name]
    lines = [f"{out}: {len(groups)} model(s) x {next(iter(seeds.values()))} seed(s) on "
             f"{len(ids)} records of {store.path} ({truth_text}); MLflow run {run_id}"]
    lines += [f"{r['model']} {r['target'].upper()} {strata[0].name}: {r['mae']:.2f} "
              f"{r['unit']} MAE [{r['mae_low']:.2f}, {r['mae_high']:.2f}]"
              for _, r in shown.iterrows() if np.isfinite(r["mae"])]
    return StageResult(str(out), "\n".join(lines + said), details=table,
                       run_ids=[run_id])


register_stage(Stage(
    "score", ScoreConfig, score, command=("score",), output="", pipeline_run=False,
    help="measure pretrained interval regressors on real records, per stratum of abnormal "
         "intervals",
    description="Run pretrained HR/PR/QRS/QT regressors on every record of a signal store and "
                "measure them against a truth (the store's labels, or LUDB's cardiologists' "
                "marks with --reference) per stratum of records (QRS >= 120 ms, PR > 200 ms, "
                "...): MAE with a 95% bootstrap interval over records and seeds, and each "
                "model's paired difference to the baseline. Writes scores.csv, scores.md, "
                "scores.png and predictions.csv and logs them to an MLflow run."))
