"""The alignment buffer: per-stream rings on the local LSL clock, and multimodal windows."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np
import pylsl

from mmer.clock import local_clock
from mmer.fusion._clock import ClockModel
from mmer.fusion._track import Track
from mmer.fusion.windows import FrameWindow, SignalWindow, Window, resample_signal
from mmer.streams import StreamSpec, StreamType

__all__ = ["AlignmentBuffer"]

log = logging.getLogger(__name__)

_QUARANTINE = 256
_EPS = 1e-7  # bounds are inclusive up to float rounding of the aligned times (100 ns)


class AlignmentBuffer:
    """Per-stream ring buffers on one clock, and windows that wait for every modality.

    Streams enter either from LSL (:meth:`connect`: physiology through numpy ``pull_chunk`` into a
    preallocated buffer; video through its LSL timing twin plus the ZeroMQ pixels it announces) or
    in process (:meth:`add_stream` + :meth:`push_samples` / :meth:`push_frame`, used by lockstep
    replay, tests and benchmarks). Either way every timestamp is kept raw and mapped to the local
    clock when a window is cut: clock offset (``time_correction()``, refreshed periodically and
    fitted for drift), dejittering on the nominal sampling grid, and segment breaks at clock
    resets and long gaps.

    Parameters
    ----------
    seconds : float
        History kept per sample stream; memory is bounded by ``seconds x nominal rate`` entries.
    frame_seconds : float
        History kept per video stream (frames are large: 10 s of 640x480 RGB is about 280 MB).
    stall_timeout : float
        A stream that delivers nothing for this long is declared stalled; windows waiting for it
        complete without it and name it in :attr:`Window.missing`.
    dejitter : bool
        Snap timestamps of regular streams onto a line fitted over their sampling grid.
    clock_refresh : float
        Seconds between ``time_correction()`` refreshes of LSL streams.
    reset_threshold : float
        A backwards timestamp jump, or an offset change, larger than this (seconds) is a clock
        reset.

    Examples
    --------
    >>> buf = AlignmentBuffer(seconds=30)                               # doctest: +SKIP
    >>> buf.connect(types=["VideoRGB", "EDA", "ECG"], timeout=5)        # doctest: +SKIP
    >>> win = buf.window(t0, t1, streams=["VideoRGB", "EDA"], resample_hz=50)  # doctest: +SKIP
    >>> win.missing, win.by_type("EDA").resampled.shape                 # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        seconds: float = 30.0,
        frame_seconds: float = 10.0,
        stall_timeout: float = 2.0,
        dejitter: bool = True,
        clock_refresh: float = 1.0,
        reset_threshold: float = 0.5,
    ) -> None:
        if seconds <= 0 or frame_seconds <= 0:
            raise ValueError(f"seconds and frame_seconds must be > 0, got {seconds}, {frame_seconds}")
        if stall_timeout <= 0:
            raise ValueError(f"stall_timeout must be > 0, got {stall_timeout}")
        self.seconds = float(seconds)
        self.frame_seconds = float(frame_seconds)
        self.stall_timeout = float(stall_timeout)
        self.dejitter = dejitter
        self.clock_refresh = float(clock_refresh)
        self.reset_threshold = float(reset_threshold)
        self._tracks: dict[str, Track] = {}
        self._clocks: dict[str, ClockModel] = {}
        self._cond = threading.Condition()
        self._workers: list = []
        self._closed = False
        self.counters = {"duplicate_names": 0, "skipped_streams": 0}
        self.quarantine: dict[str, deque] = {}

    # -- streams ----------------------------------------------------------------------------------
    @property
    def streams(self) -> list[str]:
        """Keys of the streams in the buffer (the stream name, made unique when names repeat)."""
        with self._cond:
            return list(self._tracks)

    def _unique_key(self, name: str, source_id: str) -> str:
        if name not in self._tracks:
            return name
        key = f"{name}@{source_id}" if source_id else f"{name}#{len(self._tracks)}"
        n = 2
        while key in self._tracks:
            key = f"{name}@{source_id}#{n}"
            n += 1
        self.counters["duplicate_names"] += 1
        log.warning("two streams are named %r; the one from source %r is kept as %r", name, source_id, key)
        return key

    def add_stream(self, spec: StreamSpec, *, key: str | None = None, clock: str | None = None) -> str:
        """Declare an in-process stream and return its key.

        Parameters
        ----------
        spec : StreamSpec
            What the stream is (video specs become frame streams, numeric specs sample streams).
        key : str, optional
            Key to use; defaults to ``spec.name`` (made unique if taken).
        clock : str, optional
            Share the clock model of another key (a video's pixels and its timing twin come from
            one source clock). By default each stream has its own clock at offset 0 until
            :meth:`set_clock_offset` says otherwise.
        """
        if spec.fmt == "string":
            raise ValueError(f"stream {spec.name!r} is a marker stream; the buffer holds samples and frames")
        with self._cond:
            key = key or self._unique_key(spec.name, spec.source_id)
            if key in self._tracks:
                raise ValueError(f"stream key {key!r} already exists")
            if clock is not None and clock not in self._clocks:
                raise ValueError(f"unknown clock key {clock!r}")
            model = self._clocks[clock] if clock else ClockModel(reset_threshold=self.reset_threshold)
            self._clocks[key] = model
            video = spec.is_video
            self._tracks[key] = Track(
                key,
                kind="frames" if video else "samples",
                rate=spec.rate,
                n_channels=1 if video else spec.n_channels,
                labels=[] if video else spec.labels,
                seconds=self.frame_seconds if video else self.seconds,
                clock=model,
                dejitter=self.dejitter,
                reset_threshold=self.reset_threshold,
                stype=spec.type.value,
                spec=spec,
            )
            self.quarantine[key] = deque(maxlen=_QUARANTINE)
            return key

    def _track(self, key: str) -> Track:
        try:
            return self._tracks[key]
        except KeyError:
            raise ValueError(f"unknown stream {key!r}; known: {sorted(self._tracks)}") from None

    # -- ingest -----------------------------------------------------------------------------------
    def push_samples(self, key: str, data: np.ndarray, timestamps: np.ndarray) -> int:
        """Add samples ``(n, n_channels)`` with their source timestamps; return how many were kept.

        A chunk with the wrong channel count or timestamp count is not stored in the ring: it is
        logged, counted (``rejected``) and kept in :attr:`quarantine` for inspection. NaN and
        infinite values are stored as they are and counted (``nans``).
        """
        arr = np.asarray(data)
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        with self._cond:
            track = self._track(key)
            if track.kind != "samples":
                raise ValueError(f"stream {key!r} holds frames; use push_frame")
            if arr.ndim == 1 and track.n_channels == 1:
                arr = arr[:, None]
            if arr.ndim != 2 or arr.shape[1] != track.n_channels or arr.shape[0] != ts.size:
                track.counters["rejected"] += arr.shape[0] if arr.ndim else 1
                self.quarantine[key].append((arr.copy(), ts.copy()))
                log.error(
                    "stream %s: chunk of shape %s with %d timestamps does not match %d channels; quarantined",
                    key, arr.shape, ts.size, track.n_channels,
                )
                return 0
            bad_ts = ~np.isfinite(ts)
            if bad_ts.any():
                track.counters["rejected"] += int(bad_ts.sum())
                self.quarantine[key].append((arr[bad_ts].copy(), ts[bad_ts].copy()))
                log.error("stream %s: %d samples without a finite timestamp quarantined", key, int(bad_ts.sum()))
                arr, ts = arr[~bad_ts], ts[~bad_ts]
            nans = int((~np.isfinite(arr)).sum()) if arr.dtype.kind == "f" else 0
            if nans:
                if track.counters["nans"] == 0:
                    log.warning("stream %s: NaN or infinite values received (kept and counted)", key)
                track.counters["nans"] += nans
            track.ingest(arr, ts)
            self._cond.notify_all()
            return ts.size

    def push_frame(self, key: str, index: int, timestamp: float, frame: np.ndarray) -> None:
        """Add one frame (stored by reference) with its source index and capture timestamp."""
        self.push_frames(key, [frame], np.array([index]), np.array([timestamp], dtype=np.float64))

    def push_frames(self, key: str, frames: Sequence[np.ndarray], indices, timestamps) -> None:
        """Add several frames at once (see :meth:`push_frame`)."""
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if not (len(frames) == ts.size == idx.size):
            raise ValueError(f"stream {key!r}: {len(frames)} frames, {idx.size} indices, {ts.size} timestamps")
        with self._cond:
            track = self._track(key)
            if track.kind != "frames":
                raise ValueError(f"stream {key!r} holds samples; use push_samples")
            ok = np.isfinite(ts)
            if not ok.all():
                track.counters["rejected"] += int((~ok).sum())
                self.quarantine[key].append(([f for f, g in zip(frames, ok) if not g], ts[~ok]))
                log.error("stream %s: frames without a finite timestamp quarantined", key)
                frames = [f for f, g in zip(frames, ok) if g]
                ts, idx = ts[ok], idx[ok]
            track.ingest(list(frames), ts, idx)
            self._cond.notify_all()

    def set_clock_offset(self, key: str, offset: float, *, at: float | None = None) -> None:
        """Record one clock-offset measurement for a stream's source (``local = remote + offset``).

        ``at`` is the local time of the measurement (now by default). LSL streams get this from
        ``time_correction()`` automatically.
        """
        with self._cond:
            self._track(key)
            model = self._clocks[key]
            if model.measure(float(offset), local_clock() if at is None else float(at)):
                for tr in self._tracks.values():
                    if tr.clock is model:
                        tr.resolve_epoch(model.current)
            self._cond.notify_all()

    # -- LSL acquisition ----------------------------------------------------------------------------
    def connect(
        self,
        *,
        types: Iterable[str | StreamType] | None = None,
        names: Iterable[str] | None = None,
        source_ids: Iterable[str] | None = None,
        timeout: float = 5.0,
        frames: bool = True,
    ) -> list[str]:
        """Resolve LSL streams and start acquiring them in background threads.

        Parameters
        ----------
        types, names, source_ids : iterable of str, optional
            Which streams to adopt; each criterion lists alternatives. With none given, every
            visible numeric and video stream is adopted (marker streams are skipped).
        timeout : float
            Seconds to wait for each requested stream to appear.
        frames : bool
            For video streams, also subscribe to the ZeroMQ pixels (otherwise only timing).

        Returns
        -------
        list of str
            Keys of the streams added.
        """
        from mmer.fusion._acquire import LSLWorker, resolve_streams

        infos = resolve_streams(types=types, names=names, source_ids=source_ids, timeout=timeout)
        keys = []
        for info in infos:
            if info.channel_format() == pylsl.cf_string:
                self.counters["skipped_streams"] += 1
                log.info("skipping marker stream %s", info.name())
                continue
            if any(w.source_id == info.source_id() and info.source_id() for w in self._workers):
                continue
            try:
                worker = LSLWorker(self, info, frames=frames)
            except ValueError as err:
                self.counters["skipped_streams"] += 1
                log.warning("%s", err)
                continue
            keys.append(worker.key)
            self._workers.append(worker)
            worker.start()
        return keys

    def add_inlet(self, info: pylsl.StreamInfo, *, frames: bool = True) -> str:
        """Adopt one already resolved LSL stream; return its key."""
        from mmer.fusion._acquire import LSLWorker

        worker = LSLWorker(self, info, frames=frames)
        self._workers.append(worker)
        worker.start()
        return worker.key

    # -- windows ------------------------------------------------------------------------------------
    def _select(self, streams: Iterable[str | StreamType] | None) -> list[str]:
        if streams is None:
            return list(self._tracks)
        keys: list[str] = []
        for item in streams:
            name = str(getattr(item, "value", item))
            if name in self._tracks:
                keys.append(name)
                continue
            typed = [k for k, t in self._tracks.items() if t.stype == name]
            if not typed:
                raise ValueError(f"no stream with key or type {name!r}; known: {sorted(self._tracks)}")
            keys.extend(typed)
        return list(dict.fromkeys(keys))

    def _status(self, key: str, t1: float, now: float) -> str | None:
        """None when the stream is past ``t1``; otherwise why not (for ``missing``)."""
        track = self._tracks[key]
        mark = track.watermark()
        if mark is not None and mark >= t1:
            return None
        if self._check_stall(track, now):
            if track.counters["received"] == 0:
                return "no data"
            return "clock reset pending" if track.pending_clock else "stalled"
        return "waiting"

    def _check_stall(self, track: Track, now: float) -> bool:
        """True (and counted and logged once per stall) when ``track`` has been silent too long."""
        if now - track.last_arrival <= self.stall_timeout:
            return False
        if not track.stalled:
            track.stalled = True
            track.counters["stalls"] += 1
            log.warning("stream %s stalled: nothing for %.1f s", track.key, now - track.last_arrival)
        return True

    def ready(self, t1: float, *, streams: Iterable[str | StreamType] | None = None) -> bool:
        """True when a window ending at ``t1`` would complete now without waiting."""
        with self._cond:
            now = time.monotonic()
            return all(self._status(k, t1, now) != "waiting" for k in self._select(streams))

    def window(
        self,
        t0: float,
        t1: float,
        *,
        streams: Iterable[str | StreamType] | None = None,
        resample_hz: float | None = None,
        timeout: float | None = None,
    ) -> Window:
        """Cut the window ``[t0, t1]`` (local LSL clock) once every stream is past ``t1``.

        Parameters
        ----------
        t0, t1 : float
            Window bounds, inclusive.
        streams : iterable of str, optional
            Keys or stream types (``"EDA"``, ``"VideoRGB"``); all streams by default.
        resample_hz : float, optional
            Also resample each numeric stream onto ``t0 + k / resample_hz``.
        timeout : float, optional
            Longest wait in seconds; ``None`` waits until each stream is past ``t1`` or stalled,
            ``0`` cuts immediately. Streams not past ``t1`` are named in ``missing``.

        Returns
        -------
        Window
        """
        if not t1 >= t0:
            raise ValueError(f"window needs t1 >= t0, got t0={t0}, t1={t1}")
        if resample_hz is not None and resample_hz <= 0:
            raise ValueError(f"resample_hz must be > 0, got {resample_hz}")
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            keys = self._select(streams)
            while True:
                now = time.monotonic()
                states = {k: self._status(k, t1, now) for k in keys}
                waiting = [k for k, s in states.items() if s == "waiting"]
                if not waiting or (deadline is not None and now >= deadline) or self._closed:
                    break
                wait = 0.05 if deadline is None else min(0.05, max(0.0, deadline - now))
                self._cond.wait(wait)
            win = Window(t0=float(t0), t1=float(t1))
            for k, s in states.items():
                if s is not None:
                    win.missing[k] = "timeout" if s == "waiting" else s
                self._cut(win, k, resample_hz)
            return win

    def _cut(self, win: Window, key: str, resample_hz: float | None) -> None:
        track = self._tracks[key]
        pos = track.order()
        times, known = track.aligned(pos)
        sel = known & (times >= win.t0 - _EPS) & (times <= win.t1 + _EPS)
        pos, times = pos[sel], times[sel]
        order = np.argsort(times, kind="stable")
        pos, times = pos[order], times[order]
        raw = track.raw[pos]
        if track.kind == "frames":
            win.frames[key] = FrameWindow(
                frames=[track.values[p] for p in pos],
                timestamps=times,
                raw_timestamps=raw,
                indices=track.index[pos].copy(),
                stype=track.stype,
            )
            return
        part = SignalWindow(
            data=track.values[pos].copy(),
            timestamps=times,
            raw_timestamps=raw,
            labels=list(track.labels),
            rate=track.rate,
            stype=track.stype,
        )
        if resample_hz is not None:
            n = int(np.floor((win.t1 - win.t0) * resample_hz + 1e-9)) + 1
            grid = win.t0 + np.arange(n) / resample_hz
            # Interpolate with the neighbours just outside the window too, so edges are exact.
            all_pos = track.order()
            all_t, all_known = track.aligned(all_pos)
            margin = 2.0 * track.period
            near = all_known & (all_t >= win.t0 - margin) & (all_t <= win.t1 + margin)
            o = np.argsort(all_t[near], kind="stable")
            part.resampled = resample_signal(
                all_t[near][o], track.values[all_pos[near][o]], grid, max_gap=2.5 * track.period
            )
            part.resampled_times = grid
        win.signals[key] = part

    def watermark(self, key: str) -> float | None:
        """Aligned time of the newest sample of ``key`` (local LSL clock), or None."""
        with self._cond:
            return self._track(key).watermark()

    def stats(self) -> dict:
        """Counters per stream (received, dropped, NaNs, resets, stalls, ...) and buffer-wide."""
        with self._cond:
            out = {}
            now = time.monotonic()
            for key, track in self._tracks.items():
                self._check_stall(track, now)
                entry = track.stats()
                entry["type"] = track.stype
                entry["buffered"] = track.count
                entry["clock_offset_ms"] = 1000.0 * track.clock.last_offset
                entry["clock_resets"] = track.clock.resets
                entry["watermark"] = track.watermark()
                entry["stalled"] = track.stalled
                out[key] = entry
            for worker in self._workers:
                out[worker.key].update(worker.stats())
            return {"streams": out, **self.counters}

    # -- lifecycle ----------------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop acquisition threads (pulling what they still hold) and wake waiting windows."""
        for worker in self._workers:
            worker.stop()
        for worker in self._workers:
            worker.join(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __enter__(self) -> AlignmentBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
