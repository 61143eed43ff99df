"""Resampling and the int16 microvolt encoding, on real PTB-XL signals."""

import numpy as np
import pytest

from ecgtransfer.data.leads import LEADS_8
from ecgtransfer.data.transforms import resample, to_microvolts
from ecgtransfer.data.wfdb_io import read_record


def test_resampling_500_to_100_agrees_with_ptbxls_own_100hz_version(ptbxl_root):
    hi = read_record(ptbxl_root / "records500/00000/00010_hr", leads=LEADS_8)
    lo = read_record(ptbxl_root / "records100/00000/00010_lr", leads=LEADS_8)
    ours = resample(hi.signal, 500, 100)
    assert ours.shape == lo.signal.shape == (8, 1000)
    assert ours.dtype == np.float32
    core = slice(20, -20)  # filter edges differ
    for lead in range(8):
        r = np.corrcoef(ours[lead, core], lo.signal[lead, core])[0, 1]
        assert r > 0.97, (LEADS_8[lead], r)


def test_resample_to_an_odd_rate_keeps_duration(ptbxl_root):
    x = read_record(ptbxl_root / "records500/00000/00011_hr", leads=LEADS_8).signal
    assert resample(x, 500, 257).shape == (8, 2570)
    assert resample(x, 500, 500) is not None and resample(x, 500, 500).shape == x.shape


def test_microvolts_are_exact_for_ptbxl_and_refuse_to_wrap(ptbxl_root):
    x = read_record(ptbxl_root / "records500/00000/00012_hr", leads=LEADS_8).signal
    uv = to_microvolts(x)
    assert uv.dtype == np.int16
    np.testing.assert_array_equal(uv.astype(np.float64) / 1000, np.round(x.astype(np.float64), 3))
    too_big = x * (40.0 / np.abs(x).max())  # the same ECG scaled to a 40 mV peak
    with pytest.raises(ValueError, match="outside the int16 microvolt range"):
        to_microvolts(too_big)
    with_nan = x.copy()
    with_nan[2, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        to_microvolts(with_nan)
