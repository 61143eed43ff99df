"""PTB-XL: diagnostic superclass labels, the standard and A/B splits, and ``prepare``.

Labels follow the PTB-XL benchmark (Strodthoff et al., 2021): every ``scp_codes`` key whose
statement has ``diagnostic == 1`` in ``scp_statements.csv`` contributes its
``diagnostic_class``, whatever its likelihood value. A record keeps the set of its
superclasses (multi-label) and is flagged ``single_label`` when the set has exactly one
member; a record with none is kept, flagged ``no_superclass``.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence


from ecgtransfer.data.ingest import PrepareReport, RecordJob, ingest
from ecgtransfer.data.leads import LEADS_8
from ecgtransfer.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SUPERCLASSES",
    "BENCHMARK_TASKS",
    "INDEX_VERSION",
    "statement_sets",
    "PTBXLError",
    "read_tables",
    "diagnostic_classes",
    "superclasses_of",
    "sample_ptbxl_root",
    "standard_split",
    "patient_half",
    "ptbxl_index",
    "prepare_ptbxl",
    "subset_ptbxl",
    "expected_files",
    "select_ptbxl_files",
    "RECORD_FOLDERS",
]

SUPERCLASSES: tuple[str, ...] = ("NORM", "MI", "STTC", "CD", "HYP")
_FS_COLUMN = {500: "filename_hr", 100: "filename_lr"}
RECORD_FOLDERS = {500: "records500/", 100: "records100/"}


class PTBXLError(UserError):
    """A PTB-XL folder that cannot be used; the message names the file."""


def read_tables(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``ptbxl_database.csv`` and ``scp_statements.csv``.

    Parameters
    ----------
    root : str or Path
        The PTB-XL folder.

    Returns
    -------
    database : pandas.DataFrame
        Indexed by ``ecg_id``, ``scp_codes`` as the original strings.
    statements : pandas.DataFrame
        Indexed by statement code.
    """
    import pandas as pd

    root = Path(root)
    tables = []
    for name, index_col in (("ptbxl_database.csv", "ecg_id"), ("scp_statements.csv", 0)):
        path = root / name
        if not path.exists():
            raise PTBXLError(f"{path}: missing (is --root a PTB-XL folder?)")
        try:
            tables.append(pd.read_csv(path, index_col=index_col))
        except (ValueError, pd.errors.ParserError) as exc:
            raise PTBXLError(f"{path}: unreadable ({str(exc).splitlines()[0]})") from None
    database, statements = tables
    needed = {"patient_id", "age", "sex", "scp_codes", "strat_fold", "filename_hr", "filename_lr"}
    missing = needed - set(database.columns)
    if missing:
        raise PTBXLError(f"{root / 'ptbxl_database.csv'}: missing column(s) {sorted(missing)}")
    if not {"diagnostic", "diagnostic_class"} <= set(statements.columns):
        raise PTBXLError(f"{root / 'scp_statements.csv'}: needs columns diagnostic, "
                         "diagnostic_class")
    return database, statements


def diagnostic_classes(statements: pd.DataFrame) -> dict[str, str]:
    """Map each diagnostic statement code (``diagnostic == 1``) to its superclass."""
    diagnostic = statements[statements["diagnostic"] == 1]["diagnostic_class"]
    return {str(code): str(cls) for code, cls in diagnostic.items()}


INDEX_VERSION = "2"
"""What a PTB-XL store's index holds; part of a pipeline's prepare fingerprint, so a store made
before a change is prepared again rather than reused (2: the benchmark's statement sets)."""

BENCHMARK_TASKS: tuple[str, ...] = ("all", "diagnostic", "subdiagnostic", "superdiagnostic",
                                     "form", "rhythm")
"""The PTB-XL benchmark's six statement sets (Strodthoff et al. 2021), each an index column
``scp_<task>`` of a prepared store."""


