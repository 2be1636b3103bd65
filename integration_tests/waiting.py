"""Waiting on a condition, the one way the tests, the lab and the benchmarks do it.

``wait_for`` (blocking) and ``until`` (a coroutine) call ``check`` until it returns a true
value or ``timeout`` seconds pass; they return the seconds waited.  A check that raises is
a check that failed: the error is kept, and on timeout :class:`WaitTimeout` says what was
awaited and how the last check failed (its value, or its error) — a broken check does not
hide behind a bare timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class WaitTimeout(AssertionError):
    """The condition did not hold in time (an assertion: tests fail, not error)."""


def _outcome(check: Callable[[], Any]) -> tuple[bool, str]:
    try:
        value = check()
    except Exception as exc:
        return False, f"raised {type(exc).__name__}: {exc}"
    return bool(value), f"returned {value!r}"


def _timeout(what: str, timeout: float, last: str, context: Callable[[], str] | None) -> str:
    text = f"timed out after {timeout:g}s waiting for {what} (the last check {last[:500]})"
    return text + ("\n" + context() if context is not None else "")


def wait_for(check: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.05,
             context: Callable[[], str] | None = None) -> float:
    """Block until ``check()`` is true; ``context`` adds to the timeout's message (logs)."""
    start = time.monotonic()
    while True:
        ok, last = _outcome(check)
        if ok:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise WaitTimeout(_timeout(what, timeout, last, context))
        time.sleep(interval)


async def until(check: Callable[[], Any], timeout: float, what: str, *,
                interval: float = 0.02, blocking: bool = False) -> float:
    """Await until ``check()`` is true; ``blocking``: the check runs in a thread (it calls
    other programs), so the event loop goes on meanwhile."""
    start = time.monotonic()
    while True:
        ok, last = await asyncio.to_thread(_outcome, check) if blocking else _outcome(check)
        if ok:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise WaitTimeout(_timeout(what, timeout, last, None))
        await asyncio.sleep(interval)
