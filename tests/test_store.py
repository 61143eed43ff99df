"""The signal store: exact round trips, crash recovery, refusals that name the reason."""

import errno
import json
import pickle

import numpy as np
import pytest

from ecgtransfer.data import store as store_module
from ecgtransfer.data.leads import LEADS_8
from ecgtransfer.data.store import SignalStore, StoreError, StoreWriter
from ecgtransfer.data.transforms import to_microvolts
from ecgtransfer.data.wfdb_io import read_record

from conftest import disk_fills_after, one_line_disk_full


@pytest.fixture(scope="module")
def ludb_signals(ludb_root):
    return [read_record(ludb_root / "data" / str(i), leads=LEADS_8).signal for i in range(1, 9)]


def _write(path, signals, flush_every=3, finalize=True, **kw):
    w = StoreWriter(path, source="wfdb", fs=500, leads=LEADS_8, flush_every=flush_every, **kw)
    for i, x in enumerate(signals):
        w.add(f"r{i}", x, k=i)
    if finalize:
        return w.finalize()
    w.flush()
    return w


def test_round_trip_is_exact_to_the_microvolt(tmp_path, ludb_signals):
    store = _write(tmp_path / "s", ludb_signals)
    assert len(store) == len(ludb_signals)
    for i, x in enumerate(ludb_signals):
        got = store[i]
        assert got.dtype == np.float32 and got.shape == (8, 5000)
        np.testing.assert_allclose(got, np.round(x.astype(np.float64), 3), atol=1e-6)
        np.testing.assert_array_equal(store.get(f"r{i}"), got)
    assert store.index["k"].tolist() == list(range(len(ludb_signals)))
    assert store.index["leads"].iloc[0] == ",".join(LEADS_8)


def test_store_pickles_for_dataloader_workers(tmp_path, ludb_signals):
    store = _write(tmp_path / "s", ludb_signals[:2])
    _ = store[0]  # opens the memory map
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone[1], store[1])


def test_a_run_killed_mid_write_recovers_to_the_uninterrupted_store(tmp_path, ludb_signals):
    ref = _write(tmp_path / "ref", ludb_signals)
    path = tmp_path / "killed"
    _write(path, ludb_signals[:5], finalize=False)
    # the kill: half a record's samples and half a journal line reach the disk
    with open(path / "signals.i16", "ab") as f:
        f.write(b"\x01\x02" * 7000)
    with open(path / "journal.jsonl", "a") as f:
        f.write('{"record_id": "r5", "off')
    with pytest.raises(StoreError, match="incomplete"):
        SignalStore(path)
    w = StoreWriter(path, source="wfdb", fs=500, leads=LEADS_8)
    assert w.done == {f"r{i}" for i in range(5)}
    for i, x in enumerate(ludb_signals):
        if f"r{i}" not in w.done:
            w.add(f"r{i}", x, k=i)
    store = w.finalize()
    assert (path / "signals.i16").read_bytes() == (tmp_path / "ref" / "signals.i16").read_bytes()
    assert store.index.equals(ref.index)


def test_store_of_other_settings_is_refused_naming_the_key(tmp_path, ludb_signals):
    _write(tmp_path / "s", ludb_signals[:1], identity={"seed": 1})
    with pytest.raises(StoreError, match="fs=500.0.*fs=250.0"):
        StoreWriter(tmp_path / "s", source="wfdb", fs=250, leads=LEADS_8, identity={"seed": 1})
    with pytest.raises(StoreError, match="identity.seed=1"):
        StoreWriter(tmp_path / "s", source="wfdb", fs=500, leads=LEADS_8, identity={"seed": 2})
    assert len(SignalStore(tmp_path / "s")) == 1  # still readable, nothing lost


def test_bad_output_folders_are_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        StoreWriter(tmp_path / "notes", source="wfdb", fs=500, leads=LEADS_8)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="cannot write here"):
        StoreWriter(tmp_path / "afile" / "store", source="wfdb", fs=500, leads=LEADS_8)
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["keep.txt"]
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_bad_signals_are_refused_before_anything_is_written(tmp_path, ludb_signals):
    w = StoreWriter(tmp_path / "s", source="wfdb", fs=500, leads=LEADS_8)
    with pytest.raises(ValueError, match=r"shape \(12, 5000\)"):
        w.add("a", np.vstack([ludb_signals[0], ludb_signals[0][:4]]))
    w.add("b", ludb_signals[0])
    with pytest.raises(ValueError, match="already in the store"):
        w.add("b", ludb_signals[1])
    store = w.finalize()
    assert store.record_ids == ["b"]


def test_complete_flag_is_written_last(tmp_path, ludb_signals):
    path = tmp_path / "s"
    w = _write(path, ludb_signals[:2], finalize=False)
    assert json.loads((path / "store.json").read_text())["complete"] is False
    assert not (path / "index.csv").exists()
    w.finalize()
    meta = json.loads((path / "store.json").read_text())
    assert meta["complete"] is True and meta["n_records"] == 2


def test_one_writer_at_a_time(tmp_path, ludb_signals):
    first = StoreWriter(tmp_path / "s", source="wfdb", fs=500, leads=LEADS_8)
    first.add("a", ludb_signals[0])
    with pytest.raises(StoreError, match="another process is writing"):
        StoreWriter(tmp_path / "s", source="wfdb", fs=500, leads=LEADS_8)
    first.finalize()
    second = StoreWriter(tmp_path / "s", source="wfdb", fs=500, leads=LEADS_8)
    assert second.done == {"a"}


