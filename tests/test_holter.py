"""The labeller on ambulatory records: Holter and unnamed leads, windows, every beat, noise and
damaged input, on the shipped QT Database records (2 leads, 250 Hz, 15 min)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ecgtransfer.config import ConfigError
from ecgtransfer.data.leads import measured_lead_names, nearest_lead
from ecgtransfer.data.wfdb_io import RecordError, RecordReader, read_record
from ecgtransfer.features.intervals import LabellerConfig, ecg_intervals
from ecgtransfer.features.labels import (LabelError, label_records, read_beats, read_labels,
                                         read_windows)
from ecgtransfer.features.windows import BEAT_COLUMNS, WINDOW_COLUMNS, label_windows

QTDB = "qtdb-sample/data"
UNNAMED = "sel30"      # 'record 30, signal 0/1'
HOLTER = "sele0203"    # CM5 and CC5 (European ST-T)


@pytest.fixture(scope="module")
def qtdb(shared_data):
    return shared_data / QTDB


def _write(folder, name, signal, fs, names, units="mV", fmt="16"):
    """A WFDB record made of a real record's samples (changed as a test needs)."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=[units] * len(names), sig_name=list(names),
                p_signal=np.asarray(signal, dtype=np.float64).T, fmt=[fmt] * len(names),
                write_dir=str(folder))
    return folder / name


def test_holter_lead_names_map_to_the_nearest_standard_lead():
    assert [nearest_lead(n) for n in ("CM5", "CC5", "ML5", "mod.V1", "MCL1", "D3", "MLII",
                                      "avr", "V2-V3", "D4")] == \
        ["V5", "V5", "V5", "V1", "V1", "III", "II", "aVR", None, None]
    measured, shown = measured_lead_names(["CC5", "V4-V5"])
    assert measured == ["V5", "V4-V5"] and shown == ["CC5=V5", "V4-V5"]
    # a lead named as itself keeps its name; a Holter lead does not take a name already there
    assert measured_lead_names(["CM5", "V5"]) == (["CM5", "V5"], ["CM5", "V5"])
    assert measured_lead_names(["record 30, signal 0", "signal 1"])[0] == \
        ["unnamed:0", "unnamed:1"]


def test_unnamed_and_holter_leads_are_measured_and_named_in_the_label(qtdb):
    for name, leads in ((UNNAMED, "unnamed:0 unnamed:1"), (HOLTER, "CM5=V5 CC5")):
        reader = RecordReader(qtdb / name)
        x = reader.read(0, int(30 * reader.fs))
        row = ecg_intervals(x, reader.fs, reader.leads, record_id=name)
        assert row["leads"] == leads
        assert all(row[c] == "ok" for c in ("hr_status", "pr_status", "qrs_status", "qt_status"))
        assert 40 < row["hr_bpm"] < 150 and 60 < row["qrs_ms"] < 160 and 300 < row["qt_ms"] < 500
    # a lead is asked for by its own name or the standard one it stands for
    for ask in ("CM5", "V5", "cm5=v5"):
        row = ecg_intervals(x, reader.fs, reader.leads, config=LabellerConfig(leads=(ask,)))
        assert row["leads"] == "CM5=V5" and row["qrs_status"] == "ok"


def test_a_long_record_is_read_in_windows_never_whole(qtdb):
    reader = RecordReader(qtdb / UNNAMED)
    asked = []

    def read(start, stop):
        asked.append((start, stop))
        return reader.read(start, stop)

    cfg = LabellerConfig(window_s=10.0)
    rows = [w for w, _ in label_windows(read, reader.n_samples, reader.fs, reader.leads,
                                        UNNAMED, cfg)]
    width = int(10 * reader.fs)
    assert max(b - a for a, b in asked) <= width  # memory flat in the record's length
    assert len(rows) == pytest.approx(reader.n_samples / width, abs=1)
    assert [r["start_s"] for r in rows[:3]] == [0.0, 10.0, 20.0]
    assert sum(r["qt_status"] == "ok" for r in rows) >= 0.9 * len(rows)


