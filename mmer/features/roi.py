"""Action-unit-anchored regions of interest, eye aspect ratio and upper-lid height from face-mesh
landmarks.

The ROIs follow the ME-spotting literature (brows for AU1/2/4, eyes for AU6/7, nose sides for
AU9, mouth corners for AU12/14/15, chin for AU17), each a square box centred on a few mediapipe
face-mesh landmarks. Indices are those of the 468-point mesh.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ROI_LANDMARKS",
    "ROI_AUS",
    "REFERENCE_ROI",
    "EYE_LANDMARKS",
    "face_rois",
    "eye_aspect_ratio",
    "upper_lid_height",
]

# name -> landmark indices whose mean is the box centre. Left/right are the subject's.
ROI_LANDMARKS: dict[str, tuple[int, ...]] = {
    "brow_inner_r": (107, 66, 105),
    "brow_inner_l": (336, 296, 334),
    "brow_outer_r": (70, 63, 105),
    "brow_outer_l": (300, 293, 334),
    "glabella": (9, 107, 336),
    "eye_r": (159, 145, 33, 133),
    "eye_l": (386, 374, 263, 362),
    "nose_r": (129, 209, 49),
    "nose_l": (358, 429, 279),
    "mouth_corner_r": (61, 57, 185),
    "mouth_corner_l": (291, 287, 409),
    "chin": (200, 199, 175),
    "nose_bridge": (168, 6, 197),
}

ROI_AUS: dict[str, str] = {
    "brow_inner_r": "AU1/AU4",
    "brow_inner_l": "AU1/AU4",
    "brow_outer_r": "AU2",
    "brow_outer_l": "AU2",
    "glabella": "AU4",
    "eye_r": "AU6/AU7",
    "eye_l": "AU6/AU7",
    "nose_r": "AU9",
    "nose_l": "AU9",
    "mouth_corner_r": "AU12/AU14/AU15",
    "mouth_corner_l": "AU12/AU14/AU15",
    "chin": "AU17",
    "nose_bridge": "reference (rigid)",
}

# The nose bridge hardly deforms in expressions: its motion is the head's.
REFERENCE_ROI = "nose_bridge"

# p1..p6 of Soukupova & Cech's eye aspect ratio, per eye: outer corner, two upper-lid points,
# inner corner, two lower-lid points.
EYE_LANDMARKS: dict[str, tuple[int, int, int, int, int, int]] = {
    "r": (33, 160, 158, 133, 153, 144),
    "l": (263, 387, 385, 362, 380, 373),
}


def face_rois(
    landmarks: np.ndarray,
    *,
    shape: tuple[int, int],
    half_size: float = 0.12,
    names: tuple[str, ...] | None = None,
) -> dict[str, tuple[int, int, int, int]]:
    """Square ROI boxes centred on AU-anchored landmark groups.

    Parameters
    ----------
    landmarks : ndarray, shape (468, 2) or more rows
        Landmark pixel coordinates in the image the boxes are for (an aligned crop, usually).
    shape : (height, width)
        Image size; boxes are clipped to it.
    half_size : float
        Half the box side as a fraction of the distance between the outer eye corners.
    names : tuple of str, optional
        A subset of :data:`ROI_LANDMARKS`; all by default.

    Returns
    -------
    dict
        ``name -> (x0, y0, x1, y1)`` integer boxes, end-exclusive, at least 2 px wide.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[0] < 468 or landmarks.shape[1] < 2:
        raise ValueError(f"landmarks must be (468, 2) face-mesh points, got {landmarks.shape}")
    h, w = shape
    eye_dist = float(np.linalg.norm(landmarks[33, :2] - landmarks[263, :2]))
    half = max(1.0, half_size * eye_dist)
    boxes = {}
    for name in names or tuple(ROI_LANDMARKS):
        if name not in ROI_LANDMARKS:
            raise ValueError(f"unknown ROI {name!r}; known: {sorted(ROI_LANDMARKS)}")
        cx, cy = landmarks[list(ROI_LANDMARKS[name]), :2].mean(axis=0)
        x0 = int(np.clip(round(cx - half), 0, w - 2))
        y0 = int(np.clip(round(cy - half), 0, h - 2))
        x1 = int(np.clip(round(cx + half), x0 + 2, w))
        y1 = int(np.clip(round(cy + half), y0 + 2, h))
        boxes[name] = (x0, y0, x1, y1)
    return boxes


def eye_aspect_ratio(landmarks: np.ndarray) -> float:
    """Mean eye aspect ratio of both eyes (about 0.25-0.35 open, below about 0.15 closed).

    ``EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)`` per eye; it drops sharply in a blink,
    which is how the spotter tells blinks from eye-region micro-expressions.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[0] < 468:
        raise ValueError(f"landmarks must be (468, 2) face-mesh points, got {landmarks.shape}")
    ears = []
    for p1, p2, p3, p4, p5, p6 in EYE_LANDMARKS.values():
        pts = landmarks[:, :2]
        width = np.linalg.norm(pts[p1] - pts[p4])
        if width <= 0:
            return float("nan")
        ears.append((np.linalg.norm(pts[p2] - pts[p6]) + np.linalg.norm(pts[p3] - pts[p5])) / (2 * width))
    return float(np.mean(ears))


# Per eye: the two corners, then the three upper-lid points above the lid's middle.
_UPPER_LID: dict[str, tuple[int, int, tuple[int, int, int]]] = {
    "r": (33, 133, (160, 159, 158)),
    "l": (263, 362, (387, 386, 385)),
}


def upper_lid_height(landmarks: np.ndarray) -> float:
    """Mean height of both upper lids above the line through their eye corners, in eye widths.

    About 0.15-0.20 open and near 0.05 closed. Unlike the eye aspect ratio it ignores the lower
    lid, which a smile or a cheek raise (AU6) pushes up while the upper lid stays: a blink closes
    the eye from above, a smile narrows it from below.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[0] < 468:
        raise ValueError(f"landmarks must be (468, 2) face-mesh points, got {landmarks.shape}")
    heights = []
    for outer, inner, lid in _UPPER_LID.values():
        a, b = landmarks[outer, :2], landmarks[inner, :2]
        axis = b - a
        width = float(np.linalg.norm(axis))
        if width <= 0:
            return float("nan")
        # The unit normal to the corner line that points up in the image (y grows downwards).
        normal = np.array([axis[1], -axis[0]]) / width
        if normal[1] > 0:
            normal = -normal
        heights.append(float(np.mean((landmarks[list(lid), :2] - a) @ normal)) / width)
    return float(np.mean(heights))
