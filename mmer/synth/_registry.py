"""The face registry: every synthetic identity, where it comes from, and which split it belongs to.

Identities are derived at run time; no copy of a source image is stored in the repository:

* ``photo-*``: a photograph in ``../shared/data/faces``, the packaged face, or scikit-image's
  astronaut;
* ``talking-*``: the most neutral frame (lips closest together, eyes open) of a video in
  ``../shared/data/video/talking``;
* ``morph-*``: a new person made from two registered faces of the same split: the first face's
  landmark geometry is warped (face width and length, eye spacing, nose, mouth width, jaw, and a
  few smooth random bumps), its skin texture is blended with the second face's (aligned by a thin-
  plate spline on the 478 landmarks) and its skin tone shifted. Never a mirror image.

Splits: ``dev`` faces are for development, sweeps and tests; ``frozen`` faces are for the frozen
benchmark of ``mmer bench spot`` only. The two splits share no source image, and morphs only mix
faces of their own split.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mmer.synth._face import _PACKAGED, _SHARED, Face, detect_landmarks, load_face

__all__ = ["FaceSpec", "SPLITS", "face_registry", "load_registered", "morph_face", "talking_frame"]

SPLITS = ("dev", "frozen")
_TALKING = _SHARED.parent / "video" / "talking"
_DEV_PHOTOS = ("0-f1-su-ph", "0-f15-hao-ph", "15-f13-anc-ph", "45-m7-di-ph", "single_face")
_DEV_TALKING = ("d0", "d3", "d6")
_FROZEN_TALKING = ("d9", "d10", "d11")
# (first, second, morph seed): geometry and most of the texture from the first, texture from the second.
_DEV_MORPHS = (
    ("0-f1-su-ph", "d3", 1), ("0-f15-hao-ph", "single_face", 2), ("15-f13-anc-ph", "d6", 3),
    ("45-m7-di-ph", "0-f1-su-ph", 4), ("single_face", "45-m7-di-ph", 5), ("d0", "15-f13-anc-ph", 6),
    ("d3", "default_face", 7), ("d6", "0-f15-hao-ph", 8), ("default_face", "d0", 9),
    ("astronaut", "d3", 10), ("0-f1-su-ph", "45-m7-di-ph", 11), ("15-f13-anc-ph", "single_face", 12),
)
_FROZEN_MORPHS = (
    ("d9", "d10", 901), ("d10", "d11", 902), ("d11", "d9", 903), ("d9", "d11", 904), ("d10", "d9", 905),
    ("d11", "d10", 906), ("d9", "d10", 907), ("d10", "d11", 908), ("d11", "d9", 909),
)


@dataclass(frozen=True)
class FaceSpec:
    """One registered identity.

    Attributes
    ----------
    name : str
        Unique identity name; folds and benchmark tables are grouped by it.
    kind : {"photo", "talking", "morph"}
    split : {"dev", "frozen"}
    source : str
        Photo path, ``"astronaut"``, video path, or for a morph the first face's name.
    partner : str or None
        A morph's second face.
    seed : int or None
        A morph's seed.
    """

    name: str
    kind: str
    split: str
    source: str
    partner: str | None = None
    seed: int | None = None


def _photo_specs() -> list[FaceSpec]:
    specs = [FaceSpec(f"photo-{stem}", "photo", "dev", str(_SHARED / f"{stem}.jpg")) for stem in _DEV_PHOTOS]
    specs.append(FaceSpec("photo-default_face", "photo", "dev", str(_PACKAGED / "default_face.jpg")))
    specs.append(FaceSpec("photo-astronaut", "photo", "dev", "astronaut"))
    return specs


def face_registry(split: str = "dev") -> list[FaceSpec]:
    """The identities of one split (``"dev"``: 22, ``"frozen"``: 12), in a fixed order.

    Raises
    ------
    ValueError
        For an unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "dev":
        bases = _photo_specs() + [FaceSpec(f"talking-{v}", "talking", "dev", str(_TALKING / f"{v}.mp4"))
                                  for v in _DEV_TALKING]
        morphs = _DEV_MORPHS
    else:
        bases = [FaceSpec(f"talking-{v}", "talking", "frozen", str(_TALKING / f"{v}.mp4")) for v in _FROZEN_TALKING]
        morphs = _FROZEN_MORPHS
    by_short = {b.name.split("-", 1)[1]: b.name for b in bases}
    out = list(bases)
    for first, second, seed in morphs:
        out.append(FaceSpec(f"morph-{first}+{second}-{seed}", "morph", split, by_short[first], by_short[second], seed))
    return out


