"""Downloading a dataset from its publisher, resumably, verified against its manifest.

The publisher's ``SHA256SUMS.txt`` is fetched first and must agree with the manifest for every
file the manifest vouches for; each file is then downloaded to ``<name>.part`` (continued with an
HTTP Range request after an interruption), checked against its SHA-256, and only then moved to
its final name. A file already present with the right checksum is not downloaded again.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from tqdm.auto import tqdm

from ecgtransfer.data.manifests import (
    CHECKSUM_LIST,
    Manifest,
    ManifestError,
    merged_checksums,
    parse_sha256sums,
    sha256_file,
)
from ecgtransfer.data.ptbxl import select_ptbxl_files

__all__ = ["FetchReport", "fetch_dataset"]

_CHUNK = 1 << 16


@dataclass
class FetchReport:
    """Result of :func:`fetch_dataset`.

    Attributes
    ----------
    downloaded : list of str
        Files fetched (in whole or continued) by this run.
    reused : list of str
        Files already present with the right checksum.
    failed : list of (str, str)
        ``(path, reason)`` for files that could not be fetched or failed their checksum.
    """

    downloaded: list[str]
    reused: list[str]
    failed: list[tuple[str, str]]

    @property
    def ok(self) -> bool:
        return not self.failed


def _url(base: str, rel: str) -> str:
    return urllib.parse.urljoin(base if base.endswith("/") else base + "/",
                                urllib.parse.quote(rel))


def _get_text(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode("utf-8")


def _download(url: str, dest: Path, digest: str, timeout: float, retries: int) -> str:
    """Fetch one file to ``dest`` via ``dest.part``; return ``"downloaded"`` or raise."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for attempt in range(retries + 1):
        start = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                mode = "ab" if start and resp.status == 206 else "wb"
                with open(part, mode) as f:
                    while block := resp.read(_CHUNK):
                        f.write(block)
        except urllib.error.HTTPError as exc:
            if exc.code != 416:  # 416: the .part already holds the whole file
                if exc.code == 404:
                    raise FileNotFoundError("not on the server (HTTP 404)") from None
                last_error = f"HTTP {exc.code}"
                time.sleep(min(2 ** attempt, 10) * 0.1)
                continue
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(getattr(exc, "reason", exc))
            time.sleep(min(2 ** attempt, 10) * 0.1)
            continue
        if sha256_file(part) == digest:
            os.replace(part, dest)
            return "downloaded"
        part.unlink(missing_ok=True)  # a bad .part cannot be continued; start over
        last_error = "checksum mismatch"
    raise OSError(last_error or "failed")


def fetch_dataset(
    root: str | Path,
    manifest: Manifest,
    *,
    base_url: str | None = None,
    rates: Iterable[int] = (500, 100),
    jobs: int = 8,
    timeout: float = 60.0,
    retries: int = 3,
    progress: bool = True,
) -> FetchReport:
    """Download a dataset into ``root``, verified file by file.

    Parameters
    ----------
    root : str or Path
        Destination folder (created if absent).
    manifest : Manifest
    base_url : str, optional
        Folder URL to download from; defaults to the manifest's (PhysioNet).
    rates : iterable of int
        PTB-XL record rates to fetch: 500, 100 or both. Tables are always fetched.
    jobs : int
        Parallel downloads.
    timeout : float
        Seconds before a stalled connection is retried.
    retries : int
        Further attempts per file; each continues from what is already on disk.
    progress : bool
        Show a progress bar.

    Returns
    -------
    FetchReport

    Raises
    ------
    ManifestError
        If the publisher's checksum list cannot be read or contradicts the manifest.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = base_url or manifest.url
    list_url = _url(base, CHECKSUM_LIST)
    try:
        text = _get_text(list_url, timeout)
    except (urllib.error.URLError, OSError) as exc:
        raise ManifestError(f"{list_url}: cannot fetch the checksum list "
                            f"({getattr(exc, 'reason', exc)})") from None
    listed = parse_sha256sums(text, list_url)
    absent = sorted(set(manifest.checksums) - set(listed))
    if absent:
        raise ManifestError(f"{list_url}: lacks {len(absent)} file(s) the manifest lists, first "
                            f"{absent[0]}; not {manifest.name} {manifest.version}")
    expected: Mapping[str, str] = merged_checksums(manifest, listed, list_url)
    wanted = select_ptbxl_files(expected, rates)

    downloaded, reused, failed = [], [], []

    def one(rel: str) -> tuple[str, str, str]:
        dest = root / rel
        if dest.is_file() and sha256_file(dest) == expected[rel]:
            return rel, "reused", ""
        try:
            return rel, _download(_url(base, rel), dest, expected[rel], timeout, retries), ""
        except OSError as exc:  # FileNotFoundError (404) included
            return rel, "failed", str(exc)

    with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        for rel, status, reason in tqdm(pool.map(one, wanted), total=len(wanted), desc="fetch",
                                        unit="file", disable=not progress):
            if status == "reused":
                reused.append(rel)
            elif status == "downloaded":
                downloaded.append(rel)
            else:
                failed.append((rel, reason))
    (root / CHECKSUM_LIST).write_text(text, encoding="utf-8")
    return FetchReport(downloaded=downloaded, reused=reused, failed=failed)
