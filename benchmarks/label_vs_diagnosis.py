"""The labeller's intervals against the diagnoses defined by them, on the real records at hand.

Run from the repository root::

    python benchmarks/label_vs_diagnosis.py [--shared ../shared/data] [--details disagreements.csv]

Prepares and labels (``ecgtransfer label``, default config) the PhysioNet/CinC Challenge 2021
sample, the PTB-XL sample and LUDB, and checks each rule against the cardiologists'
diagnoses:

====================  ============================================  ==========================
rule                  diagnosis (Challenge / PTB-XL / LUDB)          from the label
====================  ============================================  ==========================
sinus bradycardia     426177001 SB / SBRAD / "Sinus bradycardia"    HR < 60 bpm
sinus tachycardia     427084000 STach / STACH / "Sinus tachycardia" HR > 100 bpm
1st-degree AV block   270492004 IAVB or 164947007 LPR / 1AVB /       PR > 200 ms
                      "I degree av block"
complete BBB          CLBBB or CRBBB (equivalents merged) /          QRS >= 120 ms
                      CLBBB or CRBBB / "Complete ... bundle branch
                      block"
incomplete RBBB       IRBBB / IRBBB / "Incomplete right bundle       110 <= QRS < 120 ms
                      branch block"                                  (the width part only)
IVCD                  NSIVCB / IVCD / "Non-specific intravintricular QRS >= 110 ms
                      conduction delay"
prolonged QT          111975006 LQT / LNGQT / (none in LUDB)         QTc (Bazett) > 450 ms
                                                                     (men), 460 ms (women or
                                                                     unknown)
atrial fibrillation   164889003 AF / AFIB / "Atrial fibrillation"    no P wave (PR left
                                                                     unmeasured: the P windows
                                                                     do not repeat)
====================  ============================================  ==========================

Prints, per dataset and rule, the records with and without the diagnosis whose interval was
measured, sensitivity and specificity with 95% Wilson intervals, and the records left out
(interval not measured); ``--details`` writes every disagreement (record, diagnosis, value).
"""

from __future__ import annotations

import argparse
import ast
import csv
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

