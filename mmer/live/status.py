"""A live terminal view of a running session (rich), or a periodic log line when not on a TTY.

It shows, per stream, the effective versus nominal rate, drops, the clock offset and how full
the buffer is; then the candidates and decisions as they happen. The view only reads a
snapshot dict that the pipeline builds, so it cannot slow the pipeline down by more than one
snapshot per refresh.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

__all__ = ["StatusView", "render_status"]

log = logging.getLogger(__name__)


def _fmt(value, spec: str, empty: str = "-") -> str:
    if value is None:
        return empty
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def render_status(snapshot: dict) -> Group:
    """Build the rich renderable for one snapshot.

    ``snapshot`` holds ``streams`` (dicts with ``name, type, nominal_hz, effective_hz, received,
    drops, offset_ms, fill_pct, state``), ``candidates`` (int), ``recent`` (lines of text),
    ``elapsed_s`` and optionally ``recording`` (str).
    """
    table = Table(title=f"mmer live  {snapshot.get('elapsed_s', 0):6.1f} s", expand=False, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0),
                  pad_edge=False)
    table.add_column("stream", no_wrap=True, min_width=10)
    for col in ("type", "Hz", "eff Hz", "recv", "drops", "offs ms", "buf%", "state"):
        table.add_column(col, justify="left" if col in ("type", "state") else "right", no_wrap=True)
    for s in snapshot.get("streams", []):
        state = s.get("state", "ok")
        style = "red" if state not in ("ok", "") else None
        table.add_row(
            s.get("name", "?"), s.get("type", ""), _fmt(s.get("nominal_hz"), ".1f"), _fmt(s.get("effective_hz"), ".1f"),
            _fmt(s.get("received"), "d"), _fmt(s.get("drops"), "d"), _fmt(s.get("offset_ms"), ".2f"),
            _fmt(s.get("fill_pct"), ".0f"), state, style=style,
        )
    lines = [table, f"candidates: {snapshot.get('candidates', 0)}   decisions: {snapshot.get('decisions', 0)}"]
    if snapshot.get("recording"):
        lines.append(f"recording: {snapshot['recording']}")
    lines.extend(snapshot.get("recent", [])[-8:])
    return Group(*lines)


class StatusView:
    """Refresh a rich Live view from ``snapshot()`` in a background thread.

    Parameters
    ----------
    snapshot : callable
        Returns the dict that :func:`render_status` draws.
    enabled : bool, optional
        ``None`` shows the view only when stderr is a terminal; otherwise a one-line summary is
        logged every ``log_every_s`` seconds.
    refresh_hz : float
        Redraws per second.
    """

    def __init__(
        self,
        snapshot: Callable[[], dict],
        *,
        enabled: bool | None = None,
        refresh_hz: float = 2.0,
        log_every_s: float = 10.0,
        console: Console | None = None,
    ) -> None:
        if refresh_hz <= 0:
            raise ValueError(f"refresh_hz must be > 0, got {refresh_hz}")
        self._snapshot = snapshot
        self.console = console or Console(stderr=True)
        self.enabled = (sys.stderr.isatty() and self.console.is_terminal) if enabled is None else bool(enabled)
        self.refresh_hz, self.log_every_s = refresh_hz, log_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renders = 0

    def start(self) -> StatusView:
        """Start refreshing (a no-op thread that only logs when disabled)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mmer-status", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        if not self.enabled:
            while not self._stop.wait(self.log_every_s):
                snap = self._snapshot()
                log.info(
                    "%.0f s: %d candidates, %d decisions; %s", snap.get("elapsed_s", 0), snap.get("candidates", 0),
                    snap.get("decisions", 0),
                    ", ".join(f"{s['name']} {_fmt(s.get('effective_hz'), '.1f')} Hz" for s in snap.get("streams", [])),
                )
            return
        with Live(render_status(self._snapshot()), console=self.console, refresh_per_second=self.refresh_hz,
                  transient=False) as live:
            while not self._stop.wait(1.0 / self.refresh_hz):
                live.update(render_status(self._snapshot()))
                self.renders += 1
            live.update(render_status(self._snapshot()))

    def stop(self) -> None:
        """Draw a last frame and stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StatusView:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
