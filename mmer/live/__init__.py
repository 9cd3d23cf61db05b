"""Live lab sessions: pipeline, decision events, recording, latency and status.

The pieces join the streaming core (:mod:`mmer.transport`, :mod:`mmer.fusion`), the spotter and
the recogniser into what a lab runs: sensors in, ME decisions out on LSL, a trustworthy recording
beside them.

>>> from mmer.config import load_config
>>> from mmer.live import LivePipeline
>>> summary = LivePipeline(load_config("session.yaml"), record_dir="rec").start().run(duration=60)  # doctest: +SKIP
"""

from mmer.live.events import Decision, EventOutlet, events_spec
from mmer.live.latency import LatencyTracker
from mmer.live.pipeline import LivePipeline, PipelineError
from mmer.live.recorder import RecorderError, SessionRecorder, check_recording_dir
from mmer.live.status import StatusView

__all__ = [
    "LivePipeline",
    "PipelineError",
    "Decision",
    "EventOutlet",
    "events_spec",
    "LatencyTracker",
    "SessionRecorder",
    "RecorderError",
    "check_recording_dir",
    "StatusView",
]