def talking_frame(path: str | Path, *, max_frames: int = 240, step: int = 4) -> np.ndarray:
    """The most neutral frame of a talking-face video: eyes open, lips closest together.

    Frames ``0, step, 2*step, ...`` up to ``max_frames`` are scored by the lip gap (landmarks
    13-14) over the outer-eye-corner distance, among frames whose eye opening is at least the
    median (no blink, no squint).
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open talking-face video {path}")
    rows = []
    try:
        for i in range(max_frames):
            ok, frame = cap.read()
            if not ok:
                break
            if i % step:
                continue
            try:
                lm = detect_landmarks(frame, name=f"{path} frame {i}")
            except ValueError:
                continue
            iod = float(np.linalg.norm(lm[33, :2] - lm[263, :2]))
            lips = float(np.linalg.norm(lm[13, :2] - lm[14, :2])) / iod
            eyes = float(np.linalg.norm(lm[159, :2] - lm[145, :2]) + np.linalg.norm(lm[386, :2] - lm[374, :2])) / iod
            rows.append((lips, eyes, frame))
    finally:
        cap.release()
    if not rows:
        raise ValueError(f"{path}: the face mesh found no face in the first {max_frames} frames")
    open_eyes = np.median([e for _, e, _ in rows])
    lips, _, frame = min((r for r in rows if r[1] >= open_eyes), key=lambda r: r[0])
    return frame


def _face_mask(face: Face, feather: float) -> np.ndarray:
    """Soft mask (HxWx1 float32) of the face region: the landmarks' convex hull, feathered inwards."""
    w, h = face.size
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(face.landmarks[:, :2].astype(np.int32)), 255)
    k = max(3, int(feather) | 1)
    mask = cv2.erode(mask, np.ones((k, k), np.uint8))
    return (cv2.GaussianBlur(mask, (0, 0), feather / 2).astype(np.float32) / 255.0)[..., None]


