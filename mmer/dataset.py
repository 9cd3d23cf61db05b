"""The in-memory shape of a recording, shared by synthetic sets, dataset readers and the player.

A :class:`Recording` is a set of tracks on one relative time base (seconds, ``t=0`` at the first
video frame): :class:`FrameTrack` for video (read lazily, one frame at a time) and
:class:`SampleTrack` for physiology and markers (in memory). Annotations are :class:`Event` rows in
the dataset's own frame indices; problems found while reading are :class:`Defect` rows. Because
live sensors and replayed recordings publish the same :class:`~mmer.streams.StreamSpec`, code
downstream of the player never sees which one it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from mmer.streams import StreamSpec

__all__ = ["EventKind", "Event", "Defect", "FrameTrack", "SampleTrack", "Recording", "FrameError"]


class EventKind(str, Enum):
    """Annotated event types: micro-expression, macro-expression, blink."""

    ME = "me"
    MAE = "mae"
    BLINK = "blink"


@dataclass(frozen=True)
class Event:
    """One annotated interval, in the dataset's frame indices (inclusive on both ends).

    ``emotion`` is normalised to lower case (``Others`` and ``others`` are one class);
    ``apex`` is ``None`` where the dataset gives none (CAS(ME)^3 Part C).
    """

    subject: str
    video: str
    onset: int
    offset: int
    apex: int | None
    kind: EventKind = EventKind.ME
    emotion: str | None = None
    objective_class: str | None = None
    aus: str = ""
    source_row: int | None = None

    @property
    def n_frames(self) -> int:
        """Length as an inclusive frame count."""
        return self.offset - self.onset + 1


@dataclass(frozen=True)
class Defect:
    """A problem found in a dataset, and what was done about it.

    ``action`` starts with ``repaired`` (and says how), ``skipped`` or ``counted``; nothing is
    dropped without a Defect row.
    """

    kind: str
    file: str
    action: str
    subject: str | None = None
    video: str | None = None
    row: int | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        """Plain dict for JSON reports."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "video": self.video,
            "row": self.row,
            "action": self.action,
            "file": self.file,
            "detail": self.detail,
        }


class FrameError(RuntimeError):
    """A frame that exists in the index but cannot be decoded (damaged or truncated file)."""


@dataclass
class FrameTrack:
    """A lazily read video track.

    Parameters
    ----------
    spec : StreamSpec
        The video spec this track publishes as (its ``zmq/endpoint`` is filled by the player).
    indices : ndarray of int64, shape (n,)
        Dataset frame index of each frame, increasing; gaps are frame drops.
    timestamps : ndarray of float64, shape (n,)
        Seconds on the recording's relative time base.
    reader : callable
        ``reader(position) -> ndarray`` returns frame ``position`` (0..n-1): BGR uint8 HxWx3 or
        uint16 HxW millimetres. Raises :class:`FrameError` for damaged frames.
    """

    spec: StreamSpec
    indices: np.ndarray
    timestamps: np.ndarray
    reader: Callable[[int], np.ndarray]

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, position: int) -> np.ndarray:
        """Decode frame ``position``; raises :class:`FrameError` when it is damaged."""
        return self.reader(position)


@dataclass
class SampleTrack:
    """An in-memory sample track: physiology (float, shape (n, n_channels)) or markers (str)."""

    spec: StreamSpec
    timestamps: np.ndarray
    data: np.ndarray | list[str]

    def __len__(self) -> int:
        return len(self.timestamps)


@dataclass
class Recording:
    """One recording (a video and everything synchronised with it)."""

    subject: str
    video: str
    frames: dict[str, FrameTrack] = field(default_factory=dict)
    samples: dict[str, SampleTrack] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    defects: list[Defect] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last timestamp over all tracks."""
        ends = [t.timestamps[-1] for t in [*self.frames.values(), *self.samples.values()] if len(t)]
        starts = [t.timestamps[0] for t in [*self.frames.values(), *self.samples.values()] if len(t)]
        return float(max(ends) - min(starts)) if ends else 0.0

    def iter_frames(self, name: str = "rgb") -> Iterator[tuple[int, float, np.ndarray | None]]:
        """Yield ``(frame_index, t, frame)`` for one frame track; damaged frames yield ``None``."""
        track = self.frames[name]
        for pos in range(len(track)):
            try:
                frame = track.read(pos)
            except FrameError:
                frame = None
            yield int(track.indices[pos]), float(track.timestamps[pos]), frame
