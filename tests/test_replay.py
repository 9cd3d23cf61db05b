"""End-to-end replay through real LSL outlets/inlets and real ZeroMQ sockets."""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pylsl
import pytest

from mmer.dataset import Event, FrameError, FrameTrack, Recording, SampleTrack
from mmer.replay import LockstepClient, Player, ReplayConsumer, TRUTH_STREAM
from mmer.replay.player import bounded_times
from mmer.streams import StreamType, markers_spec, physio_spec, video_spec
from mmer.transport import FrameSubscriber

def _recording(*, n_frames: int = 15, damaged: int | None = None, jump: bool = False, seed: int = 0) -> Recording:
    """A small synthetic recording: RGB + depth at 30 fps, EDA + ECG at 200 Hz, one marker, one ME."""
    rng = np.random.default_rng(seed)
    rgb = [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(n_frames)]
    depth = [rng.integers(0, 4000, (24, 32), dtype=np.uint16) for _ in range(n_frames)]
    idx = np.arange(1, n_frames + 1, dtype=np.int64)
    t = (idx - 1) / 30.0

    def reader(frames):
        def read(pos):
            if pos == damaged:
                raise FrameError(f"frame {pos} damaged")
            return frames[pos]
        return read

    n = int(n_frames / 30 * 200)
    ts = np.arange(n) / 200.0
    if jump:
        ts[n // 2:] += 500.0  # a clock jump of 500 s inside the recording
    rec = Recording(subject="s1", video="a")
    rec.frames["rgb"] = FrameTrack(video_spec(StreamType.VIDEO_RGB, width=32, height=24, fps=30, endpoint=""), idx, t, reader(rgb))
    rec.frames["depth"] = FrameTrack(video_spec(StreamType.VIDEO_DEPTH, width=32, height=24, fps=30, endpoint=""), idx, t, reader(depth))
    rec.samples["eda"] = SampleTrack(physio_spec("EDA"), ts, rng.normal(size=(n, 1)).astype(np.float32))
    rec.samples["ecg"] = SampleTrack(physio_spec("ECG"), ts, rng.normal(size=(n, 1)).astype(np.float32))
    rec.samples["events"] = SampleTrack(markers_spec("mmer.stim"), np.array([0.1]), ["stimulus"])
    rec.events.append(Event(subject="s1", video="a", onset=3, apex=5, offset=9, emotion="happy", objective_class="I"))
    rec.meta.update(fps=30.0, first_index=1)
    rec.frames["rgb"].frames = rgb  # kept for the comparisons below
    rec.frames["depth"].frames = depth
    return rec


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:6]}."


def test_bounded_times_keeps_order_and_bounds_gaps():
    times = np.array([0.0, 0.1, 0.2, 500.0, 500.1, 499.0, 499.1])
    out, changed = bounded_times(times, rate=10.0, max_gap=1.0)
    assert changed == 2
    assert np.all(np.diff(out) >= 0) and out[-1] < 1.0
    same, none = bounded_times(np.arange(5) / 10, rate=10, max_gap=1.0)
    assert none == 0 and np.array_equal(same, np.arange(5) / 10)