RULES = ("sinus bradycardia", "sinus tachycardia", "1st-degree AV block", "complete BBB",
         "incomplete RBBB", "IVCD", "prolonged QT", "atrial fibrillation")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def predicted(labels: pd.DataFrame, sex: pd.Series) -> pd.DataFrame:
    """Each rule's call from the labels (NaN where the interval was not measured)."""
    hr, pr, qrs, qt = (labels[c] for c in ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms"))
    qtc = qt / np.sqrt(60.0 / hr)  # Bazett: QT / sqrt(RR in s)
    limit = np.where(sex.reindex(labels.index).fillna("") == "M", 450.0, 460.0)

    def call(values, test):
        return np.where(values.isna(), np.nan, test.astype(float))

    # no P wave: PR left unmeasured because the beats' P windows do not repeat
    status = labels["pr_status"].fillna("")
    no_p = pd.Series(np.where(status.str.startswith("no P wave"), 1.0,
                              np.where(status == "ok", 0.0, np.nan)), index=labels.index)
    return pd.DataFrame({
        "sinus bradycardia": call(hr, hr < 60), "sinus tachycardia": call(hr, hr > 100),
        "1st-degree AV block": call(pr, pr > 200), "complete BBB": call(qrs, qrs >= 120),
        "incomplete RBBB": call(qrs, (qrs >= 110) & (qrs < 120)), "IVCD": call(qrs, qrs >= 110),
        "prolonged QT": call(qtc, qtc > limit), "atrial fibrillation": no_p},
        index=labels.index), qtc


def challenge(shared: Path, tmp: Path, label) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    from ecgtransfer.data.challenge2021 import prepare_challenge2021

    store = prepare_challenge2021(shared / "cinc2021-sample", tmp / "challenge", fs=500,
                                  progress=False).store
    index = store.index.set_index("record_id")
    truth = pd.DataFrame({
        "sinus bradycardia": index["SB"], "sinus tachycardia": index["STach"],
        "1st-degree AV block": index["IAVB"] | index["LPR"],
        "complete BBB": index["CLBBB"] | index["CRBBB"], "incomplete RBBB": index["IRBBB"],
        "IVCD": index["NSIVCB"], "prolonged QT": index["LQT"], "atrial fibrillation": index["AF"]})
    sex = index["sex"].map({"Male": "M", "Female": "F"})
    return label(store), truth.astype(float), sex


def ptbxl(shared: Path, tmp: Path, label) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    from ecgtransfer.data.ptbxl import prepare_ptbxl

    root = shared / "ptbxl-sample"
    store = prepare_ptbxl(root, tmp / "ptbxl", progress=False).store
    database = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    codes = {f"{i:05d}": set(ast.literal_eval(s)) for i, s in database["scp_codes"].items()}
    ids = store.index["record_id"].astype(str)
    has = {rule: [float(bool(codes[i] & want)) for i in ids] for rule, want in (
        ("sinus bradycardia", {"SBRAD"}), ("sinus tachycardia", {"STACH"}),
        ("1st-degree AV block", {"1AVB"}), ("complete BBB", {"CLBBB", "CRBBB"}),
        ("incomplete RBBB", {"IRBBB"}), ("IVCD", {"IVCD"}), ("prolonged QT", {"LNGQT"}),
        ("atrial fibrillation", {"AFIB"}))}
    sex = pd.Series([{0: "M", 1: "F"}.get(database.loc[int(i), "sex"], "") for i in ids],
                    index=ids)
    return label(store), pd.DataFrame(has, index=ids), sex


def ludb(shared: Path, tmp: Path, label) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    from ecgtransfer.data.ingest import prepare_wfdb

    root = shared / "ludb-sample"
    store = prepare_wfdb(root / "data", tmp / "ludb", fs=500, progress=False).store
    with open(root / "ludb.csv", newline="") as f:
        rows = {r["ID"].strip(): r for r in csv.DictReader(f)}

    def has(record: str, column: str, words: tuple[str, ...]) -> float:
        lines = [line.strip().lower() for line in rows[record][column].splitlines()]
        return float(any(line.startswith(w) for line in lines for w in words))  # not "incomplete"

    ids = store.index["record_id"].astype(str)
    truth = pd.DataFrame({
        "sinus bradycardia": [has(i, "Rhythms", ("sinus bradycardia",)) for i in ids],
        "sinus tachycardia": [has(i, "Rhythms", ("sinus tachycardia",)) for i in ids],
        "1st-degree AV block": [has(i, "Conduction abnormalities", ("i degree av block",))
                                for i in ids],
        "complete BBB": [has(i, "Conduction abnormalities", ("complete left bundle",
                                                             "complete right bundle"))
                         for i in ids],
        "incomplete RBBB": [has(i, "Conduction abnormalities", ("incomplete right bundle",))
                            for i in ids],
        "IVCD": [has(i, "Conduction abnormalities", ("non-specific intravintricular",))
                 for i in ids],
        "prolonged QT": [np.nan] * len(ids),
        "atrial fibrillation": [has(i, "Rhythms", ("atrial fibrillation",)) for i in ids]},
        index=ids)
    sex = pd.Series([rows[i]["Sex"].strip() for i in ids], index=ids)
    return label(store), truth, sex


def report(shared: Path, details: Path | None = None) -> None:
    """Print the table (and write the disagreements to ``details``)."""
    from ecgtransfer.features.labels import label_records, read_labels

    def label(store) -> pd.DataFrame:
        table = read_labels(label_records(store.path, workers=2, progress=False).path)
        return table.assign(record_id=table["record_id"].astype(str)).set_index("record_id")

    print("| dataset | rule | with the diagnosis | without | sensitivity | specificity | "
          "not measured |")
    print("|---|---|---|---|---|---|---|")
    wrong = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, load in (("Challenge 2021 sample", challenge), ("PTB-XL sample", ptbxl),
                           ("LUDB", ludb)):
            labels, truth, sex = load(shared, Path(tmp), label)
            calls, qtc = predicted(labels.reindex(truth.index), sex)
            for rule in RULES:
                if truth[rule].isna().all():
                    continue
                measured = calls[rule].notna()
                y, p = truth.loc[measured, rule] == 1, calls.loc[measured, rule] == 1
                tp, fn = int((y & p).sum()), int((y & ~p).sum())
                tn, fp = int((~y & ~p).sum()), int((~y & p).sum())
                sens, spec = wilson(tp, tp + fn), wilson(tn, tn + fp)
                show = (lambda k, n, ci: f"{k}/{n} = {k / n:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
                        if n else "n/a")
                print(f"| {name} | {rule} | {tp + fn} | {tn + fp} | {show(tp, tp + fn, sens)} | "
                      f"{show(tn, tn + fp, spec)} | {int((~measured).sum())} |")
                for record in y.index[y != p]:
                    wrong.append({"dataset": name, "rule": rule, "record_id": record,
                                  "diagnosed": bool(y[record]), "hr_bpm": labels.at[record, "hr_bpm"],
                                  "pr_ms": labels.at[record, "pr_ms"],
                                  "qrs_ms": labels.at[record, "qrs_ms"],
                                  "qt_ms": labels.at[record, "qt_ms"], "qtc_ms": qtc[record]})
    if details:
        pd.DataFrame(wrong).to_csv(details, index=False)
        print(f"\n{len(wrong)} disagreements written to {details}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--details", type=Path, default=None)
    args = ap.parse_args()
    report(args.shared, args.details)


if __name__ == "__main__":
    main()
