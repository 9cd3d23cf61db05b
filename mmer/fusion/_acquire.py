"""Background acquisition of LSL streams (and the ZeroMQ pixels of video streams) into the buffer."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable

import numpy as np
import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LSLTimeoutError

from mmer.clock import local_clock
from mmer.streams import StreamSpec
from mmer.transport import FrameSubscriber

log = logging.getLogger(__name__)

_CHUNK = 4096
_POLL = 0.02


def resolve_streams(
    *,
    types: Iterable | None = None,
    names: Iterable[str] | None = None,
    source_ids: Iterable[str] | None = None,
    timeout: float = 5.0,
) -> list[pylsl.StreamInfo]:
    """Resolve streams matching any of the given types, names or source ids (all if none given).

    Raises ``RuntimeError`` naming every requested stream that did not appear within ``timeout``.
    """
    wanted = [("type", str(getattr(t, "value", t))) for t in (types or ())]
    wanted += [("name", n) for n in (names or ())]
    wanted += [("source_id", s) for s in (source_ids or ())]
    if not wanted:
        return list(pylsl.resolve_streams(wait_time=min(timeout, 1.0)))
    found: dict[str, pylsl.StreamInfo] = {}
    missing = []
    for prop, value in wanted:
        first = pylsl.resolve_byprop(prop, value, 1, timeout)
        if not first:
            missing.append(f"{prop}={value!r}")
            continue
        # Collect every stream that matches, not only the first to answer (duplicate names).
        for info in [*first, *pylsl.resolve_byprop(prop, value, 64, 1.0)]:
            found.setdefault(info.uid(), info)
    if missing:
        raise RuntimeError(f"LSL streams not found within {timeout:g} s: {', '.join(missing)}")
    return list(found.values())


class LSLWorker(threading.Thread):
    """Pulls one LSL stream into the buffer; for video, also receives its ZeroMQ frames."""

    def __init__(self, buffer, info: pylsl.StreamInfo, *, frames: bool = True) -> None:
        super().__init__(name=f"mmer-acq-{info.name()}", daemon=True)
        self.buffer = buffer
        self.source_id = info.source_id()
        self.inlet = pylsl.StreamInlet(info, max_buflen=max(30, int(buffer.seconds * 2)), recover=True)
        full = self.inlet.info(5.0)
        try:
            spec = StreamSpec.from_info(full)
        except ValueError as err:
            self.inlet.close_stream()
            raise ValueError(
                f"cannot adopt LSL stream {info.name()!r}: {err}; use the lsl-physio adapter to map it"
            ) from err
        self.spec = spec
        self.key = buffer.add_stream(spec)
        self.video = spec.is_video
        self.with_frames = frames and self.video
        self.subscriber: FrameSubscriber | None = None
        if self.with_frames:
            endpoint = spec.extra.get("zmq/endpoint", "")
            if not endpoint:
                raise ValueError(f"video stream {spec.name!r} announces no zmq/endpoint in its metadata")
            self.subscriber = FrameSubscriber(endpoint, streams=[spec.name])
        self._stop_evt = threading.Event()
        self._dtype = np.dtype(self.inlet.np_dtype)
        self._buf = np.zeros((_CHUNK, spec.n_channels), dtype=self._dtype)
        self._next_tc = 0.0
        self.counters = {"announced": 0, "errors": 0, "clock_measurements": 0, "endpoint_changes": 0}
        self._last_frame = time.monotonic()
        self._endpoint_checked = 0.0
        self._uid = info.uid()
        # Frame indices announced on LSL, to count frames whose pixels never came (drops that
        # index gaps cannot see: before the first received frame and after the last one).
        self._announced: deque[int] = deque(maxlen=8192)
        self._first_rx: int | None = None
        self._last_rx: int | None = None
        self._missed_head: int | None = None
        self._finished = False
        self.inlet.open_stream(5.0)
        # The first estimate takes a few round trips; later calls return at once (liblsl keeps it
        # updated in the background), so the acquisition loop never blocks on the clock.
        self._refresh_clock(first_timeout=2.0)

    def stop(self) -> None:
        """Ask the thread to finish (it drains what has arrived first)."""
        self._stop_evt.set()

    def stats(self) -> dict:
        """Worker counters (merged into :meth:`AlignmentBuffer.stats`)."""
        out = dict(self.counters)
        if self.subscriber is not None:
            out["zmq_gaps"] = self.subscriber.gaps
            out["zmq_errors"] = self.subscriber.errors
            out["missed"] = self._missed()
            out["first_index"] = self._first_rx
        return out

    def _missed(self) -> int:
        """Announced frames outside the received index range (the tail only once stopped)."""
        announced = list(self._announced)  # a snapshot: the acquisition thread keeps appending
        if self._first_rx is None:
            return len(announced) if self._finished else 0
        if self._missed_head is None and announced and announced[-1] >= self._first_rx:
            self._missed_head = sum(1 for a in announced if a < self._first_rx)
        tail = sum(1 for a in announced if a > self._last_rx) if self._finished else 0
        return (self._missed_head or 0) + tail

    def _refresh_clock(self, first_timeout: float = 0.05) -> None:
        now = local_clock()
        track = self.buffer._tracks[self.key]
        interval = 0.2 if track.pending_clock else self.buffer.clock_refresh
        if now < self._next_tc:
            return
        self._next_tc = now + interval
        try:
            offset = self.inlet.time_correction(timeout=first_timeout)
        except (LSLTimeoutError, LostError) as err:
            log.info("stream %s: time_correction unavailable (%s)", self.key, err)
            return
        self.counters["clock_measurements"] += 1
        self.buffer.set_clock_offset(self.key, offset, at=local_clock())

    def _pull(self, timeout: float) -> int:
        # Without min_samples liblsl fills the chunk or waits out the timeout: a fast stream
        # arrives in full chunks (little Python per sample, more CPU left to liblsl's receiver),
        # a 200 Hz stream at most _POLL seconds late.
        _, ts = self.inlet.pull_chunk(timeout=timeout, max_samples=_CHUNK, dest_obj=self._buf, as_numpy=True)
        n = len(ts)
        if not n:
            return 0
        data = self._buf[:n]
        if self.video:
            self.counters["announced"] += n
            self._announced.extend(int(i) for i in data[:, 0])
            if not self.with_frames:
                self.buffer.push_frames(self.key, [None] * n, data[:, 0].astype(np.int64), data[:, 1])
        else:
            self.buffer.push_samples(self.key, data, ts)
        return n

    def _follow_endpoint(self) -> None:
        """A silent camera may have restarted on another port: re-read the endpoint its twin announces."""
        now = time.monotonic()
        if now - self._last_frame < self.buffer.stall_timeout or now - self._endpoint_checked < 2.0:
            return
        self._endpoint_checked = now
        # The inlet keeps the metadata it first saw; ask the (possibly restarted) outlet afresh.
        found = pylsl.resolve_byprop("source_id", self.source_id, 1, 0.2) if self.source_id else []
        if not found or found[0].uid() == self._uid:
            return
        probe = pylsl.StreamInlet(found[0])
        try:
            endpoint = probe.info(0.5).desc().child("zmq").child_value("endpoint")
        except (LSLTimeoutError, LostError):
            return
        finally:
            probe.close_stream()
        self._uid = found[0].uid()
        if endpoint and endpoint not in self.subscriber.endpoints:
            log.warning("video stream %s now announces %s; subscribing there", self.key, endpoint)
            self.subscriber.connect(endpoint)
            self.counters["endpoint_changes"] += 1

    def _recv_frames(self, timeout: float = _POLL) -> None:
        self._follow_endpoint()
        frame = self.subscriber.recv(timeout=timeout)
        while frame is not None:
            self.buffer.push_frame(self.key, frame.index, frame.timestamp, frame.data)
            if self._first_rx is None:
                self._first_rx = frame.index
            self._last_rx = frame.index
            self._last_frame = time.monotonic()
            frame = self.subscriber.recv(timeout=0)

    def run(self) -> None:
        while not self._stop_evt.is_set():
            try:
                self._refresh_clock()
                if self.with_frames:
                    self._recv_frames()
                    self._pull(0.0)
                else:
                    self._pull(_POLL)
            except Exception as err:  # noqa: BLE001 - a bad chunk must not kill acquisition
                self.counters["errors"] += 1
                log.exception("stream %s: acquisition error (%s); continuing", self.key, err)
                self._stop_evt.wait(0.1)
        try:
            while self._pull(0.0):
                pass
            if self.with_frames:
                self._recv_frames(timeout=0)
            self._missed()  # settle the head count before the tail is included
            self._finished = True
        finally:
            if self.subscriber is not None:
                self.subscriber.close()
            self.inlet.close_stream()

