"""The player: publishes recordings as the same LSL + ZeroMQ streams that live sensors publish.

Each recording becomes a schedule: every frame, every physiology chunk and every marker gets a
time on the recording's relative time base. In real-time mode (``speed``) the player sleeps until
each item's time divided by ``speed`` and pushes it; in lockstep mode it pushes one step (one video
frame period) and waits for every consumer's acknowledgement (see :mod:`mmer.replay.lockstep`).
Published timestamps are always ``t0 + t`` on the LSL clock, so a 200 Hz stream stays 200 Hz
whatever the pacing.

Clock resets and jumps inside a recording (real LabRecorder files have them) are bounded per
stream: a backward step is held at the previous time, and a forward gap longer than ``max_gap``
seconds shrinks to one nominal period. The recording therefore replays whole, in sample order and
in bounded time. Frames are decoded ahead by a small thread pool (``prefetch`` frames), so at most
a few frames are in memory whatever the recording length.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from mmer.clock import local_clock, sleep_until
from mmer.dataset import EventKind, FrameError, FrameTrack, Recording, SampleTrack
from mmer.replay._base import Dataset, RecordingRef
from mmer.replay.lockstep import LOCKSTEP_KEY, LockstepServer
from mmer.streams import StreamSpec, markers_spec
from mmer.transport import DEFAULT_ENDPOINT, FramePublisher, MarkerOutlet, SampleOutlet, VideoOutlet

__all__ = ["Player", "ReplayStats", "TRUTH_STREAM"]

log = logging.getLogger(__name__)

#: Name of the ground-truth marker stream (one JSON string per onset/apex/offset).
TRUTH_STREAM = "mmer.truth"

_FRAME, _SAMPLES, _MARKER, _TRUTH = 0, 1, 2, 3


@dataclass
class ReplayStats:
    """What a replay did; :meth:`as_dict` is the JSON summary of ``mmer replay``."""

    recordings: int = 0
    steps: int = 0
    frames: int = 0
    frames_damaged: int = 0
    samples: int = 0
    markers: int = 0
    truth_markers: int = 0
    clock_jumps: int = 0
    media_seconds: float = 0.0
    wall_seconds: float = 0.0
    wait_seconds: float = 0.0
    schedule_errors_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def realtime_factor(self) -> float:
        """Seconds of recording replayed per wall-clock second spent replaying.

        Time spent waiting for consumers to join (``wait_seconds``) is not replay time.
        """
        busy = self.wall_seconds - self.wait_seconds
        return self.media_seconds / busy if busy > 0 else 0.0

    def as_dict(self) -> dict:
        """Plain dict with schedule-error percentiles (milliseconds, late is positive)."""
        errors = np.asarray(self.schedule_errors_ms, dtype=np.float64)
        pct = {}
        if errors.size:
            pct = {
                "schedule_error_ms_p50": float(np.percentile(errors, 50)),
                "schedule_error_ms_p99": float(np.percentile(errors, 99)),
                "schedule_error_ms_max": float(errors.max()),
            }
        return {
            "recordings": self.recordings,
            "steps": self.steps,
            "frames": self.frames,
            "frames_damaged": self.frames_damaged,
            "samples": self.samples,
            "markers": self.markers,
            "truth_markers": self.truth_markers,
            "clock_jumps": self.clock_jumps,
            "media_seconds": round(self.media_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "wait_seconds": round(self.wait_seconds, 3),
            "realtime_factor": round(self.realtime_factor, 3),
            **pct,
        }


def bounded_times(times: np.ndarray, *, rate: float, max_gap: float) -> tuple[np.ndarray, int]:
    """Make a stream's times non-decreasing with gaps of at most ``max_gap`` seconds.

    Returns the new times and the number of steps changed. Backward steps are held (step 0) and
    longer gaps become one nominal period, so the stream keeps its sample order and its replay
    takes bounded time.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.size < 2:
        return times.copy(), 0
    step = np.diff(times)
    bad_back = step < 0
    bad_gap = step > max_gap
    changed = int(np.count_nonzero(bad_back | bad_gap))
    if not changed:
        return times.copy(), 0
    step = step.copy()
    step[bad_back] = 0.0
    step[bad_gap] = 1.0 / rate if rate > 0 else 0.0
    return np.concatenate([[times[0]], times[0] + np.cumsum(step)]), changed


