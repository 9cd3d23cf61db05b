"""Multimodal recognition samples built from a candidate's frames, depth maps and physiology.

One builder, :func:`build_sample`, takes plain arrays, so the offline path (a
:class:`~mmer.dataset.Recording` and an annotated :class:`~mmer.dataset.Event`, see
:func:`sample_from_recording`) and the live path (frames and physiology cut from the alignment
buffer around a spotted candidate) produce identical samples. A :class:`Sample` holds:

==================  ================================  ===================================================
key                 shape                             content
==================  ================================  ===================================================
``frames``          ``(n_frames, S, S)``              aligned grey face crops, onset .. apex, in [-0.5, 0.5]
``flow``            ``(3, S, S)``                     onset->apex u, v (px at 128 px face scale) and
                                                      optical strain (x20), head motion removed
``roi``             ``(n_rois, 3, P, P)``             the flow/strain map cut at AU-anchored ROIs
``depth``           ``(2, S, S)``                     onset->apex depth difference, onset relief
``physio``          ``(6, L)``                        EDA phasic/tonic, HR, RSP, breathing speed, PPG
                                                      pulse amplitude
``physio_feats``    ``(25,)``                         SCR amplitude/latency, HR change over time, RMSSD,
                                                      pulse-amplitude change, breathing pause, ...
``mask``            ``(3,)``                          1 where video, depth, physio are present
==================  ================================  ===================================================

Missing modalities are zero-filled and masked, never dropped: a model sees the same keys always.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from mmer.features.depth import depth_difference
from mmer.features.face import FaceTracker, alignment_matrix
from mmer.features.flow import FLOW_METHODS, optical_flow, optical_strain, remove_head_motion
from mmer.features.physio import PHYSIO_FEATURES, PHYSIO_SERIES, physio_process
from mmer.features.roi import REFERENCE_ROI, face_rois

logger = logging.getLogger(__name__)

__all__ = [
    "MODALITIES",
    "ROI_NAMES",
    "SampleConfig",
    "Sample",
    "build_sample",
    "sample_from_recording",
    "sample_from_flow_image",
    "sample_from_window",
    "stack_samples",
]

MODALITIES: tuple[str, ...] = ("video", "depth", "physio")

#: AU-anchored ROIs cut from the flow map (mediapipe landmark groups of :mod:`mmer.features.roi`).
ROI_NAMES: tuple[str, ...] = (
    "brow_inner_r", "brow_inner_l", "brow_outer_r", "brow_outer_l", "eye_r",
    "eye_l", "nose_r", "nose_l", "mouth_corner_r", "mouth_corner_l",
)

# Where those ROIs sit in an aligned crop (fractions of the side), for inputs without landmarks
# (precomputed flow images). Read off the alignment template of mmer.features.face.
_CANONICAL_ROIS = {
    "brow_inner_r": (0.40, 0.16), "brow_inner_l": (0.60, 0.16),
    "brow_outer_r": (0.22, 0.15), "brow_outer_l": (0.78, 0.15),
    "eye_r": (0.30, 0.27), "eye_l": (0.70, 0.27),
    "nose_r": (0.41, 0.52), "nose_l": (0.59, 0.52),
    "mouth_corner_r": (0.35, 0.74), "mouth_corner_l": (0.65, 0.74),
}

_FLOW_REF_SIZE = 128.0  # flow is reported in pixels of a 128 px aligned face
_STRAIN_GAIN = 20.0


@dataclass(frozen=True)
class SampleConfig:
    """Options of the sample builder; stored in checkpoints so inference matches training.

    Parameters
    ----------
    image_size : int
        Side S of the frame, flow and depth maps the models read (28-64 px).
    flow_size : int
        Side of the aligned crops the flow is computed on (then resized to ``image_size``).
    flow_method : {"tvl1", "dis", "farneback"}
        Onset->apex flow; TV-L1 is the accurate default, DIS the fast one.
    n_frames : int
        Frames sampled evenly from onset to apex (both included).
    roi_size : int
        Side P of each ROI patch.
    physio_pre, physio_post : float
        Physiology window around the onset, seconds before and after.
    physio_length : int
        Points per resampled physiological segment.
    """

    image_size: int = 32
    flow_size: int = 64
    flow_method: str = "tvl1"
    n_frames: int = 4
    roi_size: int = 10
    physio_pre: float = 2.0
    physio_post: float = 6.0
    physio_length: int = 64

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 128:
            raise ValueError(f"image_size must be in [16, 128], got {self.image_size}")
        if self.flow_size < self.image_size:
            raise ValueError(f"flow_size ({self.flow_size}) must be >= image_size ({self.image_size})")
        if self.flow_method not in FLOW_METHODS:
            raise ValueError(f"flow_method must be one of {FLOW_METHODS}, got {self.flow_method!r}")
        if self.n_frames < 2:
            raise ValueError(f"n_frames must be >= 2 (onset and apex), got {self.n_frames}")
        if self.physio_pre < 0 or self.physio_post <= 0:
            raise ValueError("physio_pre must be >= 0 and physio_post > 0")

    def as_dict(self) -> dict:
        return asdict(self)

    def model_inputs(self) -> dict:
        """The input-shape options a model built for these samples needs."""
        return {
            "image_size": self.image_size,
            "n_frames": self.n_frames,
            "n_rois": len(ROI_NAMES),
            "roi_size": self.roi_size,
            "physio_channels": len(PHYSIO_SERIES),
            "physio_length": self.physio_length,
            "n_physio_feats": len(PHYSIO_FEATURES),
        }


@dataclass
class Sample:
    """One candidate's model inputs (see the module docstring) and what happened building them."""

    arrays: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        return self.arrays["mask"]

    @property
    def modalities(self) -> list[str]:
        """Names of the modalities present."""
        return [m for m, on in zip(MODALITIES, self.arrays["mask"]) if on]


