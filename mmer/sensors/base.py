"""The small protocol every sensor adapter follows.

An adapter owns one acquisition thread, publishes its streams (LSL for samples and frame timing,
ZeroMQ for pixels), exposes health counters, and is a context manager. ``start()`` returns once
outlets exist; ``stop()`` joins the thread and closes outlets, pushing whatever was acquired.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from mmer.streams import StreamSpec

__all__ = ["Sensor", "SensorHealth", "SensorError"]


class SensorError(RuntimeError):
    """A sensor that cannot start (device absent, extra not installed, file unreadable)."""


@dataclass
class SensorHealth:
    """Counters that a status view and the session manifest report."""

    samples: int = 0
    frames: int = 0
    frames_dropped: int = 0
    errors: int = 0
    reconnects: int = 0
    nans: int = 0
    last_error: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain dict for JSON summaries."""
        return {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra


class Sensor(ABC):
    """Base class for adapters: a thread, start/stop, a context manager and health counters."""

    #: Short adapter name used by ``mmer stream <name>`` and session configs.
    name: str = ""

    def __init__(self) -> None:
        self.health = SensorHealth()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.log = logging.getLogger(f"mmer.sensors.{self.name or type(self).__name__}")

    @property
    @abstractmethod
    def specs(self) -> list[StreamSpec]:
        """The streams this sensor publishes."""

    @abstractmethod
    def _open(self) -> None:
        """Open the device and create outlets; raise :class:`SensorError` if impossible."""

    @abstractmethod
    def _run(self) -> None:
        """Acquisition loop; return when ``self._stop`` is set."""

    @abstractmethod
    def _close(self) -> None:
        """Release the device and outlets. Called once, after the loop has ended."""

    @property
    def running(self) -> bool:
        """True while the acquisition thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Sensor:
        """Open the device and start acquiring in a background thread."""
        if self.running:
            return self
        self._stop.clear()
        self._open()
        self._thread = threading.Thread(target=self._guarded_run, name=f"mmer-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _guarded_run(self) -> None:
        try:
            self._run()
        except Exception as err:  # noqa: BLE001 - a dying sensor must be reported, not crash the app
            self.health.errors += 1
            self.health.last_error = repr(err)
            self.log.exception("sensor %s stopped on error", self.name)

    def halt(self, timeout: float = 5.0) -> None:
        """Stop acquisition but keep the outlets open, so consumers can drain and close their
        inlets first (no broken-stream errors); :meth:`stop` closes them."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop acquisition, join the thread and close outlets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
            self._close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the sensor stops by itself (end of file) or ``timeout``; True if stopped."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> Sensor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
