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
- ``runs``: an MLflow store of 2,000 fine-tune runs, made through the tracking layer. 500 of
  them are test-split runs with their predictions of PTB-XL's 2,184 test records: 10 settings
  by 50 seeds, probabilities that follow the truth. The other 1,500 are cross-validation fold
  runs. This part is set-up, timed but not a stage.
- ``compare``: ``ecgtransfer compare`` over the 500 runs: the seed-and-record bootstrap, paired
  differences and figures.
- ``ui``: ``ecgtransfer ui`` on that store. The link it prints is opened in headless Chromium
  (Selenium), and the part times how long until the fine-tune runs and their test macro AUROC
  column are on the page. Needs Debian's ``chromium`` and ``chromium-driver``.
- ``tune``: ``ecgtransfer tune`` of a scratch classifier's learning rate and head on the
  package's 350 PTB-XL records (one epoch a trial), 200 trials at full size in a new Optuna
  storage: what grows here is the study and the MLflow store, not the data.

Each stage runs under ``benchmarks/measure.py``. It records seconds from process start, imports
included. It also records peak memory of the process tree (label's workers included), sampled
from ``/proc``: anonymous memory, which is what a stage takes from the machine, and RSS with the
store's memory-mapped pages, which the kernel may drop. Per stage, the table gives the records,
seconds, records/s and peak memory at each scale, and the full/tenth ratios of memory and of
time per record (targets: at most 1.5x each).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import standins  # noqa: E402

PARTS = ("build", "prepare_ptbxl", "prepare_challenge", "label", "pretrain", "finetune", "runs",
         "compare", "ui", "tune")
FULL_TRIALS = 200
"""Trials of the ``tune`` part's study at full size."""
TUNE_SPACE = """\
stage: finetune
metric: val_macro_auroc
params:
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  head_hidden: {type: categorical, choices: [64, 128]}
"""
FULL_RUNS, FULL_COMPARED = 2000, 500
"""An MLflow store of 2,000 fine-tune runs at full size, 500 of them test-split runs with their
predictions (what ``compare`` reads); the others are cross-validation fold runs."""
CLASSES = ("NORM", "MI", "STTC", "CD", "HYP")


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
        nan = float("nan")
        row = {"scale": scale, "stage": stage, "records": records,
               "seconds": record["wall_seconds"], "peak_anon_mb": record.get("peak_anon_mb", nan),
               "peak_rss_mb": record.get("peak_rss_mb", nan),
               **({"opens": record["opens"]} if "opens" in record else {})}
        rows.append(row)
        log(f"{stage:18s} scale {scale:g}: {records:7d} records in {row['seconds']:8.1f} s "
            f"({records / max(row['seconds'], 1e-9):8.1f}/s), peak memory "
            f"{row['peak_anon_mb']:.0f} MB (RSS with mapped files {row['peak_rss_mb']:.0f} MB)")

    if "build" in parts:
        t0 = time.perf_counter()
        standins.deepfake_store(data / "deepfake", n_df)
        add("build_deepfake", n_df, {"wall_seconds": time.perf_counter() - t0})
        t0 = time.perf_counter()
        standins.ptbxl_folder(data / "ptbxl", n_ptbxl)
        standins.challenge_folder(data / "challenge", scale)
        add("build_folders", n_ptbxl, {"wall_seconds": time.perf_counter() - t0})
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
    n_runs, n_compared = round(FULL_RUNS * scale), round(FULL_COMPARED * scale)
    experiment = "scale-finetune"
    if "runs" in parts:
        t0 = time.perf_counter()
        make_runs(data / "runs-store", experiment, n_runs, n_compared,
                  round(standins.FULL["ptbxl"] * 0.1 * scale))
        add("runs", n_runs, {"wall_seconds": time.perf_counter() - t0})
    runs_uri = f"sqlite:///{data / 'runs-store' / 'mlflow.db'}"
    if "compare" in parts:
        add("compare", n_compared, measured(data, "compare", [
            "compare", "--experiment", experiment, "--tracking-uri", runs_uri,
            "--out", str(_fresh(runs / "compare")), "-q"]))
    if "ui" in parts:
        add("ui", n_runs, ui_seconds(runs_uri, experiment))
    if "tune" in parts:
        trials = round(FULL_TRIALS * scale)
        sample = data / "tune-ptbxl"
        if not (sample / "store.json").exists():
            subprocess.run([sys.executable, "-m", "ecgtransfer", "data", "prepare", "ptbxl",
                            "--sample", "--out", str(sample), "-q"], check=True)
        space = data / "tune-space.yaml"
        space.write_text(TUNE_SPACE)
        storage = data / "tune-optuna.db"
        storage.unlink(missing_ok=True)
        tracked = _fresh(data / "tune-mlflow")
        tracked.mkdir()
        add("tune", trials, measured(data, "tune", [
            "tune", "--space", str(space), "--store", str(sample), "--task", "superdiagnostic",
            "--strategy", "scratch", "--trials", str(trials), "--set", "epochs=1",
            "--set", "bootstrap=0", "--set", "batch_size=64", "--storage",
            f"sqlite:///{storage}", "--out", str(_fresh(runs / "tune")),
            "--tracking-uri", f"sqlite:///{tracked / 'mlflow.db'}", "-q"]))
    return rows


def make_runs(folder: Path, experiment: str, n_runs: int, n_compared: int,
              n_test: int) -> None:
    """``n_runs`` fine-tune runs in a new SQLite store in ``folder`` (see ``runs`` above)."""
    import numpy as np

    from ecgtransfer.tags import tag_values
    from ecgtransfer.tracking import Tracker
    from ecgtransfer.training.predictions import predictions_table, write_predictions

    _fresh(folder).mkdir(parents=True)
    tracker = Tracker(f"sqlite:///{folder / 'mlflow.db'}")
    rng = np.random.default_rng(0)
    ids = [f"{i:05d}" for i in range(1, n_test + 1)]
    truth = (rng.random((n_test, len(CLASSES))) < 0.25).astype(int)
    settings = [(strategy, fraction) for strategy in ("scratch", "single")
                for fraction in (0.05, 0.1, 0.25, 0.5, 1.0)]
    for i in range(n_runs):
        strategy, fraction = settings[i % len(settings)]
        compared = i < n_compared
        seed = i // len(settings) if compared else (i - n_compared) // 10
        tags = tag_values(stage="finetune", task="multi_label", split="folds",
                          source="none" if strategy == "scratch" else "deepfake",
                          source_targets="" if strategy == "scratch" else "qrs",
                          strategy=strategy, trunks=1, freeze="full", train_fraction=fraction,
                          setting=f"s{fraction:g}", seed=seed, model="resnet1d_fast",
                          evaluation="test" if compared else "fold",
                          cv=None if compared else 10,
                          fold=None if compared else (i - n_compared) % 10 + 1)
        with tracker.open_run(experiment=experiment, name=f"{strategy} f{fraction:g} s{seed}",
                              tags=tags) as run:
            skill = 0.6 + 0.3 * fraction + (0.05 if strategy == "single" else 0.0)
            logits = truth * skill * 3 + rng.normal(0, 1, truth.shape)
            probs = 1 / (1 + np.exp(-(logits - 1.5)))
            run.log_params({"model": "resnet1d_fast", "data": {"n_train": 17000 * fraction,
                                                              "n_test": n_test}})
            run.log_metrics({"test_macro_auroc": 0.7 + 0.2 * fraction + rng.normal(0, 0.01),
                             "test_accuracy": 0.5 + 0.2 * fraction,
                             "test_macro_f1": 0.5 + 0.2 * fraction})
            if compared:
                path = write_predictions(predictions_table(ids, CLASSES, probs, truth, True),
                                         folder / "test_predictions.csv")
                run.log_artifact(path)


def ui_seconds(uri: str, experiment: str, opens: int = 3) -> dict:
    """Seconds from opening the link ``ecgtransfer ui`` prints to the fine-tune runs and their
    test macro AUROC column on the page, in headless Chromium, as a user meets it: the server
    has printed its link and the browser is already open. Each of ``opens`` opens is a new
    browser with an empty cache (the first visit: 4.4 MB of the UI's JavaScript to load and
    compile); ``wall_seconds`` is the slowest, ``opens`` all of them."""
    import shutil as which
    import socket

    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "ecgtransfer", "ui", "--tracking-uri", uri,
                               "--experiment", experiment, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1600,1000"):
        options.add_argument(arg)
    options.binary_location = which.which("chromium") or which.which("chromium-browser")
    seconds = []
    try:
        link = server.stdout.readline().split(" at ", 1)[1].strip()
        for _ in range(opens):
            browser = webdriver.Chrome(service=Service(which.which("chromedriver")),
                                       options=options)
            try:
                browser.get("about:blank")
                time.sleep(1.0)  # the browser has settled, as a user's has
                t0 = time.perf_counter()
                browser.get(link)
                while time.perf_counter() - t0 < 120:
                    text = browser.find_element("tag name", "body").text
                    if "matching runs" in text and "test_macro_a" in text:
                        break
                    time.sleep(0.05)
                else:
                    raise RuntimeError(f"ui: the runs were not on the page after 120 s: "
                                       f"{text[:300]}")
                seconds.append(time.perf_counter() - t0)
            finally:
                browser.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"wall_seconds": max(seconds), "opens": seconds}


