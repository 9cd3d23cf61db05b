"""XDF reader: any LabRecorder file through pyxdf, plus the video sidecars of mmer recordings.

pyxdf does the clock work (clock-offset synchronisation, dejitter, clock-reset handling). It also
silently skips damaged chunks, which would lose data without a word, so the file is first walked
chunk by chunk (:func:`scan_xdf`) and any damage is reported with its byte offset. By default that
is an error; with ``salvage=True`` the chunks before the first damaged one are read (the intact
prefix: a crash most often cuts the last chunk, a clock offset or samples) and the damage becomes
a :class:`~mmer.dataset.Defect`.

Recording folders written by ``mmer record`` hold ``session.xdf``, ``session.json`` and
``video/<stem>.mp4`` (or ``.mkv``) with ``video/<stem>.frames.csv`` (``frame_index,timestamp``),
and depth as ``video/<stem>/<frame_index:06d>.png``, where ``<stem>`` is the stream's
``source_id`` made safe as a file name (session.json names each file). A sidecar path that leaves
the recording folder is refused. Each video's LSL frame-index stream (same ``source_id``) gives
every frame its synchronised timestamp; the sidecar gives its pixels. Ground-truth markers (JSON
strings with ``"phase": "onset"``, as the player and the synthetic sensors send them) become the
recording's events.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pylsl

from mmer.dataset import Defect, Event, EventKind, FrameError, FrameTrack, Recording, SampleTrack
from mmer.replay._base import Dataset, DatasetError, RecordingRef, select
from mmer.replay._frames import ImageFolderReader, VideoFileReader, video_info
from mmer.streams import Channel, StreamSpec, StreamType

__all__ = ["open_xdf", "scan_xdf", "ForeignSpec", "XdfProblem"]

log = logging.getLogger(__name__)

_FORMAT_SIZES = {"float32": 4, "double64": 8, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "string": 0}
_LSL_FORMATS = {
    "float32": pylsl.cf_float32,
    "double64": pylsl.cf_double64,
    "int8": pylsl.cf_int8,
    "int16": pylsl.cf_int16,
    "int32": pylsl.cf_int32,
    "int64": pylsl.cf_int64,
    "string": pylsl.cf_string,
}
#: A forward jump larger than this many seconds (and 20 nominal periods) is a clock jump.
JUMP_SECONDS = 1.0


@dataclass(frozen=True)
class ForeignSpec(StreamSpec):
    """A stream whose LSL type is not one of mmer's (``EEG``, ``data``, ...), replayed unchanged.

    ``type`` holds the closest mmer role (``Markers`` for strings) so that mmer code treats it
    sensibly; ``lsl_type`` is what the outlet announces, so an LSL consumer sees the original.
    """

    lsl_type: str = ""

    def to_info(self) -> pylsl.StreamInfo:
        """Build the :class:`pylsl.StreamInfo` with the original type string."""
        info = pylsl.StreamInfo(
            self.name, self.lsl_type, self.n_channels, self.rate, _LSL_FORMATS[self.fmt], self.source_id
        )
        chans = info.desc().append_child("channels")
        for ch in self.channels:
            node = chans.append_child("channel")
            node.append_child_value("label", ch.label)
            node.append_child_value("unit", ch.unit)
            node.append_child_value("type", ch.type)
        acq = info.desc().append_child("acquisition")
        acq.append_child_value("manufacturer", self.manufacturer)
        acq.append_child_value("model", self.model)
        for key, value in self.extra.items():
            node = info.desc()
            parts = key.split("/")
            for part in parts[:-1]:
                child = node.child(part)
                node = node.append_child(part) if child.empty() else child
            node.append_child_value(parts[-1], str(value))
        return info


@dataclass(frozen=True)
class XdfProblem:
    """Damage found by :func:`scan_xdf`: byte offset of the chunk and what is wrong."""

    offset: int
    message: str


def scan_xdf(path: Path) -> list[XdfProblem]:
    """Walk an XDF file's chunks and sample records; return every problem with its byte offset.

    Checks the ``XDF:`` magic, chunk lengths against the file size, chunk tags, stream header XML,
    and that each samples chunk decodes to exactly its declared length for its stream's format.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"XDF:":
        return [XdfProblem(0, "missing 'XDF:' magic: not an XDF file")]
    problems: list[XdfProblem] = []
    streams: dict[int, tuple[str, int]] = {}
    pos = 4
    while pos < len(data):
        start = pos
        try:
            length, pos = _varlen(data, pos)
        except IndexError:
            problems.append(XdfProblem(start, "truncated chunk length"))
            break
        except ValueError as err:
            problems.append(XdfProblem(start, str(err)))
            break
        end = pos + length
        if length < 2 or end > len(data):
            problems.append(
                XdfProblem(start, f"chunk claims {length} bytes but the file ends after {len(data) - pos} (truncated)")
            )
            break
        tag = struct.unpack_from("<H", data, pos)[0]
        body = pos + 2
        if tag not in (1, 2, 3, 4, 5, 6):
            problems.append(XdfProblem(start, f"unknown chunk tag {tag}"))
            break
        if tag == 2:
            sid = struct.unpack_from("<I", data, body)[0]
            try:
                root = ET.fromstring(data[body + 4 : end].decode("utf-8"))
                fmt = root.findtext("channel_format") or ""
                nch = int(root.findtext("channel_count") or "0")
            except (ET.ParseError, UnicodeDecodeError, ValueError) as err:
                problems.append(XdfProblem(start, f"stream header XML is damaged ({err})"))
                fmt, nch = "", 0
            if fmt not in _FORMAT_SIZES:
                problems.append(XdfProblem(start, f"stream {sid}: unknown channel format {fmt!r}"))
            streams[sid] = (fmt, nch)
        elif tag == 3:
            sid = struct.unpack_from("<I", data, body)[0]
            if sid not in streams:
                problems.append(XdfProblem(start, f"samples for stream {sid} before its header"))
            else:
                message = _check_samples(data, body + 4, end, *streams[sid])
                if message:
                    problems.append(XdfProblem(start, f"stream {sid}: {message}"))
        pos = end
    return problems


