"""How bgpd starts ExaBGP: ExaBGP's own ``main``, with one change to its reactor.

ExaBGP 5.0's reactor wakes every 10 ms and gives *every* peer a turn of its state machine,
whether or not the peer has anything to do; it asks ``poll`` which sockets are readable and
then discards the answer.  With hundreds of idle sessions that is most of a core.  Here a
peer gets a turn when it has a reason to:

* its socket is readable (the reactor's own ``poll`` said so), or
* it has work queued (routes, End-of-RIB, refresh, messages from the API), or
* its last turn asked to be called again at once (``ACTION.NOW``), or
* it is not Established (connecting, opening: the state machine drives itself), or stopping,
* or it has not had a turn for a sixth of its hold time, at most ``TIMER_TURN`` seconds
  (keepalives — a third of the hold time — and the hold timer are checked in its turn).

With turns driven this way the reactor's loop period (``exabgp_reactor_speed``) no longer
delays anything that matters: API commands and BGP messages wake ``poll`` at once.

Everything else — how a turn runs, timers, the API — is ExaBGP's, unchanged.  Disable with
``BGPD_EXABGP_PLAIN=1`` to run ExaBGP exactly as shipped.
"""

from __future__ import annotations

import os
import time
from typing import Any

TIMER_TURN = 5.0


def patch() -> None:
    from exabgp.bgp.fsm import FSM
    from exabgp.reactor import loop as reactor_loop
    from exabgp.reactor import peer as reactor_peer
    from exabgp.reactor.peer import ACTION

    reactor = reactor_loop.Reactor
    peer_cls = reactor_peer.Peer
    original_active = reactor.active_peers
    original_wait = reactor._wait_for_io
    original_run = peer_cls.run

    def run(self: Any) -> Any:
        action = original_run(self)
        self._bgpd_last_turn = time.monotonic()
        self._bgpd_again = action == ACTION.NOW
        return action

    def wait_for_io(self: Any, sleeptime: int) -> Any:
        ready = self.__dict__.setdefault("_bgpd_ready", set())
        for fd in original_wait(self, sleeptime):
            ready.add(fd)
            yield fd

    def has_work(peer: Any) -> bool:
        neighbor = peer.neighbor
        return bool(neighbor.rib.outgoing.pending() or neighbor.eor or neighbor.messages
                    or neighbor.refresh)

    def active_peers(self: Any) -> set[Any]:
        candidates = original_active(self)
        ready = self.__dict__.get("_bgpd_ready", set())
        self._bgpd_ready = set()
        now = time.monotonic()
        chosen = set()
        for key in candidates:
            peer = self._peers[key]
            if (peer.fsm != FSM.ESTABLISHED or peer.stopping()
                    or getattr(peer, "_bgpd_again", True)
                    or now - getattr(peer, "_bgpd_last_turn", 0.0) >= timer_turn(peer)
                    or peer.socket() in ready or has_work(peer)):
                chosen.add(key)
        return chosen

    def timer_turn(peer: Any) -> float:
        try:
            hold = float(int(peer.neighbor["hold-time"]))
        except (KeyError, TypeError, ValueError):
            return 1.0
        return max(0.2, min(TIMER_TURN, hold / 6)) if hold else TIMER_TURN

    peer_cls.run = run
    reactor._wait_for_io = wait_for_io
    reactor.active_peers = active_peers


def main() -> None:
    if os.environ.get("BGPD_EXABGP_PLAIN") != "1":
        patch()
    from exabgp.application.main import main as exabgp_main

    exabgp_main()


if __name__ == "__main__":
    main()
