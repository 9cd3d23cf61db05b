"""Optical flow, strain and rigid-motion removal on images with known motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mmer.features import optical_flow, optical_strain, remove_head_motion, roi_motion
from mmer.features.flow import flow_magnitude_direction, remove_rigid_motion, rigid_motion


def _texture(size: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(128, 60, (size, size)).clip(0, 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return cv2.warpAffine(image, m, image.shape[::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("method", ["dis", "farneback", "tvl1"])
def test_flow_recovers_a_subpixel_translation(method):
    a = _texture(64)
    b = _shift(a, 1.5, -0.75)
    flow = optical_flow(a, b, method=method)
    centre = flow[16:48, 16:48].reshape(-1, 2).mean(axis=0)
    assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
    assert centre == pytest.approx([1.5, -0.75], abs=0.2)


def test_strain_is_zero_for_translation_and_measures_a_stretch():
    h = w = 40
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    translation = np.dstack([np.full((h, w), 2.0, np.float32), np.full((h, w), -1.0, np.float32)])
    assert float(optical_strain(translation).max()) == pytest.approx(0.0, abs=1e-6)
    stretch = np.dstack([0.02 * xs, np.zeros_like(ys)])  # u_x = 0.02
    assert float(np.median(optical_strain(stretch))) == pytest.approx(0.02, abs=1e-4)


def test_rigid_motion_is_removed_and_a_local_bump_kept():
    h = w = 128
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, scale, tx, ty = 0.01, 0.005, 1.2, -0.4
    cx = cy = (w - 1) / 2
    rigid_x = (scale * (xs - cx) - angle * (ys - cy)) + tx
    rigid_y = (angle * (xs - cx) + scale * (ys - cy)) + ty
    flow = np.dstack([rigid_x, rigid_y]).astype(np.float32)
    bump = np.exp(-(((xs - 40) ** 2 + (ys - 90) ** 2) / (2 * 6.0**2))).astype(np.float32)
    flow[:, :, 1] += 0.8 * bump  # an "expression": 0.8 px down, local
    residual = remove_rigid_motion(flow)
    assert abs(float(residual[90, 40, 1]) - 0.8) < 0.1
    far = np.abs(residual[10:30, 80:120]).max()
    assert far < 0.05
    assert rigid_motion(flow).shape == (2, 3)
    # Blocks under an excluded box do not steer the fit, whatever they hold.
    flow[16:64, 16:112] += 5.0
    assert np.allclose(rigid_motion(flow, exclude=[(16, 16, 112, 64)])[:, 2], [tx - scale * cx + angle * cy,
                                                                               ty - angle * cx - scale * cy], atol=0.05)
    with pytest.raises(ValueError, match="at least 3"):
        rigid_motion(flow, exclude=[(0, 0, w, h)])


def test_roi_motion_and_head_motion_helpers():
    flow = np.zeros((50, 50, 2), np.float32)
    flow[:, :, 0] = 1.0  # whole head moves right
    flow[30:40, 30:40, 1] += 2.0  # local downward motion
    clean = remove_head_motion(flow, (0, 0, 10, 10))
    stats = roi_motion(clean, {"patch": (30, 30, 40, 40), "still": (0, 0, 10, 10)})
    dx, dy, mag, direction = stats["patch"]
    assert (dx, dy, mag) == pytest.approx((0.0, 2.0, 2.0))
    assert direction == pytest.approx(np.pi / 2)
    assert stats["still"][2] == pytest.approx(0.0)
    mag_map, ang_map = flow_magnitude_direction(flow)
    assert mag_map[35, 35] == pytest.approx(np.sqrt(5.0), rel=1e-4)


def test_bad_input_is_rejected_with_a_message():
    a = _texture(32)
    with pytest.raises(ValueError, match="differ in shape"):
        optical_flow(a, a[:16])
    with pytest.raises(ValueError, match="uint8"):
        optical_flow(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="grey"):
        optical_flow(np.dstack([a, a, a]), np.dstack([a, a, a]))
    with pytest.raises(ValueError, match="unknown flow method"):
        optical_flow(a, a, method="lk")
    with pytest.raises(ValueError, match="outside"):
        roi_motion(np.zeros((10, 10, 2), np.float32), {"x": (20, 20, 30, 30)})
