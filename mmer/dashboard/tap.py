"""Put the live spotter's score on LSL, so that a dashboard in another process can draw it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pylsl

from mmer.dashboard.watch import SCORE_STREAM, SCORE_TYPE

__all__ = ["ScoreTap", "TRACKS"]

#: Spotter tracks by their channel code on the score stream.
TRACKS: tuple[str, ...] = ("me", "mae")


class ScoreTap:
    """An LSL outlet (``mmer.spot``) with one sample per frame and spotter track.

    Channels: frame index, track (0: the ME scale, 1: the macro scale), score. The timestamp is
    the frame's capture time on this machine's LSL clock. The pipeline calls the tap from its
    spotter thread after each frame; it only reads the spotter's score history, and pushes the
    entries it has not pushed yet as one chunk every ``period`` seconds: a sample per frame cost
    the spotter thread about 2 % of a core once the dashboard was connected (py-spy, load 8).

    Parameters
    ----------
    source_id : str
        LSL source id of the outlet.
    period : float
        Seconds between chunks (the score reaches the page that much later, at most).
    """

    def __init__(self, source_id: str = "mmer-spot", *, period: float = 0.1) -> None:
        info = pylsl.StreamInfo(SCORE_STREAM, SCORE_TYPE, 3, pylsl.IRREGULAR_RATE, pylsl.cf_double64, source_id)
        channels = info.desc().append_child("channels")
        for label in ("frame", "track", "score"):
            channels.append_child("channel").append_child_value("label", label)
        self._outlet = pylsl.StreamOutlet(info)
        self._seen: dict[str, int] = {}
        self.period = period
        self._samples: list[list[float]] = []
        self._stamps: list[float] = []
        self._pushed_at = 0.0

    def __call__(self, signal: Mapping[str, Sequence[tuple[int, float, float]]], clock_offset: float) -> None:
        """Push the score entries ``(frame index, capture time, score)`` added since the last call."""
        for name, entries in signal.items():
            if name not in TRACKS:
                continue
            seen = self._seen.get(name, -1)
            fresh = []
            for entry in reversed(entries):
                if entry[0] <= seen:
                    break
                fresh.append(entry)
            for index, t, score in reversed(fresh):
                self._samples.append([float(index), float(TRACKS.index(name)), float(score)])
                self._stamps.append(t + clock_offset)
            if fresh:
                self._seen[name] = fresh[0][0]
        now = time.monotonic()
        if self._samples and now - self._pushed_at >= self.period:
            self._outlet.push_chunk(self._samples, self._stamps)
            self._samples, self._stamps, self._pushed_at = [], [], now

    def close(self) -> None:
        """Push what is still held back, and close the outlet."""
        if self._samples:
            self._outlet.push_chunk(self._samples, self._stamps)
        del self._outlet
