"""Features measured on ECGs: interval labels and the cardiologists' reference they are held to."""

from ecgtransfer.features.vocabulary import INTERVALS, UNITS
from ecgtransfer.features.intervals import LABEL_COLUMNS, LabellerConfig, ecg_intervals
from ecgtransfer.features.reference import (agreement, annotated_waves, ludb_reference,
                                           reference_intervals)

__all__ = ["INTERVALS", "LABEL_COLUMNS", "LabellerConfig", "agreement", "annotated_waves",
           "ecg_intervals", "ludb_reference", "reference_intervals", "UNITS"]
