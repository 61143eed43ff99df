"""Features measured on ECGs: interval labels and the cardiologists' reference they are held to."""

from ecgtransfer.features.reference import INTERVALS, annotated_waves, reference_intervals

__all__ = ["INTERVALS", "annotated_waves", "reference_intervals"]
