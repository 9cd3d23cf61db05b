"""Stream conventions: the one place that declares what a stream is.

A :class:`StreamSpec` names a stream, its type, nominal rate, channels (label, unit, type) and a
``source_id``, and converts to and from :class:`pylsl.StreamInfo` with XDF-compatible metadata
(``desc/channels/channel/{label,unit,type}``, ``desc/acquisition``). Live sensors and replayed
datasets both build their outlets from these specs, so downstream code cannot tell them apart.

Video streams ride ZeroMQ for pixels; their LSL twin carries one ``(frame_index, capture_time)``
sample per frame and ``desc/synchronization/can_drop_samples=true``.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

import pylsl

__all__ = [
    "Channel",
    "StreamSpec",
    "StreamType",
    "PHYSIO_TYPES",
    "physio_spec",
    "video_spec",
    "markers_spec",
    "configure_lsl",
]


class StreamType(str, Enum):
    """LSL ``type`` strings used by mmer."""

    EDA = "EDA"
    ECG = "ECG"
    PPG = "PPG"
    RSP = "RSP"
    VIDEO_RGB = "VideoRGB"
    VIDEO_DEPTH = "VideoDepth"
    MARKERS = "Markers"


PHYSIO_TYPES: tuple[StreamType, ...] = (StreamType.EDA, StreamType.ECG, StreamType.PPG, StreamType.RSP)

_PHYSIO_UNITS = {
    StreamType.EDA: "microsiemens",
    StreamType.ECG: "millivolts",
    StreamType.PPG: "normalized",
    StreamType.RSP: "normalized",
}

_FORMATS = {
    "float32": pylsl.cf_float32,
    "double64": pylsl.cf_double64,
    "int32": pylsl.cf_int32,
    "int16": pylsl.cf_int16,
    "int8": pylsl.cf_int8,
    "string": pylsl.cf_string,
}
_FORMAT_NAMES = {v: k for k, v in _FORMATS.items()}


@dataclass(frozen=True)
class Channel:
    """One channel: XDF ``label``, ``unit`` and ``type``."""

    label: str
    unit: str = ""
    type: str = ""


@dataclass(frozen=True)
class StreamSpec:
    """Declaration of one stream.

    Parameters
    ----------
    name : str
        LSL stream name, for example ``"mmer.eda"``.
    type : StreamType
        Stream type (``EDA``, ``ECG``, ``PPG``, ``RSP``, ``VideoRGB``, ``VideoDepth``, ``Markers``).
    rate : float
        Nominal sampling rate in Hz; ``0.0`` for irregular streams (markers).
    channels : tuple of Channel
        Channel declarations; their count is the LSL channel count.
    source_id : str
        Stable identifier so that inlets recover after the outlet restarts.
    fmt : str
        LSL channel format name (``float32``, ``double64``, ``string``, ...).
    manufacturer, model : str
        ``desc/acquisition`` fields.
    extra : mapping of str to str
        Further ``desc`` entries; a ``/`` in a key nests (``"video/width"``).
    """

    name: str
    type: StreamType
    rate: float
    channels: tuple[Channel, ...]
    source_id: str
    fmt: str = "float32"
    manufacturer: str = "mmer"
    model: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("stream name must not be empty")
        if self.rate < 0:
            raise ValueError(f"stream {self.name!r}: rate must be >= 0, got {self.rate}")
        if not self.channels:
            raise ValueError(f"stream {self.name!r}: needs at least one channel")
        if self.fmt not in _FORMATS:
            raise ValueError(f"stream {self.name!r}: fmt must be one of {sorted(_FORMATS)}, got {self.fmt!r}")
        object.__setattr__(self, "type", StreamType(self.type))

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.channels)

    @property
    def labels(self) -> list[str]:
        """Channel labels in order."""
        return [ch.label for ch in self.channels]

    @property
    def is_video(self) -> bool:
        """True for RGB and depth streams (pixels on ZeroMQ, timing on LSL)."""
        return self.type in (StreamType.VIDEO_RGB, StreamType.VIDEO_DEPTH)

    @property
    def is_physio(self) -> bool:
        """True for EDA, ECG, PPG and RSP streams."""
        return self.type in PHYSIO_TYPES

    def with_(self, **changes) -> StreamSpec:
        """Return a copy with some fields replaced."""
        return replace(self, **changes)

    def to_info(self) -> pylsl.StreamInfo:
        """Build a :class:`pylsl.StreamInfo` with XDF-compatible ``desc`` metadata."""
        info = pylsl.StreamInfo(
            self.name, self.type.value, self.n_channels, self.rate, _FORMATS[self.fmt], self.source_id
        )
        desc = info.desc()
        chans = desc.append_child("channels")
        for ch in self.channels:
            node = chans.append_child("channel")
            node.append_child_value("label", ch.label)
            node.append_child_value("unit", ch.unit)
            node.append_child_value("type", ch.type)
        acq = desc.append_child("acquisition")
        acq.append_child_value("manufacturer", self.manufacturer)
        acq.append_child_value("model", self.model)
        if self.is_video:
            desc.append_child("synchronization").append_child_value("can_drop_samples", "true")
        for key, value in self.extra.items():
            _set_desc(desc, key, str(value))
        return info

    @classmethod
    def from_info(cls, info: pylsl.StreamInfo) -> StreamSpec:
        """Rebuild a spec from a resolved :class:`pylsl.StreamInfo` (full metadata needed).

        Unknown stream types are kept as ``Markers`` only if they are string streams; anything
        else raises ``ValueError`` naming the type, because mmer cannot guess its role.
        """
        try:
            stype = StreamType(info.type())
        except ValueError:
            raise ValueError(
                f"stream {info.name()!r} has type {info.type()!r}; expected one of "
                f"{[t.value for t in StreamType]}"
            ) from None
        desc = info.desc()
        channels = []
        node = desc.child("channels").child("channel")
        while not node.empty():
            channels.append(
                Channel(node.child_value("label"), node.child_value("unit"), node.child_value("type"))
            )
            node = node.next_sibling("channel")
        if len(channels) != info.channel_count():
            channels = [Channel(f"ch{i}") for i in range(info.channel_count())]
        acq = desc.child("acquisition")
        extra = {}
        for section in ("video", "zmq", "intrinsics", "mmer"):
            child = desc.child(section).first_child()
            while not child.empty():
                extra[f"{section}/{child.name()}"] = child.child_value()
                child = child.next_sibling()
        return cls(
            name=info.name(),
            type=stype,
            rate=info.nominal_srate(),
            channels=tuple(channels),
            source_id=info.source_id(),
            fmt=_FORMAT_NAMES.get(info.channel_format(), "float32"),
            manufacturer=acq.child_value("manufacturer") or "unknown",
            model=acq.child_value("model"),
            extra=extra,
        )


def _set_desc(desc: pylsl.XMLElement, key: str, value: str) -> None:
    parts = key.split("/")
    node = desc
    for part in parts[:-1]:
        child = node.child(part)
        node = node.append_child(part) if child.empty() else child
    node.append_child_value(parts[-1], value)


def physio_spec(
    kind: StreamType | str,
    *,
    rate: float = 200.0,
    name: str | None = None,
    source_id: str | None = None,
    manufacturer: str = "mmer",
    model: str = "",
) -> StreamSpec:
    """Spec for a one-channel physiological stream (EDA, ECG, PPG or RSP)."""
    kind = StreamType(kind)
    if kind not in PHYSIO_TYPES:
        raise ValueError(f"physio kind must be one of {[t.value for t in PHYSIO_TYPES]}, got {kind.value!r}")
    label = kind.value
    return StreamSpec(
        name=name or f"mmer.{label.lower()}",
        type=kind,
        rate=rate,
        channels=(Channel(label, _PHYSIO_UNITS[kind], label),),
        source_id=source_id or f"mmer-{label.lower()}",
        fmt="float32",
        manufacturer=manufacturer,
        model=model,
    )


def video_spec(
    kind: StreamType | str,
    *,
    width: int,
    height: int,
    fps: float,
    endpoint: str,
    name: str | None = None,
    source_id: str | None = None,
    manufacturer: str = "mmer",
    model: str = "",
    extra: Mapping[str, str] | None = None,
) -> StreamSpec:
    """Spec for the LSL twin of a video stream: one ``(frame_index, capture_time)`` per frame.

    ``endpoint`` is the ZeroMQ address that carries the pixels; consumers find it in
    ``desc/zmq/endpoint``.
    """
    kind = StreamType(kind)
    if kind not in (StreamType.VIDEO_RGB, StreamType.VIDEO_DEPTH):
        raise ValueError(f"video kind must be VideoRGB or VideoDepth, got {kind.value!r}")
    depth = kind is StreamType.VIDEO_DEPTH
    meta = {
        "video/width": str(width),
        "video/height": str(height),
        "video/pixel_format": "uint16_mm" if depth else "bgr24",
        "zmq/endpoint": endpoint,
    }
    meta.update(extra or {})
    suffix = "depth" if depth else "rgb"
    return StreamSpec(
        name=name or f"mmer.{suffix}",
        type=kind,
        rate=fps,
        channels=(Channel("frame_index", "count", "FrameIndex"), Channel("capture_time", "seconds", "Timestamp")),
        source_id=source_id or f"mmer-{suffix}",
        fmt="double64",
        manufacturer=manufacturer,
        model=model,
        extra=meta,
    )


def markers_spec(name: str, *, source_id: str | None = None, label: str = "event") -> StreamSpec:
    """Spec for an irregular one-channel string marker stream (events, ground truth)."""
    return StreamSpec(
        name=name,
        type=StreamType.MARKERS,
        rate=0.0,
        channels=(Channel(label, "", "Marker"),),
        source_id=source_id or name,
        fmt="string",
    )


_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CONFIG_DIRS: list[str] = []


def _remove_config_dirs() -> None:
    for folder in _CONFIG_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


def configure_lsl(session_id: str, *, extra_lines: Iterable[str] = ()) -> str:
    """Give this process an LSL SessionID, so that separate sessions on one host stay apart.

    Must run before the first outlet, inlet or resolve call. Writes an ``lsl_api.cfg`` and points
    ``LSLAPICFG`` at it; returns the file path. Processes that should see each other (a recorder,
    a replay, a test) must share the session id; child processes inherit the file through the
    environment.

    The file goes into a fresh private folder (``mkdtemp``: mode 0700, unpredictable name) and is
    opened with ``O_EXCL | O_NOFOLLOW``: a link planted in the shared temporary folder can neither
    redirect the write nor be followed. The folder is removed when this process exits.

    Raises
    ------
    ValueError
        When ``session_id`` is not 1-128 letters, digits, ``.``, ``_`` or ``-`` (it becomes part
        of a file name and of liblsl's configuration syntax).
    """
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        raise ValueError(
            f"LSL session id {session_id!r} must be 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    # Where multicast does not reach (containers, hosts without a network), resolvers find outlets
    # only by probing each port of the range; liblsl's default 32 ports hold about 7 outlets per
    # host, so an 8th stream became unresolvable. 512 ports leave room for many sessions.
    lines = [
        "[lab]",
        f"SessionID = {session_id}",
        "[multicast]",
        "ResolveScope = machine",
        # The default machine-scope IPv4 "multicast" address is 127.0.0.1, which is unicast: with
        # several outlets in one process only one socket gets each query and the rest are found
        # by port probing (measured: 14 lookups of 7 outlets took 6.7 s). Loopback multicast
        # groups reach every outlet at once (0.1 s), with or without IPv6.
        "MachineAddresses = {FF31:113D:6FDD:2C17:A643:FFE2:1BD1:3CD2, 224.0.0.183}",
        "[ports]",
        "PortRange = 512",
        *extra_lines,
    ]
    folder = tempfile.mkdtemp(prefix=f"mmer-lsl-{session_id}-")
    if not _CONFIG_DIRS:
        atexit.register(_remove_config_dirs)
    _CONFIG_DIRS.append(folder)
    path = os.path.join(folder, "lsl_api.cfg")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.environ["LSLAPICFG"] = path
    return path
