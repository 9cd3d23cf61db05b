"""Short real ME clips as spotter input: a tight onset-to-offset crop becomes a playable stream.

Published ME clips (CASME II, SAMM and SMIC samples) hold only the frames from onset to offset,
cropped tight around the face. A spotter judges an ME against neutral frames on both sides and
a face tracker needs some context around the face, so :func:`padded_clip` repeats the first and
last frames (still context) and places every frame on a larger canvas.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["read_clip", "padded_clip"]


def read_clip(path: str | Path) -> list[np.ndarray]:
    """All frames of a GIF or video file as uint8 grey images.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When no frame can be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clip not found: {path}")
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"{path}: no frame could be decoded")
    return frames


def padded_clip(
    frames: list[np.ndarray],
    fps: float,
    *,
    pad_s: float = 1.5,
    canvas: int = 320,
) -> tuple[list[np.ndarray], tuple[int, int]]:
    """The clip with ``pad_s`` seconds of its first and last frame around it, each frame centred
    on a ``canvas``-pixel square whose border repeats the frame's edge.

    Returns the frames and the clip's own ``(onset, offset)`` indices in them (inclusive).
    """
    if not frames:
        raise ValueError("no frames to pad")
    if fps <= 0 or pad_s < 0:
        raise ValueError(f"fps must be positive and pad_s not negative, got {fps}, {pad_s}")
    h, w = frames[0].shape[:2]
    if canvas < max(h, w):
        raise ValueError(f"canvas {canvas} px is smaller than the {w}x{h} frames")
    top, left = (canvas - h) // 2, (canvas - w) // 2
    placed = [cv2.copyMakeBorder(f, top, canvas - h - top, left, canvas - w - left, cv2.BORDER_REPLICATE)
              for f in frames]
    n = round(pad_s * fps)
    return [placed[0]] * n + placed + [placed[-1]] * n, (n, n + len(frames) - 1)
