"""Full-size stand-ins for the datasets the study runs on, built the way users build their data,
into a folder the user names. ``benchmarks/bench_scale.py`` builds them at 1/10 and at full size
and runs every stage on them; ``tests/test_standins.py`` builds them small.

- :func:`deepfake_store`: a real DeepFake store, generated in 2 shards by ``ecgtransfer synth``
  (two processes, as two machines would) and joined by ``ecgtransfer data merge``. The shards are
  deleted after the merge: at 150,000 records each copy is 11.7 GB.
- :func:`ptbxl_folder`: a PTB-XL-shaped WFDB folder.
  - ``ptbxl_database.csv`` has the real columns. Its rows are the 350-record sample's real rows,
    drawn so that the diagnostic superclasses have PTB-XL's frequencies (:data:`PTBXL_CLASSES`).
  - Patient ids are new, about 1.16 records per patient as in PTB-XL, with ``strat_fold`` 1-10
    by patient. ``scp_statements.csv`` is the sample's.
  - The records are the sample's 12-lead 500 Hz and 100 Hz files, hard-linked under the new
    names. The headers are rewritten to name their own files, so every record is real signal
    but costs no disk.
- :func:`challenge_folder`: a Challenge-2021-shaped folder with the training set's mix of
  :data:`CHALLENGE_SOURCES`. Every source has its record count, name prefix, sampling rate and
  range of lengths.
  - Each record's ``#Dx`` codes are drawn per source from the counts in the Challenge's own
    ``dx_mapping_*.csv``.
  - Signals are the 50-record Challenge sample's real records, resampled and tiled to each
    source's rate and length, as a pool of distinct ``.mat`` files per source (in
    ``.<out>-pool`` beside ``out``, so the folder holds the records only). Each record
    hard-links one pool file.

Every random choice takes ``seed``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
PTBXL_SAMPLE = SHARED / "ptbxl-sample"
CINC_SAMPLE = SHARED / "cinc2021-sample"
CINC_SCORING = SHARED / "cinc2021-scoring"

FULL = {"deepfake": 150_000, "ptbxl": 21_837, "challenge": 88_253}
"""Records of each stand-in at full size."""

PTBXL_CLASSES = {"NORM": 9_514, "MI": 5_469, "STTC": 5_235, "CD": 4_898, "HYP": 2_649}
"""Records of the full PTB-XL with each diagnostic superclass (a record may have several; from
the PTB-XL paper and its ``scp_statements.csv`` aggregation), of 21,837."""
PTBXL_PATIENTS = 18_885

CHALLENGE_SOURCES = {
    # database: (records, name prefix, first number, fs, shortest s, longest s)
    "CPSC": (6_877, "A", 1, 500, 6, 60),
    "CPSC_Extra": (3_453, "Q", 1, 500, 8, 98),
    "StPetersburg": (74, "I", 1, 257, 1800, 1800),
    "PTB": (516, "S", 1, 1000, 32, 120),
    "PTB_XL": (21_837, "HR", 1, 500, 10, 10),
    "Georgia": (10_344, "E", 1, 500, 10, 10),
    "Chapman_Shaoxing": (10_247, "JS", 1, 500, 10, 10),
    "Ningbo": (34_905, "JS", 10_647, 500, 10, 10),
}
"""The Challenge 2021 training set by source: 88,253 records (the Challenge's paper, Table 1)."""
POOL = 24
"""Distinct signal files per source of the Challenge stand-in (records hard-link them)."""
LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _run(args: list[str], **kw) -> None:
    subprocess.run([sys.executable, "-m", "ecgtransfer", *args], check=True, **kw)


# ---- DeepFake ------------------------------------------------------------------------------
def deepfake_store(out: Path, n: int, seed: int = 0) -> Path:
    """``n`` DeepFake ECGs in 2 shards (two ``synth`` processes side by side, one thread each),
    merged into ``out``; the shards are removed after the merge."""
    out = Path(out)
    if (out / "store.json").exists() and json.loads((out / "store.json").read_text()).get(
            "complete"):
        return out
    shards = [out.parent / f"{out.name}.shard{k}" for k in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "ecgtransfer", "synth", "--out", str(s),
                               "--n", str(n), "--seed", str(seed), "--shard-index", str(k),
                               "--num-shards", "2", "--threads", "1", "-q"])
             for k, s in enumerate(shards)]
    if any(p.wait() for p in procs):
        raise RuntimeError("a synth shard failed")
    _run(["data", "merge", *map(str, shards), "--out", str(out), "-q"])
    for s in shards:
        shutil.rmtree(s)
    return out


