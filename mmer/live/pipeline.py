"""The live pipeline: streams in, ME decisions out on ``mmer.events``, a recording beside them.

::

    sensors (here or in a child process) / replay
          --LSL + ZeroMQ-->  video readers --+--> AlignmentBuffer <-- LSL physio workers
                                             |
                                             +--> spot thread: Spotter.push per frame
                                                       | candidate
                                             early thread: video (and depth) decision now
                                                       | job (with the early sample)
                                             late thread (lower priority): + physiology once
                                             onset+post is buffered
                                                       |
                                             EventOutlet (mmer.events) + SessionRecorder

Threads do one job each and talk through queues, so a slow model never stalls frame intake:
frames wait in a bounded queue in front of the spotter (overflow is counted as dropped, the
spotter is told the frame is missing), and candidates wait for their decisions. The late
decision reuses the early one's video and depth inputs and runs at a lower CPU priority, so it
takes time from neither the spotter nor the next early decision.

Failure handling: a stream that stops delivering is flagged (log, status view, ``gaps`` in the
summary) and decisions list it under ``missing``; a video source that comes back on another
endpoint is found again through LSL; physiology inlets recover by themselves.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pylsl

from mmer.clock import local_clock
from mmer.config import SessionConfig
from mmer.errors import MmerError
from mmer.fusion import AlignmentBuffer
from mmer.live import signals
from mmer.live._recognizer import SessionRecognizer
from mmer.live._sources import SensorProcess, start_failures, stop_sources
from mmer.live.events import Decision, EventOutlet
from mmer.live.latency import LatencyTracker
from mmer.live.recorder import SessionRecorder, check_recording_dir
from mmer.streams import StreamSpec
from mmer.transport import FrameSubscriber

__all__ = ["LivePipeline", "PipelineError"]

log = logging.getLogger(__name__)

_RECENT = 12


class PipelineError(MmerError, RuntimeError):
    """The pipeline cannot start (a required stream or sensor is missing, a bad checkpoint)."""


def _full_spec(info: pylsl.StreamInfo, timeout: float) -> StreamSpec:
    inlet = pylsl.StreamInlet(info, max_buflen=1)
    try:
        full = inlet.info(timeout)
    finally:
        inlet.close_stream()
    try:
        return StreamSpec.from_info(full)
    except ValueError as err:
        raise PipelineError(f"stream {info.name()!r}: {err}") from None


def _resolve_one(name: str, timeout: float) -> tuple[pylsl.StreamInfo, StreamSpec] | None:
    """The resolved info (with its network address, for inlets) and the spec from its full metadata."""
    found = pylsl.resolve_byprop("name", name, 1, timeout)
    if not found:
        return None
    return found[0], _full_spec(found[0], timeout)


def _resolve_all(required: list[str], optional: list[str], timeout: float) -> dict[str, pylsl.StreamInfo]:
    """Resolve several streams by name with one LSL query that returns once all have answered.

    Required streams get ``timeout``; once they are in, optional ones get what is left of it
    (but at least two seconds).
    """
    wanted = list(dict.fromkeys([*required, *optional]))
    found: dict[str, pylsl.StreamInfo] = {}
    deadline = time.monotonic() + timeout
    grace = None
    while True:
        missing = [n for n in wanted if n not in found]
        if not missing:
            return found
        # liblsl prepends "session_id='...' and " to the predicate: without the parentheses the
        # session would bind only to the first name and other sessions' streams would match.
        pred = "(" + " or ".join(f"name='{n}'" for n in missing) + ")"
        for info in pylsl.resolve_bypred(pred, len(missing), 1.0):
            if info.name() in missing:
                found.setdefault(info.name(), info)
        now = time.monotonic()
        if all(n in found for n in required):
            grace = grace or max(deadline, now + 2.0)
            if now >= grace:
                return found
        elif now >= deadline:
            return found


class _VideoReader(threading.Thread):
    """Receives one video stream's pixels from ZeroMQ into the buffer (and to a callback).

    When the stream goes silent for ``stall_timeout`` it is flagged, and its LSL twin is
    resolved again every few seconds: a camera restarted on another port is picked up.
    """

    def __init__(self, spec: StreamSpec, buffer: AlignmentBuffer, *, stall_timeout: float, hwm: int,
                 info: pylsl.StreamInfo | None = None, on_frame: Callable | None = None,
                 on_gap: Callable | None = None) -> None:
        super().__init__(name=f"mmer-video-{spec.name}", daemon=True)
        self.spec = spec
        self.buffer = buffer
        self.key = buffer.add_stream(spec)
        self.endpoint = spec.extra.get("zmq/endpoint", "")
        if not self.endpoint:
            raise PipelineError(f"video stream {spec.name!r} announces no zmq/endpoint; its pixels cannot be read")
        self.sub = FrameSubscriber(self.endpoint, streams=[spec.name], hwm=hwm)
        self.stall_timeout = stall_timeout
        self.on_frame, self.on_gap = on_frame, on_gap
        self._stop_evt = threading.Event()
        self._draining = threading.Event()
        self.received = 0
        self.last_arrival = time.monotonic()
        self.stalled = False
        self.gaps: list[dict] = []
        self._arrivals: deque = deque(maxlen=64)
        self._clock_inlet: pylsl.StreamInlet | None = None
        self._clock_at = 0.0
        self._offset_at = -1e9
        self.clock_offset = 0.0
        self.twin_samples = 0
        self.last_index: int | None = None
        self.twin_last_index: int | None = None
        #: Frames the LSL timing twin announced after the last one whose pixels arrived: dropped at
        #: a ZeroMQ high-water mark with no later frame to reveal the gap (counted when the reader ends).
        self.tail_lost = 0
        self._open_twin(info)

    def stop(self, *, drain: bool = True) -> None:
        """Stop after the queued frames were read (``drain``) or right away."""
        (self._draining if drain else self._stop_evt).set()

    @property
    def effective_hz(self) -> float | None:
        if len(self._arrivals) < 2:
            return None
        span = self._arrivals[-1] - self._arrivals[0]
        return (len(self._arrivals) - 1) / span if span > 0 else None

    def _open_twin(self, info: pylsl.StreamInfo | None = None) -> None:
        """Subscribe to the LSL timing twin: the camera sees a consumer, and the clock offset comes from it."""
        if info is None:
            found = pylsl.resolve_bypred(f"name='{self.spec.name}' and source_id='{self.spec.source_id}'", 1, 0.5)
            if not found:
                return
            info = found[0]
        try:
            inlet = pylsl.StreamInlet(info, max_buflen=2, recover=True)
            inlet.open_stream(timeout=2.0)
        except Exception as err:  # noqa: BLE001 - pylsl raises its own timeout/lost types
            log.debug("timing twin of %s not opened: %s", self.spec.name, err)
            return
        self._clock_inlet = inlet
        self._clock_at = 0.0

    def _refresh_clock(self) -> None:
        now = time.monotonic()
        if self._clock_inlet is None or now - self._clock_at < 1.0:
            return
        self._clock_at = now
        try:
            self._pull_twin(0.0)
            if now - self._offset_at >= 5.0:
                self._offset_at = now
                self.clock_offset = float(self._clock_inlet.time_correction(timeout=0.2))
                self.buffer.set_clock_offset(self.key, self.clock_offset)
        except Exception as err:  # noqa: BLE001 - pylsl raises its own timeout/lost types
            log.debug("time correction for %s failed: %s", self.spec.name, err)

    def _pull_twin(self, timeout: float) -> int:
        """Read the timing twin's queued ``(frame_index, capture_time)`` samples; keep the last index."""
        rows, stamps = self._clock_inlet.pull_chunk(timeout=timeout, max_samples=1024)
        if len(stamps):
            self.twin_last_index = int(rows[-1][0])  # the latest, not the largest: a restarted camera counts afresh
        self.twin_samples += len(stamps)
        return len(stamps)

    def _count_tail(self) -> None:
        """After the last frame: frames the twin announced whose pixels never came."""
        if self._clock_inlet is None:
            return
        try:
            while self._pull_twin(0.1):
                pass
        except Exception as err:  # noqa: BLE001 - pylsl's lost-stream error: count what is known
            log.debug("timing twin of %s at the end: %s", self.spec.name, err)
        if self.twin_last_index is None:
            return
        if self.last_index is None:
            self.tail_lost = self.twin_samples
        else:
            self.tail_lost = max(0, self.twin_last_index - self.last_index)
        if self.tail_lost:
            log.warning("video stream %s: the last %d announced frame(s) never arrived", self.spec.name, self.tail_lost)

    def _reconnect(self) -> None:
        found = _resolve_one(self.spec.name, 0.3)
        if found is None:
            return
        endpoint = found[1].extra.get("zmq/endpoint", "")
        if endpoint == self.endpoint:
            # The source still publishes there, yet nothing arrives: ZeroMQ may have dropped the
            # connection for good (an oversized message); connecting again costs nothing.
            self.sub.reconnect()
        elif endpoint:
            log.warning("video stream %s is back at %s; reconnecting", self.spec.name, endpoint)
            self.sub.connect(endpoint)
            self.endpoint = endpoint
            if self._clock_inlet is not None:
                self._clock_inlet.close_stream()
                self._clock_inlet = None
            self._open_twin(found[0])

    def run(self) -> None:
        last_try = 0.0
        quiet_since = None
        self.last_arrival = time.monotonic()
        while not self._stop_evt.is_set():
            self._refresh_clock()
            frame = self.sub.recv(timeout=0.05)
            now = time.monotonic()
            if frame is None:
                if self._draining.is_set():
                    quiet_since = quiet_since or now
                    if now - quiet_since > 0.3:
                        break
                    continue
                if not self.stalled and now - self.last_arrival > self.stall_timeout:
                    self.stalled = True
                    self.gaps.append({"stream": self.spec.name, "since": local_clock() - (now - self.last_arrival)})
                    log.warning("video stream %s stalled: no frame for %.1f s", self.spec.name, now - self.last_arrival)
                    if self.on_gap:
                        self.on_gap(self.spec.name, "stalled")
                if self.stalled and now - last_try > 2.0:
                    last_try = now
                    self._reconnect()
                continue
            quiet_since = None
            t_recv = local_clock()
            if self.stalled:
                self.stalled = False
                gap = self.gaps[-1]
                gap["until"] = t_recv
                log.warning("video stream %s is back after %.1f s", self.spec.name, gap["until"] - gap["since"])
                if self.on_gap:
                    self.on_gap(self.spec.name, "back")
            self.last_arrival = now
            self._arrivals.append(now)
            self.received += 1
            self.last_index = frame.index
            self.buffer.push_frame(self.key, frame.index, frame.timestamp, frame.data)
            if self.on_frame is not None:
                self.on_frame(frame, t_recv, local_clock())
        self.sub.close()
        self._count_tail()
        if self._clock_inlet is not None:
            self._clock_inlet.close_stream()


