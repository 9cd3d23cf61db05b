"""What happens when: expressions, blinks, speech, head motion and flicker, drawn from a seed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mmer.synth._aus import BLINK_AU
from mmer.synth._config import EMOTION_AUS, EMOTIONS, SynthConfig, objective_class, parse_aus

__all__ = ["ME_CLEARANCE_S", "OVERLAP_KINDS", "Expression", "Timeline", "plan_timeline"]

log = logging.getLogger(__name__)

_GAP_S = 0.4  # minimum quiet time between two expressions


#: Distractors an ME can be placed during (``--me-overlap``); "mae" is beside or inside a macro.
OVERLAP_KINDS: tuple[str, ...] = ("blink", "speech", "head_motion", "mae")
#: How far distractors stay from an ME that is not meant to overlap one, and the reach within
#: which a distractor counts as overlapping an ME in the ground truth.
ME_CLEARANCE_S = 0.15
_JERK_S = 0.3  # a head jerk's fast part (0.12 s ramp, then the start of its return)


@dataclass
class Expression:
    """One drawn event in frame positions (0-based), with its intensity profile.

    ``apex`` starts the apex plateau and ``hold`` ends it (equal for MEs and blinks). ``knots``
    are ``(position, level)`` points joined by half-cosine segments, from ``(onset, 0)`` to
    ``(offset, residual)``; a residual above zero relaxes to neutral over ``tail`` more frames.
    ``overlaps`` lists the distractors within reach of an ME (``blink``, ``speech``,
    ``head_motion``, ``mae_beside``, ``mae_inside``); ``dynamics`` names its shape.
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
    knots: list[tuple[int, float]] = field(default_factory=list)
    tail: int = 0
    dynamics: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.knots:
            self.knots = [(self.onset, 0.0), (self.apex, 1.0), (self.hold, 1.0), (self.offset, 0.0)]

    @property
    def end(self) -> int:
        """Last position the event moves the face (``offset`` plus the relaxation tail)."""
        return self.offset + self.tail

    @property
    def residual(self) -> float:
        """Share of the apex still held at the offset."""
        return float(self.knots[-1][1])

    def profile(self) -> np.ndarray:
        """Intensity at positions ``onset..end``: zero at the onset, 1 at the apex, the residual
        at the offset and zero again at ``end``."""
        prof = np.zeros(self.end - self.onset + 1)
        for (p0, v0), (p1, v1) in zip(self.knots, self.knots[1:]):
            if p1 <= p0:
                prof[p0 - self.onset] = v1
                continue
            k = np.arange(p1 - p0 + 1)
            prof[p0 - self.onset : p1 - self.onset + 1] = v0 + (v1 - v0) * (0.5 - 0.5 * np.cos(np.pi * k / (p1 - p0)))
        if self.tail > 0:
            k = np.arange(1, self.tail + 1)
            decay = np.exp(-3.0 * k / self.tail) * (1.0 - k / self.tail)
            prof[self.offset - self.onset + 1 :] = self.residual * decay
        prof[0] = 0.0
        prof[-1] = 0.0
        return prof


