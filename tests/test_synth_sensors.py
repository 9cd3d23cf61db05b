"""Live synthetic sensors over real LSL outlets and ZeroMQ sockets (loopback)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import cv2
import numpy as np
import pylsl
import pytest

from mmer.sensors import SensorError, create_sensor
from mmer.sensors.synthetic import SyntheticCamera, SyntheticPhysio
from mmer.synth import SynthConfig, SyntheticLab
from mmer.transport import FrameSubscriber


@pytest.fixture(scope="module")
def lab(faces_dir):
    cfg = SynthConfig(me_per_min=30, mae_per_min=10)
    # Anchored when the first sensor starts (epoch=None), so a run plays the seed's first seconds,
    # which hold several MEs. With the default epoch (LSL clock 0) it played whichever 6 s the
    # clock pointed at, and now and then (1 of 33 runs here, and one CI run) no event and no marker.
    return SyntheticLab(face=faces_dir / "0-f1-su-ph.jpg", seed=4, config=cfg, size=(320, 240), segment=4.0,
                        epoch=None)


def _inlet(source_id: str) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, timeout=10)
    assert found, f"stream {source_id} not found among {[i.source_id() for i in pylsl.resolve_streams(2)]}"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(timeout=10)
    return inlet


def _pull_all(inlet: pylsl.StreamInlet, stop: threading.Event, out: list) -> None:
    while not stop.is_set():
        data, ts = inlet.pull_chunk(timeout=0.1)
        out.extend(zip(data, ts))


def test_camera_and_physio_stream_the_lab_with_truth(lab):
    sid = f"synthtest-{uuid.uuid4().hex[:8]}"
    cam = SyntheticCamera(lab=lab, width=320, height=240, source_id=sid, seconds=6.0, wait_for_consumers=15)
    phys = SyntheticPhysio(lab=lab, width=320, height=240, source_id=sid, seconds=6.0, channels=["eda", "ecg"],
                           wait_for_consumers=15)
    received = {"truth": [], "eda": [], "ecg": [], "rgb": []}
    stop = threading.Event()
    threads = []
    frames = []
    cam.start()
    phys.start()
    try:
        sub = FrameSubscriber(cam.specs[0].extra["zmq/endpoint"], streams=[cam.specs[0].name])
        for key in received:
            t = threading.Thread(target=_pull_all, args=(_inlet(f"{sid}-{key}"), stop, received[key]), daemon=True)
            t.start()
            threads.append(t)
        deadline = time.monotonic() + 30
        while (cam.running or phys.running) and time.monotonic() < deadline:
            f = sub.recv(0.1)
            if f is not None:
                frames.append(f)
        while (f := sub.recv(0.3)) is not None:
            frames.append(f)
        # LSL delivers every sample: wait until the inlets hold all the physiology that was pushed.
        while min(len(received["eda"]), len(received["ecg"])) < phys.health.samples and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(2)
        sub.close()
        cam.stop()
        phys.stop()
    assert cam.health.errors == 0 and phys.health.errors == 0, (cam.health, phys.health)
    assert cam.health.frames + cam.health.frames_dropped == 180
    assert cam.health.frames >= 150
    assert len(frames) >= 0.8 * cam.health.frames
    assert frames[0].data.shape == (240, 320, 3)
    # Pixels are the lab's own rendering of that frame index, stamped t0 + index / fps.
    k, pos = divmod(frames[5].index, lab.frames_per_segment)
    assert np.array_equal(frames[5].data, lab.segment(k).rgb(pos))
    assert np.allclose([f.timestamp for f in frames], [lab.t0 + f.index / 30.0 for f in frames], atol=1e-6)
    assert len(received["rgb"]) >= 0.8 * cam.health.frames
    # 6 s at 200 Hz per channel, pushed in irregular chunks, with nominal stamps.
    assert phys.health.samples == 1200
    eda_t = np.array([t for _, t in received["eda"]])
    assert len(eda_t) == 1200 and np.allclose(np.diff(eda_t), 1 / 200, atol=1e-6)
    first = int(round((eda_t[0] - lab.t0) * 200))
    seg, at = divmod(first, lab.samples_per_segment)
    eda = np.array([d[0] for d, _ in received["eda"]])
    assert np.allclose(eda[:10], lab.segment(seg).physio["eda"][at : at + 10])
    # Ground truth: one marker per onset/apex/offset, stamped with its frame's time.
    decoded = [(json.loads(d[0]), t) for d, t in received["truth"]]
    assert decoded, "no truth markers"
    for d, t in decoded:
        assert abs(t - (lab.t0 + d["frame"] / 30.0)) < 1e-6
        assert d["phase"] in ("onset", "apex", "offset") and d["onset"] <= d["frame"] <= d["offset"]
    shown = {f.index for f in frames} | {int(d[0]) for d, _ in received["rgb"]}
    segments = {i // lab.frames_per_segment for i in shown}
    expected = {e.onset for k in segments for e in lab.segment(k).events
                if e.kind.value != "blink" and e.onset in shown}
    assert expected and expected <= {d["onset"] for d, _ in decoded if d["phase"] == "onset"}


def test_registry_and_bad_options(tmp_path):
    with pytest.raises(ValueError, match="unknown physiology channel"):
        create_sensor("synthetic-physio", channels=["emg"])
    with pytest.raises(ValueError, match="seconds"):
        create_sensor("synthetic-camera", seconds=-1)
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 80, np.uint8))
    cam = create_sensor("synthetic-camera", face=str(blank))
    with pytest.raises(SensorError, match="no face"):
        cam.start()
    assert isinstance(create_sensor("synthetic-physio", seed=3), SyntheticPhysio)
    assert isinstance(create_sensor("synthetic-camera", seed=3), SyntheticCamera)


def test_separate_labs_agree_on_the_lsl_clock(faces_dir):
    """Two processes (two labs) with the same arguments play identical segments at the same LSL
    times, so a camera and an amplifier started separately share ground truth."""
    kw = dict(face=faces_dir / "0-f1-su-ph.jpg", seed=9, size=(160, 120), segment=3.0)
    a, b = SyntheticLab(**kw), SyntheticLab(**kw)
    assert a.t0 == b.t0 == 0.0
    k = a.position(30.0) // a.frames_per_segment
    sa, sb = a.segment(k), b.segment(k)
    assert sa.first_index == sb.first_index == k * a.frames_per_segment
    assert np.array_equal(sa.rgb(7), sb.rgb(7)) and np.array_equal(sa.physio["eda"], sb.physio["eda"])
    assert [e.onset for e in sa.events] == [e.onset for e in sb.events]


def test_physio_eda_level_glides_across_segment_boundaries(lab):
    """Each generator segment draws its own tonic EDA level; the sensor carries the level across
    the boundary (a fading offset) instead of stepping by microsiemens."""
    sid = f"synthtest-{uuid.uuid4().hex[:8]}"
    phys = SyntheticPhysio(lab=lab, source_id=sid, width=320, height=240, channels=["eda"], seconds=12.0,
                           realtime=False, wait_for_consumers=15)
    phys.start()
    got: list = []
    try:
        inlet = _inlet(f"{sid}-eda")
        deadline = time.monotonic() + 30
        while len(got) < 2400 and time.monotonic() < deadline:
            got.extend(inlet.pull_chunk(timeout=0.2)[0])
    finally:
        phys.stop()
    eda = np.array([d[0] for d in got])
    assert len(eda) == 2400  # segments 0, 1, 2 (4 s at 200 Hz each), from sample 0
    raw = [lab.segment(k).physio["eda"] for k in range(3)]
    assert np.allclose(eda[:800], raw[0], atol=1e-6)  # the first segment plays as generated
    within = np.abs(np.diff(np.concatenate(raw[:1]))).max()
    for b in (800, 1600):
        k = b // 800
        assert abs(raw[k][0] - raw[k - 1][-1]) > 0.3, "this lab's segments should differ in level"
        assert abs(eda[b] - eda[b - 1]) < 2 * within, (b, eda[b - 3 : b + 3])
        # What is added fades away monotonically: the new segment's own level takes over.
        added = eda[b : b + 800] - raw[k]
        assert np.all(np.abs(np.diff(np.abs(added))) < 2e-3) and abs(added[-1]) < abs(added[0])
