"""Sensor adapters: real video files through OpenCV, real LSL device streams, the registry and CLI.

Hardware that cannot exist here (a webcam, a RealSense) is exercised through its error paths;
the RealSense frame path runs against a small stand-in for the ``pyrealsense2`` module.
"""

from __future__ import annotations

import json
import sys
import time
import types
import uuid
from pathlib import Path

import cv2
import numpy as np
import pylsl
import pytest

from mmer import clock as mmer_clock
from mmer.cli import main
from mmer.clock import local_clock, wall_to_lsl_offset
from mmer.fusion import AlignmentBuffer
from mmer.sensors import SensorError, create_sensor, get_adapter, list_adapters
from mmer.sensors.camera import CameraSensor
from mmer.sensors.lsl_inlet import LSLPhysioInlet, map_channels
from mmer.sensors.realsense import RealSenseSensor
from mmer.streams import StreamType


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _write_video(path: Path, n: int = 12, fps: float = 30.0) -> list[np.ndarray]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    frames = []
    for i in range(n):
        frame = np.full((48, 64, 3), 10 * i, np.uint8)
        writer.write(frame)
        frames.append(frame)
    writer.release()
    return frames


def test_camera_file_frames_reach_the_buffer_with_file_indices(tmp_path):
    path = tmp_path / "clip.avi"
    _write_video(path, n=12)
    cam = CameraSensor(source=str(path), realtime=True, name=_uid("cam"), source_id=_uid("cam"),
                       wait_for_consumers=10)
    with AlignmentBuffer(seconds=10, stall_timeout=1.0) as buf:
        cam.start()
        try:
            assert cam.specs[0].extra["video/width"] == "64"
            keys = buf.connect(source_ids=[cam.source_id], timeout=5)
            assert cam.wait(10)
        finally:
            cam.stop()
        stats = buf.stats()["streams"][keys[0]]
        win = buf.window(0, local_clock() + 100, timeout=0)
    assert cam.health.frames == 12 and cam.health.frames_dropped == 0
    fw = win.frames[keys[0]]
    assert list(fw.indices) == list(range(12)) and stats["announced"] == 12
    assert np.allclose(np.diff(fw.raw_timestamps), 1 / 30, atol=2e-3)  # paced at the file's rate
    assert all(abs(int(f[24, 32, 0]) - 10 * i) <= 3 for f, i in zip(fw.frames, fw.indices))  # MJPG is lossy


def test_camera_reads_the_shared_real_video(shared_data):
    cam = CameraSensor(source=str(shared_data / "video" / "single_face.mp4"), realtime=False,
                       name=_uid("cam"), source_id=_uid("cam"))
    with cam:
        assert cam.wait(20)
    assert cam.health.frames == 72 and cam.health.errors == 0


def test_camera_that_cannot_open_says_why(tmp_path):
    with pytest.raises(SensorError, match="video file not found"):
        CameraSensor(source=str(tmp_path / "missing.mp4")).start()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(SensorError, match="cannot open video file"):
        CameraSensor(source=str(junk)).start()
    with pytest.raises(SensorError, match="cannot open device 97"):
        CameraSensor(source="97").start()  # no webcam on this machine


def test_realsense_without_the_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # import fails like an absent extra
    with pytest.raises(SensorError, match=r"pyrealsense2 is not installed.*mmer\[realsense\]"):
        RealSenseSensor().start()
    row = next(r for r in list_adapters() if r["name"] == "realsense")
    assert row["target"].endswith("RealSenseSensor")


