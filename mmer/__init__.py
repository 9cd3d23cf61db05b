"""mmer: multimodal micro-expression streaming, spotting and recognition on one LSL clock.

The public surface is small and re-exported here; each name is imported on first use, so
``import mmer`` stays cheap (no torch or mediapipe until a model or face tracker is asked for).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # streams and transport
    "StreamSpec": "mmer.streams",
    "StreamType": "mmer.streams",
    "physio_spec": "mmer.streams",
    "video_spec": "mmer.streams",
    "markers_spec": "mmer.streams",
    "configure_lsl": "mmer.streams",
    "local_clock": "mmer.clock",
    "FramePublisher": "mmer.transport",
    "FrameSubscriber": "mmer.transport",
    "SampleOutlet": "mmer.transport",
    "VideoOutlet": "mmer.transport",
    "MarkerOutlet": "mmer.transport",
    # recordings
    "Event": "mmer.dataset",
    "EventKind": "mmer.dataset",
    "Recording": "mmer.dataset",
    # sensors and fusion
    "create_sensor": "mmer.sensors",
    "list_adapters": "mmer.sensors",
    "SensorError": "mmer.sensors",
    "AlignmentBuffer": "mmer.fusion",
    "Window": "mmer.fusion",
    # synthetic lab and replay
    "generate_session": "mmer.synth",
    "SynthConfig": "mmer.synth",
    "write_casme3": "mmer.synth",
    "SyntheticLab": "mmer.synth",
    "open_dataset": "mmer.replay",
    "describe": "mmer.replay",
    "Player": "mmer.replay",
    "ReplayConsumer": "mmer.replay",
    "LockstepClient": "mmer.replay",
    "get_protocol": "mmer.replay",
    "DatasetError": "mmer.replay",
    "LabelError": "mmer.replay",
    # face, flow and spotting
    "FaceTracker": "mmer.features",
    "align_face": "mmer.features",
    "optical_flow": "mmer.features",
    "optical_strain": "mmer.features",
    "Spotter": "mmer.spotting",
    "SpotterConfig": "mmer.spotting",
    "Candidate": "mmer.spotting",
    "spot_recording": "mmer.spotting",
    "spot_video": "mmer.spotting",
    "spotting_scores": "mmer.spotting",
    # recognition
    "build_sample": "mmer.features.sample",
    "SampleConfig": "mmer.features.sample",
    "create_model": "mmer.models",
    "list_models": "mmer.models",
    "load_checkpoint": "mmer.models",
    "save_checkpoint": "mmer.models",
    "Recognizer": "mmer.models",
    "recognition_scores": "mmer.models",
    # live sessions
    "SessionConfig": "mmer.config",
    "load_config": "mmer.config",
    "LivePipeline": "mmer.live",
    "SessionRecorder": "mmer.live",
    "EventOutlet": "mmer.live",
    "Decision": "mmer.live",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # static analysers see the real names
    from mmer.clock import local_clock
    from mmer.config import SessionConfig, load_config
    from mmer.dataset import Event, EventKind, Recording
    from mmer.features import FaceTracker, align_face, optical_flow, optical_strain
    from mmer.features.sample import SampleConfig, build_sample
    from mmer.fusion import AlignmentBuffer, Window
    from mmer.live import Decision, EventOutlet, LivePipeline, SessionRecorder
    from mmer.models import (
        Recognizer,
        create_model,
        list_models,
        load_checkpoint,
        recognition_scores,
        save_checkpoint,
    )
    from mmer.replay import (
        DatasetError,
        LabelError,
        LockstepClient,
        Player,
        ReplayConsumer,
        describe,
        get_protocol,
        open_dataset,
    )
    from mmer.sensors import SensorError, create_sensor, list_adapters
    from mmer.spotting import (
        Candidate,
        Spotter,
        SpotterConfig,
        spot_recording,
        spot_video,
        spotting_scores,
    )
    from mmer.streams import StreamSpec, StreamType, configure_lsl, markers_spec, physio_spec, video_spec
    from mmer.synth import SynthConfig, SyntheticLab, generate_session, write_casme3
    from mmer.transport import FramePublisher, FrameSubscriber, MarkerOutlet, SampleOutlet, VideoOutlet
