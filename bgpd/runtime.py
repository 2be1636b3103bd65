"""Process-wide settings of the Python runtime that the daemon applies at start."""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable


def tune_gc() -> None:
    """Collect young objects less often.

    The RIB allocates several small immutable objects per route update and holds hundreds
    of thousands of them; with the default thresholds (700, 10, 10) the cyclic collector
    runs every few hundred updates and keeps rescanning them — about a third of the update
    cost at 100k routes.  Those objects form no reference cycles, so collecting less often
    costs no memory; what start-up allocated is moved out of the collector's sight.  Only the
    young generations are collected first: the automatic collections during the imports
    left the old one without garbage, and a full pass over every imported object costs a
    start 8 to 14 ms of CPU (the young generations: about 1 ms).
    """
    gc.collect(1)
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _malloc_trim() -> Callable[[int], int] | None:
    try:  # the process's own symbols hold the C library's (ctypes.util's search for its
        # file costs every process ~10 ms at start)
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # glibc; musl has none
    except (OSError, AttributeError, TypeError):
        return None
    return trim


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the memory of many freed routes back to the system.

    Freed objects stay in the process: the C heap keeps free pages until ``malloc_trim``, and
    cycles wait for a collection the raised thresholds above make rare.  Called after a
    large withdrawal, once the daemon is quiet; Python's own arenas are returned by the
    allocator when they empty.
    """
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


def rss_bytes() -> int:
    """This process's resident set, from /proc/self/statm (0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class LoopLag:
    """How late the event loop runs: a timer asks to wake every ``interval`` and measures by
    how much it overslept.  Every task of the daemon — BGP keepalives, the kernel sync,
    ``bgpd status`` — waits at least that long behind whatever held the loop.  ``recent`` is
    the worst lag of the last ``window`` seconds or more (two half windows), ``worst`` since
    the start; a lag over ``warn_above`` is logged, with the time it was seen."""

    def __init__(self, *, interval: float = 0.1, window: float = 60.0,
                 warn_above: float = 0.5) -> None:
        self.interval, self.window, self.warn_above = interval, window, warn_above
        self.last = self.worst = 0.0
        self._halves = [0.0, 0.0]  # the worst of the current and of the previous half window
        self._half_started = 0.0

    @property
    def recent(self) -> float:
        return max(self._halves)

    def seen(self, lag: float, now: float) -> None:
        if now - self._half_started >= self.window / 2:
            self._halves = [0.0, self._halves[0]]
            self._half_started = now
        self.last = lag
        self.worst = max(self.worst, lag)
        self._halves[0] = max(self._halves[0], lag)

    async def run(self) -> None:
        import asyncio

        import structlog

        log = structlog.get_logger("bgpd.runtime")
        loop = asyncio.get_running_loop()
        self._half_started = loop.time()
        while True:
            asked = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            lag = max(0.0, now - asked)
            self.seen(lag, now)
            if lag > self.warn_above:
                log.warning("event_loop_stalled", seconds=round(lag, 3))
