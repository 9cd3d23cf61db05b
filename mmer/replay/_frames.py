"""Lazy frame sources: numbered image folders and video files, one frame decoded per call."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import cv2
import numpy as np

from mmer.dataset import FrameError

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"(\d+)$")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def numbered_images(folder: Path, suffixes: tuple[str, ...]) -> tuple[np.ndarray, list[Path]]:
    """List ``<index>.<ext>`` files of a folder, sorted by index.

    Returns the indices (int64) and the paths. Files whose stem is not a number are ignored with a
    debug log, because real folders hold ``Thumbs.db`` and notes beside the frames.
    """
    pairs = []
    for path in folder.iterdir():
        if path.suffix.lower() not in suffixes or not path.is_file():
            continue
        match = _NUMBER.search(path.stem)
        if match is None:
            log.debug("ignoring %s: no frame number in its name", path)
            continue
        pairs.append((int(match.group(1)), path))
    pairs.sort()
    return np.array([p[0] for p in pairs], dtype=np.int64), [p[1] for p in pairs]


class ImageFolderReader:
    """``reader(position)`` for a list of image files; colour as BGR uint8, depth as uint16 unchanged.

    ``damaged`` maps positions to the reason they are known to be damaged (from an exception list),
    so those files are not even opened.
    """

    def __init__(self, paths: list[Path], *, depth: bool, damaged: dict[int, str] | None = None) -> None:
        self.paths = paths
        self.depth = depth
        self.damaged = damaged or {}

    def __call__(self, position: int) -> np.ndarray:
        path = self.paths[position]
        if position in self.damaged:
            raise FrameError(f"{path}: {self.damaged[position]}")
        flags = cv2.IMREAD_UNCHANGED if self.depth else cv2.IMREAD_COLOR
        image = cv2.imread(str(path), flags)
        if image is None:
            raise FrameError(f"{path}: cannot decode image (damaged or truncated)")
        if self.depth:
            if image.ndim == 3:
                image = image[..., 0]
            if image.dtype != np.uint16:
                raise FrameError(f"{path}: depth image is {image.dtype}, expected 16-bit")
        return image


class VideoFileReader:
    """``reader(position)`` on a video file, decoding sequentially and seeking only for real jumps.

    Only the frames around the read position are in memory (``cache`` of them), so an 8-minute
    video costs a few frames of RAM. The player prefetches from two threads, which may ask for
    ``p + 1`` just before ``p``; decoded frames are cached and short forward gaps are decoded
    through, so such requests never seek (seeking compressed video is slow and not always exact).
    """

    def __init__(self, path: Path, *, cache: int = 16) -> None:
        self.path = Path(path)
        self._cap: cv2.VideoCapture | None = None
        self._next = 0
        self._lock = threading.Lock()
        self._cache: dict[int, np.ndarray] = {}
        self._cache_size = cache

    def _decode_next(self) -> np.ndarray:
        ok, frame = self._cap.read()
        position = self._next
        self._next += 1
        if not ok or frame is None:
            raise FrameError(f"{self.path}: frame {position} cannot be decoded")
        self._cache[position] = frame
        while len(self._cache) > self._cache_size:
            self._cache.pop(min(self._cache))
        return frame

    def __call__(self, position: int) -> np.ndarray:
        with self._lock:
            if position in self._cache:
                return self._cache[position]
            if self._cap is None:
                self._cap = cv2.VideoCapture(str(self.path))
                if not self._cap.isOpened():
                    raise FrameError(f"{self.path}: cannot open video")
                self._next = 0
            if not 0 <= position - self._next <= self._cache_size:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, position)
                self._next = position
                self._cache.clear()
            while self._next < position:
                try:
                    self._decode_next()
                except FrameError:
                    continue
            return self._decode_next()

    def close(self) -> None:
        """Release the capture."""
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            self._cache.clear()


def video_info(path: Path) -> tuple[int, float, int, int]:
    """``(frame_count, fps, width, height)`` of a video file; raises naming the file when unreadable."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise FrameError(f"{path}: cannot open video")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    return count, fps, width, height


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of one image, read from its header via a full decode of that one file."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return 0, 0
    return int(image.shape[1]), int(image.shape[0])
