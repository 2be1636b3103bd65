"""The listening sockets bound before the daemon starts and handed to ExaBGP."""

from __future__ import annotations

import socket

from bgpd.speaker import listen


def test_bind_hand_over_and_refuse() -> None:
    sockets, problems = listen.bind(0, ["127.0.0.1"])
    assert problems == [] and len(sockets) == 1
    port = sockets[0].getsockname()[1]
    try:
        # a second daemon on the same port: refused with the reason, nothing raised
        again, problems = listen.bind(port, ["127.0.0.1"])
        assert again == [] and "127.0.0.1 port" in problems[0]
        assert listen.usable(sockets, port, ["127.0.0.1"]) == sockets
        assert listen.usable(sockets, port, []) == []  # ExaBGP binds the wildcard itself
        assert listen.usable(sockets, port + 1, ["127.0.0.1"]) == []
        assert listen.inherited(listen.describe(sockets)) == [
            (sockets[0].fileno(), "127.0.0.1", port)]
        # a connection made before anyone accepts waits in the backlog
        client = socket.create_connection(("127.0.0.1", port), timeout=2)
        sockets[0].setblocking(True)
        served, _ = sockets[0].accept()
        served.close()
        client.close()
    finally:
        for sock in sockets:
            sock.close()


def test_inherited_ignores_garbage() -> None:
    assert listen.inherited("") == []
    assert listen.inherited('[{"fd": "x"}]') == []
    assert listen.inherited("{}") == []