def _fake_rs(devices: int):
    """Stand-in for pyrealsense2 with ``devices`` cameras that deliver 2 framesets."""
    rs = types.SimpleNamespace()
    rs.camera_info = types.SimpleNamespace(serial_number="sn", name="name")
    rs.stream = types.SimpleNamespace(color="color", depth="depth")
    rs.format = types.SimpleNamespace(bgr8="bgr8", z16="z16")
    rs.timestamp_domain = types.SimpleNamespace(global_time="global", system_time="system")

    class Device:
        def get_info(self, what):
            return {"sn": "123", "name": "Intel RealSense D435"}[what]

        def first_depth_sensor(self):
            return types.SimpleNamespace(get_depth_scale=lambda: 0.0001)  # 0.1 mm units

    class Frame:
        def __init__(self, data, number):
            # device capture time: 20 ms before delivery, frame numbers 33 ms apart as at 30 fps
            self.data, self.number = data, number
            self.ts = time.time() * 1000.0 - 20.0 - (8 - number) * 1000.0 / 30.0

        def __bool__(self):
            return True

        def get_data(self):
            return self.data

        def get_frame_number(self):
            return self.number

        def get_timestamp(self):
            return self.ts

        def get_frame_timestamp_domain(self):
            return "global"

    class FrameSet:
        def __init__(self, number):
            self.color = Frame(np.full((4, 6, 3), number, np.uint8), number)
            self.depth = Frame(np.full((4, 6), 10000, np.uint16), number)

        def get_color_frame(self):
            return self.color

        def get_depth_frame(self):
            return self.depth

    class Pipeline:
        numbers = [5, 6, 8]

        def start(self, cfg):
            intr = types.SimpleNamespace(fx=600.0, fy=601.0, ppx=3.0, ppy=2.0, model="brown_conrady",
                                         coeffs=[0.0] * 5)
            stream = types.SimpleNamespace(as_video_stream_profile=lambda: types.SimpleNamespace(
                get_intrinsics=lambda: intr))
            return types.SimpleNamespace(get_device=Device, get_stream=lambda s: stream)

        def wait_for_frames(self, timeout_ms):
            if not self.numbers:
                time.sleep(timeout_ms / 1000.0 / 50)
                raise RuntimeError("Frame didn't arrive within 1000")
            return FrameSet(self.numbers.pop(0))

        def stop(self):
            pass

    rs.context = lambda: types.SimpleNamespace(query_devices=lambda: [Device()] * devices)
    rs.config = lambda: types.SimpleNamespace(enable_device=lambda s: None, enable_stream=lambda *a: None)
    rs.pipeline = Pipeline
    rs.align = lambda to: types.SimpleNamespace(process=lambda fs: fs)
    return rs


def test_realsense_without_a_device_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", _fake_rs(devices=0))
    with pytest.raises(SensorError, match="no RealSense device"):
        RealSenseSensor().start()
    monkeypatch.setitem(sys.modules, "pyrealsense2", _fake_rs(devices=1))
    with pytest.raises(SensorError, match="'999' not found"):
        RealSenseSensor(serial="999").start()


def test_wall_to_lsl_offset_keeps_the_tightest_bracket(monkeypatch):
    # first try preempted for 20 ms between the LSL reads, second one tight
    lsl_reads, wall_reads = iter([0.0, 0.020, 0.030, 0.0301]), iter([100.0, 100.030])
    monkeypatch.setattr(mmer_clock, "pylsl", types.SimpleNamespace(local_clock=lambda: next(lsl_reads)))
    monkeypatch.setattr(mmer_clock, "time", types.SimpleNamespace(time=lambda: next(wall_reads)))
    assert mmer_clock.wall_to_lsl_offset(tries=2) == pytest.approx(0.03005 - 100.030, abs=1e-9)


def test_wall_to_lsl_offset_maps_now_onto_the_lsl_clock():
    offset = wall_to_lsl_offset()
    assert abs(time.time() + offset - local_clock()) < 0.05


