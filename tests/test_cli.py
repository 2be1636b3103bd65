from __future__ import annotations

import subprocess
import sys

import pytest

from bgpd import __version__
from bgpd.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"bgpd {__version__}"


def test_console_script_is_installed() -> None:
    out = subprocess.run([sys.executable, "-m", "bgpd", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"bgpd {__version__}"


def test_missing_namespace_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kernel", "show", "--netns", "bgpd-no-such-namespace"]) == 1
    assert "network namespace 'bgpd-no-such-namespace' does not exist" in capsys.readouterr().err


def test_config_shows_what_the_daemon_would_leave_out(tmp_path: object,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "cluster.yaml").write_text("""
apiVersion: v1
kind: Node
metadata: {name: n1, annotations: {projectcalico.org/IPv4Address: 192.0.2.1/24}}
---
apiVersion: v1
kind: Node
metadata: {name: n2, annotations: {projectcalico.org/IPv4Address: 192.0.2.2/24}}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata: {name: tor-alt-port}
spec: {peerIP: "192.0.2.2:1790", asNumber: 64512}
""")
    assert main(["config", "--resources", str(folder), "--node", "n1"]) == 0
    out = capsys.readouterr().out
    assert "peers (1):" in out and "Global_192_0_2_2_port_1790" in out  # explicit wins
    assert "BGPConfiguration 'default': spec.nodeToNodeMeshEnabled: peer Mesh_192_0_2_2" in out
    assert "one session per address" in out


def test_a_reply_of_any_size_is_read(tmp_path: object) -> None:
    import asyncio
    import json
    from pathlib import Path

    from bgpd.observability import request

    path = Path(str(tmp_path)) / "s.sock"
    rows = [{"prefix": f"172.17.{i // 250}.{i % 250}/32", "kernel": "installed " * 20}
            for i in range(2000)]  # ~400 KB on one line

    async def main_() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(json.dumps(rows).encode() + b"\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(handle, path=str(path))
        async with server:
            assert await request(path, {"command": "routes"}) == rows

    asyncio.run(main_())


def test_takeover_says_so_when_bird_stops_answering(tmp_path: object,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A BIRD that greets, answers ``show status`` and then hangs on the next question: a
    clear error and exit 1, not a traceback, and nothing asked of it beyond the questions."""
    import socket
    import threading
    from pathlib import Path

    from bgpd import takeover

    path = Path(str(tmp_path)) / "bird.ctl"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    asked: list[bytes] = []
    held: list[socket.socket] = []

    def serve() -> None:
        for n in range(2):
            conn, _ = server.accept()
            conn.sendall(b"0001 BIRD 2.0.12 ready.\n")
            asked.append(conn.recv(100))
            if n == 0:
                conn.sendall(b"1000-BIRD 2.0.12\n0013 Daemon is up and running\n")
                conn.close()
            else:
                held.append(conn)  # silent from here on

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setattr(takeover.ask, "__defaults__", (0.5,))
    try:
        assert main(["takeover", "--bird-socket", str(path)]) == 1
    finally:
        server.close()
        for conn in held:
            conn.close()
    err = capsys.readouterr().err
    assert err.startswith("bgpd takeover: TimeoutError") and "nothing more was done" in err
    assert asked == [b"show status\n", b"show protocols all\n"]
