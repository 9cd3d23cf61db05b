"""Streaming micro-expression spotter: frames in, onset/apex/offset candidates out.

How it works (one pass per frame, the batch form replays a recording through the same code):

1. **Face** - :class:`~mmer.features.FaceTracker` landmarks give the similarity transform onto
   the template. The transform is held until the head has moved ``realign_px`` in the crop (and
   never changed inside a blink), because landmark jitter and the mesh's reaction to closing eyes
   are as large as an ME. The face is warped to a grey ``crop_size`` crop whose brightness is
   normalised (mean/contrast), which cancels global flicker.
2. **Flow** - DIS optical flow from the crop ``k`` frames back to the current crop, ``k`` about
   half the longest ME. The head's in-plane motion (a similarity field fitted robustly to block
   means of the flow, :func:`~mmer.features.flow.rigid_motion`, leaving out the blocks that hold
   the eyes, so that a blink cannot tilt it) is subtracted, and the
   mean displacement vector of each AU-anchored ROI is kept: ``v_r(i) = P_r(i) - P_r(i-k)``.
3. **Signal** - a micro-expression goes out and comes back, so at its apex ``j`` the motion
   towards it, ``v_r(j)``, and the motion after it, ``v_r(j+k)``, are large and opposite, while
   head drift (same direction) and a held expression (one of the two small) give nothing. The ROI
   score is ``sqrt(max(0, -v_r(j) . v_r(j+k)))`` divided by the ROI's recent motion level (so a
   talking mouth does not dominate); the frame score is the largest ROI score, smoothed. Macro
   expressions get the same treatment at a longer scale ``K = macro_scale * k``, with ``P(i) -
   P(i-K)`` chained from the k-step vectors.
4. **Peaks** - an ME apex beats the scores of half the scale before it and ``confirm_s``
   after it (a trailing mean over ``smooth_s``, so the decision waits for no more than that); a
   macro apex beats half its scale on either side. They must reach ``min_score`` and
   ``macro_min_score`` (the score is already relative to each ROI's motion level) and, when ``p > 0``, ``mean + p * (max - mean)``
   of the score over a trailing window.
5. **Interval** - onset and offset come from a displacement profile of the winning ROI relative
   to a neutral frame before the apex: a flow from that frame for the first ``k`` frames, the
   k-step vectors chained on from there (so a candidate costs at most ``k`` flows), detrended
   between the neutral frames; onset/offset are where the tangent through its ``edge_fraction`` and
   ``3 * edge_fraction`` crossings reaches zero. The type is ME when the interval is at most
   ``max_me_s`` long, else macro. Each scale emits only its own kind: the ME scale drops longer
   intervals and bumps riding on a larger movement (the macro scale judges those), the macro
   scale drops short ones (blinks and MEs caught in its wide window, which the ME scale judges)
   and windows whose far end still holds the expression (their detrended apex would sit at the
   onset).
6. **Blinks and speech** - a frame whose upper lid drops below ``blink_drop`` of its recent
   median height is a blink (a smile raises the lower lid and is not one); the eye, brow and
   glabella ROIs score zero wherever a blink lies within the comparison span, so blinks never
   become candidates (the suppressed frames are counted). A
   candidate during repeated opening and closing of the lips or jaw (speech), or whose own
   displacement profile goes out and back more than once, is dropped and counted.
7. **Head motion** - an ME candidate is dropped (and counted) when the landmark alignment moved
   more than ``head_motion`` of the crop within ``k`` frames on either side of the apex: after a
   head jerk, or while a blink drags the mesh, what the rigid fit leaves is as large as an ME.

Every span is set in seconds and turned into frames once, so 100 and 200 fps cameras see the same
windows as 30 fps ones. An ME candidate is emitted ``k`` frames plus ``confirm_s`` after its score
peak, with its interval cut from the frames there are by then: a few frames after its offset,
within the longest ME. When the displacement profile already peaks at the newest scored frame (or
the sample after it) and has
come back before the newest frame, with no blink near, the candidate is emitted ``k`` frames after
the score peak, without waiting for the confirmation.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from mmer.features.face import FaceTracker, alignment_matrix
from mmer.features.flow import optical_flow, rigid_motion
from mmer.features.roi import REFERENCE_ROI, ROI_LANDMARKS, eye_aspect_ratio, face_rois, upper_lid_height

__all__ = ["Candidate", "RULES", "SpotterConfig", "Spotter", "STAGES"]

logger = logging.getLogger(__name__)

STAGES = ("face", "align", "flow", "signal", "peaks")
#: The rejection rules, each of which :attr:`SpotterConfig.rules` can turn off (to measure its cost).
RULES = ("head_motion", "speech", "ramp", "oscillation", "blink")
_ROIS = tuple(name for name in ROI_LANDMARKS if name != REFERENCE_ROI)
# ROIs a blink reaches: the lids and, through the skin around them, the brows and glabella.
_EYE_ROIS = np.array([name.startswith(("eye", "brow", "glabella")) for name in _ROIS])


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
        Reference distance in frames; half the longest ME, rounded down, by default (7 at 30 fps).
    crop_size : int
        Aligned crop side in pixels.
    flow_method : str
        Per-frame flow (``"dis"`` online; ``"farneback"``/``"tvl1"`` for comparison).
    realign_px : float
        Crop-pixel movement of the landmark alignment that makes the spotter adopt it.
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
    head_motion : float
        An ME candidate is dropped when the landmark alignment moved more than this fraction of
        the crop side (2 px of 128) within ``k`` frames on either side of its apex.
    confirm_s : float
        Time after an ME score peak that must score lower before the apex is confirmed (the
        emission delay is at most ``k`` frames plus this after the score peak); one frame at least.
    smooth_s : float
        Width of the score smoothing: a trailing mean over this span on the ME scale (the live
        decision never waits for it), a centred one on the macro scale; two frames at least.
    macro : bool
        Also look for macro-expressions at scale ``macro_scale * k``.
    macro_scale : int
    macro_min_score : float
        Floor of the macro scale (its wider window collects more chance motion than the ME scale).
    edge_fraction : float
        Onset/offset: the tangent through the profile's crossings of ``edge_fraction`` and
        ``3 * edge_fraction`` of its peak, extended to zero.
    ramp_ratio : float
        A candidate whose ROI ends more than ``ramp_ratio`` times its peak displacement away
        from where it started is dropped: on the ME scale it is part of a larger movement, on
        the macro scale its window does not hold the whole expression.
    oscillation : float
        An ME candidate whose displacement profile reverses three times by more than
        ``oscillation`` times its peak (two bumps or more) is dropped as speech-like motion.
    speech_s, speech_step, speech_px, speech_reversals, speech_relative : float, float, float, int, float
        A candidate is dropped as speech when the lip gap (landmarks 13-14, in
        units of the outer-eye-corner distance) reverses ``speech_reversals`` times by more than
        ``max(speech_step, speech_px / eye distance, 5 x its noise, speech_relative x its range)``
        within ``+-speech_s``. The pixel term keeps the step above the mesh's own wobble on a
        small face (0.01 eye distances is 1.5 px on a 640x480 frame but under 1 px on a 128 px
        face crop); the last term lets an expression that parts the lips once, with the mesh
        wobbling on its way, pass; syllables each move the lips by a good part of the range.
    blink_drop : float
        A blink is an upper-lid height (above the line through the eye corners, in eye widths)
        below ``blink_drop`` times its median over the previous ``blink_s`` seconds. The upper lid
        is what closes in a blink; a smile narrows the eye from below (the cheek pushes the lower
        lid up), which the eye aspect ratio cannot tell from a blink.
    blink_s : float
    rules : tuple of str
        The rejection rules in force, a subset of :data:`RULES` (all by default). Turning one off
        measures what it costs and what it removes; ``"blink"`` stops blinks from silencing the
        eye, brow and glabella ROIs.
    """

    fps: float = 30.0
    max_me_s: float = 0.5
    k: int | None = None
    crop_size: int = 128
    flow_method: str = "dis"
    realign_px: float = 2.5
    p: float = 0.0
    min_score: float = 4.0
    window_s: float = 10.0
    noise_s: float = 4.0
    noise_floor_px: float = 0.03
    head_motion: float = 0.016
    confirm_s: float = 1 / 30
    smooth_s: float = 2 / 30
    macro: bool = True
    macro_scale: int = 7
    macro_min_score: float = 5.0
    edge_fraction: float = 0.2
    ramp_ratio: float = 0.6
    oscillation: float = 0.35
    speech_s: float = 0.8
    speech_step: float = 0.010
    speech_px: float = 1.5
    speech_reversals: int = 3
    speech_relative: float = 0.3
    blink_drop: float = 0.8
    blink_s: float = 1.0
    rules: tuple[str, ...] = RULES

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.max_me_s <= 0:
            raise ValueError(f"max_me_s must be positive, got {self.max_me_s}")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.realign_px <= 0:
            raise ValueError(f"realign_px must be positive, got {self.realign_px}")
        if self.head_motion <= 0:
            raise ValueError(f"head_motion must be positive, got {self.head_motion}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        if self.macro_scale < 2:
            raise ValueError(f"macro_scale must be at least 2, got {self.macro_scale}")
        if not 0 <= self.speech_relative < 1:
            raise ValueError(f"speech_relative must be in [0, 1), got {self.speech_relative}")
        if not 0 < self.edge_fraction < 1 / 3:
            raise ValueError(f"edge_fraction must be in (0, 1/3), got {self.edge_fraction}")
        unknown = set(self.rules) - set(RULES)
        if unknown:
            raise ValueError(f"unknown rule(s) {sorted(unknown)}; known: {', '.join(RULES)}")
        if not 0 < self.blink_drop < 1:
            raise ValueError(f"blink_drop must be in (0, 1), got {self.blink_drop}")
        for name in ("confirm_s", "smooth_s", "window_s", "noise_s", "speech_s", "blink_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    def frames(self, seconds: float, *, least: int = 1) -> int:
        """``seconds`` at this frame rate, rounded, and at least ``least`` frames: every duration
        is set in seconds and turned into frames here, so that 30, 100 and 200 fps see the same
        spans of time."""
        return max(least, round(seconds * self.fps))

    @property
    def ref(self) -> int:
        """The reference distance ``k`` in frames."""
        return self.k if self.k is not None else max(2, int(self.fps * self.max_me_s / 2))


def _edge(xs: np.ndarray, profile: np.ndarray, fraction: float) -> float:
    """Where a profile falling away from its peak (``profile[0]``) reaches zero: the tangent
    through its ``fraction`` and ``3 * fraction`` crossings, extended (a smooth onset is reached
    before the profile clears the noise)."""
    top = profile[0]
    if top <= 0 or len(xs) < 2:
        return float(xs[0])

    def crossing(level: float) -> float:
        below = np.nonzero(profile < level)[0]
        if not len(below):
            return float(xs[-1])
        i = int(below[0])
        x0, x1, p0, p1 = xs[i - 1], xs[i], profile[i - 1], profile[i]
        return float(x0 + (x1 - x0) * (p0 - level) / max(p0 - p1, 1e-12))

    near, far = crossing(3 * fraction * top), crossing(fraction * top)
    if near == far:
        return far
    # The line through (near, 3f) and (far, f) reaches 0 at far + (far - near) / 2.
    return far + (far - near) / 2.0


def _reversals(values: np.ndarray, step: float) -> int:
    """Direction reversals of a signal by more than ``step`` (a zigzag with hysteresis)."""
    reversals, direction, extreme = 0, 0, values[0]
    for g in values[1:]:
        if direction >= 0 and g > extreme:
            extreme = g
        elif direction <= 0 and g < extreme:
            extreme = g
        elif abs(g - extreme) > step:
            reversals += direction != 0
            direction = 1 if g > extreme else -1
            extreme = g
        if direction == 0 and abs(g - values[0]) > step:
            direction = 1 if g > values[0] else -1
            extreme = g
    return reversals


@dataclass
class _Frame:
    index: int
    t: float
    crop: np.ndarray | None = None
    ear: float = float("nan")
    lid: float = float("nan")
    blink: bool = False
    mouth: np.ndarray | None = None  # lip gap and jaw drop, in outer-eye-corner distances
    eyes_px: float = float("nan")  # outer-eye-corner distance in frame pixels
    v: np.ndarray | None = None  # (R, 2) k-step ROI displacement
    fit: np.ndarray | None = None  # this frame's own landmark alignment (2x3), held or not


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
    signal_frames : int, optional
        Keep the per-frame score of only this many recent frames (live sessions); all by default.
    clock : callable
        Clock for the stage timings: wall time by default (latency); ``time.process_time`` gives
        the CPU cost, which other load on the machine does not inflate.

    Notes
    -----
    ``push`` returns the candidates confirmed by that frame; ``flush`` returns the rest at the end
    of a stream. ``timings`` holds the seconds spent per stage, ``frames`` the frames pushed,
    ``rejected`` the counts of dropped candidates by reason, ``signal`` the per-frame score as
    ``(frame_index, t, score)`` per scale, ``blinks`` the indices of the frames taken for blinks.
    """

    def __init__(
        self,
        *,
        config: SpotterConfig | None = None,
        tracker: FaceTracker | None = None,
        signal_frames: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if signal_frames is not None and signal_frames < 1:
            raise ValueError(f"signal_frames must be a positive frame count or None, got {signal_frames}")
        self.config = config or SpotterConfig()
        self._own_tracker = tracker is None
        self.tracker = tracker or FaceTracker()
        cfg = self.config
        self.k = cfg.ref
        self._tracks = [_Track("me", self.k)]
        if cfg.macro:
            self._tracks.append(_Track("mae", self.k * cfg.macro_scale))
        # Every span below is set in seconds (the config) and turned into frames once, here.
        self._confirm = cfg.frames(cfg.confirm_s)
        self._smooth = cfg.frames(cfg.smooth_s, least=2)
        self._history = cfg.frames(cfg.window_s)
        self._speech_span = cfg.frames(cfg.speech_s)
        self._roi_refresh = cfg.frames(0.5)
        self._step = cfg.frames(1 / 30)  # displacement profiles are sampled at about 30 Hz
        self._keep = 3 * max(t.scale for t in self._tracks) + 4 * self.k + 2 * self._smooth + 8
        self._frames: dict[int, _Frame] = {}
        self._pos = 0
        self._matrix: np.ndarray | None = None
        self._crop_landmarks: np.ndarray | None = None
        self._boxes: dict[str, tuple[int, int, int, int]] | None = None
        self._noise: deque = deque(maxlen=cfg.frames(cfg.noise_s, least=8))
        self._ears: deque = deque(maxlen=cfg.frames(cfg.blink_s, least=4))
        self._lids: deque = deque(maxlen=cfg.frames(cfg.blink_s, least=4))
        self._mouth_steps: deque = deque(maxlen=cfg.frames(10.0, least=8))
        self._emitted: deque = deque(maxlen=32)
        self._direct: tuple[tuple[int, int] | None, dict[int, np.ndarray | None]] = (None, {})
        self._clock = clock
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.frames = 0
        self.rejected = dict.fromkeys(("blink_frames", "speech", "too_long", "too_short", "ramp", "oscillation",
                                       "overlap", "no_face", "head_motion"), 0)
        self.signal: dict[str, deque] = {t.name: deque(maxlen=signal_frames) for t in self._tracks}
        self.blinks: deque = deque(maxlen=signal_frames)

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

        t0 = self._clock()
        result = self.tracker.process(frame, frame_index=int(frame_index)) if frame is not None else None
        t1 = self._clock()
        self.timings["face"] += t1 - t0
        if result is not None and result.found:
            self._align(frame, result.landmarks, rec)
        t2 = self._clock()
        self.timings["align"] += t2 - t1
        self._flow(pos, rec)
        t3 = self._clock()
        self.timings["flow"] += t3 - t2
        for track in self._tracks:
            self._score(track, pos)
        t4 = self._clock()
        self.timings["signal"] += t4 - t3
        out = []
        for track in self._tracks:
            out.extend(self._peaks(track, pos, final=False))
        out = self._arbitrate(out)
        self.timings["peaks"] += self._clock() - t4
        return out

    def flush(self) -> list[Candidate]:
        """End of stream: score the frames whose future is missing and return the last candidates."""
        t4 = self._clock()
        out = []
        for track in self._tracks:
            out.extend(self._peaks(track, self._pos - 1, final=True))
        out = self._arbitrate(out)
        self.timings["peaks"] += self._clock() - t4
        return out

    def ms_per_frame(self) -> dict[str, float]:
        """Mean milliseconds per frame, per stage and ``total``."""
        n = max(self.frames, 1)
        stages = {name: 1000.0 * sec / n for name, sec in self.timings.items()}
        return {"total": sum(stages.values()), **stages}

    def crop_pair(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The newest aligned crop and the one ``k`` frames before it (for per-candidate features
        and flow-cost comparisons), or ``None`` when either has no face."""
        new = self._frames.get(self._pos - 1)
        old = self._frames.get(self._pos - 1 - self.k)
        if new is None or old is None or new.crop is None or old.crop is None:
            return None
        return old.crop, new.crop

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
        ear = eye_aspect_ratio(landmarks)
        rec.ear = ear
        rec.lid = upper_lid_height(landmarks)
        if np.isfinite(rec.lid):
            # The baseline holds every frame: a blink is too short to move a one-second median,
            # and an eye held narrower (a squint, a smile) becomes the new normal within it.
            if len(self._lids) >= 4:
                rec.blink = rec.lid < cfg.blink_drop * float(np.median(np.asarray(self._lids)))
                if rec.blink:
                    self.blinks.append(rec.index)
            self._lids.append(rec.lid)
        if np.isfinite(ear):
            self._ears.append(ear)
        # Speech moves the lips apart, or (a closed mouth that the mesh keeps closed) drops the
        # lower lip with the jaw: both are watched, relative to the outer-eye-corner distance.
        eyes = max(float(np.linalg.norm(landmarks[33] - landmarks[263])), 1e-6)
        rec.eyes_px = eyes
        eye_mid = (landmarks[33, :2] + landmarks[263, :2]) / 2.0
        rec.mouth = np.array([np.linalg.norm(landmarks[13, :2] - landmarks[14, :2]),
                              np.linalg.norm(landmarks[17, :2] - eye_mid)]) / eyes
        previous = self._frames.get(self._pos - 2)
        if previous is not None and previous.mouth is not None:
            self._mouth_steps.append(np.abs(rec.mouth - previous.mouth))
        matrix = alignment_matrix(landmarks, size=cfg.crop_size)
        rec.fit = matrix
        if self._matrix is None:
            self._matrix = matrix
        else:
            # Closing eyes drag the mesh's eye corners: hold the alignment through any EAR dip.
            dipping = bool(self._ears) and ear < 0.95 * float(np.median(np.asarray(self._ears)))
            if self._moved(matrix) > (4.0 if dipping else 1.0) * cfg.realign_px:
                self._matrix = matrix
        matrix = self._matrix
        rec.crop = self._crop(frame, matrix)
        if self._boxes is None or self.frames % self._roi_refresh == 0:
            # ROI boxes follow a slow average of the landmarks, refreshed twice a second.
            pts = cv2.transform(landmarks[None, :, :2].astype(np.float64), matrix)[0]
            self._crop_landmarks = pts if self._crop_landmarks is None else 0.7 * self._crop_landmarks + 0.3 * pts
            self._boxes = face_rois(self._crop_landmarks, shape=(cfg.crop_size, cfg.crop_size))

    def _crop(self, frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """The grey aligned crop, brightness-normalised (mean and contrast; cancels flicker)."""
        size = self.config.crop_size
        if frame.ndim == 2 or frame.shape[2] == 1:
            grey = frame.reshape(frame.shape[:2])
        else:
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
        crop = cv2.warpAffine(grey, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mean, std = cv2.meanStdDev(crop)
        gain = 48.0 / max(float(std[0, 0]), 1.0)
        return cv2.convertScaleAbs(crop, alpha=gain, beta=128.0 - gain * float(mean[0, 0]))

    def _moved(self, matrix: np.ndarray, held: np.ndarray | None = None) -> float:
        """Largest crop-pixel shift of four inner face points between the held (or ``held``) and a
        new alignment."""
        size = self.config.crop_size
        corners = np.array([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]) * size
        held = self._matrix if held is None else held
        in_frame = cv2.transform(corners[None], cv2.invertAffineTransform(held))[0]
        return float(np.abs(cv2.transform(in_frame[None], matrix)[0] - corners).max())

    def _head_moved(self, j: int) -> bool:
        """True when the landmark alignment moved more than ``head_motion`` of the crop side over
        either half of the ME comparison span around ``j`` (``j - k`` to ``j``, ``j`` to ``j + k``).
        A head jerk, or the mesh dragged by a blink, shifts the crop by pixels there; what the
        rigid fit leaves of that is as large as an ME and goes out and back like one."""
        limit = self.config.head_motion * self.config.crop_size
        for end in (j, j + self.k):
            a, b = self._frames.get(end - self.k), self._frames.get(end)
            if a is not None and b is not None and a.fit is not None and b.fit is not None \
                    and self._moved(b.fit, a.fit) > limit:
                return True
        return False

    def _flow(self, pos: int, rec: _Frame) -> None:
        ref = self._frames.get(pos - self.k)
        if rec.crop is None or ref is None or ref.crop is None:
            return
        flow = optical_flow(ref.crop, rec.crop, method=self.config.flow_method)
        rec.v = self._roi_vectors(flow)
        self._noise.append(np.sqrt((rec.v**2).sum(axis=1)))

    def _roi_vectors(self, flow: np.ndarray, rois: list[int] | None = None) -> np.ndarray:
        """Mean flow per ROI minus the head's rigid motion (affine, so its box mean is its value at
        the box centre). Box means come from one integral image."""
        # The eyes are left out of the head fit: a blink would tilt it (see rigid_motion).
        motion = rigid_motion(flow, exclude=(self._boxes["eye_r"], self._boxes["eye_l"]))
        integral = cv2.integral(flow)
        rois = range(len(_ROIS)) if rois is None else rois
        v = np.empty((len(rois), 2), dtype=np.float64)
        for out, r in enumerate(rois):
            x0, y0, x1, y1 = self._boxes[_ROIS[r]]
            total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
            centre = np.array([(x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0, 1.0])
            v[out] = total / ((x1 - x0) * (y1 - y0)) - motion @ centre
        return v

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
            if "blink" in self.config.rules and self._blink_near(j, track.scale):
                # Eyelids in a blink go out and back like an ME: the eye ROIs sit this one out.
                per_roi[_EYE_ROIS] = 0.0
                self.rejected["blink_frames"] += track.name == "me"
            roi = int(np.argmax(per_roi))
            score = float(per_roi[roi])
        track.scores[j] = score
        track.rois[j] = roi
        track.scores.pop(j - self._keep, None)
        track.rois.pop(j - self._keep, None)
        track.history.append(score)
        while len(track.history) > self._history:
            track.history.popleft()
        self.signal[track.name].append((rec.index, rec.t, score))

    def _lead(self, track: _Track) -> int:
        """Frames of future score the smoothing of ``track`` needs (none on the ME scale)."""
        return 0 if track.name == "me" else max(1, self._smooth // 2)

    def _smoothed(self, track: _Track, j: int) -> float:
        # ME scale: a trailing mean over ``smooth_s``, so the live decision never waits for the
        # next score; the macro scale, with time to spare, averages both sides.
        lead = self._lead(track)
        taps = range(j - self._smooth + 1, j + 1) if track.name == "me" else range(j - lead, j + lead + 1)
        vals = [track.scores[i] for i in taps if i in track.scores]
        return float(np.mean(vals)) if vals else 0.0

    def _peaks(self, track: _Track, pos: int, *, final: bool) -> list[Candidate]:
        half = max(2, track.scale // 2)
        # An ME apex is confirmed once its score has fallen for ``confirm_s`` (the
        # live decision waits for it); a macro apex must beat half its scale on both sides.
        ahead = min(half, self._confirm) if track.name == "me" else half
        newest = pos - track.scale - self._lead(track)  # the newest frame whose smoothed score is known
        if final:
            candidates = [(j, ahead) for j in track.scores if j > newest - ahead and j > track.last_apex]
        else:
            candidates = [(newest - ahead, ahead)]
            if track.name == "me" and ahead:
                # The newest score may already be the apex: tried without its confirmation, it is
                # emitted only if its displacement profile has visibly returned (its offset lies in
                # the frames there are), a frame sooner than the confirmed path.
                candidates.append((newest, 0))
        hist = np.asarray(track.history) if track.history else np.zeros(1)
        floor = self.config.min_score if track.name == "me" else self.config.macro_min_score
        threshold = max(hist.mean() + self.config.p * (hist.max() - hist.mean()), floor)
        out = []
        for j, after in sorted(candidates):
            if j not in track.scores or j - track.last_apex <= half:
                continue
            s = self._smoothed(track, j)
            if s < threshold:
                continue
            neighbours = [self._smoothed(track, i) for i in range(j - half, j + after + 1) if i in track.scores and i != j]
            if neighbours and s < max(neighbours):
                continue
            cand = self._interval(track, j, s, settled=after < ahead)
            if cand is not None:
                track.last_apex = j
                out.append(cand)
        return out

    def _interval(self, track: _Track, j: int, score: float, *, settled: bool = False) -> Candidate | None:
        """The candidate around apex ``j``, or None when it is rejected (counted by reason).

        With ``settled``, a tentative look before the apex is confirmed: None, with nothing counted,
        unless no blink is near, the displacement peaks at ``j`` or the sample after it (the score
        cannot peak much later), and the profile's return lies before the newest frame.
        """
        if settled:
            if self._blink_near(j, track.scale):
                return None  # a blink in the span: the confirmed path judges it
            counts = dict(self.rejected)
            cand = self._interval(track, j, score)
            self.rejected = counts
            newest = self._frames[self._pos - 1].index
            if cand is None or cand.apex > self._frames[j].index + self._step or cand.offset >= newest:
                return None
            return cand
        cfg = self.config
        roi = track.rois.get(j, -1)
        apex = self._frames.get(j)
        if roi < 0 or apex is None or apex.crop is None:
            self.rejected["no_face"] += 1
            return None
        scale = track.scale
        if "speech" in cfg.rules and self._speaking(j):
            self.rejected["speech"] += 1
            return None
        if track.name == "me" and "head_motion" in cfg.rules and self._head_moved(j):
            self.rejected["head_motion"] += 1
            return None
        # Neutral ends: half the ME scale beyond the comparison span, half the scale for macros
        # (a long expression must not reach into its own baseline).
        pad = max(1, self.k // 2) if track.name == "me" else max(1, scale // 2)
        # At the start and end of a stream the window is clipped to the frames there are, and each
        # end moves inwards to the nearest frame with a face.
        lo = max(j - scale - pad, self._pos - self._keep + 1, 0)
        hi = min(j + scale + pad, self._pos - 1)
        while lo < j and (self._frames.get(lo) is None or self._frames[lo].crop is None):
            lo += 1
        while hi > j and (self._frames.get(hi) is None or self._frames[hi].crop is None):
            hi -= 1
        if j - lo < max(2, scale // 2) or hi - j < max(2, scale // 2):
            self.rejected["no_face"] += 1
            return None
        disp = self._profile(lo, hi, j, roi, step=self._step if track.name == "me" else 2 * self._step)
        if j not in disp:
            self.rejected["no_face"] += 1
            return None
        xs = np.array(sorted(disp), dtype=np.float64)
        d = np.array([disp[int(i)] for i in xs])
        # Neutral at both ends: remove the straight line between them (slow drift, rigid residue).
        drift = d[-1] - d[0]
        d = d - d[0] - np.outer((xs - xs[0]) / (xs[-1] - xs[0]), drift)
        direction = d[int(np.searchsorted(xs, j))]
        norm = np.linalg.norm(direction)
        if norm <= 1e-9:
            return None
        profile = d @ (direction / norm)
        peak = int(np.argmax(profile))
        if "ramp" in cfg.rules and np.linalg.norm(drift) > cfg.ramp_ratio * profile[peak]:
            # The region ends far from where it started. On the ME scale: a bump on the rise or
            # fall of a larger movement, which the macro scale judges whole. On the macro scale:
            # the score rose before the expression began (a large movement after, noise before),
            # and removing the drift would put a false apex at its onset; the score peak on the
            # expression itself judges it.
            self.rejected["ramp"] += 1
            return None
        if track.name == "me" and "oscillation" in cfg.rules and _reversals(profile, cfg.oscillation * profile[peak]) >= 3:
            # The region went out and back more than once around the apex: speech or chewing
            # that the landmarks missed (a closed mouth, a small movement), not one expression.
            self.rejected["oscillation"] += 1
            return None
        on_x = _edge(xs[: peak + 1][::-1], profile[: peak + 1][::-1], cfg.edge_fraction)
        off_x = _edge(xs[peak:], profile[peak:], cfg.edge_fraction)
        on_pos = int(np.clip(np.floor(on_x), lo, xs[peak]))
        off_pos = int(np.clip(np.ceil(off_x), xs[peak], hi))
        apex_pos = int(xs[peak])
        recs = {i: self._frames.get(i) for i in (on_pos, apex_pos, off_pos)}
        if any(r is None for r in recs.values()):
            return None
        duration = recs[off_pos].t - recs[on_pos].t
        n_frames = off_pos - on_pos + 1
        kind = "me" if n_frames <= round(cfg.max_me_s * cfg.fps) + 1 and duration <= cfg.max_me_s + 0.5 / cfg.fps else "mae"
        if kind != track.name:
            # Each scale judges its own kind: an ME-scale bump that lasts longer is the onset or
            # offset of something longer (the macro scale judges it whole), and a short interval
            # on the macro scale is a blink or ME caught inside its wide window (the ME scale,
            # with its blink and speech checks, judges it).
            self.rejected["too_long" if track.name == "me" else "too_short"] += 1
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

    def _profile(self, lo: int, hi: int, j: int, roi: int, *, step: int) -> dict[int, np.ndarray]:
        """Displacement ``P(i) - P(lo)`` of one ROI for every ``step``-th frame of ``lo..hi`` (plus
        the apex ``j`` and ``hi``).

        Only frames less than ``k`` after ``lo`` need a flow from ``lo``: further ones chain the
        k-step vectors the spotter already has, ``P(i) - P(lo) = (P(i - k) - P(lo)) + v(i)``, so a
        candidate costs at most ``k`` flows instead of one per frame (an ME closes sooner, and a
        macro-expression no longer stalls the stream for 130-160 ms). Those flows are
        kept for the next call from the same neutral frame and ROI: an ME tried a frame early and
        then confirmed pays for them once.
        """
        base = self._frames[lo].crop
        if self._direct[0] != (lo, roi):
            self._direct = ((lo, roi), {})
        flows = self._direct[1]
        disp: dict[int, np.ndarray] = {}

        def direct(i: int) -> np.ndarray | None:
            if i not in flows:
                rec = self._frames.get(i)
                flows[i] = None if rec is None or rec.crop is None else \
                    self._roi_vectors(optical_flow(base, rec.crop, method="dis"), [roi])[0]
            return flows[i]

        def at(i: int) -> np.ndarray | None:
            if i not in disp:
                rec = self._frames.get(i)
                if i - lo >= self.k and rec is not None and rec.v is not None and (prior := at(i - self.k)) is not None:
                    disp[i] = prior + rec.v[roi]
                else:
                    disp[i] = direct(i) if i > lo else np.zeros(2)
            return disp[i]

        wanted = {*range(lo, hi + 1, step), j, hi}
        for i in sorted(wanted):
            at(i)
        return {i: v for i, v in disp.items() if v is not None and i in wanted}

    def _speaking(self, j: int) -> bool:
        """True when the mouth opens and closes repeatedly around ``j`` (speech, chewing): an
        expression opens it once. Counts reversals of the lip gap and of the jaw drop larger than
        a noise-scaled step (a zigzag with hysteresis); either one reversing often enough is speech."""
        cfg = self.config
        span = self._speech_span
        near = [f for f in (self._frames.get(i) for i in range(j - span, j + span + 1))
                if f is not None and f.mouth is not None]
        if len(near) < 4:
            return False
        signals = np.asarray([f.mouth for f in near])
        sizes = [f.eyes_px for f in near if np.isfinite(f.eyes_px)]
        wobble = cfg.speech_px / float(np.median(sizes)) if sizes else 0.0
        # Landmark noise: the median frame-to-frame change over the last 10 s.
        noise = np.median(np.asarray(self._mouth_steps), axis=0) if self._mouth_steps else np.zeros(2)
        steps = [max(cfg.speech_step, wobble, 5.0 * float(noise[c]), cfg.speech_relative * float(np.ptp(signals[:, c])))
                 for c in range(signals.shape[1])]
        return any(_reversals(signals[:, c], step) >= cfg.speech_reversals for c, step in enumerate(steps))

    def _blink_near(self, j: int, scale: int) -> bool:
        pad = max(1, self.k // 2)
        return any(f is not None and f.blink for f in (self._frames.get(i) for i in range(j - scale - pad, j + scale + pad + 1)))

    def _arbitrate(self, found: list[Candidate]) -> list[Candidate]:
        """Drop a candidate that overlaps one already emitted (the earlier, confirmed one wins)."""
        out = []
        for cand in sorted(found, key=lambda c: -c.score):
            if any(c.onset <= cand.offset and cand.onset <= c.offset for c in [*self._emitted, *out]):
                self.rejected["overlap"] += 1
                continue
            out.append(cand)
        self._emitted.extend(out)
        for c in out:
            logger.debug("%s candidate %d-%d-%d score %.1f in %s", c.kind, c.onset, c.apex, c.offset, c.score, c.roi)
        return sorted(out, key=lambda c: c.onset)