def test_windowed_label_file_has_windows_beats_and_a_summary(qtdb, tmp_path):
    folder = tmp_path / "holter"
    folder.mkdir()
    for name in (UNNAMED, HOLTER):
        for ext in ("hea", "dat"):
            shutil.copy(qtdb / f"{name}.{ext}", folder)
    cfg = LabellerConfig(window_s=10.0)
    report = label_records(folder, out=tmp_path / "labels.csv", kind="wfdb", config=cfg)
    labels = read_labels(report.path).set_index("record_id")
    assert report.n_ok["qt_status"] == 2
    for name in (UNNAMED, HOLTER):
        windows = read_windows(report.path, name)
        beats = read_beats(report.path, name)
        assert list(windows.columns) == list(WINDOW_COLUMNS)
        assert list(beats.columns) == list(BEAT_COLUMNS)
        ok = windows[windows["qt_status"] == "ok"]
        # the record's row is the median of its windows, its beats their sum
        for col in ("hr_bpm", "qrs_ms", "qt_ms"):
            assert labels.loc[name, col] == pytest.approx(ok[col].median(), rel=1e-6)
        assert labels.loc[name, "n_beats"] == windows["n_beats"].sum()
        # every beat once, in time order, each with its wave boundaries in order
        assert np.all(np.diff(beats["time_s"]) > 0.2)
        assert len(beats) >= 0.9 * ok["n_beats"].sum()
        full = beats.dropna()
        assert len(full) >= 0.8 * len(beats)
        order = full[["p_on_s", "p_off_s", "qrs_on_s", "time_s", "qrs_off_s", "t_on_s",
                      "t_off_s"]].to_numpy()
        assert (np.diff(order, axis=1) >= 0).mean() > 0.99
        assert (full["rr_ms"].between(250, 2500)).mean() > 0.99
        assert full["qt_ms"].median() == pytest.approx(labels.loc[name, "qt_ms"], abs=20)
    # a second run reuses the rows, and the tables stay
    again = label_records(folder, out=tmp_path / "labels.csv", kind="wfdb", config=cfg)
    assert again.n_reused == 2 and again.n_computed == 0
    assert len(read_beats(report.path, UNNAMED)) > 500


def test_overlapping_windows_report_each_beat_once(qtdb):
    reader = RecordReader(qtdb / UNNAMED)
    n = int(60 * reader.fs)
    counts = {}
    for step in (10.0, 5.0):
        cfg = LabellerConfig(window_s=10.0, step_s=step)
        beats = np.concatenate([b for _, b in label_windows(reader.read, n, reader.fs,
                                                             reader.leads, UNNAMED, cfg)])
        assert np.all(np.diff(beats[:, 0]) > 0.2)  # no beat twice
        counts[step] = len(beats)
    assert counts[5.0] == pytest.approx(counts[10.0], abs=2)


def test_noise_windows_abstain_with_their_reason(qtdb, tmp_path):
    rec = read_record(qtdb / UNNAMED)
    fs = rec.fs
    x = rec.signal[:, : int(60 * fs)].astype(np.float64)
    rng = np.random.default_rng(3)
    x[:, int(20 * fs): int(40 * fs)] = rng.normal(0, 0.3, (2, int(20 * fs)))  # electrode noise
    path = _write(tmp_path, "noisy", x, fs, ["ML2", "V5"])
    reader = RecordReader(path)
    rows = list(label_windows(reader.read, reader.n_samples, fs, reader.leads, "noisy",
                              LabellerConfig(window_s=10.0)))
    status = [w["qt_status"] for w, _ in rows]
    assert status[2].startswith("noise") and status[3].startswith("noise")
    assert np.isnan(rows[2][0]["hr_bpm"]) and rows[2][0]["quality"] < 0.3
    assert len(rows[2][1]) == 0  # no beats from noise
    assert sum(s == "ok" for s in status) >= 3
    assert all(w["quality"] > 0.9 for w, _ in rows if w["qt_status"] == "ok")


