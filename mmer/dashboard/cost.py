"""What the dashboard costs a live session: ``mmer bench live --dashboard`` runs the same session twice.

One run has no dashboard; the other has ``mmer dashboard`` in its child process, the
spotter's score tap, and one WebSocket reader in a process of its own standing in for the
browser (it reads every message, as a page does, and draws nothing). Both runs use the same
seed, so the same frames reach the spotter; the figures to compare are the early-ME latency,
the frames dropped, the pipeline process's CPU time and the dashboard process's CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

__all__ = ["paired_runs", "read_feed"]


def paired_runs(args: argparse.Namespace, run_once: Callable[..., dict]) -> dict:
    """Run ``run_once`` without and with the dashboard, in one LSL session; report both and the cost.

    ``args.dashboard`` is the order: ``"off-on"`` (default) or ``"on-off"``, to tell the
    dashboard's cost from the second run's.

    CPU is counted while the pipeline runs (from when its consumers start to when they stop), and
    from ``args.warmup`` seconds on, so that neither process's start-up (imports, model, face
    meshes) counts.
    """
    from mmer.dashboard.process import DashboardProcess
    from mmer.dashboard.tap import ScoreTap
    from mmer.live.demo import LSL_WARNINGS_ONLY
    from mmer.streams import configure_lsl

    session = f"mmer-bench-live-{uuid.uuid4().hex[:8]}"
    configure_lsl(session, extra_lines=LSL_WARNINGS_ONLY)  # before the score tap's outlet loads liblsl
    results = {}
    for mode in ("with", "without") if args.dashboard == "on-off" else ("without", "with"):
        consumers, tap, dash = [], None, None
        if mode == "with":
            dash = DashboardProcess("127.0.0.1:0", extra_args=["--streams", "starts-with(name,'mmer.')"])
            consumers, tap = [dash, _FeedReader(dash, args.seconds)], ScoreTap()
        meters = {"pipeline": _CpuMeter(os.getpid(), args.warmup)}
        if dash is not None:
            meters["dashboard"] = _CpuMeter(dash, args.warmup)
        result = run_once(args, session=session, consumers=[*meters.values(), *consumers], on_score=tap)
        results[mode] = {"result": result, **{f"{k}_cpu_pct": m.pct for k, m in meters.items()}}
        if dash is not None:
            results[mode]["feed"] = {"messages_read": consumers[1].messages, "bytes_read": consumers[1].bytes}
    off, on = results["without"]["result"], results["with"]["result"]

    def p95(result, key):
        return result["latency_ms"].get(key, {}).get("p95")

    return {
        "without": off,
        "with": on,
        "compare": {
            "early_me_p95_ms": [p95(off, "early_me"), p95(on, "early_me")],
            "early_p95_ms": [p95(off, "early"), p95(on, "early")],
            "frames_dropped_pct": [off["frames_dropped_pct"], on["frames_dropped_pct"]],
            "physio_lost": [off["physio_lost"], on["physio_lost"]],
            "events": [off["events"], on["events"]],
            "pipeline_cpu_pct_of_one_core": [results["without"]["pipeline_cpu_pct"],
                                             results["with"]["pipeline_cpu_pct"]],
            "dashboard_cpu_pct_of_one_core": results["with"]["dashboard_cpu_pct"],
            "dashboard_cpu_pct_of_machine": None if results["with"]["dashboard_cpu_pct"] is None
            else results["with"]["dashboard_cpu_pct"] / (os.cpu_count() or 1),
            "feed": results["with"]["feed"],
        },
        "order": args.dashboard,
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }


class _CpuMeter:
    """A pipeline consumer that measures a process's CPU from ``warmup`` s after the start to the stop.

    Listed before the dashboard, so that it reads the child's CPU before the child is stopped.
    """

    def __init__(self, target, warmup: float) -> None:
        self.target, self.warmup = target, warmup
        self.pct: float | None = None
        self._mark: tuple[float, float] | None = None
        self._timer: threading.Timer | None = None

    def _cpu(self) -> float | None:
        import psutil

        pid = self.target if isinstance(self.target, int) else getattr(self.target.proc, "pid", None)
        if pid is None:
            return None
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system

    def _take(self) -> None:
        cpu = self._cpu()
        if cpu is not None:
            self._mark = (time.monotonic(), cpu)

    def start(self) -> None:
        self._timer = threading.Timer(self.warmup, self._take)
        self._timer.start()

    def stop(self) -> None:
        self._timer.cancel()
        cpu = self._cpu()
        if self._mark is not None and cpu is not None:
            self.pct = 100.0 * (cpu - self._mark[1]) / (time.monotonic() - self._mark[0])


class _FeedReader:
    """A WebSocket reader in a child process, started once the dashboard printed its URL."""

    def __init__(self, dash, seconds: float) -> None:
        self.dash, self.seconds = dash, seconds
        self.proc: subprocess.Popen | None = None
        self.messages = self.bytes = None

    def start(self) -> None:
        if not self.dash.ready.wait(60):
            raise RuntimeError("the dashboard did not start within 60 s")
        self.proc = subprocess.Popen([sys.executable, "-m", "mmer.dashboard.cost", self.dash.url, str(self.seconds + 30)],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        if out.strip():
            counts = json.loads(out.strip().splitlines()[-1])
            self.messages, self.bytes = counts["messages"], counts["bytes"]


def read_feed(url: str, seconds: float) -> dict:
    """Read the dashboard's WebSocket feed for ``seconds`` (or until SIGTERM); count what came."""
    import signal

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    counts = {"messages": 0, "bytes": 0}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ws_url = url.replace("http://", "ws://").replace("/?token=", "/ws?token=")
    deadline = time.monotonic() + seconds
    with contextlib.suppress(ConnectionClosed), connect(ws_url, open_timeout=30, max_size=None) as ws:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                text = ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            counts["messages"] += 1
            counts["bytes"] += len(text)
    return counts


if __name__ == "__main__":
    print(json.dumps(read_feed(sys.argv[1], float(sys.argv[2]))))
