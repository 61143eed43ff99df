"""Realism report: HR/PR/QRS/QT of DeepFake ECGs next to PTB-XL records, both labelled by us.

Run from the repository root::

    python benchmarks/label_realism.py [--n 1000] [--seed 0] [--ptbxl ../shared/data/ptbxl-sample]
                                       [--png docs/figures/label_realism.png]

Generates ``--n`` DeepFake ECGs (``ecgtransfer synth``), prepares the PTB-XL sample, labels both
with ``ecgtransfer label`` (default config, 2 workers), prints the summary table (Markdown) and
saves the histograms as PNG. PTB-XL is shown whole and as its NORM records alone, since the
generator was trained on normal ECGs.
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
        ptbxl = read_labels(label_records(real.path, workers=2).path)
        index = real.index.set_index("record_id")
    norm = ptbxl[ptbxl["record_id"].map(index["superclasses"]).fillna("") == "NORM"] \
        if "superclasses" in index else ptbxl.iloc[:0]
    tables = {f"DeepFake (seed {args.seed})": deepfake, "PTB-XL sample": ptbxl}
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