def _tps_map(src: np.ndarray, dst: np.ndarray, size: tuple[int, int], step: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Remap grids that carry points ``dst`` to ``src`` (a smoothed thin-plate spline on a coarse grid)."""
    from scipy.interpolate import RBFInterpolator

    w, h = size
    gx, gy = np.meshgrid(np.arange(0, w + step, step, dtype=np.float64), np.arange(0, h + step, step, dtype=np.float64))
    rbf = RBFInterpolator(dst, src - dst, kernel="thin_plate_spline", smoothing=1.0, degree=1)
    off = rbf(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape + (2,)).astype(np.float32)
    full_x = cv2.resize(off[..., 0], (w, h), interpolation=cv2.INTER_LINEAR)
    full_y = cv2.resize(off[..., 1], (w, h), interpolation=cv2.INTER_LINEAR)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return xs + full_x, ys + full_y


def _shape_change(face: Face, rng: np.random.Generator) -> np.ndarray:
    """New landmark positions: a plausible change of face proportions (no mirroring)."""
    lm = face.landmarks[:, :2].astype(np.float64)
    iod = face.iod
    centre = lm[[10, 152]].mean(axis=0)
    u, v = ((lm - centre) / iod).T
    nose_y = (lm[1, 1] - centre[1]) / iod
    eye_y = (lm[[33, 263], 1].mean() - centre[1]) / iod
    mouth_y = (lm[[13, 14], 1].mean() - centre[1]) / iod
    dx = (rng.uniform(-0.08, 0.08)) * u  # face width
    dy = (rng.uniform(-0.06, 0.06)) * v  # face length
    near_eyes = np.exp(-((v - eye_y) / 0.25) ** 2) * np.exp(-((np.abs(u) - 0.5) / 0.35) ** 2)
    dx += rng.uniform(-0.05, 0.05) * np.sign(u) * near_eyes  # eye spacing
    near_nose = np.exp(-(u / 0.25) ** 2) * np.exp(-((v - (eye_y + nose_y) / 2) / 0.35) ** 2)
    dy += rng.uniform(-0.06, 0.06) * near_nose  # nose length
    dx += rng.uniform(-0.06, 0.06) * u * np.exp(-((v - nose_y) / 0.15) ** 2) * np.exp(-(u / 0.3) ** 2)  # nose width
    near_mouth = np.exp(-((v - mouth_y) / 0.2) ** 2) * np.exp(-(u / 0.6) ** 2)
    dx += rng.uniform(-0.1, 0.1) * u * near_mouth  # mouth width
    below = np.clip(v - mouth_y, 0, None)
    dy += rng.uniform(-0.1, 0.12) * below  # chin length
    dx += rng.uniform(-0.1, 0.08) * u * below  # jaw width
    for _ in range(3):  # smooth bumps: the small asymmetries of a real face
        cu, cv_ = rng.uniform(-0.9, 0.9), rng.uniform(-1.0, 1.2)
        bump = np.exp(-((u - cu) ** 2 + (v - cv_) ** 2) / (2 * 0.3**2))
        dx += rng.normal(0, 0.02) * bump
        dy += rng.normal(0, 0.02) * bump
    return lm + np.column_stack([dx, dy]) * iod


def morph_face(base: Face, partner: Face, seed: int, *, name: str | None = None) -> Face:
    """A new identity: ``base``'s geometry changed by ``seed``, its skin texture blended with
    ``partner``'s and its skin tone shifted. Both faces must share a canvas size."""
    if base.size != partner.size:
        raise ValueError(f"faces must share a canvas size, got {base.size} and {partner.size}")
    rng = np.random.default_rng([seed, 4242])
    size = base.size
    # Texture: the partner's face pulled onto the base's landmarks, blended inside the face.
    mx, my = _tps_map(partner.landmarks[:, :2].astype(np.float64), base.landmarks[:, :2].astype(np.float64), size)
    pulled = cv2.remap(partner.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    mask = _face_mask(base, feather=0.12 * base.iod)
    weight = float(rng.uniform(0.35, 0.6))
    image = base.image.astype(np.float32) * (1 - weight * mask) + pulled.astype(np.float32) * (weight * mask)
    lab = cv2.cvtColor(np.clip(image + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_BGR2LAB).astype(np.float32)
    tone = np.array([rng.uniform(-14, 14), rng.uniform(-3, 6), rng.uniform(-5, 9)], np.float32)
    lab += tone * mask
    image = cv2.cvtColor(np.clip(lab + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)
    # Geometry: move the landmarks and warp the whole canvas with them.
    moved = _shape_change(base, rng)
    mx, my = _tps_map(base.landmarks[:, :2].astype(np.float64), moved, size)
    image = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    landmarks = base.landmarks.copy()
    landmarks[:, :2] = moved.astype(np.float32)
    return Face(name=name or f"morph-{base.name}+{partner.name}-{seed}", image=image, landmarks=landmarks)


@functools.lru_cache(maxsize=64)
def _load_cached(split: str, name: str, size: tuple[int, int]) -> Face:
    specs = {s.name: s for s in face_registry(split)}
    spec = specs[name]
    if spec.kind == "photo":
        face = load_face(spec.source, size=size)
    elif spec.kind == "talking":
        face = load_face(talking_frame(spec.source), size=size)
    else:
        base = _load_cached(split, spec.source, size)
        partner = _load_cached(split, spec.partner, size)
        return morph_face(base, partner, spec.seed, name=spec.name)
    return Face(name=spec.name, image=face.image, landmarks=face.landmarks)


def load_registered(spec: FaceSpec | str, *, size: tuple[int, int] = (640, 480)) -> Face:
    """Load a registered identity (by spec or name) on a ``size`` canvas; cached per process.

    Raises
    ------
    KeyError
        For a name no split registers.
    """
    name = spec.name if isinstance(spec, FaceSpec) else str(spec)
    for split in SPLITS:
        if any(s.name == name for s in face_registry(split)):
            return _load_cached(split, name, (int(size[0]), int(size[1])))
    raise KeyError(f"no registered face named {name!r}")
