"""Fixtures for tests that build network namespaces (root only)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration_tests.netns import NetLab, ipip_supported, require_root, sweep_leftovers

_WHY_NOT = require_root()


def pytest_report_header() -> list[str]:
    if _WHY_NOT:
        return [f"namespace tests: skipped ({_WHY_NOT})"]
    removed = sweep_leftovers()
    kind = "real ipip device" if ipip_supported() else (
        "veth stand-in named tunl0 (this kernel has no IPIP module)"
    )
    lines = [f"tunl0: {kind}"]
    if removed:
        lines.append(f"swept {len(removed)} namespaces left by killed runs")
    return lines


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration_tests" in str(item.fspath):
            item.add_marker(pytest.mark.netns)
            if _WHY_NOT:
                item.add_marker(pytest.mark.skip(reason=_WHY_NOT))


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with NetLab() as netlab:
        yield netlab