def test_a_flat_stretch_and_a_nan_run_drop_the_lead_only_where_they_are(qtdb, tmp_path):
    rec = read_record(qtdb / HOLTER)
    fs = rec.fs
    x = rec.signal[:, : int(60 * fs)].astype(np.float64)
    x[1, int(10 * fs): int(30 * fs)] = 0.0      # CC5 flat for 20 s
    x[0, int(45 * fs): int(46 * fs)] = np.nan   # CM5 missing for a second
    folder = tmp_path / "records"
    _write(folder, "loose", x, fs, rec.leads)
    report = label_records(folder, out=tmp_path / "l.csv", kind="wfdb",
                           config=LabellerConfig(window_s=10.0))
    windows = read_windows(report.path, "loose")
    dropped = windows["dropped_leads"].fillna("")
    assert dropped[1].startswith("flat lead CC5") and dropped[2].startswith("flat lead CC5")
    assert "NaN sample(s) in lead CM5=V5" in dropped[4]
    assert (windows["qt_status"] == "ok").all()  # measured on the other lead
    row = read_labels(report.path).iloc[0]
    assert "flat lead CC5 in 2 of 6 windows" in row["dropped_leads"]


def test_damaged_records_give_one_line_each(qtdb, tmp_path):
    rec = read_record(qtdb / UNNAMED)
    x = rec.signal[:, : int(20 * rec.fs)]
    folder = tmp_path / "bad"
    _write(folder, "degrees", x, rec.fs, ["ECG1", "ECG2"], units="degC")
    _write(folder, "short", x, rec.fs, ["ECG1", "ECG2"])
    data = folder / "short.dat"
    data.write_bytes(data.read_bytes()[:-1000])  # truncated
    _write(folder, "lying", x, rec.fs, ["ECG1", "ECG2"])
    header = (folder / "lying.hea").read_text().splitlines()
    first = header[0].split()
    first[3] = str(int(first[3]) * 2)  # a header claiming twice the samples
    (folder / "lying.hea").write_text("\n".join([" ".join(first), *header[1:]]) + "\n")
    with pytest.raises(RecordError, match=r"degrees: lead ECG1: unit 'degC' is not a voltage"):
        RecordReader(folder / "degrees")
    report = label_records(folder, out=tmp_path / "l.csv", kind="wfdb",
                           config=LabellerConfig(window_s=10.0))
    labels = read_labels(report.path).set_index("record_id")
    assert "not a voltage" in labels.loc["degrees", "qt_status"]
    assert "truncated" in labels.loc["short", "qt_status"]
    assert "truncated" in labels.loc["lying", "qt_status"]
    for reason in labels["qt_status"]:
        assert "\n" not in reason and "Traceback" not in reason


def test_window_settings_are_checked_by_name(tmp_path):
    with pytest.raises(ConfigError, match="step_s"):
        LabellerConfig(step_s=5.0)
    with pytest.raises(ConfigError, match="window_s"):
        LabellerConfig(window_s=1.0)
    with pytest.raises(ConfigError, match="window_s"):
        LabellerConfig(window_s=-10.0)
    with pytest.raises(ConfigError, match="min_quality"):
        LabellerConfig(min_quality=0.0)
    assert LabellerConfig(window_s=10).config_hash() != LabellerConfig().config_hash()


def test_a_label_file_without_windows_says_so(ludb_root, tmp_path):
    folder = tmp_path / "ludb"
    folder.mkdir()
    for ext in ("hea", "dat"):
        shutil.copy(ludb_root / "data" / f"1.{ext}", folder)
    report = label_records(folder, out=tmp_path / "l.csv", kind="wfdb")
    with pytest.raises(LabelError, match="has no windows"):
        read_windows(report.path, "1")


