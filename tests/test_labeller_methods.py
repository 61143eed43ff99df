"""The labeller's methods (``ecg_intervals(method=...)``, ``LabellerConfig.method``): NeuroKit2's
delineation on the agreed R peaks against LUDB's cardiologists, the default left as it was, config
hashes, refusal of unknown methods, other rates and lead sets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from ecgtransfer.data.leads import LEADS_8, LEADS_12
from ecgtransfer.data.transforms import resample
from ecgtransfer.data.wfdb_io import read_record
from ecgtransfer.features import INTERVALS, LabellerConfig, ecg_intervals, ludb_reference
from ecgtransfer.features.intervals import LABELLER_VERSION, METHODS, STATUS_COLUMNS

# Records 1-8: seven sinus rhythms and one atrial fibrillation (8), in the order LUDB lists them.
RECORDS = [str(i) for i in range(1, 9)]
AF_RECORD = "8"

# method="neurokit" on all 100 local LUDB records (benchmarks/bench_label.py, docs/labels.md):
# MAE HR 0.3 bpm, PR 10.4, QRS 31.5 (bias -31: prominence bases of the R wave, not Q to S), QT 15.9
# ms. A mean over 8 records is noisier than over 100, so the tolerance is about 1.5x those; a
# method that lost its beats or leads would be off by far more (naive dwt, lead II: PR 53, QRS 81).
NEUROKIT_TOLERANCE = {"hr_bpm": 1.0, "pr_ms": 15.0, "qrs_ms": 45.0, "qt_ms": 25.0}

# The default method's output on LUDB records 1 and 8 (I, II, V1-V6): LABELLER_VERSION 2,
# NeuroKit2 0.2.13, and QT as of version 4 (the first large wave after the QRS is the T wave).
# A change here is a change of what the labeller computes: bump the version.
DEFAULT_GOLDEN = {
    "1": {"hr_bpm": 45.662100456621005, "pr_ms": 137.8049732594885, "qrs_ms": 83.0,
          "qt_ms": 473.0, "n_beats": 7.0},
    "8": {"hr_bpm": 71.42857142857143, "pr_ms": np.nan, "qrs_ms": 147.0, "qt_ms": 368.0,
          "n_beats": 12.0},
}

def _read(ludb_root, name: str, leads=LEADS_8):
    return read_record(ludb_root / "data" / name, leads=leads, record_id=name)


def _values(row: dict) -> list[float]:
    return [row[c] for c in INTERVALS]


def _same(a: dict, b: dict) -> bool:
    """Equal rows, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and np.isnan(a[k]) and np.isnan(b[k])) for k in a)


@pytest.fixture(scope="module")
def neurokit_rows(ludb_root) -> dict[str, dict]:
    rows = {}
    for name in RECORDS:
        rec = _read(ludb_root, name)
        rows[name] = ecg_intervals(rec.signal, rec.fs, rec.leads, record_id=name, method="neurokit")
    return rows


def test_neurokit_method_agrees_with_the_cardiologists(ludb_root, neurokit_rows):
    reference = ludb_reference(ludb_root / "data", RECORDS)
    for interval, tolerance in NEUROKIT_TOLERANCE.items():
        has = reference[interval].notna()
        est = np.array([neurokit_rows[name][interval] for name in reference.index[has]])
        error = est - reference.loc[has, interval].to_numpy()
        assert np.isfinite(error).all(), f"{interval}: not measured where the reference has it"
        assert np.abs(error).mean() <= tolerance, f"{interval}: MAE {np.abs(error).mean():.1f}"
    # NeuroKit2's QRS is the R wave's base: narrower than the cardiologists' Q-to-S, as benchmarked
    qrs = np.array([neurokit_rows[name]["qrs_ms"] for name in RECORDS])
    assert (qrs - reference.loc[RECORDS, "qrs_ms"].to_numpy()).mean() < 0


def test_neurokit_method_keeps_the_no_p_wave_reason(neurokit_rows):
    af = neurokit_rows[AF_RECORD]
    assert np.isnan(af["pr_ms"]) and af["pr_status"].startswith("no P wave")
    assert all(neurokit_rows[name]["pr_status"] == "ok" for name in RECORDS if name != AF_RECORD)


def test_neurokit_method_gives_reasons_for_unmeasurable_records(ludb_root):
    rec = _read(ludb_root, "1")
    flat = rec.signal.copy()
    flat[LEADS_8.index("V3")] = 0.0  # one lead: dropped, named, the rest measured
    row = ecg_intervals(flat, rec.fs, rec.leads, method="neurokit")
    assert np.isfinite(_values(row)).all() and row["dropped_leads"].startswith("flat lead V3")
    flat[:5] = 0.0  # most leads: nothing measured, and why
    row = ecg_intervals(flat, rec.fs, rec.leads, method="neurokit")
    assert np.isnan(_values(row)).all()
    assert all(row[c].startswith("too few good leads (3 of 8)") for c in STATUS_COLUMNS)