class _MarkerReader(threading.Thread):
    """Collects a marker stream (ground truth) so reports can show it beside the decisions."""

    def __init__(self, info: pylsl.StreamInfo) -> None:
        super().__init__(name=f"mmer-markers-{info.name()}", daemon=True)
        self.inlet = pylsl.StreamInlet(info, max_buflen=360, recover=True)
        self.inlet.open_stream(timeout=5.0)
        self.markers: list[tuple[float, str]] = []
        self._stop_evt = threading.Event()

    def stop(self) -> None:
        self._stop_evt.set()

    def run(self) -> None:
        offset = 0.0
        while True:
            try:
                samples, stamps = self.inlet.pull_chunk(timeout=0.1)
            except Exception as err:  # noqa: BLE001 - pylsl's lost-stream error: keep what arrived
                log.warning("marker stream %s: %s", self.name, err)
                if self._stop_evt.is_set():
                    break
                continue
            if samples:
                try:
                    offset = self.inlet.time_correction(timeout=1.0)
                except Exception as err:  # noqa: BLE001 - keep the last offset, never the markers' loss
                    log.debug("time correction for %s failed: %s", self.name, err)
            for sample, ts in zip(samples, stamps, strict=True):
                self.markers.append((float(ts + offset), str(sample[0])))
            if self._stop_evt.is_set() and not samples:
                break
        self.inlet.close_stream()