class _Schedule:
    """Items of one recording in push order: parallel arrays plus the tracks they refer to."""

    def __init__(self, recording: Recording, *, chunk_s: float, max_gap: float, truth: bool, step_s: float) -> None:
        self.recording = recording
        self.tracks: list = []
        self.names: list[str] = []
        times, kinds, tracks, starts, stops = [], [], [], [], []
        self.jumps = 0
        self.times_of: dict[int, np.ndarray] = {}
        bounded = {}
        for group, items in (("f", recording.frames), ("s", recording.samples)):
            for name, track in items.items():
                bounded[(group, name)] = bounded_times(track.timestamps, rate=track.spec.rate, max_gap=max_gap)
        firsts = [b[0][0] for b in bounded.values() if len(b[0])]
        # Physiology chunks are cut on one grid shared by every stream (origin = first item), so
        # in lockstep a chunk never straddles two steps.
        origin = min(firsts) if firsts else 0.0
        for name, track in recording.frames.items():
            ti = len(self.tracks)
            self.tracks.append(track)
            self.names.append(name)
            sched, changed = bounded[("f", name)]
            self.jumps += changed
            self.times_of[ti] = sched
            n = len(sched)
            times.append(sched)
            kinds.append(np.full(n, _FRAME))
            tracks.append(np.full(n, ti))
            starts.append(np.arange(n))
            stops.append(np.arange(n) + 1)
        for name, track in recording.samples.items():
            ti = len(self.tracks)
            self.tracks.append(track)
            self.names.append(name)
            sched, changed = bounded[("s", name)]
            self.jumps += changed
            self.times_of[ti] = sched
            n = len(sched)
            if not n:
                continue
            if track.spec.fmt == "string":
                bounds = np.arange(n + 1)
                kind = _MARKER
            else:
                # Chunks like a live amplifier's: a new chunk whenever chunk_s has elapsed.
                bins = np.floor((sched - origin) / chunk_s + 1e-9).astype(np.int64)
                bounds = np.concatenate([[0], np.flatnonzero(np.diff(bins)) + 1, [n]])
                kind = _SAMPLES
            lo, hi = bounds[:-1], bounds[1:]
            times.append(sched[hi - 1])
            kinds.append(np.full(len(lo), kind))
            tracks.append(np.full(len(lo), ti))
            starts.append(lo)
            stops.append(hi)
        self.truth: list[tuple[float, str]] = self._truth_markers() if truth else []
        if self.truth:
            ti = len(self.tracks)
            self.tracks.append(None)
            self.names.append(TRUTH_STREAM)
            times.append(np.array([t for t, _ in self.truth]))
            kinds.append(np.full(len(self.truth), _TRUTH))
            tracks.append(np.full(len(self.truth), ti))
            starts.append(np.arange(len(self.truth)))
            stops.append(np.arange(len(self.truth)) + 1)
        if times:
            t = np.concatenate(times)
            k = np.concatenate(kinds)
            tr = np.concatenate(tracks)
            st = np.concatenate(starts)
            order = np.lexsort((st, tr, t))
            self.t, self.kind, self.track, self.start = t[order], k[order], tr[order], st[order]
            self.stop = np.concatenate(stops)[order]
        else:
            self.t = np.zeros(0)
            self.kind = self.track = self.start = self.stop = np.zeros(0, dtype=np.int64)
        self.t_begin = float(self.t.min()) if self.t.size else 0.0
        self.t_end = float(self.t.max()) if self.t.size else 0.0
        self.origin = origin
        self.step = np.floor((self.t - origin) / step_s + 1e-9).astype(np.int64)

    def _truth_markers(self) -> list[tuple[float, str]]:
        rec = self.recording
        ref = rec.frames.get(rec.meta.get("reference_track", "rgb")) or rec.frames.get("rgb")
        ref = ref or next(iter(rec.frames.values()), None)
        fps = float(rec.meta.get("fps") or (ref.spec.rate if ref is not None else 30.0) or 30.0)
        first = int(rec.meta.get("first_index", ref.indices[0] if ref is not None and len(ref) else 0))

        def time_of(frame: int) -> float:
            if ref is not None and len(ref):
                pos = int(np.searchsorted(ref.indices, frame))
                if pos < len(ref) and ref.indices[pos] == frame:
                    return float(ref.timestamps[pos])
            return (frame - first) / fps

        out = []
        for number, e in enumerate(rec.events):
            phases = [("onset", e.onset), ("apex", e.apex), ("offset", e.offset)]
            for phase, frame in phases:
                if frame is None:
                    continue
                payload = {
                    "id": number,
                    "subject": e.subject,
                    "video": e.video,
                    "kind": e.kind.value if isinstance(e.kind, EventKind) else str(e.kind),
                    "phase": phase,
                    "frame": int(frame),
                    "onset": e.onset,
                    "apex": e.apex,
                    "offset": e.offset,
                    "emotion": e.emotion,
                    "objective_class": e.objective_class,
                    "aus": e.aus,
                }
                out.append((time_of(int(frame)), json.dumps(payload)))
        out.sort(key=lambda x: x[0])
        return out


