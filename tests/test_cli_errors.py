"""Inputs mmer refuses end as ``mmer COMMAND: error: ...`` with exit 2, never as a traceback."""

from __future__ import annotations

import json
import uuid

import pytest
from test_live_helpers import make_checkpoint
from test_replay import _write_tiny_part_a

from mmer.cli import main


def _refused(capsys, argv: list[str], match: str) -> dict | None:
    """Run the CLI in this process; assert exit 2, one error line naming ``match``, no traceback."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.startswith(f"mmer {argv[0]}: error: ")]
    assert len(lines) == 1 and match in lines[0], err
    assert "Traceback" not in err
    return json.loads(out.strip().splitlines()[-1]) if "--json" in argv else None


def test_lockstep_replay_with_no_consumer(capsys, tmp_path):
    _write_tiny_part_a(tmp_path)
    prefix = f"t{uuid.uuid4().hex[:6]}."
    summary = _refused(capsys, ["replay", "casme3", str(tmp_path), "--lockstep", "--timeout", "0.5", "--json",
                                "--prefix", prefix], "0 of 1 consumer(s) joined")
    assert summary["exit_code"] == 2 and "consumer" in summary["error"]


def test_bad_sensor_option_value(capsys):
    _refused(capsys, ["stream", "synthetic-physio", "--set", "channels=5", "--seconds", "1"],
             "sensor 'synthetic-physio': bad option value")


@pytest.fixture(scope="module")
def video_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "video.pt", modalities=("video",))


def _session(tmp_path, checkpoint, sensors: str, rgb: str = "mmer.rgb") -> str:
    path = tmp_path / "s.yaml"
    path.write_text(
        f"sensors: {sensors}\nmodel: {{checkpoint: '{checkpoint}'}}\noutputs: {{status: false}}\n"
        f"inputs: {{rgb: {rgb}, depth: null, physio: [], truth: null, resolve_timeout_s: 1.0}}\n",
        encoding="utf-8",
    )
    return str(path)


@pytest.mark.slow
def test_live_with_no_camera_and_with_no_rgb_stream(capsys, tmp_path, video_checkpoint):
    no_camera = _session(tmp_path, video_checkpoint, "[{adapter: camera, options: {source: 99}}]")
    _refused(capsys, ["live", "--config", no_camera, "--json"], "sensor 'camera' did not start: camera: cannot open")
    rgb = f"t{uuid.uuid4().hex[:6]}.nothing"
    no_rgb = _session(tmp_path, video_checkpoint, "[]", rgb=rgb)
    _refused(capsys, ["live", "--config", no_rgb], f"RGB stream '{rgb}' not found on LSL within 1 s")


def test_checkpoint_missing_keys(capsys, tmp_path):
    import torch

    path = tmp_path / "bad.pt"
    torch.save({"format": "mmer-recognition/1", "config": {"name": "hsta_tiny"}}, path)
    session = _session(tmp_path, path, "[]")
    _refused(capsys, ["live", "--config", session], "checkpoint lacks ['state_dict', 'class_names', 'modalities']")


@pytest.mark.slow
def test_lockstep_consumer_that_never_acks(tmp_path):
    import subprocess
    import sys

    import zmq

    _write_tiny_part_a(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "mmer", "replay", "casme3", str(tmp_path), "--lockstep",
                             "--timeout", "1", "--prefix", f"t{uuid.uuid4().hex[:6]}.", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        endpoint = proc.stdout.readline().strip().removeprefix("lockstep endpoint: ")
        sock.connect(endpoint)
        sock.send_json({"hello": "mute", "streams": []})  # joins, then never acknowledges a step
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        sock.close()
    assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
    assert "mmer replay: error: lockstep: no consumer left; mute acknowledged no step 0 within 1 s" in err
    assert json.loads(out.strip().splitlines()[-1])["exit_code"] == 2
