"""Ctrl-C and SIGTERM for the session commands: the first stops cleanly, the third forces the stop.

A terminal's Ctrl-C and a service manager's SIGTERM (systemd, ``timeout``) go to the whole process
group and mean the same thing here: stop the session and keep everything that arrived. The
first one interrupts the main thread (:class:`KeyboardInterrupt`) unless a stop is already under
way; later ones never interrupt the stop itself. The second says "stopping, please wait"; the
third runs the registered force callbacks (the recorder closes its files without draining) and
ends the process at once with exit code 130, saying what is lost.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["StopSignals", "install_stop_signals", "stop_begun", "on_force"]

_HINT = "a third Ctrl-C forces the stop and loses what is still queued"


class StopSignals:
    """Counts SIGINT/SIGTERM and decides what each one does (see the module docstring)."""

    def __init__(self) -> None:
        self.received = 0
        self.requested = threading.Event()
        self._stopping = False
        self._force: list[Callable[[], str]] = []

    def install(self) -> StopSignals:
        """Handle SIGINT and SIGTERM in this process (also when the parent left SIGINT ignored)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)
        return self

    def stop_begun(self) -> None:
        """A clean stop is under way: from now on a signal never interrupts it."""
        self._stopping = True

    def on_force(self, callback: Callable[[], str]) -> Callable[[], None]:
        """Run ``callback`` on a forced stop (it returns what was lost); returns the unregister call."""
        self._force.append(callback)
        return lambda: self._force.remove(callback) if callback in self._force else None

    def __call__(self, signum: int, frame) -> None:
        self.received += 1
        self.requested.set()
        name = signal.Signals(signum).name
        if self.received == 1 and not self._stopping:
            self._stopping = True
            raise KeyboardInterrupt
        if self.received < 3:
            sys.stderr.write(f"mmer: {name}: stopping, please wait ({_HINT})\n")
            sys.stderr.flush()
            return
        lost = [text for text in (callback() for callback in list(self._force)) if text]
        sys.stderr.write(f"mmer: {name} again: forced stop; lost: {'; '.join(lost) or 'queued frames and decisions'}\n")
        sys.stderr.flush()
        os._exit(130)


_current = StopSignals()


def install_stop_signals() -> StopSignals:
    """Install a fresh :class:`StopSignals` for SIGINT and SIGTERM (main thread only) and return it."""
    global _current
    _current = StopSignals().install()
    return _current


def stop_begun() -> None:
    """Tell the installed handler that a clean stop is under way (harmless when none is installed)."""
    _current.stop_begun()


def on_force(callback: Callable[[], str]) -> Callable[[], None]:
    """Register ``callback`` with the installed handler for a forced stop; returns the unregister call."""
    return _current.on_force(callback)
