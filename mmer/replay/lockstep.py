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

Any local process can reach the socket, so the player trusts no message: one that is not a
single JSON object of the shapes above (a hello with a string name and a list of string stream
names; an ack with an integer step the player has announced; a bye), or that comes from a peer
that never said hello, is dropped and counted in :attr:`LockstepServer.rejected`, and a message
larger than :data:`MAX_MESSAGE_BYTES` never arrives (ZeroMQ disconnects its sender). A consumer
that acknowledges nothing for ``timeout`` seconds is dropped and counted in
:attr:`LockstepServer.dropped`; when no consumer is left, :class:`LockstepError` ends the replay
with a message naming them.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field

import zmq

from mmer.errors import MmerError

__all__ = ["LockstepStep", "LockstepClient", "LockstepServer", "LockstepError", "LOCKSTEP_KEY", "MAX_MESSAGE_BYTES"]

log = logging.getLogger(__name__)

#: ``StreamSpec.extra`` key (``desc/mmer/lockstep`` in LSL metadata) holding the ack endpoint.
LOCKSTEP_KEY = "mmer/lockstep"

#: Largest lockstep message either side accepts (ZeroMQ ``MAXMSGSIZE``): a step with the running
#: counts of a few hundred streams is a few kilobytes.
MAX_MESSAGE_BYTES = 1 << 20


class LockstepError(MmerError, TimeoutError):
    """The lockstep protocol cannot go on: no player answered, or every consumer went silent."""


def _socket(kind: int) -> zmq.Socket:
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    return sock


