"""XDF reader on the real LabRecorder files, on damaged copies and on hand-built recordings."""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmer.dataset import FrameError
from mmer.replay import DatasetError, ForeignSpec, open_dataset, scan_xdf
from mmer.streams import StreamType

_FMT = {"float32": "<f4", "double64": "<f8", "int32": "<i4", "int16": "<i2"}


def _chunk(tag: int, content: bytes) -> bytes:
    length = 2 + len(content)
    head = b"\x01" + bytes([length]) if length < 256 else b"\x04" + struct.pack("<I", length)
    return head + struct.pack("<H", tag) + content


def write_xdf(path: Path, streams: list[dict]) -> None:
    """Write a minimal but complete XDF 1.0 file (header, streams, samples, clock offsets, footers)."""
    out = [b"XDF:", _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')]
    for sid, s in enumerate(streams, start=1):
        xml = (
            f"<?xml version=\"1.0\"?><info><name>{s['name']}</name><type>{s['type']}</type>"
            f"<channel_count>{s['nch']}</channel_count><nominal_srate>{s['rate']}</nominal_srate>"
            f"<channel_format>{s['fmt']}</channel_format><source_id>{s['source_id']}</source_id>"
            f"<created_at>0</created_at><uid>u{sid}</uid><session_id>default</session_id><hostname>h</hostname>"
            f"<desc>{s.get('desc', '')}</desc></info>"
        )
        out.append(_chunk(2, struct.pack("<I", sid) + xml.encode()))
    for sid, s in enumerate(streams, start=1):
        ts = np.asarray(s["timestamps"], dtype=np.float64)
        body = bytearray(struct.pack("<I", sid) + b"\x04" + struct.pack("<I", len(ts)))
        for k, t in enumerate(ts):
            body += b"\x08" + struct.pack("<d", t)
            if s["fmt"] == "string":
                text = s["data"][k].encode()
                body += b"\x01" + bytes([len(text)]) + text
            else:
                body += np.asarray(s["data"][k], dtype=_FMT[s["fmt"]]).tobytes()
        out.append(_chunk(3, bytes(body)))
        for when in ((ts[0] if len(ts) else 0.0) - 1.0, (ts[-1] if len(ts) else 0.0) + 1.0):
            out.append(_chunk(4, struct.pack("<Idd", sid, when, 0.0)))
    for sid, s in enumerate(streams, start=1):
        ts = s["timestamps"]
        footer = (
            f"<?xml version=\"1.0\"?><info><first_timestamp>{ts[0] if len(ts) else 0}</first_timestamp>"
            f"<last_timestamp>{ts[-1] if len(ts) else 0}</last_timestamp><sample_count>{len(ts)}</sample_count></info>"
        )
        out.append(_chunk(6, struct.pack("<I", sid) + footer.encode()))
    path.write_bytes(b"".join(out))


def test_real_labrecorder_files(shared_data):
    ds = open_dataset("xdf", shared_data / "xdf")
    recs = {r.video: r for r in ds.recordings()}
    assert set(recs) == {"minimal", "empty_streams"}
    minimal = recs["minimal"]
    eeg = minimal.samples["SendDataC"]
    assert isinstance(eeg.spec, ForeignSpec) and eeg.spec.lsl_type == "EEG"
    assert eeg.data.shape == (9, 3) and eeg.data.dtype == np.int16
    assert np.allclose(np.diff(eeg.timestamps), 0.1)  # pyxdf dejittered on the 10 Hz grid
    assert eeg.timestamps[0] == 0.0  # relative to the first sample: no video stream here
    strings = minimal.samples["SendDataString"]
    assert strings.data[1:3] == ["Hello", "World"]
    empty = recs["empty_streams"]
    assert len(empty.samples["Empty data stream: test stream 0 counter"]) == 0
    assert [d.kind for d in empty.defects].count("empty_stream") == 2
    for path in (shared_data / "xdf").glob("*.xdf"):
        assert scan_xdf(path) == []


def test_truncated_and_corrupt_files(shared_data, tmp_path):
    data = (shared_data / "xdf" / "minimal.xdf").read_bytes()
    trunc = tmp_path / "trunc.xdf"
    trunc.write_bytes(data[:1500])
    with pytest.raises(DatasetError, match=r"trunc.xdf: corrupt XDF at byte offset 1286: .*truncated"):
        next(open_dataset("xdf", trunc).recordings())
    rec = next(open_dataset("xdf", trunc, salvage=True).recordings())
    assert len(rec.samples["SendDataC"]) == 9  # every intact sample kept
    assert [(d.kind, d.row) for d in rec.defects] == [("xdf_damage", 1286)]
    flag = tmp_path / "flag.xdf"
    damaged = bytearray(data)
    # The samples chunk of stream 0x02C0FFEE starts at byte 653: 1+4 length bytes, 2 tag bytes,
    # the stream id at 660, a 1+4 byte sample count, then the first timestamp flag at 669.
    assert damaged[660:664] == b"\xee\xff\xc0\x02" and damaged[669] == 8
    damaged[669] = 0x33
    flag.write_bytes(bytes(damaged))
    problems = scan_xdf(flag)
    assert problems and problems[0].offset == 653 and "timestamp flag" in problems[0].message
    junk = tmp_path / "junk.xdf"
    junk.write_bytes(b"not an xdf file")
    with pytest.raises(DatasetError, match="junk.xdf: corrupt XDF at byte offset 0"):
        open_dataset("xdf", junk)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no .xdf file"):
        open_dataset("xdf", tmp_path / "empty")


def test_clock_jump_reported(tmp_path):
    ts = np.concatenate([np.arange(50) / 100.0, 1000 + np.arange(50) / 100.0, 999.0 + np.arange(10) / 100.0])
    write_xdf(tmp_path / "jump.xdf", [
        {"name": "j.eeg", "type": "EEG", "nch": 1, "rate": 100, "fmt": "float32", "source_id": "j-eeg",
         "timestamps": ts, "data": np.arange(len(ts))[:, None]},
    ])
    rec = next(open_dataset("xdf", tmp_path / "jump.xdf").recordings())
    track = rec.samples["j.eeg"]
    assert len(track) == 110
    assert np.array_equal(track.data[:, 0], np.arange(110))  # sample order kept
    jumps = [d for d in rec.defects if d.kind == "clock_jump"]
    assert jumps and "0 backward" not in jumps[0].detail and "1 forward" in jumps[0].detail
    from mmer.replay import Player

    begin = time.monotonic()
    stats = Player([rec], speed=1.0, prefix=f"j{tmp_path.name[-6:]}.").run()
    assert time.monotonic() - begin < 5.0  # not the 1000 s the clock jumped
    assert stats.samples == 110 and stats.clock_jumps > 0


def make_recording_folder(folder: Path, *, n: int = 12, missing: int | None = None) -> list[np.ndarray]:
    """A recording folder as ``mmer record`` writes it: session.xdf + RGB/depth sidecars."""
    video = folder / "video"
    (video / "cam-depth").mkdir(parents=True)
    rgb_frames = [np.full((48, 64, 3), 10 * i + 5, np.uint8) for i in range(n)]
    writer = cv2.VideoWriter(str(video / "cam-rgb.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    rows = ["frame_index,timestamp"]
    for i, frame in enumerate(rgb_frames):
        if i == missing:
            continue
        writer.write(frame)
        rows.append(f"{100 + i},{50 + i / 30:.6f}")
    writer.release()
    (video / "cam-rgb.frames.csv").write_text("\n".join(rows) + "\n")
    depth = [np.full((48, 64), 400 + i, np.uint16) for i in range(n)]
    for i, d in enumerate(depth):
        cv2.imwrite(str(video / "cam-depth" / f"{100 + i:06d}.png"), d)
    t = 50 + np.arange(n) / 30
    vdesc = "<video><width>64</width><height>48</height></video>"
    phys_t = 49.9 + np.arange(int(0.6 * 200)) / 200
    write_xdf(folder / "session.xdf", [
        {"name": "mmer.rgb", "type": "VideoRGB", "nch": 2, "rate": 30, "fmt": "double64", "source_id": "cam-rgb",
         "timestamps": t, "data": np.column_stack([100 + np.arange(n), t]), "desc": vdesc},
        {"name": "mmer.depth", "type": "VideoDepth", "nch": 2, "rate": 30, "fmt": "double64", "source_id": "cam-depth",
         "timestamps": t, "data": np.column_stack([100 + np.arange(n), t]), "desc": vdesc},
        {"name": "mmer.eda", "type": "EDA", "nch": 1, "rate": 200, "fmt": "float32", "source_id": "eda-1",
         "timestamps": phys_t, "data": np.sin(np.arange(len(phys_t)))[:, None],
         "desc": "<channels><channel><label>EDA</label><unit>microsiemens</unit><type>EDA</type></channel></channels>"},
        {"name": "mmer.events", "type": "Markers", "nch": 1, "rate": 0, "fmt": "string", "source_id": "ev",
         "timestamps": [50.1], "data": ['{"kind": "me"}']},
    ])
    return rgb_frames


def test_recording_folder_with_sidecars(tmp_path):
    frames = make_recording_folder(tmp_path / "rec1", missing=4)
    rec = next(open_dataset("xdf", tmp_path).recordings())
    rgb, depth = rec.frames["rgb"], rec.frames["depth"]
    assert rgb.spec.type is StreamType.VIDEO_RGB and list(rgb.indices) == list(range(100, 112))
    assert rgb.timestamps[0] == pytest.approx(0.0, abs=1e-6)  # t=0 at the first video frame
    assert rec.samples["mmer.eda"].timestamps[0] == pytest.approx(-0.1, abs=2e-3)
    for pos in (0, 3, 5, 11):
        assert abs(float(rgb.read(pos).mean()) - frames[pos].mean()) < 3  # MJPG is lossy
    with pytest.raises(FrameError, match="frame index 104"):
        rgb.read(4)
    assert int(depth.read(7)[0, 0]) == 407 and depth.read(7).dtype == np.uint16
    assert rec.samples["mmer.events"].data == ['{"kind": "me"}']
    assert [d.kind for d in rec.defects] == ["sidecar_missing_frames"]


def test_sidecar_table_errors(tmp_path):
    make_recording_folder(tmp_path / "rec")
    table = tmp_path / "rec" / "video" / "cam-rgb.frames.csv"
    table.write_text("frame_index,timestamp\n100,1.0\nabc,2.0\n")
    with pytest.raises(DatasetError, match=r"cam-rgb.frames.csv: line 3: bad frame index"):
        next(open_dataset("xdf", tmp_path).recordings())
    shutil.rmtree(tmp_path / "rec" / "video")
    rec = next(open_dataset("xdf", tmp_path).recordings())
    assert "mmer.rgb" in rec.samples and "no_sidecar" in [d.kind for d in rec.defects]


@pytest.mark.slow
def test_round_trip_replay_record_read(tmp_path):
    """Player -> SessionRecorder (LabRecorder + sidecars) -> XDF reader gives back the same data."""
    import pylsl

    recorder_mod = pytest.importorskip("mmer.live.recorder")
    from test_replay import _recording

    from mmer.replay import Player

    rec = _recording(n_frames=20, seed=9)
    prefix = f"rt{tmp_path.name[-6:]}."
    player = Player([rec], speed=1.0, prefix=prefix, wait_consumers=True, consumer_timeout=30)
    player.start()
    infos = []
    for name in ("mmer.rgb", "mmer.depth", "mmer.eda", "mmer.ecg", "mmer.stim"):
        found = pylsl.resolve_byprop("name", prefix + name, 1, 10)
        assert found, name
        infos.append(found[0])
    out = tmp_path / "rec"
    recorder = recorder_mod.SessionRecorder(out, streams=infos, rgb_codec="ffv1", metadata={"subject": "sx", "session": "one"})
    recorder.start()
    assert player.wait(30)
    time.sleep(1.0)
    assert recorder.stop()["stop_reason"] == "stopped"
    back = next(open_dataset("xdf", out).recordings())
    assert (back.subject, back.video, back.defects) == ("sx", "one", [])
    rgb, depth = back.frames["rgb"], back.frames["depth"]
    assert list(rgb.indices) == list(range(1, 21))
    assert all(np.array_equal(rgb.read(i), rec.frames["rgb"].frames[i]) for i in range(20))  # FFV1: lossless
    assert all(np.array_equal(depth.read(i), rec.frames["depth"].frames[i]) for i in range(20))
    eda = back.samples[prefix + "mmer.eda"]
    assert np.array_equal(eda.data[:, 0], rec.samples["eda"].data[:, 0])
    assert np.allclose(eda.timestamps, rec.samples["eda"].timestamps, atol=1e-3)
    assert back.samples[prefix + "mmer.stim"].data == ["stimulus"]


def test_salvage_reads_the_prefix_of_a_file_cut_mid_clock_offset(tmp_path):
    ts = 10 + np.arange(40) / 100.0
    write_xdf(tmp_path / "whole.xdf", [
        {"name": "c.eda", "type": "EDA", "nch": 1, "rate": 100, "fmt": "float32", "source_id": "c-eda",
         "timestamps": ts, "data": np.arange(40)[:, None]},
    ])
    data = (tmp_path / "whole.xdf").read_bytes()
    offset_chunk = data.index(b"\x01\x16\x04\x00")  # 1-byte length 22: tag 4, stream id, two doubles
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(data[:offset_chunk + 9])  # the crash came while LabRecorder wrote a clock offset
    assert [p.offset for p in scan_xdf(cut)] == [offset_chunk]
    with pytest.raises(DatasetError, match=f"byte offset {offset_chunk}"):
        next(open_dataset("xdf", cut).recordings())
    rec = next(open_dataset("xdf", cut, salvage=True).recordings())
    assert np.array_equal(rec.samples["c.eda"].data[:, 0], np.arange(40))
    assert [(d.kind, d.row) for d in rec.defects] == [("xdf_damage", offset_chunk)]


def test_markers_are_events_not_clock_defects(tmp_path):
    truth = [json.dumps({"phase": phase, "kind": "me", "onset": 10 * k, "apex": 10 * k + 2, "offset": 10 * k + 5,
                         "emotion": "Surprise"}) for k in range(3) for phase in ("onset", "apex", "offset")]
    t_truth = np.repeat(50 + np.arange(3), 3) + np.tile([0.0, 0.1, 0.2], 3)
    # Decisions carry their ME's time: a late one lands before the early one that came after it.
    decisions = [json.dumps({"stage": s, "kind": "me"}) for s in ("early", "late", "early")]
    write_xdf(tmp_path / "session.xdf", [
        {"name": "mmer.truth", "type": "Markers", "nch": 1, "rate": 0, "fmt": "string", "source_id": "t",
         "timestamps": t_truth, "data": truth},
        {"name": "mmer.events", "type": "Markers", "nch": 1, "rate": 0, "fmt": "string", "source_id": "e",
         "timestamps": [50.5, 50.2, 51.5], "data": decisions},
    ])
    rec = next(open_dataset("xdf", tmp_path / "session.xdf").recordings())
    assert not [d for d in rec.defects if d.kind == "clock_jump"]
    assert [(e.onset, e.apex, e.offset, e.emotion) for e in rec.events] == [(0, 2, 5, "surprise"), (10, 12, 15, "surprise"),
                                                                          (20, 22, 25, "surprise")]
    from mmer.replay import describe

    assert describe(open_dataset("xdf", tmp_path / "session.xdf"))["events"] == {"me": 3, "mae": 0, "blink": 0}


def test_sidecar_paths_never_leave_the_recording_folder(tmp_path):
    from mmer.live.recorder import sidecar_stem

    for sid in ("../../escaped", "/etc/passwd", "..", "a/../../b", "x" * 300, "ok-id.1"):
        stem = sidecar_stem(sid)
        assert "/" not in stem and not stem.startswith(".") and len(stem) <= 100
        assert (stem == sid) == (sid == "ok-id.1")
    assert sidecar_stem("a/b") != sidecar_stem("a_b")  # a changed id keeps a hash of the original
    folder = tmp_path / "rec"
    make_recording_folder(folder)
    (tmp_path / "outside.avi").write_bytes((folder / "video" / "cam-rgb.avi").read_bytes())
    (tmp_path / "outside.frames.csv").write_text((folder / "video" / "cam-rgb.frames.csv").read_text())
    (folder / "video" / "cam-rgb.avi").unlink()
    (folder / "session.json").write_text(json.dumps({"files": {"video": [{"stream": "mmer.rgb",
                                                                         "file": "video/../../outside.avi"}]}}))
    with pytest.raises(DatasetError, match="leaves the recording folder"):
        next(open_dataset("xdf", folder / "session.xdf").recordings())


def test_a_sidecar_movie_cut_by_a_crash_is_a_defect(tmp_path):
    make_recording_folder(tmp_path / "rec")
    movie = tmp_path / "rec" / "video" / "cam-rgb.avi"
    movie.write_bytes(movie.read_bytes()[:200])  # the writer never closed it: header only
    rec = next(open_dataset("xdf", tmp_path).recordings())
    (damage,) = [d for d in rec.defects if d.kind == "sidecar_damaged"]
    assert "of the 12 frames its table lists" in damage.detail
