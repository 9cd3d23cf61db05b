"""Batch spotting: replay a recording or a video file through the streaming :class:`Spotter`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mmer.dataset import Recording
from mmer.spotting.megc import Prediction
from mmer.spotting.spotter import Candidate, Spotter, SpotterConfig

__all__ = ["SpotResult", "spot_frames", "spot_recording", "spot_video", "to_predictions"]

logger = logging.getLogger(__name__)


@dataclass
class SpotResult:
    """Everything one spotting run produced for one video."""

    subject: str
    video: str
    candidates: list[Candidate]
    signal: dict[str, list[tuple[int, float, float]]]
    face: dict
    rejected: dict
    ms_per_frame: dict
    frames: int
    damaged_frames: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """Plain dict for reports (no per-frame arrays)."""
        return {
            "subject": self.subject,
            "video": self.video,
            "frames": self.frames,
            "damaged_frames": self.damaged_frames,
            "candidates": len(self.candidates),
            "me": sum(c.kind == "me" for c in self.candidates),
            "mae": sum(c.kind == "mae" for c in self.candidates),
            "face": self.face,
            "rejected": self.rejected,
            "ms_per_frame": self.ms_per_frame,
            "notes": self.notes,
        }


def spot_frames(
    frames: Iterable[tuple[int, float, np.ndarray | None]],
    *,
    subject: str,
    video: str,
    config: SpotterConfig | None = None,
    total: int | None = None,
    progress: bool = True,
) -> SpotResult:
    """Run the streaming spotter over ``(frame_index, t, frame)`` tuples (``None`` = damaged)."""
    damaged = 0
    found: list[Candidate] = []
    with Spotter(config=config) as spotter:
        bar = tqdm(frames, total=total, desc=f"spot {subject}/{video}", unit="frame", file=sys.stderr,
                   disable=not progress, leave=False)
        for index, t, frame in bar:
            damaged += frame is None
            found.extend(spotter.push(index, t, frame))
        found.extend(spotter.flush())
        face = spotter.tracker.stats.as_dict()
        face["lost_intervals"] = [list(iv) for iv in spotter.tracker.lost_intervals()]
        signal = {name: list(rows) for name, rows in spotter.signal.items()}
        result = SpotResult(subject, video, found, signal, face, dict(spotter.rejected),
                            spotter.ms_per_frame(), spotter.frames, damaged)
        # An ME is judged on the k frames before and after its apex, with neutral frames beyond.
        short = result.frames < 3 * spotter.k
    if short:
        result.notes.append(f"only {result.frames} frame(s): an ME needs about {3 * spotter.k} at "
                            f"{spotter.config.fps:g} fps (neutral frames before and after it)")
    if result.frames and face["with_landmarks"] == 0:
        result.notes.append("no face found in any frame: no candidates")
    elif face["lost_intervals"]:
        result.notes.append(f"face lost in {len(face['lost_intervals'])} interval(s)")
    if damaged:
        result.notes.append(f"{damaged} damaged frame(s) counted as frames without a face")
    return result


def spot_recording(
    recording: Recording,
    *,
    config: SpotterConfig | None = None,
    progress: bool = True,
    track: str = "rgb",
) -> SpotResult:
    """Spot one :class:`~mmer.dataset.Recording` (the batch form: a replay through the same code).

    The frame rate comes from the track's stream spec unless ``config`` is given.
    """
    if track not in recording.frames:
        raise ValueError(f"{recording.subject}/{recording.video}: no {track!r} frame track "
                         f"(tracks: {sorted(recording.frames)})")
    frames = recording.frames[track]
    if config is None:
        rate = float(getattr(frames.spec, "rate", 0.0) or 0.0)
        config = SpotterConfig(fps=rate if rate > 0 else 30.0)
    return spot_frames(recording.iter_frames(track), subject=recording.subject, video=recording.video,
                       config=config, total=len(frames), progress=progress)


def _video_frames(cap: cv2.VideoCapture, fps: float) -> Iterator[tuple[int, float, np.ndarray]]:
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            return
        yield index, index / fps, frame
        index += 1


def spot_video(
    path: str | Path,
    *,
    config: SpotterConfig | None = None,
    subject: str | None = None,
    video: str | None = None,
    progress: bool = True,
) -> SpotResult:
    """Spot a video file decoded with OpenCV; frame indices count from 0.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When OpenCV cannot open it or decode its first frame.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open this video (unknown container or codec)")
        ok, first = cap.read()
        if not ok or first is None:
            raise ValueError(f"{path}: no frame could be decoded (corrupt or empty video)")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not np.isfinite(fps) or fps <= 0 or fps > 1000:
            logger.warning("%s: no usable frame rate in the container; assuming 30 fps", path)
            fps = 30.0
        if config is None:
            config = SpotterConfig(fps=fps)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if not np.isfinite(count) or count < 1:
            # A still image (a JPG renamed .mp4) opens as a one-frame stream without a frame count.
            raise ValueError(f"{path}: not a video (the container declares no frame count)")
        total = int(count)
        result = spot_frames(_video_frames(cap, config.fps), subject=subject or path.stem, video=video or path.stem,
                             config=config, total=total, progress=progress)
        # Decoding stops at the first frame it cannot read; the frames the container declares
        # after it are lost, and counted as damaged.
        lost = total - result.frames
        if lost > 0:
            result.damaged_frames += lost
            result.notes.append(f"{lost} of the {total} frames the container declares could not be decoded")
        return result
    finally:
        cap.release()


def to_predictions(result: SpotResult) -> list[Prediction]:
    """MEGC prediction rows for one run."""
    return [Prediction(result.subject, result.video, c.onset, c.offset, c.apex, c.score, c.kind)
            for c in result.candidates]
