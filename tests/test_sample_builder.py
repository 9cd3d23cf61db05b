"""Multimodal samples from plain arrays, from a synthetic Recording, and from flow images."""

import cv2
import numpy as np
import pytest

from mmer.dataset import EventKind
from mmer.features.face import FaceTracker
from mmer.features.sample import (
    ROI_NAMES,
    SampleConfig,
    build_sample,
    sample_from_flow_image,
    sample_from_recording,
)

CFG = SampleConfig(image_size=32, flow_size=64, flow_method="dis", n_frames=3)


@pytest.fixture(scope="module")
def face_frames(faces_dir):
    img = cv2.imread(str(faces_dir / "0-f1-su-ph.jpg"))
    img = cv2.resize(img, (480, 480))
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # lift the mouth corners by up to 3 px (an AU12-like local warp)
    bump = np.exp(-((xx - 0.5 * w) ** 2 / (2 * 60**2) + (yy - 0.68 * h) ** 2 / (2 * 25**2)))
    apex = cv2.remap(img, xx, yy + 3.0 * bump, cv2.INTER_LINEAR)
    return [img, img, apex]


@pytest.fixture(scope="module")
def tracker():
    t = FaceTracker()
    yield t
    t.close()


def test_video_sample_sees_the_motion(face_frames, tracker):
    s = build_sample(config=CFG, frames=face_frames, tracker=tracker)
    assert s.mask.tolist() == [1.0, 0.0, 0.0] and s.info["video"] == "ok"
    a = s.arrays
    assert a["frames"].shape == (3, 32, 32) and a["flow"].shape == (3, 32, 32)
    assert a["roi"].shape == (len(ROI_NAMES), 3, CFG.roi_size, CFG.roi_size)
    # motion is in the lower face (mouth), not in the brows
    v = a["flow"][1]
    assert np.abs(v[18:28]).mean() > 3 * np.abs(v[2:10]).mean()
    assert not a["depth"].any() and not a["physio"].any()  # absent modalities are zero-filled


def test_no_motion_gives_flat_flow(face_frames, tracker):
    s = build_sample(config=CFG, frames=[face_frames[0], face_frames[0]], tracker=tracker)
    assert np.abs(s.arrays["flow"][:2]).max() < 0.05


def test_missing_face_masks_video_but_keeps_depth(tracker):
    blank = np.full((240, 320, 3), 128, np.uint8)
    d0 = np.full((240, 320), 600, np.uint16)
    d1 = d0.copy()
    d1[100:140, 140:180] += 3
    d0[:10] = 0  # holes are filled, not propagated
    s = build_sample(config=CFG, frames=[blank, blank], depth=(d0, d1), tracker=tracker)
    assert s.mask.tolist() == [0.0, 1.0, 0.0]
    assert "no face" in s.info["video"] and s.info["depth"].startswith("ok")
    assert s.arrays["depth"][0].max() > 0.5


def test_physio_without_rate_is_an_error():
    with pytest.raises(ValueError, match="physio_rate"):
        build_sample(config=CFG, physio={"eda": np.ones(1600)})


@pytest.mark.slow
def test_sample_from_synthetic_recording(faces_dir, tracker):
    from mmer.synth import generate_session

    session = generate_session(str(faces_dir / "0-f15-hao-ph.jpg"), seconds=10, seed=3, min_me=1)
    rec = session.to_recording()
    me = [e for e in rec.events if e.kind is EventKind.ME]
    assert me
    s = sample_from_recording(rec, me[0], config=CFG, tracker=tracker)
    assert s.mask.tolist() == [1.0, 1.0, 1.0], s.info
    assert np.isfinite(s.arrays["physio"]).all() and s.arrays["physio_feats"].any()
    video_only = sample_from_recording(rec, me[0], config=CFG, modalities=("video",), tracker=tracker)
    assert video_only.mask.tolist() == [1.0, 0.0, 0.0]
    # the same flow up to landmark jitter of the tracker between the two calls
    r = np.corrcoef(video_only.arrays["flow"][:2].ravel(), s.arrays["flow"][:2].ravel())[0, 1]
    assert r > 0.8


def test_flow_image_sample():
    img = np.zeros((28, 28, 3), np.uint8)
    img[:, :, 0] = 255
    s = sample_from_flow_image(img, config=CFG)
    assert s.mask.tolist() == [1.0, 0.0, 0.0]
    assert np.allclose(s.arrays["flow"][0], 1.0) and np.allclose(s.arrays["flow"][1], -1.0)
    assert np.allclose(sample_from_flow_image(img.astype(np.float32) / 255.0, config=CFG).arrays["flow"], s.arrays["flow"])
    with pytest.raises(ValueError, match="HxWx3"):
        sample_from_flow_image(np.zeros((28, 28), np.uint8), config=CFG)


