"""How bgpd starts ExaBGP: ExaBGP's own ``main``, with its reactor's scheduling changed.

ExaBGP 5.0's reactor wakes every loop period (10 ms at speed 1) and gives *every* peer a
turn of its state machine, whether or not the peer has anything to do, it asks ``poll`` which
sockets are readable and then discards the answer, and its ``poll`` set holds every session's
socket.  It accepts one connection per listening socket per loop and does not wake for one.
With hundreds of idle sessions that is most of a core, and a reconnect storm of hundreds of
peers waits on the loop period.  Here:

* A loop looks at the few peers with a reason for a turn — its socket is readable (the
  reactor's own ``poll`` said so), its last turn asked to be called again at once
  (``ACTION.NOW``), or it is not Established (connecting, opening) or stopping — not at all
  of them.
* A full pass over every peer, which also finds work queued for a peer (routes, End-of-RIB,
  refresh, operational messages) and peers whose timers are due, runs after anything that
  can queue such work — an API command, a callback the reactor deferred, a new connection, a
  reload — and otherwise once per ``SCAN_PERIOD``.  An Established peer gets a timer turn
  when it has had none for a sixth of its hold time, at most ``TIMER_TURN`` seconds:
  keepalives are due every third of the hold time, and the hold timer is checked in a turn.
* ``poll`` becomes ``epoll``: its cost follows the sockets that are ready, not the sockets
  registered.
* Listening sockets are in the ``epoll`` set, so a connection wakes the loop, and a loop
  accepts every connection waiting, not one.
* A command for ``neighbor <address>`` finds its peers by address: ExaBGP tries a regular
  expression per command against every peer (some 360,000 matches to bring up one
  node of a 600-node mesh).  Every candidate is still confirmed by ExaBGP's own matcher.

Everything else — what a turn does, timers, the API, the configuration — is ExaBGP's,
unchanged.  ``BGPD_EXABGP_PLAIN=1`` runs ExaBGP exactly as shipped.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from dataclasses import dataclass, field
from typing import Any

TIMER_TURN = 5.0
SCAN_PERIOD = 1.0
_EVENTS = select.EPOLLIN | select.EPOLLPRI | select.EPOLLERR | select.EPOLLHUP


class EpollPoller:
    """``select.poll``'s interface (what ExaBGP's reactor uses of it) over ``epoll``."""

    def __init__(self) -> None:
        self._epoll = select.epoll()

    def register(self, fd: int, events: int = _EVENTS) -> None:
        try:
            self._epoll.register(fd, events & _EVENTS)
        except FileExistsError:
            self._epoll.modify(fd, events & _EVENTS)

    def unregister(self, fd: int) -> None:
        # closed already (epoll forgets closed sockets) or never registered
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)

    def poll(self, timeout_ms: float | None = None) -> list[tuple[int, int]]:
        if timeout_ms is None or timeout_ms < 0:
            return self._epoll.poll(-1)
        return self._epoll.poll(timeout_ms / 1000)


@dataclass
class Turns:
    """What the reactor's loop knows between two calls of ``active_peers``."""

    ready: set[int] = field(default_factory=set)  # sockets poll found readable
    fd_key: dict[int, Any] = field(default_factory=dict)  # socket -> peer key, from turns
    urgent: set[Any] = field(default_factory=set)  # peers whose last turn wants another
    scan: bool = True  # the next loop looks at every peer
    last_scan: float = 0.0


def turns_of(reactor: Any) -> Turns:
    state = reactor.__dict__.get("_bgpd_turns")
    if state is None:
        state = reactor.__dict__["_bgpd_turns"] = Turns()
    return state


def timer_turn(peer: Any) -> float:
    try:
        hold = float(int(peer.neighbor["hold-time"]))
    except (KeyError, TypeError, ValueError):
        return 1.0
    return max(0.2, min(TIMER_TURN, hold / 6)) if hold else TIMER_TURN


def neighbor_head(name: str) -> str | None:
    """``neighbor <address>`` from a peer's key (its name), if the key starts with it."""
    head = _HEADS.get(name)
    if head is None:
        words = name.split(" ", 2)
        head = _HEADS[name] = " ".join(words[:2]) if words[0] == "neighbor" else ""
    return head or None


_HEADS: dict[str, str] = {}


def indexed_match(original: Any) -> Any:
    """ExaBGP's ``match_neighbors``, looking only at peers whose key starts with the
    ``neighbor <address>`` a description asks for (every key made from a neighbour's name
    does; the others cannot hold that phrase, as ExaBGP builds them)."""

    def match_neighbors(peers: Any, descriptions: Any) -> Any:
        if not descriptions:
            return peers
        heads = []
        for description in descriptions:
            wanted = [s for s in description if s.startswith("neighbor ")]
            if (len(wanted) != 1 or wanted[0].strip() == "neighbor *"
                    or " " in wanted[0][len("neighbor "):]):
                return original(peers, descriptions)
            heads.append(wanted[0])
        candidates = [name for name in peers if neighbor_head(name) in heads]
        return original(candidates, descriptions)

    return match_neighbors