def _empty(cfg: SampleConfig) -> dict[str, np.ndarray]:
    s, p = cfg.image_size, cfg.roi_size
    return {
        "frames": np.zeros((cfg.n_frames, s, s), np.float32),
        "flow": np.zeros((3, s, s), np.float32),
        "roi": np.zeros((len(ROI_NAMES), 3, p, p), np.float32),
        "depth": np.zeros((2, s, s), np.float32),
        "physio": np.zeros((len(PHYSIO_SERIES), cfg.physio_length), np.float32),
        "physio_feats": np.zeros(len(PHYSIO_FEATURES), np.float32),
        "mask": np.zeros(len(MODALITIES), np.float32),
    }


def _grey(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8, got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[:, :, 0]
    if frame.ndim == 2:
        return frame
    raise ValueError(f"video frames must be HxW or HxWx3, got shape {frame.shape}")


def _roi_patches(maps: np.ndarray, boxes: Mapping[str, tuple[int, int, int, int]], size: int) -> np.ndarray:
    """Cut each ROI box out of a (3, H, W) map and resize to (3, size, size)."""
    out = np.zeros((len(ROI_NAMES), maps.shape[0], size, size), np.float32)
    hwc = np.ascontiguousarray(maps.transpose(1, 2, 0))
    for i, name in enumerate(ROI_NAMES):
        x0, y0, x1, y1 = boxes[name]
        patch = cv2.resize(hwc[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)
        out[i] = patch.transpose(2, 0, 1)
    return out


def _canonical_boxes(side: int, half: float = 0.09) -> dict[str, tuple[int, int, int, int]]:
    boxes = {}
    for name, (fx, fy) in _CANONICAL_ROIS.items():
        x0 = int(np.clip(round((fx - half) * side), 0, side - 2))
        y0 = int(np.clip(round((fy - half) * side), 0, side - 2))
        boxes[name] = (x0, y0, max(x0 + 2, int(round((fx + half) * side))), max(y0 + 2, int(round((fy + half) * side))))
    return boxes


def _video(frames: Sequence[np.ndarray], landmarks: np.ndarray | None, cfg: SampleConfig,
           tracker: FaceTracker | None, out: dict, info: dict) -> np.ndarray | None:
    """Fill the video arrays; return the frame-to-crop matrix at ``image_size`` (or None)."""
    if len(frames) < 2:
        raise ValueError(f"video needs at least the onset and apex frames, got {len(frames)}")
    greys = [_grey(f) for f in frames]
    if landmarks is None:
        own = tracker is None
        tracker = tracker or FaceTracker()
        try:
            for g in (greys[0], greys[-1]):
                found = tracker.process(g)
                if found.found:
                    landmarks = found.landmarks
                    break
        finally:
            if own:
                tracker.close()
    if landmarks is None:
        info["video"] = "no face found in the onset or apex frame"
        return None
    landmarks = np.asarray(landmarks, dtype=np.float64)[:, :2]
    fs, s = cfg.flow_size, cfg.image_size
    matrix = alignment_matrix(landmarks, size=fs)
    pick = np.linspace(0, len(greys) - 1, cfg.n_frames).round().astype(int)
    crops = [cv2.warpAffine(greys[i], matrix, (fs, fs), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
             for i in sorted(set(pick.tolist()) | {0, len(greys) - 1})]
    by_pos = dict(zip(sorted(set(pick.tolist()) | {0, len(greys) - 1}), crops))
    onset, apex = by_pos[0], by_pos[len(greys) - 1]

    aligned = cv2.transform(landmarks[None, :, :2].astype(np.float64), matrix)[0]
    boxes = face_rois(aligned, shape=(fs, fs), half_size=0.2, names=(*ROI_NAMES, REFERENCE_ROI))
    flow = optical_flow(onset, apex, method=cfg.flow_method)
    flow = remove_head_motion(flow, boxes[REFERENCE_ROI])
    strain = optical_strain(flow)
    maps = np.concatenate([flow * (_FLOW_REF_SIZE / fs), strain[:, :, None] * _STRAIN_GAIN], axis=2).transpose(2, 0, 1)
    out["roi"] = _roi_patches(maps, {k: boxes[k] for k in ROI_NAMES}, cfg.roi_size)
    small = cv2.resize(np.ascontiguousarray(maps.transpose(1, 2, 0)), (s, s), interpolation=cv2.INTER_AREA)
    out["flow"] = small.transpose(2, 0, 1).astype(np.float32)
    out["frames"] = np.stack(
        [cv2.resize(by_pos[i], (s, s), interpolation=cv2.INTER_AREA) for i in pick]
    ).astype(np.float32) / 255.0 - 0.5
    out["mask"][0] = 1.0
    info["video"] = "ok"
    return alignment_matrix(landmarks, size=s)


def build_sample(
    *,
    config: SampleConfig | None = None,
    frames: Sequence[np.ndarray] | None = None,
    landmarks: np.ndarray | None = None,
    depth: tuple[np.ndarray, np.ndarray] | None = None,
    physio: Mapping[str, np.ndarray] | None = None,
    physio_rate: float | None = None,
    physio_onset: float | None = None,
    tracker: FaceTracker | None = None,
) -> Sample:
    """Build one sample from whatever modalities are given.

    Parameters
    ----------
    config : SampleConfig, optional
        Builder options (defaults otherwise).
    frames : sequence of ndarray, optional
        RGB (BGR) or grey uint8 frames from onset to apex, onset first and apex last; frames in
        between are sampled evenly. At least two.
    landmarks : ndarray (468, 2), optional
        Face-mesh landmarks of the onset frame (the live pipeline has them already); found with
        ``tracker`` (or a fresh :class:`~mmer.features.FaceTracker`) otherwise.
    depth : (onset, apex) uint16 maps, optional
        Depth in millimetres registered to the RGB frames.
    physio : mapping, optional
        ``"eda"``, ``"ecg"``, ``"ppg"``, ``"rsp"`` -> 1-D arrays over the physiology window.
    physio_rate : float
        Their sampling rate (required with ``physio``).
    physio_onset : float
        Seconds from the first physiology sample to the ME onset (required with ``physio``).
    tracker : FaceTracker, optional
        Reused across samples to avoid re-creating the face mesh.

    Returns
    -------
    Sample
        ``info`` says, per modality, ``ok`` or why it is masked.
    """
    cfg = config or SampleConfig()
    out = _empty(cfg)
    info: dict = {}
    matrix = None
    if frames is not None:
        matrix = _video(frames, landmarks, cfg, tracker, out, info)
    else:
        info["video"] = "absent"
    if depth is not None:
        onset_d, apex_d = depth
        try:
            d = depth_difference(onset_d, apex_d, matrix=matrix, size=cfg.image_size)
            out["depth"] = d["maps"]
            out["mask"][1] = 1.0
            info["depth"] = "ok" if matrix is not None else "ok (whole frame: no face alignment)"
            info["depth_holes"] = d["holes"]
        except ValueError as err:
            info["depth"] = str(err)
    else:
        info["depth"] = "absent"
    if physio:
        if physio_rate is None or physio_onset is None:
            raise ValueError("physio needs physio_rate and physio_onset")
        p = physio_process(physio, sampling_rate=physio_rate, onset=physio_onset, length=cfg.physio_length)
        info["physio_quality"] = p["quality"]
        if any(v == "ok" for v in p["quality"].values()):
            out["physio"], out["physio_feats"] = p["series"], p["features"]
            out["mask"][2] = 1.0
            info["physio"] = "ok"
        else:
            info["physio"] = "no usable channel: " + "; ".join(f"{k}: {v}" for k, v in p["quality"].items())
    else:
        info["physio"] = "absent"
    return Sample(out, info)


def sample_from_flow_image(image: np.ndarray, *, config: SampleConfig | None = None, apex: np.ndarray | None = None) -> Sample:
    """A video-only sample from a precomputed flow image (u, v, strain min-max scaled).

    Parameters
    ----------
    image : ndarray, shape (H, W, 3)
        Channels u, v, strain: uint8 (0-255) as stored, or float in [0, 1] as
        :meth:`mmer.replay.flowimages.FlowSample.flow` returns them. Values map to [-1, 1].
    apex : ndarray, optional
        The apex face; it fills every frame slot, so the frame difference is zero and models rely
        on the flow.
    """
    cfg = config or SampleConfig()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a flow image must be HxWx3, got shape {image.shape}")
    if image.dtype == np.uint8:
        unit = image.astype(np.float32) / 255.0
    elif np.issubdtype(image.dtype, np.floating):
        unit = image.astype(np.float32)
    else:
        raise ValueError(f"a flow image must be uint8 or float in [0, 1], got {image.dtype}")
    out = _empty(cfg)
    maps = unit * 2.0 - 1.0
    s = cfg.image_size
    out["flow"] = cv2.resize(maps, (s, s), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    side = min(image.shape[:2])
    square = cv2.resize(maps, (side, side), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    out["roi"] = _roi_patches(square, _canonical_boxes(side), cfg.roi_size)
    if apex is not None:
        face = cv2.resize(_grey(apex), (s, s), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0 - 0.5
        out["frames"][:] = face
    out["mask"][0] = 1.0
    return Sample(out, {"video": "ok (flow image)", "depth": "absent", "physio": "absent"})


def _position(indices: np.ndarray, frame: int, what: str) -> int:
    pos = int(np.searchsorted(indices, frame))
    if pos >= len(indices):
        pos = len(indices) - 1
    if pos > 0 and abs(indices[pos - 1] - frame) <= abs(indices[pos] - frame):
        pos -= 1
    if abs(int(indices[pos]) - frame) > 3:
        raise ValueError(f"{what} frame {frame} is not in the video (nearest index {int(indices[pos])})")
    return pos


def _read(track, pos: int, step: int) -> np.ndarray | None:
    """Read frame ``pos``; on a damaged frame try the next ones in direction ``step``."""
    from mmer.dataset import FrameError

    for p in range(pos, pos + 3 * step, step):
        if 0 <= p < len(track):
            try:
                return track.read(p)
            except FrameError as err:
                logger.warning("damaged frame at position %d: %s", p, err)
    return None


def _physio_window(recording, t_onset: float, cfg: SampleConfig) -> tuple[dict | None, float | None, float | None]:
    """Cut every physiological track over the window, on one grid at the highest track rate."""
    tracks = {}
    for track in recording.samples.values():
        kind = str(getattr(track.spec.type, "value", track.spec.type)).lower()
        if kind in ("eda", "ecg", "ppg", "rsp") and len(track) > 1:
            tracks[kind] = track
    if not tracks:
        return None, None, None
    rate = max(t.spec.rate or float(1.0 / np.median(np.diff(t.timestamps))) for t in tracks.values())
    start = max(t_onset - cfg.physio_pre, max(float(t.timestamps[0]) for t in tracks.values()))
    stop = min(t_onset + cfg.physio_post, min(float(t.timestamps[-1]) for t in tracks.values()))
    if stop - start < 2.0 or start > t_onset:
        return None, None, None
    grid = np.arange(start, stop, 1.0 / rate)
    physio = {}
    for kind, track in tracks.items():
        data = np.asarray(track.data, dtype=float)
        physio[kind] = np.interp(grid, np.asarray(track.timestamps, dtype=float), data[:, 0] if data.ndim == 2 else data)
    return physio, rate, float(t_onset - start)


def sample_from_recording(
    recording,
    event,
    *,
    config: SampleConfig | None = None,
    modalities: Sequence[str] = MODALITIES,
    tracker: FaceTracker | None = None,
) -> Sample:
    """Build the sample of one annotated event of a :class:`~mmer.dataset.Recording`.

    Reads only the frames it needs (``n_frames`` between onset and apex, and the onset/apex depth
    maps); without an apex (CAS(ME)^3 Part C) the midpoint of onset and offset stands in for it.
    Physiology comes from the recording's sample tracks whose stream type is EDA, ECG, PPG or RSP.
    """
    cfg = config or SampleConfig()
    unknown = set(modalities) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; expected a subset of {list(MODALITIES)}")
    apex = event.apex if event.apex is not None else (event.onset + event.offset) // 2
    rgb = recording.frames.get("rgb")
    frames = depth = physio = None
    rate = p_onset = None
    t_onset = None
    info_extra: dict = {"apex_from_midpoint": event.apex is None}
    if rgb is not None and len(rgb):
        p0 = _position(rgb.indices, event.onset, f"{recording.subject}/{recording.video} onset")
        p1 = _position(rgb.indices, apex, f"{recording.subject}/{recording.video} apex")
        t_onset = float(rgb.timestamps[p0])
        if "video" in modalities:
            picks = np.linspace(p0, max(p1, p0 + 1), cfg.n_frames).round().astype(int)
            read = [_read(rgb, int(p), 1 if i < len(picks) - 1 else -1) for i, p in enumerate(picks)]
            if all(f is not None for f in read):
                frames = read
            else:
                info_extra["video_damaged"] = True
    depth_track = recording.frames.get("depth")
    if "depth" in modalities and depth_track is not None and len(depth_track):
        d0 = _read(depth_track, _position(depth_track.indices, event.onset, "depth onset"), 1)
        d1 = _read(depth_track, _position(depth_track.indices, apex, "depth apex"), -1)
        if d0 is not None and d1 is not None:
            depth = (d0, d1)
    if "physio" in modalities and t_onset is not None:
        physio, rate, p_onset = _physio_window(recording, t_onset, cfg)
    sample = build_sample(config=cfg, frames=frames, depth=depth, physio=physio, physio_rate=rate,
                          physio_onset=p_onset, tracker=tracker)
    sample.info.update(info_extra)
    return sample


def stack_samples(samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """Stack samples into arrays with a leading sample axis (the on-disk cache layout)."""
    if not samples:
        raise ValueError("no samples to stack")
    return {k: np.stack([s.arrays[k] for s in samples]) for k in samples[0].arrays}


def sample_from_window(
    window,
    *,
    t_onset: float,
    t_apex: float,
    config: SampleConfig | None = None,
    landmarks: np.ndarray | None = None,
    tracker: FaceTracker | None = None,
    modalities: Sequence[str] = MODALITIES,
) -> Sample:
    """Build a sample from a :class:`mmer.fusion.Window` cut around a spotted candidate.

    Parameters
    ----------
    window : mmer.fusion.Window
        Should span at least ``t_onset - physio_pre`` .. ``t_onset + physio_post`` for a fused
        sample; a window covering only onset..apex gives the early video (and depth) sample.
    t_onset, t_apex : float
        Candidate onset and apex on the window's (LSL) clock.
    landmarks : ndarray (468, 2), optional
        Landmarks of the onset frame if the spotter already has them.
    """
    cfg = config or SampleConfig()
    if t_apex < t_onset:
        raise ValueError(f"apex time {t_apex} precedes onset time {t_onset}")
    frames = depth = physio = None
    rate = p_onset = None
    rgb_indices = None
    rgb = window.by_type("VideoRGB")
    if rgb is not None and len(rgb):
        i0, i1 = _nearest(rgb.timestamps, t_onset), _nearest(rgb.timestamps, t_apex)
        rgb_indices = (int(rgb.indices[i0]), int(rgb.indices[i1]))
        if "video" in modalities and i1 > i0:
            frames = [rgb.frames[i] for i in range(i0, i1 + 1)]
    dw = window.by_type("VideoDepth")
    if "depth" in modalities and dw is not None and len(dw) > 1:
        # A camera that numbers RGB and depth alike (RealSense, synthetic, their recordings) gives
        # the depth frames of the RGB onset and apex; nearest in time would depend on how each
        # stream's timestamps were dejittered, and differ between a live run and its replay.
        same = [np.flatnonzero(np.asarray(dw.indices) == i) for i in rgb_indices] if rgb_indices else []
        if same and all(hit.size for hit in same):
            i0, i1 = int(same[0][0]), int(same[1][0])
        else:
            i0, i1 = _nearest(dw.timestamps, t_onset), _nearest(dw.timestamps, t_apex)
        if i1 > i0:
            depth = (dw.frames[i0], dw.frames[i1])
    if "physio" in modalities:
        start, stop = t_onset - cfg.physio_pre, t_onset + cfg.physio_post
        parts = {}
        for kind in ("EDA", "ECG", "PPG", "RSP"):
            sig = window.by_type(kind)
            if sig is None or len(sig) < 2:
                continue
            ts = np.asarray(sig.timestamps, dtype=float)
            keep = np.isfinite(sig.data[:, 0])
            if keep.sum() < 2:
                continue
            parts[kind.lower()] = (ts[keep], np.asarray(sig.data[keep, 0], dtype=float), float(sig.rate or 0.0))
        if parts:
            rate = max(r if r > 0 else 1.0 / np.median(np.diff(t)) for t, _, r in parts.values())
            start = max(start, max(t[0] for t, _, _ in parts.values()))
            stop = min(stop, min(t[-1] for t, _, _ in parts.values()))
            if stop - start >= 2.0 and start <= t_onset:
                grid = np.arange(start, stop, 1.0 / rate)
                physio = {k: np.interp(grid, t, x) for k, (t, x, _) in parts.items()}
                p_onset = float(t_onset - start)
    sample = build_sample(config=cfg, frames=frames, landmarks=landmarks, depth=depth, physio=physio,
                          physio_rate=rate, physio_onset=p_onset, tracker=tracker)
    sample.info["window_missing"] = dict(window.missing)
    return sample


def _nearest(timestamps, t: float) -> int:
    return int(np.argmin(np.abs(np.asarray(timestamps, dtype=float) - t)))
