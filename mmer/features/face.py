"""Face tracking on the mediapipe face mesh, with an OpenCV fallback, and similarity alignment.

:class:`FaceTracker` runs the mediapipe 468-point face mesh (``mediapipe==0.10.21``, the last
release that bundles the model) in tracking mode on a square crop around the tracked face. The
crop keeps the mesh cost constant whatever the camera resolution, lets tiny faces be upsampled,
and keeps other faces out of view. The crop is (re)placed by a face detector: the mediapipe
full-range detector first, OpenCV's Haar cascade as fallback. Grey-scale and very dark frames are
converted and brightened before the mesh; every such frame, every frame without a face, and every
lost/regained interval is counted in :attr:`FaceTracker.stats`.

:func:`align_face` maps a face onto a fixed template by a similarity transform fitted to stable
landmarks (eye corners, nose bridge), so that crops of the same face line up across frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "ALIGN_LANDMARKS",
    "FaceResult",
    "FaceStats",
    "FaceTracker",
    "align_face",
    "alignment_matrix",
    "to_bgr",
]

logger = logging.getLogger(__name__)

# Stable landmarks for alignment: eye corners (33, 133, 362, 263) and nose bridge (168, 6).
ALIGN_LANDMARKS = (33, 133, 362, 263, 168, 6)
# Their template positions on a unit face frame (eye centres at x = 0.32 / 0.68). Measured as the
# mean mesh of four frontal development photographs after aligning the eye centres, then made
# left-right symmetric.
_TEMPLATE = np.array(
    [
        [0.2405, 0.400],
        [0.3995, 0.404],
        [0.6005, 0.404],
        [0.7595, 0.400],
        [0.5000, 0.372],
        [0.5000, 0.416],
    ]
)
# The part of the unit face frame an aligned crop shows: brows to chin, square.
_CROP_ORIGIN = np.array([0.06, 0.17])
_CROP_SPAN = 0.88


def to_bgr(frame: np.ndarray) -> tuple[np.ndarray, bool]:
    """Return a 3-channel uint8 BGR view of ``frame`` and whether the input was grey-scale."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 images, got dtype {frame.dtype}")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        grey = frame.reshape(frame.shape[0], frame.shape[1])
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), True
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame, False
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR), False
    raise ValueError(f"frames must be HxW, HxWx1, HxWx3 or HxWx4, got shape {frame.shape}")


def alignment_matrix(landmarks: np.ndarray, *, size: int = 128) -> np.ndarray:
    """Least-squares similarity transform (2x3) from frame pixels to a ``size`` px aligned crop.

    Fitted (Umeyama, no reflection) on :data:`ALIGN_LANDMARKS`, which move with the skull and
    hardly at all with expressions, so the crop follows the head and not the expression.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[0] < 468:
        raise ValueError(f"landmarks must be (468, 2) face-mesh points, got {landmarks.shape}")
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    src = landmarks[list(ALIGN_LANDMARKS), :2]
    dst = (_TEMPLATE - _CROP_ORIGIN) / _CROP_SPAN * size
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - mu_s, dst - mu_d
    var = (s0**2).sum()
    if var <= 1e-9:
        raise ValueError("degenerate landmarks: the alignment points coincide")
    # 2-D similarity in closed form: [a -b; b a] minimises sum |[a -b; b a] s0 - d0|^2.
    a = (s0 * d0).sum() / var
    b = (s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum() / var
    rot = np.array([[a, -b], [b, a]])
    shift = mu_d - rot @ mu_s
    return np.hstack([rot, shift[:, None]])


def align_face(
    frame: np.ndarray,
    landmarks: np.ndarray,
    *,
    size: int = 128,
    matrix: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned square face crop.

    Parameters
    ----------
    frame : ndarray of uint8
        BGR (H, W, 3) or grey (H, W) image.
    landmarks : ndarray, shape (468, 2)
        Face-mesh landmarks in ``frame`` pixels.
    size : int
        Crop side in pixels (128 and 224 are the usual choices).
    matrix : ndarray, shape (2, 3), optional
        A transform to use instead of fitting one (for example a temporally smoothed one).

    Returns
    -------
    crop : ndarray of uint8, shape (size, size[, 3])
    matrix : ndarray, shape (2, 3)
        The frame-to-crop transform; apply it to landmarks with :func:`cv2.transform`.
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame.dtype}")
    if matrix is None:
        matrix = alignment_matrix(landmarks, size=size)
    crop = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, matrix


@dataclass
class FaceResult:
    """What the tracker found in one frame.

    ``landmarks`` are (468, 2) frame pixels from the mesh, or ``None``. ``box`` is
    ``(x0, y0, x1, y1)`` in frame pixels from the mesh or the detector. ``source`` is ``"mesh"``,
    ``"detector"`` (a face was detected but the mesh failed) or ``"none"``. ``n_faces`` is the
    number of faces the detector saw when it ran on this frame, else ``None``.
    """

    frame_index: int
    landmarks: np.ndarray | None
    box: tuple[float, float, float, float] | None
    source: str
    n_faces: int | None = None
    grey: bool = False
    dark: bool = False
    tiny: bool = False

    @property
    def found(self) -> bool:
        """True when landmarks are available."""
        return self.landmarks is not None


@dataclass
class FaceStats:
    """Counts of what the tracker met; ``lost`` holds inclusive ``(first, last)`` frame indices
    of runs without landmarks (an open run ends at the last frame seen)."""

    frames: int = 0
    with_landmarks: int = 0
    detector_only: int = 0
    no_face: int = 0
    grey: int = 0
    dark: int = 0
    tiny: int = 0
    several_faces: int = 0
    acquisitions: int = 0
    lost: list[tuple[int, int]] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain dict for JSON reports."""
        return {
            "frames": self.frames,
            "with_landmarks": self.with_landmarks,
            "detector_only": self.detector_only,
            "no_face": self.no_face,
            "grey": self.grey,
            "dark": self.dark,
            "tiny": self.tiny,
            "several_faces": self.several_faces,
            "acquisitions": self.acquisitions,
            "lost_intervals": [list(iv) for iv in self.lost],
        }


