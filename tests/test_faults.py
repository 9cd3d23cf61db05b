"""Fault injection: every way a recording session ends, on real processes, signals, disks and media.

The slow cases run ``mmer record`` as a separate process on a live publisher (``mmer bench
faults``' own fault runner) and strike it: signals to its process group, a real 3 MB tmpfs that
fills up, the sensor process killed, an outlet restarted, stream ids that look like paths.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from mmer.bench.faults import run_fault


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


def _survived(result: dict) -> dict:
    assert "error" not in result, result.get("error")
    assert result["pyxdf_opens"] and result["footers"] and result["inspect_exit_code"] == 0, result
    assert result["sidecar"]["frames_decoded"] == result["sidecar"]["frames_written"] > 0, result
    assert result["eda"]["arrived"] > 0 and result["survived"], result
    return result


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["sigterm_group", "sigint_twice", "sigint_thrice"])
def test_signals_to_the_process_group_keep_the_recording(fault, root):
    result = _survived(run_fault(fault, root, seconds=2.0))
    assert result["samples_lost"] == 0
    if fault == "sigint_thrice":
        assert result["exit_code"] == 130 and result["forced_message"]
        assert result["stop_reason"].startswith("forced stop; lost:")
    else:
        assert result["exit_code"] == 0 and result["stop_reason"] == "stopped" and result["errors_in_json"] == []
    if fault == "sigint_twice":
        assert result["please_wait_message"]


@pytest.mark.slow
def test_a_real_full_disk_stops_in_time_and_leaves_a_readable_recording(root):
    result = run_fault("disk_full", root, seconds=0.0)
    if "skipped" in result:
        pytest.skip(result["skipped"])
    _survived(result)
    assert result["stop_reason"].startswith("disk full") and result["exit_code"] == 1
    assert result["errors_in_json"] and "disk full" in result["errors_in_json"][0]
    assert result["samples_lost"] == 0


@pytest.mark.slow
def test_a_killed_sensor_process_loses_nothing_that_arrived(root):
    result = _survived(run_fault("sensor_killed", root, seconds=2.0))
    assert result["samples_lost"] == 0 and result["stop_reason"] == "stopped"


@pytest.mark.slow
def test_a_restarted_outlet_is_recorded_again(root):
    result = _survived(run_fault("outlet_restart", root, seconds=2.0))
    # The recording goes on after the restart; what the new outlet sent before LabRecorder
    # reconnected is lost (LabRecorder's own behaviour), and counted.
    assert result["eda"]["recorded"] > result["eda"]["arrived"] / 2
    assert 0 <= result["eda"]["lost"] <= 2 * 200 and result["frame_index_stream"]["lost"] == 0


@pytest.mark.slow
def test_path_like_source_ids_stay_inside_the_recording(root):
    result = _survived(run_fault("path_source_ids", root, seconds=1.0))
    assert result["sidecar_inside_folder"] and result["files_outside"] == []
    name = result["sidecar"]["file"].removeprefix("video/")
    assert "/" not in name and ".." not in name and "-escaped-" in name


def test_second_signal_waits_and_third_forces(tmp_path):
    script = textwrap.dedent("""
        import os, signal, sys, time
        from mmer.live.signals import install_stop_signals
        handler = install_stop_signals()
        handler.on_force(lambda: "the test's queue")
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            print("first: interrupted", flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        print("second: still running", flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        print("never", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["first: interrupted", "second: still running"]
    assert done.returncode == 130
    assert "SIGINT: stopping, please wait" in done.stderr
    assert "forced stop; lost: the test's queue" in done.stderr


def test_a_signal_during_the_stop_does_not_interrupt_it():
    from mmer.live.signals import StopSignals

    handler = StopSignals()
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        handler.install()
        handler.stop_begun()  # e.g. --seconds ran out and the recording is closing
        signal.raise_signal(signal.SIGTERM)  # must not raise KeyboardInterrupt into the stop
        assert handler.received == 1 and handler.requested.is_set()
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _clip(path, n=72):
    rng = np.random.default_rng(3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (96, 64))
    for _ in range(n):
        writer.write(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    writer.release()


@pytest.mark.slow
def test_damaged_media_is_counted_or_refused(tmp_path):
    from mmer.spotting import spot_video

    clip = tmp_path / "clip.mp4"
    _clip(clip)
    data = bytearray(clip.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = bytes(third)  # a third of the file zeroed
    zeroed = tmp_path / "zeroed.mp4"
    zeroed.write_bytes(bytes(data))
    result = spot_video(zeroed, progress=False)
    assert result.frames < 72 and result.damaged_frames == 72 - result.frames
    assert any("could not be decoded" in note for note in result.notes)
    photo = tmp_path / "photo.mp4"
    ok, jpg = cv2.imencode(".jpg", np.full((64, 96, 3), 128, np.uint8))
    photo.write_bytes(jpg.tobytes())
    with pytest.raises(ValueError, match="not a video"):
        spot_video(photo, progress=False)


def test_a_failed_recording_is_an_error_of_the_live_summary():
    from mmer.commands.live import recording_errors

    assert recording_errors({"recording": None}) == []
    assert recording_errors({"recording": {"dir": "rec", "stop_reason": "stopped"}}) == []
    assert recording_errors({"recording": {"dir": "rec", "stop_reason": "disk full: 0.4 MB free"}}) == [
        "recording rec: disk full: 0.4 MB free"]
    assert recording_errors({"recording": {"dir": "rec", "stop_reason": None}}) == ["recording rec: not finished"]
