"""Pure signal transformations: resampling and the int16 microvolt encoding of the store."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = ["INT16_MIN_UV", "INT16_MAX_UV", "resample", "to_microvolts"]

INT16_MIN_UV = int(np.iinfo(np.int16).min)
INT16_MAX_UV = int(np.iinfo(np.int16).max)


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample a signal along its last axis with a polyphase anti-aliasing filter.

    Parameters
    ----------
    signal : numpy.ndarray
        Shape ``(n_leads, n_samples)``.
    fs_in, fs_out : float
        Sampling rates in Hz.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(n_leads, round(n_samples * fs_out / fs_in))``.
    """
    from scipy.signal import resample_poly

    if fs_in <= 0 or fs_out <= 0:
        raise ValueError(f"sampling rates must be positive, got {fs_in} -> {fs_out}")
    if fs_in == fs_out:
        return np.asarray(signal, dtype=np.float32)
    ratio = Fraction(float(fs_out) / float(fs_in)).limit_denominator(1000)
    out = resample_poly(np.asarray(signal, dtype=np.float64), ratio.numerator,
                        ratio.denominator, axis=-1)
    n_out = int(round(signal.shape[-1] * float(fs_out) / float(fs_in)))
    return out[..., :n_out].astype(np.float32)


def to_microvolts(signal_mv: np.ndarray) -> np.ndarray:
    """Encode a signal in mV as int16 microvolts, refusing values that would wrap.

    Parameters
    ----------
    signal_mv : numpy.ndarray
        Signal in mV, any float dtype.

    Returns
    -------
    numpy.ndarray
        ``int16`` array of the same shape, rounded to the nearest microvolt.

    Raises
    ------
    ValueError
        If a sample is NaN or lies outside -32.768 .. 32.767 mV.
    """
    uv = np.rint(np.asarray(signal_mv, dtype=np.float64) * 1000.0)
    if np.isnan(uv).any():
        raise ValueError("NaN samples")
    lo, hi = float(uv.min(initial=0.0)), float(uv.max(initial=0.0))
    if lo < INT16_MIN_UV or hi > INT16_MAX_UV:
        bad = lo if lo < INT16_MIN_UV else hi
        raise ValueError(f"value {bad / 1000:.3f} mV outside the int16 microvolt range "
                         f"({INT16_MIN_UV / 1000} .. {INT16_MAX_UV / 1000} mV)")
    return uv.astype(np.int16)
