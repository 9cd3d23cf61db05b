"""``mmer live --record`` and ``mmer record`` as processes: SIGTERM and Ctrl-C close everything cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import pyxdf
from test_live_helpers import make_checkpoint


def _session_yaml(path, checkpoint, extra=""):
    opts = "{seed: 21, width: 320, height: 240}"
    path.write_text(
        f"session_id: h6-cli-{uuid.uuid4().hex[:8]}\n"
        f"sensors:\n  - adapter: synthetic-camera\n    options: {opts}\n"
        f"  - adapter: synthetic-physio\n    options: {opts}\n"
        f"model: {{checkpoint: {checkpoint}}}\noutputs: {{status: false}}\n{extra}",
        encoding="utf-8",
    )
    return path


def _wait_for(path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_live_stops_cleanly_on_a_signal_and_keeps_the_recording(tmp_path, sig):
    cfg = _session_yaml(tmp_path / "s.yaml", make_checkpoint(tmp_path / "c.pt"))
    rec = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-m", "mmer", "live", "--config", str(cfg), "--record", str(rec), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(rec / "session.json", 120), "the recording never started"
        time.sleep(4.0)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["errors"] == [] and summary["recording"]["stop_reason"] == "stopped"
    manifest = json.loads((rec / "session.json").read_text())
    assert manifest["stop_reason"] == "stopped" and manifest["stopped_at"]
    assert [s["adapter"] for s in manifest["sensors"]] == ["synthetic-camera", "synthetic-physio"]
    assert manifest["sensors"][0]["health"]["frames"] > 30
    streams = {s["info"]["name"][0]: s for s in pyxdf.load_xdf(str(rec / "session.xdf"))[0]}
    assert {"mmer.rgb", "mmer.depth", "mmer.eda", "mmer.ecg", "mmer.ppg", "mmer.rsp", "mmer.events"} <= set(streams)
    assert len(streams["mmer.eda"]["time_series"]) > 200 * 3
    rgb = {v["stream"]: v for v in manifest["files"]["video"]}["mmer.rgb"]
    assert rgb["frames_written"] >= len(streams["mmer.rgb"]["time_series"]) > 30


@pytest.mark.slow
def test_record_command_records_a_sessions_streams(tmp_path):
    cfg = _session_yaml(tmp_path / "s.yaml", "demo", "sensor_process: true\n")  # sensors in their own process
    rec = tmp_path / "rec"
    proc = subprocess.run([sys.executable, "-m", "mmer", "record", str(rec), "--config", str(cfg), "--seconds", "4",
                           "--json"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"mmer.rgb", "mmer.depth", "mmer.eda", "mmer.truth"} <= set(result["streams"])
    assert result["stop_reason"] == "stopped"
    again = subprocess.run([sys.executable, "-m", "mmer", "record", str(rec), "--seconds", "1"],
                           capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert again.returncode == 2 and "already exists" in again.stderr