@pytest.mark.parametrize("name", sorted(DEFAULT_GOLDEN))
def test_default_method_output_is_unchanged(ludb_root, name):
    rec = _read(ludb_root, name)
    implicit = ecg_intervals(rec.signal, rec.fs, rec.leads, record_id=name)
    explicit = ecg_intervals(rec.signal, rec.fs, rec.leads, record_id=name, method="ecgtransfer")
    by_config = ecg_intervals(rec.signal, rec.fs, rec.leads, record_id=name,
                              config=LabellerConfig(method="ecgtransfer"))
    assert _same(implicit, explicit) and _same(implicit, by_config)
    golden = DEFAULT_GOLDEN[name]
    # the golden values are version 2's but QT: version 3 changed only records with a bad lead,
    # version 4 the QT (the first large wave after the QRS is the T wave), added the quality
    # column and windows (and abstains on noise, which these are not)
    assert LABELLER_VERSION == 4
    assert {k: implicit[k] for k in golden} == pytest.approx(golden, rel=1e-9, nan_ok=True)
    assert METHODS[0] == LabellerConfig().method == "ecgtransfer"


def test_config_hashes_differ_between_methods():
    import neurokit2

    hashes = {m: LabellerConfig(method=m).config_hash() for m in METHODS}
    assert len(set(hashes.values())) == len(METHODS)
    assert LabellerConfig.from_dict({"method": "neurokit"}).config_hash() == hashes["neurokit"]
    # the default's hash is the one label files got before there were methods: they stay valid
    settings = LabellerConfig().to_dict()
    assert settings.pop("method") == "ecgtransfer"
    key = {"labeller": LABELLER_VERSION, "neurokit2": neurokit2.__version__, "config": settings}
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    assert hashes["ecgtransfer"] == hashlib.sha256(text.encode()).hexdigest()[:12]


def test_method_argument_overrides_the_config(ludb_root, neurokit_rows):
    rec = _read(ludb_root, "1")
    row = ecg_intervals(rec.signal, rec.fs, rec.leads, record_id="1",
                        config=LabellerConfig(method="ecgtransfer"), method="NeuroKit")
    assert _same(row, neurokit_rows["1"])
    assert replace(LabellerConfig(), method="NeuroKit").method == "neurokit"


def test_unknown_method_is_refused(ludb_root):
    rec = _read(ludb_root, "1")
    for make in (lambda: LabellerConfig(method="dwt"),
                 lambda: LabellerConfig.from_dict({"method": "dwt"}),
                 lambda: ecg_intervals(rec.signal, rec.fs, rec.leads, method="dwt")):
        with pytest.raises(ValueError, match=r"'dwt'.*ecgtransfer, neurokit"):
            make()


def test_neurokit_method_at_250_hz_on_twelve_leads_in_another_order(ludb_root, neurokit_rows):
    rec = _read(ludb_root, "1", leads=LEADS_12)
    order = [LEADS_12.index(name) for name in reversed(LEADS_12)]
    x = resample(rec.signal, rec.fs, 250.0)[order]
    row = ecg_intervals(x, 250.0, [rec.leads[i] for i in order], method="neurokit")
    assert {row[c] for c in STATUS_COLUMNS} == {"ok"}
    at500 = neurokit_rows["1"]
    for c, tol in (("hr_bpm", 1.0), ("pr_ms", 10.0), ("qrs_ms", 10.0), ("qt_ms", 15.0)):
        assert abs(row[c] - at500[c]) <= tol, c


def test_neurokit_method_on_a_ptbxl_record_at_100_hz(ptbxl_root):
    folder = ptbxl_root / "records{}" / "00000"
    lr = read_record(str(folder).format(100) + "/00001_lr", leads=LEADS_12, record_id="1")
    hr = read_record(str(folder).format(500) + "/00001_hr", leads=LEADS_12, record_id="1")
    assert lr.fs == 100.0
    at100 = ecg_intervals(lr.signal, lr.fs, lr.leads, method="neurokit")
    at500 = ecg_intervals(hr.signal, hr.fs, hr.leads, method="neurokit")
    assert {at100[c] for c in STATUS_COLUMNS} == {"ok"}
    for c, tol in (("hr_bpm", 1.0), ("pr_ms", 10.0), ("qrs_ms", 10.0), ("qt_ms", 15.0)):
        assert abs(at100[c] - at500[c]) <= tol, c
