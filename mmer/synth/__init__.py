"""Synthetic lab: realistic synthetic sessions with exact ground truth.

Real face photographs, frames of real talking-face videos and new identities morphed from them
(the face registry; mediapipe face mesh landmarks) are animated with landmark-anchored action
unit warps: micro-expressions, macro-expressions and blinks among distractors (head drift and
jerks, speech-like mouth motion, sensor noise, flicker). Depth is rendered from the mesh geometry,
and ECG/PPG/RSP/EDA from neurokit2's simulators react to the events. Sessions are written in the
CAS(ME)^3 Part A and Part C layouts and drive the synthetic live sensors.
"""

from mmer.synth._config import EMOTION_AUS, EMOTIONS, SynthConfig, objective_class
from mmer.synth._casme3 import write_casme3, write_physio_text
from mmer.synth._face import (
    Face,
    FaceNotFoundError,
    default_face_path,
    default_faces,
    detect_landmarks,
    load_face,
    resolve_faces,
)
from mmer.synth._live import SyntheticLab, shared_lab
from mmer.synth._physio import COUPLING
from mmer.synth._plot import plot_physio
from mmer.synth._preview import render_preview
from mmer.synth._registry import SPLITS, FaceSpec, face_registry, load_registered, morph_face, talking_frame
from mmer.synth._session import SyntheticSession, generate_session
from mmer.synth._timeline import ME_CLEARANCE_S, OVERLAP_KINDS

__all__ = [
    "COUPLING",
    "ME_CLEARANCE_S",
    "OVERLAP_KINDS",
    "SPLITS",
    "FaceSpec",
    "EMOTIONS",
    "EMOTION_AUS",
    "Face",
    "FaceNotFoundError",
    "SynthConfig",
    "SyntheticLab",
    "SyntheticSession",
    "default_face_path",
    "default_faces",
    "detect_landmarks",
    "face_registry",
    "generate_session",
    "load_face",
    "load_registered",
    "morph_face",
    "objective_class",
    "plot_physio",
    "render_preview",
    "resolve_faces",
    "shared_lab",
    "talking_frame",
    "write_casme3",
    "write_physio_text",
]
