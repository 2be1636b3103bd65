"""BGP's listening sockets, bound by the daemon before anything slow happens and handed to
every ExaBGP it starts.

Bound at the start of ``bgpd run`` (port 179, every address, before the daemon's imports and
its first look at the datastore), peers that connect while the daemon and ExaBGP start — a
node rebooting, 599 peers reconnecting at once — complete their TCP handshake into the
socket's backlog and are served as soon as ExaBGP runs, instead of being refused and retrying
seconds later.  The same sockets outlive an ExaBGP restart.  ExaBGP finds them through
``BGPD_LISTEN_FDS`` (see :mod:`bgpd.speaker.engine`) and applies each peer's MD5 key and TTL
to them as it would to its own.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence

ENV = "BGPD_LISTEN_FDS"
BACKLOG = 1024  # the kernel caps it at net.core.somaxconn
WILDCARD = ("0.0.0.0", "::")


def bind(port: int = 179, addresses: Sequence[str] = WILDCARD) -> tuple[
        list[socket.socket], list[str]]:
    """Listening sockets for ``addresses``; the ones that could not be bound are left out
    (ExaBGP then binds or reports them itself), each with the reason."""
    sockets, problems = [], []
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            problems.append(f"{address} port {port}: {exc.strerror or exc}")
            continue
        sockets.append(sock)
    return sockets, problems


def usable(sockets: Sequence[socket.socket], port: int,
           addresses: Sequence[str]) -> list[socket.socket]:
    """The sockets that serve what ExaBGP is told to listen on (port and addresses)."""
    wanted = set(addresses) or set(WILDCARD)
    return [s for s in sockets if s.fileno() != -1 and s.getsockname()[1] == port
            and s.getsockname()[0] in wanted]


def describe(sockets: Sequence[socket.socket]) -> str:
    """``BGPD_LISTEN_FDS`` for a child that inherits ``sockets``."""
    return json.dumps([{"fd": s.fileno(), "address": s.getsockname()[0],
                        "port": s.getsockname()[1]} for s in sockets])


def inherited(value: str) -> list[tuple[int, str, int]]:
    """(fd, address, port) from ``BGPD_LISTEN_FDS``; anything malformed is ignored."""
    try:
        items = json.loads(value)
        return [(int(i["fd"]), str(i["address"]), int(i["port"])) for i in items]
    except (ValueError, TypeError, KeyError):
        return []
