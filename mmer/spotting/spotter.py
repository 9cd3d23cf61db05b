"""Streaming micro-expression spotter: frames in, onset/apex/offset candidates out.

How it works (one pass per frame, the batch form replays a recording through the same code):

1. **Face** - :class:`~mmer.features.FaceTracker` landmarks; the similarity transform onto the
   template is smoothed over time and the face is warped to a grey ``crop_size`` crop whose
   brightness is normalised (mean/contrast), which cancels global flicker.
2. **Flow** - DIS optical flow from the crop ``k`` frames back to the current crop, ``k`` about
   half the longest ME. The median flow of the nose bridge is subtracted (residual head motion),
   and the mean displacement vector of each AU-anchored ROI is kept: ``v_r(i) = P_r(i) - P_r(i-k)``.
3. **Signal** - a micro-expression goes out and comes back, so at its apex ``j`` the motion
   towards it, ``v_r(j)``, and the motion after it, ``v_r(j+k)``, are large and opposite, while
   head drift (same direction) and a held expression (one of the two small) give nothing. The ROI
   score is ``sqrt(max(0, -v_r(j) . v_r(j+k)))`` divided by the ROI's recent motion level (so a
   talking mouth does not dominate); the frame score is the largest ROI score, smoothed. Macro
   expressions get the same treatment at a longer scale ``K = macro_scale * k``, with ``P(i) -
   P(i-K)`` chained from the k-step vectors.
4. **Peaks** - a frame is an apex when its score is the local maximum over ``+-k`` frames and
   exceeds ``mean + p * (max - mean)`` of the score over a trailing window (and a floor).
5. **Interval** - onset and offset come from a displacement profile: flow from a neutral frame
   before the apex to every frame around it, in the winning ROI, detrended between the neutral
   frames; onset/offset are where the profile crosses ``edge_fraction`` of its peak. The type is
   ME when the interval is at most ``max_me_s`` long, else macro.
6. **Blinks** - candidates whose winning ROI is an eye or brow and whose interval holds an eye
   aspect ratio dip are dropped (and counted).

A candidate is emitted as soon as its apex is confirmed and its offset is known: at most
``2 k`` frames after the apex for MEs, i.e. within the longest ME after its offset.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from mmer.features.face import FaceTracker, alignment_matrix
from mmer.features.flow import optical_flow
from mmer.features.roi import REFERENCE_ROI, ROI_LANDMARKS, eye_aspect_ratio, face_rois

__all__ = ["Candidate", "SpotterConfig", "Spotter", "STAGES"]

logger = logging.getLogger(__name__)

STAGES = ("face", "align", "flow", "signal", "peaks")
_ROIS = tuple(name for name in ROI_LANDMARKS if name != REFERENCE_ROI)
_BLINK_ROIS = {i for i, name in enumerate(_ROIS) if name.startswith(("eye", "brow", "glabella"))}


@dataclass(frozen=True)
class Candidate:
    """One spotted interval, in the stream's own frame indices (inclusive) and times.

    ``kind`` is ``"me"`` (at most ``max_me_s`` long) or ``"mae"``; ``score`` is the apex
    score in units of the ROI's recent motion level; ``roi`` names the ROI that won.
    """

    onset: int
    apex: int
    offset: int
    score: float
    kind: str
    t_onset: float
    t_apex: float
    t_offset: float
    roi: str = ""

    def as_dict(self) -> dict:
        """Plain dict for JSON markers and CSV rows."""
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class SpotterConfig:
    """Spotter knobs.

    Parameters
    ----------
    fps : float
        Nominal frame rate; sets ``k`` and the ME/macro boundary in frames.
    max_me_s : float
        Longest ME in seconds (0.5 by the usual definition).
    k : int, optional
        Reference distance in frames; ``round(fps * max_me_s / 2)`` by default.
    crop_size : int
        Aligned crop side in pixels.
    flow_method : str
        Per-frame flow (``"dis"`` online; ``"farneback"``/``"tvl1"`` for comparison).
    align_smoothing : float
        Exponential smoothing weight of the newest alignment (1 = none); smoothing removes
        landmark jitter, which is as large as an ME.
    p : float
        Adaptive threshold ``mean + p * (max - mean)`` over ``window_s`` of score history.
    min_score : float
        Absolute floor on the apex score (units of the ROI's recent motion level).
    window_s : float
        Trailing window of the adaptive threshold.
    noise_s : float
        Trailing window over which each ROI's motion level is measured.
    noise_floor_px : float
        Lower bound of an ROI's motion level, in crop pixels (keeps perfectly still ROIs sane).
    macro : bool
        Also look for macro-expressions at scale ``macro_scale * k``.
    macro_scale : int
    edge_fraction : float
        Onset/offset are where the displacement profile crosses this fraction of its peak.
    blink_drop : float
        A blink is an eye aspect ratio below ``blink_drop`` times its recent median.
    """

    fps: float = 30.0
    max_me_s: float = 0.5
    k: int | None = None
    crop_size: int = 128
    flow_method: str = "dis"
    align_smoothing: float = 0.35
    p: float = 0.3
    min_score: float = 3.0
    window_s: float = 10.0
    noise_s: float = 4.0
    noise_floor_px: float = 0.03
    macro: bool = True
    macro_scale: int = 4
    edge_fraction: float = 0.3
    blink_drop: float = 0.7

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.max_me_s <= 0:
            raise ValueError(f"max_me_s must be positive, got {self.max_me_s}")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if not 0 < self.align_smoothing <= 1:
            raise ValueError(f"align_smoothing must be in (0, 1], got {self.align_smoothing}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        if self.macro_scale < 2:
            raise ValueError(f"macro_scale must be at least 2, got {self.macro_scale}")
        if not 0 < self.edge_fraction < 1:
            raise ValueError(f"edge_fraction must be in (0, 1), got {self.edge_fraction}")

    @property
    def ref(self) -> int:
        """The reference distance ``k`` in frames."""
        return self.k if self.k is not None else max(2, round(self.fps * self.max_me_s / 2))


@dataclass
class _Frame:
    index: int
    t: float
    crop: np.ndarray | None = None
    ear: float = float("nan")
    v: np.ndarray | None = None  # (R, 2) k-step ROI displacement


@dataclass
class _Track:
    """One detection scale (ME or macro)."""

    name: str
    scale: int
    scores: dict[int, float] = field(default_factory=dict)
    rois: dict[int, int] = field(default_factory=dict)
    history: deque = field(default_factory=deque)
    last_apex: int = -(10**9)


class Spotter:
    """Streaming ME spotter (see the module docstring for the method).

    Parameters
    ----------
    config : SpotterConfig, optional
    tracker : FaceTracker, optional
        A tracker to share (the live pipeline may already run one); made here otherwise.

    Notes
    -----
    ``push`` returns the candidates confirmed by that frame; ``flush`` returns the rest at the end
    of a stream. ``timings`` holds the seconds spent per stage, ``frames`` the frames pushed,
    ``rejected`` the counts of dropped candidates by reason, ``signal`` the per-frame score.
    """

    def __init__(self, *, config: SpotterConfig | None = None, tracker: FaceTracker | None = None) -> None:
        self.config = config or SpotterConfig()
        self._own_tracker = tracker is None
        self.tracker = tracker or FaceTracker()
        cfg = self.config
        self.k = cfg.ref
        self._tracks = [_Track("me", self.k)]
        if cfg.macro:
            self._tracks.append(_Track("mae", self.k * cfg.macro_scale))
        self._keep = 2 * max(t.scale for t in self._tracks) + 4 * self.k + 8
        self._frames: dict[int, _Frame] = {}
        self._pos = 0
        self._matrix: np.ndarray | None = None
        self._crop_landmarks: np.ndarray | None = None
        self._boxes: dict[str, tuple[int, int, int, int]] | None = None
        self._noise: deque = deque(maxlen=max(8, round(cfg.noise_s * cfg.fps)))
        self._ears: deque = deque(maxlen=max(8, round(3.0 * cfg.fps)))
        self._emitted: list[Candidate] = []
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.frames = 0
        self.rejected = {"blink": 0, "overlap": 0, "no_face": 0}
        self.signal: dict[str, list[tuple[int, float, float]]] = {t.name: [] for t in self._tracks}

    # -- public -------------------------------------------------------------------------------
    def push(self, frame_index: int, t: float, frame: np.ndarray | None) -> list[Candidate]:
        """Feed one frame; return the candidates it confirms (usually none).

        Parameters
        ----------
        frame_index : int
            The stream's frame index (the dataset's own index in replays).
        t : float
            Frame time (LSL clock live, relative seconds in replays).
        frame : ndarray or None
            BGR, BGRA or grey uint8; ``None`` for a damaged/missing frame (counted as no face).
        """
        pos = self._pos
        self._pos += 1
        self.frames += 1
        rec = _Frame(int(frame_index), float(t))
        self._frames[pos] = rec
        self._frames.pop(pos - self._keep, None)

        t0 = time.perf_counter()
        result = self.tracker.process(frame, frame_index=int(frame_index)) if frame is not None else None
        t1 = time.perf_counter()
        self.timings["face"] += t1 - t0
        if result is not None and result.found:
            self._align(frame, result.landmarks, rec)
        t2 = time.perf_counter()
        self.timings["align"] += t2 - t1
        self._flow(pos, rec)
        t3 = time.perf_counter()
        self.timings["flow"] += t3 - t2
        for track in self._tracks:
            self._score(track, pos)
        t4 = time.perf_counter()
        self.timings["signal"] += t4 - t3
        out = []
        for track in self._tracks:
            out.extend(self._peaks(track, pos, final=False))
        out = self._arbitrate(out)
        self.timings["peaks"] += time.perf_counter() - t4
        return out

    def flush(self) -> list[Candidate]:
        """End of stream: score the frames whose future is missing and return the last candidates."""
        t4 = time.perf_counter()
        out = []
        for track in self._tracks:
            out.extend(self._peaks(track, self._pos - 1, final=True))
        out = self._arbitrate(out)
        self.timings["peaks"] += time.perf_counter() - t4
        return out

    def ms_per_frame(self) -> dict[str, float]:
        """Mean milliseconds per frame, per stage and ``total``."""
        n = max(self.frames, 1)
        stages = {name: 1000.0 * sec / n for name, sec in self.timings.items()}
        return {"total": sum(stages.values()), **stages}

    def close(self) -> None:
        """Release the face tracker if this spotter made it."""
        if self._own_tracker:
            self.tracker.close()

    def __enter__(self) -> Spotter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- stage helpers ----------------------------------------------------------------------------
    def _align(self, frame: np.ndarray, landmarks: np.ndarray, rec: _Frame) -> None:
        cfg = self.config
        matrix = alignment_matrix(landmarks, size=cfg.crop_size)
        if self._matrix is not None:
            # A jump (head jerk, re-acquisition) resets the smoothing instead of dragging it.
            jump = np.abs(matrix[:, 2] - self._matrix[:, 2]).max()
            if jump < 0.08 * cfg.crop_size:
                matrix = cfg.align_smoothing * matrix + (1 - cfg.align_smoothing) * self._matrix
        self._matrix = matrix
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
        crop = cv2.warpAffine(grey, matrix, (cfg.crop_size, cfg.crop_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        mean, std = cv2.meanStdDev(crop)
        rec.crop = cv2.convertScaleAbs(crop, alpha=48.0 / max(float(std[0, 0]), 1.0),
                                       beta=128.0 - 48.0 * float(mean[0, 0]) / max(float(std[0, 0]), 1.0))
        pts = cv2.transform(landmarks[None, :, :2].astype(np.float64), matrix)[0]
        self._crop_landmarks = pts if self._crop_landmarks is None else 0.9 * self._crop_landmarks + 0.1 * pts
        ear = eye_aspect_ratio(landmarks)
        rec.ear = ear
        if np.isfinite(ear):
            self._ears.append(ear)
        if self._boxes is None or self.frames % 15 == 0:
            self._boxes = face_rois(self._crop_landmarks, shape=(cfg.crop_size, cfg.crop_size))

    def _flow(self, pos: int, rec: _Frame) -> None:
        ref = self._frames.get(pos - self.k)
        if rec.crop is None or ref is None or ref.crop is None:
            return
        flow = optical_flow(ref.crop, rec.crop, method=self.config.flow_method)
        boxes = self._boxes
        x0, y0, x1, y1 = boxes[REFERENCE_ROI]
        head = np.median(flow[y0:y1, x0:x1].reshape(-1, 2), axis=0)
        v = np.empty((len(_ROIS), 2), dtype=np.float64)
        for r, name in enumerate(_ROIS):
            x0, y0, x1, y1 = boxes[name]
            v[r] = flow[y0:y1, x0:x1].reshape(-1, 2).mean(axis=0) - head
        rec.v = v
        self._noise.append(np.sqrt((v**2).sum(axis=1)))

    def _displacement(self, pos: int, scale: int) -> np.ndarray | None:
        """``P(pos) - P(pos - scale)`` per ROI, chained from k-step vectors."""
        total = np.zeros((len(_ROIS), 2))
        for step in range(scale // self.k):
            rec = self._frames.get(pos - step * self.k)
            if rec is None or rec.v is None:
                return None
            total += rec.v
        return total

    def _score(self, track: _Track, pos: int) -> None:
        j = pos - track.scale
        if j < 0:
            return
        before = self._displacement(j, track.scale)
        after = self._displacement(pos, track.scale)
        rec = self._frames.get(j)
        if rec is None:
            return
        if before is None or after is None:
            score, roi = 0.0, -1
        else:
            level = np.median(np.asarray(self._noise), axis=0) if self._noise else np.zeros(len(_ROIS))
            level = np.maximum(level * np.sqrt(track.scale / self.k), self.config.noise_floor_px)
            dot = -(before * after).sum(axis=1)
            per_roi = np.sqrt(np.maximum(dot, 0.0)) / level
            roi = int(np.argmax(per_roi))
            score = float(per_roi[roi])
        track.scores[j] = score
        track.rois[j] = roi
        track.scores.pop(j - self._keep, None)
        track.rois.pop(j - self._keep, None)
        track.history.append(score)
        while len(track.history) > round(self.config.window_s * self.config.fps):
            track.history.popleft()
        self.signal[track.name].append((rec.index, rec.t, score))

    def _smoothed(self, track: _Track, j: int) -> float:
        vals = [track.scores[i] for i in (j - 1, j, j + 1) if i in track.scores]
        return float(np.mean(vals)) if vals else 0.0

    def _peaks(self, track: _Track, pos: int, *, final: bool) -> list[Candidate]:
        half = max(2, track.scale // 2)
        last_scored = pos - track.scale
        if final:
            candidates = [j for j in track.scores if j > last_scored - half - 1 and j > track.last_apex]
        else:
            candidates = [last_scored - half - 1]
        hist = np.asarray(track.history) if track.history else np.zeros(1)
        threshold = max(hist.mean() + self.config.p * (hist.max() - hist.mean()), self.config.min_score)
        out = []
        for j in sorted(candidates):
            if j not in track.scores or j - track.last_apex <= half:
                continue
            s = self._smoothed(track, j)
            if s < threshold:
                continue
            neighbours = [self._smoothed(track, i) for i in range(j - half, j + half + 1) if i in track.scores and i != j]
            if neighbours and s < max(neighbours):
                continue
            cand = self._interval(track, j, s)
            if cand is not None:
                track.last_apex = j
                out.append(cand)
        return out

    def _interval(self, track: _Track, j: int, score: float) -> Candidate | None:
        cfg = self.config
        roi = track.rois.get(j, -1)
        apex = self._frames.get(j)
        if roi < 0 or apex is None or apex.crop is None:
            self.rejected["no_face"] += 1
            return None
        scale = track.scale
        lo, hi = j - scale, j + scale
        frames = [self._frames.get(i) for i in range(lo, hi + 1)]
        if any(f is None or f.crop is None for f in (frames[0], frames[-1])):
            self.rejected["no_face"] += 1
            return None
        box = self._boxes[_ROIS[roi]]
        bx0, by0, bx1, by1 = box
        rx0, ry0, rx1, ry1 = self._boxes[REFERENCE_ROI]
        step = 1 if track.name == "me" else 2
        positions = list(range(lo, hi + 1, step))
        if positions[-1] != hi:
            positions.append(hi)
        base = frames[0].crop
        disp = {}
        for i in positions:
            rec = self._frames.get(i)
            if rec is None or rec.crop is None:
                continue
            flow = optical_flow(base, rec.crop, method="dis")
            head = np.median(flow[ry0:ry1, rx0:rx1].reshape(-1, 2), axis=0)
            disp[i] = flow[by0:by1, bx0:bx1].reshape(-1, 2).mean(axis=0) - head
        if hi not in disp or j not in disp:
            self.rejected["no_face"] += 1
            return None
        xs = np.array(sorted(disp))
        d = np.array([disp[i] for i in xs])
        trend = np.outer((xs - lo) / (hi - lo), disp[hi])
        d = d - trend
        direction = d[np.searchsorted(xs, j)]
        norm = np.linalg.norm(direction)
        if norm <= 1e-9:
            return None
        profile = d @ (direction / norm)
        peak = int(np.argmax(profile))
        level = cfg.edge_fraction * profile[peak]
        above = profile >= level
        start = peak
        while start > 0 and above[start - 1]:
            start -= 1
        end = peak
        while end < len(xs) - 1 and above[end + 1]:
            end += 1
        on_pos, apex_pos, off_pos = int(xs[start]), int(xs[peak]), int(xs[end])
        if track.name == "me" and off_pos - on_pos + 1 > 2 * scale:
            return None
        recs = {i: self._frames.get(i) for i in (on_pos, apex_pos, off_pos)}
        if any(r is None for r in recs.values()):
            return None
        duration = recs[off_pos].t - recs[on_pos].t
        n_frames = off_pos - on_pos + 1
        kind = "me" if n_frames <= round(cfg.max_me_s * cfg.fps) + 1 and duration <= cfg.max_me_s + 0.5 / cfg.fps else "mae"
        if roi in _BLINK_ROIS and self._blink_between(on_pos, off_pos):
            self.rejected["blink"] += 1
            return None
        return Candidate(
            onset=recs[on_pos].index,
            apex=recs[apex_pos].index,
            offset=recs[off_pos].index,
            score=float(score),
            kind=kind,
            t_onset=recs[on_pos].t,
            t_apex=recs[apex_pos].t,
            t_offset=recs[off_pos].t,
            roi=_ROIS[roi],
        )

    def _blink_between(self, first: int, last: int) -> bool:
        if len(self._ears) < 8:
            return False
        baseline = float(np.median(np.asarray(self._ears)))
        pad = max(1, self.k // 2)
        ears = [self._frames[i].ear for i in range(first - pad, last + pad + 1) if i in self._frames]
        ears = [e for e in ears if np.isfinite(e)]
        return bool(ears) and min(ears) < self.config.blink_drop * baseline

    def _arbitrate(self, found: list[Candidate]) -> list[Candidate]:
        """Drop a candidate that overlaps one already emitted (the earlier, confirmed one wins)."""
        out = []
        for cand in sorted(found, key=lambda c: -c.score):
            if any(c.onset <= cand.offset and cand.onset <= c.offset for c in self._emitted[-20:] + out):
                self.rejected["overlap"] += 1
                continue
            out.append(cand)
        self._emitted.extend(out)
        return sorted(out, key=lambda c: c.onset)