class _DecisionCsv:
    """``outputs.events_csv``: every decision appended as a row, flushed at once (a crash keeps it)."""

    COLUMNS = ("candidate_id", "stage", "kind", "onset", "apex", "offset", "t_onset", "t_offset", "label",
               "probabilities", "modalities", "missing", "latency_ms", "model_id", "t_published")

    def __init__(self, path: Path) -> None:
        import csv

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        self._fh = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(self.COLUMNS)

    def write(self, d: Decision) -> None:
        import json

        self._writer.writerow([d.candidate_id, d.stage, d.kind, d.onset, d.apex, d.offset, repr(d.t_onset),
                               repr(d.t_offset), d.label, json.dumps(dict(d.probabilities)), "+".join(d.modalities),
                               "+".join(d.missing), f"{d.latency_ms:.3f}", d.model_id, repr(d.t_published)])
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


@dataclass
class _Job:
    cid: int
    cand: object
    stamps: dict
    offset: float
    closing_capture: float
    physio_end: float = 0.0
    early: object = None  # the early decision's Sample: its video and depth inputs serve the late one too


@dataclass
class _FrameItem:
    index: int
    t: float
    data: np.ndarray | None
    t_recv: float
    t_buf: float


@dataclass
class _Counters:
    """Counters gathered while running (see :meth:`LivePipeline.summary`)."""

    candidates: int = 0
    decisions: int = 0
    spot_dropped: int = 0
    late_incomplete: int = 0
    errors: list = field(default_factory=list)


