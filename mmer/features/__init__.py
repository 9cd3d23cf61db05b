"""Facial features: face tracking and alignment, AU-anchored ROIs, optical flow and strain."""

from mmer.features.face import FaceResult, FaceStats, FaceTracker, align_face, alignment_matrix
from mmer.features.flow import (
    FLOW_METHODS,
    flow_magnitude_direction,
    optical_flow,
    optical_strain,
    remove_head_motion,
    remove_rigid_motion,
    rigid_motion,
    roi_motion,
)
from mmer.features.roi import REFERENCE_ROI, ROI_AUS, ROI_LANDMARKS, eye_aspect_ratio, face_rois

__all__ = [
    "FaceResult",
    "FaceStats",
    "FaceTracker",
    "align_face",
    "alignment_matrix",
    "FLOW_METHODS",
    "flow_magnitude_direction",
    "optical_flow",
    "optical_strain",
    "remove_head_motion",
    "remove_rigid_motion",
    "rigid_motion",
    "roi_motion",
    "REFERENCE_ROI",
    "ROI_AUS",
    "ROI_LANDMARKS",
    "eye_aspect_ratio",
    "face_rois",
]
