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
* :func:`neurokit`: ``nk.ecg_findpeaks(method="neurokit")`` (the gradient's boxcar smoothings on
  all rows at once, then its QRS search row by row);
* :func:`rodrigues2021`: ``nk.ecg_findpeaks(method="rodrigues2021")`` with the differences as
  array operations and each state of its state machine a whole-window step: the window maximum
  by ``argmax`` (the first maximum, as its strict ``>`` keeps), the decaying threshold as one
  ``cumprod`` (the same multiplications in the same order).

``tests/test_fast.py`` holds each to NeuroKit2's own result on real records: the same peaks,
sample for sample, and cleaned signals within 1e-8 mV (rounding). Only NeuroKit2 0.2.x's behaviour is
reproduced; :func:`find_peaks` falls back to ``nk.ecg_findpeaks`` for every other method. The
two NeuroKit2 routines used inside (``_ecg_findpeaks_peakdetect`` and the QRS search of
``_ecg_findpeaks_neurokit``) are copied, not imported: importing anything from NeuroKit2 imports
all of it, scikit-learn included, about 2 s in every labelling process (NeuroKit2 is MIT-licensed).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import scipy.ndimage
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


def _peakdetect(detection: np.ndarray, fs: float) -> list[int]:
    """NeuroKit2 0.2.13's ``_ecg_findpeaks_peakdetect`` (Pan-Tompkins thresholds, after
    py-ecg-detectors), line for line: importing it would import all of NeuroKit2 (2 s a process)."""
    min_peak_distance = int(0.3 * fs)
    min_missed_distance = int(0.25 * fs)
    signal_peaks: list[int] = []
    spki = npki = 0.0
    last_peak, last_index = 0, -1
    peaks, _ = scipy.signal.find_peaks(detection, plateau_size=(1, 1))
    for index, peak in enumerate(peaks):
        peak_value = detection[peak]
        threshold_i1 = npki + 0.25 * (spki - npki)
        if peak_value > threshold_i1 and peak > last_peak + min_peak_distance:
            signal_peaks.append(peak)
            if len(signal_peaks) > 9:  # RR_missed from the previous eight R-R intervals
                rr_ave = (signal_peaks[-2] - signal_peaks[-10]) // 8
                rr_missed = int(1.66 * rr_ave)
                if peak - last_peak > rr_missed:
                    missed = peaks[last_index + 1: index]
                    missed = missed[(missed > last_peak + min_missed_distance)
                                    & (missed < peak - min_missed_distance)]
                    missed = missed[detection[missed] > 0.5 * threshold_i1]
                    if len(missed) > 0:
                        signal_peaks[-1] = missed[np.argmax(detection[missed])]
                        signal_peaks.append(peak)
            last_peak, last_index = peak, index
            spki = 0.125 * peak_value + 0.875 * spki
        else:
            npki = 0.125 * peak_value + 0.875 * npki
    return signal_peaks


def kalidas2017(clean: np.ndarray, fs: float) -> list[np.ndarray]:
    """``nk.ecg_findpeaks(row, fs, method="kalidas2017")["ECG_R_Peaks"]`` of every row."""
    import pywt

    n = clean.shape[-1]
    pad = (-n) % 8  # SWT level 3 needs a multiple of 2**3 samples; NeuroKit2 pads the edge value
    x = np.pad(clean, ((0, 0), (0, pad)), "edge") if pad else clean
    detail = np.asarray(pywt.swt(x, "db3", level=3, axis=-1)[0][1])
    filtered = scipy.signal.sosfilt(_kalidas_band(float(fs)), detail * detail, axis=-1)[:, :n]
    return [np.asarray(_peakdetect(row, fs), dtype=int) for row in filtered]


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


