"""A ready-made consumer of a replay: plain pylsl inlets + a FrameSubscriber + the lockstep client.

Tests, benchmarks and the live pipeline use it to receive exactly what the player pushed, step by
step. Streams are resolved by name on LSL; video pixels come from the ZeroMQ endpoint found in each
video stream's metadata; the lockstep endpoint from ``desc/mmer/lockstep``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pylsl

from mmer.replay.lockstep import LockstepClient, LockstepStep
from mmer.transport import Frame, FrameSubscriber

__all__ = ["ReplayConsumer", "Received"]

log = logging.getLogger(__name__)


@dataclass
class Received:
    """Everything one step delivered: ``samples[name] = (data, timestamps)``, frames and markers."""

    step: LockstepStep | None
    samples: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    markers: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    frames: dict[str, list[Frame]] = field(default_factory=dict)


class ReplayConsumer:
    """Connect to a running :class:`~mmer.replay.Player`'s streams.

    Parameters
    ----------
    names : sequence of str
        LSL stream names to consume (with the player's prefix).
    lockstep : bool
        Join the player's lockstep protocol (its endpoint is read from the stream metadata).
    timeout : float
        Seconds to wait for each stream and for the lockstep handshake.
    name : str, optional
        Consumer name shown in the player's log.
    """

    def __init__(self, names: Sequence[str], *, lockstep: bool = True, timeout: float = 10.0, name: str | None = None) -> None:
        if not names:
            raise ValueError("ReplayConsumer needs at least one stream name")
        self.inlets: dict[str, pylsl.StreamInlet] = {}
        self.kinds: dict[str, str] = {}
        self.received: dict[str, int] = {}
        endpoints: set[str] = set()
        lockstep_endpoint = ""
        video_names = []
        for stream in names:
            found = pylsl.resolve_byprop("name", stream, 1, timeout)
            if not found:
                self.close()
                raise TimeoutError(f"stream {stream!r} not found on LSL within {timeout} s")
            inlet = pylsl.StreamInlet(found[0], max_buflen=360, processing_flags=0)
            inlet.open_stream(timeout)
            info = inlet.info(timeout)
            desc = info.desc()
            zmq_endpoint = desc.child("zmq").child_value("endpoint")
            lockstep_endpoint = lockstep_endpoint or desc.child("mmer").child_value("lockstep")
            if info.type() in ("VideoRGB", "VideoDepth") and zmq_endpoint:
                endpoints.add(zmq_endpoint)
                video_names.append(stream)
                self.kinds[stream] = "video"
            elif info.channel_format() == pylsl.cf_string:
                self.kinds[stream] = "markers"
            else:
                self.kinds[stream] = "samples"
            self.inlets[stream] = inlet
            self.received[stream] = 0
        self.subscriber = FrameSubscriber(sorted(endpoints), streams=video_names, hwm=1000) if video_names else None
        self.frames_received: dict[str, int] = {n: 0 for n in video_names}
        self._frame_backlog: dict[str, list[Frame]] = {n: [] for n in video_names}
        self.client: LockstepClient | None = None
        if lockstep:
            if not lockstep_endpoint:
                self.close()
                raise ValueError("the streams carry no desc/mmer/lockstep endpoint: is the player in lockstep mode?")
            self.client = LockstepClient(lockstep_endpoint, name=name, streams=list(self.inlets), timeout=timeout)

    def next(self, timeout: float = 10.0) -> Received | None:
        """Wait for the next lockstep step and collect exactly what it pushed; ``None`` at the end."""
        if self.client is None:
            raise RuntimeError("next() needs lockstep=True")
        step = self.client.next_step(timeout)
        if step is None:
            if not self.client.finished:
                raise TimeoutError(f"no lockstep step within {timeout} s")
            return None
        out = Received(step=step)
        deadline = time.monotonic() + timeout
        for stream, inlet in self.inlets.items():
            want = int(step.counts.get(stream, 0))
            kind = self.kinds[stream]
            if kind == "video":
                frames = self._recv_frames(stream, want, deadline)
                out.frames[stream] = frames
                continue
            parts, stamps = [], []
            while self.received[stream] < want:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{stream}: got {self.received[stream]} of {want} samples for step {step.step}")
                data, ts = inlet.pull_chunk(timeout=min(left, 0.05), max_samples=want - self.received[stream], as_numpy=True)
                if len(ts):
                    parts.append(data)
                    stamps.append(np.asarray(ts))
                    self.received[stream] += len(ts)
            ts_all = np.concatenate(stamps) if stamps else np.zeros(0)
            if kind == "markers":
                texts = [bytes(v).decode("utf-8") for part in parts for v in part[:, 0]]
                out.markers[stream] = list(zip(texts, ts_all.tolist()))
            else:
                out.samples[stream] = (np.concatenate(parts) if parts else np.zeros((0, inlet.channel_count)), ts_all)
        return out

    def _recv_frames(self, stream: str, want: int, deadline: float) -> list[Frame]:
        got = []
        while self.frames_received[stream] < want:
            backlog = self._frame_backlog[stream]
            if backlog:
                got.append(backlog.pop(0))
                self.frames_received[stream] += 1
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{stream}: got {self.frames_received[stream]} of {want} frames")
            frame = self.subscriber.recv(min(left, 0.05))
            if frame is None:
                continue
            if frame.stream == stream:
                got.append(frame)
                self.frames_received[stream] += 1
            else:
                self._frame_backlog[frame.stream].append(frame)
        return got

    def drain(self, timeout: float = 0.05) -> int:
        """Without lockstep: pull whatever has arrived on every stream and discard it.

        Returns the number of items received; counts accumulate in :attr:`received` and
        :attr:`frames_received`.
        """
        got = 0
        for stream, inlet in self.inlets.items():
            if self.kinds[stream] == "video":
                inlet.pull_chunk(timeout=0.0, max_samples=4096, as_numpy=True)
                continue
            _, ts = inlet.pull_chunk(timeout=0.0, max_samples=4096, as_numpy=True)
            self.received[stream] += len(ts)
            got += len(ts)
        if self.subscriber is not None:
            frame = self.subscriber.recv(timeout)
            while frame is not None:
                self.frames_received[frame.stream] = self.frames_received.get(frame.stream, 0) + 1
                got += 1
                frame = self.subscriber.recv(0)
        return got

    def run(self, callback: Callable[[Received], None] | None = None, *, timeout: float = 10.0) -> int:
        """Consume and acknowledge every step until the replay ends; returns the number of steps."""
        steps = 0
        while (got := self.next(timeout)) is not None:
            if callback is not None:
                callback(got)
            self.client.ack(got.step)
            steps += 1
        return steps

    def close(self) -> None:
        """Close inlets, subscriber and lockstep client."""
        if getattr(self, "client", None) is not None:
            self.client.close()
        if getattr(self, "subscriber", None) is not None:
            self.subscriber.close()
        for inlet in self.inlets.values():
            inlet.close_stream()
        self.inlets = {}

    def __enter__(self) -> ReplayConsumer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
