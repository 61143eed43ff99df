"""The batched cleaning and R-peak detectors give NeuroKit2's own results on real records."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ecgtransfer.data.leads import LEADS_8
from ecgtransfer.data.transforms import resample
from ecgtransfer.data.wfdb_io import read_record
from ecgtransfer.features import fast

nk = pytest.importorskip("neurokit2")


@pytest.fixture(scope="module")
def records(ludb_root, cinc_root, ptbxl_root):
    """8 leads of real records: LUDB (AF, flutter, paced, sinus), Challenge (tachycardia, BBB),
    PTB-XL, at 500 Hz, and two of them at 250 and 360 Hz."""
    out = [read_record(ludb_root / "data" / str(i), leads=LEADS_8).signal for i in (1, 8, 17, 34)]
    out += [read_record(cinc_root / name, leads=LEADS_8).signal
            for name in ("E07503", "E07509", "JS20006", "HR06003")]
    out += [read_record(ptbxl_root / "records500" / "00000" / "00009_hr", leads=LEADS_8).signal]
    rated = [(np.asarray(x, np.float64), 500.0) for x in out]
    rated += [(resample(rated[0][0], 500.0, fs), fs) for fs in (250.0, 360.0)]
    return rated


def test_clean_is_neurokits(records):
    for x, fs in records:
        ours = fast.ecg_clean(x, fs)
        theirs = np.stack([nk.ecg_clean(row, sampling_rate=fs) for row in x])
        assert np.abs(ours - theirs).max() < 1e-8  # mV: rounding only


@pytest.mark.parametrize("method", ["kalidas2017", "rodrigues2021", "neurokit"])
def test_peaks_are_neurokits(records, method):
    compared = 0
    for x, fs in records:
        clean = fast.ecg_clean(x, fs)
        ours = fast.find_peaks(clean, fs, method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = [np.asarray(nk.ecg_findpeaks(row, sampling_rate=fs, method=method)
                                 ["ECG_R_Peaks"]) for row in clean]
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)
            compared += len(b)
    assert compared > 500  # the records have beats: the comparison is not of empty lists


def test_a_detector_failing_on_a_row_costs_only_that_row(records):
    x, fs = records[0]
    clean = fast.ecg_clean(x, fs)
    clean[3] = np.nan  # nothing a detector can use
    for method in ("kalidas2017", "rodrigues2021", "neurokit", "pantompkins1985"):
        peaks = fast.find_peaks(clean, fs, method)
        assert len(peaks) == 8 and len(peaks[0]) >= 5 and len(peaks[3]) == 0, method


@pytest.mark.slow
def test_labelling_does_not_import_neurokit2(ludb_root):
    """Importing NeuroKit2 takes about 2 s; the default labeller runs without it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from ecgtransfer.data.wfdb_io import read_record; "
            "from ecgtransfer.features import ecg_intervals; "
            f"rec = read_record({str(ludb_root / 'data' / '1')!r}); "
            "row = ecg_intervals(rec.signal, rec.fs, rec.leads); "
            "assert row['qt_status'] == 'ok', row; print('neurokit2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