def test_realsense_frame_path_publishes_rgb_depth_and_intrinsics(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", _fake_rs(devices=1))
    sensor = RealSenseSensor(width=6, height=4, fps=30, name_prefix=_uid("rs"))
    with AlignmentBuffer(seconds=10, stall_timeout=0.5) as buf:
        sensor._open()  # open first so the buffer is subscribed before the first frameset
        rgb_spec, depth_spec = sensor.specs
        assert rgb_spec.extra["intrinsics/fx"] == "600.000000"
        assert depth_spec.type is StreamType.VIDEO_DEPTH
        assert rgb_spec.extra["zmq/endpoint"] == depth_spec.extra["zmq/endpoint"]
        keys = buf.connect(source_ids=[rgb_spec.source_id, depth_spec.source_id], timeout=5)
        assert sensor._publisher.wait_for_subscribers(5, stream=depth_spec.name)
        sensor._stop.clear()
        thread = __import__("threading").Thread(target=sensor._run)
        thread.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and min(v["received"] for v in buf.stats()["streams"].values()) < 3:
            time.sleep(0.02)
        win = buf.window(local_clock() - 5, local_clock() + 5, timeout=0)
        sensor._stop.set()
        thread.join(5)
        sensor._close()
    assert set(win.missing.values()) <= {"stalled", "timeout"}  # three framesets, then silence
    depth = win.frames[keys[1]] if win.frames[keys[1]].stype == "VideoDepth" else win.frames[keys[0]]
    assert list(depth.indices) == [5, 6, 8]
    assert int(depth.frames[0][0, 0]) == 1000  # 10000 units x 0.1 mm -> millimetres
    assert sensor.health.frames == 3 and sensor.health.frames_dropped == 1
    assert np.all(local_clock() - depth.raw_timestamps > 0.015)  # device time, not arrival time


def test_map_channels_by_label_type_and_config():
    labels = ["GSR_CAL", "ECG LL-RA", "Resp belt", "Pleth", "Accel X"]
    got = map_channels(labels)
    assert got == {StreamType.EDA: 0, StreamType.ECG: 1, StreamType.PPG: 3, StreamType.RSP: 2}
    assert map_channels(["a", "b"], types=["", "EDA"]) == {StreamType.EDA: 1}
    assert map_channels(["x"], stream_type="ecg") == {StreamType.ECG: 0}
    assert map_channels(labels, mapping={"eda": "Accel X", "ECG": 1}) == {StreamType.EDA: 4, StreamType.ECG: 1}
    with pytest.raises(SensorError, match="no channel labelled 'nope'"):
        map_channels(labels, mapping={"EDA": "nope"})
    with pytest.raises(SensorError, match="index 9"):
        map_channels(labels, mapping={"EDA": 9})
    with pytest.raises(SensorError, match="not one of"):
        map_channels(labels, mapping={"EMG": 0})
    with pytest.raises(SensorError, match="no channel looks like"):
        map_channels(["Accel X", "Accel Y"])


def test_lsl_physio_inlet_republishes_a_device_stream():
    dev_sid = _uid("biopac")
    info = pylsl.StreamInfo(_uid("BIOPAC"), "Physio", 3, 100, pylsl.cf_float32, dev_sid)
    chans = info.desc().append_child("channels")
    for label in ("GSR100C", "ECG100C", "RSP100C"):
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "uS" if label.startswith("GSR") else "mV")
    device = pylsl.StreamOutlet(info)
    prefix = _uid("lab")
    adapter = LSLPhysioInlet(source_id=dev_sid, prefix=prefix, mapping={"EDA": "GSR100C"},
                             timeout=5)
    with pytest.raises(SensorError, match="no LSL stream"):
        LSLPhysioInlet(source_id=_uid("absent"), timeout=0.2).start()
    adapter.start()
    try:
        names = sorted(s.name for s in adapter.specs)
        assert names == [f"{prefix}.eda"]  # explicit mapping wins over guessing
        eda_spec = adapter.specs[0]
        assert eda_spec.channels[0].unit == "microsiemens" and eda_spec.rate == 100
        with AlignmentBuffer(seconds=10) as buf:
            (key,) = buf.connect(source_ids=[eda_spec.source_id], timeout=5)
            assert device.wait_for_consumers(5)
            t0 = local_clock()
            data = np.column_stack([np.arange(50), -np.arange(50), np.zeros(50)]).astype(np.float32)
            data[7, 0] = np.nan
            stamps = t0 - 0.5 + np.arange(50) / 100.0
            device.push_chunk(data, stamps)
            win = buf.window(t0 - 0.51, t0 - 0.009, timeout=5)
        sig = win.signals[key]
        assert len(sig) == 50
        np.testing.assert_allclose(sig.timestamps, stamps, atol=1e-3)  # device clock = this clock here
        np.testing.assert_array_equal(np.isnan(sig.data[:, 0]), np.isnan(data[:, 0]))
        np.testing.assert_allclose(sig.data[~np.isnan(sig.data[:, 0]), 0], data[~np.isnan(data[:, 0]), 0])
        assert adapter.health.nans == 1 and adapter.health.samples == 50
    finally:
        adapter.stop()
        del device


