"""What happens when: expressions, blinks, speech, head motion and flicker, drawn from a seed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mmer.synth._aus import BLINK_AU
from mmer.synth._config import EMOTION_AUS, EMOTIONS, SynthConfig, objective_class, parse_aus

__all__ = ["Expression", "Timeline", "plan_timeline"]

log = logging.getLogger(__name__)

_GAP_S = 0.4  # minimum quiet time between two expressions


@dataclass
class Expression:
    """One drawn event in frame positions (0-based), with its intensity profile.

    ``apex`` starts the apex plateau and ``hold`` ends it (equal for MEs and blinks).
    """

    kind: str  # "me", "mae", "blink"
    onset: int
    apex: int
    hold: int
    offset: int
    amplitude: float
    aus: list[tuple[int, str, float]] = field(default_factory=list)  # (au, side, relative weight)
    au_text: str = ""
    emotion: str | None = None
    objective_class: str | None = None

    def profile(self) -> np.ndarray:
        """Intensity 0..1 at positions ``onset..offset`` (zero at both ends, 1 over the apex)."""
        n = self.offset - self.onset + 1
        prof = np.ones(n)
        rise = self.apex - self.onset
        if rise > 0:
            k = np.arange(rise + 1)
            prof[: rise + 1] = 0.5 - 0.5 * np.cos(np.pi * k / rise)
        fall = self.offset - self.hold
        if fall > 0:
            k = np.arange(fall + 1)
            prof[self.hold - self.onset :] = 0.5 + 0.5 * np.cos(np.pi * k / fall)
        prof[0] = 0.0
        prof[-1] = 0.0
        return prof


@dataclass
class Timeline:
    """Everything drawn for one video, in frame positions.

    ``weights`` is (n_frames, len(keys)) pixel amplitude of each ``(au, side)`` field per frame
    (for AU45, the fraction of the eye opening);
    ``head`` is (n_frames, 4): x and y shift in px, roll in degrees and depth shift in mm;
    ``gain`` is the illumination gain per frame.
    """

    n_frames: int
    fps: float
    expressions: list[Expression]
    blinks: list[Expression]
    speech: list[tuple[int, int]]
    jerks: list[int]
    keys: list[tuple[int, str]]
    weights: np.ndarray
    head: np.ndarray
    gain: np.ndarray


def _draw_aus(rng: np.random.Generator, emotion: str, cfg: SynthConfig) -> str:
    table = EMOTION_AUS[emotion]
    if rng.random() >= cfg.prototypical:
        others = [e for e in EMOTIONS if e != emotion]
        table = EMOTION_AUS[others[rng.integers(len(others))]]
    parts = []
    for au, _ in parse_aus(table[rng.integers(len(table))]):
        side = ("L", "R")[rng.integers(2)] if rng.random() < cfg.unilateral else ""
        parts.append(f"{side}{au}")
    return "+".join(parts)


def _free(intervals: list[tuple[float, float]], a: float, b: float, gap: float) -> bool:
    return all(b + gap < s or a - gap > e for s, e in intervals)


def plan_timeline(
    rng: np.random.Generator,
    *,
    n_frames: int,
    fps: float,
    height: int,
    cfg: SynthConfig,
    min_me: int = 0,
    peak: Callable[[list[tuple[int, str, float]]], float] | None = None,
) -> Timeline:
    """Draw one video's events and distractors (deterministic for a given ``rng`` state).

    ``peak(aus)`` gives the peak displacement of a weighted AU combination on the face at unit
    amplitude; weights are divided by it, so an expression's ``amplitude`` is its true apex
    displacement even where AU fields overlap.
    """
    seconds = n_frames / fps
    px = height / 480.0
    emotions = list(cfg.emotions)
    probs = np.array([cfg.emotions[e] for e in emotions], float)
    probs /= probs.sum()

    n_me = max(int(rng.poisson(cfg.me_per_min * seconds / 60.0)), min_me)
    n_mae = int(rng.poisson(cfg.mae_per_min * seconds / 60.0))
    # MEs are placed first so that a crowded short video still gets its micro-expressions.
    kinds = ["me"] * n_me + ["mae"] * n_mae
    order = range(len(kinds))
    margin = 0.3
    taken: list[tuple[float, float]] = []
    expressions: list[Expression] = []
    for i in order:
        kind = kinds[i]
        lo, hi = cfg.me_duration if kind == "me" else cfg.mae_duration
        dur = float(rng.uniform(lo, min(hi, max(lo, seconds - 2 * margin))))
        placed = False
        for _ in range(60):
            if seconds - 2 * margin - dur <= 0:
                break
            t0 = float(rng.uniform(margin, seconds - margin - dur))
            if _free(taken, t0, t0 + dur, _GAP_S):
                placed = True
                break
        if not placed:
            log.debug("no room for a %.2f s %s in a %.1f s video", dur, kind, seconds)
            continue
        taken.append((t0, t0 + dur))
        onset = int(round(t0 * fps))
        offset = max(onset + 2, int(round((t0 + dur) * fps)))
        offset = min(offset, n_frames - 1)
        span = offset - onset
        if kind == "me":
            apex = onset + max(1, min(span - 1, int(round(span * rng.uniform(0.3, 0.6)))))
            hold = apex
            amp = float(rng.uniform(*cfg.me_amplitude)) * px
        else:
            apex = onset + max(1, int(round(span * rng.uniform(0.2, 0.4))))
            hold = min(offset - 1, max(apex, onset + int(round(span * rng.uniform(0.5, 0.7)))))
            amp = float(rng.uniform(*cfg.mae_amplitude)) * px
        emotion = emotions[rng.choice(len(emotions), p=probs)]
        au_text = _draw_aus(rng, emotion, cfg)
        aus = [(au, side, float(rng.uniform(0.6, 1.0))) for au, side in parse_aus(au_text)]
        top = max(w for _, _, w in aus)
        aus = [(au, side, w / top) for au, side, w in aus]
        scale = peak(aus) if peak is not None else 1.0
        aus = [(au, side, w / scale) for au, side, w in aus]  # combined apex motion = amplitude
        expressions.append(
            Expression(kind, onset, apex, hold, offset, amp, aus, au_text, emotion, objective_class(au_text))
        )
    expressions.sort(key=lambda e: e.onset)
    me_windows = [(e.onset / fps - 0.15, e.offset / fps + 0.15) for e in expressions if e.kind == "me"]

    blinks: list[Expression] = []
    t = float(rng.uniform(0.3, cfg.blink_interval[1] / 2))
    while True:
        dur = float(rng.uniform(*cfg.blink_duration))
        if t + dur >= seconds - 0.1:
            break
        if _free(me_windows, t, t + dur, 0.0):
            onset = int(round(t * fps))
            offset = max(onset + 2, int(round((t + dur) * fps)))
            apex = (onset + offset) // 2
            blinks.append(Expression("blink", onset, apex, apex, offset, 1.0, [(BLINK_AU, "", 1.0)], "45"))
        t += dur + float(rng.uniform(*cfg.blink_interval))

    speech: list[tuple[int, int, float, float]] = []
    for _ in range(int(rng.poisson(cfg.speech_per_min * seconds / 60.0))):
        dur = float(rng.uniform(1.0, 3.0))
        if seconds <= dur + 0.2:
            break
        t0 = float(rng.uniform(0.1, seconds - dur - 0.1))
        if _free(me_windows, t0, t0 + dur, 0.0):
            s0, s1 = int(t0 * fps), int((t0 + dur) * fps)
            speech.append((s0, s1, float(rng.uniform(3.0, 6.0)), float(rng.uniform(*cfg.speech_amplitude_px)) * px))

    index: dict[tuple[int, str], int] = {}
    for e in [*expressions, *blinks]:
        for au, side, _ in e.aus:
            index.setdefault((au, side), len(index))
    if speech:
        index.setdefault((25, ""), len(index))
        index.setdefault((26, ""), len(index))
    keys = list(index)
    weights = np.zeros((n_frames, len(keys)), np.float32)
    for e in [*expressions, *blinks]:
        prof = e.profile()
        for au, side, w in e.aus:
            # Blinks carry a fraction of the eye opening; the renderer converts it to pixels.
            amp = e.amplitude * w
            weights[e.onset : e.offset + 1, index[(au, side)]] += (amp * prof).astype(np.float32)
    for s0, s1, freq, amp in speech:
        k = np.arange(s1 - s0)
        env = np.sin(np.pi * k / max(len(k) - 1, 1)) ** 2
        osc = np.abs(np.sin(np.pi * freq * k / fps))
        weights[s0:s1, index[(25, "")]] += (amp * env * osc).astype(np.float32)
        weights[s0:s1, index[(26, "")]] += (0.6 * amp * env * osc).astype(np.float32)

    head = np.zeros((n_frames, 4), np.float64)
    tt = np.arange(n_frames) / fps
    if cfg.head_drift_px > 0 and n_frames > 1:
        for col, scale in ((0, 1.0), (1, 0.7), (2, 0.25), (3, 4.0)):
            walk = np.cumsum(rng.normal(size=n_frames))
            klen = min(n_frames, int(fps * 3))
            kernel = np.hanning(klen) if klen > 2 else np.ones(max(klen, 1))
            kernel /= kernel.sum()
            smooth = np.convolve(walk - walk.mean(), kernel, mode="same")
            sd = smooth.std() or 1.0
            head[:, col] += smooth / sd * cfg.head_drift_px * px * scale
    jerks: list[int] = []
    for _ in range(int(rng.poisson(cfg.head_jerk_per_min * seconds / 60.0))):
        t0 = float(rng.uniform(0.2, max(0.3, seconds - 0.5)))
        if not _free(me_windows, t0, t0 + 0.3, 0.1):
            continue
        size = float(rng.uniform(*cfg.head_jerk_px)) * px
        angle = float(rng.uniform(0, 2 * np.pi))
        ramp = np.clip((tt - t0) / 0.12, 0, 1)
        back = np.exp(-np.clip(tt - t0 - 0.12, 0, None) / float(rng.uniform(0.8, 2.5)))
        step = 0.5 - 0.5 * np.cos(np.pi * ramp)
        head[:, 0] += size * np.cos(angle) * step * back
        head[:, 1] += size * np.sin(angle) * step * back
        head[:, 2] += float(rng.normal(0, 0.8)) * step * back
        jerks.append(int(round(t0 * fps)))
    jerks.sort()

    phase = float(rng.uniform(0, 2 * np.pi))
    slow = float(rng.uniform(0.2, 0.8))
    gain = 1.0 + cfg.flicker * (
        0.6 * np.sin(2 * np.pi * slow * tt + phase) + 0.4 * np.sin(2 * np.pi * 10.0 * tt + phase * 3)
    )
    return Timeline(
        n_frames=n_frames,
        fps=fps,
        expressions=expressions,
        blinks=blinks,
        speech=[(s0, s1) for s0, s1, _, _ in speech],
        jerks=jerks,
        keys=keys,
        weights=weights,
        head=head,
        gain=gain,
    )