def _neurokit_row(signal: np.ndarray, smoothgrad: np.ndarray, threshold: np.ndarray,
                  mindelay: int) -> np.ndarray:
    """NeuroKit2 0.2.13's ``_ecg_findpeaks_neurokit`` after its smoothing, line for line."""
    qrs = smoothgrad > threshold
    beg_qrs = np.where(np.logical_and(np.logical_not(qrs[0:-1]), qrs[1:]))[0]
    end_qrs = np.where(np.logical_and(qrs[0:-1], np.logical_not(qrs[1:])))[0]
    if len(beg_qrs) == 0:
        return np.array([], dtype=int)
    end_qrs = end_qrs[end_qrs > beg_qrs[0]]
    num_qrs = min(beg_qrs.size, end_qrs.size)
    min_len = np.mean(end_qrs[:num_qrs] - beg_qrs[:num_qrs]) * 0.4
    peaks = [0]
    for i in range(num_qrs):
        beg, end = beg_qrs[i], end_qrs[i]
        if end - beg < min_len:
            continue
        locmax, props = scipy.signal.find_peaks(signal[beg:end], prominence=(None, None))
        if locmax.size > 0:
            peak = beg + locmax[np.argmax(props["prominences"])]
            if peak - peaks[-1] > mindelay:
                peaks.append(peak)
    peaks.pop(0)
    return np.asarray(peaks).astype(int)


def neurokit(clean: np.ndarray, fs: float) -> list[np.ndarray]:
    """``nk.ecg_findpeaks(row, fs, method="neurokit")["ECG_R_Peaks"]`` of every row: the
    gradient and its two boxcar smoothings on all rows at once, the QRS search row by row."""
    absgrad = np.abs(np.gradient(clean, axis=-1))
    smoothgrad = scipy.ndimage.uniform_filter1d(absgrad, int(np.rint(0.1 * fs)), axis=-1,
                                                mode="nearest")
    avggrad = scipy.ndimage.uniform_filter1d(smoothgrad, int(np.rint(0.75 * fs)), axis=-1,
                                             mode="nearest")
    mindelay = int(np.rint(fs * 0.3))
    return [_neurokit_row(x, sg, 1.5 * ag, mindelay)
            for x, sg, ag in zip(clean, smoothgrad, avggrad)]


_BATCHED = {"kalidas2017": kalidas2017, "rodrigues2021": rodrigues2021, "neurokit": neurokit}


def _one_row(method: str, row: np.ndarray, fs: float) -> np.ndarray:
    """One row's peaks, or none where the detector fails on it."""
    try:
        if method in _BATCHED:
            return np.asarray(_BATCHED[method](row[None], fs)[0], dtype=np.int64)
        import neurokit2 as nk

        return np.asarray(nk.ecg_findpeaks(row, sampling_rate=fs, method=method)["ECG_R_Peaks"],
                          dtype=np.int64)
    except Exception:  # noqa: BLE001 - a detector that fails on a lead casts no vote there
        return np.zeros(0, dtype=np.int64)


def find_peaks(clean: np.ndarray, fs: float, method: str) -> list[np.ndarray]:
    """R peaks of every row by ``method``; a row that is not finite, or that the detector fails
    on, gets none.

    ``kalidas2017``, ``rodrigues2021`` and ``neurokit`` run batched (above), without importing
    NeuroKit2; any other method goes through ``nk.ecg_findpeaks`` row by row.
    """
    clean = np.asarray(clean, dtype=np.float64)
    out = [np.zeros(0, dtype=np.int64) for _ in range(len(clean))]
    rows = np.flatnonzero(np.isfinite(clean).all(axis=-1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = None
        if method in _BATCHED and len(rows):
            try:
                found = _BATCHED[method](clean[rows], fs)
            except Exception:  # noqa: BLE001 - then row by row: a bad row costs only itself
                found = None
        if found is None:
            found = [_one_row(method, clean[i], fs) for i in rows]
    for i, peaks in zip(rows, found):
        out[i] = np.asarray(peaks, dtype=np.int64)
    return out