def statement_sets(codes: Mapping, statements: pd.DataFrame) -> dict[str, list[str]]:
    """The labels of one record in each benchmark task, as the benchmark aggregates them: every
    ``scp_codes`` key whatever its likelihood; ``diagnostic``: the keys with ``diagnostic == 1``;
    ``subdiagnostic`` / ``superdiagnostic``: their ``diagnostic_subclass`` / ``diagnostic_class``;
    ``form`` / ``rhythm``: the keys with ``form == 1`` / ``rhythm == 1``; ``all``: every key in
    ``scp_statements.csv``."""
    import pandas as pd

    def flagged(column: str) -> set:
        if column not in statements.columns:
            return set()
        return set(statements.index[pd.to_numeric(statements[column], errors="coerce") == 1])

    keys = [str(k) for k in codes]
    diagnostic = flagged("diagnostic")

    def of(column: str) -> list[str]:
        values = {str(statements.at[k, column]) for k in keys if k in diagnostic
                  and column in statements.columns and pd.notna(statements.at[k, column])}
        return sorted(values)

    return {"all": sorted(k for k in set(keys) if k in statements.index),
            "diagnostic": sorted(k for k in set(keys) if k in diagnostic),
            "subdiagnostic": of("diagnostic_subclass"), "superdiagnostic": of("diagnostic_class"),
            "form": sorted(k for k in set(keys) if k in flagged("form")),
            "rhythm": sorted(k for k in set(keys) if k in flagged("rhythm"))}


def sample_ptbxl_root() -> Path:
    """The PTB-XL sample shipped inside the package (ecg_id 1-350 at 100 Hz)."""
    from importlib import resources

    return Path(str(resources.files("ecgtransfer") / "sample_data" / "ptbxl"))


def superclasses_of(scp_codes: str | dict, classes: Mapping[str, str]) -> list[str]:
    """Diagnostic superclasses of one record, in the order of :data:`SUPERCLASSES`.

    Parameters
    ----------
    scp_codes : str or dict
        The ``scp_codes`` cell (a Python dict literal, parsed without ``eval``) or the dict.
    classes : mapping
        Statement code to superclass, from :func:`diagnostic_classes`.

    Returns
    -------
    list of str
    """
    codes = ast.literal_eval(scp_codes) if isinstance(scp_codes, str) else scp_codes
    if not isinstance(codes, dict):
        raise ValueError("scp_codes is not a dict")
    found = {classes[c] for c in codes if c in classes}
    return [s for s in SUPERCLASSES if s in found]


def standard_split(strat_fold: int) -> str:
    """PTB-XL's recommended split: folds 1-8 ``train``, 9 ``val``, 10 ``test``."""
    fold = int(strat_fold)
    if not 1 <= fold <= 10:
        raise ValueError(f"strat_fold must be 1..10, got {strat_fold!r}")
    return "train" if fold <= 8 else ("val" if fold == 9 else "test")


def patient_half(patient_id: int, seed: int) -> str:
    """Assign a patient to half ``"A"`` or ``"B"``, deterministically from a seed.

    The half depends only on ``(seed, patient_id)`` (SHA-256 of ``"{seed}:{patient_id}"``,
    first 8 bytes against 2**63), so a patient is in the same half in the full dataset, in any
    subset of it, and on every machine; no patient is ever in both halves.
    """
    digest = hashlib.sha256(f"{int(seed)}:{int(patient_id)}".encode()).digest()
    return "A" if int.from_bytes(digest[:8], "big") < 2**63 else "B"