@dataclass
class Timeline:
    """Everything drawn for one video, in frame positions.

    ``weights`` is (n_frames, len(keys)) pixel amplitude of each ``(au, side)`` field per frame
    (for AU45, the fraction of the eye opening);
    ``head`` is (n_frames, 4): x and y shift in px, roll in degrees and depth shift in mm;
    ``gain`` is the illumination gain per frame and ``shade`` the strength of a left-right
    illumination gradient (relative gain at the frame's right edge minus one).
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
    shade: np.ndarray


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


def _smooth_walk(rng: np.random.Generator, n: int, klen: int) -> np.ndarray:
    """A smoothed random walk with zero mean and unit standard deviation."""
    walk = np.cumsum(rng.normal(size=n))
    klen = min(n, klen)
    kernel = np.hanning(klen) if klen > 2 else np.ones(max(klen, 1))
    kernel /= kernel.sum()
    smooth = np.convolve(walk - walk.mean(), kernel, mode="same")
    return smooth / (smooth.std() or 1.0)


def _me_shape(rng: np.random.Generator, onset: int, apex: int, offset: int, fps: float,
              cfg: SynthConfig) -> tuple[int, list[tuple[int, float]], int, list[str]]:
    """Apex, knots, tail and shape names of one ME: sometimes two-phase, sometimes a partial return."""
    span = offset - onset
    dynamics = []
    residual = 0.0
    if rng.random() < cfg.me_partial:
        residual = float(rng.uniform(*cfg.me_residual))
        dynamics.append("partial_return")
    if span >= 6 and rng.random() < cfg.me_two_phase:
        p1 = onset + int(round(span * rng.uniform(0.2, 0.32)))
        p2 = onset + int(round(span * rng.uniform(0.62, 0.78)))
        dip = (p1 + p2) // 2
        second = float(rng.uniform(0.6, 0.9))
        l1, l2 = (1.0, second) if rng.random() < 0.5 else (second, 1.0)
        knots = [(onset, 0.0), (p1, l1), (dip, min(l1, l2) * float(rng.uniform(0.3, 0.6))), (p2, l2)]
        apex = p1 if l1 == 1.0 else p2
        dynamics.append("two_phase")
    else:
        knots = [(onset, 0.0), (apex, 1.0)]
    knots.append((offset, residual))
    tail = int(round(rng.uniform(1.0, 2.5) * fps)) if residual > 0 else 0
    return apex, knots, tail, dynamics


def _weighted_aus(rng: np.random.Generator, extra: np.random.Generator, au_text: str,
                  cfg: SynthConfig) -> list[tuple[int, str, float]]:
    """Relative AU weights (``rng``); with ``au_asymmetry`` (``extra``), a two-sided AU becomes two
    sides of unequal strength."""
    aus = []
    for au, side in parse_aus(au_text):
        w = float(rng.uniform(0.6, 1.0))
        if side == "" and extra.random() < cfg.au_asymmetry:
            weak = float(extra.uniform(0.3, 0.8))
            strong_left = extra.random() < 0.5
            aus += [(au, "L", w * (1.0 if strong_left else weak)), (au, "R", w * (weak if strong_left else 1.0))]
        else:
            aus.append((au, side, w))
    return aus


def _overlaps(me: Expression, fps: float, macros: list[Expression], blinks: list[Expression],
              speech: list[tuple[int, int]], jerks: list[int]) -> list[str]:
    """Distractors within ``ME_CLEARANCE_S`` of an ME (the ground truth's ``overlap`` list)."""
    reach = ME_CLEARANCE_S * fps
    a, b = me.onset - reach, me.offset + reach
    out = []
    if any(x.onset <= b and x.offset >= a for x in blinks):
        out.append("blink")
    if any(s0 <= b and s1 >= a for s0, s1 in speech):
        out.append("speech")
    if any(j <= b and j + _JERK_S * fps >= a for j in jerks):
        out.append("head_motion")
    if any(m.onset <= me.onset and m.end >= me.offset for m in macros):
        out.append("mae_inside")
    elif any(m.onset <= me.offset + _GAP_S * fps and m.end >= me.onset - _GAP_S * fps for m in macros):
        out.append("mae_beside")
    return out


def plan_timeline(
    rng: np.random.Generator,
    *,
    n_frames: int,
    fps: float,
    height: int,
    cfg: SynthConfig,
    extra: np.random.Generator,
    min_me: int = 0,
    peak: Callable[[list[tuple[int, str, float]]], float] | None = None,
) -> Timeline:
    """Draw one video's events and distractors (deterministic for given ``rng`` and ``extra`` states).

    ``peak(aus)`` gives the peak displacement of a weighted AU combination on the face at unit
    amplitude; weights are divided by it, so an expression's ``amplitude`` is its true apex
    displacement even where AU fields overlap. A share ``cfg.me_overlap`` of the MEs is placed
    during a distractor; every other distractor keeps ``ME_CLEARANCE_S`` away from every ME.

    ``rng`` makes the draws the generator has always made, in the same order; ``extra`` makes those
    of the overlaps, ME shapes, AU asymmetry and lighting drift. So an old seed still places its
    events where it did, as long as no macro-expression placed beside an ME takes their room.
    """
    seconds = n_frames / fps
    px = height / 480.0
    emotions = list(cfg.emotions)
    probs = np.array([cfg.emotions[e] for e in emotions], float)
    probs /= probs.sum()

    n_me = max(int(rng.poisson(cfg.me_per_min * seconds / 60.0)), min_me)
    n_mae = int(rng.poisson(cfg.mae_per_min * seconds / 60.0))
    # Only distractors the config draws at all can be placed on an ME.
    rates = {"blink": 1.0, "speech": cfg.speech_per_min, "head_motion": cfg.head_jerk_per_min, "mae": cfg.mae_per_min}
    usable = [k for k in OVERLAP_KINDS if rates[k] > 0]
    planned = [usable[extra.integers(len(usable))] if extra.random() < cfg.me_overlap else None for _ in range(n_me)]
    margin = 0.3
    taken: list[tuple[float, float]] = []
    expressions: list[Expression] = []
    owed: list[tuple[Expression, str]] = []  # MEs still owed their blink, speech or head jerk

    def frames(t: float) -> int:
        return min(n_frames - 1, max(0, int(round(t * fps))))

    def make(kind: str, t0: float, dur: float, r: np.random.Generator) -> Expression:
        """One expression at ``t0``; ``r`` draws what the old generator drew, ``extra`` the rest."""
        onset = frames(t0)
        offset = min(max(onset + 2, frames(t0 + dur)), n_frames - 1)
        span = offset - onset
        if kind == "me":
            apex = onset + max(1, min(span - 1, int(round(span * r.uniform(*cfg.me_apex_at)))))
            hold = apex
            amp = float(r.uniform(*cfg.me_amplitude)) * px
        else:
            apex = onset + max(1, int(round(span * r.uniform(0.2, 0.4))))
            hold = min(offset - 1, max(apex, onset + int(round(span * r.uniform(0.5, 0.7)))))
            amp = float(r.uniform(*cfg.mae_amplitude)) * px
        emotion = emotions[r.choice(len(emotions), p=probs)]
        au_text = _draw_aus(r, emotion, cfg)
        aus = _weighted_aus(r, extra, au_text, cfg)
        dynamics = ["asymmetric_aus"] if len({au for au, _, _ in aus}) < len(aus) else []
        top = max(w for _, _, w in aus)
        aus = [(au, side, w / top) for au, side, w in aus]
        scale = peak(aus) if peak is not None else 1.0
        aus = [(au, side, w / scale) for au, side, w in aus]  # combined apex motion = amplitude
        e = Expression(kind, onset, apex, hold, offset, amp, aus, au_text, emotion, objective_class(au_text),
                       dynamics=dynamics)
        if kind == "me":
            apex, knots, tail, shape = _me_shape(extra, onset, apex, offset, fps, cfg)
            tail = min(tail, n_frames - 1 - offset)
            if tail == 0:
                knots[-1] = (offset, 0.0)
                shape = [d for d in shape if d != "partial_return"]
            e.apex = e.hold = apex
            e.knots, e.tail, e.dynamics = knots, tail, shape + dynamics
        expressions.append(e)
        return e

    def beside_or_inside(me_t0: float, me_dur: float) -> None:
        """A macro-expression around or right beside an ME, where it finds room (drawn by ``extra``)."""
        lo, hi = cfg.mae_duration
        for _ in range(20):
            dur = float(extra.uniform(lo, min(hi, max(lo, seconds - 2 * margin))))
            if extra.random() < 0.5 and dur >= me_dur + 0.6:
                t0 = me_t0 - float(extra.uniform(0.3, dur - me_dur - 0.3))
            elif extra.random() < 0.5:
                t0 = me_t0 - dur - float(extra.uniform(0.0, 0.25))
            else:
                t0 = me_t0 + me_dur + float(extra.uniform(0.0, 0.25))
            if margin <= t0 and t0 + dur <= seconds - margin and _free(taken[:-1], t0, t0 + dur, _GAP_S):
                taken.append((t0, t0 + dur))
                make("mae", t0, dur, extra)
                return
        log.debug("no room for a macro-expression beside the ME at %.2f s", me_t0)

    # MEs are placed first so that a crowded short video still gets its micro-expressions.
    kinds = ["me"] * n_me + ["mae"] * n_mae
    for i, kind in enumerate(kinds):
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
        e = make(kind, t0, dur, rng)
        if kind == "me" and planned[i] == "mae":
            beside_or_inside(t0, dur)
        elif kind == "me" and planned[i] is not None:
            owed.append((e, planned[i]))
    expressions.sort(key=lambda e: e.onset)
    mes = [e for e in expressions if e.kind == "me"]
    me_windows = [(e.onset / fps - ME_CLEARANCE_S, e.offset / fps + ME_CLEARANCE_S) for e in mes]

    blinks: list[Expression] = []

    def add_blink(t: float, dur: float) -> None:
        onset = frames(t)
        offset = min(max(onset + 2, frames(t + dur)), n_frames - 1)
        apex = (onset + offset) // 2
        blinks.append(Expression("blink", onset, apex, apex, offset, 1.0, [(BLINK_AU, "", 1.0)], "45"))

    t = float(rng.uniform(0.3, cfg.blink_interval[1] / 2))
    while True:
        dur = float(rng.uniform(*cfg.blink_duration))
        if t + dur >= seconds - 0.1:
            break
        if _free(me_windows, t, t + dur, 0.0):
            add_blink(t, dur)
        t += dur + float(rng.uniform(*cfg.blink_interval))

    speech: list[tuple[int, int, float, float]] = []

    def add_speech(t0: float, dur: float, r: np.random.Generator) -> None:
        s0, s1 = int(t0 * fps), min(n_frames, int((t0 + dur) * fps))
        speech.append((s0, s1, float(r.uniform(3.0, 6.0)), float(r.uniform(*cfg.speech_amplitude_px)) * px))

    for _ in range(int(rng.poisson(cfg.speech_per_min * seconds / 60.0))):
        dur = float(rng.uniform(1.0, 3.0))
        if seconds <= dur + 0.2:
            break
        t0 = float(rng.uniform(0.1, seconds - dur - 0.1))
        if _free(me_windows, t0, t0 + dur, 0.0):
            add_speech(t0, dur, rng)

    head = np.zeros((n_frames, 4), np.float64)
    tt = np.arange(n_frames) / fps
    if cfg.head_drift_px > 0 and n_frames > 1:
        for col, scale in ((0, 1.0), (1, 0.7), (2, 0.25), (3, 4.0)):
            head[:, col] += _smooth_walk(rng, n_frames, int(fps * 3)) * cfg.head_drift_px * px * scale
    jerks: list[int] = []

    def add_jerk(t0: float, r: np.random.Generator) -> None:
        size = float(r.uniform(*cfg.head_jerk_px)) * px
        angle = float(r.uniform(0, 2 * np.pi))
        ramp = np.clip((tt - t0) / 0.12, 0, 1)
        back = np.exp(-np.clip(tt - t0 - 0.12, 0, None) / float(r.uniform(0.8, 2.5)))
        step = 0.5 - 0.5 * np.cos(np.pi * ramp)
        head[:, 0] += size * np.cos(angle) * step * back
        head[:, 1] += size * np.sin(angle) * step * back
        head[:, 2] += float(r.normal(0, 0.8)) * step * back
        jerks.append(int(round(t0 * fps)))

    for _ in range(int(rng.poisson(cfg.head_jerk_per_min * seconds / 60.0))):
        t0 = float(rng.uniform(0.2, max(0.3, seconds - 0.5)))
        if _free(me_windows, t0, t0 + _JERK_S, 0.1):
            add_jerk(t0, rng)

    phase = float(rng.uniform(0, 2 * np.pi))
    slow = float(rng.uniform(0.2, 0.8))
    gain = 1.0 + cfg.flicker * (
        0.6 * np.sin(2 * np.pi * slow * tt + phase) + 0.4 * np.sin(2 * np.pi * 10.0 * tt + phase * 3)
    )

    # The distractors owed to overlapping MEs: each lies on its ME and clear of every other ME.
    for me, want in owed:
        on, ap, off = me.onset / fps, me.apex / fps, me.offset / fps
        others = [w for e, w in zip(mes, me_windows) if e is not me]
        for _ in range(30):
            if want == "blink":
                dur = float(extra.uniform(*cfg.blink_duration))
                t0 = float(extra.uniform(on - 0.1, ap))
                if t0 > 0 and t0 + dur < seconds - 0.05 and _free(others, t0, t0 + dur, 0.0):
                    add_blink(t0, dur)
                    break
            elif want == "speech":
                dur = min(float(extra.uniform(1.0, 3.0)), seconds)
                t0 = min(max(float(extra.uniform(off + 0.1 - dur, on - 0.1)), 0.0), seconds - dur)
                if _free(others, t0, t0 + dur, 0.0):
                    add_speech(t0, dur, extra)
                    break
            else:
                t0 = float(extra.uniform(max(0.05, on - 0.2), max(0.05, ap)))
                if _free(others, t0, t0 + _JERK_S, 0.1):
                    add_jerk(t0, extra)
                    break
        else:
            log.debug("no room for the %s owed to the ME at %.2f s", want, on)
    blinks.sort(key=lambda e: e.onset)
    speech.sort()
    jerks.sort()

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
            weights[e.onset : e.end + 1, index[(au, side)]] += (amp * prof).astype(np.float32)
    for s0, s1, freq, amp in speech:
        k = np.arange(s1 - s0)
        env = np.sin(np.pi * k / max(len(k) - 1, 1)) ** 2
        osc = np.abs(np.sin(np.pi * freq * k / fps))
        weights[s0:s1, index[(25, "")]] += (amp * env * osc).astype(np.float32)
        weights[s0:s1, index[(26, "")]] += (0.6 * amp * env * osc).astype(np.float32)

    shade = np.zeros(n_frames)
    if cfg.lighting_drift > 0 and n_frames > 1:
        # Drifts over tens of seconds: a cloud, a lamp warming up, the subject leaning to a window.
        gain = gain + cfg.lighting_drift * _smooth_walk(extra, n_frames, int(fps * 10))
        shade = cfg.lighting_drift * _smooth_walk(extra, n_frames, int(fps * 10))
    speech_spans = [(s0, s1) for s0, s1, _, _ in speech]
    macros = [e for e in expressions if e.kind == "mae"]
    for me in mes:
        me.overlaps = _overlaps(me, fps, macros, blinks, speech_spans, jerks)
    return Timeline(
        n_frames=n_frames,
        fps=fps,
        expressions=expressions,
        blinks=blinks,
        speech=speech_spans,
        jerks=jerks,
        keys=keys,
        weights=weights,
        head=head,
        gain=gain,
        shade=shade,
    )