class FaceTracker:
    """Track one face with the mediapipe face mesh; report lost/regained intervals.

    Parameters
    ----------
    crop_size : int
        Side of the square crop fed to the mesh; the face fills about half of it.
    refine_landmarks : bool
        Use the attention mesh (478 points with irises); slower, not needed for spotting.
    min_detection_confidence, min_tracking_confidence : float
        Passed to mediapipe.
    dark_level : float
        Mean grey level below which a frame is brightened (gamma) before the mesh.
    tiny_face_px : int
        Faces narrower than this (frame pixels) are counted as tiny.

    Notes
    -----
    With several faces the tracked one is kept while the mesh holds it; on (re)acquisition the
    face nearest to the last tracked position is taken, else the largest. Not thread-safe: use one
    tracker per video stream.
    """

    def __init__(
        self,
        *,
        crop_size: int = 256,
        refine_landmarks: bool = False,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        dark_level: float = 60.0,
        tiny_face_px: int = 64,
    ) -> None:
        if crop_size < 64:
            raise ValueError(f"crop_size must be at least 64, got {crop_size}")
        for name, value in (("min_detection_confidence", min_detection_confidence),
                            ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        import mediapipe as mp  # heavy import, only when a tracker is made

        self.crop_size = int(crop_size)
        self.dark_level = float(dark_level)
        self.tiny_face_px = int(tiny_face_px)
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=1,
            refine_landmarks=refine_landmarks,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_detection_confidence
        )
        self._haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self._haar.empty():
            logger.warning("OpenCV Haar cascade not found; the detector fallback is off")
            self._haar = None
        self._crop: tuple[float, float, float] | None = None  # centre x, centre y, side (frame px)
        self._last_box: tuple[float, float, float, float] | None = None
        self._lost_start: int | None = None
        self._last_index = -1
        self._counter = 0
        self.stats = FaceStats()

    # -- public -------------------------------------------------------------------------------
    def process(self, frame: np.ndarray, *, frame_index: int | None = None) -> FaceResult:
        """Find the tracked face in one frame.

        Parameters
        ----------
        frame : ndarray of uint8
            BGR (H, W, 3), BGRA, or grey (H, W) / (H, W, 1).
        frame_index : int, optional
            The frame's index for the lost intervals; a running count by default.
        """
        if frame_index is None:
            frame_index = self._counter
        self._counter = frame_index + 1
        bgr, grey = to_bgr(frame)
        self.stats.frames += 1
        self.stats.grey += grey
        bgr, dark = self._brighten(bgr)
        self.stats.dark += dark

        result = None
        n_faces = None
        if self._crop is not None:
            result = self._run_mesh(bgr, frame_index)
        if result is None:
            self._crop = None
            faces = self._detect(bgr)
            n_faces = len(faces)
            self.stats.several_faces += n_faces > 1
            if faces:
                self.stats.acquisitions += 1
                box = self._choose(faces)
                self._place_crop(box)
                result = self._run_mesh(bgr, frame_index)
                if result is None:
                    result = FaceResult(frame_index, None, box, "detector")
                    self._crop = None
        if result is None:
            result = FaceResult(frame_index, None, None, "none")
        result.n_faces = n_faces
        result.grey, result.dark = grey, dark
        if result.box is not None:
            result.tiny = (result.box[2] - result.box[0]) < self.tiny_face_px
            self.stats.tiny += result.tiny
            self._last_box = result.box
        self._book(result)
        return result

    def close(self) -> None:
        """Release the mediapipe graphs."""
        self._mesh.close()
        self._detector.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------------
    def _brighten(self, bgr: np.ndarray) -> tuple[np.ndarray, bool]:
        small = bgr[::8, ::8]
        level = float(small.mean())
        if level >= self.dark_level:
            return bgr, False
        # A gamma that lifts the mean to about 110 keeps the darkest detail ordered.
        level = max(level, 1.0)
        gamma = np.log(110.0 / 255.0) / np.log(level / 255.0)
        lut = (255.0 * (np.arange(256) / 255.0) ** gamma).clip(0, 255).astype(np.uint8)
        return cv2.LUT(bgr, lut), True

    def _run_mesh(self, bgr: np.ndarray, frame_index: int) -> FaceResult | None:
        cx, cy, side = self._crop
        scale = self.crop_size / side
        ox, oy = cx - side / 2, cy - side / 2
        warp = np.array([[scale, 0.0, -ox * scale], [0.0, scale, -oy * scale]])
        crop = cv2.warpAffine(bgr, warp, (self.crop_size, self.crop_size), flags=cv2.INTER_LINEAR)
        out = self._mesh.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        if not out.multi_face_landmarks:
            return None
        pts = out.multi_face_landmarks[0].landmark
        lm = np.array([(p.x, p.y) for p in pts], dtype=np.float64) * self.crop_size
        lm = lm / scale + (ox, oy)
        box = (float(lm[:, 0].min()), float(lm[:, 1].min()), float(lm[:, 0].max()), float(lm[:, 1].max()))
        self._maybe_recentre(box)
        return FaceResult(frame_index, lm.astype(np.float32), box, "mesh")

    def _maybe_recentre(self, box: tuple[float, float, float, float]) -> None:
        # Move the crop only when the face drifts far in it: each move costs the mesh its track.
        cx, cy, side = self._crop
        fx, fy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        fsize = max(box[2] - box[0], box[3] - box[1])
        off = max(abs(fx - cx), abs(fy - cy)) / side
        ratio = fsize / side
        if off > 0.18 or not 0.3 <= ratio <= 0.7:
            self._place_crop(box)

    def _place_crop(self, box: tuple[float, float, float, float]) -> None:
        fsize = max(box[2] - box[0], box[3] - box[1], 8.0)
        self._crop = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 2.0 * fsize)

    def _detect(self, bgr: np.ndarray) -> list[tuple[float, float, float, float]]:
        h, w = bgr.shape[:2]
        out = self._detector.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        faces = []
        for det in out.detections or []:
            rel = det.location_data.relative_bounding_box
            x0, y0 = rel.xmin * w, rel.ymin * h
            faces.append((x0, y0, x0 + rel.width * w, y0 + rel.height * h))
        if faces or self._haar is None:
            return faces
        scale = min(1.0, 480.0 / max(h, w))
        grey = cv2.cvtColor(cv2.resize(bgr, None, fx=scale, fy=scale) if scale < 1 else bgr, cv2.COLOR_BGR2GRAY)
        found = self._haar.detectMultiScale(cv2.equalizeHist(grey), scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
        return [(x / scale, y / scale, (x + fw) / scale, (y + fh) / scale) for x, y, fw, fh in found]

    def _choose(self, faces: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
        if self._last_box is not None and len(faces) > 1:
            lx, ly = (self._last_box[0] + self._last_box[2]) / 2, (self._last_box[1] + self._last_box[3]) / 2
            lsize = self._last_box[2] - self._last_box[0]
            dists = [np.hypot((f[0] + f[2]) / 2 - lx, (f[1] + f[3]) / 2 - ly) for f in faces]
            best = int(np.argmin(dists))
            if dists[best] < lsize:
                return faces[best]
        return max(faces, key=lambda f: (f[2] - f[0]) * (f[3] - f[1]))

    def _book(self, result: FaceResult) -> None:
        idx = result.frame_index
        if result.found:
            self.stats.with_landmarks += 1
            if self._lost_start is not None:
                self.stats.lost.append((self._lost_start, self._last_index))
                logger.info("face regained at frame %d (lost from %d)", idx, self._lost_start)
                self._lost_start = None
        else:
            if result.source == "detector":
                self.stats.detector_only += 1
            else:
                self.stats.no_face += 1
            if self._lost_start is None:
                self._lost_start = idx
                logger.info("face lost at frame %d", idx)
        self._last_index = idx

    def lost_intervals(self) -> list[tuple[int, int]]:
        """Inclusive frame-index runs without landmarks so far, the open one included."""
        runs = list(self.stats.lost)
        if self._lost_start is not None:
            runs.append((self._lost_start, self._last_index))
        return runs
