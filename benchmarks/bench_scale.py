"""Full size, measured: every stage on stand-ins of the study's datasets at 1/10 and at full size
(150,000 DeepFake, 21,837 PTB-XL, 88,253 Challenge records), as whole processes the way a user
runs them, with wall time and peak memory per stage.

Run from the repository root (``make bench-scale WORK=DIR``)::

    python benchmarks/bench_scale.py --work DIR [--scales 0.1,1] [--parts ...] [--out FILE]

``--work`` must have about 45 GB free for the full size (the DeepFake store is 11.7 GB and
its two shards exist until they are merged, the Challenge store about 14 GB). The stand-ins are
built once per scale (``benchmarks/standins.py``) and reused by later runs; each stage's output
is made anew.

Parts, in order (``--parts`` picks some):

- ``build``: the stand-ins. The DeepFake part is timed as two ``synth`` shard processes side by
  side plus ``data merge``, as a user makes it.
- ``prepare_ptbxl``, ``prepare_challenge``: ``ecgtransfer data prepare`` of the two folders.
- ``label``: ``ecgtransfer label`` of the DeepFake store, 2 workers.
- ``pretrain``: one epoch of ``resnet1d_fast`` at 100 Hz on the DeepFake store's QRS labels,
  including making the store's 100 Hz copy.
- ``finetune``: one epoch per fold of a 10-fold cross-validation of a scratch classifier at
  100 Hz on the PTB-XL store (10 fold runs, their pooled predictions and bootstrap).

Each stage runs under ``benchmarks/measure.py``: seconds from process start (imports included),
the process's peak RSS and its largest child's (label's workers). The table says, per stage,
the records, seconds, records/s and peak RSS at each scale, and full/tenth ratios of memory and
of time per record (targets: at most 1.5x each).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import standins  # noqa: E402

PARTS = ("build", "prepare_ptbxl", "prepare_challenge", "label", "pretrain", "finetune")


def measured(work: Path, name: str, args: list[str]) -> dict:
    """``ecgtransfer ARGS`` in its own process under ``measure.py``; its cost record."""
    out = work / f".{name}.json"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, str(HERE / "measure.py"), str(out), "--", *args],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{name}: exit {done.returncode}: {done.stderr.strip()[-800:]}")
    record = json.loads(out.read_text())
    record["wall_seconds"] = wall
    return record


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def run_scale(work: Path, scale: float, parts: list[str], log) -> list[dict]:
    n_df = round(standins.FULL["deepfake"] * scale)
    n_ptbxl = round(standins.FULL["ptbxl"] * scale)
    data = work / f"scale{scale:g}"
    data.mkdir(parents=True, exist_ok=True)
    runs = data / "runs"
    uri = f"sqlite:///{data / 'mlflow.db'}"
    rows = []

    def add(stage: str, records: int, record: dict) -> None:
        row = {"scale": scale, "stage": stage, "records": records,
               "seconds": record["wall_seconds"], "peak_rss_mb": record["peak_rss_mb"],
               "peak_child_rss_mb": record.get("peak_child_rss_mb", 0.0)}
        rows.append(row)
        log(f"{stage:18s} scale {scale:g}: {records:7d} records in {row['seconds']:8.1f} s "
            f"({records / max(row['seconds'], 1e-9):8.1f}/s), peak RSS {row['peak_rss_mb']:.0f} MB"
            f" (largest child {row['peak_child_rss_mb']:.0f} MB)")

    if "build" in parts:
        t0 = time.perf_counter()
        standins.deepfake_store(data / "deepfake", n_df)
        add("build_deepfake", n_df, {"wall_seconds": time.perf_counter() - t0,
                                     "peak_rss_mb": float("nan")})
        t0 = time.perf_counter()
        standins.ptbxl_folder(data / "ptbxl", n_ptbxl)
        standins.challenge_folder(data / "challenge", scale)
        add("build_folders", n_ptbxl, {"wall_seconds": time.perf_counter() - t0,
                                       "peak_rss_mb": float("nan")})
    n_cinc = sum(max(1, round(s[0] * scale)) for s in standins.CHALLENGE_SOURCES.values())
    if "prepare_ptbxl" in parts:
        add("prepare_ptbxl", n_ptbxl, measured(data, "prepare_ptbxl", [
            "data", "prepare", "ptbxl", "--root", str(data / "ptbxl"),
            "--out", str(_fresh(data / "ptbxl-store")), "-q"]))
    if "prepare_challenge" in parts:
        add("prepare_challenge", n_cinc, measured(data, "prepare_challenge", [
            "data", "prepare", "challenge2021", "--input", str(data / "challenge"),
            "--out", str(_fresh(data / "challenge-store")), "-q"]))
    if "label" in parts:
        for old in (data / "deepfake").glob("labels-*"):
            old.unlink()
        add("label", n_df, measured(data, "label", [
            "label", "--store", str(data / "deepfake"), "--workers", "2", "-q"]))
    if "pretrain" in parts:
        shutil.rmtree(data / "deepfake" / "resampled", ignore_errors=True)
        add("pretrain", n_df, measured(data, "pretrain", [
            "pretrain", "--store", str(data / "deepfake"), "--targets", "qrs", "--epochs", "1",
            "--fs", "100", "--batch-size", "256", "--device", "cpu",
            "--out", str(_fresh(runs / "pretrain")), "--tracking-uri", uri, "-q"]))
    if "finetune" in parts:
        add("finetune", n_ptbxl, measured(data, "finetune", [
            "finetune", "--store", str(data / "ptbxl-store"), "--strategy", "scratch",
            "--cv", "10", "--epochs", "1", "--fs", "100", "--batch-size", "256",
            "--device", "cpu", "--bootstrap", "200",
            "--out", str(_fresh(runs / "finetune")), "--tracking-uri", uri, "-q"]))
    return rows


def table(rows: list[dict]) -> str:
    by = {(r["stage"], r["scale"]): r for r in rows}
    scales = sorted({r["scale"] for r in rows})
    lines = ["| stage | " + " | ".join(f"records @ {s:g} | s @ {s:g} | records/s @ {s:g} | "
                                      f"peak RSS MB @ {s:g}" for s in scales)
             + (" | memory full/tenth | time per record full/tenth |" if len(scales) == 2 else " |"),
             "|---" * (1 + 4 * len(scales) + (2 if len(scales) == 2 else 0)) + "|"]
    for stage in dict.fromkeys(r["stage"] for r in rows):
        cells = []
        for s in scales:
            r = by.get((stage, s))
            if r is None:
                cells += ["", "", "", ""]
                continue
            rss = max(r["peak_rss_mb"], r["peak_child_rss_mb"] or 0)
            cells += [f"{r['records']:,}", f"{r['seconds']:.1f}",
                      f"{r['records'] / r['seconds']:.1f}", f"{rss:.0f}"]
        if len(scales) == 2 and all((stage, s) in by for s in scales):
            lo, hi = by[(stage, scales[0])], by[(stage, scales[1])]
            mem = [max(x["peak_rss_mb"], x["peak_child_rss_mb"] or 0) for x in (lo, hi)]
            per = [x["seconds"] / x["records"] for x in (lo, hi)]
            cells += [f"{mem[1] / mem[0]:.2f}x", f"{per[1] / per[0]:.2f}x"]
        elif len(scales) == 2:
            cells += ["", ""]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--scales", default="0.1,1")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"--parts: unknown {unknown[0]}; choose from {', '.join(PARTS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for scale in (float(s) for s in args.scales.split(",")):
        rows += run_scale(args.work, scale, parts, lambda text: print(text, flush=True))
        if args.out:
            args.out.write_text(json.dumps(rows, indent=2))
    print("\n" + table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