def _varlen(data: bytes, pos: int) -> tuple[int, int]:
    nbytes = data[pos]
    if nbytes == 1:
        return data[pos + 1], pos + 2
    if nbytes == 4:
        if pos + 5 > len(data):
            raise IndexError
        return struct.unpack_from("<I", data, pos + 1)[0], pos + 5
    if nbytes == 8:
        if pos + 9 > len(data):
            raise IndexError
        return struct.unpack_from("<Q", data, pos + 1)[0], pos + 9
    raise ValueError(f"invalid length prefix {nbytes} (expected 1, 4 or 8)")


def _check_samples(data: bytes, pos: int, end: int, fmt: str, nch: int) -> str:
    try:
        count, pos = _varlen(data, pos)
        size = _FORMAT_SIZES.get(fmt, 0)
        for k in range(count):
            flag = data[pos]
            if flag not in (0, 8):
                return f"sample {k}: bad timestamp flag {flag} at byte {pos}"
            pos += 1 + flag
            if fmt == "string":
                for _ in range(nch):
                    n, pos = _varlen(data, pos)
                    pos += n
            else:
                pos += size * nch
            if pos > end:
                return f"sample {k} runs past the end of its chunk"
    except (IndexError, ValueError) as err:
        return f"samples do not decode ({err or 'truncated'})"
    if pos != end:
        return f"chunk has {end - pos} unexplained trailing bytes"
    return ""


def _first(info: dict, key: str, default: str = "") -> str:
    value = info.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    return default if value is None else str(value)


