"""NeuroKit2's cleaning and two of its R-peak detectors, run on all leads at once: same results.

The labeller calls ``nk.ecg_clean`` and ``nk.ecg_findpeaks`` on every lead of every record. A
profile of 10 s, 8-lead, 500 Hz records showed where that time went (``docs/labels.md``,
"Speed"): about 40% in ``rodrigues2021``, whose double difference is two Python list
comprehensions and whose state machine steps one sample at a time, and about 20% designing the
same Butterworth filters again for each call. The functions here do the same arithmetic:

* :func:`ecg_clean`: ``nk.ecg_clean(method="neurokit")`` (0.5 Hz order-5 Butterworth high-pass,
  ``sosfiltfilt``; then the 50 Hz moving-average powerline filter, ``filtfilt``) on every row,
  with the filter designed once per rate;
* :func:`kalidas2017`: ``nk.ecg_findpeaks(method="kalidas2017")`` (stationary wavelet transform
  of every row at once, the band-pass designed once per rate, then NeuroKit2's own threshold
  logic on each row);
* :func:`rodrigues2021`: ``nk.ecg_findpeaks(method="rodrigues2021")`` with the differences as
  array operations and each state of its state machine a whole-window step: the window maximum
  by ``argmax`` (the first maximum, as its strict ``>`` keeps), the decaying threshold as one
  ``cumprod`` (the same multiplications in the same order).

``tests/test_fast.py`` holds each to NeuroKit2's own result on real records: the same peaks,
sample for sample, and cleaned signals within 1e-8 mV (rounding). Only NeuroKit2 0.2.x's behaviour is
reproduced; :func:`find_peaks` falls back to ``nk.ecg_findpeaks`` for every other method.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import scipy.signal

__all__ = ["ecg_clean", "find_peaks", "kalidas2017", "rodrigues2021"]


@functools.lru_cache(maxsize=16)
def _highpass(fs: float) -> np.ndarray:
    return scipy.signal.butter(5, 0.5, btype="highpass", output="sos", fs=fs)


def ecg_clean(signal: np.ndarray, fs: float) -> np.ndarray:
    """``nk.ecg_clean(row, fs)`` (method ``"neurokit"``, powerline 50 Hz) of every row."""
    x = scipy.signal.sosfiltfilt(_highpass(float(fs)), np.asarray(signal, dtype=np.float64),
                                 axis=-1)
    b = np.ones(int(fs / 50)) if fs >= 100 else np.ones(2)
    return scipy.signal.filtfilt(b, [len(b)], x, method="pad", axis=-1)


@functools.lru_cache(maxsize=16)
def _kalidas_band(fs: float) -> np.ndarray:
    return scipy.signal.butter(3, [0.01 / (0.5 * fs), 10 / (0.5 * fs)], btype="bandpass",
                               output="sos")


def kalidas2017(clean: np.ndarray, fs: float) -> list[np.ndarray]:
    """``nk.ecg_findpeaks(row, fs, method="kalidas2017")["ECG_R_Peaks"]`` of every row."""
    import pywt
    from neurokit2.ecg.ecg_findpeaks import _ecg_findpeaks_peakdetect

    n = clean.shape[-1]
    pad = (-n) % 8  # SWT level 3 needs a multiple of 2**3 samples; NeuroKit2 pads the edge value
    x = np.pad(clean, ((0, 0), (0, pad)), "edge") if pad else clean
    detail = np.asarray(pywt.swt(x, "db3", level=3, axis=-1)[0][1])
    filtered = scipy.signal.sosfilt(_kalidas_band(float(fs)), detail * detail, axis=-1)[:, :n]
    return [np.asarray(_ecg_findpeaks_peakdetect(row, fs), dtype=int) for row in filtered]


def _rodrigues_states(processed: np.ndarray, fs: float) -> np.ndarray:
    """NeuroKit2's Rodrigues state machine on one row, a window per step instead of a sample."""
    pth = (0.7 * fs) / 128 + 2.7
    decay = np.exp(-pth / fs)
    tf = len(processed)
    chunk = max(int(fs), 16)
    rpeaks: list[int] = []
    i, total, rpeakpos = 1, 0.0, 0
    while i < tf:
        # state 1: the window's first maximum, if above 0 (the machine starts from amplitude 0)
        tf1 = np.round(i + 0.26 * fs)
        end = min(int(tf1), tf)
        amplitude = 0
        if end > i:
            k = int(np.argmax(processed[i:end]))
            if processed[i + k] > 0:
                amplitude, rpeakpos = processed[i + k], i + k + 1
            i = end
        total = (19 / 20) * total + (1 / 20) * amplitude
        rpeaks.append(rpeakpos)
        # state 2: wait
        tf2 = i + np.round(0.2 * 2 - (tf1 - rpeakpos))
        if i <= tf2:
            i = int(tf2) + 1
        # state 3: a threshold decaying sample by sample until the signal reaches it
        thr = total
        while i < tf:
            m = min(chunk, tf - i)
            steps = np.full(m, decay)
            steps[0] = thr
            levels = np.cumprod(steps)  # thr, thr*decay, thr*decay*decay, ... as the loop multiplies
            below = processed[i:i + m] < levels
            if below.all():
                thr, i = levels[-1] * decay, i + m
                continue
            i += int(np.argmin(below))
            break
    return np.asarray(rpeaks, dtype=int)


def rodrigues2021(clean: np.ndarray, fs: float) -> list[np.ndarray]:
    """``nk.ecg_findpeaks(row, fs, method="rodrigues2021")["ECG_R_Peaks"]`` of every row."""
    n = int(np.clip(np.round(3 * fs / 128), 2, None))
    nd = n - 1
    diff = clean[:, nd:] - clean[:, :-nd]
    squared = np.square(diff[:, 1:] - diff[:, :-1])
    processed = scipy.signal.lfilter(np.ones(n), [1], squared, axis=-1)
    return [_rodrigues_states(row, fs) for row in processed]


_BATCHED = {"kalidas2017": kalidas2017, "rodrigues2021": rodrigues2021}


def find_peaks(clean: np.ndarray, fs: float, method: str) -> list[np.ndarray]:
    """R peaks of every row by ``method``; a row a detector fails on gets none.

    ``kalidas2017`` and ``rodrigues2021`` run batched (above); any other method goes through
    ``nk.ecg_findpeaks`` row by row.
    """
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method in _BATCHED:
            try:
                return _BATCHED[method](clean, fs)
            except Exception:  # noqa: BLE001 - then row by row, so one bad row costs only itself
                pass
        out = []
        for row in clean:
            try:
                out.append(np.asarray(nk.ecg_findpeaks(row, sampling_rate=fs, method=method)
                                      ["ECG_R_Peaks"], dtype=np.int64))
            except Exception:  # noqa: BLE001 - a detector that fails on a lead casts no vote there
                out.append(np.zeros(0, dtype=np.int64))
    return out
