"""Synthetic live sensors: a camera (RGB + depth) and a physiology amplifier with exact truth.

Both are driven by :class:`mmer.synth.SyntheticLab`: consecutive generator segments on one
LSL-clock time base. Sensors made with the same face, seed and config in one process share a
lab (:func:`mmer.synth.shared_lab`), so the camera's ground truth (``mmer.truth`` markers, one
JSON string per onset, apex and offset, stamped with that frame's time) also times the
physiological responses. Pixels go out on ZeroMQ, timing and samples on LSL, through
:mod:`mmer.transport`, exactly like the hardware adapters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmer.clock import local_clock, sleep_until
from mmer.dataset import EventKind
from mmer.sensors.base import Sensor, SensorError
from mmer.streams import StreamSpec, StreamType, markers_spec, physio_spec, video_spec
from mmer.transport import DEFAULT_ENDPOINT, FramePublisher, MarkerOutlet, SampleOutlet, VideoOutlet

__all__ = ["SyntheticCamera", "SyntheticPhysio"]

_PHYSIO = ("eda", "ecg", "ppg", "rsp")


def _lab(lab, face, seed, config, fps, size, physio_rate, segment, epoch):
    from mmer.synth import FaceNotFoundError, shared_lab

    if lab is not None:
        return lab
    try:
        return shared_lab(face=face, seed=seed, config=config, fps=fps, size=size, physio_rate=physio_rate,
                          segment=segment, epoch=epoch)
    except (FaceNotFoundError, FileNotFoundError, ValueError) as err:
        raise SensorError(f"synthetic sensor cannot start: {err}") from err


class SyntheticCamera(Sensor):
    """Synthetic RGB-D camera: rendered faces with MEs, macros, blinks and distractors, in real time.

    Parameters
    ----------
    face : path or "astronaut", optional
        Subject photograph (the packaged face by default).
    seed : int
        Random seed of the lab.
    config : SynthConfig, optional
        Generator knobs.
    fps : float
        Frame rate (30).
    width, height : int
        Frame size (640x480).
    depth : bool
        Also publish 16-bit depth (``VideoDepth``).
    truth : bool
        Publish ground truth on a ``Markers`` stream (``<prefix>.truth``).
    seconds : float, optional
        Stop after this many seconds of video (run until stopped when omitted).
    realtime : bool
        Pace at ``fps``; ``False`` renders as fast as possible with nominal timestamps.
    prefix : str
        Stream name prefix (``mmer`` gives ``mmer.rgb``, ``mmer.depth``, ``mmer.truth``).
    source_id : str, optional
        Source id prefix (default ``mmer-synth<seed>``).
    endpoint : str
        ZeroMQ bind address (ignored when ``publisher`` is given).
    publisher : FramePublisher, optional
        Share a publisher with other video streams.
    segment : float
        Seconds per generator segment.
    lab : SyntheticLab, optional
        Use this lab instead of the shared one.
    epoch : float or None
        LSL time of the lab's frame 0 (see :class:`mmer.synth.SyntheticLab`). The default 0.0 lets
        sensors in separate processes share ground truth; ``None`` plays the seed from its first
        frame when the first sensor starts, so a run is reproducible.
    wait_for_consumers : float
        Before the first frame, wait up to this many seconds for an LSL inlet and a ZeroMQ
        subscriber (so a short run is not over before anyone listens).
    """

    name = "synthetic-camera"

    def __init__(
        self,
        *,
        face: str | Path | None = None,
        seed: int = 0,
        config=None,
        fps: float = 30.0,
        width: int = 640,
        height: int = 480,
        depth: bool = True,
        truth: bool = True,
        seconds: float | None = None,
        realtime: bool = True,
        prefix: str = "mmer",
        source_id: str | None = None,
        endpoint: str = DEFAULT_ENDPOINT,
        publisher: FramePublisher | None = None,
        segment: float = 60.0,
        lab=None,
        epoch: float | None = 0.0,
        wait_for_consumers: float = 0.0,
    ) -> None:
        super().__init__()
        self.wait_for_consumers = float(wait_for_consumers)
        if fps <= 0 or width < 64 or height < 64:
            raise ValueError(f"need fps > 0 and a frame of at least 64x64, got {fps} fps {width}x{height}")
        if seconds is not None and seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        self.face, self.seed, self.config = face, int(seed), config
        self.fps, self.width, self.height = float(fps), int(width), int(height)
        self.depth, self.truth, self.seconds, self.realtime = depth, truth, seconds, realtime
        self.prefix = prefix
        self.source_id = source_id or f"mmer-synth{self.seed}"
        self.endpoint, self.segment = endpoint, float(segment)
        self._publisher = publisher
        self._lab_arg = lab
        self.epoch = epoch
        self.lab = None
        self._rgb: VideoOutlet | None = None
        self._depth: VideoOutlet | None = None
        self._truth: MarkerOutlet | None = None
        self._own_publisher: FramePublisher | None = None

    @property
    def specs(self) -> list[StreamSpec]:
        """RGB, depth and truth specs (after :meth:`start`)."""
        return [o.spec for o in (self._rgb, self._depth, self._truth) if o is not None]

    def _open(self) -> None:
        self.lab = _lab(self._lab_arg, self.face, self.seed, self.config, self.fps, (self.width, self.height),
                        200.0, self.segment, self.epoch)
        if self.lab.size != (self.width, self.height) or self.lab.fps != self.fps:
            raise SensorError(f"synthetic camera: lab renders {self.lab.size} at {self.lab.fps} fps, "
                              f"camera wants {(self.width, self.height)} at {self.fps} fps")
        publisher = self._publisher
        if publisher is None:
            publisher = self._own_publisher = FramePublisher(endpoint=self.endpoint)
        extra = {"mmer/synthetic": "true", "mmer/seed": str(self.seed), "mmer/face": self.lab.face.name}
        self._rgb = VideoOutlet(
            video_spec(StreamType.VIDEO_RGB, width=self.width, height=self.height, fps=self.fps,
                       endpoint=publisher.endpoint, name=f"{self.prefix}.rgb", source_id=f"{self.source_id}-rgb",
                       model="mmer synthetic camera", extra=extra),
            publisher=publisher,
        )
        if self.depth:
            self._depth = VideoOutlet(
                video_spec(StreamType.VIDEO_DEPTH, width=self.width, height=self.height, fps=self.fps,
                           endpoint=publisher.endpoint, name=f"{self.prefix}.depth",
                           source_id=f"{self.source_id}-depth", model="mmer synthetic camera", extra=extra),
                publisher=publisher,
            )
        if self.truth:
            self._truth = MarkerOutlet(markers_spec(f"{self.prefix}.truth", source_id=f"{self.source_id}-truth",
                                                    label="truth"))
        self.health.extra["truth_markers"] = 0
        # Build the first segment and warm its caches (depth base, noise banks) before the clock starts.
        first = self.lab.segment(self.lab.position(self.fps) // self.lab.frames_per_segment)
        first.rgb(0)
        if self.depth:
            first.depth(0)

    def _markers(self, session, pos: int) -> list[str]:
        index = session.first_index + pos
        out = []
        for e in session.events:
            if e.kind is EventKind.BLINK:
                continue
            for phase, at in (("onset", e.onset), ("apex", e.apex), ("offset", e.offset)):
                if at == index:
                    out.append(json.dumps({
                        "phase": phase, "kind": e.kind.value, "frame": index, "onset": e.onset, "apex": e.apex,
                        "offset": e.offset, "emotion": e.emotion, "objective_class": e.objective_class,
                        "aus": e.aus, "source_id": self.source_id,
                    }))
        return out

    def _run(self) -> None:
        lab = self.lab
        period = 1.0 / self.fps
        if self.wait_for_consumers > 0 and not self._rgb.wait_for_consumers(self.wait_for_consumers):
            self.log.warning("synthetic camera: nobody listening after %.1f s; starting anyway",
                             self.wait_for_consumers)
        t0 = lab.anchor(local_clock() + 0.05)
        n = max(0, int(np.ceil((local_clock() - t0) * self.fps))) if self.realtime else 0
        stop_at = None if self.seconds is None else n + int(round(self.seconds * self.fps))
        while not self._stop.is_set() and (stop_at is None or n < stop_at):
            t = t0 + n * period
            if self.realtime:
                late = local_clock() - t
                if late > period:  # fell behind: drop frames like a real camera, keep the clock
                    skip = int(late / period)
                    self.health.frames_dropped += skip
                    n += skip
                    continue
                sleep_until(t)
            k, pos = divmod(n, lab.frames_per_segment)
            session = lab.segment(k)
            if pos >= lab.frames_per_segment // 2:
                lab.prepare(k + 1)
            if self._depth is not None:
                rgb, depth = session.render(pos)
                self._rgb.push(rgb, n, t)
                self._depth.push(depth, n, t)
            else:
                self._rgb.push(session.rgb(pos), n, t)
            if self._truth is not None:
                for text in self._markers(session, pos):
                    self._truth.push(text, t)
                    self.health.extra["truth_markers"] += 1
            self.health.frames += 1
            n += 1

    def _close(self) -> None:
        for outlet in (self._rgb, self._depth, self._truth):
            if outlet is not None:
                outlet.close()
        if self._own_publisher is not None:
            self._own_publisher.close()
        self._rgb = self._depth = self._truth = self._own_publisher = None


class _TonicCarry:
    """EDA's tonic level carried across generator segments.

    Each segment draws its own tonic level, so segments played back to back would make the trace
    step at every boundary (a skin-conductance level never jumps). The step between lines fitted
    to the last and to the first ``span`` seconds, extrapolated to the boundary, is added back to
    the new segment, fading with time constant ``tau``: the level glides to the segment's own.
    The generator's segments stay as they are; only what the sensor plays is continuous.
    """

    def __init__(self, lab, *, tau: float = 15.0, span: float = 0.5) -> None:
        self.lab = lab
        self.tau = tau * lab.physio_rate
        self.span = max(1, int(round(span * lab.physio_rate)))
        self._step: dict[int, float] = {}

    def _fade(self, k: int, positions: np.ndarray) -> np.ndarray:
        return self._step.get(k, 0.0) * np.exp(-positions / self.tau)

    def offset(self, k: int, start: int, end: int) -> np.ndarray:
        """What to add to segment ``k``'s EDA samples ``start:end``."""
        if k not in self._step:
            previous = k - 1 in self._step
            step = 0.0
            if previous:
                n = self.lab.samples_per_segment
                tail = np.arange(n - self.span, n)
                before = self.lab.segment(k - 1).physio["eda"][tail] + self._fade(k - 1, tail)
                after = self.lab.segment(k).physio["eda"][: self.span]
                head = np.arange(self.span)
                step = float(np.polyval(np.polyfit(tail, before, 1), n - 0.5)
                             - np.polyval(np.polyfit(head, after, 1), -0.5))
            self._step = {k - 1: self._step.get(k - 1, 0.0), k: step} if previous else {k: step}
        return self._fade(k, np.arange(start, end, dtype=np.float64)).astype(np.float32)


