"""Face photographs as synthetic subjects: mediapipe face-mesh landmarks on a placed canvas."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["Face", "FaceNotFoundError", "load_face", "default_faces", "default_face_path", "resolve_faces"]

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
_PACKAGED = Path(__file__).resolve().parents[1] / "data" / "faces"
_SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"
# Forehead-to-chin distance as a fraction of the frame height (CAS(ME)^3 framing is close-up).
_FACE_HEIGHT = 0.55

_mesh_lock = threading.Lock()
_mesh = None


class FaceNotFoundError(ValueError):
    """The face mesh found no face in an image that was meant to be a subject."""


@dataclass(frozen=True, eq=False)
class Face:
    """A subject: the photograph placed on the output canvas, with its 478 mesh landmarks.

    Attributes
    ----------
    name : str
        Short name (file stem or ``astronaut``).
    image : ndarray of uint8, shape (H, W, 3)
        BGR canvas with the face centred, forehead-to-chin about 55% of the frame height.
    landmarks : ndarray of float32, shape (478, 3)
        Landmark x, y in canvas pixels and z (depth relative to the face centre, same pixel
        scale, negative towards the camera), from mediapipe's face mesh in static mode.
    """

    name: str
    image: np.ndarray
    landmarks: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """Canvas ``(width, height)``."""
        return self.image.shape[1], self.image.shape[0]

    @property
    def iod(self) -> float:
        """Inter-ocular distance (outer eye corners) in pixels: the unit of the AU kernels."""
        return float(np.linalg.norm(self.landmarks[33, :2] - self.landmarks[263, :2]))


def _face_mesh():
    global _mesh
    if _mesh is None:
        import mediapipe as mp

        _mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
        )
    return _mesh


def detect_landmarks(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Run the mediapipe face mesh (static mode) on a BGR image; return (478, 3) pixel landmarks.

    Raises
    ------
    FaceNotFoundError
        When no face is found; the message names the image.
    """
    h, w = image.shape[:2]
    with _mesh_lock:
        result = _face_mesh().process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if not result.multi_face_landmarks:
        raise FaceNotFoundError(f"{name}: the face mesh found no face in this image ({w}x{h})")
    pts = np.array([(p.x * w, p.y * h, p.z * w) for p in result.multi_face_landmarks[0].landmark], np.float32)
    return pts


def _read_source(source: str | Path | np.ndarray) -> tuple[str, np.ndarray]:
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise ValueError(f"a face image must be uint8 HxWx3 BGR, got {source.dtype} {source.shape}")
        return "array", source
    if str(source) == "astronaut":
        try:
            from skimage import data
        except ImportError:
            raise ValueError("face 'astronaut' needs scikit-image (pip install scikit-image)") from None
        return "astronaut", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"face image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return path.stem, image


def load_face(source: str | Path | np.ndarray, *, size: tuple[int, int] = (640, 480)) -> Face:
    """Load a photograph (path, ``"astronaut"`` or BGR array) and place it on a ``size`` canvas.

    The face is scaled so that forehead-to-chin spans 55% of the frame height and centred; the
    rest of the canvas shows a blurred, enlarged copy of the photograph. Landmarks are detected
    once on the photograph and moved with the same transform.
    """
    width, height = int(size[0]), int(size[1])
    if width < 64 or height < 64:
        raise ValueError(f"frame size must be at least 64x64, got {width}x{height}")
    name, photo = _read_source(source)
    pts = detect_landmarks(photo, name=str(source) if not isinstance(source, np.ndarray) else name)
    face_h = float(np.linalg.norm(pts[10, :2] - pts[152, :2]))
    scale = _FACE_HEIGHT * height / max(face_h, 1.0)
    centre = (pts[10, :2] + pts[152, :2]) / 2
    shift = np.array([width / 2, height / 2]) - scale * centre
    affine = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]], np.float64)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    canvas = _compose(photo, affine, (width, height), interp)
    landmarks = np.empty_like(pts)
    landmarks[:, 0] = pts[:, 0] * scale + shift[0]
    landmarks[:, 1] = pts[:, 1] * scale + shift[1]
    landmarks[:, 2] = pts[:, 2] * scale
    return Face(name=name, image=canvas, landmarks=landmarks)


def _compose(photo: np.ndarray, affine: np.ndarray, size: tuple[int, int], interp: int) -> np.ndarray:
    """Place the photo on the canvas over a blurred, cover-scaled copy of itself (no mirrored faces)."""
    width, height = size
    ph, pw = photo.shape[:2]
    cover = max(width / pw, height / ph)
    back_affine = np.array([[cover, 0, (width - cover * pw) / 2], [0, cover, (height - cover * ph) / 2]])
    back = cv2.warpAffine(photo, back_affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    back = cv2.GaussianBlur(back, (0, 0), max(4.0, 0.03 * width))
    fore = cv2.warpAffine(photo, affine, size, flags=interp, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(np.full((ph, pw), 255, np.uint8), affine, size, flags=cv2.INTER_LINEAR)
    feather = max(3, int(0.02 * width)) | 1
    mask = cv2.GaussianBlur(cv2.erode(mask, np.ones((feather, feather), np.uint8)), (0, 0), feather / 2)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    return np.clip(fore * alpha + back * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)


def default_face_path() -> Path:
    """The small face photograph shipped with mmer (used by ``make demo`` and previews)."""
    return _PACKAGED / "default_face.jpg"


def default_faces() -> list[str]:
    """Face sources used when none are given: the shared photographs (or the packaged one), then
    ``astronaut`` when scikit-image is installed."""
    folder = _SHARED if _SHARED.is_dir() else _PACKAGED
    found: list[str] = [str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES]
    try:
        import skimage  # noqa: F401

        found.append("astronaut")
    except ImportError:
        pass
    return found


def resolve_faces(spec: str | Path | None) -> list[str]:
    """Expand ``--faces``: ``None`` (defaults), a folder of images, one image, or ``astronaut``."""
    if spec is None:
        return default_faces()
    if str(spec) == "astronaut":
        return ["astronaut"]
    path = Path(spec)
    if path.is_dir():
        found = [str(p) for p in sorted(path.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES]
        if not found:
            raise FileNotFoundError(f"no face images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in {path}")
        return found
    if path.is_file():
        return [str(path)]
    raise FileNotFoundError(f"faces: no such file or folder: {path}")
