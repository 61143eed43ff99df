"""DeepFake generation: fidelity to the package, per-record seeding, resume, shards, bad input."""

import hashlib
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgtransfer.cli import main
from ecgtransfer.data import pulse2pulse
from ecgtransfer.data import store as store_module
from ecgtransfer.data.deepfake import SynthConfig, synthesize
from ecgtransfer.data.pulse2pulse import (
    DeepFakeGenerator, UpsampleConv1d, load_generator, record_noise,
)
from ecgtransfer.data.leads import LEADS_8, LEADS_12, expand_to_12
from ecgtransfer.data.store import SignalStore, StoreError, StoreWriter, merge_stores
from conftest import disk_fills_after, one_line_disk_full


def _synth(out, n=24, seed=7, **kw):
    return synthesize(out, SynthConfig(n=n, seed=seed, **kw), progress=False).store


def _digest(store_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("signals.i16", "index.csv"):
        h.update((store_dir / name).read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """40 records of seed 7, made in one uninterrupted run with default settings."""
    return _synth(tmp_path_factory.mktemp("ref") / "s", n=40)


# ---- the network -------------------------------------------------------------------------
@pytest.mark.parametrize("factor,kernel,c_in,c_out", [(5, 25, 6, 4), (2, 25, 3, 5), (3, 7, 2, 2)])
def test_upsample_conv_is_exactly_upsample_pad_conv(factor, kernel, c_in, c_out):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(c_in, c_out, kernel).double()
    x = torch.randn(3, c_in, 41, dtype=torch.float64)
    pad = kernel // 2
    want = conv(torch.nn.functional.pad(torch.repeat_interleave(x, factor, dim=-1), (pad, pad)))
    got = UpsampleConv1d(conv, factor, pad)(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_fast_generator_matches_the_package_module():
    noise = torch.from_numpy(np.stack([record_noise(3, i) for i in range(8)]))
    with torch.inference_mode():
        exact = load_generator(fast=False).double()(noise.double()) * pulse2pulse.SCALE
        ours = (load_generator()(noise) * pulse2pulse.SCALE).int()
    ref = exact.trunc().int()
    diff = (ours - ref).abs()
    assert int(diff.max()) <= 1  # float32 rounding moves a value across an integer, at most by 1
    assert float((diff > 0).float().mean()) < 0.01
    assert float((ours.double() - exact).abs().max()) < 1.5


def test_values_are_those_deepfakeecg_generate_writes(tmp_path):
    """Same noise in, the package's own generate() and our fast path agree to 1 µV."""
    import deepfakeecg

    torch.manual_seed(11)
    with warnings.catch_warnings():  # its constructor uses a deprecated torch init
        warnings.simplefilter("ignore")
        deepfakeecg.generate(1, str(tmp_path), start_id=0, run_device="cpu")
    torch.manual_seed(11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deepfakeecg.Generator()  # generate() builds one (drawing random weights) before the noise
    noise = torch.Tensor(1, 8, 5000).uniform_(-1, 1)  # the draw generate() made
    package = np.loadtxt(tmp_path / "0.asc", dtype=np.int64).T  # (5000, 8) -> (8, 5000)
    with torch.inference_mode():
        ours = (load_generator()(noise) * pulse2pulse.SCALE).int()[0].numpy()
    assert package.shape == (8, 5000)
    assert np.abs(ours - package).max() <= 1
    assert (ours != package).mean() < 0.01


def test_loading_leaves_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_generator()
    assert torch.equal(torch.rand(3), expected)


# ---- seeding -------------------------------------------------------------------------------
def test_same_seed_same_bits_across_batch_sizes_and_threads(tmp_path, reference):
    a = _synth(tmp_path / "b1", n=40, batch_size=1, threads=1)
    b = _synth(tmp_path / "b16", n=40, batch_size=16, threads=2)
    assert _digest(a.path) == _digest(b.path) == _digest(reference.path)


def test_a_record_is_the_same_alone_as_in_a_run(reference):
    gen = DeepFakeGenerator("cpu", threads=1)
    picked = [37, 3, 22]
    alone = gen.generate(7, picked)
    for k, i in enumerate(picked):
        assert np.array_equal(alone[k], reference.raw(i))


def test_different_seeds_differ(tmp_path, reference):
    other = _synth(tmp_path / "s8", n=8, seed=8)
    for i in range(8):
        a, b = reference.raw(i).astype(float), other.raw(i).astype(float)
        assert np.abs(a - b).mean() > 50  # µV: different ECGs, not a rounding difference
    assert not np.array_equal(record_noise(7, 0), record_noise(7, 1))


def test_two_shards_merge_into_the_single_run(tmp_path, reference):
    shards = [_synth(tmp_path / f"shard{k}", n=40, shard_index=k, num_shards=2).path
              for k in range(2)]
    assert 0 < len(SignalStore(shards[0])) < 40
    merged = merge_stores(shards, tmp_path / "merged", progress=False)
    assert _digest(merged.path) == _digest(reference.path)
    assert "shard" not in merged.meta["identity"]
    assert merged.meta["identity"] == reference.meta["identity"]


def test_a_larger_n_appends_only_the_missing_records(tmp_path, reference):
    out = tmp_path / "s"
    _synth(out, n=13)
    report = synthesize(out, SynthConfig(n=40, seed=7), progress=False)
    assert (report.written, report.skipped) == (27, 13)
    assert _digest(out) == _digest(reference.path)
    again = synthesize(out, SynthConfig(n=40, seed=7), progress=False)
    assert again.written == 0 and len(again.store) == 40


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_store(tmp_path):
    """SIGKILL mid-run (after the first flush), then the same command again."""
    n = 400
    args = [sys.executable, "-m", "ecgtransfer", "synth", "--n", str(n), "--seed", "3", "-q"]
    out_killed, out_whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen([*args, "--out", str(out_killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    journal = out_killed / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.stat().st_size > 0:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = sum(1 for _ in journal.open()) if journal.exists() else 0
    assert 0 < interrupted < n, "the run was not caught mid-way"
    subprocess.run([*args, "--out", str(out_killed)], check=True, capture_output=True)
    subprocess.run([*args, "--out", str(out_whole)], check=True, capture_output=True)
    assert _digest(out_killed) == _digest(out_whole)


def test_a_full_disk_stops_with_one_line_and_the_same_command_continues(tmp_path, reference,
                                                                          monkeypatch):
    out, ref = tmp_path / "s", reference.path
    monkeypatch.setattr(store_module, "StoreWriter",  # flushes of 8 records
                        lambda *a, **kw: StoreWriter(*a, **kw, flush_every=8))
    record = (ref / "signals.i16").stat().st_size // 40
    # the 1st flush fits, the 2nd fails half-way through its samples
    disk_fills_after(monkeypatch, 12 * record + (ref / "journal.jsonl").stat().st_size)
    with pytest.raises(StoreError) as err:
        _synth(out, n=16)
    one_line_disk_full(err.value, "signals.i16")
    assert str(err.value).startswith(f"{out}: ")
    monkeypatch.undo()
    report = synthesize(out, SynthConfig(n=16, seed=7), progress=False)
    assert (report.skipped, report.written) == (8, 8)
    # the records of an uninterrupted run (the reference's first 16)
    assert (out / "signals.i16").read_bytes() == (ref / "signals.i16").read_bytes()[:16 * record]
    assert report.store.index.equals(reference.index.iloc[:16])


# ---- what the records are ------------------------------------------------------------------
def test_records_look_like_real_ecgs(reference, ptbxl_store):
    assert reference.fs == ptbxl_store.fs == 500
    assert reference.leads == ptbxl_store.leads == LEADS_8
    fake = np.stack([reference[i] for i in range(len(reference))])
    assert fake.dtype == np.float32 and fake.shape == (40, 8, 5000)
    idx = ptbxl_store.index
    norm = np.stack([ptbxl_store[i] for i in np.flatnonzero(idx["superclass"] == "NORM")[:40]])
    assert np.abs(fake).max() <= pulse2pulse.SCALE / 1000  # tanh * 6000 µV
    # Peak-to-peak per lead in mV: the same order as real NORM ECGs (µV, not mV or 1/1000 µV).
    ptp_fake = np.median(np.ptp(fake, axis=-1), axis=0)
    ptp_real = np.median(np.ptp(norm, axis=-1), axis=0)
    assert np.all(ptp_fake > ptp_real / 3) and np.all(ptp_fake < ptp_real * 3)
    assert 0.5 < np.median(ptp_fake[1]) < 4  # lead II, mV


def test_twelve_leads_derive_from_i_and_ii(tmp_path, reference):
    store = _synth(tmp_path / "l12", n=8, leads=12)
    assert store.leads == LEADS_12
    for i in range(8):
        x, ref = store.raw(i).astype(np.int64), reference.raw(i).astype(np.int64)
        assert np.array_equal(x[[0, 1, 6, 7, 8, 9, 10, 11]], ref)
        lead_i, lead_ii = ref[0], ref[1]
        assert np.array_equal(x[2], lead_ii - lead_i)
        assert np.abs(x[3] + (lead_i + lead_ii) / 2).max() <= 0.5
        assert np.abs(x[4] - (lead_i - lead_ii / 2)).max() <= 0.5
        assert np.abs(x[5] - (lead_ii - lead_i / 2)).max() <= 0.5


def test_expand_to_12_reproduces_recorded_limb_leads(ptbxl_root):
    """PTB-XL records all 12 leads; the derived limb leads match the recorded ones."""
    from ecgtransfer.data.wfdb_io import read_record

    rec = read_record(ptbxl_root / "records500" / "00000" / "00001_hr", leads=LEADS_12)
    eight = rec.signal[[0, 1, 6, 7, 8, 9, 10, 11]]
    derived = expand_to_12(eight)
    assert derived.shape == (12, 5000)
    assert np.abs(derived - rec.signal).max() < 0.01  # mV; PTB-XL stores 1 µV resolution


# ---- bad input -----------------------------------------------------------------------------
def test_a_store_of_another_seed_or_package_version_is_refused_untouched(tmp_path, monkeypatch):
    out = tmp_path / "s"
    _synth(out, n=8)
    before = _digest(out)
    with pytest.raises(StoreError, match="seed=7.*seed=9"):
        _synth(out, n=16, seed=9)
    monkeypatch.setattr(pulse2pulse, "package_version", lambda: "0.0.1")
    with pytest.raises(StoreError, match="package_version='1.1.2'.*package_version='0.0.1'"):
        _synth(out, n=16)
    assert _digest(out) == before and SignalStore(out).meta["complete"]


@pytest.mark.parametrize("kw,key", [({"n": 0}, "n"), ({"n": -3}, "n"), ({"n": 5, "seed": -1}, "seed"),
                                    ({"n": 5, "shard_index": 2, "num_shards": 2}, "shard_index"),
                                    ({"n": 5, "leads": 10}, "leads"), ({"n": 5, "batch_size": 0}, "batch_size")])
def test_bad_config_names_the_key(kw, key):
    with pytest.raises(ValueError, match=key if key != "leads" else "leads: 8 or 12"):
        SynthConfig(**kw)


def test_cli_errors_are_one_line(tmp_path, capsys):
    base = ["synth", "-q", "--n", "4", "--out"]
    assert main([*base, str(tmp_path / "s"), "--device", "tpu"]) == 2
    assert "device: expected cpu or cuda" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*base, str(tmp_path / "s"), "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no CUDA GPU" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*base, str(blocker / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write here" in err
    assert not (tmp_path / "s").exists()  # nothing made by the refused runs
    assert main(["synth", "--n", "0", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "n: must be positive" in err


def test_cli_synth_shards_and_merge(tmp_path, reference, capsys):
    for k in range(2):
        assert main(["synth", "-q", "--n", "40", "--seed", "7", "--shard-index", str(k),
                     "--num-shards", "2", "--out", str(tmp_path / f"p{k}")]) == 0
    assert "(shard 1/2)" in capsys.readouterr().out
    assert main(["data", "merge", "-q", str(tmp_path / "p0"), "--out", str(tmp_path / "m")]) == 2
    assert "shard 1/2 is missing" in capsys.readouterr().err
    assert main(["data", "merge", "-q", str(tmp_path / "p0"), str(tmp_path / "p1"),
                 "--out", str(tmp_path / "m")]) == 0
    assert _digest(tmp_path / "m") == _digest(reference.path)


def test_merge_refuses_stores_of_other_identities(tmp_path, reference):
    other = _synth(tmp_path / "seed8", n=8, seed=8)
    with pytest.raises(StoreError, match="identity.seed=8"):
        merge_stores([reference.path, other.path], tmp_path / "m", progress=False)