class Player:
    """Replay recordings as live streams.

    Parameters
    ----------
    source : Dataset, Recording, RecordingRef or iterable of them
        What to replay, in order; a :class:`~mmer.replay.Dataset` is read lazily.
    speed : float
        Wall-clock pacing; ``1.0`` is real time, ``2.0`` twice as fast. Ignored in lockstep.
    lockstep : bool
        Push one step (a frame period) at a time and wait for every consumer's ack; see
        :mod:`mmer.replay.lockstep`. Deterministic and drop-free.
    consumers : int
        Lockstep only: consumers that must join before the first step.
    loop : bool
        Start again after the last recording (until :meth:`stop`).
    truth_markers : bool
        Publish ground truth on ``mmer.truth`` (one JSON marker per onset, apex and offset).
    wait_consumers : bool
        Hold the start until every outlet has a consumer.
    consumer_timeout : float
        Seconds to wait for consumers (and, in lockstep, for each ack) before giving up.
    prefix : str
        Prepended to every stream name and source_id (to run two replays side by side).
    endpoint : str
        ZeroMQ address for the frame publisher.
    prefetch : int
        Frames decoded ahead of their push time.
    max_gap : float
        Longest silence (seconds) kept inside one stream; longer gaps are clock jumps.
    chunk_s : float
        Physiology is pushed in chunks of at most this many seconds, like a live amplifier
        (real-time mode; lockstep pushes one chunk per stream and step).
    window : int
        Lockstep only: steps the player may run ahead of the slowest acknowledgement (1 = strict
        alternation; 2 overlaps decoding with the consumer's work, same order, still no drops).
    progress : bool
        Show a tqdm bar (recordings replayed) on stderr.
    """

    def __init__(
        self,
        source,
        *,
        speed: float = 1.0,
        lockstep: bool = False,
        consumers: int = 1,
        loop: bool = False,
        truth_markers: bool = False,
        wait_consumers: bool = False,
        consumer_timeout: float = 30.0,
        prefix: str = "",
        endpoint: str = DEFAULT_ENDPOINT,
        prefetch: int = 6,
        max_gap: float = 1.0,
        chunk_s: float = 0.02,
        window: int = 1,
        progress: bool = False,
    ) -> None:
        if getattr(source, "kind", None) == "flowimages":
            raise ValueError("flow-image sets are per-sample images with no timeline; there is nothing to replay")
        if not lockstep and not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        if consumers < 0:
            raise ValueError(f"consumers must be >= 0, got {consumers}")
        if prefetch < 1 or max_gap <= 0 or chunk_s <= 0:
            raise ValueError("prefetch must be >= 1, max_gap and chunk_s > 0")
        self._source = source
        self.speed = float(speed)
        self.lockstep = bool(lockstep)
        self.n_consumers = int(consumers)
        self.loop = bool(loop)
        self.truth_markers = bool(truth_markers)
        self.wait_consumers = bool(wait_consumers)
        self.consumer_timeout = float(consumer_timeout)
        self.prefix = prefix
        self.prefetch = int(prefetch)
        self.max_gap = float(max_gap)
        self.chunk_s = float(chunk_s)
        self.progress = bool(progress)
        self.stats = ReplayStats()
        self.publisher = FramePublisher(endpoint=endpoint, hwm=max(64, 4 * prefetch))
        self.server = LockstepServer(window=window) if self.lockstep else None
        self._outlets: dict[tuple, object] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mmer-replay-decode")
        self._counts: dict[str, int] = {}
        self._next_t0: float | None = None
        self._closed = False

    # -- public API ----------------------------------------------------------------------------
    @property
    def lockstep_endpoint(self) -> str:
        """Address consumers pass to :class:`~mmer.replay.LockstepClient` ('' when not lockstep)."""
        return self.server.endpoint if self.server is not None else ""

    def run(self) -> ReplayStats:
        """Replay everything in the calling thread; returns the stats. Closes outlets at the end."""
        begin = local_clock()
        total = len(self._source) if isinstance(self._source, (Dataset, list, tuple)) else None
        bar = tqdm(total=total, desc="replay", unit="rec", disable=not self.progress, file=sys.stderr)
        try:
            while True:
                for recording in self._iter_recordings():
                    if self._stop.is_set():
                        break
                    self._play(recording)
                    bar.update(1)
                if not self.loop or self._stop.is_set():
                    break
        finally:
            bar.close()
            self.stats.wall_seconds = local_clock() - begin
            if self.server is not None:
                self.server.finish()
            self.close()
        return self.stats

    def start(self) -> Player:
        """Replay in a background thread (see :meth:`wait` and :meth:`stop`)."""
        if self._thread is not None:
            raise RuntimeError("player already started")
        self._thread = threading.Thread(target=self._guarded_run, name="mmer-replay", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background replay to end; re-raises its error. True when it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        if self._error is not None:
            raise self._error
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current item; outlets close cleanly."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self.close()

    def close(self) -> None:
        """Close every outlet, the frame publisher and the lockstep socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        for outlet in self._outlets.values():
            outlet.close()
        self._outlets.clear()
        self.publisher.close()
        if self.server is not None:
            self.server.close()

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------------
    def _guarded_run(self) -> None:
        try:
            self.run()
        except BaseException as err:  # noqa: BLE001 - handed to wait()
            self._error = err
            log.exception("replay stopped on error")

    def _iter_recordings(self):
        src = self._source
        if isinstance(src, Dataset):
            yield from src.recordings()
            return
        items: Iterable = [src] if isinstance(src, (Recording, RecordingRef)) else src
        for item in items:
            yield item.load() if isinstance(item, RecordingRef) else item

    def _named(self, spec: StreamSpec) -> StreamSpec:
        extra = dict(spec.extra)
        if self.server is not None:
            extra[LOCKSTEP_KEY] = self.server.endpoint
        extra["mmer/replay"] = "true"
        return spec.with_(
            name=f"{self.prefix}{spec.name}", source_id=f"{self.prefix}{spec.source_id}", extra=extra
        )

    def _outlet(self, spec: StreamSpec, kind: int):
        spec = self._named(spec)
        key = (spec.name, spec.type, spec.fmt, spec.n_channels, spec.rate, kind,
               spec.extra.get("video/width"), spec.extra.get("video/height"))
        outlet = self._outlets.get(key)
        if outlet is None:
            if kind == _FRAME:
                outlet = VideoOutlet(spec, publisher=self.publisher)
            elif kind in (_MARKER, _TRUTH):
                outlet = MarkerOutlet(spec)
            else:
                outlet = SampleOutlet(spec)
            self._outlets[key] = outlet
            self._counts.setdefault(spec.name, 0)
            if self.server is not None:
                self.server.streams = sorted(self._counts)
        return outlet

    def _play(self, recording: Recording) -> None:
        step_s = 1.0 / 30.0
        if recording.frames:
            rates = [t.spec.rate for t in recording.frames.values() if t.spec.rate > 0]
            step_s = 1.0 / max(rates) if rates else step_s
        # In lockstep one physiology chunk per stream and step is enough: pacing is the acks'.
        chunk_s = step_s if self.server is not None else self.chunk_s
        sched = _Schedule(recording, chunk_s=chunk_s, max_gap=self.max_gap, truth=self.truth_markers, step_s=step_s)
        self.stats.clock_jumps += sched.jumps
        outlets = []
        for ti, track in enumerate(sched.tracks):
            if track is None:
                outlets.append(self._outlet(markers_spec(TRUTH_STREAM, label="truth"), _TRUTH))
            elif isinstance(track, FrameTrack):
                outlets.append(self._outlet(track.spec, _FRAME))
            elif track.spec.fmt == "string":
                outlets.append(self._outlet(track.spec, _MARKER))
            else:
                outlets.append(self._outlet(track.spec, _SAMPLES))
        label = f"{recording.subject}/{recording.video}"
        waited = local_clock()
        self._await_consumers(outlets)
        self.stats.wait_seconds += local_clock() - waited
        log.info("replaying %s: %d items, %.1f s", label, len(sched.t), sched.t_end - sched.t_begin)
        # t0 anchors timestamps (t0 + t, the recording's own spacing, increasing across
        # recordings); wall_t0 anchors pacing. They coincide at speed 1, where timestamps equal
        # push times; at other speeds only the pacing is scaled.
        now = local_clock() + 0.05
        t0 = max(now, self._next_t0 if self._next_t0 is not None else now) - sched.t_begin
        wall_t0 = t0 if self.speed == 1.0 else now - sched.t_begin
        pending: deque[tuple[int, Future]] = deque()
        frame_items = np.flatnonzero(sched.kind == _FRAME)
        next_fetch = 0

        def fetch_ahead(upto: int) -> None:
            nonlocal next_fetch
            while next_fetch < len(frame_items) and len(pending) < self.prefetch and frame_items[next_fetch] <= upto:
                i = int(frame_items[next_fetch])
                track = sched.tracks[sched.track[i]]
                pending.append((i, self._pool.submit(track.read, int(sched.start[i]))))
                next_fetch += 1

        n = len(sched.t)
        current_step = int(sched.step[0]) if n else 0
        step_counter = self.stats.steps
        for i in range(n):
            if self._stop.is_set():
                break
            fetch_ahead(i + 4 * self.prefetch)
            if self.server is not None and sched.step[i] != current_step:
                self._finish_step(step_counter, t0 + sched.origin + (current_step + 1) * step_s, label)
                step_counter += 1
                current_step = int(sched.step[i])
            kind = int(sched.kind[i])
            ti = int(sched.track[i])
            target_rel = float(sched.t[i])
            deadline = None
            if self.server is None:
                deadline = wall_t0 + sched.t_begin + (target_rel - sched.t_begin) / self.speed
            self._push(sched, outlets, ti, kind, i, t0, pending, fetch_ahead, deadline)
        if self.server is not None and n and not self._stop.is_set():
            self._finish_step(step_counter, t0 + sched.origin + (current_step + 1) * step_s, label)
            step_counter += 1
        for _, fut in pending:
            fut.cancel()
        self.stats.steps = step_counter
        self.stats.recordings += 1
        self.stats.media_seconds += max(sched.t_end - sched.t_begin, 0.0) + step_s
        self._next_t0 = t0 + sched.t_end + 1.0

    def _finish_step(self, step: int, until: float, label: str) -> None:
        self.server.announce(step, until, label, dict(self._counts))
        self.server.wait_acks(step, timeout=self.consumer_timeout, stop=self._stop)

    def _wait(self, deadline: float | None) -> None:
        """Real time: sleep until the item is due, then record how late it leaves (ms)."""
        if deadline is None:
            return
        sleep_until(deadline, spin_s=0.001)
        self.stats.schedule_errors_ms.append((local_clock() - deadline) * 1000.0)

    def _push(self, sched: _Schedule, outlets, ti, kind, i, t0, pending, fetch_ahead, deadline) -> None:
        # Data is made ready first (a frame decoded by the prefetch pool), then the push waits for
        # its due time, so decoding never delays a push that could have been on time.
        outlet = outlets[ti]
        name = outlet.spec.name
        lo, hi = int(sched.start[i]), int(sched.stop[i])
        times = sched.times_of.get(ti)
        if kind == _FRAME:
            track: FrameTrack = sched.tracks[ti]
            if not pending or pending[0][0] != i:
                fetch_ahead(i)
            _, fut = pending.popleft()
            index = int(track.indices[lo])
            try:
                frame = fut.result()
                self._wait(deadline)
                outlet.push(frame, index, t0 + float(times[lo]))
            except (FrameError, ValueError) as err:
                self.stats.frames_damaged += 1
                log.warning("damaged frame skipped (%s); %d so far", err, self.stats.frames_damaged)
                return
            self.stats.frames += 1
            self._counts[name] += 1
        elif kind == _SAMPLES:
            track: SampleTrack = sched.tracks[ti]
            self._wait(deadline)
            outlet.push_chunk(np.asarray(track.data[lo:hi]), t0 + times[lo:hi])
            self.stats.samples += hi - lo
            self._counts[name] += hi - lo
        elif kind == _MARKER:
            track = sched.tracks[ti]
            self._wait(deadline)
            outlet.push(str(track.data[lo]), t0 + float(times[lo]))
            self.stats.markers += 1
            self._counts[name] += 1
        else:
            t, text = sched.truth[lo]
            self._wait(deadline)
            outlet.push(text, t0 + t)
            self.stats.truth_markers += 1
            self._counts[name] += 1

    def _await_consumers(self, outlets) -> None:
        if self.server is not None and self.server.consumers < self.n_consumers:
            if not self.server.wait_for_consumers(self.n_consumers, self.consumer_timeout):
                raise TimeoutError(
                    f"lockstep: {self.server.consumers} of {self.n_consumers} consumer(s) joined "
                    f"{self.server.endpoint} within {self.consumer_timeout} s"
                )
        wanted = self.server.wanted if self.server is not None else set()
        for outlet in {id(o): o for o in outlets}.values():
            if outlet.spec.name in wanted and not outlet.wait_for_consumers(self.consumer_timeout):
                raise TimeoutError(f"lockstep consumer asked for {outlet.spec.name!r} but never connected to it")
        if self.wait_consumers:
            for outlet in {id(o): o for o in outlets}.values():
                if not outlet.have_consumers() and not outlet.wait_for_consumers(self.consumer_timeout):
                    raise TimeoutError(f"no consumer for stream {outlet.spec.name!r} within {self.consumer_timeout} s")