def table(rows: list[dict]) -> str:
    by = {(r["stage"], r["scale"]): r for r in rows}
    scales = sorted({r["scale"] for r in rows})
    lines = ["| stage | " + " | ".join(f"records @ {s:g} | s @ {s:g} | records/s @ {s:g} | "
                                      f"peak MB @ {s:g}" for s in scales)
             + (" | memory full/tenth | time per record full/tenth |" if len(scales) == 2 else " |"),
             "|---" * (1 + 4 * len(scales) + (2 if len(scales) == 2 else 0)) + "|"]
    for stage in dict.fromkeys(r["stage"] for r in rows):
        cells = []
        for s in scales:
            r = by.get((stage, s))
            if r is None:
                cells += ["", "", "", ""]
                continue
            cells += [f"{r['records']:,}", f"{r['seconds']:.1f}",
                      f"{r['records'] / r['seconds']:.1f}", f"{r['peak_anon_mb']:.0f}"]
        if len(scales) == 2 and all((stage, s) in by for s in scales):
            lo, hi = by[(stage, scales[0])], by[(stage, scales[1])]
            mem = [x["peak_anon_mb"] for x in (lo, hi)]
            per = [x["seconds"] / x["records"] for x in (lo, hi)]
            cells += [f"{mem[1] / mem[0]:.2f}x", f"{per[1] / per[0]:.2f}x"]
        elif len(scales) == 2:
            cells += ["", ""]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Seconds and peak memory of each stage against its records, one line per stage over the
    scales (log-log: a straight line of slope 1 is linear time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, stage in enumerate(dict.fromkeys(r["stage"] for r in rows)):
        part = sorted((r for r in rows if r["stage"] == stage), key=lambda r: r["records"])
        x = [r["records"] for r in part]
        color = colors[k % len(colors)]  # one colour per stage in both panels
        ax_t.plot(x, [r["seconds"] for r in part], "o-", label=stage, color=color)
        if any(r["peak_anon_mb"] == r["peak_anon_mb"] for r in part):  # not NaN
            ax_m.plot(x, [r["peak_anon_mb"] for r in part], "o-", label=stage, color=color)
    for ax, what in ((ax_t, "wall seconds (whole process)"), (ax_m, "peak memory, MB (PSS, "
                                                                   "anonymous, process tree)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("records")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    ax_m.legend(fontsize=7)
    fig.suptitle("ecgtransfer stages at 1/10 and full size (2 CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--scales", default="0.1,1")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None, help="time and memory against size (PNG)")
    ap.add_argument("--table-only", action="store_true",
                    help="print the table (and --plot) of --out's rows; run nothing")
    args = ap.parse_args(argv)
    if args.table_only:
        rows = json.loads(args.out.read_text())
        print(table(rows))
        if args.plot:
            plot(rows, args.plot)
        return 0
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
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
