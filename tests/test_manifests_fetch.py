"""Manifests, ``verify`` and ``fetch`` against a local HTTP server on 127.0.0.1."""

import http.server
import shutil
import threading
from functools import partial

import pytest

from ecgtransfer.data.fetch import fetch_dataset
from ecgtransfer.data.manifests import (
    ManifestError,
    load_manifest,
    parse_sha256sums,
    sha256_file,
    verify_tree,
)
from ecgtransfer.data.ptbxl import expected_files

FILES = ["scp_statements.csv"] + [
    f"records{fs}/00000/{i:05d}_{tag}.{ext}"
    for i in (1, 2, 3) for fs, tag in ((500, "hr"), (100, "lr")) for ext in ("hea", "dat")
]


@pytest.fixture(scope="module")
def manifest():
    return load_manifest("ptbxl")


def test_manifest_holds_the_published_checksums(manifest, ptbxl_root):
    published = parse_sha256sums((ptbxl_root / "SHA256SUMS.published.txt").read_text())
    assert dict(manifest.checksums) == published
    assert manifest.version == "1.0.3" and "CC BY 4.0" in manifest.license
    assert manifest.splits["standard"]["test"] == [10]


def test_verify_passes_on_the_real_sample_and_names_bad_files(manifest, ptbxl_root, tmp_path):
    report = verify_tree(ptbxl_root, manifest, progress=False)
    assert report.ok and report.checked == len(manifest.checksums)

    copy = tmp_path / "ptbxl"
    for rel in FILES:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ptbxl_root / rel, copy / rel)
    dat = copy / "records500/00000/00002_hr.dat"
    dat.write_bytes(dat.read_bytes()[:-2] + b"\x00\x00")
    (copy / "records100/00000/00003_lr.hea").unlink()
    report = verify_tree(copy, manifest, progress=False)
    assert report.mismatched == ["records500/00000/00002_hr.dat"]
    assert "records100/00000/00003_lr.hea" in report.missing


def test_a_checksum_list_that_contradicts_the_manifest_is_refused(manifest, ptbxl_root, tmp_path):
    rel = "records500/00000/00001_hr.dat"
    (tmp_path / "SHA256SUMS.txt").write_text(f"{'0' * 64}  {rel}\n")
    with pytest.raises(ManifestError, match=f"disagrees.*{rel}"):
        verify_tree(tmp_path, manifest, progress=False)
    with pytest.raises(ManifestError, match="line 2"):
        parse_sha256sums(f"{'a' * 64}  x.csv\nnot a checksum line\n")
    with pytest.raises(ManifestError, match="not inside"):
        parse_sha256sums(f"{'a' * 64}  ../etc/passwd\n")


def test_subset_copies_are_checked_for_what_their_table_names(manifest, ptbxl_root):
    keep = expected_files(ptbxl_root, [500])
    assert keep("scp_statements.csv")
    assert keep("records500/00000/00001_hr.dat")
    assert not keep("records100/00000/00001_lr.dat")
    assert not keep("records500/00000/00999_hr.dat")  # not in this copy's ptbxl_database.csv


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=N-`` support, logging each request."""

    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).requests.append((self.path, rng))
        path = self.translate_path(self.path)
        try:
            data = open(path, "rb").read()
        except OSError:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(data) and rng:
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path, ptbxl_root):
    """A PhysioNet-like folder served on 127.0.0.1; yields (base_url, folder, request log)."""
    served = tmp_path / "served"
    published = parse_sha256sums((ptbxl_root / "SHA256SUMS.published.txt").read_text())
    lines = []
    for rel in FILES:
        (served / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ptbxl_root / rel, served / rel)
        lines.append(f"{published[rel]}  {rel}")
    # the publisher lists every file of the dataset; these are the ones served here
    (served / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")
    handler = type("H", (_RangeHandler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", served, handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def small_manifest(manifest):
    """The real manifest restricted to the served files (the server holds only those)."""
    from dataclasses import replace

    return replace(manifest, checksums={k: v for k, v in manifest.checksums.items() if k in FILES})


@pytest.mark.network
def test_fetch_downloads_verified_files_and_resumes(server, small_manifest, tmp_path):
    base, served, requests = server
    dest = tmp_path / "ptbxl"
    # an earlier, interrupted download left half of one file
    partial_rel = "records500/00000/00002_hr.dat"
    part = dest / (partial_rel + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes((served / partial_rel).read_bytes()[:50000])

    report = fetch_dataset(dest, small_manifest, base_url=base, jobs=3, progress=False)
    assert report.ok and sorted(report.downloaded) == sorted(FILES)
    assert (f"/{partial_rel}", "bytes=50000-") in requests
    assert not part.exists()
    for rel in FILES:
        assert sha256_file(dest / rel) == small_manifest.checksums[rel]
    assert verify_tree(dest, small_manifest, progress=False).ok

    requests.clear()
    again = fetch_dataset(dest, small_manifest, base_url=base, progress=False)
    assert sorted(again.reused) == sorted(FILES) and not again.downloaded
    assert [p for p, _ in requests] == ["/SHA256SUMS.txt"]


@pytest.mark.network
def test_fetch_never_keeps_a_file_that_fails_its_checksum(server, small_manifest, tmp_path):
    base, served, _ = server
    bad = "records500/00000/00003_hr.dat"
    data = bytearray((served / bad).read_bytes())
    data[100] ^= 0xFF
    (served / bad).write_bytes(bytes(data))
    report = fetch_dataset(tmp_path / "d", small_manifest, base_url=base, retries=1,
                           progress=False, rates=[500])
    assert report.failed == [(bad, "checksum mismatch")]
    assert not (tmp_path / "d" / bad).exists()
    assert not (tmp_path / "d" / (bad + ".part")).exists()
    assert not any(r.startswith("records100/") for r in report.downloaded)
    assert len(report.downloaded) == 1 + 2 * 3 - 1


@pytest.mark.network
def test_fetch_refuses_a_server_list_that_contradicts_the_manifest(server, small_manifest, tmp_path):
    base, served, _ = server
    text = (served / "SHA256SUMS.txt").read_text()
    (served / "SHA256SUMS.txt").write_text(text.replace(text[:64], "f" * 64, 1))
    with pytest.raises(ManifestError, match="disagrees"):
        fetch_dataset(tmp_path / "d", small_manifest, base_url=base, progress=False)
    assert not (tmp_path / "d" / "scp_statements.csv").exists()
