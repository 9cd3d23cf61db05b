"""One clock for everything: the LSL clock.

Every timestamp in mmer is on ``pylsl.local_clock()``. Wall-clock time (``time.time()``) is only
used for human-readable manifests, never for alignment.
"""

from __future__ import annotations

import time

import pylsl

__all__ = ["local_clock", "sleep_until"]


def local_clock() -> float:
    """Return the current time on the LSL clock, in seconds."""
    return pylsl.local_clock()


def sleep_until(t_lsl: float, *, spin_s: float = 0.0005) -> None:
    """Sleep until the LSL clock reaches ``t_lsl``.

    Coarse ``time.sleep`` first, then a short spin, so schedules hold to well under a millisecond
    without burning a core.
    """
    while True:
        remaining = t_lsl - pylsl.local_clock()
        if remaining <= 0:
            return
        if remaining > spin_s:
            time.sleep(remaining - spin_s)