def test_lockstep_replay_delivers_identical_samples_and_frames():
    rec = _recording()
    prefix = _prefix()
    player = Player([rec], lockstep=True, truth_markers=True, prefix=prefix, consumer_timeout=30)
    names = [prefix + n for n in ("mmer.rgb", "mmer.depth", "mmer.eda", "mmer.ecg", "mmer.stim", TRUTH_STREAM)]
    got: dict = {"frames": {}, "samples": {}, "markers": {}, "steps": []}

    def consume():
        with ReplayConsumer(names, timeout=20) as consumer:
            def keep(r):
                previous = got["steps"][-1].until if got["steps"] else -np.inf
                stamps = [ts for _, ts in r.samples.values()] + [np.array([f.timestamp for f in v]) for v in r.frames.values()]
                for ts in stamps:
                    # the watermark contract: this step holds exactly the items in [previous, until)
                    if len(ts) and not (ts.min() >= previous - 1e-9 and ts.max() < r.step.until - 1e-9):
                        got.setdefault("violations", []).append((r.step.step, float(ts.min()), float(ts.max())))
                got["steps"].append(r.step)
                for k, v in r.frames.items():
                    got["frames"].setdefault(k, []).extend(v)
                for k, (d, ts) in r.samples.items():
                    got["samples"].setdefault(k, []).append((d, ts))
                for k, v in r.markers.items():
                    got["markers"].setdefault(k, []).extend(v)
            consumer.run(keep, timeout=20)

    thread = threading.Thread(target=consume)
    thread.start()
    stats = player.run()
    thread.join(30)
    assert stats.frames == 2 * 15 and stats.frames_damaged == 0
    rgb = got["frames"][prefix + "mmer.rgb"]
    assert [f.index for f in rgb] == list(range(1, 16))
    assert all(np.array_equal(f.data, rec.frames["rgb"].frames[i]) for i, f in enumerate(rgb))
    depth = got["frames"][prefix + "mmer.depth"]
    assert all(np.array_equal(f.data, rec.frames["depth"].frames[i]) for i, f in enumerate(depth))
    eda = np.concatenate([d for d, _ in got["samples"][prefix + "mmer.eda"]])
    eda_ts = np.concatenate([ts for _, ts in got["samples"][prefix + "mmer.eda"]])
    assert np.array_equal(eda, rec.samples["eda"].data)
    t0 = rgb[0].timestamp
    assert np.allclose(eda_ts - t0, rec.samples["eda"].timestamps, atol=1e-9)  # original relative timing
    assert np.allclose([f.timestamp - t0 for f in rgb], rec.frames["rgb"].timestamps, atol=1e-9)
    assert [m for m, _ in got["markers"][prefix + "mmer.stim"]] == ["stimulus"]
    truth = [json.loads(m) for m, _ in got["markers"][prefix + TRUTH_STREAM]]
    assert [(m["phase"], m["frame"]) for m in truth] == [("onset", 3), ("apex", 5), ("offset", 9)]
    assert "violations" not in got, got.get("violations")
    steps = [s.step for s in got["steps"]]
    assert steps == list(range(len(steps))) and stats.steps == len(steps)
    # watermarks: every frame of a step is stamped before that step's watermark
    assert all(s.until > t0 for s in got["steps"])


def test_realtime_replay_to_plain_inlets_and_subscriber_counts_damaged_frame():
    rec = _recording(damaged=4)
    prefix = _prefix()
    player = Player([rec], speed=2.0, prefix=prefix, wait_consumers=True, consumer_timeout=20)
    player.start()
    infos = {}
    for name in ("mmer.rgb", "mmer.depth", "mmer.eda", "mmer.ecg", "mmer.stim"):
        found = pylsl.resolve_byprop("name", prefix + name, 1, 10)
        assert found, name
        infos[name] = found[0]
    inlets = {k: pylsl.StreamInlet(v, max_buflen=60) for k, v in infos.items()}
    for inlet in inlets.values():
        inlet.open_stream(5)
    endpoint = inlets["mmer.rgb"].info(5).desc().child("zmq").child_value("endpoint")
    sub = FrameSubscriber(endpoint, streams=[prefix + "mmer.rgb", prefix + "mmer.depth"])
    frames, eda = [], []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        frame = sub.recv(0.05)
        if frame is not None:
            frames.append(frame)
        data, _ = inlets["mmer.eda"].pull_chunk(timeout=0.0, max_samples=1000, as_numpy=True)
        eda.extend(data[:, 0].tolist())
        if player.wait(0) and frame is None:
            break
    data, _ = inlets["mmer.eda"].pull_chunk(timeout=0.5, max_samples=1000, as_numpy=True)
    eda.extend(data[:, 0].tolist())
    sub.close()
    stats = player.stats
    assert stats.frames_damaged == 2  # position 4 of rgb and of depth
    rgb = [f for f in frames if f.stream == prefix + "mmer.rgb"]
    assert [f.index for f in rgb] == [i for i in range(1, 16) if i != 5]
    assert np.allclose(eda, rec.samples["eda"].data[:, 0])
    errors = np.array(stats.schedule_errors_ms)
    assert errors.size > 0 and np.percentile(errors, 50) < 20  # paced, not dumped


