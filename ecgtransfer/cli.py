"""The ``ecgtransfer`` command: parses arguments, calls one stage, reports in one line.

Errors the user can fix (bad input, a store of other settings, a missing file) are printed as a
single ``ecgtransfer: error: ...`` line and exit with status 2; ``--strict`` turns rejected
records into exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from ecgtransfer import __version__

__all__ = ["main", "build_parser"]

log = logging.getLogger("ecgtransfer")


def _rates(text: str) -> list[int]:
    try:
        rates = sorted({int(t) for t in text.split(",") if t.strip()}, reverse=True)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 500, 100 or 500,100, got {text!r}") from None
    if not rates or not set(rates) <= {500, 100}:
        raise argparse.ArgumentTypeError(f"expected 500, 100 or 500,100, got {text!r}")
    return rates


def _positive(kind: type):
    """An argparse type accepting positive values of ``kind`` (int or float)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative int, got {text!r}")
    return value


def _ptbxl_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", type=Path, metavar="DIR",
                     help="PTB-XL folder (ptbxl_database.csv, scp_statements.csv, records500/...)")
    src.add_argument("--sample", action="store_true",
                     help="use the 41-record PTB-XL sample shipped with ecgtransfer")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it says something (not None, False or [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


def _loop_flags(p: argparse.ArgumentParser, out: str, holds: str, uri_help: str,
                set_example: str) -> None:
    """The flags every training command shares."""
    p.add_argument("--epochs", type=_positive(int), default=None, metavar="N")
    p.add_argument("--batch-size", type=_positive(int), default=None, metavar="N")
    p.add_argument("--lr", type=_positive(float), default=None)
    p.add_argument("--seed", type=_non_negative, default=None, metavar="N")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", default=None, metavar="DIR", help=f"run folder: {holds} (default {out})")
    p.add_argument("--experiment", default=None, metavar="NAME", help="MLflow experiment")
    p.add_argument("--tracking-uri", default=None, metavar="URI", help=uri_help)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help=f"any setting, value as YAML (e.g. {set_example}); repeatable")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out (same settings)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ecgtransfer`` command."""
    fmt = _HelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars, warnings only")
    parser = argparse.ArgumentParser(
        prog="ecgtransfer",
        description="Synthetic-to-real transfer learning on ECGs: prepare data into signal "
                    "stores, generate and label ECGs, pretrain interval regressors and fine-tune "
                    "PTB-XL classifiers, tracked in MLflow.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"ecgtransfer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = commands.add_parser(
        "data", help="get, verify and prepare datasets",
        description="Get, verify and prepare datasets into signal stores.", formatter_class=fmt)
    data_cmds = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    prepare = data_cmds.add_parser(
        "prepare", help="copy records into a signal store",
        description="Copy records into a signal store (int16 microvolts, memory-mapped). "
                    "Re-running the same command continues an interrupted run.",
        formatter_class=fmt)
    sources = prepare.add_subparsers(dest="source", metavar="SOURCE", required=True)

    p = sources.add_parser(
        "ptbxl", help="PTB-XL with superclass labels, folds and A/B halves",
        description="Copy PTB-XL into a signal store with its five diagnostic superclasses "
                    "(multi-label and single-label flag), strat_fold, the standard split "
                    "(folds 1-8/9/10) and the patient-disjoint A/B halves.",
        formatter_class=fmt, parents=[common])
    _ptbxl_source(p)
    p.add_argument("--out", type=Path, required=True, metavar="STORE", help="store folder")
    p.add_argument("--fs", type=int, choices=(500, 100), default=500,
                   help="read records500 (filename_hr) or records100 (filename_lr)")
    p.add_argument("--leads", type=int, choices=(8, 12), default=8,
                   help="8 = I, II, V1-V6 (the DeepFake generator's order); 12 = all")
    p.add_argument("--halves-seed", type=int, default=None, metavar="N",
                   help="seed of the A/B patient halves (default: the manifest's)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any record is rejected")

    w = sources.add_parser(
        "wfdb", help="any folder of WFDB records (LUDB, Challenge 2021, ...)",
        description="Copy every WFDB record under a folder into a signal store. Lead names are "
                    "matched case-insensitively; records at another rate are resampled.",
        formatter_class=fmt, parents=[common])
    w.add_argument("--input", type=Path, required=True, metavar="DIR",
                   help="folder searched recursively for .hea files")
    w.add_argument("--out", type=Path, required=True, metavar="STORE", help="store folder")
    w.add_argument("--fs", type=_positive(float), default=500.0, help="store sampling rate, Hz")
    w.add_argument("--leads", type=int, choices=(8, 12), default=8,
                   help="8 = I, II, V1-V6; 12 = all")
    w.add_argument("--strict", action="store_true", help="exit 1 if any record is rejected")

    verify = data_cmds.add_parser(
        "verify", help="check a dataset folder against its manifest",
        description="Check every file of a dataset folder whose SHA-256 the manifest (and the "
                    "publisher's SHA256SUMS.txt, when present) gives; name missing and "
                    "mismatching files. Exit 1 if any.",
        formatter_class=fmt)
    vsrc = verify.add_subparsers(dest="source", metavar="DATASET", required=True)
    v = vsrc.add_parser("ptbxl", help="PTB-XL 1.0.3", formatter_class=fmt, parents=[common],
                        description="Verify a PTB-XL 1.0.3 folder.")
    _ptbxl_source(v)
    v.add_argument("--fs", type=_rates, default=None, metavar="RATES",
                   help="record folders to check: 500, 100 or 500,100 (default both; 500 for "
                        "--sample, which ships 500 Hz only)")

    fetch = data_cmds.add_parser(
        "fetch", help="download a dataset, resumable and verified",
        description="Download a dataset from its publisher into a folder. Each file is checked "
                    "against its SHA-256 before it takes its final name; re-running continues "
                    "an interrupted download.",
        formatter_class=fmt)
    fsrc = fetch.add_subparsers(dest="source", metavar="DATASET", required=True)
    f = fsrc.add_parser("ptbxl", help="PTB-XL 1.0.3 from PhysioNet", formatter_class=fmt, parents=[common],
                        description="Download PTB-XL 1.0.3 (about 3 GB for both rates).")
    f.add_argument("--root", type=Path, required=True, metavar="DIR", help="destination folder")
    f.add_argument("--base-url", default=None, metavar="URL",
                   help="folder URL to download from (default: the manifest's PhysioNet URL)")
    f.add_argument("--fs", type=_rates, default=[500, 100], metavar="RATES",
                   help="record folders to fetch: 500, 100 or 500,100")
    f.add_argument("--jobs", type=_positive(int), default=8, help="parallel downloads")

    info = data_cmds.add_parser(
        "info", help="summarise a signal store",
        description="Print a store's size, rate, leads, splits and labels.", formatter_class=fmt, parents=[common])
    info.add_argument("store", type=Path, metavar="STORE")

    splits = data_cmds.add_parser(
        "splits", help="write the split table of a dataset",
        description="Write one row per record: ecg_id, patient_id, strat_fold, split, half.",
        formatter_class=fmt)
    ssrc = splits.add_subparsers(dest="source", metavar="DATASET", required=True)
    s = ssrc.add_parser("ptbxl", help="PTB-XL", formatter_class=fmt, parents=[common],
                        description="Write PTB-XL's standard split and A/B halves as CSV.")
    _ptbxl_source(s)
    s.add_argument("--out", type=Path, required=True, metavar="FILE", help="CSV to write")
    s.add_argument("--halves-seed", type=int, default=None, metavar="N",
                   help="seed of the A/B patient halves (default: the manifest's)")

    m = data_cmds.add_parser(
        "merge", help="merge stores of one identity (the shards of a synth run) into one",
        description="Merge complete stores of one identity into one store, records in "
                    "record-id order: the shards of a synth run merge into exactly the store an "
                    "unsharded run makes. Every shard must be given; re-running continues.",
        formatter_class=fmt, parents=[common])
    m.add_argument("inputs", type=Path, nargs="+", metavar="STORE", help="stores to merge")
    m.add_argument("--out", type=Path, required=True, metavar="STORE", help="merged store folder")

    synth = commands.add_parser(
        "synth", help="generate DeepFake ECGs into a signal store",
        description="Generate DeepFake ECGs (the deepfake-ecg package's Pulse2Pulse generator "
                    "and weights; 10 s, 500 Hz, int16 microvolts) into a signal store. Record i "
                    "depends only on (seed, i): the same for any batch size, thread count, "
                    "shard split or resume. Re-running continues a killed run; a larger --n "
                    "adds the missing records only.",
        formatter_class=fmt, parents=[common])
    synth.add_argument("--n", type=_positive(int), required=True, help="records 0 .. N-1")
    synth.add_argument("--seed", type=_non_negative, default=0, help="generation seed")
    synth.add_argument("--out", type=Path, required=True, metavar="STORE", help="store folder")
    synth.add_argument("--leads", type=int, choices=(8, 12), default=8,
                       help="8 = I, II, V1-V6 as generated; 12 adds III, aVR, aVL, aVF derived "
                            "from I and II (Einthoven, Goldberger)")
    synth.add_argument("--batch-size", type=_positive(int), default=None, metavar="B",
                       help="CPU: records in flight (memory only; default 64). CUDA: records per "
                            "forward pass (default 512), part of the store's identity")
    synth.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    synth.add_argument("--threads", type=_positive(int), default=None,
                       help="CPU: passes computed side by side (default: torch's thread count)")
    synth.add_argument("--shard-index", type=_non_negative, default=0, metavar="K",
                       help="make shard K of --num-shards (merge them with `data merge`)")
    synth.add_argument("--num-shards", type=_positive(int), default=1, metavar="M")

    label = commands.add_parser(
        "label", help="measure HR, PR, QRS and QT of every record with NeuroKit2",
        description="Measure HR, PR, QRS and QT of every record (R peaks agreed across leads, "
                    "median-beat delineation of 12 leads, median over leads; see "
                    "docs/labels.md). One row per record, NaN with a reason where an interval "
                    "cannot be measured. The file is keyed by the labeller config's hash, "
                    "written beside the store with a JSON of config and versions; re-running "
                    "continues a killed run.",
        formatter_class=fmt, parents=[common])
    where = label.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", type=Path, metavar="STORE", help="signal store to label")
    where.add_argument("--input", type=Path, metavar="DIR",
                       help="folder of WFDB records (LUDB, Challenge 2021); needs --out")
    label.add_argument("--out", type=Path, default=None, metavar="FILE",
                       help="label CSV (default: STORE/labels-<config hash>.csv)")
    label.add_argument("--workers", type=_positive(int), default=None, metavar="N",
                       help="processes (default: the CPU count)")
    label.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help="YAML of labeller settings (LabellerConfig fields) to override")
    label.add_argument("--shard-index", type=_non_negative, default=0, metavar="K",
                       help="label records K, K+M, ... only; an unsharded run afterwards "
                            "gathers the shard files into one")
    label.add_argument("--num-shards", type=_positive(int), default=1, metavar="M")

    pre = commands.add_parser(
        "pretrain", help="train HR/PR/QRS/QT regressors on a labelled store, tracked in MLflow",
        description="Train 1D-CNN regressors of HR, PR, QRS and QT on a labelled signal store: "
                    "one model per target, or one multi-output model. Settings come from "
                    "defaults, then --config, then the flags below, then --set. Each model is "
                    "one MLflow run (params, per-epoch metrics, test MAE, plots, the model). "
                    "Under torchrun, trains data-parallel. See docs/pretrain.md.",
        formatter_class=fmt, parents=[common])
    pre.add_argument("--config", type=Path, default=None, metavar="FILE",
                     help="YAML of settings (PretrainConfig fields)")
    pre.add_argument("--store", default=None, metavar="STORE", help="labelled signal store")
    pre.add_argument("--labels", default=None, metavar="FILE",
                     help="label file (default: the store's only labels-*.csv)")
    pre.add_argument("--targets", default=None, metavar="LIST",
                     help="comma-separated: hr, pr, qrs, qt (default qrs)")
    pre.add_argument("--multi-output", action="store_true", default=None,
                     help="one model for all targets instead of one per target")
    pre.add_argument("--model", default=None, metavar="NAME",
                     help="registered model (see --list-models; default resnet1d_fast)")
    pre.add_argument("--fs", type=_positive(float), default=None, metavar="HZ",
                     help="input rate; records are resampled (default: the store's)")
    pre.add_argument("--split", default=None, choices=("auto", "folds", "A", "B", "random"),
                     help="PTB-XL folds 1-8/9/10, one A/B half, or a seeded random split "
                          "(default auto)")
    _loop_flags(pre, "runs/pretrain", "config, checkpoints, models",
                "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
                "model_kwargs.width=64")
    pre.add_argument("--list-models", action="store_true",
                     help="print the registered models and their parameters, then exit")
    fin = commands.add_parser(
        "finetune", help="fine-tune pretrained trunks (or train from scratch) on PTB-XL's five "
                         "superclasses, tracked in MLflow",
        description="Put the trunks of pretrained interval regressors under a new head and train "
                    "it on a PTB-XL store's diagnostic superclasses (NORM, MI, STTC, CD, HYP); "
                    "evaluate on the test fold with 95% bootstrap intervals. Settings come from "
                    "defaults, then --config, then the flags below, then --set. One MLflow run "
                    "per call. Under torchrun, trains data-parallel. See docs/finetune.md.",
        formatter_class=fmt, parents=[common])
    fin.add_argument("--config", type=Path, default=None, metavar="FILE",
                     help="YAML of settings (FinetuneConfig fields)")
    fin.add_argument("--store", default=None, metavar="STORE", help="PTB-XL signal store")
    fin.add_argument("--from", dest="sources", default=None, metavar="REF[,REF...]",
                     help="pretrained regressors: model.pt files or folders, pretrain run "
                          "folders, MLflow model URIs or run ids")
    fin.add_argument("--strategy", default=None, choices=("single", "combined", "scratch"),
                     help="one trunk, several side by side, or the same architecture from "
                          "random weights (default single)")
    fin.add_argument("--freeze", default=None, choices=("full", "frozen", "gradual"),
                     help="train everything, keep the trunks fixed, or fixed for "
                          "--frozen-epochs then unfrozen at a lower lr (default full)")
    fin.add_argument("--frozen-epochs", type=_positive(int), default=None, metavar="N")
    fin.add_argument("--task", default=None, choices=("single_label", "multi_label"),
                     help="records with one superclass (softmax) or any (sigmoid per class; "
                          "the PTB-XL benchmark's task) (default single_label)")
    fin.add_argument("--class-weights", default=None, choices=("none", "balanced"))
    fin.add_argument("--split", default=None, choices=("auto", "folds", "A", "B", "random"),
                     help="PTB-XL folds 1-8/9/10, or within one A/B half (B for A->B transfer)")
    fin.add_argument("--train-fraction", type=_positive(float), default=None, metavar="F",
                     help="train on this seeded fraction of the training patients (default 1)")
    fin.add_argument("--model", default=None, metavar="NAME",
                     help="scratch without --from: the architecture (default resnet1d_fast)")
    _loop_flags(fin, "runs/finetune", "config, checkpoint, model",
                "MLflow tracking URI, also where run ids in --from are looked up (default: "
                "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db)", "head_hidden=null")
    run = commands.add_parser(
        "run", help="run a whole experiment: the stages of a pipeline file, under one MLflow "
                    "parent run",
        description="Run the stages a pipeline YAML names (prepare, synth, label, pretrain, "
                    "finetune, compare) in order, under one MLflow parent run with a child run "
                    "per stage. A stage whose inputs and settings are unchanged is reused; a "
                    "killed pipeline re-run continues where it stopped. The file is checked "
                    "whole before any work. See docs/pipelines.md.",
        formatter_class=fmt, parents=[common])
    run.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    run.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                     dest="overrides",
                     help="change a stage's setting, value as YAML (e.g. deepfake.n=64, "
                          "finetune.grid.seed=[0]); repeatable")
    cmp_ = commands.add_parser(
        "compare", help="table and plot of fine-tune runs: strategy, source, freezing, train "
                        "fraction -> test metrics over seeds",
        description="Group finished fine-tune runs that differ only in seed and report test "
                    "accuracy, macro AUROC and macro F1 as the mean over seeds with a 95% "
                    "interval (t over seeds; one seed: its bootstrap interval). Prints the "
                    "table and writes comparison.csv, comparison.md and comparison.png.",
        formatter_class=fmt, parents=[common])
    cmp_.add_argument("--experiment", action="append", default=None, metavar="NAME",
                      help="MLflow experiment(s) of the fine-tune runs (repeatable; default "
                           "ecgtransfer-finetune)")
    cmp_.add_argument("--tracking-uri", default=None, metavar="URI",
                      help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    cmp_.add_argument("--pipeline-run", default=None, metavar="RUN_ID",
                      help="only the runs of this pipeline run")
    cmp_.add_argument("--metric", default="macro_auroc", choices=("macro_auroc", "accuracy",
                                                                   "macro_f1"),
                      help="the metric of the plot")
    cmp_.add_argument("--out", type=Path, default=Path("runs/compare"), metavar="DIR")
    return parser


# ---- commands ----------------------------------------------------------------------------
def _root(args: argparse.Namespace) -> Path:
    from ecgtransfer.data.ptbxl import sample_ptbxl_root

    return sample_ptbxl_root() if args.sample else args.root


def _report_prepare(report, strict: bool) -> int:
    store = report.store
    print(f"{store.path}: {len(store)} records at {store.fs:g} Hz, {store.n_leads} leads "
          f"({report.written} written now, {report.skipped} already there, "
          f"{len(report.rejects)} rejected)")
    if report.rejects:
        print(f"rejected records and reasons: {store.path / 'rejects.csv'}")
    return 1 if strict and report.rejects else 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from ecgtransfer.data.leads import lead_set

    progress = not args.quiet
    if args.source == "ptbxl":
        from ecgtransfer.data.ptbxl import prepare_ptbxl

        report = prepare_ptbxl(_root(args), args.out, fs=args.fs, leads=lead_set(args.leads),
                               halves_seed=args.halves_seed, progress=progress)
    else:
        from ecgtransfer.data.ingest import prepare_wfdb

        report = prepare_wfdb(args.input, args.out, fs=args.fs, leads=lead_set(args.leads),
                              progress=progress)
    return _report_prepare(report, args.strict)


def _cmd_verify(args: argparse.Namespace) -> int:
    from ecgtransfer.data.manifests import load_manifest, verify_tree
    from ecgtransfer.data.ptbxl import expected_files

    manifest = load_manifest("ptbxl")
    root = _root(args)
    rates = args.fs or ([500] if args.sample else [500, 100])
    report = verify_tree(root, manifest, progress=not args.quiet,
                         include=expected_files(root, rates))
    for rel in report.missing:
        print(f"missing: {rel}")
    for rel in report.mismatched:
        print(f"checksum mismatch: {rel}")
    verdict = "OK" if report.ok else "FAILED"
    print(f"{root}: {verdict}, {report.checked} files checked against "
          f"{' + '.join(report.sources)}: {len(report.missing)} missing, "
          f"{len(report.mismatched)} mismatching")
    return 0 if report.ok else 1


def _cmd_fetch(args: argparse.Namespace) -> int:
    from ecgtransfer.data.fetch import fetch_dataset
    from ecgtransfer.data.manifests import load_manifest

    manifest = load_manifest("ptbxl")
    report = fetch_dataset(args.root, manifest, base_url=args.base_url, rates=args.fs,
                           jobs=args.jobs, progress=not args.quiet)
    for rel, reason in report.failed:
        print(f"failed: {rel}: {reason}")
    print(f"{args.root}: {len(report.downloaded)} downloaded, {len(report.reused)} already "
          f"verified, {len(report.failed)} failed")
    if report.failed:
        print("re-run the same command to continue")
    return 0 if report.ok else 1


def _cmd_info(args: argparse.Namespace) -> int:
    from ecgtransfer.data.store import SignalStore

    store = SignalStore(args.store)
    idx = store.index
    print(repr(store))
    print(f"leads: {', '.join(store.leads)}")
    for column in ("split", "half", "superclass", "flag"):
        if column in idx:
            counts = idx[column].fillna("").replace("", "(none)").value_counts()
            print(f"{column}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"rejected: {len(store.rejects)}")
    return 0


def _cmd_splits(args: argparse.Namespace) -> int:
    from ecgtransfer.data.manifests import load_manifest
    from ecgtransfer.data.ptbxl import ptbxl_index

    seed = args.halves_seed
    if seed is None:
        seed = int(load_manifest("ptbxl").halves["seed"])
    index = ptbxl_index(_root(args), seed)
    table = index[["patient_id", "strat_fold", "split", "half"]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out)
    print(f"{args.out}: {len(table)} records, half A {int((table['half'] == 'A').sum())}, "
          f"half B {int((table['half'] == 'B').sum())} (seed {seed})")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from ecgtransfer.data.store import merge_stores

    store = merge_stores(args.inputs, args.out, progress=not args.quiet)
    print(f"{store.path}: {len(store)} records merged from {len(args.inputs)} stores")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from ecgtransfer.data.deepfake import SynthConfig, synthesize

    config = SynthConfig(n=args.n, seed=args.seed, leads=args.leads, batch_size=args.batch_size,
                         device=args.device, threads=args.threads,
                         shard_index=args.shard_index, num_shards=args.num_shards)
    report = synthesize(args.out, config, progress=not args.quiet)
    store = report.store
    rate = report.written / report.seconds if report.seconds > 0 else 0.0
    shard = f" (shard {args.shard_index}/{args.num_shards})" if args.num_shards > 1 else ""
    print(f"{store.path}: {len(store)} DeepFake ECGs{shard}, seed {args.seed}, "
          f"{store.n_leads} leads ({report.written} generated now at {rate:.0f}/s, "
          f"{report.skipped} already there)")
    return 0


def _labeller_config(path: Path | None):
    from ecgtransfer.features.intervals import LabellerConfig

    if path is None:
        return LabellerConfig()
    import yaml

    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of labeller settings")
    try:
        return LabellerConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _cmd_label(args: argparse.Namespace) -> int:
    from ecgtransfer.features.labels import label_records

    config = _labeller_config(args.config)
    source, kind = (args.store, "store") if args.store is not None else (args.input, "wfdb")
    if args.shard_index >= args.num_shards:
        raise ValueError(f"--shard-index {args.shard_index} must be below --num-shards "
                         f"{args.num_shards}")
    report = label_records(source, out=args.out, kind=kind, config=config,
                           workers=args.workers or os.cpu_count() or 1,
                           shard=(args.shard_index, args.num_shards), progress=not args.quiet)
    rate = report.n_computed / report.seconds if report.seconds > 0 else 0.0
    counts = ", ".join(f"{k.split('_')[0]} {v}" for k, v in report.n_ok.items())
    print(f"{report.path}: {report.n_records} records (config {report.config_hash}; "
          f"{report.n_computed} measured now at {rate:.1f}/s, {report.n_reused} reused); "
          f"measured: {counts}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ecgtransfer.config import PretrainConfig, load_config

    if args.list_models:
        from ecgtransfer.models import DEFAULT_MODEL, list_models, model_defaults

        for name in list_models():
            kw = ", ".join(f"{k}={v}" for k, v in model_defaults(name).items())
            print(f"{name}{' (default)' if name == DEFAULT_MODEL else ''}: {kw}")
        return 0
    config = load_config(
        PretrainConfig, args.config, args.overrides, store=args.store, labels=args.labels,
        targets=args.targets, multi_output=args.multi_output, model=args.model, fs=args.fs,
        split=args.split, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, device=args.device, out=args.out, experiment=args.experiment,
        tracking_uri=args.tracking_uri)
    from ecgtransfer.pretrain import pretrain

    results = pretrain(config, resume=args.resume, progress=not args.quiet)
    for r in results:
        if r.run_id is None:  # a torchrun rank other than 0
            continue
        shown = ", ".join(f"{k.split('_')[0].upper()} {v:.2f} {k.split('_')[1]}"
                          for k, v in r.test_mae.items())
        print(f"{r.path}: best epoch {r.best_epoch}, test MAE {shown or 'n/a'}"
              f"{' (reused)' if r.reused else ''}; MLflow run {r.run_id}")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from ecgtransfer.config import FinetuneConfig, load_config

    config = load_config(
        FinetuneConfig, args.config, args.overrides, store=args.store, sources=args.sources,
        strategy=args.strategy, freeze=args.freeze, frozen_epochs=args.frozen_epochs,
        task=args.task, class_weights=args.class_weights, split=args.split,
        train_fraction=args.train_fraction, model=args.model, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device, out=args.out,
        experiment=args.experiment, tracking_uri=args.tracking_uri)
    from ecgtransfer.finetune import finetune

    r = finetune(config, resume=args.resume, progress=not args.quiet)
    if r.run_id is None:  # a torchrun rank other than 0
        return 0
    shown = "no test records"
    if r.test:
        shown = ", ".join(f"{name} {r.test[key]:.3f}" + (
            f" [{r.intervals[key][0]:.3f}, {r.intervals[key][1]:.3f}]" if key in r.intervals else "")
            for key, name in (("macro_auroc", "macro AUROC"), ("accuracy", "accuracy"),
                              ("macro_f1", "macro F1")))
    print(f"{r.path}: best epoch {r.best_epoch}, test {shown}{' (reused)' if r.reused else ''}; "
          f"MLflow run {r.run_id}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ecgtransfer.pipeline import load_pipeline, run_pipeline
    from ecgtransfer.tracking import tracking_uri

    pipeline = load_pipeline(args.pipeline, args.overrides)

    def report(r) -> None:
        first = r.summary.splitlines()[0] if r.summary and r.kind != "compare" else ""
        print(f"{r.kind} {r.name}: {'reused' if r.reused else 'done'} -> {r.output}"
              f"{'; ' + first if first else ''}", flush=True)

    results = run_pipeline(pipeline, progress=not args.quiet, on_stage=report)
    for r in results:
        if r.kind == "compare":
            print(f"\n{r.summary}", end="")
    uri = tracking_uri(pipeline.tracking_uri)
    if uri.startswith("sqlite:"):
        print(f"\nMLflow experiment {pipeline.experiment!r}. To browse and compare the runs: "
              f"mlflow ui --backend-store-uri {uri} (then open http://127.0.0.1:5000)")
    else:
        print(f"\nMLflow experiment {pipeline.experiment!r} at {uri}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from ecgtransfer.compare import comparison_table, finetune_runs, summary_text, write_comparison

    runs = finetune_runs(args.experiment or ["ecgtransfer-finetune"], args.tracking_uri,
                         args.pipeline_run)
    table = comparison_table(runs)
    print(summary_text(table), end="")
    if table.empty:
        return 1
    paths = write_comparison(table, args.out, args.metric)
    print(f"{len(runs)} runs in {len(table)} groups; wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ecgtransfer`` command; returns the exit status."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ecgtransfer.features.labels import LabelError
    from ecgtransfer.data.manifests import ManifestError
    from ecgtransfer.data.ptbxl import PTBXLError
    from ecgtransfer.data.store import StoreError
    from ecgtransfer.data.wfdb_io import RecordError
    from ecgtransfer.training import TrainingError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    if args.command != "data":
        handler = {"synth": _cmd_synth, "label": _cmd_label, "pretrain": _cmd_pretrain,
                   "finetune": _cmd_finetune, "compare": _cmd_compare,
                   "run": _cmd_run}[args.command]
    else:
        handler = {"prepare": _cmd_prepare, "verify": _cmd_verify, "fetch": _cmd_fetch,
                   "info": _cmd_info, "splits": _cmd_splits, "merge": _cmd_merge}[args.data_command]
    try:
        with logging_redirect_tqdm():
            return handler(args)
    except (StoreError, ManifestError, PTBXLError, RecordError, LabelError, FileNotFoundError,
            TrainingError, ValueError) as exc:
        print(f"ecgtransfer: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ecgtransfer: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130
