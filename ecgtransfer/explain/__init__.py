"""Explanations of trained models: attributions by Captum's methods, where they fall on the
waves of the beat, and how faithful they are (``ecgtransfer explain``)."""

from ecgtransfer.explain.attribution import METHODS, ecg_attribute, feature_maps
from ecgtransfer.explain.faithfulness import (Curves, area, deletion_insertion, randomized_model,
                                              rank_correlation)
from ecgtransfer.explain.waves import DEFINING_WAVES, OTHER, WAVES, wave_labels, wave_segments

__all__ = ["METHODS", "ecg_attribute", "feature_maps", "Curves", "area", "deletion_insertion",
           "randomized_model", "rank_correlation", "DEFINING_WAVES", "OTHER", "WAVES",
           "wave_labels", "wave_segments"]