def test_clock_jump_replays_whole_in_bounded_time():
    rec = _recording(jump=True)
    prefix = _prefix()
    player = Player([rec], speed=1.0, prefix=prefix)
    begin = time.monotonic()
    stats = player.run()
    assert time.monotonic() - begin < 5.0  # a 500 s jump does not make us wait 500 s
    assert stats.samples == 2 * len(rec.samples["eda"]) and stats.clock_jumps == 2


def test_lockstep_into_alignment_buffer():
    fusion = pytest.importorskip("mmer.fusion")
    rec = _recording(n_frames=12, seed=3)
    prefix = _prefix()
    player = Player([rec], lockstep=True, prefix=prefix, consumer_timeout=30)
    names = [prefix + n for n in ("mmer.rgb", "mmer.eda")]
    buf = fusion.AlignmentBuffer(seconds=30, frame_seconds=30, dejitter=False)
    keys = {}

    def consume():
        with ReplayConsumer(names, timeout=20) as consumer:
            for name, inlet in consumer.inlets.items():
                from mmer.streams import StreamSpec
                keys[name] = buf.add_stream(StreamSpec.from_info(inlet.info(5)))

            def into_buffer(r):
                for k, (d, ts) in r.samples.items():
                    buf.push_samples(keys[k], d, ts)
                for k, frames in r.frames.items():
                    for f in frames:
                        buf.push_frame(keys[k], f.index, f.timestamp, f.data)
            consumer.run(into_buffer, timeout=20)

    thread = threading.Thread(target=consume)
    thread.start()
    player.run()
    thread.join(30)
    eda_key, rgb_key = keys[prefix + "mmer.eda"], keys[prefix + "mmer.rgb"]
    t_first = buf.window(0, 1e9, timeout=0).frames[rgb_key].timestamps[0]
    win = buf.window(t_first, t_first + 11 / 30, timeout=1.0)
    assert list(win.frames[rgb_key].indices) == list(range(1, 13))
    assert all(np.array_equal(f, rec.frames["rgb"].frames[i]) for i, f in enumerate(win.frames[rgb_key].frames))
    eda = win.signals[eda_key]
    n = len(eda)
    assert np.array_equal(eda.data[:, 0], rec.samples["eda"].data[:n, 0])
    buf.close()


def test_lockstep_client_needs_a_player():
    with pytest.raises(ValueError, match="lockstep endpoint is empty"):
        LockstepClient("")
    with pytest.raises(TimeoutError, match="no lockstep player"):
        LockstepClient("tcp://127.0.0.1:9", timeout=0.3)


def test_replay_cli_errors(shared_data, tmp_path, capsys):
    from mmer.cli import main

    assert main(["replay", "casme3", str(shared_data / "casme3-annotations")]) == 2
    assert "no recording with media" in capsys.readouterr().err
    assert main(["inspect", "xdf", str(tmp_path)]) == 2
    assert "not an XDF dataset" in capsys.readouterr().err
    assert main(["replay", "casme3", str(tmp_path), "--speed", "0"]) == 2
    assert "--speed must be > 0" in capsys.readouterr().err


