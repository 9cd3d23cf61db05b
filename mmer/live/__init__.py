"""Live lab sessions: pipeline, decision events, recording, latency and status.

The pieces join the streaming core (:mod:`mmer.transport`, :mod:`mmer.fusion`), the spotter and
the recogniser into what a lab runs: sensors in, ME decisions out on LSL, a trustworthy recording
beside them.
"""

from mmer.live.events import Decision, EventOutlet, events_spec
from mmer.live.latency import LatencyTracker
from mmer.live.recorder import RecorderError, SessionRecorder, check_recording_dir

__all__ = [
    "Decision",
    "EventOutlet",
    "events_spec",
    "LatencyTracker",
    "SessionRecorder",
    "RecorderError",
    "check_recording_dir",
]
