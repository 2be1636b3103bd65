"""ribs/ stays pure: no IO, no event loop, no subprocess, no netlink, no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FORBIDDEN = {"asyncio", "socket", "subprocess", "pyroute2", "time", "datetime", "threading",
             "selectors", "os", "multiprocessing", "signal", "structlog", "logging"}
RIBS = Path(__file__).resolve().parent.parent / "ribs"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(RIBS.rglob("*.py")), ids=lambda p: p.name)
def test_ribs_module_is_pure(path: Path) -> None:
    assert not imported_roots(path) & FORBIDDEN


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom time import monotonic\n")
    assert imported_roots(bad) & FORBIDDEN == {"asyncio", "time"}
