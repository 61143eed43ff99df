"""Lead names and their canonical order.

The project's 8 leads are I, II, V1-V6: the order the DeepFake generator emits. The limb
leads III, aVR, aVL, aVF are linear combinations of I and II, which is why 8 leads carry all
the information of 12.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

__all__ = ["LEADS_8", "LEADS_12", "MissingLeadsError", "canonical_lead", "expand_to_12", "lead_set",
           "match_leads", "measured_lead_names", "nearest_lead"]

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


# Holter and wearable leads named after the standard lead they resemble: bipolar chest leads
# (CM5, CC5, CS5, ML5: the positive electrode at V5's place), modified chest leads (MCL1, CM1,
# MV1, mod.V1) and the Italian numbering of the limb leads (D1, D2, D3).
_HOLTER = re.compile(r"^(?:cm|cc|cs|ml|mcl|mv|mod\.?\s*v|m\.?v)([1-6])$")
_ROMAN = {"d1": "I", "di": "I", "d2": "II", "dii": "II", "d3": "III", "diii": "III"}
_UNNAMED = re.compile(r"^(?:record\s+\S+,\s*)?signal\s+\d+$|^$|^ch(?:annel)?\s*\d+$|^ecg\s*\d*$",
                      re.IGNORECASE)


def nearest_lead(name: str) -> str | None:
    """The standard lead a lead name stands for, or None.

    A standard name in any spelling is itself (:func:`canonical_lead`); a Holter lead is the
    standard lead it resembles: ``CM5``, ``CC5``, ``CS5``, ``ML5`` -> ``V5``; ``MCL1``,
    ``CM1``, ``MV1``, ``mod.V1`` -> ``V1`` (any of 1-6); ``D1``-``D3`` -> ``I``-``III``. A lead
    between two chest positions (``V2-V3``), or any other name, stands for none.

    Parameters
    ----------
    name : str
        A lead name as a header writes it.

    Returns
    -------
    str or None
    """
    text = canonical_lead(name)
    if text in LEADS_12:
        return text
    key = text.lower().replace(" ", "")
    if key in _ROMAN:
        return _ROMAN[key]
    match = _HOLTER.match(key)
    return f"V{match.group(1)}" if match else None


def measured_lead_names(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The names a record's leads are measured under, and how a label shows them.

    Parameters
    ----------
    names : sequence of str
        The record's lead names, as its header writes them.

    Returns
    -------
    measured : list of str
        Per lead, the standard lead it stands for (:func:`nearest_lead`) unless an earlier lead
        of the record already is that lead; else its own name; a lead without a name (empty,
        ``record 30, signal 0``, ``signal 1``, ``ECG``) is ``unnamed:K`` (K its position).
    shown : list of str
        Per lead, what a label's ``leads`` column says: the standard name, ``CM5=V5`` for a lead
        measured as another, ``unnamed:K``, or the own name (spaces removed).
    """
    measured: list[str] = []
    shown: list[str] = []
    taken: set[str] = set()
    standard = [nearest_lead(n) for n in names]
    direct = {canonical_lead(n) for n in names if canonical_lead(n) in LEADS_12}
    for k, (name, near) in enumerate(zip(names, standard)):
        own = canonical_lead(name)
        if _UNNAMED.match(own):
            label = show = f"unnamed:{k}"
        elif near is not None and near not in taken and (near == own or near not in direct):
            label = near
            show = near if near == own else f"{own.replace(' ', '')}={near}"
        else:
            label = show = own.replace(" ", "")
        taken.add(label)
        measured.append(label)
        shown.append(show)
    return measured, shown


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
