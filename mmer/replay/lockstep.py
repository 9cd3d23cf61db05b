"""Lockstep protocol: the player advances only when every consumer has acknowledged a step.

The player binds a ZeroMQ ROUTER socket; its address is in every replayed stream's metadata as
``desc/mmer/lockstep`` (``StreamSpec.extra["mmer/lockstep"]``). A consumer connects a DEALER:

1. consumer -> player ``{"hello": name, "streams": [names it subscribed to]}``; player ->
   consumer ``{"welcome": [stream names]}``. Before the first push the player waits until each
   named stream has a connected inlet (and, for video, a ZeroMQ subscription), so nothing is lost
   to a slow join.
2. For each step ``k`` the player pushes that step's samples, frames and markers, then sends
   ``{"step": k, "until": t, "recording": "subject/video", "counts": {stream: total pushed}}``.
   ``until`` is an exclusive watermark on the LSL clock: every item stamped before it has been
   pushed. ``counts`` are running totals per stream, so a consumer knows exactly how many samples
   and frames to wait for (damaged frames are never pushed and never counted).
3. consumer -> player ``{"ack": k}`` once it has processed step ``k``.
4. At the end the player sends ``{"end": true}``.

No data is dropped (the player never runs more than ``window`` steps ahead of the slowest
consumer, so the ZeroMQ high-water mark is never reached) and the order is the schedule order,
so a lockstep replay is deterministic.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field

import zmq

__all__ = ["LockstepStep", "LockstepClient", "LockstepServer", "LOCKSTEP_KEY"]

log = logging.getLogger(__name__)

#: ``StreamSpec.extra`` key (``desc/mmer/lockstep`` in LSL metadata) holding the ack endpoint.
LOCKSTEP_KEY = "mmer/lockstep"


@dataclass(frozen=True)
class LockstepStep:
    """One step announced by the player.

    Attributes
    ----------
    step : int
        Step number, from 0, increasing by one over the whole replay.
    until : float
        Exclusive watermark on the LSL clock: everything stamped earlier has been pushed.
    recording : str
        ``subject/video`` being replayed.
    counts : dict of str to int
        Running number of items pushed per stream name.
    """

    step: int
    until: float
    recording: str
    counts: dict[str, int] = field(default_factory=dict)


class LockstepClient:
    """Consumer side of the lockstep protocol.

    Parameters
    ----------
    endpoint : str
        The player's ack endpoint (``spec.extra["mmer/lockstep"]`` of any replayed stream).
    name : str, optional
        Consumer name shown in the player's log.
    streams : sequence of str, optional
        Streams this consumer has subscribed to; the player waits until each of them has a
        connected LSL inlet (and, for video, a ZeroMQ subscription) before pushing.
    timeout : float
        Seconds to wait for the player's welcome.

    Examples
    --------
    >>> client = LockstepClient(endpoint)            # doctest: +SKIP
    >>> while (step := client.next_step(5.0)):       # doctest: +SKIP
    ...     consume_until(step.counts)
    ...     client.ack(step)
    """

    def __init__(self, endpoint: str, *, name: str | None = None, streams=(), timeout: float = 10.0) -> None:
        if not endpoint:
            raise ValueError("lockstep endpoint is empty: the player was not started with lockstep=True")
        self.name = name or f"consumer-{uuid.uuid4().hex[:6]}"
        self._sock = zmq.Context.instance().socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self.endpoint = endpoint
        self.finished = False
        self._sock.send_json({"hello": self.name, "streams": list(streams)})
        if not self._sock.poll(int(timeout * 1000)):
            self._sock.close(linger=0)
            raise TimeoutError(f"no lockstep player answered at {endpoint} within {timeout} s")
        reply = self._sock.recv_json()
        self.streams: list[str] = list(reply.get("welcome", []))

    def next_step(self, timeout: float | None = None) -> LockstepStep | None:
        """Wait for the next step; ``None`` at the end of the replay or after ``timeout`` seconds.

        Check :attr:`finished` to tell the two apart.
        """
        if self.finished:
            return None
        if not self._sock.poll(None if timeout is None else int(timeout * 1000)):
            return None
        msg = self._sock.recv_json()
        if msg.get("end"):
            self.finished = True
            return None
        return LockstepStep(int(msg["step"]), float(msg["until"]), str(msg.get("recording", "")), dict(msg.get("counts", {})))

    def ack(self, step: LockstepStep | int) -> None:
        """Acknowledge a processed step; the player may then push the next one."""
        number = step.step if isinstance(step, LockstepStep) else int(step)
        self._sock.send_json({"ack": number})

    def close(self) -> None:
        """Leave the replay (the player stops waiting for this consumer)."""
        if not self._sock.closed:
            try:
                self._sock.send_json({"bye": self.name}, flags=zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            self._sock.close(linger=100)

    def __enter__(self) -> LockstepClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LockstepServer:
    """Player side: registers consumers, announces steps, waits for acknowledgements."""

    def __init__(self, *, endpoint: str = "tcp://127.0.0.1:*", window: int = 1) -> None:
        if window < 1:
            raise ValueError(f"lockstep window must be >= 1, got {window}")
        self._sock = zmq.Context.instance().socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as err:
            self._sock.close()
            raise ValueError(f"cannot bind lockstep socket to {endpoint!r}: {err}") from err
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.window = window
        self.streams: list[str] = []
        self._consumers: dict[bytes, int] = {}  # identity -> last acked step
        self._names: dict[bytes, str] = {}
        self.wanted: set[str] = set()

    @property
    def consumers(self) -> int:
        """Number of registered consumers."""
        return len(self._consumers)

    def _handle(self, timeout_ms: int) -> bool:
        if not self._sock.poll(timeout_ms):
            return False
        ident, payload = self._sock.recv_multipart()
        try:
            msg = json.loads(payload)
        except ValueError:
            log.warning("ignoring malformed lockstep message %r", payload[:60])
            return True
        if "hello" in msg:
            self._consumers[ident] = -1
            self._names[ident] = str(msg["hello"])
            self.wanted.update(str(s) for s in msg.get("streams", []))
            self._sock.send_multipart([ident, json.dumps({"welcome": self.streams}).encode()])
            log.info("lockstep consumer %s joined", msg["hello"])
        elif "ack" in msg and ident in self._consumers:
            self._consumers[ident] = max(self._consumers[ident], int(msg["ack"]))
        elif "bye" in msg:
            self._consumers.pop(ident, None)
            log.info("lockstep consumer %s left", self._names.pop(ident, "?"))
        return True

    def wait_for_consumers(self, count: int, timeout: float) -> bool:
        """Block until ``count`` consumers have said hello, or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while len(self._consumers) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._handle(int(min(left, 0.1) * 1000) + 1)
        return True

    def announce(self, step: int, until: float, recording: str, counts: dict[str, int]) -> None:
        """Tell every consumer that step ``step`` has been pushed."""
        self._broadcast({"step": step, "until": until, "recording": recording, "counts": counts})

    def wait_acks(self, step: int, *, timeout: float, stop=None) -> None:
        """Block until every consumer has acknowledged ``step - window + 1``.

        Raises ``TimeoutError`` naming the silent consumers after ``timeout`` seconds.
        """
        need = step - self.window + 1
        deadline = time.monotonic() + timeout
        while self._consumers and min(self._consumers.values()) < need:
            while self._handle(0):
                pass
            if min(self._consumers.values(), default=need) >= need:
                break
            if stop is not None and stop.is_set():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                silent = [self._names.get(i, "?") for i, s in self._consumers.items() if s < need]
                raise TimeoutError(f"lockstep: no ack for step {need} from {silent} within {timeout} s")
            self._handle(int(min(left, 0.05) * 1000) + 1)

    def finish(self) -> None:
        """Announce the end of the replay."""
        self._broadcast({"end": True})

    def _broadcast(self, msg: dict) -> None:
        payload = json.dumps(msg).encode()
        for ident in list(self._consumers):
            try:
                self._sock.send_multipart([ident, payload])
            except zmq.ZMQError:
                log.warning("lockstep consumer %s vanished", self._names.get(ident, "?"))
                self._consumers.pop(ident, None)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close(linger=200)
