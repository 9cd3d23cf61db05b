"""A background sampler of this process's resident memory, shared by the benchmarks."""

from __future__ import annotations

import threading
import time

import psutil

__all__ = ["RssSampler"]


class RssSampler:
    """Sample RSS every ``interval`` seconds while the ``with`` block runs.

    ``samples`` holds ``(seconds since start, MiB)``; ``start_mb`` and ``peak_mb`` are the RSS at
    entry and the highest value seen (including one last reading at exit).
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = float(interval)
        self._proc = psutil.Process()
        self.start_mb = self._read()
        self.peak_mb = self.start_mb
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mmer-rss", daemon=True)

    def _read(self) -> float:
        return self._proc.memory_info().rss / 2**20

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._halt.wait(self.interval):
            mb = self._read()
            self.samples.append((time.monotonic() - t0, mb))
            self.peak_mb = max(self.peak_mb, mb)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._halt.set()
        self._thread.join(timeout=5)
        self.peak_mb = max(self.peak_mb, self._read())