def _channels(info: dict, count: int) -> tuple[Channel, ...]:
    desc = info.get("desc")
    desc = desc[0] if isinstance(desc, list) and desc else desc
    chans = []
    try:
        for ch in desc["channels"][0]["channel"]:
            chans.append(Channel(_first(ch, "label"), _first(ch, "unit"), _first(ch, "type")))
    except (KeyError, TypeError, IndexError):
        chans = []
    if len(chans) != count:
        chans = [Channel(f"ch{i}") for i in range(count)]
    return tuple(chans)


def _desc_value(info: dict, *keys: str) -> str:
    node = info.get("desc")
    for key in keys:
        node = node[0] if isinstance(node, list) and node else node
        if not isinstance(node, dict) or key not in node:
            return ""
        node = node[key]
    return _first({"v": node}, "v")


def _spec_for(info: dict) -> StreamSpec:
    name = _first(info, "name", "unnamed")
    lsl_type = _first(info, "type")
    count = int(float(_first(info, "channel_count", "1")))
    rate = float(_first(info, "nominal_srate", "0") or 0)
    fmt = _first(info, "channel_format", "float32")
    source_id = _first(info, "source_id") or f"xdf-{name}"
    channels = _channels(info, count)
    manufacturer = _desc_value(info, "acquisition", "manufacturer") or _desc_value(info, "manufacturer") or "unknown"
    model = _desc_value(info, "acquisition", "model")
    try:
        stype = StreamType(lsl_type)
    except ValueError:
        stype = None
    if stype is not None and not (stype is StreamType.MARKERS and fmt != "string"):
        extra = {}
        if stype in (StreamType.VIDEO_RGB, StreamType.VIDEO_DEPTH):
            for key in ("width", "height", "pixel_format"):
                value = _desc_value(info, "video", key)
                if value:
                    extra[f"video/{key}"] = value
            extra["zmq/endpoint"] = ""
        return StreamSpec(
            name=name, type=stype, rate=rate, channels=channels, source_id=source_id, fmt=fmt,
            manufacturer=manufacturer, model=model, extra=extra,
        )
    return ForeignSpec(
        name=name, type=StreamType.MARKERS, rate=rate, channels=channels, source_id=source_id, fmt=fmt,
        manufacturer=manufacturer, model=model, lsl_type=lsl_type,
    )


class _SidecarReader:
    """Frames of one video stream, found in its sidecar by frame index."""

    def __init__(self, indices: np.ndarray, lookup: dict[int, int], inner, label: str) -> None:
        self.indices = indices
        self.lookup = lookup
        self.inner = inner
        self.label = label

    def __call__(self, position: int) -> np.ndarray:
        index = int(self.indices[position])
        where = self.lookup.get(index)
        if where is None:
            raise FrameError(f"{self.label}: frame index {index} is in the XDF stream but not in the sidecar")
        return self.inner(where)


def _inside(folder: Path, relative: str) -> Path:
    """``folder / relative``, refused when it leaves ``folder`` (``..``, an absolute path, a link)."""
    path = folder / relative
    if not path.resolve().is_relative_to(folder.resolve()):
        raise DatasetError(f"{folder}: refusing the sidecar path {relative!r}, which leaves the recording folder")
    return path


_MOVIES = (".mp4", ".mkv", ".avi")


def _sidecar_stems(spec: StreamSpec, manifest: dict) -> list[str]:
    """Where this stream's sidecar may be, relative to ``video/``: the manifest's file, the safe
    stem of its source_id (:func:`mmer.live.recorder.sidecar_stem`), then the source_id itself
    (recordings made before names were made safe)."""
    from mmer.live.recorder import sidecar_stem

    stems = []
    for entry in manifest.get("files", {}).get("video", []) if isinstance(manifest.get("files"), dict) else []:
        if isinstance(entry, dict) and entry.get("stream") == spec.name and isinstance(entry.get("file"), str):
            name = entry["file"].removeprefix("video/")
            stems.append(name.removesuffix(Path(name).suffix) if Path(name).suffix in _MOVIES else name)
    return [*stems, sidecar_stem(spec.source_id), spec.source_id]


