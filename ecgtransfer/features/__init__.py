"""Features measured on ECGs: interval labels and the cardiologists' reference they are held to."""

from ecgtransfer.features.intervals import LABEL_COLUMNS, LabellerConfig, ecg_intervals
from ecgtransfer.features.reference import INTERVALS, annotated_waves, reference_intervals

__all__ = ["INTERVALS", "LABEL_COLUMNS", "LabellerConfig", "annotated_waves", "ecg_intervals",
           "reference_intervals"]