def ptbxl_index(root: str | Path, halves_seed: int) -> pd.DataFrame:
    """One row per PTB-XL record with labels, splits and demographics.

    Parameters
    ----------
    root : str or Path
        The PTB-XL folder.
    halves_seed : int
        Seed of the A/B patient halves (see :func:`patient_half`).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``ecg_id``: ``patient_id, age, sex, strat_fold, split, half, superclasses``
        (``"|"``-joined), one 0/1 column per superclass, ``n_superclasses``,
        ``single_label``, ``superclass`` (the one class of single-label records, else empty),
        ``flag`` (``no_superclass`` or empty), ``scp_<task>`` for each of
        :data:`BENCHMARK_TASKS` (``"|"``-joined statements), ``filename_hr``, ``filename_lr``
        and ``problem`` (why the row cannot be used, or empty).
    """
    import pandas as pd

    database, statements = read_tables(root)
    classes_of = diagnostic_classes(statements)
    rows = []
    for ecg_id, rec in database.iterrows():
        problem = ""
        try:
            classes = superclasses_of(rec["scp_codes"], classes_of)
            sets = statement_sets(ast.literal_eval(rec["scp_codes"]), statements)
        except (ValueError, SyntaxError):
            classes, problem = [], "scp_codes is not a readable dict"
            sets = {task: [] for task in BENCHMARK_TASKS}
        try:
            split = standard_split(rec["strat_fold"])
        except (ValueError, TypeError):
            split, problem = "", problem or f"strat_fold {rec['strat_fold']!r} is not 1..10"
        if pd.isna(rec["patient_id"]):
            half, problem = "", problem or "no patient_id"
        else:
            half = patient_half(rec["patient_id"], halves_seed)
        row = {
            "ecg_id": int(ecg_id),
            "patient_id": rec["patient_id"],
            "age": rec["age"],
            "sex": rec["sex"],
            "strat_fold": rec["strat_fold"],
            "split": split,
            "half": half,
            "superclasses": "|".join(classes),
            **{c: int(c in classes) for c in SUPERCLASSES},
            "n_superclasses": len(classes),
            "single_label": len(classes) == 1,
            "superclass": classes[0] if len(classes) == 1 else "",
            "flag": "" if classes else "no_superclass",
            **{f"scp_{task}": "|".join(sets[task]) for task in BENCHMARK_TASKS},
            "filename_hr": rec["filename_hr"],
            "filename_lr": rec["filename_lr"],
            "problem": problem,
        }
        rows.append(row)
    index = pd.DataFrame(rows).set_index("ecg_id")
    index["patient_id"] = index["patient_id"].astype("Int64")
    index["strat_fold"] = pd.to_numeric(index["strat_fold"], errors="coerce").astype("Int64")
    return index