def _device(unit: str) -> tuple[pylsl.StreamOutlet, str]:
    """A Shimmer-like device stream: one GSR channel in ``unit`` and a PPG channel."""
    sid = _uid("shimmer")
    info = pylsl.StreamInfo(_uid("Shimmer"), "Physio", 2, 100, pylsl.cf_float32, sid)
    chans = info.desc().append_child("channels")
    for label, u in (("GSR_Skin_Resistance_CAL", unit), ("PPG_A13_CAL", "mV")):
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", u)
    return pylsl.StreamOutlet(info), sid


def test_lsl_physio_inlet_converts_skin_resistance_to_conductance():
    device, sid = _device("kOhm")
    prefix = _uid("shim")
    adapter = LSLPhysioInlet(source_id=sid, prefix=prefix, mapping={"EDA": 0, "PPG": 1}, timeout=5)
    adapter.start()
    try:
        eda = next(s for s in adapter.specs if s.type is StreamType.EDA)
        ppg = next(s for s in adapter.specs if s.type is StreamType.PPG)
        assert eda.channels[0].unit == "microsiemens" and ppg.channels[0].unit == "mV"
        with AlignmentBuffer(seconds=10) as buf:
            (key,) = buf.connect(source_ids=[eda.source_id], timeout=5)
            assert device.wait_for_consumers(5)
            t0 = local_clock()
            kohm = np.array([500.0, 250.0, 100.0, 0.0] * 5, dtype=np.float32)
            data = np.column_stack([kohm, np.ones(20)]).astype(np.float32)
            device.push_chunk(data, t0 - 0.5 + np.arange(20) / 100.0)
            win = buf.window(t0 - 0.51, t0 - 0.309, timeout=5)
        got = win.signals[key].data[:, 0]
        # 500 kOhm is 2 uS; falling resistance is rising conductance; 0 Ohm has none (NaN, counted).
        np.testing.assert_allclose(got[:3], [2.0, 4.0, 10.0], rtol=1e-6)
        assert np.isnan(got[3]) and adapter.health.nans == 5
    finally:
        adapter.stop()
        del device


def test_lsl_physio_inlet_refuses_a_unit_it_cannot_convert():
    device, sid = _device("furlongs")
    try:
        with pytest.raises(SensorError, match="EDA channel in unit 'furlongs'.*known units: .*kohm"):
            LSLPhysioInlet(source_id=sid, mapping={"EDA": 0}, timeout=5).start()
        with pytest.raises(SensorError, match="'parsecs'"):
            LSLPhysioInlet(source_id=sid, units={"EDA": "parsecs"})
        # Declaring the unit the device leaves wrong or empty makes it usable.
        adapter = LSLPhysioInlet(source_id=sid, prefix=_uid("decl"), mapping={"EDA": 0}, units={"EDA": "uS"}, timeout=5)
        adapter.start()
        assert adapter.specs[0].channels[0].unit == "microsiemens"
        adapter.stop()
    finally:
        del device


