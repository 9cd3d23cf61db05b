"""Micro-expression spotting: a streaming spotter, its batch form and MEGC scoring."""

from mmer.spotting._batch import SpotResult, spot_frames, spot_recording, spot_video, to_predictions
from mmer.spotting.megc import (
    PREDICTION_COLUMNS,
    Prediction,
    interval_iou,
    match_intervals,
    read_predictions,
    spotting_scores,
    write_predictions,
)
from mmer.spotting.spotter import RULES, STAGES, Candidate, Spotter, SpotterConfig

__all__ = [
    "Candidate",
    "Spotter",
    "SpotterConfig",
    "STAGES",
    "RULES",
    "SpotResult",
    "spot_frames",
    "spot_recording",
    "spot_video",
    "to_predictions",
    "PREDICTION_COLUMNS",
    "Prediction",
    "interval_iou",
    "match_intervals",
    "read_predictions",
    "spotting_scores",
    "write_predictions",
]
