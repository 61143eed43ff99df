"""The cardiologists' reference intervals computed from LUDB wave annotations."""

import shutil

import numpy as np
import pandas as pd
import pytest

from ecgtransfer.data.ludb import read_ludb_annotations
from ecgtransfer.data.wfdb_io import RecordError
from ecgtransfer.features import annotated_waves, reference_intervals


def _beat(offset, p=(100, 130, 160), qrs=(180, 200, 230), t=(300, 350, 400), *, with_p=True):
    marks = []
    for wave, (on, pk, off) in (("p", p), ("N", qrs), ("t", t)):
        if wave == "p" and not with_p:
            continue
        marks += [(on + offset, "("), (pk + offset, wave), (off + offset, ")")]
    return marks


def _lead(*beats):
    marks = [m for beat in beats for m in beat]
    return np.array([m[0] for m in marks]), [m[1] for m in marks]


def test_a_case_checked_by_hand():
    # Lead A: 3 beats 500 samples apart, PR 80, QRS 50, QT 220 samples; its middle beat has no P.
    lead_a = _lead(_beat(0), _beat(500, with_p=False), _beat(1000))
    # Lead B: 2 beats 600 apart, PR 60 (P onset 120), QRS 70 (offset 250), QT 240 (T offset 420).
    b = dict(p=(120, 140, 165), qrs=(180, 210, 250), t=(320, 360, 420))
    lead_b = _lead(_beat(0, **b), _beat(600, **b))
    ref = reference_intervals({"II": lead_a, "V1": lead_b}, fs=500)
    # medians over leads of per-lead medians, in ms (2 ms per sample)
    assert ref["pr_ms"] == pytest.approx((80 + 60) / 2 * 2)
    assert ref["qrs_ms"] == pytest.approx((50 + 70) / 2 * 2)
    assert ref["qt_ms"] == pytest.approx((220 + 240) / 2 * 2)
    assert ref["hr_bpm"] == pytest.approx(60 * 500 / ((500 + 600) / 2))
    assert ref["n_leads"] == 2


def test_waves_without_their_marks_give_nan():
    samples, symbols = _lead(_beat(0))
    waves = annotated_waves(samples[1:], symbols[1:])  # the P onset mark lost
    assert np.isnan(waves.loc[0, "onset"]) and waves.loc[1, "onset"] == 180
    alone = reference_intervals({"II": (samples[3:], symbols[3:])}, fs=500)  # no P wave at all
    assert np.isnan(alone["pr_ms"]) and alone["qrs_ms"] == 100 and np.isnan(alone["hr_bpm"])


@pytest.fixture(scope="module")
def ludb_reference(ludb_root):
    rows = []
    for path in sorted((ludb_root / "data").glob("*.hea"), key=lambda p: int(p.stem)):
        ann = read_ludb_annotations(path.with_suffix(""))
        assert {a.fs for a in ann.values()} == {500.0}
        ref = reference_intervals({k: (a.samples, a.symbols) for k, a in ann.items()}, fs=500)
        rows.append({"ID": int(path.stem), **ref})
    return pd.DataFrame(rows).set_index("ID")


def test_ludb_reference_is_physiological_and_complete(ludb_reference, ludb_root):
    ref = ludb_reference
    assert len(ref) >= 100 and (ref["n_leads"] == 12).all()
    for column in ("hr_bpm", "qrs_ms", "qt_ms"):
        assert ref[column].notna().all(), column
    assert ref["qrs_ms"].between(50, 200).all() and ref["qt_ms"].between(250, 550).all()
    assert ref["hr_bpm"].between(35, 160).all()
    pr = ref["pr_ms"].dropna()
    assert pr.between(80, 320).all() and 0.75 < len(pr) / len(ref) < 0.95
    # No P waves in atrial fibrillation: its records have no reference PR.
    rhythms = pd.read_csv(ludb_root / "ludb.csv").set_index("ID")["Rhythms"].str.strip()
    af = rhythms.index[rhythms.str.contains("fibrillation", case=False)].intersection(ref.index)
    assert len(af) >= 5 and ref.loc[af, "pr_ms"].isna().all()


def test_a_missing_annotation_file_names_record_and_file(tmp_path, ludb_root):
    for f in (ludb_root / "data").glob("7.*"):
        shutil.copyfile(f, tmp_path / f.name)
    (tmp_path / "7.v3").unlink()
    with pytest.raises(RecordError, match=r"^7: no annotation file 7.v3$"):
        read_ludb_annotations(tmp_path / "7", record_id="7")
    shutil.copyfile(ludb_root / "data" / "7.v3", tmp_path / "7.v3")
    # wfdb reads damaged annotation files without error; the LUDB reader does not accept them.
    (tmp_path / "7.v2").write_bytes(b"\x01\x02")
    with pytest.raises(RecordError, match=r"7: damaged annotation file 7.v2 \(no marks\)"):
        read_ludb_annotations(tmp_path / "7", record_id="7")
    (tmp_path / "7.v2").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(RecordError, match="7: damaged annotation file 7.v2 .unexpected marks"):
        read_ludb_annotations(tmp_path / "7", record_id="7")


def test_ludb_reference_and_agreement(ludb_root):
    from ecgtransfer.features import INTERVALS, agreement, ludb_reference

    reference = ludb_reference(ludb_root / "data", ["1", "2", "3", "4"])
    assert list(reference.index) == ["1", "2", "3", "4"]
    assert (reference["n_leads"] == 12).all()
    assert reference["qrs_ms"].between(60, 160).all()
    shifted = reference.copy()
    shifted["qrs_ms"] += 10.0
    shifted.loc["2", "pr_ms"] = float("nan")  # one value the estimate lacks
    table = agreement(shifted, reference)
    assert list(table.index) == list(INTERVALS)
    assert table.loc["qrs_ms", "mae"] == pytest.approx(10.0)
    assert table.loc["qrs_ms", "bias"] == pytest.approx(10.0)
    assert table.loc["hr_bpm", "mae"] == pytest.approx(0.0)
    has_pr = reference["pr_ms"].notna().sum()
    assert table.loc["pr_ms", "coverage"] == pytest.approx((has_pr - 1) / has_pr)
