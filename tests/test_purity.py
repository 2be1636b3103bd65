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


SANS_IO = ["bgpd/translate.py", "bgpd/bfd/packet.py", "bgpd/bfd/session.py",
           "bgpd/speaker/core.py", "bgpd/speaker/config.py",
           "bgpd/speaker/pacing.py", "bgpd/speaker/codec.py", "node_controller/desired.py",
           "node_controller/store.py", "node_controller/services.py", "node_controller/gob.py",
           "node_controller/syncproto.py", "node_controller/typha_model.py",
           "node_controller/snappy.py", "node_controller/typha_session.py"]
TOP = RIBS.parent


@pytest.mark.parametrize("name", SANS_IO)
def test_sans_io_cores_are_pure(name: str) -> None:
    assert not imported_roots(TOP / name) & FORBIDDEN


@pytest.mark.parametrize("path", sorted((TOP / "bgpd" / "speaker").glob("*.py")),
                         ids=lambda p: p.name)
def test_the_speaker_knows_no_calico_model(path: Path) -> None:
    """The ExaBGP adapter speaks its own types: Calico's come in through bgpd.translate."""
    assert "node_controller" not in imported_roots(path)