# ---- PTB-XL --------------------------------------------------------------------------------
def _superclasses(db, statements) -> list[set[str]]:
    import ast

    diag = statements[statements["diagnostic"] == 1]["diagnostic_class"].to_dict()
    return [{diag[c] for c in ast.literal_eval(codes) if c in diag} for codes in db["scp_codes"]]


def _link_record(src: Path, dst: Path) -> None:
    """Record ``src`` (``.hea`` + ``.dat``) as ``dst``: the data hard-linked, the header
    rewritten to name ``dst``'s files."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".dat",):
        target = dst.with_suffix(suffix)
        if not target.exists():
            os.link(src.with_suffix(suffix), target)
    lines = src.with_suffix(".hea").read_text().splitlines()
    first = lines[0].split()
    first[0] = dst.name
    out = [" ".join(first)]
    for line in lines[1:]:
        parts = line.split()
        if parts and parts[0].startswith(src.name + "."):
            parts[0] = dst.name + parts[0][len(src.name):]
            line = " ".join(parts)
        out.append(line)
    dst.with_suffix(".hea").write_text("\n".join(out) + "\n")


def ptbxl_folder(out: Path, n: int, seed: int = 0) -> Path:
    """A PTB-XL-shaped folder of ``n`` records (see the module's notes)."""
    import pandas as pd

    out = Path(out)
    if (out / "ptbxl_database.csv").exists():
        return out
    rng = np.random.default_rng(seed)
    db = pd.read_csv(PTBXL_SAMPLE / "ptbxl_database.csv")
    statements = pd.read_csv(PTBXL_SAMPLE / "scp_statements.csv", index_col=0)
    classes = _superclasses(db, statements)
    # rows drawn so that each superclass has PTB-XL's share: a row's weight is the mean of its
    # classes' (wanted share / share in the sample); rows without one keep weight 1
    total = 21_837
    share = {c: sum(c in s for s in classes) / len(db) for c in PTBXL_CLASSES}
    wanted = {c: PTBXL_CLASSES[c] / total for c in PTBXL_CLASSES}
    weights = np.array([np.mean([wanted[c] / share[c] for c in s]) if s else 1.0
                        for s in classes])
    rows = rng.choice(len(db), size=n, p=weights / weights.sum())
    table = db.iloc[rows].reset_index(drop=True)
    table["ecg_id"] = np.arange(1, n + 1)
    n_patients = max(1, round(n * PTBXL_PATIENTS / total))
    # every patient has a record; the rest go to patients at random (PTB-XL: 1.16 per patient)
    patients = np.concatenate([np.arange(n_patients),
                               rng.integers(0, n_patients, size=n - n_patients)])
    rng.shuffle(patients)
    table["patient_id"] = patients.astype(float) + 1
    fold_of = rng.integers(1, 11, size=n_patients)
    table["strat_fold"] = fold_of[patients]
    for rate, column, suffix in ((500, "filename_hr", "hr"), (100, "filename_lr", "lr")):
        names = []
        for i, (ecg_id, src) in enumerate(zip(table["ecg_id"], db.iloc[rows][column])):
            rel = f"records{rate}/{(ecg_id // 1000) * 1000:05d}/{ecg_id:05d}_{suffix}"
            _link_record(PTBXL_SAMPLE / src, out / rel)
            names.append(rel)
        table[column] = names
    shutil.copy(PTBXL_SAMPLE / "scp_statements.csv", out / "scp_statements.csv")
    table.to_csv(out / "ptbxl_database.csv", index=False)
    return out


# ---- Challenge 2021 ----------------------------------------------------------------------------
def _dx_table() -> tuple[list[str], dict[str, np.ndarray]]:
    """Every code of the Challenge's two tables and, per source, the share of its records that
    have each code."""
    codes, counts = [], {s: [] for s in CHALLENGE_SOURCES}
    for name in ("dx_mapping_scored.csv", "dx_mapping_unscored.csv"):
        with open(CINC_SCORING / name, newline="") as f:
            for row in csv.DictReader(f):
                codes.append(row["SNOMEDCTCode"].strip())
                for s in CHALLENGE_SOURCES:
                    counts[s].append(float(row.get(s) or 0))
    shares = {s: np.array(c) / CHALLENGE_SOURCES[s][0] for s, c in counts.items()}
    return codes, shares


def _write_mat(path: Path, name: str, signal_uv: np.ndarray, fs: float, dx: str,
               age: int, sex: str) -> None:
    """A Challenge record: ``name.mat`` (MATLAB v4, variable ``val``, int16 microvolts, leads x
    samples) and ``name.hea`` naming it."""
    from scipy.io import savemat

    val = np.clip(np.rint(signal_uv), -32768, 32767).astype(np.int16)
    savemat(str(path / f"{name}.mat"), {"val": val}, format="4")
    lines = [f"{name} {val.shape[0]} {fs:g} {val.shape[1]}"]
    for lead, row in zip(LEADS_12, val):
        check = int(row.astype(np.int64).sum()) % 65536
        check = check - 65536 if check >= 32768 else check
        lines.append(f"{name}.mat 16x1+24 1000.0(0)/mV 16 0 {int(row[0])} {check} 0 {lead}")
    lines += [f"# Age: {age}", f"# Sex: {sex}", f"# Dx: {dx}", "# Rx: Unknown",
              "# Hx: Unknown", "# Sx: Unknown"]
    (path / f"{name}.hea").write_text("\n".join(lines) + "\n")


def _header(src: Path, name: str, dx: str, age: int, sex: str) -> str:
    lines = src.read_text().splitlines()
    first = lines[0].split()
    first[0] = name
    out = [" ".join(first)]
    for line in lines[1:]:
        if line.startswith("#"):
            continue
        parts = line.split()
        parts[0] = f"{name}.mat"
        out.append(" ".join(parts))
    return "\n".join(out + [f"# Age: {age}", f"# Sex: {sex}", f"# Dx: {dx}", "# Rx: Unknown",
                            "# Hx: Unknown", "# Sx: Unknown"]) + "\n"


def _pool(folder: Path, source: str, rng, real: list[np.ndarray]) -> list[Path]:
    """``POOL`` distinct records of ``source``'s rate and lengths, from the real ones."""
    from ecgtransfer.data.transforms import resample

    _, _, _, fs, shortest, longest = CHALLENGE_SOURCES[source]
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for k in range(POOL):
        seconds = float(rng.uniform(shortest, longest)) if longest > shortest else float(longest)
        x = resample(real[k % len(real)], 500.0, float(fs))
        n = int(round(seconds * fs))
        x = np.tile(x, (1, -(-n // x.shape[1])))[:, :n]
        _write_mat(folder, f"pool{k:02d}", x, fs, "426783006", 60, "Female")
        made.append(folder / f"pool{k:02d}")
    return made


def challenge_folder(out: Path, fraction: float = 1.0, seed: int = 0) -> Path:
    """A Challenge-2021-shaped folder with ``fraction`` of every source's records (see the
    module's notes), one sub-folder per source as the Challenge's download has."""
    import scipy.io

    out = Path(out)
    if (out / "DONE").exists():
        return out
    rng = np.random.default_rng(seed)
    codes, shares = _dx_table()
    real_files = sorted(CINC_SAMPLE.glob("*.hea"))
    real = [scipy.io.loadmat(str(h.with_suffix(".mat")))["val"].astype(np.float64)
            for h in real_files]
    for source, (count, prefix, first, fs, shortest, longest) in CHALLENGE_SOURCES.items():
        n = max(1, round(count * fraction))
        folder = out / source.lower()
        pool = None
        if (fs, shortest, longest) != (500, 10, 10):
            pool = _pool(out.parent / f".{out.name}-pool" / source, source, rng, real)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{prefix}{first + i:05d}"
            dx = ",".join(c for c, hit in zip(codes, rng.random(len(codes)) < shares[source])
                          if hit) or "426783006"
            age, sex = int(rng.integers(18, 90)), ("Male", "Female")[int(rng.integers(0, 2))]
            src = pool[i % len(pool)] if pool else real_files[i % len(real_files)].with_suffix("")
            os.link(src.with_suffix(".mat"), folder / f"{name}.mat")
            (folder / f"{name}.hea").write_text(_header(src.with_suffix(".hea"), name, dx, age,
                                                        sex))
    (out / "DONE").write_text("complete\n")
    return out
