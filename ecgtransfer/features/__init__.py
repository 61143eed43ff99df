"""Features measured on ECGs: interval labels, every beat's fiducial points, and the
cardiologists' reference they are held to."""

from ecgtransfer.features.vocabulary import INTERVALS, UNITS
from ecgtransfer.features.intervals import (LABEL_COLUMNS, WAVE_COLUMNS, LabellerConfig,
                                            ecg_intervals, ecg_waves)
from ecgtransfer.features.reference import (agreement, annotated_beats, annotated_waves,
                                           ludb_beats, ludb_reference, reference_intervals)

__all__ = ["INTERVALS", "LABEL_COLUMNS", "WAVE_COLUMNS", "LabellerConfig", "agreement",
           "annotated_beats", "annotated_waves", "ecg_intervals", "ecg_waves", "ludb_beats",
           "ludb_reference", "reference_intervals", "UNITS"]
