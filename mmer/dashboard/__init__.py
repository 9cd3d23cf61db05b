"""A live dashboard in the browser: every stream's health, the face, the physiology and the decisions.

``mmer dashboard`` attaches read-only to any running LSL session (one that mmer did not start
included) with inlets of its own; ``mmer live --dashboard`` starts the same server in a child
process beside the pipeline, and puts the spotter's score on LSL (``mmer.spot``) for it.

>>> from mmer.dashboard import serve
>>> serve(host="127.0.0.1", port=8765)  # doctest: +SKIP
"""

from mmer.dashboard.process import DashboardProcess
from mmer.dashboard.server import DashboardServer, RecordingStatus, parse_listen, serve
from mmer.dashboard.tap import ScoreTap
from mmer.dashboard.watch import SCORE_STREAM, SCORE_TYPE, SessionWatcher, physio_events

__all__ = [
    "DashboardProcess",
    "DashboardServer",
    "RecordingStatus",
    "SCORE_STREAM",
    "SCORE_TYPE",
    "ScoreTap",
    "SessionWatcher",
    "parse_listen",
    "physio_events",
    "serve",
]