def _sidecar(folder: Path, spec: StreamSpec, indices: np.ndarray, defects: list[Defect], subject: str, video: str,
             manifest: dict):
    """Build the frame reader of one video stream from its sidecar; ``None`` when there is none."""
    vdir = folder / "video"
    stems = _sidecar_stems(spec, manifest)
    if spec.type is StreamType.VIDEO_DEPTH:
        ddir = next((d for d in (_inside(vdir, stem) for stem in stems) if d.is_dir()), None)  # lazy: first hit wins
        if ddir is None:
            return None
        paths = sorted(ddir.glob("*.png"))
        lookup = {}
        for i, p in enumerate(paths):
            if p.stem.isdigit():
                lookup[int(p.stem)] = i
        inner = ImageFolderReader(paths, depth=True)
        label = str(ddir)
    else:
        found = ((stem, movie) for stem in stems for ext in _MOVIES if (movie := _inside(vdir, stem + ext)).is_file())
        stem, movie = next(found, (None, None))  # lazy: a later, unsafe candidate is never looked at
        if movie is None:
            return None
        table = _inside(vdir, f"{stem}.frames.csv")
        if not table.is_file():
            raise DatasetError(f"{movie}: sidecar without its frame table {table.name}")
        lookup = {}
        with open(table, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or header[:1] != ["frame_index"]:
                raise DatasetError(f"{table}: line 1 must be the header 'frame_index,timestamp', got {header}")
            for lineno, row in enumerate(reader, start=2):
                try:
                    lookup[int(float(row[0]))] = lineno - 2
                except (ValueError, IndexError):
                    raise DatasetError(f"{table}: line {lineno}: bad frame index {row[:1]}") from None
        inner = VideoFileReader(movie)
        label = str(movie)
        # A movie cut off by a crash (an mp4 without its index) holds fewer frames than its table
        # lists; they are damaged, and said so here rather than at replay. Only a container that
        # declares too few frames is decoded through (an unfinished mkv declares none, yet plays).
        try:
            held = video_info(movie)[0]
        except FrameError:
            held = 0
        if held < len(lookup):
            held = _decodable_frames(movie)
        if held < len(lookup):
            defects.append(Defect(
                kind="sidecar_damaged", file=label, action="counted: replay counts the missing frames as damaged",
                subject=subject, video=video,
                detail=f"the container holds {held} of the {len(lookup)} frames its table lists",
            ))
    missing = np.setdiff1d(indices, np.fromiter(lookup.keys(), dtype=np.int64, count=len(lookup)))
    if missing.size:
        defects.append(
            Defect(
                kind="sidecar_missing_frames",
                file=label,
                action="counted: replay counts these frames as damaged",
                subject=subject,
                video=video,
                detail=f"{missing.size} frame index(es) in the XDF stream have no pixels in the sidecar",
            )
        )
    return _SidecarReader(indices, lookup, inner, label)


def _decodable_frames(movie: Path) -> int:
    """How many frames OpenCV can read from ``movie``, from the start until the first that fails."""
    import cv2

    cap = cv2.VideoCapture(str(movie))
    count = 0
    try:
        while cap.isOpened() and cap.grab():
            count += 1
    finally:
        cap.release()
    return count


def _load_recording(path: Path, *, subject: str, video: str, salvage: bool) -> Recording:
    import pyxdf

    problems = scan_xdf(path)
    defects: list[Defect] = []
    manifest = _manifest(path)
    source: Path | io.BytesIO = path
    if problems:
        first = problems[0]
        if not salvage or first.offset == 0:
            raise DatasetError(
                f"{path}: corrupt XDF at byte offset {first.offset}: {first.message}"
                + ("" if first.offset == 0 else " (salvage=True, or --salvage, reads the intact chunks)")
            )
        for p in problems:
            defects.append(
                Defect(
                    kind="xdf_damage",
                    file=str(path),
                    action="counted: the chunks before the first damaged one are read, the rest is lost",
                    subject=subject,
                    video=video,
                    row=p.offset,
                    detail=p.message,
                )
            )
        with open(path, "rb") as fh:
            source = io.BytesIO(fh.read(first.offset))  # pyxdf would stumble over the damage
    try:
        streams, _header = pyxdf.load_xdf(_rewound(source))
    except np.linalg.LinAlgError as err:
        # Degenerate clock offsets (one measurement, or all at one time) break pyxdf's robust fit;
        # the samples are fine, so read them without offset correction and say so.
        streams, _header = pyxdf.load_xdf(_rewound(source), synchronize_clocks=False)
        defects.append(
            Defect(kind="clock_sync_failed", file=str(path), subject=subject, video=video,
                   action="counted: timestamps used without clock-offset correction", detail=str(err))
        )
    except Exception as err:  # noqa: BLE001 - pyxdf raises OSError, EOFError, RuntimeError, ...
        raise DatasetError(f"{path}: pyxdf cannot read it ({type(err).__name__}: {err})") from err
    frames: dict[str, FrameTrack] = {}
    samples: dict[str, SampleTrack] = {}
    raw: list[tuple[StreamSpec, np.ndarray, object]] = []
    for stream in streams:
        spec = _spec_for(stream["info"])
        ts = np.asarray(stream["time_stamps"], dtype=np.float64)
        raw.append((spec, ts, stream["time_series"]))
    video_starts = [ts[0] for spec, ts, _ in raw if spec.is_video and len(ts)]
    all_starts = [ts[0] for _, ts, _ in raw if len(ts)]
    t0 = float(min(video_starts)) if video_starts else (float(min(all_starts)) if all_starts else 0.0)
    names: dict[str, int] = {}
    for spec, ts, series in raw:
        key = spec.name if spec.name not in names else f"{spec.name}#{names[spec.name]}"
        names[spec.name] = names.get(spec.name, 0) + 1
        rel = ts - t0
        _check_clock(rel, spec, defects, path, subject, video)
        if not len(ts):
            defects.append(
                Defect(kind="empty_stream", file=str(path), action="counted: outlet created, nothing to publish",
                       subject=subject, video=video, detail=spec.name)
            )
        if spec.is_video and not isinstance(spec, ForeignSpec):
            arr = np.asarray(series, dtype=np.float64).reshape(len(ts), -1)
            indices = arr[:, 0].astype(np.int64) if len(ts) else np.zeros(0, dtype=np.int64)
            reader = _sidecar(path.parent, spec, indices, defects, subject, video, manifest)
            if reader is None:
                defects.append(
                    Defect(kind="no_sidecar", file=str(path), action="counted: frame timing replayed without pixels",
                           subject=subject, video=video, detail=spec.name)
                )
                samples[key] = SampleTrack(spec=spec, timestamps=rel, data=arr)
                continue
            role = "depth" if spec.type is StreamType.VIDEO_DEPTH else "rgb"
            frames[role if role not in frames else key] = FrameTrack(
                spec=spec, indices=indices, timestamps=rel, reader=reader
            )
        elif spec.fmt == "string":
            texts = [row[0] if isinstance(row, (list, tuple)) and row else str(row) for row in series]
            if spec.n_channels != 1:
                defects.append(
                    Defect(kind="multichannel_strings", file=str(path), action="counted: only the first channel is replayed",
                           subject=subject, video=video, detail=spec.name)
                )
                spec = spec.with_(channels=spec.channels[:1])
            samples[key] = SampleTrack(spec=spec, timestamps=rel, data=texts)
        else:
            arr = np.asarray(series).reshape(len(ts), spec.n_channels)
            samples[key] = SampleTrack(spec=spec, timestamps=rel, data=arr)
    return Recording(
        subject=subject, video=video, frames=frames, samples=samples, defects=defects,
        events=_truth_events(samples, subject, video),
        meta={"dataset": "xdf", "path": str(path), "t0_lsl": t0},
    )


def _truth_events(samples: dict[str, SampleTrack], subject: str, video: str) -> list[Event]:
    """Events from ground-truth markers: one per JSON marker with ``"phase": "onset"``."""
    events = []
    for track in samples.values():
        if track.spec.fmt != "string":
            continue
        for text in track.data:
            try:
                row = json.loads(text)
                if not isinstance(row, dict) or row.get("phase") != "onset":
                    continue
                apex = row.get("apex")
                events.append(Event(
                    subject=subject, video=video, onset=int(row["onset"]), offset=int(row["offset"]),
                    apex=None if apex is None else int(apex), kind=EventKind(row.get("kind", "me")),
                    emotion=(row.get("emotion") or None) and str(row["emotion"]).lower(),
                    objective_class=row.get("objective_class") or None, aus=str(row.get("aus") or ""),
                ))
            except (ValueError, TypeError, KeyError):
                continue  # a marker that is not ground truth (a decision, a note)
    return events


def _rewound(source: Path | io.BytesIO) -> str | io.BytesIO:
    if isinstance(source, io.BytesIO):
        source.seek(0)
        return source
    return str(source)


def _check_clock(rel: np.ndarray, spec: StreamSpec, defects: list[Defect], path: Path, subject: str, video: str) -> None:
    if len(rel) < 2 or spec.rate <= 0:
        # Irregular streams (markers, events) carry the time of what they describe, not of their
        # sending: a late decision stamped at its ME's onset is no clock defect.
        return
    step = np.diff(rel)
    limit = max(JUMP_SECONDS, 20.0 / spec.rate)
    back = int(np.count_nonzero(step < 0))
    jumps = int(np.count_nonzero(step > limit))
    if back or jumps:
        defects.append(
            Defect(
                kind="clock_jump",
                file=str(path),
                action="counted: replayed whole in sample order; gaps bounded, backward steps held",
                subject=subject,
                video=video,
                detail=f"{spec.name}: {back} backward step(s), {jumps} forward jump(s) > {limit} s",
            )
        )


def _manifest(file: Path) -> dict:
    """``session.json`` beside an mmer recording's XDF (empty for other XDF files)."""
    path = file.parent / "session.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err
    return meta if isinstance(meta, dict) else {}


def _identity(file: Path) -> tuple[str, str]:
    """Subject and video names of a recording: from ``session.json`` if present, else the folder."""
    file = file.resolve()
    manifest = file.parent / "session.json"
    subject, video = file.parent.name, file.stem
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DatasetError(f"{manifest}: not valid JSON ({err})") from err
        subject = str(meta.get("subject") or subject)
        video = str(meta.get("session") or meta.get("session_id") or file.parent.name)
    return subject, video


def open_xdf(path: Path | str, *, subjects=None, videos=None, salvage: bool = False) -> Dataset:
    """Open one XDF file, a recording folder, or a folder of either.

    Parameters
    ----------
    path : path-like
        ``.xdf`` file or folder (searched two levels deep).
    subjects, videos : sequence of str, optional
        Filters on the recording identity (``session.json`` subject/session, else folder/stem).
    salvage : bool
        Read the intact chunks of a damaged file instead of raising.
    """
    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted({*root.glob("*.xdf"), *root.glob("*/*.xdf"), *root.glob("*/*/*.xdf")})
    else:
        raise FileNotFoundError(f"XDF file or folder not found: {root}")
    if not files:
        raise DatasetError(f"{root}: not an XDF dataset (no .xdf file found two levels deep)")
    refs = []
    defects: list[Defect] = []
    for file in files:
        with open(file, "rb") as fh:
            if fh.read(4) != b"XDF:":
                raise DatasetError(f"{file}: corrupt XDF at byte offset 0: missing 'XDF:' magic")
        subject, video = _identity(file)
        if not select([(subject, video)], subjects, videos):
            continue
        refs.append(RecordingRef(subject, video, lambda f=file, s=subject, v=video: _load_recording(f, subject=s, video=v, salvage=salvage)))
    return Dataset(kind="xdf", path=root, refs=refs, events=[], defects=defects, info={"files": [str(f) for f in files]})
