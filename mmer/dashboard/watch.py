"""Watch a running LSL session with inlets of the dashboard's own, never the pipeline's.

Everything here runs in the dashboard's process, in a few threads: one finds streams (and their
clock offsets), one pulls samples from every inlet, one takes a video frame a few times a
second and one looks for beats and SCRs in the physiology once a second. A stream that vanishes
is shown as ``gone`` and picked up again when it returns; nothing the watcher does can slow or
stop the session it watches.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import math
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pylsl

from mmer.clock import local_clock

__all__ = ["SCORE_STREAM", "SCORE_TYPE", "SessionWatcher"]

log = logging.getLogger(__name__)

#: LSL name and type of the spotter's score stream (published by :class:`mmer.dashboard.tap.ScoreTap`).
SCORE_STREAM = "mmer.spot"
SCORE_TYPE = "SpotScore"
_PHYSIO = ("EDA", "ECG", "PPG", "RSP")
_VIDEO = ("VideoRGB", "VideoDepth")
_HISTORY_S = 30.0


@dataclass
class StreamState:
    """What the dashboard knows about one stream (keyed by LSL name and source id)."""

    name: str
    type: str
    source_id: str
    nominal_hz: float
    channels: int
    fmt: int
    info: pylsl.StreamInfo
    inlet: pylsl.StreamInlet | None = None
    offset: float = 0.0
    offset_at: float = -1e9
    received: int = 0
    drops: int = 0
    stalls: int = 0
    stalled: bool = False
    gone: bool = False
    last_ts: float | None = None
    last_arrival: float | None = None
    endpoint: str = ""
    opened_at: float = field(default_factory=time.monotonic)
    stamps: deque = field(default_factory=lambda: deque(maxlen=2048))
    trace: deque = field(default_factory=lambda: deque(maxlen=20000))

    @property
    def regular(self) -> bool:
        return self.nominal_hz > 0


class SessionWatcher:
    """Find the session's streams, read them, and keep what the page shows.

    Parameters
    ----------
    predicate : str, optional
        An LSL XPath predicate choosing the streams to watch (for example
        ``"starts-with(name,'mmer.')"``); every stream of the LSL session by default.
    stall_after : float
        Seconds without a sample after which a regular stream is shown as stalled.
    video_fps : float
        How often a video frame is taken, downscaled and sent.
    video_width : int
        Width of the frames sent to the page (pixels).
    face : bool
        Find the face (box and ROIs) in the video frames.
    """

    def __init__(self, *, predicate: str | None = None, stall_after: float = 2.0, video_fps: float = 4.0,
                 video_width: int = 320, face: bool = True) -> None:
        if stall_after <= 0:
            raise ValueError(f"stall_after must be > 0, got {stall_after}")
        if not 0 < video_fps <= 30:
            raise ValueError(f"video_fps must be in (0, 30], got {video_fps}")
        if video_width < 32:
            raise ValueError(f"video_width must be at least 32, got {video_width}")
        self.predicate = predicate
        self.stall_after = float(stall_after)
        self.video_period = 1.0 / video_fps
        self.video_width = int(video_width)
        self.face = face
        self.streams: dict[str, StreamState] = {}
        self._lock = threading.Lock()
        self._new_points: dict[str, list] = {}
        self._new_markers: list[dict] = []
        self._markers: deque = deque(maxlen=500)
        self._peaks: dict[str, list[float]] = {}
        self._video: dict | None = None
        self._video_seq = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors = 0

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> SessionWatcher:
        """Start the watcher's threads (they are daemons: they never hold a process open)."""
        for target, name in ((self._discover_loop, "dash-discover"), (self._pull_loop, "dash-pull"),
                             (self._video_loop, "dash-video"), (self._physio_loop, "dash-physio")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the threads and close every inlet."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._lock:
            for st in self.streams.values():
                if st.inlet is not None:
                    st.inlet.close_stream()
                    st.inlet = None

    # -- discovery and clock ----------------------------------------------------------------------
    def _discover_loop(self) -> None:
        resolver = pylsl.ContinuousResolver(pred=self.predicate, forget_after=3.0) if self.predicate \
            else pylsl.ContinuousResolver(forget_after=3.0)
        while not self._stop.is_set():
            seen = set()
            for info in resolver.results():
                key = f"{info.name()}|{info.source_id()}"
                seen.add(key)
                with self._lock:
                    st = self.streams.get(key)
                if st is None:
                    st = StreamState(name=info.name(), type=info.type(), source_id=info.source_id(),
                                     nominal_hz=info.nominal_srate(), channels=info.channel_count(),
                                     fmt=info.channel_format(), info=info)
                    with self._lock:
                        self.streams[key] = st
                if st.inlet is None or st.gone:
                    # A stream that comes back gets a fresh inlet and metadata (its pixels may have moved).
                    self._open(st, info)
                st.gone = False
            with self._lock:
                for key, st in self.streams.items():
                    if key not in seen:
                        st.gone = True
            self._refresh_offsets()
            self._stop.wait(0.5)

    def _open(self, st: StreamState, info: pylsl.StreamInfo) -> None:
        try:
            inlet = pylsl.StreamInlet(info, max_buflen=max(2, int(_HISTORY_S)), recover=True)
            inlet.open_stream(timeout=2.0)
            full = inlet.info(timeout=2.0)
        except Exception as err:  # noqa: BLE001 - pylsl's timeout and lost errors: retried next round
            log.debug("cannot open %s yet: %s", st.name, err)
            return
        with self._lock:
            old, st.inlet = st.inlet, None
        if old is not None:
            old.close_stream()
        st.info = full
        if st.type in _VIDEO:
            from mmer.streams import StreamSpec

            try:  # a camera that comes back may publish its pixels elsewhere
                st.endpoint = StreamSpec.from_info(full).extra.get("zmq/endpoint", "")
            except ValueError:
                st.endpoint = ""
        st.opened_at = time.monotonic()
        with self._lock:
            st.inlet = inlet

    def _refresh_offsets(self) -> None:
        now = time.monotonic()
        for st in list(self.streams.values()):
            inlet = st.inlet
            if inlet is None or st.gone or now - st.offset_at < 5.0:
                continue
            try:
                st.offset = float(inlet.time_correction(timeout=0.5))
                st.offset_at = now
            except Exception as err:  # noqa: BLE001 - a stream that just went away
                log.debug("time correction for %s failed: %s", st.name, err)

    # -- samples ----------------------------------------------------------------------------------
    def _pull_loop(self) -> None:
        while not self._stop.is_set():
            time.sleep(0.02)  # a plain sleep: a timed Event.wait costs more CPU at this rate
            now = time.monotonic()
            for st in list(self.streams.values()):
                inlet = st.inlet
                if inlet is None:
                    self._check_stall(st, now)
                    continue
                try:
                    samples, stamps = inlet.pull_chunk(timeout=0.0, max_samples=4096)
                except Exception as err:  # noqa: BLE001 - LostError: reopened when it is resolved again
                    log.info("stream %s lost: %s", st.name, err)
                    with self._lock:
                        if st.inlet is inlet:  # not one that discovery has just reopened
                            st.inlet = None
                    continue
                if stamps:
                    self._take(st, samples, stamps, now)
                self._check_stall(st, now)

    def _check_stall(self, st: StreamState, now: float) -> None:
        if not st.regular:
            return
        since = st.last_arrival if st.last_arrival is not None else st.opened_at
        quiet = now - since > max(self.stall_after, 3.0 / st.nominal_hz)
        if quiet and not st.stalled:
            st.stalled = True
            st.stalls += 1
        elif not quiet and st.stalled:
            st.stalled = False

    def _take(self, st: StreamState, samples, stamps, now: float) -> None:
        ts = np.asarray(stamps, dtype=float) + st.offset
        if st.regular and st.last_ts is not None:
            gaps = np.diff(np.concatenate([[st.last_ts], ts])) * st.nominal_hz
            st.drops += int(np.sum(np.maximum(np.round(gaps[gaps > 1.5]) - 1, 0)))
        st.received += len(ts)
        st.last_ts = float(ts[-1])
        st.last_arrival = now
        with self._lock:
            st.stamps.extend(ts.tolist())
        if st.type in _PHYSIO or st.type == SCORE_TYPE:
            values = np.asarray(samples, dtype=float)
            points = self._points(st, ts, values)
            with self._lock:
                st.trace.extend(points)
                while st.trace and st.trace[0][0] < st.last_ts - _HISTORY_S:
                    st.trace.popleft()
                self._new_points.setdefault(st.name, []).extend(points)
        elif st.fmt == pylsl.cf_string:
            for t, row in zip(ts.tolist(), samples, strict=True):
                marker = _marker(st.name, t, row[0] if row else "")
                with self._lock:
                    self._markers.append(marker)
                    self._new_markers.append(marker)

    @staticmethod
    def _points(st: StreamState, ts: np.ndarray, values: np.ndarray) -> list:
        if st.type == SCORE_TYPE:
            # channels: frame index, track (0 ME, 1 macro), score
            return [(float(t), int(v[1]), _num(v[2])) for t, v in zip(ts, values, strict=True)]
        return [(float(t), 0, _num(v[0])) for t, v in zip(ts, values, strict=True)]

    # -- video ------------------------------------------------------------------------------------
    def _video_loop(self) -> None:
        from mmer.transport import FrameSubscriber

        sub = None
        endpoint = name = ""
        tracker = None
        try:
            while not self._stop.wait(self.video_period):
                st = next((s for s in list(self.streams.values())
                           if s.type == "VideoRGB" and s.inlet is not None and not s.gone), None)
                if st is None:
                    continue
                ep = st.endpoint
                if not ep:
                    continue
                if sub is None or ep != endpoint or st.name != name:
                    if sub is not None:
                        sub.close()
                    sub = FrameSubscriber(ep, streams=[st.name], hwm=2)
                    endpoint, name = ep, st.name
                frame = None
                while (got := sub.recv(timeout=0.0)) is not None:
                    frame = got
                if frame is None:
                    continue
                if tracker is None and self.face:
                    from mmer.features.face import FaceTracker

                    tracker = FaceTracker(crop_size=128)
                self._thumbnail(st.name, frame, tracker)
        except Exception:  # noqa: BLE001 - the page loses its video, the session is untouched
            log.exception("dashboard video reader stopped")
            self.errors += 1
        finally:
            if sub is not None:
                sub.close()
            if tracker is not None:
                tracker.close()

    def _thumbnail(self, name: str, frame, tracker) -> None:
        import cv2

        from mmer.features.face import to_bgr

        bgr, _ = to_bgr(frame.data)
        h, w = bgr.shape[:2]
        scale = self.video_width / w
        small = cv2.resize(bgr, (self.video_width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        face = {"found": False, "box": None, "rois": {}}
        if tracker is not None:
            from mmer.features.roi import face_rois

            result = tracker.process(small, frame_index=frame.index)
            if result.box is not None:
                x0, y0, x1, y1 = (int(round(v)) for v in result.box)
                face["box"] = [x0, y0, x1, y1]
                cv2.rectangle(small, (x0, y0), (x1, y1), (80, 220, 80), 1)
            if result.landmarks is not None:
                face["found"] = True
                face["rois"] = face_rois(result.landmarks, shape=small.shape[:2])
                for x0, y0, x1, y1 in face["rois"].values():
                    cv2.rectangle(small, (x0, y0), (x1, y1), (0, 200, 255), 1)
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
        if not ok:
            return
        with self._lock:
            self._video_seq += 1
            self._video = {"stream": name, "index": int(frame.index), "t": float(frame.timestamp),
                           "seq": self._video_seq, "width": small.shape[1], "height": small.shape[0],
                           "jpeg": base64.b64encode(jpeg.tobytes()).decode("ascii"), "face": face}

    # -- physiology events ------------------------------------------------------------------------
    def _physio_loop(self) -> None:
        """Every 2 s, events in the last 12 s; those found earlier, before that span, are kept."""
        span = 12.0
        while not self._stop.wait(2.0):
            for st in list(self.streams.values()):
                if st.type not in _PHYSIO or st.nominal_hz <= 0 or len(st.trace) < 5 * st.nominal_hz:
                    continue
                with self._lock:
                    pts = np.array(list(itertools.islice(reversed(st.trace), int(span * st.nominal_hz)))[::-1],
                                   dtype=float)
                t, x = pts[:, 0], pts[:, 2]
                try:
                    idx = physio_events(st.type, np.nan_to_num(x, nan=float(np.nanmean(x))), st.nominal_hz)
                except Exception as err:  # noqa: BLE001 - neurokit2 on a flat or odd signal: no events
                    log.debug("no %s events: %s", st.name, err)
                    idx = np.zeros(0, dtype=int)
                # The edges of the span are where a filter or peak finder is least sure: an event
                # in the first 2 s is taken from the earlier analysis, which saw it in the middle.
                with self._lock:
                    kept = [v for v in self._peaks.get(st.name, []) if t[-1] - _HISTORY_S < v < t[0] + 2.0]
                    self._peaks[st.name] = kept + [float(v) for v in t[idx] if v >= t[0] + 2.0]

    # -- what the page reads ----------------------------------------------------------------------
    def stats(self) -> list[dict]:
        """One row per stream: rates, jitter, clock offset, drops, stalls, last sample age, state."""
        now_lsl = local_clock()
        rows = []
        for st in sorted(list(self.streams.values()), key=lambda s: (s.type, s.name)):
            with self._lock:
                stamps = np.array(st.stamps, dtype=float)
            recent = stamps[stamps >= now_lsl - 5.0] if stamps.size else stamps
            span = min(5.0, time.monotonic() - st.opened_at)
            effective = len(recent) / span if span > 0.5 else None
            jitter = None
            if st.regular and recent.size > 3:
                jitter = float(np.std(np.diff(recent)) * 1000.0)
            state = "gone" if st.gone and (st.stalled or not st.regular) else "stalled" if st.stalled else "ok"
            rows.append({
                "name": st.name, "type": st.type, "source_id": st.source_id,
                "nominal_hz": st.nominal_hz, "effective_hz": effective, "jitter_ms": jitter,
                "offset_ms": st.offset * 1000.0, "received": st.received, "drops": st.drops,
                "stalls": st.stalls, "state": state,
                "age_ms": None if st.last_ts is None else (now_lsl - st.last_ts) * 1000.0,
            })
        return rows

    def snapshot(self) -> dict:
        """Everything a page that just connected needs: history of traces, markers, peaks, video."""
        with self._lock:
            traces = {st.name: {"type": st.type, "points": [list(p) for p in st.trace]}
                      for st in self.streams.values() if st.type in _PHYSIO or st.type == SCORE_TYPE}
            return {"traces": traces, "markers": list(self._markers), "peaks": dict(self._peaks),
                    "video": self._video}

    def drain(self) -> dict:
        """What arrived since the last call: new trace points and markers, the latest peaks and frame."""
        with self._lock:
            points, self._new_points = self._new_points, {}
            markers, self._new_markers = self._new_markers, []
            types = {st.name: st.type for st in self.streams.values()}
            return {"points": {name: {"type": types.get(name, ""), "points": [list(p) for p in pts]}
                               for name, pts in points.items()},
                    "markers": markers, "peaks": dict(self._peaks), "video": self._video}


def physio_events(kind: str, x: np.ndarray, rate: float) -> np.ndarray:
    """Sample indices of beats (ECG R peaks, PPG pulse peaks), breaths (RSP peaks) or SCR peaks (EDA).

    Uses neurokit2's cleaning and peak finders, the same building blocks as the features.
    """
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "ECG":
            found = nk.ecg_findpeaks(nk.ecg_clean(x, sampling_rate=rate), sampling_rate=rate)["ECG_R_Peaks"]
        elif kind == "PPG":
            found = nk.ppg_findpeaks(nk.ppg_clean(x, sampling_rate=rate), sampling_rate=rate)["PPG_Peaks"]
        elif kind == "RSP":
            found = nk.rsp_findpeaks(nk.rsp_clean(x, sampling_rate=rate), sampling_rate=rate)["RSP_Peaks"]
        elif kind == "EDA":
            phasic = nk.eda_phasic(nk.eda_clean(x, sampling_rate=rate), sampling_rate=rate,
                                   method="highpass")["EDA_Phasic"].to_numpy()
            found = nk.eda_findpeaks(phasic, sampling_rate=rate, method="neurokit")["SCR_Peaks"]
        else:
            raise ValueError(f"no events for stream type {kind!r}")
    idx = np.asarray(found, dtype=float)
    return idx[np.isfinite(idx)].astype(int)


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _marker(stream: str, t: float, text: str) -> dict:
    """A marker for the page: decisions (``stage``) and ground truth (``phase``) parsed, others as text."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    kind = "text"
    if isinstance(data, dict):
        kind = "decision" if "stage" in data and "probabilities" in data else "truth" if "phase" in data else "json"
    return {"stream": stream, "t": t, "kind": kind, "data": data if kind != "text" else None,
            "text": text if kind == "text" else ""}
