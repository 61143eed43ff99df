"""Reading WFDB records, and one clear error per kind of bad input."""

import numpy as np
import pytest
import wfdb

from conftest import copy_records
from ecgtransfer.data.leads import LEADS_8, LEADS_12, MissingLeadsError, match_leads
from ecgtransfer.data.wfdb_io import RecordError, find_records, read_record, record_fs

PTB_DIR = "records500/00000"


def test_match_leads_ignores_case_and_keeps_the_order_asked_for():
    ludb_names = ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"]
    assert match_leads(ludb_names, LEADS_8) == [0, 1, 6, 7, 8, 9, 10, 11]
    assert match_leads(["AVR", "I"], ["I", "aVR"]) == [1, 0]
    with pytest.raises(MissingLeadsError, match="V5, V6"):
        match_leads(ludb_names[:10], LEADS_12)


def test_ptbxl_record_matches_wfdb_within_one_microvolt(ptbxl_root):
    path = ptbxl_root / PTB_DIR / "00008_hr"
    rec = read_record(path, leads=LEADS_8)
    ref = wfdb.rdrecord(str(path))
    cols = [ref.sig_name.index(n.upper() if n.startswith("a") else n) for n in LEADS_8]
    assert rec.signal.dtype == np.float32
    assert rec.signal.shape == (8, 5000)
    assert rec.fs == 500
    np.testing.assert_allclose(rec.signal, ref.p_signal[:, cols].T, atol=1e-3)


def test_ludb_lowercase_leads_and_challenge_mat_files_read(ludb_root, cinc_root):
    ludb = read_record(ludb_root / "data" / "1", leads=LEADS_12)
    assert ludb.leads == LEADS_12 and ludb.signal.shape == (12, 5000)
    mat_name = find_records(cinc_root)[0]
    cinc = read_record(cinc_root / mat_name, leads=LEADS_8)
    assert cinc.signal.shape == (8, 5000)
    assert record_fs(cinc_root / mat_name) == 500
    # real ECG amplitudes: a few mV at most, not raw ADC counts
    assert 0.2 < np.abs(cinc.signal).max() < 20


@pytest.fixture
def bad_dir(tmp_path, ptbxl_root):
    return copy_records(ptbxl_root / PTB_DIR, [f"{i:05d}_hr" for i in range(1, 8)], tmp_path)


def _set_header_line(path, n, text):
    lines = path.read_text().splitlines()
    lines[n] = text
    path.write_text("\n".join(lines) + "\n")


def test_truncated_data_file(bad_dir):
    dat = bad_dir / "00001_hr.dat"
    dat.write_bytes(dat.read_bytes()[:60000])
    with pytest.raises(RecordError, match=r"^00001_hr: data file 00001_hr.dat has 60000 bytes.*trunc"):
        read_record(bad_dir / "00001_hr")


def test_missing_header(bad_dir):
    (bad_dir / "00002_hr.hea").unlink()
    with pytest.raises(RecordError, match="00002_hr: header file 00002_hr.hea is missing"):
        read_record(bad_dir / "00002_hr")


def test_header_signal_count_disagrees_with_data(bad_dir):
    # wfdb itself reads this without complaint, the 12 leads interleaved into 11.
    hea = bad_dir / "00003_hr.hea"
    lines = hea.read_text().splitlines()
    lines[0] = lines[0].replace(" 12 ", " 11 ")
    hea.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(RecordError, match="00003_hr: .*11 signals.*wrong signal count"):
        read_record(bad_dir / "00003_hr")


def test_nan_samples_name_the_lead(bad_dir):
    dat = bad_dir / "00004_hr.dat"
    raw = np.fromfile(dat, dtype="<i2")
    raw[100 * 12 + 7] = -32768  # WFDB's invalid-sample value in format 16, lead V2
    raw.tofile(dat)
    with pytest.raises(RecordError, match="00004_hr: 1 NaN sample.* V2"):
        read_record(bad_dir / "00004_hr", leads=LEADS_8)


def test_missing_lead(bad_dir):
    hea = bad_dir / "00005_hr.hea"
    hea.write_text(hea.read_text().replace(" V4\n", " X4\n"))
    with pytest.raises(RecordError, match="00005_hr: missing lead.*V4"):
        read_record(bad_dir / "00005_hr", leads=LEADS_8)


def test_header_without_sampling_rate(bad_dir):
    # wfdb would silently assume 250 Hz here.
    _set_header_line(bad_dir / "00006_hr.hea", 0, "00006_hr 12")
    with pytest.raises(RecordError, match="00006_hr: header states no sampling rate"):
        read_record(bad_dir / "00006_hr")


def test_unreadable_sampling_rate(bad_dir):
    _set_header_line(bad_dir / "00007_hr.hea", 0, "00007_hr 12 fast 5000")
    with pytest.raises(RecordError, match="00007_hr: header sampling rate 'fast'"):
        read_record(bad_dir / "00007_hr")


def test_errors_are_one_line(bad_dir):
    (bad_dir / "00001_hr.dat").write_bytes(b"")
    with pytest.raises(RecordError) as info:
        read_record(bad_dir / "00001_hr")
    assert "\n" not in str(info.value)
