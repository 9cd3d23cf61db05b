"""Transport: physiology on LSL numpy chunks, frame pixels on ZeroMQ, frame timing on LSL.

Why the split: LSL moves a 1280x720 frame in tens of milliseconds, ZeroMQ multipart in about two
(see DESIGN.md). So pixels go over ZeroMQ PUB/SUB as ``[topic, JSON header, raw buffer]`` (sent
without copying, received with :func:`numpy.frombuffer`; nothing is ever unpickled), while every
camera still pushes one ``(frame_index, capture_time)`` LSL sample per frame so that any LSL
recorder captures video timing. Numeric LSL samples only ever travel through pylsl's numpy path.

Sockets bind to ``127.0.0.1`` by default; pass an explicit endpoint to serve other hosts.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pylsl
import zmq

from mmer.clock import local_clock
from mmer.streams import StreamSpec, StreamType

__all__ = [
    "Frame",
    "FramePublisher",
    "FrameSubscriber",
    "SampleOutlet",
    "VideoOutlet",
    "MarkerOutlet",
    "DEFAULT_ENDPOINT",
    "MAX_FRAME_BYTES",
]

log = logging.getLogger(__name__)

#: Loopback with an ephemeral port: safe default, nothing leaves the host.
DEFAULT_ENDPOINT = "tcp://127.0.0.1:*"

_PROTOCOL = 1
#: Largest frame message a subscriber accepts by default (ZeroMQ ``MAXMSGSIZE``): a 4K RGB frame
#: is 25 MB. A larger message never arrives: ZeroMQ drops the connection for good (a protocol
#: error is not retried), so :meth:`FrameSubscriber.reconnect` connects again; the frame shows as a
#: gap in the indices.
MAX_FRAME_BYTES = 64 << 20
#: Largest subscription message a publisher accepts (a topic is a stream name).
_MAX_SUBSCRIPTION_BYTES = 4096
_DTYPES = frozenset({"uint8", "uint16", "int16", "int32", "float32", "float64"})
_MAX_NDIM = 4


@dataclass(frozen=True)
class Frame:
    """One received frame.

    Attributes
    ----------
    stream : str
        Stream name (the LSL name of the video stream's timing twin).
    index : int
        Frame index as the source numbers it (dataset JPG index, camera counter).
    timestamp : float
        Capture time on the sender's LSL clock, in seconds.
    data : numpy.ndarray
        Pixels (``uint8`` HxWx3 BGR, or ``uint16`` HxW millimetres). Read-only: it is a view on
        the received message buffer, so it costs no copy.
    """

    stream: str
    index: int
    timestamp: float
    data: np.ndarray


def _topic(stream: str) -> bytes:
    # The trailing NUL turns ZeroMQ's prefix matching into exact matching ("a" never gets "ab").
    return stream.encode("utf-8") + b"\0"


class FramePublisher:
    """ZeroMQ publisher for frames (one socket can carry several streams).

    It is an XPUB socket, so it learns when subscribers arrive and leave
    (:meth:`has_subscribers`, :meth:`wait_for_subscribers`); that removes the usual "slow joiner"
    guesswork from tests and replays.

    Parameters
    ----------
    endpoint : str
        Address to bind; the default binds loopback on an ephemeral port. The bound address
        (with the real port) is :attr:`endpoint`.
    hwm : int
        Frames queued per subscriber before ZeroMQ drops new ones (video may drop; a slow
        consumer must never grow memory without bound).
    """

    def __init__(self, *, endpoint: str = DEFAULT_ENDPOINT, hwm: int = 64) -> None:
        if hwm < 1:
            raise ValueError(f"hwm must be >= 1, got {hwm}")
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, _MAX_SUBSCRIPTION_BYTES)
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as err:
            self._sock.close()
            raise ValueError(f"cannot bind frame publisher to {endpoint!r}: {err}") from err
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._lock = threading.Lock()
        self._subs: dict[bytes, int] = {}
        self._closed = False
        self.frames_sent = 0

    def _drain_subscriptions(self) -> None:
        while True:
            try:
                msg = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not msg:
                continue
            topic = msg[1:]
            count = self._subs.get(topic, 0) + (1 if msg[0] == 1 else -1)
            if count > 0:
                self._subs[topic] = count
            else:
                self._subs.pop(topic, None)

    def has_subscribers(self, stream: str | None = None) -> bool:
        """True when some subscriber listens (to ``stream``, or to anything when ``None``)."""
        with self._lock:
            if self._closed:
                return False
            self._drain_subscriptions()
            if stream is None:
                return bool(self._subs)
            return any(_topic(stream).startswith(t) for t in self._subs)

    def wait_for_subscribers(self, timeout: float, *, stream: str | None = None) -> bool:
        """Block until :meth:`has_subscribers` is true or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            if self.has_subscribers(stream):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def send(self, stream: str, index: int, timestamp: float, array: np.ndarray) -> None:
        """Publish one frame without copying its pixels.

        The array must not be modified afterwards (ZeroMQ may still read it while sending);
        a fresh array per frame, as ``VideoCapture.read()`` returns, satisfies this.

        Parameters
        ----------
        stream : str
            Stream name; subscribers filter on it.
        index : int
            Frame index.
        timestamp : float
            Capture time on the LSL clock.
        array : numpy.ndarray
            Pixels; made C-contiguous if it is not.
        """
        arr = np.ascontiguousarray(array)
        if arr.dtype.name not in _DTYPES:
            raise ValueError(f"frame dtype {arr.dtype} not supported; use one of {sorted(_DTYPES)}")
        header = json.dumps(
            {
                "v": _PROTOCOL,
                "stream": stream,
                "index": int(index),
                "t": float(timestamp),
                "dtype": arr.dtype.name,
                "shape": list(arr.shape),
            }
        ).encode("utf-8")
        with self._lock:
            if self._closed:
                raise RuntimeError("frame publisher is closed")
            self._drain_subscriptions()
            self._sock.send_multipart([_topic(stream), header, arr], copy=False)
            self.frames_sent += 1

    def close(self) -> None:
        """Close the socket (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._sock.close(linger=0)

    def __enter__(self) -> FramePublisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FrameSubscriber:
    """ZeroMQ subscriber for frames.

    Malformed messages are logged and counted in :attr:`errors`; gaps in a stream's frame
    indices are counted in :attr:`gaps` (frames the publisher dropped at its high-water mark or
    never sent). A publisher that disappears simply makes :meth:`recv` time out; ZeroMQ
    reconnects by itself when it comes back.

    Parameters
    ----------
    endpoint : str or sequence of str
        Publisher address(es) to connect to.
    streams : sequence of str, optional
        Stream names to receive; ``None`` receives every stream.
    hwm : int
        Frames queued before ZeroMQ drops new ones.
    max_frame_bytes : int
        Largest message accepted (see :data:`MAX_FRAME_BYTES`).
    """

    def __init__(self, endpoint: str | Sequence[str], *, streams: Sequence[str] | None = None, hwm: int = 64,
                 max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        if not endpoints:
            raise ValueError("FrameSubscriber needs at least one endpoint")
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, int(max_frame_bytes))
        self.streams = None if streams is None else list(streams)
        if self.streams is None:
            self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        else:
            for name in self.streams:
                self._sock.setsockopt(zmq.SUBSCRIBE, _topic(name))
        self.endpoints: list[str] = []
        for ep in endpoints:
            self.connect(ep)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._last_index: dict[str, int] = {}
        self.errors = 0
        self.gaps = 0
        self.received = 0

    def connect(self, endpoint: str) -> None:
        """Also receive from another publisher."""
        try:
            self._sock.connect(endpoint)
        except zmq.ZMQError as err:
            raise ValueError(f"cannot connect frame subscriber to {endpoint!r}: {err}") from err
        self.endpoints.append(endpoint)

    def reconnect(self) -> None:
        """Connect to every publisher afresh (after ZeroMQ dropped a connection that sent an
        oversized message; a publisher that merely went away is reconnected by ZeroMQ itself)."""
        for endpoint in self.endpoints:
            with contextlib.suppress(zmq.ZMQError):  # already gone
                self._sock.disconnect(endpoint)
            self._sock.connect(endpoint)

    def recv(self, timeout: float | None = None) -> Frame | None:
        """Receive the next frame, or ``None`` when ``timeout`` seconds pass without one.

        ``timeout=None`` waits forever; ``0`` only returns what is already queued.
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            wait_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._poller.poll(wait_ms):
                return None
            parts = self._sock.recv_multipart(copy=False)
            frame = self._decode(parts)
            if frame is not None:
                return frame
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _decode(self, parts: list) -> Frame | None:
        try:
            if len(parts) != 3:
                raise ValueError(f"expected 3 message parts, got {len(parts)}")
            head = json.loads(parts[1].bytes.decode("utf-8"))
            if not isinstance(head, dict):
                raise ValueError(f"header is a JSON {type(head).__name__}, not an object")
            if head.get("v") != _PROTOCOL:
                raise ValueError(f"unknown protocol version {head.get('v')!r}")
            dtype = head["dtype"]
            if dtype not in _DTYPES:
                raise ValueError(f"dtype {dtype!r} not allowed")
            shape = tuple(int(s) for s in head["shape"])
            if not 1 <= len(shape) <= _MAX_NDIM or any(s < 0 for s in shape):
                raise ValueError(f"bad shape {shape}")
            buf = parts[2].buffer
            expected = math.prod(shape) * np.dtype(dtype).itemsize  # exact: numpy would wrap around
            if len(buf) != expected:
                raise ValueError(f"payload is {len(buf)} bytes, header says {expected}")
            data = np.frombuffer(buf, dtype=dtype).reshape(shape)
            data.flags.writeable = False  # shared by reference downstream; nobody may edit it
            stream, index, ts = head["stream"], head["index"], head["t"]
            if not isinstance(stream, str) or not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise ValueError(f"stream must be a name and index an integer >= 0, got {stream!r}, {index!r}")
            if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not np.isfinite(ts):
                raise ValueError(f"timestamp must be a finite number, got {ts!r}")
            ts = float(ts)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError) as err:
            self.errors += 1
            log.warning("dropping malformed frame message (%s); %d so far", err, self.errors)
            return None
        last = self._last_index.get(stream)
        if last is not None and index > last + 1:
            self.gaps += index - last - 1
        self._last_index[stream] = index
        self.received += 1
        return Frame(stream, index, ts, data)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if not self._sock.closed:
            self._sock.close(linger=0)

    def __enter__(self) -> FrameSubscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_DRAIN_BEFORE_DESTROY_S = 0.2


