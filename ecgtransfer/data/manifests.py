"""Dataset manifests: what a dataset is (files, checksums, split rules), and verifying a copy.

Manifests live in the repository's ``data_manifests/`` folder (installed with the package as
``ecgtransfer.data_manifests``). They hold relative paths only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from tqdm.auto import tqdm

from ecgtransfer.errors import UserError

__all__ = [
    "Manifest",
    "ManifestError",
    "VerifyReport",
    "load_manifest",
    "parse_sha256sums",
    "sha256_file",
    "verify_tree",
]

CHECKSUM_LIST = "SHA256SUMS.txt"


class ManifestError(UserError):
    """A manifest, or a checksum list, that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Manifest:
    """A dataset manifest.

    Attributes
    ----------
    name, version : str
        ``ptbxl``, ``1.0.3``.
    url : str
        Where the files are published (a folder URL ending in ``/``).
    attribution, license : str
        How the dataset must be credited, and under which licence.
    checksums : dict
        Relative path to SHA-256 (hex) for the files the manifest vouches for.
    splits, halves : dict
        The split rules, as written in the manifest.
    raw : dict
        The whole manifest.
    """

    name: str
    version: str
    url: str
    attribution: str
    license: str
    checksums: Mapping[str, str]
    splits: Mapping[str, Any] = field(default_factory=dict)
    halves: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


def _manifest_files():
    return resources.files("ecgtransfer.data_manifests")


def parse_sha256sums(text: str, source: str = "checksum list") -> dict[str, str]:
    """Parse ``sha256sum`` output (``<hex>  <path>`` per line) into ``{path: hex}``.

    Raises
    ------
    ManifestError
        On a line that is not a 64-digit hex digest followed by a relative path.
    """
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ManifestError(f"{source}, line {n}: not '<sha256>  <path>': {line[:80]!r}")
        path = parts[1].lstrip("*").strip()
        if path.startswith(("/", "\\")) or ".." in Path(path).parts:
            raise ManifestError(f"{source}, line {n}: path {path!r} is not inside the dataset")
        out[path] = digest
    return out


def load_manifest(name: str) -> Manifest:
    """Load a manifest from ``data_manifests/`` by dataset name (``"ptbxl"``).

    Parameters
    ----------
    name : str
        Dataset name, or ``name-version``.

    Returns
    -------
    Manifest
    """
    folder = _manifest_files()
    candidates = sorted(p.name for p in folder.iterdir()
                        if p.name.endswith(".yaml") and (p.name == f"{name}.yaml"
                                                        or p.name.startswith(f"{name}-")))
    if not candidates:
        raise ManifestError(f"no manifest named {name!r} in data_manifests/")
    chosen = candidates[-1]
    try:
        raw = yaml.safe_load(folder.joinpath(chosen).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ManifestError(f"data_manifests/{chosen}: not valid YAML ({exc})") from None
    for key in ("name", "version", "url", "attribution", "license", "checksums"):
        if key not in raw:
            raise ManifestError(f"data_manifests/{chosen}: missing key {key!r}")
    sums_name = raw["checksums"]["file"]
    checksums = parse_sha256sums(folder.joinpath(sums_name).read_text(encoding="utf-8"),
                                 f"data_manifests/{sums_name}")
    return Manifest(
        name=raw["name"], version=str(raw["version"]), url=raw["url"],
        attribution=" ".join(str(raw["attribution"]).split()), license=raw["license"],
        checksums=checksums, splits=raw.get("splits", {}),
        halves=raw.get("splits", {}).get("halves", {}), raw=raw,
    )


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def merged_checksums(manifest: Manifest, listed: Mapping[str, str], source: str) -> dict[str, str]:
    """The manifest's checksums plus a published list's, refusing a list that contradicts them.

    Parameters
    ----------
    manifest : Manifest
    listed : mapping
        A full checksum list (PhysioNet's ``SHA256SUMS.txt``).
    source : str
        Where ``listed`` came from, for the error message.

    Raises
    ------
    ManifestError
        When ``listed`` gives another digest for a file the manifest vouches for.
    """
    conflicts = sorted(p for p, d in listed.items() if manifest.checksums.get(p, d) != d)
    if conflicts:
        raise ManifestError(
            f"{source}: disagrees with the {manifest.name} {manifest.version} manifest for "
            f"{len(conflicts)} file(s), first {conflicts[0]}; it is not that dataset's list")
    return {**listed, **manifest.checksums}


@dataclass
class VerifyReport:
    """Result of :func:`verify_tree`.

    Attributes
    ----------
    checked : int
        Files whose checksum was known.
    missing : list of str
        Files absent from the folder.
    mismatched : list of str
        Files present whose SHA-256 differs.
    sources : list of str
        Which checksum lists were used.
    """

    checked: int
    missing: list[str]
    mismatched: list[str]
    sources: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched


def verify_tree(
    root: str | Path,
    manifest: Manifest,
    *,
    include: Callable[[str], bool] | None = None,
    progress: bool = True,
) -> VerifyReport:
    """Check a dataset folder against its manifest.

    Every file the manifest vouches for is checked. When the folder holds the publisher's
    ``SHA256SUMS.txt`` (a full download does), its lines are checked too, after confirming that
    they agree with the manifest for every file both name.

    Parameters
    ----------
    root : str or Path
        The dataset folder.
    manifest : Manifest
    include : callable, optional
        Keep only the paths for which this returns True (e.g. one PTB-XL sampling rate).
    progress : bool
        Show a progress bar.

    Returns
    -------
    VerifyReport
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    expected = dict(manifest.checksums)
    sources = [f"data_manifests ({len(expected)} files)"]
    listed_path = root / CHECKSUM_LIST
    if listed_path.exists():
        listed = parse_sha256sums(listed_path.read_text(encoding="utf-8"), str(listed_path))
        expected = merged_checksums(manifest, listed, str(listed_path))
        sources.append(f"{CHECKSUM_LIST} ({len(listed)} files)")
    if include is not None:
        expected = {p: d for p, d in expected.items() if include(p)}
    missing, mismatched = [], []
    for rel in tqdm(sorted(expected), desc="verify", unit="file", disable=not progress):
        path = root / rel
        if not path.is_file():
            missing.append(rel)
        elif sha256_file(path) != expected[rel]:
            mismatched.append(rel)
    return VerifyReport(checked=len(expected), missing=missing, mismatched=mismatched,
                        sources=sources)