def test_registry():
    assert get_adapter("camera") is CameraSensor
    with pytest.raises(ValueError, match="unknown sensor adapter 'webcam'"):
        get_adapter("webcam")
    with pytest.raises(ValueError, match="does not take \\['bogus'\\]"):
        create_sensor("camera", bogus=1)
    rows = {r["name"]: r for r in list_adapters()}
    assert {"camera", "realsense", "lsl-physio", "synthetic-physio", "synthetic-camera"} <= set(rows)
    assert rows["synthetic-physio"]["available"] and rows["synthetic-camera"]["available"]  # lazy import works


def test_cli_sensors_list_and_stream(shared_data, capsys):
    from mmer.streams import physio_spec
    from mmer.transport import SampleOutlet

    visible = SampleOutlet(physio_spec("PPG", name=_uid("list.ppg"), source_id=_uid("list-ppg")))
    assert main(["sensors", "list", "--timeout", "1.0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {a["name"] for a in out["adapters"]} >= {"camera", "lsl-physio"}
    row = next(s for s in out["streams"] if s["source_id"] == visible.spec.source_id)
    assert row["type"] == "PPG" and row["rate"] == 200 and row["channels"] == 1
    visible.close()
    video = str(shared_data / "video" / "single_face.mp4")
    assert main(["stream", "camera", "--source", video, "--fast", "--seconds", "20",
                 "--source-id", _uid("cli"), "--name", _uid("cli"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["health"]["frames"] == 72
    assert main(["stream", "camera", "--source", "96"]) == 1
    assert "cannot open device 96" in capsys.readouterr().err
    assert main(["stream", "camera", "--set", "bogus"]) == 2


def test_mmer_stream_stops_cleanly_on_ctrl_c(shared_data):
    import signal
    import subprocess

    video = str(shared_data / "video" / "single_face.mp4")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmer", "stream", "camera", "--source", video, "--loop", "--json",
         "--source-id", _uid("sigint"), "--session-id", _uid("sess")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "publishing" not in line:
            line = proc.stderr.readline()
        assert "publishing mmer.rgb" in line
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopping (interrupted)" in err
    health = json.loads(out.strip().splitlines()[-1])["health"]
    assert health["frames"] > 10 and health["errors"] == 0, (health, err[-3000:])


class _FakeWebcam:
    """Stand-in for a UVC webcam (none exists here): 30 fps, one 0.1 s stall, then it goes dark."""

    opened = 0

    def __init__(self, source):
        type(self).opened += 1
        self.n = 0
        self.dark = type(self).opened == 1  # the first instance dies after 20 frames; a reopen heals it

    def isOpened(self):
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FRAME_WIDTH: 32, cv2.CAP_PROP_FRAME_HEIGHT: 24, cv2.CAP_PROP_FPS: 30.0}.get(prop, 0)

    def set(self, prop, value):
        return True

    def getBackendName(self):
        return "FAKE"

    def grab(self):
        if self.dark and self.n >= 20:
            time.sleep(0.001)
            return False
        time.sleep(1 / 30 + (0.1 if self.n == 10 else 0.0))
        self.n += 1
        return True

    def retrieve(self):
        return True, np.full((24, 32, 3), self.n % 256, np.uint8)

    def release(self):
        pass


def test_camera_device_loop_counts_drops_and_reopens(monkeypatch):
    _FakeWebcam.opened = 0
    monkeypatch.setattr("mmer.sensors.camera.cv2.VideoCapture", _FakeWebcam)
    cam = CameraSensor(source=0, name=_uid("dev"), source_id=_uid("dev"))
    with cam:
        assert cam.specs[0].extra["video/backend"] == "FAKE"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and cam.health.frames < 30:
            time.sleep(0.05)
    health = cam.health
    assert health.frames >= 30
    assert health.reconnects == 1 and _FakeWebcam.opened == 2
    # The 0.1 s stall leaves a 4-period interval (3 frames dropped); the reopen (30 failed grabs,
    # then 1 s) leaves at least 1.5 s without frames, about 45 periods, all counted as dropped.
    assert 3 + 40 <= health.frames_dropped <= 3 + 120, health
