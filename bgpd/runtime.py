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
