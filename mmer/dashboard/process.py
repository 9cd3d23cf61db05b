"""The dashboard beside a live pipeline, in a child process of its own.

A child process keeps the dashboard's work (inlets, JPEG encoding, face finding, neurokit2, the
web server) off the pipeline's interpreter: it takes no GIL time from the spotter or the
decision threads, and its CPU can be measured apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["DashboardProcess"]


class DashboardProcess:
    """Start ``mmer dashboard`` as a child that exits with this process.

    It has the pipeline-consumer interface (``start``/``stop``), so that the pipeline starts it
    once its own inlets are open: a synthetic camera that waits for its first consumer then
    starts for the pipeline, not for the dashboard.

    Parameters
    ----------
    listen : str
        ``HOST:PORT`` to serve on.
    recording : path, optional
        The recording folder to show.
    extra_args : list of str, optional
        More ``mmer dashboard`` options.
    """

    def __init__(self, listen: str, *, recording: Path | None = None, extra_args: list[str] | None = None) -> None:
        from mmer.dashboard.server import parse_listen

        parse_listen(listen)  # a bad value fails here, before any source starts
        self.listen = listen
        self.recording = recording
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.ready = threading.Event()
        self.cpu_s: float | None = None
        self.wall_s: float | None = None
        self._t0 = 0.0

    def command(self) -> list[str]:
        """The child's command line."""
        cmd = [sys.executable, "-m", "mmer", "dashboard", "--listen", self.listen, "--exit-with", str(os.getpid())]
        if self.recording is not None:
            cmd += ["--recording", str(self.recording)]
        return cmd + self.extra_args

    def start(self) -> None:
        """Start the child; its stderr (the page's URL first) is passed on to this process's stderr."""
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._relay, args=(self.proc.stderr,), name="dash-stderr", daemon=True).start()

    def _relay(self, stream) -> None:
        for line in stream:
            if self.url is None and line.startswith("dashboard: "):
                self.url = line.split(" ", 1)[1].strip()
                self.ready.set()
            sys.stderr.write(line)

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) the child has used so far; ``None`` when it is not running."""
        import psutil

        if self.proc is None:
            return None
        try:
            times = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after 5 s) and keep the CPU seconds it used."""
        if self.proc is None:
            return
        self.wall_s = time.monotonic() - self._t0
        self.cpu_s = self.cpu_seconds()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None