def test_store_and_challenge_records_are_labelled_in_windows(ptbxl_store, cinc_root, tmp_path):
    cfg = LabellerConfig(window_s=5.0)
    report = label_records(ptbxl_store.path, out=tmp_path / "ptbxl.csv", config=cfg,
                           shard=(0, 50))
    labels = read_labels(report.path)
    assert len(labels) == len(ptbxl_store.record_ids[0::50])
    for rid in labels["record_id"]:
        windows = read_windows(report.path, rid)
        assert windows["start_s"].tolist() == [0.0, 5.0] and windows["end_s"].tolist() == [5.0, 10.0]
        assert len(read_beats(report.path, rid)) >= windows["n_beats"].sum() - 2
    assert (labels["qt_status"] == "ok").mean() >= 0.8
    # a Challenge record (12 leads, 500 Hz, .mat) in windows: the summary is its windows' median
    folder = tmp_path / "cinc"
    folder.mkdir()
    for ext in ("hea", "mat"):
        shutil.copy(cinc_root / f"E07509.{ext}", folder)
    report = label_records(folder, out=tmp_path / "cinc.csv", kind="wfdb", config=cfg)
    row = read_labels(report.path).iloc[0]
    windows = read_windows(report.path, "E07509")
    assert row["qrs_status"] == "ok" and len(windows) == 2
    assert row["qrs_ms"] == pytest.approx(windows["qrs_ms"].median())
    whole = read_record(folder / "E07509")
    single = ecg_intervals(whole.signal, whole.fs, whole.leads)
    assert row["qrs_ms"] == pytest.approx(single["qrs_ms"], abs=15)


def test_the_beat_table_follows_each_beats_qt(qtdb):
    """Beats whose ST-T segment is delayed by 24 ms (samples inserted after the QRS, as many
    taken out of the following T-P segment: RR unchanged) get a QT about 24 ms longer than their
    window's other beats."""
    from ecgtransfer.features.intervals import ecg_waves

    reader = RecordReader(qtdb / UNNAMED)
    fs = reader.fs
    x = reader.read(0, int(10 * fs))
    waves, _ = ecg_waves(x, fs, reader.leads)
    delay = int(round(0.024 * fs))
    y = x.copy()
    moved = []
    for k in range(1, len(waves) - 1, 2):  # every other beat
        q_off = int(waves["qrs_off"].iloc[k])
        next_p = int(waves["p_on"].iloc[k + 1]) - int(0.02 * fs)
        if next_p - q_off < 3 * delay:
            continue
        segment = x[:, q_off:next_p]
        y[:, q_off:next_p] = np.concatenate(
            [np.repeat(segment[:, :1], delay, axis=1), segment[:, :-delay]], axis=1)
        moved.append(waves["r"].iloc[k])
    assert len(moved) >= 4
    row = ecg_intervals(y, fs, reader.leads)
    beats = next(iter(label_windows(lambda a, b: y[:, a:b], y.shape[1], fs, reader.leads,
                                    UNNAMED, LabellerConfig(window_s=10.0))))[1]
    qt = beats[:, BEAT_COLUMNS.index("qt_ms") - 1]
    is_moved = np.isin(np.round(beats[:, 0] * fs), np.round(moved))
    assert is_moved.sum() >= 3 and (~is_moved).sum() >= 3
    assert np.nanmedian(qt[is_moved]) - np.nanmedian(qt[~is_moved]) == pytest.approx(24, abs=8)
    assert row["qt_status"] == "ok"


def test_label_command_in_windows_names_its_tables(qtdb, tmp_path, cli):
    folder = tmp_path / "holter"
    folder.mkdir()
    for ext in ("hea", "dat"):
        shutil.copy(qtdb / f"{HOLTER}.{ext}", folder)
    done = cli("label", "--input", str(folder), "--out", str(tmp_path / "h.csv"),
               "--window-s", "10", "--step-s", "5", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "h.windows/" in done.stdout and "10-s windows" in done.stdout
    windows = read_windows(tmp_path / "h.csv", HOLTER)
    assert np.allclose(np.diff(windows["start_s"]), 5.0)
    bad = cli("label", "--input", str(folder), "--out", str(tmp_path / "b.csv"), "--step-s", "5")
    assert bad.returncode != 0 and "step_s" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
