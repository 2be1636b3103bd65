"""The gob codec against Go's own encoding/gob, through the Typha stand-in (a Go program of
this project, standard library only, whose message types mirror Typha's field for field).

No Typha binary can be built here; the stand-in's bytes are Go's, so what it decodes is what
Typha would decode, and what it encodes is what Typha sends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from node_controller.syncproto import Codec
from tests.test_gob import FIXTURES, expected, go_time, go_view

SOURCE = Path(__file__).resolve().parent / "typha_standin"
GO = shutil.which("go") or shutil.which("go", path="/usr/lib/go/bin")


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if GO is None:
        pytest.skip("go not installed (scripts/install-system-deps installs golang-go)")
    out = tmp_path_factory.mktemp("standin") / "typha-standin"
    env = {**os.environ, "GOCACHE": str(out.parent / "gocache"), "GOFLAGS": "-mod=mod",
           "GOPATH": str(out.parent / "gopath"), "CGO_ENABLED": "0"}
    subprocess.run([GO, "build", "-o", str(out), "."], cwd=SOURCE, env=env, check=True,
                   capture_output=True, timeout=300)
    return out


@pytest.mark.parametrize("name", ["hello", "session"])
def test_the_committed_fixtures_are_what_go_writes(standin: Path, tmp_path: Path,
                                                   name: str) -> None:
    subprocess.run([str(standin), "fixtures", str(tmp_path)], check=True, timeout=30)
    fresh = Codec().feed((tmp_path / f"{name}.gob").read_bytes())
    committed = Codec().feed((FIXTURES / f"{name}.gob").read_bytes())
    assert [go_view(m) for m in fresh] == [go_view(m) for m in committed]
    compressed = Codec()
    compressed.restart_decoder("snappy")
    assert compressed.feed((tmp_path / f"{name}.snappy").read_bytes()) == fresh
    assert json.loads((tmp_path / f"{name}.json").read_text()) == json.loads(
        (FIXTURES / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["hello", "session"])
def test_go_decodes_what_the_python_encoder_writes(standin: Path, tmp_path: Path,
                                                   name: str) -> None:
    messages = Codec().feed((FIXTURES / f"{name}.gob").read_bytes())
    encoder = Codec()
    path = tmp_path / "python.gob"
    path.write_bytes(b"".join(encoder.encode(m) for m in messages))
    out = subprocess.run([str(standin), "decode", str(path)], check=True, timeout=30,
                         capture_output=True, text=True).stdout
    decoded = json.loads(out)
    for item in decoded:
        for key, value in item["fields"].items():
            if key.endswith("Timestamp"):
                item["fields"][key] = go_time(value)
    assert decoded == expected(name)
