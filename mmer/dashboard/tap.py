"""Put the live spotter's score on LSL, so that a dashboard in another process can draw it."""

from __future__ import annotations

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
    spotter thread after each frame; it only reads the spotter's score history and pushes the
    entries it has not pushed yet (a few microseconds per frame).

    Parameters
    ----------
    source_id : str
        LSL source id of the outlet.
    """

    def __init__(self, source_id: str = "mmer-spot") -> None:
        info = pylsl.StreamInfo(SCORE_STREAM, SCORE_TYPE, 3, pylsl.IRREGULAR_RATE, pylsl.cf_double64, source_id)
        channels = info.desc().append_child("channels")
        for label in ("frame", "track", "score"):
            channels.append_child("channel").append_child_value("label", label)
        self._outlet = pylsl.StreamOutlet(info)
        self._seen: dict[str, int] = {}

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
                self._outlet.push_sample([float(index), float(TRACKS.index(name)), float(score)], t + clock_offset)
            if fresh:
                self._seen[name] = fresh[0][0]

    def close(self) -> None:
        """Close the outlet."""
        del self._outlet