class _LslOutlet:
    """Lifecycle shared by the plain LSL outlets: consumer checks, close, context manager."""

    _outlet: pylsl.StreamOutlet | None

    def have_consumers(self) -> bool:
        """True when at least one inlet is connected (False once closed)."""
        return self._outlet is not None and bool(self._outlet.have_consumers())

    def wait_for_consumers(self, timeout: float) -> bool:
        """Block until an inlet connects or ``timeout`` seconds pass (False once closed)."""
        return self._outlet is not None and bool(self._outlet.wait_for_consumers(timeout))

    def close(self) -> None:
        """Destroy the outlet (inlets see the stream vanish).

        With inlets connected, the last samples may still be on their way to them, and liblsl
        can crash destroying an outlet in that state (sccn/liblsl#218, seen in CI when a sensor
        stopped under a running pipeline); a short pause lets the inlets take them first.
        """
        outlet, self._outlet = self._outlet, None
        if outlet is not None and outlet.have_consumers():
            time.sleep(_DRAIN_BEFORE_DESTROY_S)
        del outlet

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SampleOutlet(_LslOutlet):
    """LSL outlet for numeric samples that only uses pylsl's numpy path.

    Parameters
    ----------
    spec : StreamSpec
        A numeric stream (physiology, or any non-string spec).
    chunk_size : int
        Passed to liblsl; ``0`` sends each pushed chunk as it is.
    max_buffered : float
        Seconds of data liblsl keeps for slow consumers.
    """

    def __init__(self, spec: StreamSpec, *, chunk_size: int = 0, max_buffered: float = 360) -> None:
        if spec.fmt == "string":
            raise ValueError(f"stream {spec.name!r} is a string stream; use MarkerOutlet")
        self.spec = spec
        self._outlet = pylsl.StreamOutlet(spec.to_info(), chunk_size, int(max_buffered))
        self._dtype = np.dtype(self._outlet.np_dtype)
        self.samples_pushed = 0

    def push_chunk(self, data: np.ndarray, timestamps: np.ndarray) -> None:
        """Push ``n`` samples, each with its own timestamp on the LSL clock.

        Parameters
        ----------
        data : numpy.ndarray, shape (n, n_channels)
            Samples; a 1-D array is accepted for one-channel streams.
        timestamps : numpy.ndarray, shape (n,)
            Capture time of every sample.
        """
        arr = np.asarray(data)
        if arr.ndim == 1 and self.spec.n_channels == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != self.spec.n_channels:
            raise ValueError(
                f"stream {self.spec.name!r}: data must have shape (n, {self.spec.n_channels}), got {arr.shape}"
            )
        ts = np.ascontiguousarray(timestamps, dtype=np.float64)
        if ts.shape != (arr.shape[0],):
            raise ValueError(f"stream {self.spec.name!r}: need {arr.shape[0]} timestamps, got shape {ts.shape}")
        if arr.shape[0] == 0:
            return
        if self._outlet is None:
            raise RuntimeError(f"stream {self.spec.name!r}: outlet is closed")
        arr = np.ascontiguousarray(arr, dtype=self._dtype)
        # pylsl would turn a timestamp array into a ctypes array element by element; hand liblsl
        # the numpy buffers directly instead (same call, no Python loop).
        errcode = self._outlet.do_push_chunk_n(
            self._outlet.obj,
            ctypes.c_void_p(arr.ctypes.data),
            ctypes.c_long(arr.size),
            ctypes.c_void_p(ts.ctypes.data),
            ctypes.c_int(1),
        )
        pylsl.util.handle_error(errcode)
        self.samples_pushed += arr.shape[0]



