"""A PNG frame strip of one synthetic micro-expression, with an amplified difference row."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mmer.synth._config import EMOTIONS, SynthConfig
from mmer.synth._face import Face
from mmer.synth._session import generate_session

__all__ = ["render_preview"]


def _label(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.zeros((22, img.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def render_preview(
    path: str | Path,
    face: Face | str | Path,
    *,
    emotion: str = "surprise",
    seed: int = 0,
    amplitude: float = 1.5,
    columns: int = 6,
    gain: float = 12.0,
    size: tuple[int, int] = (640, 480),
) -> dict:
    """Render one ME (onset..apex..offset) as a strip and write it to ``path`` (PNG).

    The top row shows face crops of evenly spaced frames from onset to offset; the bottom row
    shows ``|frame - onset frame|`` amplified ``gain`` times, so the 0.5-2 px motion is visible.
    Distractors are switched off for the picture; sensor noise stays. Returns the ME's truth row.
    """
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; choose from {list(EMOTIONS)}")
    if columns < 3:
        raise ValueError(f"columns must be >= 3, got {columns}")
    cfg = SynthConfig(
        me_per_min=1.0, mae_per_min=0.0, emotions={emotion: 1.0}, prototypical=1.0, unilateral=0.0,
        me_amplitude=(amplitude, amplitude), me_duration=(0.4, 0.5), blink_interval=(30.0, 40.0),
        head_drift_px=0.0, head_jerk_per_min=0.0, speech_per_min=0.0, flicker=0.0,
    )
    session = generate_session(face, seconds=2.0, size=size, seed=seed, config=cfg, min_me=1)
    me = next(e for e in session.timeline.expressions if e.kind == "me")
    positions = np.unique(np.round(np.linspace(me.onset, me.offset, columns)).astype(int))
    positions = np.unique(np.append(positions, me.apex))
    lm = session.face.landmarks
    x0, y0 = np.floor(lm[:, :2].min(axis=0)).astype(int) - 12
    x1, y1 = np.ceil(lm[:, :2].max(axis=0)).astype(int) + 8
    w, h = session.size
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    scale = 130.0 / (y1 - y0)
    ref = session.rgb(me.onset).astype(np.int16)
    top, bottom = [], []
    for pos in positions:
        frame = session.rgb(int(pos))
        diff = np.abs(frame.astype(np.int16) - ref).mean(axis=2)
        diff = np.clip(diff * gain, 0, 255).astype(np.uint8)
        heat = cv2.applyColorMap(diff, cv2.COLORMAP_INFERNO)
        crop = cv2.resize(frame[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        hcrop = cv2.resize(heat[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        tag = "onset" if pos == me.onset else "apex" if pos == me.apex else "offset" if pos == me.offset else ""
        ms = (pos - me.onset) / session.fps * 1000
        top.append(_label(crop, f"{ms:+.0f}ms {tag}"))
        bottom.append(_label(hcrop, f"|diff| x{gain:g}"))
    strip = np.vstack([np.hstack(top), np.hstack(bottom)])
    title = np.zeros((40, strip.shape[1], 3), np.uint8)
    lines = (
        f"synthetic ME: {emotion}, AU {me.au_text}, apex {me.amplitude:.1f} px at {w}x{h}",
        f"{(me.offset - me.onset) / session.fps * 1000:.0f} ms, frames {session.first_index + me.onset}-"
        f"{session.first_index + me.offset} ({session.face.name}, seed {seed})",
    )
    for i, line in enumerate(lines):
        cv2.putText(title, line, (4, 15 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    strip = np.vstack([title, strip])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), strip, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise ValueError(f"cannot write {path}")
    return session.truth()[[r["kind"] for r in session.truth()].index("me")] | {"path": str(path)}
