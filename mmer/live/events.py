"""Decisions as LSL markers: the ``mmer.events`` stream that experiment software subscribes to.

Each candidate gets two decisions: an ``early`` one from video as soon as the candidate closes,
and a ``late`` fused one once its physiological window is complete. Each is one JSON string on a
one-channel string marker stream; the LSL timestamp is the candidate's onset on the LSL clock
(the source time of what was seen), and the JSON carries when it was published, so a subscriber
knows both what happened when, and how late it heard of it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from mmer.clock import local_clock
from mmer.streams import StreamSpec, markers_spec
from mmer.transport import MarkerOutlet

__all__ = ["Decision", "EventOutlet", "STAGES", "events_spec"]

#: Decision stages, in the order they are published for one candidate.
STAGES = ("early", "late")
_KINDS = ("me", "mae")


@dataclass(frozen=True, kw_only=True)
class Decision:
    """One published decision about one spotted candidate.

    Parameters
    ----------
    candidate_id : int
        Counts candidates in this run from 0; the early and late decision share it.
    stage : {"early", "late"}
        ``early``: video only, right after the candidate closed. ``late``: fused with physiology.
    kind : {"me", "mae"}
        Micro- or macro-expression.
    onset, apex, offset : int
        Frame indices in the RGB stream's own numbering (inclusive).
    t_onset, t_apex, t_offset : float
        The same instants on the LSL clock (seconds).
    label : str
        The most probable class.
    probabilities : mapping of str to float
        Class probabilities (sum to 1).
    modalities : sequence of str
        Modalities the model actually used (``rgb``, ``depth``, ``eda``...); a stalled sensor
        is absent here and listed in ``missing``.
    missing : sequence of str
        Modalities the model expects but did not get for this decision.
    model_id : str
        Identifier of the checkpoint that decided.
    score : float
        The spotter's apex score.
    latency_ms : float
        Measured latency: for ``early`` from the capture of the candidate's last frame to
        publication; for ``late`` from the end of the physiological window to publication.
    t_published : float
        LSL clock time of publication.
    """

    candidate_id: int
    stage: str
    kind: str
    onset: int
    apex: int
    offset: int
    t_onset: float
    t_apex: float
    t_offset: float
    label: str
    probabilities: Mapping[str, float]
    modalities: Sequence[str]
    missing: Sequence[str] = ()
    model_id: str = ""
    score: float = float("nan")
    latency_ms: float = float("nan")
    t_published: float = float("nan")
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        if not self.onset <= self.apex <= self.offset:
            raise ValueError(f"need onset <= apex <= offset, got {self.onset}, {self.apex}, {self.offset}")

    def to_json(self) -> str:
        """The marker text: one JSON object, non-finite numbers as ``null``."""
        data = asdict(self)
        data["probabilities"] = dict(self.probabilities)
        data["modalities"] = list(self.modalities)
        data["missing"] = list(self.missing)
        data["extra"] = dict(self.extra)
        return json.dumps(_finite(data), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Decision:
        """Parse a marker written by :meth:`to_json`."""
        data = json.loads(text)
        for key in ("score", "latency_ms", "t_published"):
            if data.get(key) is None:
                data[key] = float("nan")
        data["modalities"] = tuple(data.get("modalities", ()))
        data["missing"] = tuple(data.get("missing", ()))
        return cls(**data)


def _finite(obj):
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def events_spec(name: str = "mmer.events", *, source_id: str | None = None) -> StreamSpec:
    """Spec of the decision marker stream."""
    return markers_spec(name, source_id=source_id, label="decision").with_(model="mmer.live")


class EventOutlet:
    """Publish :class:`Decision` objects on an LSL marker stream.

    Parameters
    ----------
    name : str
        Stream name (``mmer.events`` by convention).
    source_id : str, optional
        Stable id so subscribers recover after a restart; defaults to ``name``.
    """

    def __init__(self, *, name: str = "mmer.events", source_id: str | None = None) -> None:
        if not name:
            raise ValueError("event stream name must not be empty")
        self.spec = events_spec(name, source_id=source_id)
        self._outlet = MarkerOutlet(self.spec)
        self.published: list[Decision] = []

    def publish(self, decision: Decision, *, since: float | None = None) -> Decision:
        """Stamp ``t_published`` and push; returns the decision as sent.

        ``since`` (LSL clock) is what the latency is measured from: the capture time of the
        candidate's last frame for early decisions, the end of the physiological window for late
        ones. Without it the decision's own ``latency_ms`` is kept.
        """
        now = local_clock()
        changes: dict = {"t_published": now}
        if since is not None:
            changes["latency_ms"] = (now - since) * 1000.0
        decision = replace(decision, **changes)
        self._outlet.push(decision.to_json(), timestamp=decision.t_onset)
        self.published.append(decision)
        return decision

    def wait_for_consumers(self, timeout: float) -> bool:
        """Block until a subscriber connects or ``timeout`` passes."""
        return self._outlet.wait_for_consumers(timeout)

    def close(self) -> None:
        """Destroy the outlet."""
        self._outlet.close()

    def __enter__(self) -> EventOutlet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

