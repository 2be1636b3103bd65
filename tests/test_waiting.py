"""The one waiting helper of the tests, the lab and the benchmarks."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from integration_tests.waiting import WaitTimeout, until, wait_for


def test_returns_once_the_check_holds() -> None:
    calls = itertools.count()
    assert wait_for(lambda: next(calls) >= 2, 5, "the third call", interval=0) >= 0


def test_a_timeout_says_how_the_last_check_failed() -> None:
    def broken() -> bool:
        raise KeyError("routes")

    with pytest.raises(WaitTimeout, match=r"waiting for routes \(the last check raised "
                                          r"KeyError: 'routes'\)\nlogs here"):
        wait_for(broken, 0.05, "routes", interval=0.01, context=lambda: "logs here")
    with pytest.raises(WaitTimeout, match=r"the last check returned \[\]"):
        wait_for(lambda: [], 0.05, "a list", interval=0.01)


def test_the_coroutine_face_and_a_blocking_check() -> None:
    calls = itertools.count()
    assert asyncio.run(until(lambda: next(calls) >= 1, 5, "the second call")) >= 0
    assert asyncio.run(until(lambda: True, 5, "a check in a thread", blocking=True)) >= 0
    with pytest.raises(WaitTimeout, match="returned 0"):
        asyncio.run(until(lambda: 0, 0.05, "zero", interval=0.01))