def patch() -> None:
    from exabgp.bgp.fsm import FSM
    from exabgp.reactor import listener as reactor_listener
    from exabgp.reactor import loop as reactor_loop
    from exabgp.reactor import peer as reactor_peer
    from exabgp.reactor.api import API
    from exabgp.reactor.peer import ACTION

    reactor_cls = reactor_loop.Reactor
    peer_cls = reactor_peer.Peer
    listener_cls = reactor_listener.Listener
    original_init = reactor_cls.__init__
    original_active = reactor_cls.active_peers
    original_wait = reactor_cls._wait_for_io
    original_reload = reactor_cls.reload
    original_handle = reactor_cls.handle_connection
    original_process = API.process
    original_run = peer_cls.run
    original_listen = listener_cls._listen

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._poller = EpollPoller()

    def run(self: Any) -> Any:
        action = original_run(self)
        self._bgpd_last_turn = time.monotonic()
        self._bgpd_again = action == ACTION.NOW
        turns = turns_of(self.reactor)
        key = self.__dict__.get("_bgpd_key")
        if key is None:  # not seen by a full pass yet
            turns.scan = True
        elif action == ACTION.CLOSE:
            turns.urgent.discard(key)
        else:
            if self._bgpd_again or self.fsm != FSM.ESTABLISHED or self.stopping():
                turns.urgent.add(key)
            else:
                turns.urgent.discard(key)
            fd = self.socket()
            if fd != -1:
                turns.fd_key[fd] = key
        return action

    def listening(self: Any) -> set[int]:
        listener = self.listener
        return {s.fileno() for s in listener._sockets} if listener is not None else set()

    def wait_for_io(self: Any, sleeptime: int) -> Any:
        turns = turns_of(self)
        if turns.scan or not self.asynchronous.ready():
            sleeptime = 0  # work was queued this loop: the next loop finds who has it
        listeners = listening(self)
        for fd in original_wait(self, sleeptime):
            if fd in listeners:  # accepted at the top of the next loop
                continue
            turns.ready.add(fd)
            yield fd

    def has_work(peer: Any) -> bool:
        neighbor = peer.neighbor
        return bool(neighbor.rib.outgoing.pending() or neighbor.eor or neighbor.messages
                    or neighbor.refresh)

    def active_peers(self: Any) -> set[Any]:
        turns = turns_of(self)
        ready, turns.ready = turns.ready, set()
        now = time.monotonic()
        if turns.scan or now - turns.last_scan >= SCAN_PERIOD or not self.asynchronous.ready():
            turns.scan, turns.last_scan = False, now
            chosen = set()
            for key in original_active(self):
                peer = self._peers[key]
                peer._bgpd_key = key
                if (peer.fsm != FSM.ESTABLISHED or peer.stopping()
                        or peer.__dict__.get("_bgpd_again", True)
                        or now - peer.__dict__.get("_bgpd_last_turn", 0.0) >= timer_turn(peer)
                        or peer.socket() in ready or has_work(peer)):
                    chosen.add(key)
            return chosen
        chosen = set(turns.urgent)
        chosen.update(turns.fd_key[fd] for fd in ready if fd in turns.fd_key)
        for key in list(chosen):
            peer = self._peers.get(key)
            if peer is None:
                chosen.discard(key)
                turns.urgent.discard(key)
            elif not peer.stopping() and peer.neighbor["passive"] and not peer.proto:
                chosen.discard(key)  # waits for its peer to connect (a new connection scans)
        return chosen

    def reload(self: Any) -> Any:
        turns_of(self).scan = True
        return original_reload(self)

    def handle_connection(self: Any, peer_name: Any, connection: Any) -> Any:
        turns_of(self).scan = True
        return original_handle(self, peer_name, connection)

    def process(self: Any, reactor: Any, service: Any, command: Any) -> Any:
        turns_of(reactor).scan = True
        return original_process(self, reactor, service, command)

    def incoming(self: Any) -> bool:
        """Accept every connection waiting on every listening socket."""
        if not self.serving:
            return False
        waiting = self.__dict__.setdefault("_bgpd_waiting", [])
        for sock in self._sockets:
            while True:
                try:
                    io, _ = sock.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    from exabgp.logger import log
                    log.critical(lambda exc=exc: str(exc), "network")
                    break
                waiting.append((sock, io))
        return bool(waiting)

    def connected(self: Any) -> Any:
        from exabgp.reactor.network.error import NetworkError

        waiting, self._bgpd_waiting = self.__dict__.get("_bgpd_waiting", []), []
        original_accepted = self._accepted
        try:
            for sock, io in waiting:
                # ExaBGP's own generator, handed one accepted connection at a time
                self._accepted = {sock: io}
                yield from original_connected(self)
        except NetworkError as exc:
            from exabgp.logger import log
            log.critical(lambda exc=exc: str(exc), "network")
        finally:
            self._accepted = original_accepted

    def listen(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original_listen(self, *args, **kwargs)
        for sock in self._sockets:
            self._reactor._poller.register(sock.fileno(), select.POLLIN)
        return result

    original_connected = listener_cls._connected
    from exabgp.reactor.api.command import announce, limit, rib
    matcher = indexed_match(limit.match_neighbors)
    for module in (limit, announce, rib):
        module.match_neighbors = matcher
    reactor_cls.__init__ = init
    reactor_cls._wait_for_io = wait_for_io
    reactor_cls.active_peers = active_peers
    reactor_cls.reload = reload
    reactor_cls.handle_connection = handle_connection
    API.process = process
    peer_cls.run = run
    listener_cls.incoming = incoming
    listener_cls._connected = connected
    listener_cls._listen = listen


def main() -> None:
    if os.environ.get("BGPD_EXABGP_PLAIN") != "1":
        patch()
    from exabgp.application.main import main as exabgp_main

    exabgp_main()


if __name__ == "__main__":
    main()