def _is_int(value: object) -> bool:
    """An integral JSON number (``json`` reads ``1e400`` as ``inf`` and ``true`` as a bool)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())


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
        self._sock = _socket(zmq.DEALER)
        self._sock.connect(endpoint)
        self.endpoint = endpoint
        self.finished = False
        self._sock.send_json({"hello": self.name, "streams": list(streams)})
        if not self._sock.poll(int(timeout * 1000)):
            self._sock.close(linger=0)
            raise LockstepError(f"no lockstep player answered at {endpoint} within {timeout} s")
        reply = _load(self._sock.recv_multipart())
        welcome = reply.get("welcome") if isinstance(reply, dict) else None
        if not isinstance(welcome, list) or not all(isinstance(x, str) for x in welcome):
            self._sock.close(linger=0)
            raise LockstepError(f"{endpoint} answered the hello with {str(reply)[:80]}, not a lockstep welcome")
        self.streams: list[str] = welcome
        #: Messages from the player dropped because they were neither a step nor the end.
        self.rejected = 0

    def next_step(self, timeout: float | None = None) -> LockstepStep | None:
        """Wait for the next step; ``None`` at the end of the replay or after ``timeout`` seconds.

        Check :attr:`finished` to tell the two apart. A message that is not a step or the end is
        dropped and counted in :attr:`rejected`.
        """
        if self.finished:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(wait):
                return None
            parts = self._sock.recv_multipart()
            step = _parse_step(parts)
            if isinstance(step, LockstepStep):
                return step
            if step is None:
                self.finished = True
                return None
            self.rejected += 1
            log.warning("dropping lockstep message from the player: %s (%d dropped so far)", step, self.rejected)

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


def _load(parts: list[bytes]) -> object:
    """The JSON value of a one-part message, or None when it is not one."""
    if len(parts) != 1:
        return None
    try:
        return json.loads(parts[0])
    except (ValueError, UnicodeDecodeError):
        return None


def _parse_step(parts: list[bytes]) -> LockstepStep | str | None:
    """A step, None for the end of the replay, or why the message is neither."""
    msg = _load(parts)
    if not isinstance(msg, dict):
        return f"not one JSON object: {parts[0][:60]!r}" if parts else "an empty message"
    if msg.get("end") is True:
        return None
    step, until, counts = msg.get("step"), msg.get("until"), msg.get("counts", {})
    if not _is_int(step) or step < 0:
        return f"step must be an integer >= 0, got {step!r}"[:120]
    if isinstance(until, bool) or not isinstance(until, (int, float)) or not math.isfinite(until):
        return f"until must be a finite number, got {until!r}"[:120]
    if not isinstance(counts, dict) or not all(_is_int(v) and v >= 0 for v in counts.values()):
        return f"counts must map stream names to counts, got {counts!r}"[:120]
    return LockstepStep(int(step), float(until), str(msg.get("recording", "")), {k: int(v) for k, v in counts.items()})


class LockstepServer:
    """Player side: registers consumers, announces steps, waits for acknowledgements."""

    def __init__(self, *, endpoint: str = "tcp://127.0.0.1:*", window: int = 1) -> None:
        if window < 1:
            raise ValueError(f"lockstep window must be >= 1, got {window}")
        self._sock = _socket(zmq.ROUTER)
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
        self._announced = -1
        #: Messages dropped because their shape was wrong or their sender never said hello.
        self.rejected = 0
        #: Consumers dropped because they acknowledged nothing within the ack timeout.
        self.dropped = 0

    @property
    def consumers(self) -> int:
        """Number of registered consumers."""
        return len(self._consumers)

    def _handle(self, timeout_ms: int) -> bool:
        if not self._sock.poll(timeout_ms):
            return False
        parts = self._sock.recv_multipart()
        ident = parts[0]
        problem = self._check(parts)
        if problem is not None:
            self.rejected += 1
            log.warning("dropping lockstep message from %s: %s (%d dropped so far)",
                        self._names.get(ident, "an unknown peer"), problem, self.rejected)
            return True
        msg = json.loads(parts[1])
        if "hello" in msg:
            self._consumers[ident] = -1
            self._names[ident] = msg["hello"]
            self.wanted.update(msg.get("streams", []))
            self._send(ident, {"welcome": self.streams})
            log.info("lockstep consumer %s joined", msg["hello"])
        elif "ack" in msg:
            self._consumers[ident] = max(self._consumers[ident], int(msg["ack"]))
        else:
            self._consumers.pop(ident, None)
            log.info("lockstep consumer %s left", self._names.pop(ident, "?"))
        return True

    def _check(self, parts: list[bytes]) -> str | None:
        """Why a message (ROUTER parts: identity, payload) is not one the protocol allows; None if it is."""
        if len(parts) != 2:
            return f"{len(parts) - 1} parts, expected 1"
        try:
            msg = json.loads(parts[1])
        except (ValueError, UnicodeDecodeError):
            return f"not JSON: {parts[1][:60]!r}"
        if not isinstance(msg, dict):
            return f"not a JSON object: {type(msg).__name__}"
        if "hello" in msg:
            name, streams = msg["hello"], msg.get("streams", [])
            if not isinstance(name, str) or not 0 < len(name) <= 200:
                return f"hello needs a string name of 1-200 characters, got {name!r}"[:120]
            if not isinstance(streams, list) or not all(isinstance(x, str) for x in streams):
                return f"hello streams must be a list of stream names, got {streams!r}"[:120]
            return None
        if parts[0] not in self._consumers:
            return "the peer never said hello"
        if "ack" in msg:
            ack = msg["ack"]
            if not _is_int(ack) or not -1 <= ack <= self._announced:
                return f"ack must be the number of an announced step (0..{self._announced}), got {ack!r}"[:120]
            return None
        if "bye" in msg:
            return None
        return f"unknown message {sorted(msg)[:5]}"

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
        self._announced = max(self._announced, int(step))
        self._broadcast({"step": step, "until": until, "recording": recording, "counts": counts})

    def wait_acks(self, step: int, *, timeout: float, stop=None) -> None:
        """Block until every consumer has acknowledged ``step - window + 1``.

        A consumer silent for ``timeout`` seconds is dropped (and counted in :attr:`dropped`), so
        the others go on; when none is left, raises :class:`LockstepError` naming the silent ones.
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
                silent = [i for i, s in self._consumers.items() if s < need]
                names = [self._names.pop(i, "?") for i in silent]
                for ident in silent:
                    del self._consumers[ident]
                self.dropped += len(silent)
                log.warning("lockstep: dropping consumer(s) %s: no ack for step %d within %g s", names, need, timeout)
                if not self._consumers:
                    raise LockstepError(
                        f"lockstep: no consumer left; {', '.join(names)} acknowledged no step {need} "
                        f"within {timeout:g} s"
                    ) from None
                break
            self._handle(int(min(left, 0.05) * 1000) + 1)

    def finish(self) -> None:
        """Announce the end of the replay."""
        self._broadcast({"end": True})

    def _broadcast(self, msg: dict) -> None:
        for ident in list(self._consumers):
            self._send(ident, msg)

    def _send(self, ident: bytes, msg: dict) -> None:
        try:
            self._sock.send_multipart([ident, json.dumps(msg).encode()])
        except zmq.ZMQError:
            log.warning("lockstep consumer %s vanished", self._names.get(ident, "?"))
            self._consumers.pop(ident, None)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close(linger=200)