def test_realtime_replay_into_alignment_buffer_via_its_own_acquisition():
    fusion = pytest.importorskip("mmer.fusion")
    rec = _recording(n_frames=12, seed=5)
    rec.samples.pop("events")  # the buffer holds samples and frames; markers are not its job
    prefix = _prefix()
    player = Player([rec], speed=1.0, prefix=prefix, wait_consumers=True, consumer_timeout=20)
    player.start()
    buf = fusion.AlignmentBuffer(seconds=30, frame_seconds=30, dejitter=False)
    keys = buf.connect(names=[prefix + n for n in ("mmer.rgb", "mmer.depth", "mmer.eda", "mmer.ecg")], timeout=10)
    assert player.wait(20)
    by_name = {k.split("#")[0]: k for k in keys}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        win = buf.window(0, 1e12, timeout=0)
        if len(win.frames[by_name[prefix + "mmer.rgb"]].frames) == 12 and len(win.signals[by_name[prefix + "mmer.eda"]]) == len(rec.samples["eda"]):
            break
        time.sleep(0.05)
    rgb = win.frames[by_name[prefix + "mmer.rgb"]]
    assert list(rgb.indices) == list(range(1, 13))
    assert all(np.array_equal(f, rec.frames["rgb"].frames[i]) for i, f in enumerate(rgb.frames))
    eda = win.signals[by_name[prefix + "mmer.eda"]]
    assert np.array_equal(eda.data[:, 0], rec.samples["eda"].data[:, 0])
    assert np.allclose(np.diff(eda.raw_timestamps), np.diff(rec.samples["eda"].timestamps), atol=1e-9)
    assert eda.raw_timestamps[0] - rgb.raw_timestamps[0] == pytest.approx(0.0, abs=1e-9)
    buf.close()


def _write_tiny_part_a(root) -> None:
    import cv2
    import pandas as pd

    color = root / "spNO.2" / "a" / "color"
    color.mkdir(parents=True)
    for i in range(1, 9):
        cv2.imwrite(str(color / f"{i}.jpg"), np.full((16, 20, 3), 30 * i, np.uint8))
    frame = pd.DataFrame({"Subject": ["spNO.2"], "Filename": ["a"], "Onset": [2], "Apex": [3], "Offset": [5],
                          "AU": ["12"], "Objective class": ["I"], "emotion": ["happy"]})
    with pd.ExcelWriter(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx") as xl:
        frame.to_excel(xl, sheet_name="label", index=False)


def test_replay_command_lockstep_in_a_subprocess(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    _write_tiny_part_a(tmp_path)
    prefix = _prefix()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmer", "replay", "casme3", str(tmp_path), "--lockstep", "--truth-markers",
         "--prefix", prefix, "--timeout", "30", "--json"],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with ReplayConsumer([prefix + "mmer.rgb", prefix + TRUTH_STREAM], timeout=30) as consumer:
            frames, truth = [], []

            def keep(r):
                frames.extend(r.frames[prefix + "mmer.rgb"])
                truth.extend(r.markers[prefix + TRUTH_STREAM])
            consumer.run(keep, timeout=30)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["frames"] == 8 and summary["truth_markers"] == 3 and summary["recordings"] == 1
    assert [f.index for f in frames] == list(range(1, 9))
    assert [int(f.data[0, 0, 0]) // 10 for f in frames] == [3 * i for i in range(1, 9)]
    assert [json.loads(m)["phase"] for m, _ in truth] == ["onset", "apex", "offset"]


def test_loop_keeps_timestamps_increasing():
    rec = _recording(n_frames=6, seed=11)
    prefix = _prefix()
    player = Player([rec], speed=1.0, loop=True, prefix=prefix)
    player.start()
    found = pylsl.resolve_byprop("name", prefix + "mmer.eda", 1, 10)
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(5)
    stamps = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(stamps) < 2 * len(rec.samples["eda"]):
        _, ts = inlet.pull_chunk(timeout=0.05, max_samples=1000, as_numpy=True)
        stamps.extend(ts.tolist())
    player.stop()
    assert player.stats.recordings >= 2
    assert len(stamps) >= 2 * len(rec.samples["eda"])
    assert np.all(np.diff(stamps) > 0)  # each pass starts after the previous one ended