class VideoOutlet:
    """A video stream: pixels on ZeroMQ, one ``(frame_index, capture_time)`` LSL sample per frame.

    Parameters
    ----------
    spec : StreamSpec
        A ``VideoRGB`` or ``VideoDepth`` spec (see :func:`mmer.streams.video_spec`).
    publisher : FramePublisher, optional
        Share one publisher between streams; by default the outlet binds its own at the spec's
        ``zmq/endpoint`` (an endpoint ending in ``:*`` picks a free port). The LSL metadata always
        carries the endpoint actually bound, in :attr:`spec`.
    """

    def __init__(self, spec: StreamSpec, *, publisher: FramePublisher | None = None) -> None:
        if not spec.is_video:
            raise ValueError(f"stream {spec.name!r} has type {spec.type.value}; VideoOutlet needs a video spec")
        self._own_publisher = publisher is None
        if publisher is None:
            publisher = FramePublisher(endpoint=spec.extra.get("zmq/endpoint") or DEFAULT_ENDPOINT)
        self.publisher = publisher
        if spec.extra.get("zmq/endpoint") != publisher.endpoint:
            spec = spec.with_(extra={**spec.extra, "zmq/endpoint": publisher.endpoint})
        self.spec = spec
        self._depth = spec.type is StreamType.VIDEO_DEPTH
        self._width = int(spec.extra.get("video/width", 0) or 0)
        self._height = int(spec.extra.get("video/height", 0) or 0)
        self._timing = SampleOutlet(spec)
        self._row = np.zeros((1, 2), dtype=np.float64)
        self.frames_pushed = 0

    def _check(self, frame: np.ndarray) -> None:
        if self._depth:
            ok = frame.ndim == 2 and frame.dtype == np.uint16
            want = "uint16 HxW"
        else:
            ok = frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
            want = "uint8 HxWx3"
        if not ok:
            raise ValueError(f"stream {self.spec.name!r}: frame must be {want}, got {frame.dtype} {frame.shape}")
        if self._width and self._height and frame.shape[:2] != (self._height, self._width):
            raise ValueError(
                f"stream {self.spec.name!r}: frame is {frame.shape[1]}x{frame.shape[0]}, "
                f"spec says {self._width}x{self._height}"
            )

    def push(self, frame: np.ndarray, index: int, timestamp: float) -> None:
        """Publish one frame and its timing sample (timestamp = capture time on the LSL clock)."""
        self._check(frame)
        self.publisher.send(self.spec.name, index, timestamp, frame)
        self._row[0, 0] = index
        self._row[0, 1] = timestamp
        self._timing.push_chunk(self._row, np.array([timestamp]))
        self.frames_pushed += 1

    def have_consumers(self) -> bool:
        """True when an LSL inlet or a ZeroMQ subscriber listens."""
        return self._timing.have_consumers() or self.publisher.has_subscribers(self.spec.name)

    def wait_for_consumers(self, timeout: float) -> bool:
        """Block until both an LSL inlet and a ZeroMQ subscriber listen, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        if not self._timing.wait_for_consumers(timeout):
            return False
        return self.publisher.wait_for_subscribers(max(0.0, deadline - time.monotonic()), stream=self.spec.name)

    def close(self) -> None:
        """Close the LSL twin and, if this outlet owns it, the publisher."""
        self._timing.close()
        if self._own_publisher:
            self.publisher.close()

    def __enter__(self) -> VideoOutlet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MarkerOutlet(_LslOutlet):
    """LSL outlet for one-channel string markers (events, ground truth).

    Parameters
    ----------
    spec : StreamSpec
        A string stream (see :func:`mmer.streams.markers_spec`).
    """

    def __init__(self, spec: StreamSpec) -> None:
        if spec.fmt != "string" or spec.n_channels != 1:
            raise ValueError(f"stream {spec.name!r}: MarkerOutlet needs a one-channel string spec")
        self.spec = spec
        self._outlet = pylsl.StreamOutlet(spec.to_info())
        self.markers_pushed = 0

    def push(self, text: str, timestamp: float | None = None) -> None:
        """Push one marker; ``timestamp`` defaults to now on the LSL clock."""
        if not isinstance(text, str):
            raise ValueError(f"marker must be a str, got {type(text).__name__}")
        if self._outlet is None:
            raise RuntimeError(f"stream {self.spec.name!r}: outlet is closed")
        self._outlet.push_sample([text], local_clock() if timestamp is None else float(timestamp))
        self.markers_pushed += 1

