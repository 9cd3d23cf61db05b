"""The live pipeline on synthetic sensors over real LSL + ZeroMQ: decisions, failures, status."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from rich.console import Console
from test_live_helpers import MarkerCollector, make_checkpoint

from mmer.config import parse_config
from mmer.live.events import Decision
from mmer.live.pipeline import LivePipeline, PipelineError
from mmer.live.status import StatusView, render_status
from mmer.sensors import create_sensor

# A development seed (benchmarks use >= 1000) whose session has MEs early on, so the 6 s before
# the sensors die and the 9 s after they come back each hold a real one.
SEED = 36
TRUE_MES = [(70, 77), (211, 218), (540, 554)]  # frames of its first three MEs


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "live.pt")


def _config(checkpoint, csv_path=None, **over):
    # epoch None: the seed plays from its first frame, so the run's content does not depend on the clock
    cam = {"seed": SEED, "width": 320, "height": 240, "fps": 30, "depth": True, "epoch": None}
    phys = {"seed": SEED, "width": 320, "height": 240, "channels": ["eda", "ecg"], "epoch": None}
    data = {
        "sensors": [
            {"adapter": "synthetic-camera", "options": cam},
            {"adapter": "synthetic-physio", "options": phys},
            {"adapter": "realsense", "required": False},
        ],
        "model": {"checkpoint": str(checkpoint)},
        "outputs": {"status": False, "events_stream": "mmer.events", "events_csv": csv_path},
        "buffer": {"stall_timeout_s": 1.0},
        "inputs": {"resolve_timeout_s": 5.0},
    }
    data.update(over)
    return parse_config(data, source="test")


@pytest.mark.slow
def test_pipeline_decides_early_then_late_and_survives_a_dying_sensor(checkpoint, tmp_path):
    pipeline = LivePipeline(_config(checkpoint, csv_path=str(tmp_path / "decisions.csv")))
    pipeline.start()
    events = MarkerCollector("mmer.events")
    events.start()
    camera, physio = pipeline.sensors
    try:
        time.sleep(6.0)
        physio.stop()  # the amplifier's cable comes out...
        camera.stop()  # ...and the camera dies too
        time.sleep(2.5)
        physio2 = create_sensor("synthetic-physio", seed=SEED, width=320, height=240, channels=["eda", "ecg"],
                                epoch=None)
        camera2 = create_sensor("synthetic-camera", seed=SEED, width=320, height=240, depth=True, epoch=None)
        physio2.start()
        camera2.start()  # a new process: same source ids, a new ZeroMQ port
        pipeline.sensors += [physio2, camera2]
        received_before = pipeline.rgb_reader.received
        time.sleep(9.0)
        assert pipeline.rgb_reader.received > received_before + 100, "video did not reconnect"
    finally:
        summary = pipeline.run(duration=0)
    items = events.stop()

    for key in ("events", "candidates", "latency_ms", "physio_lost", "frames_dropped_pct"):
        assert key in summary
    assert set(summary["latency_ms"]["early"]) >= {"p50", "p95"}
    assert summary["errors"] == []
    assert summary["physio_lost"] == 0
    assert any(line.startswith("[missing] sensor realsense") for line in summary["warnings"])
    assert any("[missing] stream mmer.ppg" in line for line in summary["warnings"]), summary["warnings"]
    assert "[stalled] mmer.rgb" in summary["warnings"] and "[back] mmer.rgb" in summary["warnings"]
    assert "[stalled] mmer.eda" in summary["warnings"] and "[back] mmer.eda" in summary["warnings"]
    closed = [g for g in summary["gaps"] if "until" in g]
    assert any(g["stream"] == "mmer.rgb" and g["until"] > g["since"] for g in closed), summary["gaps"]
    assert any(g["stream"] == "mmer.eda" and g["until"] - g["since"] > 1.0 for g in closed), summary["gaps"]
    streams = {s["name"]: s for s in summary["streams"]}
    assert streams["mmer.eda"]["received"] > 200 * 10

    decisions = [Decision.from_json(text) for _, text in items]
    assert decisions, "no decision published in 17 s of synthetic video"
    # A true ME of the session was found, not only something at the splices. Since the generator
    # varies ME dynamics (partial return, slow relaxation), the spotter may type this seed's ME at
    # 540-554 as a macro-expression, so the type is not asserted here.
    assert any(d.onset <= off and d.offset >= on for d in decisions for on, off in TRUE_MES), \
        [(d.kind, d.onset, d.offset) for d in decisions]
    assert len(decisions) == summary["events"] == len(pipeline.decisions)
    by_candidate: dict[int, list[str]] = {}
    for d in decisions:
        by_candidate.setdefault(d.candidate_id, []).append(d.stage)
        assert d.kind in ("me", "mae") and d.model_id.startswith("hsta:live:")
        assert abs(sum(d.probabilities.values()) - 1.0) < 1e-4 and d.label in d.probabilities
        assert d.latency_ms > 0
        if d.stage == "early":
            assert "physio" not in d.modalities
    assert all(stages == ["early", "late"] for stages in by_candidate.values()), by_candidate
    assert summary["candidates"] == len(by_candidate)
    with open(tmp_path / "decisions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(int(r["candidate_id"]), r["stage"]) for r in rows] == [(d.candidate_id, d.stage) for d in decisions]


def test_checkpoint_that_does_not_fit_is_refused_before_start(tmp_path, checkpoint):
    video_only = make_checkpoint(tmp_path / "video.pt", modalities=("video",))
    with_physio = LivePipeline(_config(video_only))  # a video-only model reads video alone
    with_physio.preflight()
    assert with_physio.recognizer.modalities("late") == ("video",)
    physio_only = make_checkpoint(tmp_path / "physio.pt", modalities=("physio",))
    with pytest.raises(ValueError, match="needs a model that reads video"):
        LivePipeline(_config(physio_only)).start()
    with pytest.raises(FileNotFoundError, match="packaged"):
        LivePipeline(_config("no-such-checkpoint")).start()
    ok = LivePipeline(_config(video_only, inputs={"depth": None, "physio": []}))
    ok.preflight()
    assert ok.recognizer.modalities("late") == ("video",)


def test_missing_rgb_stream_is_a_clear_error(checkpoint):
    cfg = _config(checkpoint, sensors=[], inputs={"rgb": "mmer.nothing-here", "resolve_timeout_s": 1.0})
    with pytest.raises(PipelineError, match="'mmer.nothing-here' not found on LSL within 1 s"):
        LivePipeline(cfg).start()


def test_status_view_renders_and_disables_cleanly():
    snap = {"elapsed_s": 3.0, "candidates": 2, "decisions": 3, "recording": "rec/",
            "recent": ["early #0 me 10-18: surprise"],
            "streams": [{"name": "mmer.rgb", "type": "VideoRGB", "nominal_hz": 30.0, "effective_hz": 29.9,
                         "received": 90, "drops": 0, "offset_ms": 0.01, "fill_pct": 10.0, "state": "ok"},
                        {"name": "mmer.eda", "type": "EDA", "nominal_hz": 200.0, "effective_hz": None,
                         "received": 0, "drops": 0, "offset_ms": None, "fill_pct": 0.0, "state": "stalled"}]}
    out = io.StringIO()
    console = Console(file=out, width=140)
    console.print(render_status(snap))
    text = out.getvalue()
    assert "mmer.rgb" in text and "29.9" in text and "stalled" in text and "early #0" in text
    out = io.StringIO()
    view = StatusView(lambda: snap, enabled=True, refresh_hz=20, console=Console(file=out, force_terminal=True, color_system=None))
    with view:
        time.sleep(0.3)
    assert view.renders >= 2 and "mmer.eda" in out.getvalue()
    quiet = StatusView(lambda: snap, console=Console(file=io.StringIO()))
    assert quiet.enabled is False  # not a terminal: no live view, only periodic log lines
    with quiet:
        pass
    json.dumps(snap)


def test_late_sample_reuses_the_early_inputs(faces_dir):
    """The late decision adds physiology to the early decision's video and depth inputs instead of
    computing them again; the result equals building the fused sample in one go."""
    import cv2
    import numpy as np

    from mmer.features.sample import SampleConfig, build_sample
    from mmer.live.pipeline import _merge_samples

    cfg = SampleConfig(flow_method="dis")
    face = cv2.resize(cv2.imread(str(faces_dir / "0-f1-su-ph.jpg")), (320, 240))
    frames = [face, np.roll(face, 1, axis=0), np.roll(face, 2, axis=0)]
    depth = (np.full((240, 320), 600, np.uint16), np.full((240, 320), 602, np.uint16))
    t = np.arange(0, 8, 1 / 200)
    physio = {"eda": 5 + 0.1 * np.sin(t), "ecg": np.sin(2 * np.pi * 1.2 * t), "ppg": np.sin(2 * np.pi * 1.2 * t - 1),
              "rsp": np.sin(2 * np.pi * 0.25 * t)}
    common = {"config": cfg, "physio_rate": 200.0, "physio_onset": 2.0}
    early = build_sample(frames=frames, depth=depth, config=cfg)
    late = _merge_samples(early, build_sample(physio=physio, **common))
    whole = build_sample(frames=frames, depth=depth, physio=physio, **common)
    assert late.modalities == whole.modalities == ["video", "depth", "physio"]
    for key, value in whole.arrays.items():
        assert np.array_equal(late.arrays[key], value), key
    assert late.info == whole.info


@pytest.mark.slow
def test_sensors_in_their_own_process_stream_and_stop_cleanly(checkpoint, capfd):
    cfg = _config(checkpoint, sensor_process=True)
    pipeline = LivePipeline(cfg)
    pipeline.start()
    assert [s.name for s in pipeline.sensors] == ["synthetic-camera", "synthetic-physio"]
    summary = pipeline.run(duration=8.0)
    camera, physio = pipeline.sensors
    assert summary["errors"] == []
    # After a normal stop the streams show as they were when it began, not as stalled.
    assert [s["state"] for s in summary["streams"]] == ["ok"] * 4
    assert all(s["effective_hz"] > 0.9 * s["nominal_hz"] for s in summary["streams"]), summary["streams"]
    assert any(line.startswith("[missing] sensor realsense") for line in summary["warnings"])
    # Health comes back from the child (the camera streams before the pipeline subscribes).
    assert camera.health.frames >= summary["frames_received"] >= 200 and camera.health.errors == 0
    assert physio.physio_samples_sent() == summary["physio_sent"] > 2 * 200 * 7
    assert summary["physio_before_connect"] is not None and summary["physio_lost"] == 0
    # Inlets close before the sensors' outlets: liblsl reports no broken stream.
    broken = [line for line in capfd.readouterr().err.splitlines() if "Stream transmission broke off" in line]
    assert not broken, broken


def test_a_required_sensor_that_fails_in_the_process_is_a_clear_error(checkpoint, tmp_path):
    bad = {"adapter": "synthetic-camera", "options": {"face": str(tmp_path / "nobody.jpg"), "width": 320, "height": 240}}
    cfg = _config(checkpoint, sensors=[bad], sensor_process=True)
    with pytest.raises(PipelineError, match="sensor 'synthetic-camera' is not available: .*nobody.jpg"):
        LivePipeline(cfg).start()
    with pytest.raises(PipelineError, match="sensors: adapter 'synthetic-camera': .*seconds"):
        LivePipeline(_config(checkpoint, sensors=[{"adapter": "synthetic-camera", "options": {"seconds": -1}}],
                             sensor_process=True)).start()