def test_sample_from_alignment_window(faces_dir, tracker):
    """The live path: frames and physiology as the alignment buffer hands them over."""
    from mmer.features.sample import sample_from_window
    from mmer.fusion.windows import FrameWindow, SignalWindow, Window
    from mmer.synth import generate_session

    session = generate_session(str(faces_dir / "0-f15-hao-ph.jpg"), seconds=10, seed=3, min_me=1)
    rec = session.to_recording()
    ev = next(e for e in rec.events if e.kind is EventKind.ME)
    rgb = rec.frames["rgb"]
    base = 1000.0  # an LSL clock that does not start at zero
    p0, p1 = int(np.searchsorted(rgb.indices, ev.onset)), int(np.searchsorted(rgb.indices, ev.apex))
    pos = range(max(p0 - 3, 0), min(p1 + 3, len(rgb)))
    ts = base + rgb.timestamps[list(pos)]
    frames = FrameWindow([rgb.read(p) for p in pos], ts, ts, rgb.indices[list(pos)], "VideoRGB")
    t_on, t_apex = base + float(rgb.timestamps[p0]), base + float(rgb.timestamps[p1])
    signals = {}
    for name, kind in (("eda", "EDA"), ("ecg", "ECG"), ("ppg", "PPG"), ("rsp", "RSP")):
        tr = rec.samples[name]
        t = base + np.asarray(tr.timestamps)
        keep = (t >= t_on - 2.5) & (t <= t_on + 6.5)
        data = np.asarray(tr.data, dtype=float)[keep]
        signals[name] = SignalWindow(data, t[keep], t[keep], [name], 200.0, stype=kind)
    win = Window(t_on - 2.5, t_on + 6.5, frames={"rgb": frames}, signals=signals)
    live = sample_from_window(win, t_onset=t_on, t_apex=t_apex, config=CFG, tracker=tracker)
    assert live.mask.tolist() == [1.0, 0.0, 1.0], live.info
    offline = sample_from_recording(rec, ev, config=CFG, modalities=("video", "physio"), tracker=tracker)
    assert np.allclose(live.arrays["physio_feats"], offline.arrays["physio_feats"], atol=0.05)
    early = sample_from_window(win, t_onset=t_on, t_apex=t_apex, config=CFG, tracker=tracker, modalities=("video",))
    assert early.mask.tolist() == [1.0, 0.0, 0.0]

    # Depth pairs with RGB by frame index: a depth stream dejittered 20 ms away (more than half a
    # frame) must still give the onset and apex frames' depth, as it does in a live run's replay.
    depth = rec.frames["depth"]
    dframes = [depth.read(p) for p in pos]
    got = []
    for shift in (0.0, 0.02):
        dwin = FrameWindow(dframes, ts + shift, ts + shift, depth.indices[list(pos)], "VideoDepth")
        both = Window(t_on - 2.5, t_on + 6.5, frames={"rgb": frames, "depth": dwin}, signals={})
        got.append(sample_from_window(both, t_onset=t_on, t_apex=t_apex, config=CFG, tracker=tracker,
                                      modalities=("depth",)))
    assert got[0].mask.tolist() == [0.0, 1.0, 0.0], got[0].info
    assert np.array_equal(got[0].arrays["depth"], got[1].arrays["depth"])


def test_depth_difference_fills_holes_on_the_crop_and_removes_the_head_offset():
    from mmer.features.depth import depth_difference

    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w]
    onset = np.full((h, w), 600, np.uint16)
    # the apex moves the whole head 5 mm back and lifts a patch 2 mm towards the camera
    apex = onset + 5
    patch = (np.abs(yy - 120) < 20) & (np.abs(xx - 160) < 20)
    apex[patch] -= 2
    onset[::7, ::5] = 0  # sensor holes
    apex[3::11, 2::9] = 0
    matrix = np.array([[0.2, 0.0, -16.0], [0.0, 0.2, -8.0]])  # crop the middle 160 x 160 px to 32 x 32
    out = depth_difference(onset, apex, matrix=matrix, size=32)
    diff = out["maps"][0] * 10.0 / 4.0  # back to millimetres
    assert np.isfinite(out["maps"]).all() and out["maps"].shape == (2, 32, 32)
    assert 0.0 < out["holes"] < 0.1
    centre = diff[13:19, 13:19]
    assert np.allclose(centre, -2.0) and np.allclose(diff[:4, :4], 0.0)  # offset gone, holes do not show
    whole = depth_difference(onset, apex, matrix=None, size=32)
    assert np.isfinite(whole["maps"]).all()
    with pytest.raises(ValueError, match="no valid pixel"):
        depth_difference(np.zeros((h, w), np.uint16), apex, matrix=matrix, size=32)
