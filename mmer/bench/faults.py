"""``mmer bench faults``: end a live recording every way a session ends, and count what survived.

A publisher process (built-in sensors: EDA at 200 Hz whose values are their own sequence numbers,
RGB 64x48 at 30 fps (320x240 on the full disk) whose frame indices are theirs, and a marker every second) feeds a real
``mmer record`` process, which records through LabRecorderCLI and the video writers. Each fault
then strikes: signals to ``mmer record``'s process group (SIGINT once, twice and three times,
SIGTERM), a real full disk (a 3 MB tmpfs; skipped where mounting is not permitted), the sensor
process killed, the EDA outlet closed and opened again, and stream ids that look like paths.

Per fault it reports what arrived (samples and frames sent between the recording's first
sample and the moment its stop was requested), what was recorded (in the XDF, in the sidecar),
what was lost (arrived but not recorded), how long the stop took, and whether the recording
opens with pyxdf and with ``mmer inspect xdf`` and plays (every written frame decodes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

NAME = "faults"
HELP = "end a live recording every way a session ends (signals, full disk, dead sensor, ...) and count losses"

FAULTS = ("sigint", "sigterm_group", "sigint_twice", "sigint_thrice", "disk_full", "sensor_killed",
          "outlet_restart", "path_source_ids")
_EDA_HZ = 200.0
_FPS = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", nargs="+", choices=FAULTS, metavar="FAULT",
                        help=f"run only these ({', '.join(FAULTS)})")
    parser.add_argument("--seconds", type=float, default=4.0, help="recording time before each fault strikes")
    parser.add_argument("--keep", type=Path, help="keep the recordings in this folder (default: a temporary one)")


def _publish(tag: str, rgb_id: str, log_path: str, control, size: tuple[int, int]) -> None:
    """The sensor process: publish, log every push (``kind last_seq lsl_time``), obey ``restart``/``stop``."""
    from mmer.clock import local_clock
    from mmer.streams import StreamType, markers_spec, physio_spec, video_spec
    from mmer.transport import MarkerOutlet, SampleOutlet, VideoOutlet

    eda_spec = physio_spec("EDA", rate=_EDA_HZ, name=f"{tag}.eda", source_id=f"{tag}-eda")
    eda = SampleOutlet(eda_spec)
    width, height = size
    rgb = VideoOutlet(video_spec(StreamType.VIDEO_RGB, width=width, height=height, fps=_FPS,
                                 endpoint="tcp://127.0.0.1:*", name=f"{tag}.rgb", source_id=rgb_id))
    marks = MarkerOutlet(markers_spec(f"{tag}.marks", source_id=f"{tag}-marks"))
    rng = np.random.default_rng(7)
    sent = frame = 0
    t0 = local_clock()
    with open(log_path, "w", buffering=1, encoding="utf-8") as log:
        while True:
            if control.poll():
                command = control.recv()
                if command == "stop":
                    break
                if command == "restart":  # the sensor app restarts: same stream, new outlet
                    eda.close()
                    eda = SampleOutlet(eda_spec)
                    log.write(f"r {sent - 1} {local_clock()!r}\n")
            now = local_clock()
            due = int((now - t0) * _EDA_HZ)
            if due > sent:
                values = np.arange(sent, due, dtype=np.float32)[:, None]
                stamps = t0 + np.arange(sent, due) / _EDA_HZ
                eda.push_chunk(values, stamps)
                sent = due
                log.write(f"e {sent - 1} {now!r}\n")
            rgb.push(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), frame, now)
            log.write(f"f {frame} {now!r}\n")
            if frame % int(_FPS) == 0:
                marks.push(json.dumps({"frame": frame}), now)
            frame += 1
            time.sleep(max(0.0, t0 + frame / _FPS - local_clock()))
    for outlet in (eda, rgb, marks):
        outlet.close()


def _sent(log_path: Path, kind: str, until: float) -> tuple[int, list[float]]:
    """Last sequence number of ``kind`` pushed at or before ``until`` (-1: none), and restart times."""
    last, restarts = -1, []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue  # a line cut by a killed process
        if parts[0] == "r":
            restarts.append(float(parts[2]))
        elif parts[0] == kind and float(parts[2]) <= until:
            last = int(parts[1])
    return last, restarts


class _Tmpfs:
    """A real small tmpfs (``mount -t tmpfs``), or the reason it cannot be mounted here."""

    def __init__(self, path: Path, size: str) -> None:
        self.path, self.size, self.mounted, self.reason = path, size, False, ""

    def __enter__(self) -> _Tmpfs:
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],
                              capture_output=True, text=True, check=False)
        self.mounted = done.returncode == 0
        self.reason = "" if self.mounted else f"mount -t tmpfs is not permitted here: {done.stderr.strip()}"
        return self

    def __exit__(self, *exc) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)


def _wait_for(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def run_fault(fault: str, root: Path, *, seconds: float = 4.0) -> dict:
    """Record a live session into ``root/fault``, strike it with ``fault``, and measure the result."""
    from mmer.clock import local_clock

    tag = f"f{uuid.uuid4().hex[:6]}"
    rgb_id = f"../../{tag}-escaped" if fault == "path_source_ids" else f"{tag}-rgb"
    folder = root / fault
    with contextlib.ExitStack() as stack:
        min_free = "0"
        if fault == "disk_full":
            disk = stack.enter_context(_Tmpfs(root / "tmpfs", "3m"))
            if not disk.mounted:
                return {"fault": fault, "skipped": disk.reason}
            folder, min_free = disk.path / fault, "0.5"
        ctx = mp.get_context("spawn")
        control, child_end = ctx.Pipe()
        log_path = root / f"{fault}.sent"
        # On the full disk the camera sends noise at 320x240 (about 1 MB/s as mp4v): the recording
        # itself fills the disk, as a long session does.
        size = (320, 240) if fault == "disk_full" else (64, 48)
        publisher = ctx.Process(target=_publish, args=(tag, rgb_id, str(log_path), child_end, size), daemon=True)
        publisher.start()
        stack.callback(lambda: publisher.kill() if publisher.is_alive() else None)
        stack.callback(lambda: control.send("stop") if publisher.is_alive() else None)
        config = root / f"{fault}.yaml"
        config.write_text(f"recording: {{min_free_mb: {min_free}, rgb_codec: mp4v}}\n", encoding="utf-8")
        err_path = root / f"{fault}.stderr"
        with open(err_path, "w", encoding="utf-8") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mmer", "record", str(folder), "--config", str(config), "--json",
                 "--streams", f"{tag}.eda", f"{tag}.rgb", f"{tag}.marks"],
                stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
            )
        stack.callback(lambda: proc.kill() if proc.poll() is None else None)
        started = _wait_for(lambda: "Ctrl-C to stop" in err_path.read_text(encoding="utf-8") or proc.poll() is not None,
                            60.0)
        if not started or proc.poll() is not None:
            tail = err_path.read_text(encoding="utf-8")[-500:]
            return {"fault": fault, "error": f"mmer record did not start: {tail}"}
        time.sleep(seconds)
        t_signal = local_clock()
        struck = time.monotonic()
        if fault == "sensor_killed":
            publisher.kill()
            time.sleep(1.0)
        if fault == "outlet_restart":
            control.send("restart")
            time.sleep(seconds)
        signals = {"sigint_twice": [signal.SIGINT] * 2, "sigint_thrice": [signal.SIGINT] * 3,
                   "sigterm_group": [signal.SIGTERM], "disk_full": []}.get(fault, [signal.SIGINT])
        if signals:
            struck = time.monotonic()
        for sig in signals:
            os.killpg(proc.pid, sig)
            time.sleep(0.3)
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        stop_s = time.monotonic() - struck
        stderr = err_path.read_text(encoding="utf-8")
        return _measure(fault, folder, log_path, tag, proc.returncode, out, stderr, stop_s, t_signal, root)


def _measure(fault: str, folder: Path, log_path: Path, tag: str, code: int, out: str, stderr: str, stop_s: float,
             t_signal: float, root: Path) -> dict:
    import cv2
    import pyxdf

    # stop_s: from the (first) signal to the process's exit; on the full disk, from the start of
    # the fault to the exit, as the recorder stops by itself.
    result = {"fault": fault, "exit_code": code, "stop_s": round(stop_s, 2)}
    manifest_path = folder / "session.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    result["stop_reason"] = manifest.get("stop_reason")
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    result["errors_in_json"] = summary.get("errors")
    if fault == "sigint_thrice":
        result["forced_message"] = "forced stop" in stderr
        # LabRecorder, in its own session, finishes the file after mmer is gone.
        _wait_for(lambda: _footers(folder / "session.xdf"), 15.0, 0.5)
    if fault == "sigint_twice":
        result["please_wait_message"] = "stopping, please wait" in stderr
    clock = manifest.get("lsl_clock", {})
    until = clock.get("stop_requested") or t_signal
    if isinstance(clock.get("stop"), float) and isinstance(clock.get("stop_requested"), float):
        result["close_s"] = round(clock["stop"] - clock["stop_requested"], 2)  # writers, LabRecorder, manifest
    try:
        streams, _ = pyxdf.load_xdf(str(folder / "session.xdf"), dejitter_timestamps=False)
        result["pyxdf_opens"] = True
    except Exception as err:  # noqa: BLE001 - any failure means unreadable, which is the measurement
        streams, result["pyxdf_opens"] = [], False
        result["pyxdf_error"] = f"{type(err).__name__}: {err}"
    by_name = {s["info"]["name"][0]: s for s in streams}
    result["footers"] = bool(streams) and all("footer" in s for s in streams)
    eda_last, restarts = _sent(log_path, "e", until)
    frame_last, _ = _sent(log_path, "f", until)
    eda = by_name.get(f"{tag}.eda")
    got = np.asarray(eda["time_series"], dtype=np.int64)[:, 0] if eda is not None and len(eda["time_stamps"]) else []
    result["eda"] = _count(got, eda_last)
    rgb = by_name.get(f"{tag}.rgb")
    has_frames = rgb is not None and len(rgb["time_stamps"])
    xdf_frames = np.asarray(rgb["time_series"])[:, 0].astype(np.int64) if has_frames else []
    result["frame_index_stream"] = _count(xdf_frames, frame_last)
    video = next((v for v in manifest.get("files", {}).get("video", [])), None)
    if video is not None:
        table = folder / video["frames_csv"]
        rows = np.loadtxt(table, delimiter=",", skiprows=1, ndmin=2) if table.is_file() else np.zeros((0, 2))
        result["sidecar"] = _count(rows[:, 0].astype(np.int64) if len(rows) else [], frame_last)
        movie = folder / video["file"]
        cap = cv2.VideoCapture(str(movie))
        decoded = 0
        while cap.read()[0]:
            decoded += 1
        cap.release()
        result["sidecar"].update(file=video["file"], frames_written=video["frames_written"], frames_decoded=decoded)
        result["sidecar_inside_folder"] = movie.resolve().is_relative_to(folder.resolve())
    if fault == "outlet_restart" and restarts and result["eda"]["lost"]:
        result["restart_lost_s"] = round(result["eda"]["lost"] / _EDA_HZ, 3)
    inspect = subprocess.run([sys.executable, "-m", "mmer", "inspect", "xdf", str(folder), "--json"],
                             capture_output=True, text=True, check=False)
    result["inspect_exit_code"] = inspect.returncode
    if inspect.returncode == 0:
        report = json.loads(inspect.stdout.strip().splitlines()[-1])
        result["inspect_defects"] = report.get("defect_counts", {})
    escaped = list(root.parent.glob(f"{tag}*")) + list(root.glob(f"{tag}*"))
    result["files_outside"] = [str(p) for p in escaped]
    result["samples_lost"] = result["eda"]["lost"] + result["frame_index_stream"]["lost"] + (
        result.get("sidecar", {}).get("lost", 0))
    expected_reason = {"disk_full": "disk full", "sigint_thrice": "forced stop"}.get(fault, "stopped")
    expected_code = {"disk_full": 1, "sigint_thrice": 130}.get(fault, 0)
    result["survived"] = bool(
        result["pyxdf_opens"] and result["footers"] and result["inspect_exit_code"] == 0
        and str(result["stop_reason"] or "").startswith(expected_reason) and code == expected_code
        and (video is None or result["sidecar"]["frames_decoded"] == result["sidecar"]["frames_written"])
        and not result["files_outside"]
        # the restart's gap is reported as a clock jump of the stream, as it must be; nothing else may be
        and not set(result.get("inspect_defects", {})) - ({"clock_jump"} if fault == "outlet_restart" else set())
        and (fault == "outlet_restart" or result["samples_lost"] == 0)
        and (fault != "disk_full" or bool(result["errors_in_json"]))
    )
    return result


def _footers(path: Path) -> bool:
    import pyxdf

    try:
        streams, _ = pyxdf.load_xdf(str(path))
    except Exception:  # noqa: BLE001 - not finished yet
        return False
    return bool(streams) and all("footer" in s for s in streams)


def _count(recorded, last_sent: int) -> dict:
    """Arrived = every sequence number from the first recorded one to the last sent before the stop."""
    recorded = np.unique(np.asarray(recorded, dtype=np.int64))
    if not len(recorded):
        return {"arrived": None, "recorded": 0, "lost": 0 if last_sent < 0 else last_sent + 1}
    first = int(recorded[0])
    arrived = max(0, last_sent - first + 1)
    inside = np.count_nonzero((recorded >= first) & (recorded <= last_sent))
    return {"arrived": arrived, "recorded": int(len(recorded)), "lost": int(arrived - inside)}


def run(args: argparse.Namespace) -> dict:
    from mmer.streams import configure_lsl

    configure_lsl(f"mmer-bench-faults-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mmer-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    by_fault = {}
    try:
        for fault in args.only or FAULTS:
            by_fault[fault] = run_fault(fault, root, seconds=args.seconds)
            print(f"{fault}: {'survived' if by_fault[fault].get('survived') else 'FAILED'}"
                  f"{' (' + by_fault[fault]['skipped'] + ')' if 'skipped' in by_fault[fault] else ''}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    ran = [r for r in by_fault.values() if "skipped" not in r]
    restart = by_fault.get("outlet_restart", {})
    return {
        "faults": len(ran),
        "survived": sum(bool(r.get("survived")) for r in ran),
        "samples_lost": sum(r.get("samples_lost", 0) for r in ran if r["fault"] != "outlet_restart"),
        "outlet_restart_lost_samples": restart.get("samples_lost"),
        "outlet_restart_lost_s": restart.get("restart_lost_s"),
        "unreadable_recordings": sum(not (r.get("pyxdf_opens") and r.get("inspect_exit_code") == 0) for r in ran),
        "stop_s_max": max((r["stop_s"] for r in ran if "stop_s" in r and r["fault"] != "disk_full"), default=None),
        "close_s_max": max((r["close_s"] for r in ran if "close_s" in r), default=None),
        "skipped": {f: r["skipped"] for f, r in by_fault.items() if "skipped" in r},
        "by_fault": by_fault,
        "load_avg_1min": os.getloadavg()[0],
    }
