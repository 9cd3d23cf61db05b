"""Optical flow, optical strain and per-ROI motion statistics on grey face crops.

Three flow methods, picked by cost (measured on this machine, DESIGN.md): DIS (about 1 ms on a
128 px crop) for every frame online, Farneback (about 2 ms) as a denser classic, and TV-L1
(opencv-contrib ``cv2.optflow``, about 150 ms) once per candidate, where quality matters more than
speed. All functions take and return plain numpy arrays so that recognition features and the
spotter share them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

__all__ = [
    "FLOW_METHODS",
    "optical_flow",
    "optical_strain",
    "flow_magnitude_direction",
    "remove_head_motion",
    "remove_rigid_motion",
    "rigid_motion",
    "roi_motion",
    "RoiMotion",
]

FLOW_METHODS = ("dis", "farneback", "tvl1")

# OpenCV flow objects hold per-call scratch buffers and are not thread-safe: one set per thread.
_local = threading.local()


def _dis() -> cv2.DISOpticalFlow:
    dis = getattr(_local, "dis", None)
    if dis is None:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        _local.dis = dis
    return dis


def _tvl1():
    tvl1 = getattr(_local, "tvl1", None)
    if tvl1 is None:
        if not hasattr(cv2, "optflow"):
            raise RuntimeError("TV-L1 needs opencv-contrib-python (cv2.optflow is missing)")
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        _local.tvl1 = tvl1
    return tvl1


def _check_grey(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != 2:
        raise ValueError(f"{name} must be a grey HxW image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if min(image.shape) < 8:
        raise ValueError(f"{name} is too small for optical flow: {image.shape}")
    return np.ascontiguousarray(image)


def optical_flow(prev: np.ndarray, nxt: np.ndarray, *, method: str = "dis") -> np.ndarray:
    """Dense optical flow from ``prev`` to ``nxt``.

    Parameters
    ----------
    prev, nxt : ndarray of uint8, shape (H, W)
        Grey images of the same size (aligned face crops, usually).
    method : {"dis", "farneback", "tvl1"}
        DIS (fast, online), Farneback, or TV-L1 (slow, best for per-candidate features).

    Returns
    -------
    flow : ndarray of float32, shape (H, W, 2)
        Horizontal and vertical displacement in pixels; ``nxt(x + flow) ≈ prev(x)``.
    """
    prev = _check_grey(prev, "prev")
    nxt = _check_grey(nxt, "nxt")
    if prev.shape != nxt.shape:
        raise ValueError(f"prev and nxt differ in shape: {prev.shape} vs {nxt.shape}")
    if method == "dis":
        return _dis().calc(prev, nxt, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 9, 3, 5, 1.1, 0)
    if method == "tvl1":
        return _tvl1().calc(prev, nxt, None)
    raise ValueError(f"unknown flow method {method!r}; choose one of {FLOW_METHODS}")


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Optical strain magnitude of a flow field.

    The infinitesimal strain tensor ``e = (grad u + grad u^T) / 2`` responds to skin
    deformation and much less to rigid motion, which is why ME work pairs it with flow.
    Returns ``sqrt(e_xx^2 + e_yy^2 + 2 e_xy^2)`` as float32 (H, W).
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    u, v = flow[:, :, 0], flow[:, :, 1]
    u_y, u_x = np.gradient(u)
    v_y, v_x = np.gradient(v)
    e_xy = 0.5 * (u_y + v_x)
    return np.sqrt(u_x**2 + v_y**2 + 2.0 * e_xy**2).astype(np.float32)


def flow_magnitude_direction(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel magnitude (pixels) and direction (radians, image coordinates, y down)."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    mag, ang = cv2.cartToPolar(flow[:, :, 0], flow[:, :, 1])
    return mag, ang


def _box_slice(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    h, w = shape[:2]
    x0, x1 = max(0, int(x0)), min(w, int(x1))
    y0, y1 = max(0, int(y0)), min(h, int(y1))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"ROI box {box} lies outside the {w}x{h} image")
    return slice(y0, y1), slice(x0, x1)


def remove_head_motion(flow: np.ndarray, reference: tuple[int, int, int, int]) -> np.ndarray:
    """Subtract the rigid motion measured in a reference box (the nose bridge, usually).

    The nose bridge barely deforms during facial expressions, so its median flow is a good
    estimate of the head's residual translation after alignment.
    """
    sl = _box_slice(reference, flow.shape)
    ref = np.median(flow[sl].reshape(-1, 2), axis=0)
    return flow - ref.astype(np.float32)


def _similarity_fit(pts: np.ndarray, vec: np.ndarray, iterations: int = 4) -> np.ndarray:
    """Robust (IRLS, Cauchy weights) fit of ``vec ≈ [[a, -b], [b, a]] pts + t``; returns a, b, tx, ty.

    Each weighted step has a closed form (centre, then two dot products), so no LAPACK call is
    made per frame.
    """
    # Start from the median translation, so a large minority (a blink fills the eye rows) never
    # steers the first weighted step.
    a = b = 0.0
    t = np.median(vec, axis=0)
    resid = np.sqrt(((vec - t) ** 2).sum(axis=1))
    weights = 1.0 / (1.0 + (resid / (1.5 * float(np.median(resid)) + 1e-3)) ** 2)
    for _ in range(iterations):
        wsum = weights.sum()
        p_mean = (weights[:, None] * pts).sum(axis=0) / wsum
        v_mean = (weights[:, None] * vec).sum(axis=0) / wsum
        p0, v0 = pts - p_mean, vec - v_mean
        norm = (weights * (p0**2).sum(axis=1)).sum()
        if norm <= 1e-12:
            a = b = 0.0
        else:
            a = (weights * (p0[:, 0] * v0[:, 0] + p0[:, 1] * v0[:, 1])).sum() / norm
            b = (weights * (p0[:, 0] * v0[:, 1] - p0[:, 1] * v0[:, 0])).sum() / norm
        t = v_mean - np.array([a * p_mean[0] - b * p_mean[1], b * p_mean[0] + a * p_mean[1]])
        pred = np.column_stack([a * pts[:, 0] - b * pts[:, 1], b * pts[:, 0] + a * pts[:, 1]]) + t
        resid = np.sqrt(((pred - vec) ** 2).sum(axis=1))
        scale = 1.5 * float(np.median(resid)) + 1e-3
        weights = 1.0 / (1.0 + (resid / scale) ** 2)
    return np.array([a, b, t[0], t[1]])


def rigid_motion(flow: np.ndarray, *, grid: int = 8, exclude: Sequence[tuple[int, int, int, int]] = ()) -> np.ndarray:
    """Dominant in-plane head motion of a face flow as a 2x3 matrix ``A``.

    The rigid flow at pixel ``(x, y)`` is ``A @ [x, y, 1]``. A similarity motion field
    (translation, rotation, scale) is fitted robustly to the block means of an inner
    ``grid x grid`` tiling of the crop. Expressions move a minority of blocks, so the fit follows
    the head (and any residual alignment error of the crop), not the expression.

    Parameters
    ----------
    flow : ndarray, shape (H, W, 2)
    grid : int
        Blocks per side; the outer ring is left out.
    exclude : sequence of (x0, y0, x1, y1)
        Pixel boxes whose blocks are left out too. The spotter leaves out the eyes: a blink moves
        their blocks by pixels, which tilts the fit and leaks a blink-shaped bump into every ROI.
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    if grid < 3:
        raise ValueError(f"grid must be at least 3, got {grid}")
    h, w = flow.shape[:2]
    blocks = cv2.resize(flow, (grid, grid), interpolation=cv2.INTER_AREA)
    keep = np.zeros((grid, grid), dtype=bool)
    keep[1:-1, 1:-1] = True
    bw, bh = w / grid, h / grid
    for x0, y0, x1, y1 in exclude:
        keep[int(y0 // bh) : int((y1 - 1) // bh) + 1, int(x0 // bw) : int((x1 - 1) // bw) + 1] = False
    if keep.sum() < 3:
        raise ValueError(f"the excluded boxes leave {int(keep.sum())} blocks of the {grid}x{grid} grid; "
                         "at least 3 are needed")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    gy, gx = np.nonzero(keep)
    pts = np.column_stack([(gx + 0.5) * bw - 0.5 - cx, (gy + 0.5) * bh - 0.5 - cy])
    a, b, tx, ty = _similarity_fit(pts, blocks[keep].astype(np.float64))
    return np.array([[a, -b, tx - a * cx + b * cy], [b, a, ty - b * cx - a * cy]])


def remove_rigid_motion(flow: np.ndarray, *, grid: int = 8) -> np.ndarray:
    """``flow`` minus its :func:`rigid_motion` field: the facial deformation without the head."""
    flow = np.asarray(flow, dtype=np.float32)
    motion = rigid_motion(flow, grid=grid)
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rigid_x = motion[0, 0] * xs + motion[0, 1] * ys + motion[0, 2]
    rigid_y = motion[1, 0] * xs + motion[1, 1] * ys + motion[1, 2]
    return flow - np.dstack([rigid_x, rigid_y]).astype(np.float32)


class RoiMotion(dict):
    """Per-ROI motion: ``{name: (mean_dx, mean_dy, mean_magnitude, main_direction)}``."""


def roi_motion(flow: np.ndarray, rois: Mapping[str, tuple[int, int, int, int]]) -> RoiMotion:
    """Mean flow vector, mean magnitude and main direction in each ROI box.

    Parameters
    ----------
    flow : ndarray, shape (H, W, 2)
    rois : mapping of name to ``(x0, y0, x1, y1)`` pixel boxes (end-exclusive)

    Returns
    -------
    RoiMotion
        ``name -> (dx, dy, magnitude, direction)``; direction is the angle of the mean vector
        in radians (the main direction of the ROI's motion).
    """
    out = RoiMotion()
    for name, box in rois.items():
        block = flow[_box_slice(box, flow.shape)].reshape(-1, 2)
        dx, dy = block.mean(axis=0)
        mag = float(np.sqrt((block**2).sum(axis=1)).mean())
        out[name] = (float(dx), float(dy), mag, float(np.arctan2(dy, dx)))
    return out
