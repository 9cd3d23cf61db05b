"""Generator knobs, emotion -> AU tables and the objective-class rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

__all__ = ["SynthConfig", "EMOTIONS", "EMOTION_AUS", "objective_class", "parse_aus"]

#: The seven CAS(ME)^3 emotion labels (lower case, as mmer normalises them).
EMOTIONS: tuple[str, ...] = ("happy", "disgust", "surprise", "fear", "anger", "sad", "others")

#: Prototype AU combinations per emotion. Every combination has two or more AUs, so the AU
#: column of a written workbook reads back as text, like the official one.
EMOTION_AUS: dict[str, tuple[str, ...]] = {
    "happy": ("6+12", "12+25", "6+12+25"),
    "surprise": ("1+2", "1+2+5", "1+2+26", "5+25", "1+2+25"),
    "anger": ("4+7", "4+17", "4+7+17"),
    "disgust": ("4+9", "4+10", "9+10", "4+10+17"),
    "sad": ("1+15", "15+17", "1+4+15"),
    "fear": ("1+2+4", "1+4+5", "4+5+25"),
    "others": ("14+17", "7+14", "2+14", "17+25", "4+14"),
}

# CAS(ME)^3 ME label counts per emotion (official v2 workbook, 860 rows; `Others` folded in).
_CASME3_EMOTION_WEIGHTS = {
    "happy": 55,
    "disgust": 250,
    "surprise": 187,
    "fear": 86,
    "anger": 64,
    "sad": 57,
    "others": 151,
}


def parse_aus(text: str) -> list[tuple[int, str]]:
    """Split an AU string such as ``"L12+6"`` into ``[(12, "L"), (6, "")]``."""
    out = []
    for part in text.replace(",", "+").split("+"):
        part = part.strip()
        if not part:
            continue
        side = ""
        if part[0] in "LR":
            side, part = part[0], part[1:]
        out.append((int(part), side))
    return out


def objective_class(aus: str) -> str:
    """Objective class (I-VII) from the AUs alone, following Davison et al.'s rule set.

    I: AU6/AU12 (happiness); II: AU1+2, AU5, AU25/26 without AU4 (surprise); III: AU4/AU7 without
    AU9/10/15 (anger); IV: AU9/AU10 (disgust); V: AU15 (sadness); VI: AU1+2+4 or AU4+5 (fear);
    VII: anything else.
    """
    s = {au for au, _ in parse_aus(aus)}
    if 12 in s or (6 in s and 4 not in s):
        return "I"
    if {1, 2, 4} <= s or {4, 5} <= s:
        return "VI"
    if 9 in s or 10 in s:
        return "IV"
    if 15 in s:
        return "V"
    if 4 in s or 7 in s:
        return "III"
    if {1, 2} <= s or 5 in s or 26 in s:
        return "II"
    return "VII"


def _check_range(name: str, value: tuple[float, float], *, low: float = 0.0) -> None:
    if len(value) != 2 or not value[0] <= value[1] or value[0] < low:
        raise ValueError(f"{name} must be a (min, max) pair with {low} <= min <= max, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    """Rates, durations and amplitudes of everything the generator draws.

    Defaults follow CAS(ME)^3: a few micro-expressions per minute among more macro-expressions and
    blinks. Pixel amplitudes are peak displacements on a 640x480 frame and scale with the frame
    height. Rates are events per minute.

    Parameters
    ----------
    me_per_min, mae_per_min : float
        Micro- and macro-expression rates.
    me_duration, mae_duration : (float, float)
        Onset-to-offset durations in seconds (MEs 0.2-0.5 s, macros 0.5-4 s).
    me_amplitude, mae_amplitude : (float, float)
        Apex displacement in pixels at 640x480.
    emotions : mapping of str to float
        Relative weights of the emotions drawn for expressions; keys from :data:`EMOTIONS`.
    prototypical : float
        Probability that an expression uses its emotion's prototype AUs; otherwise AUs come from
        another emotion's table (as in the real data, where emotion and objective class disagree).
    unilateral : float
        Probability that an AU is one-sided (``L``/``R`` prefix).
    blink_interval, blink_duration : (float, float)
        Seconds between blinks and blink length.
    head_drift_px, head_jerk_per_min, head_jerk_px : float, float, (float, float)
        Slow head drift (standard deviation in px), sudden head jerks and their size.
    speech_per_min, speech_amplitude_px : float, (float, float)
        Bursts of speech-like mouth motion (AU25/26 at 3-6 Hz, 1-3 s long).
    noise_sigma, flicker : float
        Sensor noise (grey levels) and illumination flicker (relative gain amplitude).
    jpeg_quality : int
        JPEG quality of written colour frames.
    depth_distance_mm, depth_noise_mm, depth_holes : float
        Camera-to-nose distance, depth noise at that distance and the fraction of pixels that
        read zero.
    depth_range_mm : (float, float)
        Working range of the depth camera; anything nearer or farther reads zero (the wall behind
        the subject sits ~700 mm behind the face, out of range by default, as with short-range
        structured-light cameras).
    physio_coupling : float
        Scale of every event-locked physiological response (0 removes the coupling).
    spontaneous_scr_per_min : float
        Skin-conductance responses unrelated to any event (they make physiology only partly
        informative).
    motion_artifacts : bool
        Spikes in the physiology at head jerks.
    electrode_drop : float
        Probability that a session contains one dropped-electrode segment.
    me_overlap : float
        Share of MEs placed during a distractor (a blink, speech, a head jerk, or beside or inside
        a macro-expression, chosen with equal odds among the distractors whose rate is above zero);
        the other MEs keep every distractor at least 0.15 s away. The default, 0.35, is what chance
        gives at these rates when nobody talks (Part A: people watch clips in silence): a blink
        reaches about 13 % of MEs and a macro-expression within 0.4 s about 25 %. In an interview
        (Part C) people also talk and move while MEs happen, so 0.5 is the interview setting.
    me_apex_at : (float, float)
        Range of the ME apex position as a fraction of its duration (onsets faster than offsets
        below 0.5).
    me_partial : float
        Probability that an ME returns only part of the way to neutral by its offset and then
        relaxes slowly (over 1-2.5 s) from there.
    me_residual : (float, float)
        Share of the apex left at the offset of such an ME.
    me_two_phase : float
        Probability that an ME has two peaks with a dip between them.
    au_asymmetry : float
        Probability that a two-sided AU moves one side less (the weaker side at 30-80 %).
    noise_df : float
        Degrees of freedom of the Student-t sensor noise (heavier tails than Gaussian; 0 means
        Gaussian); its standard deviation stays ``noise_sigma``.
    lighting_drift : float
        Slow illumination drift: relative gain change (standard deviation) and, as strong, a
        left-right gradient that wanders (a light source or the subject moving).
    compression_quality : int
        JPEG quality that every rendered colour frame goes through (camera or stream compression);
        0 renders without it.
    """

    me_per_min: float = 3.0
    mae_per_min: float = 5.0
    me_duration: tuple[float, float] = (0.2, 0.5)
    mae_duration: tuple[float, float] = (0.5, 4.0)
    me_amplitude: tuple[float, float] = (0.5, 2.0)
    mae_amplitude: tuple[float, float] = (3.0, 8.0)
    emotions: Mapping[str, float] = field(default_factory=lambda: dict(_CASME3_EMOTION_WEIGHTS))
    prototypical: float = 0.75
    unilateral: float = 0.1
    blink_interval: tuple[float, float] = (2.0, 10.0)
    blink_duration: tuple[float, float] = (0.12, 0.2)
    head_drift_px: float = 3.0
    head_jerk_per_min: float = 1.0
    head_jerk_px: tuple[float, float] = (3.0, 8.0)
    speech_per_min: float = 2.0
    speech_amplitude_px: tuple[float, float] = (1.0, 3.0)
    noise_sigma: float = 2.0
    flicker: float = 0.01
    jpeg_quality: int = 90
    depth_distance_mm: float = 600.0
    depth_noise_mm: float = 1.5
    depth_holes: float = 0.02
    depth_range_mm: tuple[float, float] = (200.0, 1200.0)
    physio_coupling: float = 1.0
    spontaneous_scr_per_min: float = 1.5
    motion_artifacts: bool = True
    electrode_drop: float = 0.3
    me_overlap: float = 0.35
    me_apex_at: tuple[float, float] = (0.15, 0.6)
    me_partial: float = 0.3
    me_residual: tuple[float, float] = (0.1, 0.35)
    me_two_phase: float = 0.15
    au_asymmetry: float = 0.3
    noise_df: float = 4.0
    lighting_drift: float = 0.03
    compression_quality: int = 80

    def __post_init__(self) -> None:
        for name in (
            "me_per_min",
            "mae_per_min",
            "head_drift_px",
            "head_jerk_per_min",
            "speech_per_min",
            "noise_sigma",
            "flicker",
            "depth_noise_mm",
            "physio_coupling",
            "spontaneous_scr_per_min",
            "lighting_drift",
        ):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        for name in ("me_duration", "mae_duration", "blink_duration", "blink_interval"):
            _check_range(name, getattr(self, name), low=1e-3)
        for name in ("me_amplitude", "mae_amplitude", "head_jerk_px", "speech_amplitude_px", "depth_range_mm"):
            _check_range(name, getattr(self, name))
        for name in ("me_apex_at", "me_residual"):
            _check_range(name, getattr(self, name))
            if getattr(self, name)[1] >= 1.0:
                raise ValueError(f"{name} must lie within [0, 1), got {getattr(self, name)!r}")
        for name in ("prototypical", "unilateral", "depth_holes", "electrode_drop", "me_overlap", "me_partial",
                     "me_two_phase", "au_asymmetry"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if not (self.noise_df == 0 or self.noise_df > 2):
            raise ValueError(f"noise_df must be 0 (Gaussian) or > 2 (finite variance), got {self.noise_df!r}")
        if not 0 <= self.compression_quality <= 100:
            raise ValueError(f"compression_quality must be within [0, 100], got {self.compression_quality!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be within [1, 100], got {self.jpeg_quality!r}")
        if not self.depth_distance_mm > 100:
            raise ValueError(f"depth_distance_mm must be > 100, got {self.depth_distance_mm!r}")
        weights = {str(k).lower(): float(v) for k, v in self.emotions.items()}
        unknown = sorted(set(weights) - set(EMOTIONS))
        if unknown:
            raise ValueError(f"unknown emotion class(es) {unknown}; choose from {list(EMOTIONS)}")
        if any(v < 0 for v in weights.values()) or not sum(weights.values()) > 0:
            raise ValueError(f"emotion weights must be >= 0 with a positive sum, got {weights}")
        object.__setattr__(self, "emotions", weights)

    def with_(self, **changes) -> SynthConfig:
        """Return a copy with some knobs replaced (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        """Plain dict for the ground-truth file."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v) for f in fields(self)}