class LivePipeline:
    """Run a session: sources, alignment buffer, spotter, recogniser, events, recording.

    Parameters
    ----------
    config : SessionConfig
        The validated session (see :mod:`mmer.config`).
    sources : list, optional
        Extra already-built sources with ``start()``/``stop()`` (sensors, a replay player) that
        the pipeline starts and stops with itself, in addition to ``config.sensors``.
    consumers : list, optional
        Other readers of the session's streams with ``start()``/``stop()`` (the demo's plot
        tap): started once the pipeline runs, stopped before any source closes its outlets.
    record_dir : path, optional
        Overrides ``config.recording.dir``.
    status : bool, optional
        Show the terminal view (``None``: follow ``config.outputs.status``).
    on_decision : callable, optional
        Called with every published :class:`Decision` (from the decision thread).
    on_score : callable, optional
        A read-only observer of the spotter, called from the spotter thread after each frame with
        the spotter's score history (``{track: [(frame, capture time, score), ...]}``) and the RGB
        stream's clock offset (the dashboard's :class:`~mmer.dashboard.ScoreTap`).
    """

    def __init__(
        self,
        config: SessionConfig,
        *,
        sources: list | None = None,
        consumers: list | None = None,
        record_dir: str | Path | None = None,
        status: bool | None = None,
        on_decision: Callable[[Decision], None] | None = None,
        on_score: Callable[[dict, float], None] | None = None,
    ) -> None:
        self.config = config
        self._extra_sources = list(sources or [])
        self._consumers = list(consumers or [])
        self.record_dir = Path(record_dir) if record_dir is not None else config.recording.dir
        self._status_flag = status
        self.on_decision = on_decision
        self.on_score = on_score
        self.latency = LatencyTracker()
        self.counters = _Counters()
        self.decisions: list[Decision] = []
        self.candidates: list = []
        self.recent: deque[str] = deque(maxlen=_RECENT)
        self.warnings: list[str] = []
        self.physio_gaps: list[dict] = []
        self._physio_state: dict[str, dict] = {}
        self.sensors: list = []
        self.recorder: SessionRecorder | None = None
        self.manifest: dict | None = None
        self.buffer: AlignmentBuffer | None = None
        self._videos: list[_VideoReader] = []
        self._physio_keys: list[str] = []
        self._nominal: dict[str, float] = {}
        self._rate_marks: dict[str, deque] = {}
        self.events: EventOutlet | None = None
        self._truth: _MarkerReader | None = None
        self._csv: _DecisionCsv | None = None
        self._frame_q: queue.Queue[_FrameItem] = queue.Queue()
        self._job_q: queue.Queue[_Job] = queue.Queue()
        self._late_q: queue.Queue[_Job] = queue.Queue()
        self._early_done = threading.Event()
        self._frame_times: dict[int, tuple[float, float, float]] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._closing = threading.Event()
        self._spot_done = threading.Event()
        self.started_at = 0.0
        self._running = False
        self._status = None
        self._lock = threading.Lock()
        self.rgb_spec: StreamSpec | None = None
        self.recognizer: SessionRecognizer | None = None
        self.spot_ms: dict = {}
        self.spot_signal: dict = {}
        self.first_frame_t: float | None = None
        self.first_frame_index: int | None = None
        self._at_stop: dict[str, dict] = {}

    # -- start ------------------------------------------------------------------------------------
    def _available_modalities(self) -> list[str]:
        inputs = self.config.inputs
        out = ["video"]
        if inputs.depth:
            out.append("depth")
        if inputs.physio:
            out.append("physio")
        return out

    def _make_sensors(self) -> list:
        """Build the configured adapters; an optional one that cannot be built is skipped and reported."""
        if not self.config.sensors:
            return []
        from mmer.sensors import SensorError, create_sensor

        made = []
        for entry in self.config.sensors:
            try:
                made.append((create_sensor(entry.adapter, **entry.options), entry))
            except SensorError as err:
                if entry.required:
                    raise PipelineError(f"sensor {entry.adapter!r} is not available: {err}") from None
                log.warning("optional sensor %s is not available: %s", entry.adapter, err)
                self._note(f"[missing] sensor {entry.adapter}: {err}")
            except (ValueError, TypeError) as err:
                raise PipelineError(f"sensors: adapter {entry.adapter!r}: {err}") from None
        return made

    def _start_sensor_process(self) -> list:
        """Start ``config.sensors`` in one child process; the same rules as in-process adapters."""
        host = SensorProcess(self.config.sensors)
        try:
            outcomes = host.start()
        except RuntimeError as err:
            raise PipelineError(str(err)) from None
        fatal, optional = start_failures(outcomes)
        for adapter, message in optional:
            log.warning("optional sensor %s is not available: %s", adapter, message)
            self._note(f"[missing] sensor {adapter}: {message}")
        if fatal is not None:
            host.stop()
            raise PipelineError(fatal)
        return list(host.sensors)

    def preflight(self) -> None:
        """Everything that can fail before a single stream starts: folder, checkpoint, adapters."""
        if self.record_dir is not None:
            rc = self.config.recording
            check_recording_dir(self.record_dir, overwrite=rc.overwrite, min_free_mb=rc.min_free_mb)
        self.recognizer = SessionRecognizer(
            self.config.model.checkpoint, available=self._available_modalities(), threads=self.config.model.threads
        )
        self.recognizer.warm_up()

    def start(self) -> LivePipeline:
        """Preflight, start sources, resolve streams, start the recorder, threads and status view.

        The recorder connects before the pipeline's own inlets, so a replay that waits for its
        first consumer is recorded from its first sample.
        """
        from mmer.sensors.base import SensorError
        from mmer.spotting import Spotter

        self.preflight()
        cfg = self.config
        self._make_meshes()
        started = []
        try:
            if cfg.sensor_process and cfg.sensors:
                started += self._start_sensor_process()
                pairs = [(source, None) for source in self._extra_sources]
            else:
                pairs = self._make_sensors() + [(source, None) for source in self._extra_sources]
            for sensor, entry in pairs:
                try:
                    sensor.start()
                    started.append(sensor)
                except SensorError as err:
                    if entry is not None and not entry.required:
                        log.warning("optional sensor %s did not start: %s", entry.adapter, err)
                        self._note(f"[missing] sensor {entry.adapter}: {err}")
                        continue
                    raise PipelineError(f"sensor {getattr(sensor, 'name', sensor)!r} did not start: {err}") from None
            self.sensors = started
            inputs = cfg.inputs
            optional = [n for n in [inputs.depth, *inputs.physio, inputs.truth] if n]
            found = _resolve_all([inputs.rgb], optional, inputs.resolve_timeout_s)
            if inputs.rgb not in found:
                raise PipelineError(
                    f"RGB stream {inputs.rgb!r} not found on LSL within {inputs.resolve_timeout_s:g} s; "
                    f"is the camera (or replay) running?"
                )
            for name in optional:
                if name not in found:
                    log.warning("stream %r not found; decisions will list it as missing", name)
                    self._note(f"[missing] stream {name}")
            self.spotter = Spotter(config=cfg.spotter_config(fps=found[inputs.rgb].nominal_srate() or 30.0),
                                   tracker=self._spot_tracker)
            self.events = EventOutlet(name=cfg.outputs.events_stream, source_id=cfg.outputs.events_source_id)
            if cfg.outputs.events_csv is not None:
                self._csv = _DecisionCsv(cfg.outputs.events_csv)
            if self.record_dir is not None:
                self._start_recorder(list(found.values()))
            self._connect_streams(found)
        except BaseException:
            for mesh in (self._spot_tracker, self._tracker, self._landmarks):
                mesh.close()
            for sensor in started:
                sensor.stop()
            if self.recorder is not None:
                self.recorder.stop("start failed")
            if self.buffer is not None:
                self.buffer.close()
            raise
        self.started_at = local_clock()
        self._running = True
        for target, name in ((self._spot_loop, "mmer-spot"), (self._early_loop, "mmer-early"),
                             (self._late_loop, "mmer-late"), (self._monitor_loop, "mmer-monitor")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        for reader in self._videos:
            reader.start()
        if self._truth is not None:
            self._truth.start()
        for consumer in self._consumers:
            consumer.start()
        self._start_status()
        return self

    def _start_recorder(self, infos: list[pylsl.StreamInfo]) -> None:
        rc = self.config.recording
        events = pylsl.resolve_byprop("source_id", self.events.spec.source_id, 1, 5.0)
        self.recorder = SessionRecorder(
            self.record_dir, streams=[*infos, *events], rgb_codec=rc.rgb_codec, rgb_quality=rc.rgb_quality,
            depth_png_compression=rc.depth_png_compression, min_free_mb=rc.min_free_mb, overwrite=rc.overwrite,
            config=self.config.model_dump(mode="json"), resolve_timeout=self.config.inputs.resolve_timeout_s,
            metadata={"model": {"id": self.recognizer.model_id, "path": str(self.recognizer.path)}},
        )
        self.recorder.start()

    def _connect_streams(self, found: dict[str, pylsl.StreamInfo]) -> None:
        cfg = self.config
        inputs = cfg.inputs
        timeout = inputs.resolve_timeout_s
        self.buffer = AlignmentBuffer(seconds=cfg.buffer.seconds, stall_timeout=cfg.buffer.stall_timeout_s)
        # Truth first, then video, then physiology: a camera that waits for its consumers starts
        # with its first frame as soon as the video is connected (the truth reader must not miss
        # its first markers), and a physiology source that waits starts at the camera's time.
        # Frames that queue while the physiology inlets open (together: a fraction of a second)
        # reach the spotter as a short burst before any candidate can form.
        if inputs.truth and inputs.truth in found:
            try:
                self._truth = _MarkerReader(found[inputs.truth])
            except Exception as err:  # noqa: BLE001 - pylsl timeout: the truth only feeds reports
                self._note(f"[missing] stream {inputs.truth}: {err}")
        self.rgb_spec = _full_spec(found[inputs.rgb], timeout)
        self._videos.append(
            _VideoReader(self.rgb_spec, self.buffer, stall_timeout=cfg.buffer.stall_timeout_s, info=found[inputs.rgb],
                         hwm=inputs.zmq_hwm, on_frame=self._on_rgb_frame, on_gap=self._on_gap)
        )
        if inputs.depth and inputs.depth in found:
            self._videos.append(
                _VideoReader(_full_spec(found[inputs.depth], timeout), self.buffer, info=found[inputs.depth],
                             stall_timeout=cfg.buffer.stall_timeout_s, hwm=inputs.zmq_hwm, on_gap=self._on_gap)
            )
        names = [name for name in inputs.physio if name in found]
        if names:
            with ThreadPoolExecutor(len(names)) as pool:  # each takes its own clock round trips
                keys = list(pool.map(self.buffer.add_inlet, [found[name] for name in names]))
            self._physio_keys += keys
            self._nominal.update({key: found[name].nominal_srate() for key, name in zip(keys, names, strict=True)})

    def _start_status(self) -> None:
        from mmer.live.status import StatusView

        mode = self.config.outputs.status
        enabled = self._status_flag if self._status_flag is not None else (None if mode == "auto" else bool(mode))
        self._status = StatusView(self.snapshot, enabled=enabled).start()

    # -- frames and candidates ----------------------------------------------------------------------
    def _note(self, text: str) -> None:
        """A warning for the status view and the summary (missing inputs, stalls, returns)."""
        self.warnings.append(text)
        self.recent.append(text)

    def _on_gap(self, stream: str, state: str) -> None:
        self._note(f"[{state}] {stream}")

    def _on_rgb_frame(self, frame, t_recv: float, t_buf: float) -> None:
        if self.first_frame_t is None:
            self.first_frame_t = frame.timestamp + self.rgb_reader.clock_offset
            self.first_frame_index = frame.index
        self._frame_times[frame.index] = (frame.timestamp, t_recv, t_buf)
        if len(self._frame_times) > 4096:
            for k in list(self._frame_times)[:1024]:
                del self._frame_times[k]
        backlog = self.config.inputs.max_backlog_s
        data = frame.data
        if backlog is not None and self._frame_q.qsize() >= max(8, int(backlog * (self.rgb_spec.rate or 30))):
            self.counters.spot_dropped += 1
            data = None  # the spotter learns the frame is missing, instead of falling behind
        self._frame_q.put(_FrameItem(frame.index, frame.timestamp, data, t_recv, t_buf))

    def _make_meshes(self) -> None:
        """The face meshes (spotter, decisions, onset landmarks) take a second or two to build:
        built before any source starts, that time is neither a stall of the streams nor a
        backlog in front of the spotter, nor content the spotter never sees."""
        from mmer.features.face import FaceTracker
        from mmer.live._recognizer import OnsetLandmarks

        self._spot_tracker = FaceTracker()
        self._tracker = FaceTracker()
        self._landmarks = OnsetLandmarks()

    def _spot_loop(self) -> None:
        spotter = self.spotter
        try:
            while True:
                try:
                    item = self._frame_q.get(timeout=0.05)
                except queue.Empty:
                    if self._stopping.is_set() and not any(r.is_alive() for r in self._videos[:1]):
                        break
                    continue
                cands = spotter.push(item.index, item.t, item.data)
                if self.on_score is not None:
                    self.on_score(spotter.signal, self.rgb_reader.clock_offset)
                if cands:
                    self._emit(cands, closing=(item.t, item.t_recv, item.t_buf))
            self._emit(spotter.flush(), closing=None)
        except Exception as err:  # noqa: BLE001 - reported in the summary, the session keeps recording
            log.exception("spotter stopped")
            self.counters.errors.append(f"spotter: {err!r}")
        finally:
            self.spot_ms = spotter.ms_per_frame()
            self.spot_signal = {k: list(v) for k, v in spotter.signal.items()}
            self._spot_done.set()
            spotter.close()
            self._spot_tracker.close()

    def _emit(self, cands, *, closing) -> None:
        now = local_clock()
        post = self.config.buffer.physio_window_s[1]
        for cand in cands:
            cid = self.counters.candidates
            self.counters.candidates += 1
            self.candidates.append(cand)
            offset = self.rgb_reader.clock_offset
            cap, recv, buf = self._frame_times.get(cand.offset, (cand.t_offset, now, now))
            stamps = {"capture": cap + offset, "transport": recv, "buffer": buf, "spot": now}
            closing_capture = (closing[0] + offset) if closing else now
            if closing:
                stamps["closed"] = closing_capture
            job = _Job(cid, cand, stamps, offset, closing_capture, physio_end=cand.t_onset + offset + post)
            self.recent.append(f"candidate {cid}: {cand.kind} frames {cand.onset}-{cand.apex}-{cand.offset}")
            self._job_q.put(job)

    @property
    def rgb_reader(self) -> _VideoReader:
        return self._videos[0]

    # -- decisions ----------------------------------------------------------------------------------
    def _early_loop(self) -> None:
        """Early decisions, in the order the spotter closes candidates."""
        try:
            while True:
                try:
                    job = self._job_q.get(timeout=0.02)
                except queue.Empty:
                    if self._spot_done.is_set() and self._job_q.empty():
                        break
                    continue
                self._decide(job, "early")
                if self._physio_keys:
                    self._late_q.put(job)
        except Exception as err:  # noqa: BLE001 - reported in the summary
            log.exception("early decision thread stopped")
            self.counters.errors.append(f"decisions: {err!r}")
        finally:
            self._early_done.set()
            self._tracker.close()
            self._landmarks.close()

    def _late_loop(self) -> None:
        """Late decisions, each once its physiology window is buffered.

        A thread of its own at a lower CPU priority: physiology features take a few hundred
        milliseconds, which must delay neither the spotter nor the next early decision.
        """
        _lower_thread_priority()
        pending: list[_Job] = []
        try:
            while True:
                try:
                    pending.append(self._late_q.get(timeout=0.05))
                except queue.Empty:
                    pass
                done = self._early_done.is_set() and self._late_q.empty()
                final = done and self._stopping.is_set()
                for job in list(pending):
                    if final or self.buffer.ready(job.physio_end, streams=self._physio_keys):
                        self._decide(job, "late", forced=final)
                        pending.remove(job)
                if done and not pending:
                    break
        except Exception as err:  # noqa: BLE001 - reported in the summary
            log.exception("late decision thread stopped")
            self.counters.errors.append(f"decisions: {err!r}")

    def _decide(self, job: _Job, stage: str, *, forced: bool = False) -> None:
        from mmer.features.sample import sample_from_window

        rec = self.recognizer
        cand = job.cand
        t_on, t_apex = cand.t_onset + job.offset, cand.t_apex + job.offset
        pre, post = self.config.buffer.physio_window_s
        mods = rec.modalities(stage)
        t_cut = local_clock()
        video_keys = [r.key for r in self._videos]
        # Cut with a margin, then locate onset and apex by frame index: the buffer's aligned
        # (dejittered) times may differ from the raw capture times the spotter saw by a few ms,
        # which must not move a window edge past the onset frame.
        if stage == "early":
            win = self.buffer.window(t_on - 0.5, max(t_apex, t_on) + 0.2, streams=video_keys, timeout=0)
        else:
            win = self.buffer.window(t_on + min(pre, -0.5), t_on + post, streams=video_keys + self._physio_keys,
                                     timeout=0)
        landmarks = None
        rgb = win.frames.get(self.rgb_reader.key)
        if rgb is not None and len(rgb):
            idx = np.asarray(rgb.indices)
            ts = np.asarray(rgb.timestamps)
            at_onset, at_apex = np.flatnonzero(idx == cand.onset), np.flatnonzero(idx == cand.apex)
            if at_onset.size and at_apex.size:
                t_on, t_apex = float(ts[at_onset[0]]), float(ts[at_apex[0]])
            if stage == "early":
                landmarks = self._landmarks(rgb.frames[int(np.argmin(np.abs(ts - t_on)))])
        if stage == "early":
            sample = job.early = sample_from_window(win, t_onset=t_on, t_apex=t_apex, config=rec.sample_config,
                                                    tracker=self._tracker, landmarks=landmarks, modalities=mods)
        else:
            # The video and depth inputs are the early decision's (the same onset and apex frames);
            # only the physiology is new.
            physio = sample_from_window(win, t_onset=t_on, t_apex=t_apex, config=rec.sample_config,
                                        modalities=("physio",))
            sample = _merge_samples(job.early, physio)
        t_feat = local_clock()
        probs = rec.predict(sample, mods)
        t_model = local_clock()
        present = sample.modalities
        missing = [m for m in mods if m not in present]
        label = max(probs, key=probs.get)
        decision = Decision(
            candidate_id=job.cid, stage=stage, kind=cand.kind if cand.kind in ("me", "mae") else "me",
            onset=cand.onset, apex=cand.apex, offset=cand.offset,
            t_onset=t_on, t_apex=t_apex, t_offset=cand.t_offset + job.offset,
            label=label, probabilities=probs, modalities=present, missing=missing,
            model_id=rec.model_id, score=float(cand.score),
            extra={"reasons": {m: sample.info.get(m, "") for m in missing},
                   "streams_missing": dict(win.missing)},
        )
        # Early: from the capture of the candidate's last frame. Late: from the end of the physio
        # window, or from when the window was cut if a stall or the session's end cut it short.
        since = job.stamps["capture"] if stage == "early" else min(job.physio_end, t_cut)
        decision = self.events.publish(decision, since=since)
        if stage == "early":
            stamps = {**job.stamps, "features": t_feat, "model": t_model, "publish": decision.t_published}
            self.latency.record("early", stamps)
            self.latency.record(f"early_{decision.kind}", stamps)  # the target is about MEs; macros close later
            self.latency.record("early_from_closing_frame",
                                {"capture": job.closing_capture, "publish": decision.t_published})
        elif not forced and not any(k in win.missing for k in self._physio_keys):
            # Only complete windows measure "late event after its window closed"; windows cut
            # short by a stall or by the end of the session are counted apart.
            self.latency.record("late", {"capture": job.physio_end, "features": t_feat, "model": t_model,
                                         "publish": decision.t_published})
        else:
            self.counters.late_incomplete += 1
        with self._lock:
            self.decisions.append(decision)
            self.counters.decisions += 1
        if self._csv is not None:
            self._csv.write(decision)
        self.recent.append(
            f"{stage:5s} #{job.cid} {decision.kind} {cand.onset}-{cand.offset}: {label} "
            f"{probs[label]:.2f} [{'+'.join(present) or 'prior'}] {decision.latency_ms:.0f} ms"
        )
        if self.on_decision is not None:
            self.on_decision(decision)

    # -- run / stop -----------------------------------------------------------------------------------
    def run(self, *, duration: float | None = None, stop: threading.Event | None = None,
            until: Callable[[], bool] | None = None) -> dict:
        """Block until ``duration`` seconds passed, ``stop`` is set, ``until()`` is true, or Ctrl-C.

        Always stops cleanly and returns :meth:`summary`.
        """
        duration = duration if duration is not None else self.config.duration_s
        t_end = None if duration is None else time.monotonic() + duration
        try:
            while True:
                if stop is not None and stop.is_set():
                    break
                if t_end is not None and time.monotonic() >= t_end:
                    break
                if until is not None and until():
                    break
                if self.recorder is not None and self.recorder.failed:
                    log.error("recording stopped (%s); the pipeline goes on without it", self.recorder.stop_reason)
                    self._note(f"[recording stopped] {self.recorder.stop_reason}")
                    self.manifest = self.recorder.manifest()
                    self.recorder = None
                time.sleep(0.1)
        except KeyboardInterrupt:
            log.warning("interrupted: stopping cleanly (sources, queues, decisions, recording)")
        finally:
            self.stop()
        return self.summary()

    def _monitor_loop(self) -> None:
        while not self._closing.wait(0.2):
            self._watch_physio()
            self._watch_sensors()

    def _watch_sensors(self) -> None:
        """A sensor whose process died is an error of the run (a non-zero exit), not only a stall."""
        for sensor in self.sensors:
            failure = getattr(sensor, "failure", None)  # adapters sharing one process share its failure
            if failure and failure not in self.counters.errors:
                self.counters.errors.append(failure)
                self._note(f"[error] {failure}")

    def _watch_physio(self) -> None:
        """Flag physiology streams that stop delivering, and when they come back (the buffer itself
        only notices when a window waits on them)."""
        if self.buffer is None:
            return
        now = time.monotonic()
        stats = self.buffer.stats()["streams"]
        for key in self._physio_keys:
            received = int(stats.get(key, {}).get("received", 0))
            self._effective(key, received)  # rate marks while running, so the rate at the stop is known
            state = self._physio_state.setdefault(key, {"received": received, "at": now, "stalled": False})
            if received != state["received"]:
                if state["stalled"]:
                    state["stalled"] = False
                    state["gap"]["until"] = local_clock()
                    self._note(f"[back] {key}")
                state.update(received=received, at=now)
            elif not state["stalled"] and now - state["at"] > self.config.buffer.stall_timeout_s:
                state["stalled"] = True
                state["gap"] = {"stream": key, "since": local_clock() - (now - state["at"])}
                self.physio_gaps.append(state["gap"])
                self._note(f"[stalled] {key}")

    def stop(self) -> None:
        """Stop sources, drain every queue, publish the last decisions, close the recording."""
        if not self._running:
            return
        self._running = False
        signals.stop_begun()  # a Ctrl-C from here on must not cut the stop short
        # Sources stop now: silence from here on is not a stall, and rates measured from here on
        # would count the stop's silence; the summary shows each stream as it was at this moment.
        self._at_stop = {row["name"]: row for row in self.stream_stats()}
        self._closing.set()
        # Sources stop acquiring but keep their outlets until every inlet here has drained and
        # closed (closing them first makes liblsl report broken streams); those without a
        # halt step stop at once.
        stop_sources(self.sensors, "halt")
        for reader in self._videos:
            reader.stop(drain=True)
        for reader in self._videos:
            reader.join(timeout=10)
        if self.buffer is not None:
            self.buffer.close()  # pulls what the physiology inlets still hold, so last windows are whole
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=60)
        if self._truth is not None:
            self._truth.stop()
            self._truth.join(timeout=5)
        if self.recorder is not None:
            self.recorder.metadata["sensors"] = [
                {"adapter": getattr(sensor, "name", type(sensor).__name__),
                 "health": sensor.health.as_dict() if hasattr(sensor, "health") else None}
                for sensor in self.sensors
            ]
            self.manifest = self.recorder.stop()  # waits for LabRecorder's last pull itself
        if self.events is not None:
            self.events.close()
        if self._csv is not None:
            self._csv.close()
        if self._status is not None:
            self._status.stop()
        for consumer in self._consumers:
            consumer.stop()
        stop_sources(self.sensors, "stop")

    # -- reporting ------------------------------------------------------------------------------------
    def truth(self) -> list[dict]:
        """Ground-truth intervals received on the truth stream (one dict per onset marker)."""
        import json

        if self._truth is None:
            return []
        rows = []
        for ts, text in list(self._truth.markers):
            try:
                row = json.loads(text)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("phase") == "onset":
                rows.append({**row, "t_marker": ts})
        return rows

    def stream_stats(self) -> list[dict]:
        """Per stream: nominal and effective rate, received, drops, clock offset, buffer fill."""
        if self.buffer is None:
            return []
        stats = self.buffer.stats()["streams"]
        out = []
        video = {r.key: r for r in self._videos}
        for key, st in stats.items():
            reader = video.get(key)
            nominal = reader.spec.rate if reader else self._nominal.get(key)
            capacity = max(1.0, self.config.buffer.seconds * (nominal or 1.0))
            state = "stalled" if (reader.stalled if reader else st.get("stalled")) else "ok"
            rate = reader.effective_hz if reader else self._effective(key, int(st.get("received", 0)))
            if key in self._at_stop:
                state, rate = self._at_stop[key]["state"], self._at_stop[key]["effective_hz"]
            out.append({
                "name": key,
                "type": st.get("type", ""),
                "nominal_hz": nominal,
                "effective_hz": rate,
                "received": int(st.get("received", 0)),
                "drops": int(st.get("dropped", 0)) + (reader.tail_lost if reader else 0),
                "rejected": int(st.get("rejected", 0)),
                "non_finite": int(st.get("nans", 0)),
                "offset_ms": st.get("clock_offset_ms"),
                "fill_pct": min(100.0, 100.0 * st.get("buffered", 0) / capacity),
                "state": state,
                "stalls": int(st.get("stalls", 0)),
            })
        return out

    def _effective(self, key: str, received: int) -> float | None:
        marks = self._rate_marks.setdefault(key, deque(maxlen=64))
        now = time.monotonic()
        if not marks or now - marks[-1][0] >= 0.5:
            marks.append((now, received))
        while len(marks) > 2 and now - marks[0][0] > 5.0:
            marks.popleft()
        t0, r0 = marks[0]
        return (received - r0) / (now - t0) if now - t0 > 0.4 else None

    def snapshot(self) -> dict:
        """What the status view draws."""
        return {
            "elapsed_s": local_clock() - self.started_at if self.started_at else 0.0,
            "streams": self.stream_stats(),
            "candidates": self.counters.candidates,
            "decisions": self.counters.decisions,
            "recent": list(self.recent),
            "recording": str(self.record_dir) if self.recorder is not None else "",
        }

    def summary(self) -> dict:
        """The run's JSON summary (the ``--json`` contract keys first)."""
        lat = self.latency.summary()
        streams = self.stream_stats()
        frames = [s for s in streams if s["type"] == "VideoRGB"]
        received = sum(s["received"] for s in frames)
        gaps = sum(s["drops"] for s in frames)
        source_dropped = _source_frames_dropped(self.sensors)
        # Index gaps the camera itself reported (it fell behind and skipped) are the source's;
        # the rest were lost between camera and spotter, plus frames the spotter had to skip.
        dropped = max(0, gaps - source_dropped) + self.counters.spot_dropped
        physio = [s for s in streams if s["type"] in ("EDA", "ECG", "PPG", "RSP")]
        got = sum(s["received"] for s in physio)
        # Lost = missing on each stream's sampling grid between its first and last sample, plus
        # samples the buffer had to reject. Samples a source sent before the pipeline connected
        # never reached it and are reported apart (``physio_before_connect``).
        physio_lost = sum(s["drops"] + s.get("rejected", 0) for s in physio)
        self._watch_sensors()
        sent = _samples_sent(self.sensors)
        before = None if sent is None else max(0, sent - got - physio_lost)
        def pp(kind):
            entry = lat.get(kind, {})
            return {"p50": entry.get("p50"), "p95": entry.get("p95")}

        stalls = [g for r in self._videos for g in r.gaps] + list(self.physio_gaps)
        return {
            "events": self.counters.decisions,
            "candidates": self.counters.candidates,
            "latency_ms": {"early": pp("early"), "late": pp("late"),
                           "early_from_closing_frame": pp("early_from_closing_frame"),
                           "early_me": pp("early_me"), "early_mae": pp("early_mae")},
            "physio_lost": int(physio_lost),
            "frames_dropped_pct": 100.0 * dropped / max(1, received + max(0, gaps - source_dropped)),
            "frames_received": received,
            "frames_dropped": dropped,
            "frames_dropped_by_source": source_dropped,
            "spot_dropped": self.counters.spot_dropped,
            "late_incomplete": self.counters.late_incomplete,
            "spotter_ms_per_frame": self.spot_ms,
            "physio_received": got,
            "physio_non_finite": sum(s["non_finite"] for s in physio),
            "physio_sent": sent,
            "physio_before_connect": before,
            "latency_detail": lat,
            "streams": streams,
            "gaps": stalls,
            "errors": list(self.counters.errors),
            "warnings": list(self.warnings),
            "model": self.recognizer.model_id if self.recognizer else None,
            "recording": None if self.manifest is None else {
                "dir": str(self.record_dir), "stop_reason": self.manifest.get("stop_reason"),
                "video": self.manifest["files"]["video"],
            },
        }

    def __enter__(self) -> LivePipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _samples_sent(sensors) -> int | None:
    """Physiology samples (all channels) the session's sources pushed; None when none can say."""
    counts = [sensor.physio_samples_sent() for sensor in sensors if hasattr(sensor, "physio_samples_sent")]
    counts = [int(n) for n in counts if n is not None]
    return sum(counts) if counts else None


def _source_frames_dropped(sensors) -> int:
    """Frames the sources themselves skipped (a camera that fell behind), from their health."""
    return sum(int(getattr(getattr(s, "health", None), "frames_dropped", 0) or 0) for s in sensors)


def _merge_samples(early, physio):
    """The late decision's sample: the early sample's video and depth, the physiology sample's rest.

    Each sample leaves the other's modalities at their empty value (zeros, mask off), so the
    arrays add up; ``info`` keeps, per entry, the one that is not ``absent``.
    """
    from mmer.features.sample import Sample

    arrays = {k: np.maximum(v, physio.arrays[k]) if k == "mask" else v + physio.arrays[k]
              for k, v in early.arrays.items()}
    info = {**physio.info, **{k: v for k, v in early.info.items() if v != "absent" or k not in physio.info}}
    return Sample(arrays, info)


def _lower_thread_priority(niceness: int = 5) -> None:
    """Lower the calling thread's CPU priority (Linux gives each thread its own nice value)."""
    import os
    import sys

    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        except OSError as err:
            log.debug("could not lower the priority of %s: %s", threading.current_thread().name, err)

