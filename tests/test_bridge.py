"""The API bridge never blocks ExaBGP: its events are read while commands cannot be written."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

from bgpd.speaker import bridge

MB = 1 << 20


def test_events_flow_while_exabgp_reads_no_command(tmp_path: Path) -> None:
    """ExaBGP writes 2 MB of events before it reads a command; meanwhile the daemon sends
    2 MB of commands (more than any pipe holds).  A bridge that blocks writing a command
    stops reading events, and both wait for ever."""
    path = str(tmp_path / "api.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    proc = subprocess.Popen(bridge.command(path),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    server.settimeout(10)
    daemon, _ = server.accept()
    events = b"".join(b'{"type": "state", "n": %d}\n' % i for i in range(80000))[:2 * MB]
    commands = b"".join(b"neighbor 198.51.100.%d announce route x\n" % (i % 250)
                        for i in range(60000))[:2 * MB]
    got_events, got_commands = bytearray(), bytearray()

    def exabgp() -> None:  # all its events first, then the commands
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(events)
        proc.stdin.flush()
        while len(got_commands) < len(commands):
            chunk = proc.stdout.read1(1 << 16)
            if not chunk:
                break
            got_commands.extend(chunk)

    def daemon_side() -> None:  # sends every command while it reads events
        sender = threading.Thread(target=daemon.sendall, args=(commands,), daemon=True)
        sender.start()
        while len(got_events) < len(events):
            chunk = daemon.recv(1 << 16)
            if not chunk:
                break
            got_events.extend(chunk)
        sender.join(30)

    threads = [threading.Thread(target=f, daemon=True) for f in (exabgp, daemon_side)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), (
            f"stuck: {len(got_events)} of {len(events)} event bytes, "
            f"{len(got_commands)} of {len(commands)} command bytes")
        assert bytes(got_events) == events and bytes(got_commands) == commands
    finally:
        proc.kill()
        proc.wait(5)
        daemon.close()
        server.close()
