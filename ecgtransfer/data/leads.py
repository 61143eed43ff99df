"""Lead names and their canonical order.

The project's 8 leads are I, II, V1-V6: the order the DeepFake generator emits. The limb
leads III, aVR, aVL, aVF are linear combinations of I and II, which is why 8 leads carry all
the information of 12.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["LEADS_8", "LEADS_12", "MissingLeadsError", "canonical_lead", "expand_to_12", "lead_set",
           "match_leads"]

LEADS_12: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)
LEADS_8: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


# Holter and QT-database layouts name the modified limb leads MLI, MLII, MLIII.
_ALIASES = {**{name.lower(): name for name in LEADS_12}, "mli": "I", "mlii": "II", "mliii": "III"}


def canonical_lead(name: str) -> str:
    """A lead name in this project's spelling (``avr`` -> ``aVR``, ``MLII`` -> ``II``); a name
    that is no standard lead (``ECG``, ``CM5``) comes back stripped, as it is."""
    text = str(name).strip()
    return _ALIASES.get(text.lower(), text)


class MissingLeadsError(ValueError):
    """Raised when a record lacks leads that were asked for."""

    def __init__(self, missing: Sequence[str]):
        self.missing = list(missing)
        super().__init__(f"missing lead(s) {', '.join(self.missing)}")


def lead_set(n_leads: int | str) -> tuple[str, ...]:
    """Return the canonical lead names for ``8`` or ``12`` leads.

    Parameters
    ----------
    n_leads : int or str
        ``8`` (I, II, V1-V6) or ``12`` (I, II, III, aVR, aVL, aVF, V1-V6).

    Returns
    -------
    tuple of str
        Lead names in canonical order.
    """
    n = int(n_leads)
    if n == 8:
        return LEADS_8
    if n == 12:
        return LEADS_12
    raise ValueError(f"leads must be 8 or 12, got {n_leads!r}")


def match_leads(available: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Find the position of each wanted lead among a record's leads, ignoring case.

    Parameters
    ----------
    available : sequence of str
        Lead names as the record states them (LUDB says ``i``, ``ii``, ``v1``; PTB-XL ``AVR``;
        a Holter ``MLII``: see :func:`canonical_lead`).
    wanted : sequence of str
        Lead names to pick, in the order they should come out.

    Returns
    -------
    list of int
        ``positions[k]`` is the index in ``available`` of ``wanted[k]``.

    Raises
    ------
    MissingLeadsError
        If any wanted lead is absent.
    """
    lookup: dict[str, int] = {}
    for i, name in enumerate(available):
        lookup.setdefault(canonical_lead(name).lower(), i)
    missing = [w for w in wanted if canonical_lead(w).lower() not in lookup]
    if missing:
        raise MissingLeadsError(missing)
    return [lookup[canonical_lead(w).lower()] for w in wanted]


def expand_to_12(signal: np.ndarray) -> np.ndarray:
    """Add the limb leads III, aVR, aVL, aVF to an 8-lead signal (Einthoven, Goldberger).

    ``III = II - I``, ``aVR = -(I + II) / 2``, ``aVL = I - II / 2``, ``aVF = II - I / 2``.

    Parameters
    ----------
    signal : numpy.ndarray
        ``(..., 8, n_samples)`` in :data:`LEADS_8` order, float (any unit) or integer
        (e.g. int16 µV, whose derived halves are rounded to the nearest integer, ties to even).

    Returns
    -------
    numpy.ndarray
        ``(..., 12, n_samples)`` in :data:`LEADS_12` order, the input's dtype.
    """
    signal = np.asarray(signal)
    if signal.ndim < 2 or signal.shape[-2] != len(LEADS_8):
        raise ValueError(f"expected (..., {len(LEADS_8)}, n_samples) in {'/'.join(LEADS_8)} "
                         f"order, got shape {signal.shape}")
    x = signal.astype(np.float64)
    lead_i, lead_ii = x[..., 0, :], x[..., 1, :]
    limb = np.stack([lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2,
                     lead_i - lead_ii / 2, lead_ii - lead_i / 2], axis=-2)
    out = np.concatenate([limb, x[..., 2:, :]], axis=-2)
    if np.issubdtype(signal.dtype, np.integer):
        out = np.rint(out)
    return out.astype(signal.dtype)