def prepare_ptbxl(
    root: str | Path,
    out: str | Path,
    *,
    fs: int = 500,
    leads: Sequence[str] = LEADS_8,
    halves_seed: int | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Copy PTB-XL into a signal store with labels and splits.

    Parameters
    ----------
    root : str or Path
        PTB-XL folder (``ptbxl_database.csv``, ``scp_statements.csv``, ``records500/``...).
    out : str or Path
        Store folder; an interrupted store of the same settings is continued.
    fs : {500, 100}
        Which recordings to read: ``filename_hr`` (500 Hz) or ``filename_lr`` (100 Hz).
    leads : sequence of str
        Leads to keep, in order (default I, II, V1-V6).
    halves_seed : int, optional
        Seed of the A/B patient halves; defaults to the one in the PTB-XL manifest.
    progress : bool
        Show a progress bar.

    Returns
    -------
    PrepareReport
    """
    from ecgtransfer.data.store import StoreWriter
    import pandas as pd
    from ecgtransfer.data.manifests import load_manifest

    if int(fs) not in _FS_COLUMN:
        raise ValueError(f"fs must be 500 or 100 for PTB-XL, got {fs!r}")
    manifest = load_manifest("ptbxl")
    seed = int(manifest.halves["seed"] if halves_seed is None else halves_seed)
    root = Path(root)
    index = ptbxl_index(root, seed)
    column = _FS_COLUMN[int(fs)]
    writer = StoreWriter(
        out, source="ptbxl", fs=fs, leads=leads,
        identity={"dataset": f"{manifest.name}-{manifest.version}", "halves_seed": seed},
        info={"root": str(root.resolve()), "attribution": manifest.attribution},
    )
    bad = index[index["problem"] != ""]
    for ecg_id, row in bad.iterrows():
        writer.reject(f"{int(ecg_id):05d}", row["problem"])
    good = index[index["problem"] == ""].drop(columns=["filename_hr", "filename_lr", "problem"])
    paths = index[column]

    def jobs():
        for ecg_id, row in good.iterrows():
            cols = {k: (None if pd.isna(v) else v) for k, v in row.items()}
            yield RecordJob(f"{int(ecg_id):05d}", root / paths[ecg_id], {"ecg_id": int(ecg_id), **cols})

    report = ingest(writer, jobs(), total=len(good), progress=progress, desc="prepare ptbxl")
    report.rejects[:0] = [(f"{int(i):05d}", r) for i, r in bad["problem"].items()]
    return report


def subset_ptbxl(root: str | Path, out: str | Path, ecg_ids: Sequence[int],
                 rates: Sequence[int] = (500,)) -> Path:
    """Copy some PTB-XL records into a new folder in PTB-XL's own layout.

    The new folder holds ``ptbxl_database.csv`` cut to ``ecg_ids`` (original columns),
    ``scp_statements.csv``, the records at the chosen rates, ``LICENSE.txt`` when the source
    has one, and a ``SHA256SUMS.txt`` for everything copied.

    Parameters
    ----------
    root : str or Path
        A PTB-XL folder.
    out : str or Path
        Destination folder (created; must not already hold a PTB-XL copy).
    ecg_ids : sequence of int
    rates : sequence of int
        500, 100 or both.

    Returns
    -------
    Path
        ``out``.
    """
    import pandas as pd
    import shutil

    from ecgtransfer.data.manifests import sha256_file

    root, out = Path(root), Path(out)
    if (out / "ptbxl_database.csv").exists():
        raise PTBXLError(f"{out}: already holds a PTB-XL copy")
    database = pd.read_csv(root / "ptbxl_database.csv")
    chosen = database[database["ecg_id"].isin([int(i) for i in ecg_ids])]
    out.mkdir(parents=True, exist_ok=True)
    copied = ["ptbxl_database.csv", "scp_statements.csv"]
    chosen.to_csv(out / "ptbxl_database.csv", index=False)
    shutil.copyfile(root / "scp_statements.csv", out / "scp_statements.csv")
    if (root / "LICENSE.txt").exists():
        shutil.copyfile(root / "LICENSE.txt", out / "LICENSE.txt")
        copied.append("LICENSE.txt")
    for fs in rates:
        for rel in chosen[_FS_COLUMN[int(fs)]]:
            for ext in (".hea", ".dat"):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / (rel + ext), out / (rel + ext))
                copied.append(rel + ext)
    lines = [f"{sha256_file(out / rel)}  {rel}" for rel in sorted(copied)]
    (out / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def expected_files(root: str | Path, rates: Sequence[int] = (500, 100)):
    """A filter for :func:`~ecgtransfer.data.manifests.verify_tree` over a PTB-XL folder.

    Keeps the tables and the record files of the chosen rates; when the folder has its own
    ``ptbxl_database.csv``, only the records it names (so a subset copy is checked for what
    it claims to hold, while a full download is checked in full, its table being covered by
    the publisher's checksum list).

    Returns
    -------
    callable
        ``keep(path) -> bool``.
    """
    import pandas as pd

    root = Path(root)
    chosen = {int(r) for r in rates}
    named: set[str] | None = None
    table = root / "ptbxl_database.csv"
    if table.exists():
        try:
            db = pd.read_csv(table, usecols=["filename_hr", "filename_lr"])
            named = set(db["filename_hr"]) | set(db["filename_lr"])
        except (ValueError, pd.errors.ParserError):
            named = None

    def keep(path: str) -> bool:
        folder = next((fs for fs, prefix in RECORD_FOLDERS.items() if path.startswith(prefix)),
                      None)
        if folder is None:
            return True
        if folder not in chosen:
            return False
        return named is None or path.rsplit(".", 1)[0] in named

    return keep


def select_ptbxl_files(paths: Iterable[str], rates: Iterable[int]) -> list[str]:
    """Keep PTB-XL's tables and the record folders of the chosen rates (500 and/or 100 Hz)."""
    chosen = {int(r) for r in rates}
    unwanted = tuple(prefix for fs, prefix in RECORD_FOLDERS.items() if fs not in chosen)
    return sorted(p for p in paths if not p.startswith(unwanted))