class SyntheticPhysio(Sensor):
    """Synthetic physiology amplifier: ECG, PPG, RSP and EDA from neurokit2, coupled to the faces.

    Samples are stamped at their nominal times and pushed in irregular chunks (every 20-60 ms by
    default), the way USB and Bluetooth amplifiers deliver them.

    Parameters
    ----------
    rate : float
        Sampling rate in Hz (200, as in CAS(ME)^3).
    channels : sequence of str
        Any of ``eda``, ``ecg``, ``ppg``, ``rsp``; one LSL stream each (``<prefix>.<channel>``).
    chunk : (float, float)
        Range of seconds between pushes.
    face, seed, config, fps, width, height, segment, lab, epoch
        Define the lab, as for :class:`SyntheticCamera` (same values share ground truth).
    seconds : float, optional
        Stop after this many seconds.
    realtime : bool
        Pace in real time; ``False`` pushes as fast as possible with nominal timestamps.
    prefix, source_id : str
        Stream name prefix and source-id prefix.
    wait_for_consumers : float
        Before the first chunk, wait up to this many seconds for an inlet on every channel.
    """

    name = "synthetic-physio"

    def __init__(
        self,
        *,
        rate: float = 200.0,
        channels: tuple[str, ...] | list[str] = _PHYSIO,
        chunk: tuple[float, float] = (0.02, 0.06),
        face: str | Path | None = None,
        seed: int = 0,
        config=None,
        fps: float = 30.0,
        width: int = 640,
        height: int = 480,
        seconds: float | None = None,
        realtime: bool = True,
        prefix: str = "mmer",
        source_id: str | None = None,
        segment: float = 60.0,
        lab=None,
        epoch: float | None = 0.0,
        wait_for_consumers: float = 0.0,
    ) -> None:
        super().__init__()
        self.wait_for_consumers = float(wait_for_consumers)
        channels = [c.lower() for c in ([channels] if isinstance(channels, str) else channels)]
        unknown = sorted(set(channels) - set(_PHYSIO))
        if unknown or not channels:
            raise ValueError(f"unknown physiology channel(s) {unknown or channels}; choose from {list(_PHYSIO)}")
        if rate <= 0 or not 0 < chunk[0] <= chunk[1]:
            raise ValueError(f"need rate > 0 and 0 < chunk[0] <= chunk[1], got {rate} and {chunk}")
        if seconds is not None and seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        self.rate, self.channels, self.chunk = float(rate), channels, (float(chunk[0]), float(chunk[1]))
        self.face, self.seed, self.config = face, int(seed), config
        self.fps, self.size, self.segment = float(fps), (int(width), int(height)), float(segment)
        self.seconds, self.realtime, self.prefix = seconds, realtime, prefix
        self.source_id = source_id or f"mmer-synth{self.seed}"
        self._lab_arg = lab
        self.epoch = epoch
        self.lab = None
        self._outlets: dict[str, SampleOutlet] = {}

    @property
    def specs(self) -> list[StreamSpec]:
        """One spec per channel (after :meth:`start`)."""
        return [o.spec for o in self._outlets.values()]

    def _open(self) -> None:
        self.lab = _lab(self._lab_arg, self.face, self.seed, self.config, self.fps, self.size, self.rate,
                        self.segment, self.epoch)
        if self.lab.physio_rate != self.rate:
            raise SensorError(f"synthetic physio: lab samples at {self.lab.physio_rate} Hz, sensor wants {self.rate}")
        for ch in self.channels:
            spec = physio_spec(ch.upper(), rate=self.rate, name=f"{self.prefix}.{ch}",
                               source_id=f"{self.source_id}-{ch}", model="mmer synthetic (neurokit2)")
            self._outlets[ch] = SampleOutlet(spec)
        self.lab.segment(self.lab.position(self.rate) // self.lab.samples_per_segment)  # no stall at start

    def _run(self) -> None:
        lab = self.lab
        rng = np.random.default_rng([self.seed, 99])
        tonic = _TonicCarry(lab)
        if self.wait_for_consumers > 0:
            deadline = local_clock() + self.wait_for_consumers
            for outlet in self._outlets.values():
                if not outlet.wait_for_consumers(max(0.0, deadline - local_clock())):
                    self.log.warning("synthetic physio: %s has no inlet; starting anyway", outlet.spec.name)
        t0 = lab.anchor(local_clock() + 0.05)
        m = max(0, int(np.ceil((local_clock() - t0) * self.rate))) if self.realtime else 0
        stop_at = None if self.seconds is None else m + int(round(self.seconds * self.rate))
        while not self._stop.is_set() and (stop_at is None or m < stop_at):
            if self.realtime:
                self._stop.wait(float(rng.uniform(*self.chunk)))
                due = int(np.floor((local_clock() - t0) * self.rate)) + 1
            else:
                due = m + max(1, int(round(np.mean(self.chunk) * self.rate)))
            if stop_at is not None:
                due = min(due, stop_at)
            while m < due:
                k, pos = divmod(m, lab.samples_per_segment)
                session = lab.segment(k)
                if pos + (due - m) >= lab.samples_per_segment // 2:
                    lab.prepare(k + 1)
                end = min(lab.samples_per_segment, pos + (due - m))
                stamps = t0 + (m + np.arange(end - pos)) / self.rate
                for ch, outlet in self._outlets.items():
                    chunk = session.physio[ch][pos:end]
                    if ch == "eda":
                        chunk = chunk + tonic.offset(k, pos, end)
                    outlet.push_chunk(chunk.reshape(-1, 1), stamps)
                self.health.samples += end - pos
                m += end - pos

    def physio_samples_sent(self) -> int:
        """Samples pushed so far, all channels together (what the pipeline counts as sent)."""
        return int(self.health.samples) * len(self.channels)

    def _close(self) -> None:
        for outlet in self._outlets.values():
            outlet.close()
        self._outlets = {}