def test_done_is_a_live_read_only_view_not_a_copy_per_call(tmp_path, ludb_signals):
    w = StoreWriter(tmp_path / "s", source="wfdb", fs=500, leads=LEADS_8, flush_every=2)
    done = w.done
    assert w.done is done  # no copy per look-up: ingest and merge ask once per record
    for i, x in enumerate(ludb_signals[:3]):
        w.add(f"r{i}", x)
    assert done == {"r0", "r1", "r2"} and "r2" in done and len(done) == 3
    assert not hasattr(done, "add") and not hasattr(done, "discard")
    w.finalize()


def test_long_records_are_written_once_their_bytes_reach_the_limit(tmp_path, ludb_signals):
    """A source of 30-minute records must not hold ``flush_every`` of them in memory (74 of
    them took 1.1 GB): the buffer is written once its samples reach ``flush_bytes``."""
    one = ludb_signals[0].size * 2  # int16 bytes of one LUDB record (8 leads, 10 s)
    w = StoreWriter(tmp_path / "s", source="wfdb", fs=500, leads=LEADS_8, flush_every=100,
                    flush_bytes=int(2.5 * one))
    journal = tmp_path / "s" / "journal.jsonl"
    for i, x in enumerate(ludb_signals[:5]):
        w.add(f"r{i}", x)
        written = journal.read_text().count("\n") if journal.exists() else 0
        assert written == (3 if i >= 2 else 0), i  # the 3rd record passes 2.5 records' bytes
    store = w.finalize()
    assert store.record_ids == [f"r{i}" for i in range(5)]
    assert np.array_equal(store.raw(4), to_microvolts(ludb_signals[4]))


@pytest.mark.parametrize("text, problem", [
    ('{"format": 1, "source": "wfdb", "fs": 5', "unreadable"),   # truncated
    ("fs = 500\n", "unreadable"),                                # not JSON
    ("[1, 2]", "holds a JSON list"),
    ('{"format": 1, "source": "wfdb", "leads": ["I"], "complete": true, "identity": {}}',
     "no 'fs' key"),
    ('{"format": 1, "source": "wfdb", "fs": 500, "leads": "I,II", "complete": true, '
     '"identity": {}}', "leads='I,II' is not a valid value"),
])
def test_a_damaged_store_json_is_one_line_naming_it(tmp_path, ludb_signals, text, problem):
    _write(tmp_path / "s", ludb_signals[:2])
    meta = tmp_path / "s" / "store.json"
    meta.write_text(text)
    signals = (tmp_path / "s" / "signals.i16").read_bytes()
    for open_it in (lambda: SignalStore(tmp_path / "s"),
                    lambda: StoreWriter(tmp_path / "s", source="wfdb", fs=500, leads=LEADS_8)):
        with pytest.raises(StoreError) as err:
            open_it()
        assert str(err.value).startswith(f"{meta}: ") and problem in str(err.value)
        assert "\n" not in str(err.value)
    assert (tmp_path / "s" / "signals.i16").read_bytes() == signals  # nothing cut or rewritten


@pytest.mark.parametrize("key, value, leads", [
    ("fs", 250.0, LEADS_8),
    ("leads", list(LEADS_8[:4]), LEADS_8[:4]),                       # fewer: would cut the data
    ("leads", [*LEADS_8, "III", "aVR", "aVL", "aVF"], [*LEADS_8, "III", "aVR", "aVL", "aVF"]),
])
def test_an_edited_rate_or_lead_list_in_store_json_is_refused_naming_the_key(
        tmp_path, ludb_signals, key, value, leads):
    _write(tmp_path / "s", ludb_signals[:3])
    path = tmp_path / "s"
    meta = json.loads((path / "store.json").read_text())
    was = meta[key]
    meta[key] = value
    (path / "store.json").write_text(json.dumps(meta))
    before = {name: (path / name).read_bytes() for name in ("signals.i16", "journal.jsonl")}
    fs = value if key == "fs" else 500
    for open_it in (lambda: SignalStore(path),  # a run asking for the edited settings
                    lambda: StoreWriter(path, source="wfdb", fs=fs, leads=leads)):
        with pytest.raises(StoreError) as err:
            open_it()
        message = str(err.value)
        assert message.startswith(f"{path / 'store.json'}: {key}=") and "\n" not in message
        assert f"restore {key}={was!r}" in message
    assert before == {name: (path / name).read_bytes() for name in before}


def test_a_full_disk_stops_with_one_line_and_the_same_run_continues(tmp_path, ludb_signals,
                                                                      monkeypatch):
    ref = _write(tmp_path / "ref", ludb_signals)
    path = tmp_path / "s"
    record = ludb_signals[0].size * 2
    disk_fills_after(monkeypatch, 4.5 * record)  # the 2nd flush (records 3-5) fails part-way
    w = StoreWriter(path, source="wfdb", fs=500, leads=LEADS_8, flush_every=3)
    with pytest.raises(StoreError) as err, w:
        for i, x in enumerate(ludb_signals):
            w.add(f"r{i}", x, k=i)
    one_line_disk_full(err.value, "signals.i16")
    assert str(err.value).startswith(f"{path}: ")
    monkeypatch.undo()

    w = StoreWriter(path, source="wfdb", fs=500, leads=LEADS_8)
    assert w.done == {"r0", "r1", "r2"}  # what was written before the disk filled
    for i, x in enumerate(ludb_signals):
        if f"r{i}" not in w.done:
            w.add(f"r{i}", x, k=i)

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:  # the disk fills again, while writing the index
        m.setattr(store_module, "atomic_file", no_room)
        with pytest.raises(StoreError) as err:
            w.finalize()
    one_line_disk_full(err.value, "index.csv")
    with pytest.raises(StoreError, match="incomplete"):
        SignalStore(path)
    store = w.finalize()
    assert (path / "signals.i16").read_bytes() == (tmp_path / "ref" / "signals.i16").read_bytes()
    assert store.index.equals(ref.index)
