"""Depth features over the face: onset->apex depth difference and the onset depth relief.

Consumer RGB-D cameras give 16-bit millimetre maps with zero-valued holes and millimetre noise.
An ME moves the skin by well under a millimetre to a few millimetres, so the useful signal is the
*difference* between the apex and onset maps over the aligned face, after holes are filled and the
rigid head offset (the median difference) is removed. The onset relief (depth minus its median)
tells the network where the face surface is.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["depth_align", "depth_fill_holes", "depth_difference"]


def depth_fill_holes(depth: np.ndarray) -> tuple[np.ndarray, float]:
    """Fill zero-valued holes with the nearest valid depth; returns ``(filled float32, hole fraction)``.

    Raises ``ValueError`` when the map has no valid pixel at all.
    """
    d = np.asarray(depth)
    if d.ndim != 2:
        raise ValueError(f"depth must be a 2-D map, got shape {d.shape}")
    d = d.astype(np.float32)
    holes = ~(d > 0) | ~np.isfinite(d)
    frac = float(holes.mean())
    if frac >= 1.0:
        raise ValueError("depth map has no valid pixel (all zero)")
    if frac > 0:
        # nearest valid neighbour through a distance transform on the hole mask
        _, labels = cv2.distanceTransformWithLabels(holes.astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
        valid_idx = np.flatnonzero(~holes.ravel())
        lut = np.zeros(labels.max() + 1, dtype=np.float32)
        valid_labels = labels.ravel()[valid_idx]
        lut[valid_labels] = d.ravel()[valid_idx]
        d = lut[labels]
    return d, frac


def _hole_fraction(depth: np.ndarray) -> float:
    d = np.asarray(depth)
    if d.ndim != 2:
        raise ValueError(f"depth must be a 2-D map, got shape {d.shape}")
    return float(1.0 - np.count_nonzero(d > 0) / d.size) if d.size else 1.0


def depth_align(depth: np.ndarray, matrix: np.ndarray, *, size: int) -> np.ndarray:
    """Warp a depth map with the RGB face-alignment transform (nearest neighbour, so holes stay 0)."""
    d = np.asarray(depth)
    if d.dtype not in (np.uint16, np.float32):
        d = d.astype(np.float32)
    return cv2.warpAffine(d, np.asarray(matrix, dtype=np.float64), (size, size), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)


def depth_difference(
    onset: np.ndarray,
    apex: np.ndarray,
    *,
    matrix: np.ndarray | None,
    size: int,
    clip_mm: float = 10.0,
    relief_mm: float = 40.0,
) -> dict:
    """Onset->apex depth difference and onset relief over the aligned face.

    Parameters
    ----------
    onset, apex : ndarray of uint16, shape (H, W)
        Depth maps in millimetres (0 = no reading), registered to the RGB frames.
    matrix : ndarray (2, 3) or None
        Frame-to-aligned-crop transform from :func:`mmer.features.align_face` (scaled to ``size``);
        ``None`` resizes the whole map.
    size : int
        Output side in pixels.
    clip_mm, relief_mm : float
        The difference is clipped to ``±clip_mm`` and divided by ``clip_mm / 4``; the relief is
        clipped to ``±relief_mm`` and divided by ``relief_mm``.

    Returns
    -------
    dict
        ``maps`` (float32, ``(2, size, size)``: difference, relief) and ``holes`` (fraction of
        zero pixels in onset and apex, mean).
    """
    onset, apex = np.asarray(onset), np.asarray(apex)
    if onset.shape != apex.shape:
        raise ValueError(f"onset and apex depth maps differ in shape: {onset.shape} vs {apex.shape}")
    if matrix is None:
        a, holes_a = depth_fill_holes(onset)
        b, holes_b = depth_fill_holes(apex)
        a = cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, (size, size), interpolation=cv2.INTER_AREA)
    else:
        # warp first (nearest neighbour keeps holes as zeros), then fill the holes on the small
        # crop: filling a whole VGA map cost ~4 ms per map, the crop a few microseconds
        holes_a, holes_b = _hole_fraction(onset), _hole_fraction(apex)
        a, _ = depth_fill_holes(depth_align(onset, matrix, size=size))
        b, _ = depth_fill_holes(depth_align(apex, matrix, size=size))
    diff = b - a
    diff -= np.median(diff)
    diff = np.clip(diff, -clip_mm, clip_mm) / (clip_mm / 4.0)
    relief = np.clip(a - np.median(a), -relief_mm, relief_mm) / relief_mm
    return {"maps": np.stack([diff, relief]).astype(np.float32), "holes": 0.5 * (holes_a + holes_b)}
