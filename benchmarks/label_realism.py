"""Realism report: HR/PR/QRS/QT of DeepFake ECGs, warped DeepFake ECGs and PTB-XL records, all
labelled by us.

Run from the repository root::

    python benchmarks/label_realism.py [--n 1000] [--seed 0] [--ptbxl ../shared/data/ptbxl-sample]
                                       [--png docs/figures/label_realism.png]

Generates ``--n`` DeepFake ECGs (``ecgtransfer synth``), warps them twice (``ecgtransfer
augment``: requests drawn from the clinical ranges, and requests drawn from the PTB-XL sample's
own labels, ``--match``), prepares the PTB-XL sample, labels all of them with ``ecgtransfer
label`` (default config, 2 workers), prints the summary table (Markdown) and how close the warps
landed, and saves the histograms as PNG. PTB-XL is shown whole and as its NORM records alone,
since the generator was trained on normal ECGs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def main() -> None:
    from ecgtransfer.data.deepfake import SynthConfig, synthesize
    from ecgtransfer.features.labels import label_records, read_labels
    from ecgtransfer.data.ptbxl import prepare_ptbxl
    from ecgtransfer.features.augment import AugmentConfig, augment_store
    from ecgtransfer.features.realism import interval_histograms, interval_summary

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ptbxl", type=Path, default=REPO.parent / "shared" / "data" / "ptbxl-sample")
    ap.add_argument("--png", type=Path, default=REPO / "docs" / "figures" / "label_realism.png")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        fake = synthesize(Path(tmp) / "deepfake", SynthConfig(n=args.n, seed=args.seed),
                          progress=False).store
        real = prepare_ptbxl(args.ptbxl, Path(tmp) / "ptbxl", progress=False).store
        deepfake = read_labels(label_records(fake.path, workers=2).path)
        ptbxl_labels = label_records(real.path, workers=2).path
        ptbxl = read_labels(ptbxl_labels)
        index = real.index.set_index("record_id")
        warped = {}
        for name, config in (
                ("warped DeepFake, clinical ranges", AugmentConfig(seed=args.seed)),
                ("warped DeepFake, matched to PTB-XL", AugmentConfig(seed=args.seed,
                                                                     match=str(ptbxl_labels)))):
            done = augment_store(fake.path, Path(tmp) / name.replace(" ", "_"), config,
                                 workers=2, progress=False)
            warped[name] = read_labels(label_records(done.store.path, workers=2).path)
            landed = done.report["intervals"]
            print(f"{name}: {done.report['records']} warped, {done.report['given_up']} given "
                  f"up, {(done.written + done.given_up) / done.seconds:.1f} records/s; "
                  "|measured - requested| median / 95th percentile / within tolerance: "
                  + "; ".join(f"{k} {v['median']:.1f} / {v['p95']:.1f} / "
                              f"{v['within_tolerance']:.0%}" for k, v in landed.items()))
    norm = ptbxl[ptbxl["record_id"].map(index["superclasses"]).fillna("") == "NORM"] \
        if "superclasses" in index else ptbxl.iloc[:0]
    tables = {f"DeepFake (seed {args.seed})": deepfake, **warped, "PTB-XL sample": ptbxl}
    if len(norm):
        tables["PTB-XL sample, NORM only"] = norm
    summary = interval_summary(tables)
    print("| source | interval | records | measured | median | IQR | 5th-95th |")
    print("|---|---|---|---|---|---|---|")
    for (source, interval), r in summary.iterrows():
        print(f"| {source} | {interval} | {int(r['records'])} | {r['measured']:.0%} | "
              f"{r['median']:.1f} | {r['q25']:.0f}-{r['q75']:.0f} | {r['p5']:.0f}-{r['p95']:.0f} |")
    reasons = deepfake.loc[deepfake["qt_status"] != "ok", "qt_status"].str.split("(").str[0]
    if len(reasons):
        print("\nDeepFake records without QT, by reason: "
              + ", ".join(f"{k.strip()} {v}" for k, v in reasons.value_counts().items()))
    args.png.parent.mkdir(parents=True, exist_ok=True)
    interval_histograms(tables).savefig(args.png, dpi=110)
    print(f"\n{args.png}")


if __name__ == "__main__":
    main()
