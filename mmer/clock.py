"""One clock for everything: the LSL clock.

Every timestamp in mmer is on ``pylsl.local_clock()``. Wall-clock time (``time.time()``) is only
used for human-readable manifests, never for alignment.
"""

from __future__ import annotations

import time

import pylsl

__all__ = ["local_clock", "sleep_until", "wall_to_lsl_offset"]


def local_clock() -> float:
    """Return the current time on the LSL clock, in seconds."""
    return pylsl.local_clock()


def wall_to_lsl_offset(tries: int = 5) -> float:
    """Return the offset that maps wall-clock seconds onto the LSL clock (``lsl = wall + offset``).

    Devices such as RealSense stamp frames on the system clock. One ``time.time()`` read next to one
    ``local_clock()`` read is off by however long the thread was preempted between them, which on a
    loaded machine is milliseconds and can reorder frames. Each try brackets ``time.time()`` between
    two LSL reads; the tightest bracket of ``tries`` wins and its midpoint is used.

    Parameters
    ----------
    tries : int
        Number of bracketed reads; the narrowest one is kept.

    Returns
    -------
    float
        Seconds to add to a ``time.time()`` value to put it on the LSL clock.
    """
    best_width, best_offset = float("inf"), 0.0
    for _ in range(max(1, tries)):
        before = pylsl.local_clock()
        wall = time.time()
        after = pylsl.local_clock()
        if after - before < best_width:
            best_width, best_offset = after - before, (before + after) / 2.0 - wall
    return best_offset


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
