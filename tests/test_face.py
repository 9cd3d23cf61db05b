"""Face tracking on the real mediapipe mesh: real photographs and video, and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mmer.features import FaceTracker, align_face, alignment_matrix, eye_aspect_ratio, face_rois
from mmer.features.face import ALIGN_LANDMARKS


@pytest.fixture(scope="module")
def photo(faces_dir):
    image = cv2.imread(str(faces_dir / "single_face.jpg"))
    assert image is not None
    return image


def _canvas(photo: np.ndarray, face_px: int, *, width: int = 640, height: int = 480, x: int = 200, y: int = 120):
    canvas = np.full((height, width, 3), 110, np.uint8)
    small = cv2.resize(photo, (face_px, face_px), interpolation=cv2.INTER_AREA)
    canvas[y : y + face_px, x : x + face_px] = small
    return canvas


def test_landmarks_alignment_and_rois_on_a_real_photo(photo):
    with FaceTracker() as tracker:
        result = tracker.process(photo)
    assert result.found and result.source == "mesh"
    assert result.landmarks.shape == (468, 2)
    x0, y0, x1, y1 = result.box
    assert 0 <= x0 < x1 <= photo.shape[1] and 0 <= y0 < y1 <= photo.shape[0]
    for size in (128, 224):
        crop, matrix = align_face(photo, result.landmarks, size=size)
        assert crop.shape == (size, size, 3)
        pts = cv2.transform(result.landmarks[None].astype(np.float64), matrix)[0]
        # The eyes land level and symmetric about the centre line.
        left, right = pts[33], pts[263]
        assert abs(left[1] - right[1]) < 0.03 * size
        assert abs((left[0] + right[0]) / 2 - size / 2) < 0.04 * size
        boxes = face_rois(pts, shape=(size, size))
        assert {"brow_inner_l", "mouth_corner_r", "chin", "nose_bridge"} <= set(boxes)
        assert all(0 <= b[0] < b[2] <= size and 0 <= b[1] < b[3] <= size for b in boxes.values())
    assert 0.15 < eye_aspect_ratio(result.landmarks) < 0.45


def test_alignment_undoes_a_similarity_transform(photo):
    with FaceTracker() as tracker:
        lm = tracker.process(photo).landmarks.astype(np.float64)
    angle, scale = np.deg2rad(12.0), 0.8
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = lm @ rot.T + [30.0, -12.0]
    a = cv2.transform(lm[None], alignment_matrix(lm, size=128))[0]
    b = cv2.transform(moved[None], alignment_matrix(moved, size=128))[0]
    assert np.abs(a[list(ALIGN_LANDMARKS)] - b[list(ALIGN_LANDMARKS)]).max() < 1e-6


def test_real_video_tracks_every_frame(shared_data):
    cap = cv2.VideoCapture(str(shared_data / "video" / "single_face.mp4"))
    with FaceTracker() as tracker:
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            result = tracker.process(frame, frame_index=n)
            assert result.found, f"no landmarks in frame {n}"
            n += 1
        cap.release()
        assert n > 30
        assert tracker.stats.with_landmarks == n
        assert tracker.lost_intervals() == []


def test_grey_and_dark_frames_are_converted_and_counted(photo):
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    dark = (photo.astype(np.float32) * 0.08).astype(np.uint8)
    with FaceTracker() as tracker:
        r_grey = tracker.process(grey)
        r_dark = tracker.process(dark)
        assert r_grey.found and r_grey.grey
        assert r_dark.found and r_dark.dark
        assert tracker.stats.grey == 1 and tracker.stats.dark == 1


def test_no_face_then_face_leaves_and_returns(photo):
    blank = np.random.default_rng(0).integers(90, 110, photo.shape, dtype=np.uint8)
    frames = [photo] * 3 + [blank] * 4 + [photo] * 3
    with FaceTracker() as tracker:
        results = [tracker.process(f, frame_index=100 + i) for i, f in enumerate(frames)]
        assert [r.found for r in results] == [True] * 3 + [False] * 4 + [True] * 3
        assert tracker.lost_intervals() == [(103, 106)]
        assert tracker.stats.no_face == 4
    with FaceTracker() as tracker:
        for i in range(3):
            assert tracker.process(blank, frame_index=i).source == "none"
        assert tracker.lost_intervals() == [(0, 2)]  # still open at the end: reported to the last frame


def test_several_faces_takes_the_largest_then_keeps_the_tracked_one(photo):
    canvas = np.full((480, 900, 3), 110, np.uint8)
    canvas[100:300, 40:240] = cv2.resize(photo, (200, 200), interpolation=cv2.INTER_AREA)
    canvas[40:460, 420:840] = cv2.resize(photo, (420, 420), interpolation=cv2.INTER_AREA)
    with FaceTracker() as tracker:
        first = tracker.process(canvas)
        assert first.found and first.n_faces == 2
        assert tracker.stats.several_faces == 1
        assert first.box[0] > 400  # the big face on the right
        second = tracker.process(canvas)
        assert second.found and second.box[0] > 400


def test_tiny_face_is_found_or_counted_never_a_crash(photo):
    frame = _canvas(photo, 90)
    with FaceTracker() as tracker:
        results = [tracker.process(frame) for _ in range(3)]
        assert all(r.box is not None for r in results)
        assert all(r.tiny for r in results)
        assert tracker.stats.tiny == 3


def test_bad_frames_are_rejected_clearly():
    with FaceTracker() as tracker:
        with pytest.raises(ValueError, match="uint8"):
            tracker.process(np.zeros((48, 64), np.uint16))
        with pytest.raises(ValueError, match="shape"):
            tracker.process(np.zeros((48, 64, 2), np.uint8))
    with pytest.raises(ValueError, match="crop_size"):
        FaceTracker(crop_size=16)
