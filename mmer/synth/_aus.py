"""Action units as smooth, landmark-anchored displacement fields.

Each AU is a list of anchors ``(landmark, lateral, up, z)``: a direction in the face's own frame
(``lateral`` points away from the midline, ``up`` towards the forehead) and a depth change in mm
per pixel of displacement (negative bulges towards the camera). Gaussian kernels, scaled by the
inter-ocular distance, spread the anchors into a dense field that is normalised to a 1-pixel peak,
so an event's amplitude is its apex displacement in pixels. Fields are computed once per face on
a bounding-box crop; rendering only adds weighted crops to a remap grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmer.synth._face import Face

__all__ = ["AU_ANCHORS", "SUPPORTED_AUS", "AUField", "au_field", "BLINK_AU"]

BLINK_AU = 45

# (left-side landmark, right-side mirror or None for midline, lateral, up, z mm/px).
# Left/right follow mediapipe's canonical mesh (the first index lies on the image's left).
_A = tuple[int, int | None, float, float, float]

_BROW_INNER = [(107, 336), (66, 296), (55, 285), (65, 295)]
_BROW_MID = [(105, 334), (52, 282)]
_BROW_OUTER = [(70, 300), (63, 293), (46, 276), (53, 283)]
_UPPER_LID = [(159, 386), (158, 385), (160, 387), (157, 384), (161, 388)]
_LOWER_LID = [(145, 374), (144, 373), (153, 380), (163, 390), (154, 381)]
# Zero-displacement anchors: they hold the brows still while the lids move.
_BROW_PINS = [(46, 276), (53, 283), (52, 282), (65, 295), (55, 285)]


def _pairs(pairs, lateral, up, z=0.0, weights=None) -> list[_A]:
    weights = weights or [1.0] * len(pairs)
    return [(a, b, lateral * w, up * w, z * w) for (a, b), w in zip(pairs, weights)]


AU_ANCHORS: dict[int, tuple[float, list[_A]]] = {
    # AU: (kernel sigma as a fraction of the inter-ocular distance, anchors)
    1: (0.13, _pairs(_BROW_INNER, 0.15, 1.0, weights=[1, 0.8, 1, 0.8]) + _pairs(_BROW_MID, 0, 0.4)
        + [(9, None, 0.0, 0.3, 0.0)]),
    2: (0.13, _pairs(_BROW_OUTER, 0.1, 1.0, weights=[1, 1, 1, 0.9]) + _pairs(_BROW_MID, 0, 0.5)),
    4: (0.12, _pairs(_BROW_INNER, -0.7, -0.6) + _pairs(_BROW_MID, -0.2, -0.5) + [(9, None, 0.0, -0.3, 0.0)]),
    5: (0.07, _pairs(_UPPER_LID, 0.0, 1.0, weights=[1, 0.9, 0.9, 0.6, 0.6]) + _pairs(_BROW_PINS, 0.0, 0.0)),
    6: (0.14, _pairs([(50, 280), (117, 346), (118, 347), (101, 330), (205, 425)], 0.0, 0.9, -0.4,
                     weights=[1, 0.8, 0.9, 0.7, 0.6])
        + _pairs(_LOWER_LID[:3], 0.0, 0.5) + _pairs([(33, 263)], -0.2, 0.3)),
    7: (0.07, _pairs(_LOWER_LID, 0.0, 1.0, weights=[1, 0.9, 0.9, 0.6, 0.6]) + _pairs(_UPPER_LID[:1], 0.0, -0.3)),
    9: (0.10, _pairs([(48, 278), (64, 294), (129, 358), (98, 327)], 0.0, 1.0, -0.3, weights=[1, 1, 0.9, 0.8])
        + _pairs([(55, 285)], 0.0, -0.3) + [(6, None, 0.0, 0.2, 0.0), (0, None, 0.0, 0.3, 0.0)]),
    10: (0.10, [(0, None, 0.0, 1.0, 0.0), (13, None, 0.0, 0.8, 0.0)]
         + _pairs([(37, 267), (39, 269), (82, 312), (40, 270)], 0.0, 1.0, weights=[1, 0.9, 0.8, 0.6])),
    12: (0.11, _pairs([(61, 291), (78, 308), (40, 270), (91, 321), (205, 425)], 0.7, 0.7, -0.3,
                      weights=[1, 0.9, 0.5, 0.5, 0.3])),
    14: (0.08, _pairs([(61, 291), (78, 308)], 0.8, 0.0, 0.5, weights=[1, 0.9])),
    15: (0.10, _pairs([(61, 291), (78, 308), (91, 321), (146, 375)], 0.0, -1.0, weights=[1, 0.8, 0.6, 0.7])),
    17: (0.12, [(152, None, 0.0, 1.0, -0.3), (175, None, 0.0, 1.0, -0.3), (199, None, 0.0, 1.0, -0.3),
                (200, None, 0.0, 0.9, 0.0), (18, None, 0.0, 0.8, 0.0), (17, None, 0.0, 0.6, 0.0),
                (14, None, 0.0, 0.4, 0.0)] + _pairs([(84, 314)], 0.0, 0.5)),
    25: (0.06, [(14, None, 0.0, -1.0, 0.0), (17, None, 0.0, -0.7, 0.0), (13, None, 0.0, 0.3, 0.0)]
         + _pairs([(87, 317), (178, 402), (82, 312)], 0.0, -0.9, weights=[1, 0.8, -0.3])),
    26: (0.16, [(152, None, 0.0, -1.0, 0.0), (175, None, 0.0, -1.0, 0.0), (199, None, 0.0, -1.0, 0.0),
                (200, None, 0.0, -1.0, 0.0), (18, None, 0.0, -1.0, 0.0), (17, None, 0.0, -1.0, 0.0),
                (14, None, 0.0, -0.9, 0.0)]
         + _pairs([(84, 314), (171, 396), (148, 377)], 0.0, -0.9, weights=[1, 0.9, 0.8])),
    BLINK_AU: (0.06, _pairs(_UPPER_LID + [(246, 466)], 0.0, -1.0, weights=[1, 1, 1, 0.8, 0.8, 0.5])
               + _pairs(_LOWER_LID[:1], 0.0, 0.15) + _pairs(_BROW_PINS, 0.0, 0.0)),
}

#: AUs the renderer implements (AU45 is eye closure, used for blinks).
SUPPORTED_AUS: tuple[int, ...] = tuple(sorted(AU_ANCHORS))


@dataclass(frozen=True)
class AUField:
    """A displacement field crop: ``dx, dy`` in px and ``dz`` in mm for a 1-px peak amplitude."""

    y0: int
    x0: int
    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.dx.shape


def _face_frame(face: Face) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lm = face.landmarks[:, :2].astype(np.float64)
    right = lm[454] - lm[234]
    right /= np.linalg.norm(right)
    up = lm[10] - lm[152]
    up /= np.linalg.norm(up)
    mid = (lm[168] + lm[152]) / 2
    return right, up, mid


def au_field(face: Face, au: int, side: str = "") -> AUField:
    """Displacement field of one AU on ``face``; ``side`` ``"L"``/``"R"`` keeps one half.

    ``L`` and ``R`` are the subject's left and right (the image's right and left on a frontal
    photograph); midline anchors belong to both halves.
    """
    if au not in AU_ANCHORS:
        raise ValueError(f"AU{au} is not rendered; supported AUs: {list(SUPPORTED_AUS)}")
    if side not in ("", "L", "R"):
        raise ValueError(f"side must be '', 'L' or 'R', got {side!r}")
    sigma_frac, anchors = AU_ANCHORS[au]
    right, up, mid = _face_frame(face)
    lm = face.landmarks
    iod = face.iod
    sigma = max(sigma_frac * iod, 1.5)
    pts, disp, dzs, keep = [], [], [], []
    for first, mirror, lateral, upw, z in anchors:
        for idx, image_side in ((first, "R"), (mirror, "L")):
            if idx is None:
                continue
            q = lm[idx, :2].astype(np.float64)
            outward = np.sign(np.dot(q - mid, right)) if mirror is not None else 0.0
            d = lateral * outward * right + upw * up
            # Image y grows downwards; `up` is already an image-space vector.
            pts.append(q)
            disp.append(d)
            dzs.append(z)
            keep.append(side == "" or mirror is None or image_side == side)
    pts_a = np.array(pts)
    disp_a = np.array(disp)
    dz_a = np.array(dzs)
    keep_a = np.array(keep)
    w, h = face.size
    pad = 3.0 * sigma
    x0 = int(max(0, np.floor(pts_a[:, 0].min() - pad)))
    x1 = int(min(w, np.ceil(pts_a[:, 0].max() + pad)))
    y0 = int(max(0, np.floor(pts_a[:, 1].min() - pad)))
    y1 = int(min(h, np.ceil(pts_a[:, 1].max() + pad)))
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    num = np.zeros((y1 - y0, x1 - x0, 3))
    den = np.zeros((y1 - y0, x1 - x0))
    num_all = np.zeros((y1 - y0, x1 - x0, 2))
    for q, d, z, k in zip(pts_a, disp_a, dz_a, keep_a):
        wgt = np.exp(-((xs - q[0]) ** 2 + (ys - q[1]) ** 2) / (2 * sigma**2))
        den += wgt
        num_all += wgt[..., None] * d
        if k:
            num += wgt[..., None] * np.array([d[0], d[1], z])
    norm = np.maximum(den, 1.0)[..., None]
    field = num / norm
    # Normalise on the bilateral field so that one-sided AUs keep the same per-side strength.
    peak = float(np.hypot(*(num_all / norm).transpose(2, 0, 1)).max()) or 1.0
    field /= peak
    return AUField(
        y0=y0,
        x0=x0,
        dx=field[..., 0].astype(np.float32),
        dy=field[..., 1].astype(np.float32),
        dz=field[..., 2].astype(np.float32),
    )
