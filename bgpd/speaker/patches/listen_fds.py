"""The daemon's listening sockets taken as ExaBGP's own (the ``listen`` unit).

The daemon binds BGP's port before anything slow happens and hands the sockets to every
ExaBGP it starts (``BGPD_LISTEN_FDS``, :mod:`bgpd.speaker.listen`): peers connecting while
the daemon and ExaBGP start wait in the backlog instead of being refused.  ExaBGP's listener
is given them before it binds its own: it finds a socket by local address and port, as it
keeps them, and applies each peer's MD5 key and TTL to it.  Without this unit ExaBGP must
bind the port itself, so the daemon closes its sockets when the launcher reports the unit
left out (:class:`bgpd.speaker.supervisor.Speaker`).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from bgpd.speaker.listen import ENV as LISTEN_ENV
from bgpd.speaker.listen import inherited
from bgpd.speaker.patches import Unit


def _apply() -> None:
    from exabgp.reactor.listener import Listener

    original_listen = Listener._listen
    listen_fds = inherited(os.environ.get(LISTEN_ENV, ""))

    def listen(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.__dict__.get("_bgpd_adopted"):
            self._bgpd_adopted = True
            for fd, address, port in listen_fds:
                try:
                    sock = socket.socket(fileno=fd)
                except OSError:
                    continue
                sock.setblocking(False)
                # the shape ExaBGP keeps: (local address, port, peer, md5); it finds the
                # socket by the first two and applies each peer's MD5 key and TTL to it
                self._sockets[sock] = (address, port, None, False)
                self.serving = True
        return original_listen(self, *args, **kwargs)

    Listener._listen = listen


UNIT = Unit(
    name="listen",
    contract=(("exabgp.reactor.listener", "Listener._listen", None),),
    attributes=(("exabgp.reactor.listener", "Listener", ("_sockets", "serving")),),
    apply=_apply,
)
