"""ExaBGP's reactor scheduling (the ``scheduling`` unit).

ExaBGP 5.0's reactor wakes every loop period (10 ms at speed 1) and gives *every* peer a
turn of its state machine, whether or not the peer has anything to do, it asks ``poll`` which
sockets are readable and then discards the answer, and its ``poll`` set holds every session's
socket.  It accepts one connection per listening socket per loop and does not wake for one.
With hundreds of idle sessions that is most of a core, and a reconnect storm of hundreds of
peers waits on the loop period.  Here:

* A loop looks at the few peers with a reason for a turn — its socket is readable (the
  reactor's own ``poll`` said so), its last turn asked to be called again at once
  (``ACTION.NOW``), it is not Established (connecting, opening) or stopping, or an API
  command has just queued work for it (routes, End-of-RIB, refresh, teardown: the peers a
  command names are the ones it acts on) — not at all of them.
* A full pass over every peer, which also finds peers whose timers are due and any work
  queued some other way, runs after a reload and otherwise once per ``SCAN_PERIOD``.  An
  Established peer gets a timer turn when it has had none for a sixth of its hold time, at
  most ``TIMER_TURN`` seconds: keepalives are due every third of the hold time, and the
  hold timer is checked in a turn.
* ``poll`` becomes ``epoll``: its cost follows the sockets that are ready, not the sockets
  registered.
* Listening sockets are in the ``epoll`` set, so a connection wakes the loop, and a loop
  accepts every connection waiting, not one; each is handed to ExaBGP's own connection
  code on its own (which gives up on the rest of a batch at a connection it refuses), with
  the peers of the connection's address looked at first (ExaBGP walks every peer, building
  two addresses for each).
* Commands' neighbours are found by address (:mod:`.commands`).
* The peers a route command gives work wait for their turn until the API is quiet — no
  command waiting on its pipe, none for ``BATCH_QUIET`` — (or ``BATCH_WINDOW`` after the
  first such command): the daemon pipelines its commands, and a burst — a reflector's
  start, a new client's full table — reaches each peer as a few writes, not one per
  command.  One change alone waits ``BATCH_QUIET`` (1 ms).
* ExaBGP's callback runner makes a new asyncio event loop every reactor loop; generators
  (all its callbacks) are driven directly instead.
* Lines to the API process are flushed once per loop (:mod:`.api_writes`).
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, field
from typing import Any

from bgpd.speaker.patches import Unit
from bgpd.speaker.patches.api_writes import buffered_api_writes
from bgpd.speaker.patches.commands import indexed_match, neighbor_head, quick_extract
from bgpd.speaker.patches.polling import EpollPoller

TIMER_TURN = 5.0
SCAN_PERIOD = 1.0
BATCH_QUIET = 0.001
BATCH_WINDOW = 0.25
@dataclass
class Turns:
    """What the reactor's loop knows between two calls of ``active_peers``."""

    ready: set[int] = field(default_factory=set)  # sockets poll found readable
    fd_key: dict[int, Any] = field(default_factory=dict)  # socket -> peer key, from turns
    urgent: set[Any] = field(default_factory=set)  # peers whose last turn wants another
    scan: bool = True  # the next loop looks at every peer
    wake: bool = False  # work was queued: the next loop starts without waiting
    last_scan: float = 0.0
    batched: dict[Any, float] = field(default_factory=dict)  # peer -> when first given routes
    last_command: float = 0.0  # when the API's last command was read or ran
    api_busy: bool = False  # commands ran in this loop
    api_waiting: bool = False  # the last poll found a command waiting on the API pipe

    def quiet(self, now: float) -> bool:
        """No command waiting, none for ``BATCH_QUIET``: the daemon has sent its burst."""
        return not self.api_waiting and now - self.last_command >= BATCH_QUIET

    def batch_due(self, now: float) -> float:
        """When the peers given routes by commands get their turn (see :func:`queue_batched`)."""
        if not self.batched:
            return float("inf")
        window = min(self.batched.values()) + BATCH_WINDOW
        return window if self.api_waiting else min(self.last_command + BATCH_QUIET, window)

    def take_batched(self, now: float) -> list[Any]:
        if self.quiet(now):
            due, self.batched = list(self.batched), {}
            return due
        due = [key for key, first in self.batched.items() if now - first >= BATCH_WINDOW]
        for key in due:
            del self.batched[key]
        return due


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


def apply() -> None:
    """Change ExaBGP's reactor, peers, listener, API and callback runner (see the module's
    docstring)."""
    from exabgp.bgp.fsm import FSM
    from exabgp.reactor import listener as reactor_listener
    from exabgp.reactor import loop as reactor_loop
    from exabgp.reactor import peer as reactor_peer
    from exabgp.reactor.api import API
    from exabgp.reactor.api.processes import ProcessError, Processes
    from exabgp.reactor.peer import ACTION

    reactor_cls = reactor_loop.Reactor
    peer_cls = reactor_peer.Peer
    listener_cls = reactor_listener.Listener
    original_init = reactor_cls.__init__
    original_active = reactor_cls.active_peers
    original_wait = reactor_cls._wait_for_io
    original_reload = reactor_cls.reload
    original_handle = reactor_cls.handle_connection
    original_teardown = reactor_cls.teardown_peer
    original_process = API.process
    original_run = peer_cls.run
    original_listen = listener_cls._listen
    original_connected = listener_cls._connected
    original_new_connections = listener_cls.new_connections
    original_peers = reactor_cls.peers
    reactors: list[Any] = []  # the reactor of this process, once made

    def queue_turns(keys: Any) -> None:
        """Peers that were just given work: they get a turn in the next loop."""
        if reactors:
            turns = turns_of(reactors[0])
            turns.urgent.update(keys)
            turns.wake = True

    def queue_batched(keys: Any) -> None:
        """Peers an API command just gave routes (or End-of-RIB): they get their turn once
        the API is quiet — no command waiting on its pipe and none for ``BATCH_QUIET`` — or
        ``BATCH_WINDOW`` after the first command at the latest: a burst of commands goes out
        as one write per peer, not one per command, and a change alone at once."""
        if reactors:
            turns = turns_of(reactors[0])
            now = time.monotonic()
            for key in keys:
                turns.batched.setdefault(key, now)

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._poller = EpollPoller()
        reactors[:] = [self]

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
        flush_api()
        turns = turns_of(self)
        if turns.api_busy:  # (after this loop's commands ran) the API is quiet from now
            turns.api_busy, turns.last_command = False, time.monotonic()
        if turns.scan or turns.wake or not self.asynchronous.ready():
            sleeptime = 0  # work was queued this loop: the next loop gets to it
        elif turns.batched:
            wait_ms = (turns.batch_due(time.monotonic()) - time.monotonic()) * 1000
            sleeptime = max(0, min(sleeptime, int(wait_ms) + 1))
        listeners = listening(self)
        # (Processes sets fds outside __init__; without it the quiet is the time alone)
        api = getattr(self.processes, "fds", ())
        waiting = False
        for fd in original_wait(self, sleeptime):
            if fd in listeners:  # accepted at the top of the next loop
                continue
            waiting = waiting or fd in api
            turns.ready.add(fd)
            yield fd
        turns.api_waiting = waiting

    def has_work(peer: Any) -> bool:
        neighbor = peer.neighbor
        return bool(neighbor.rib.outgoing.pending() or neighbor.eor or neighbor.messages
                    or neighbor.refresh)

    def active_peers(self: Any) -> set[Any]:
        turns = turns_of(self)
        ready, turns.ready = turns.ready, set()
        turns.wake = False
        now = time.monotonic()
        if turns.scan or now - turns.last_scan >= SCAN_PERIOD:
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
            for key in chosen:
                turns.batched.pop(key, None)
            return chosen
        chosen = set(turns.urgent)
        if turns.batched:
            chosen.update(turns.take_batched(now))
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
        try:
            return original_reload(self)
        finally:  # (after: a peers list asked for during the reload is not kept)
            self._bgpd_reloads = self.__dict__.get("_bgpd_reloads", 0) + 1

    def handle_connection(self: Any, peer_name: Any, connection: Any) -> Any:
        queue_turns([peer_name])
        return original_handle(self, peer_name, connection)

    def teardown_peer(self: Any, name: Any, code: Any) -> Any:
        queue_turns([name])
        return original_teardown(self, name, code)

    def process(self: Any, reactor: Any, service: Any, command: Any) -> Any:
        turns = turns_of(reactor)
        turns.wake = True  # its callback runs in this loop
        turns.last_command = time.monotonic()
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

    def new_connections(self: Any) -> Any:
        """ExaBGP's own, once per accepted connection (it stops at the first connection it
        refuses), with the peers named by the connection's address looked at first.

        ExaBGP 5.0 reads ``local-address`` of every neighbour a connection could be for
        before it looks at ``auto_discovery`` — a neighbour without a local address (no
        source address: ``sourceAddress: None``, local workloads) cannot be connected to.
        Such a neighbour of the connection's peer is given the address the connection
        reached, as auto-discovery means to (``next-hop self`` is then that address; a
        reload compares no local address of an auto-discovered neighbour)."""
        waiting, self._bgpd_waiting = self.__dict__.get("_bgpd_waiting", []), []
        reactor = self._reactor
        for sock, io in waiting:
            self._bgpd_one = (sock, io)
            try:
                remote, local = io.getpeername()[0], io.getsockname()[0]
            except OSError:
                remote = local = None
            reactor._bgpd_first = f"neighbor {remote}" if remote else None
            neighbor = _unbound(reactor).get(remote) if remote is not None else None
            if neighbor is not None and neighbor["local-address"] is None:
                from exabgp.protocol.ip import IP
                neighbor["local-address"] = IP.create(local)
            try:
                yield from original_new_connections(self)
            finally:
                reactor._bgpd_first = None

    def _unbound(reactor: Any) -> dict[str, Any]:
        """The neighbours without a local address, by peer address: found once per set of
        peers (a mesh start is hundreds of connections, each would look at every peer)."""
        key = (reactor.__dict__.get("_bgpd_reloads", 0), len(reactor._peers))
        cached = reactor.__dict__.get("_bgpd_unbound")
        if cached is None or cached[0] != key:
            found = {str(p.neighbor["peer-address"]): p.neighbor
                     for p in reactor._peers.values() if p.neighbor.auto_discovery}
            reactor._bgpd_unbound = cached = (key, found)
        return cached[1]

    def connected(self: Any) -> Any:
        one = self.__dict__.pop("_bgpd_one", None)
        if one is None:
            return
        original_accepted, self._accepted = self._accepted, dict([one])
        try:
            yield from original_connected(self)
        finally:
            self._accepted = original_accepted

    def peers(self: Any, service: str = "") -> Any:
        # the same list object until the peers change (a reload, a peer gone): the command
        # matcher indexes it once, not once per command
        key = (service, self.__dict__.get("_bgpd_reloads", 0), len(self._peers))
        cached = self.__dict__.get("_bgpd_peers")
        if cached is None or cached[0] != key:
            keys = original_peers(self, service)
            positions: dict[str | None, list[int]] = {}
            for position, name in enumerate(keys):
                positions.setdefault(neighbor_head(name), []).append(position)
            cached = self._bgpd_peers = (key, keys, positions)
        keys, positions = cached[1], cached[2]
        first = self.__dict__.get("_bgpd_first")
        ahead = positions.get(first) if first is not None else None
        if not ahead:
            return keys
        # the same peers in the same order, but those with the connection's address first:
        # ExaBGP's loop takes the first that matches (IP.create twice per peer looked at);
        # found by index, not by reading every key for each connection (599 peers: 358,801)
        if len(ahead) == 1:
            i = ahead[0]
            return [keys[i], *keys[:i], *keys[i + 1:]]
        skip = set(ahead)
        return [keys[i] for i in ahead] + [k for i, k in enumerate(keys) if i not in skip]

    def listen(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original_listen(self, *args, **kwargs)
        for sock in self._sockets:
            self._reactor._poller.register(sock.fileno(), select.POLLIN)
        return result

    from exabgp.reactor.asynchronous import ASYNC

    original_async_run = ASYNC.run

    def async_run(self: Any) -> bool:
        """ExaBGP's callback runner, without the new asyncio event loop it makes for every
        reactor loop when, as always here, the callbacks are generators: the same steps
        (``LIMIT`` per loop, the next callback after one ends, a failing one reported to
        its service), driven directly."""
        queue = self._async
        if not queue:
            return False
        if reactors:  # the API is busy until its commands have run, not just been read
            turns_of(reactors[0]).api_busy = True
        if any(self._is_coroutine(callback) for _, callback in queue):
            return original_async_run(self)
        uid, callback = queue.popleft()
        for _ in range(self.LIMIT):
            try:
                next(callback)
            except StopIteration:
                if not queue:
                    return False
                uid, callback = queue.popleft()
            except Exception as exc:
                from exabgp.logger import log
                log.error(lambda uid=uid, exc=exc: f"async | {uid} | problem with function: "
                          f"{exc}", "reactor")
                self._notify_error(uid)
                if not queue:
                    return False
                uid, callback = queue.popleft()
        queue.appendleft((uid, callback))
        return True

    ASYNC.run = async_run
    from exabgp.reactor.api.command import announce, limit, rib
    from exabgp.reactor.api.command import neighbor as neighbor_commands
    matcher = indexed_match(limit.match_neighbors, limit.match_neighbor, queue_batched)
    extract = quick_extract(limit.extract_neighbors)
    for module in (limit, announce, rib):
        module.match_neighbors = matcher
    for module in (limit, announce, rib, neighbor_commands):
        module.extract_neighbors = extract
    flush_api = buffered_api_writes(Processes, ProcessError)
    reactor_cls.__init__ = init
    reactor_cls._wait_for_io = wait_for_io
    reactor_cls.active_peers = active_peers
    reactor_cls.reload = reload
    reactor_cls.handle_connection = handle_connection
    reactor_cls.teardown_peer = teardown_peer
    API.process = process
    peer_cls.run = run
    listener_cls.incoming = incoming
    listener_cls._connected = connected
    listener_cls.new_connections = new_connections
    reactor_cls.peers = peers
    listener_cls._listen = listen


UNIT = Unit(
    name="scheduling",
    contract=(
        ("exabgp.reactor.loop", "Reactor.__init__", ("self", "configuration")),
        ("exabgp.reactor.loop", "Reactor.active_peers", ("self",)),
        ("exabgp.reactor.loop", "Reactor._wait_for_io", ("self", "sleeptime")),
        ("exabgp.reactor.loop", "Reactor.reload", ("self",)),
        ("exabgp.reactor.loop", "Reactor.handle_connection", ("self", "peer_name", "connection")),
        ("exabgp.reactor.loop", "Reactor.teardown_peer", ("self", "name", "code")),
        ("exabgp.reactor.loop", "Reactor.peers", ("self", "service")),
        ("exabgp.reactor.api", "API.process", ("self", "reactor", "service", "command")),
        ("exabgp.reactor.api.processes", "Processes.write",
         ("self", "process", "string", "neighbor")),
        ("exabgp.reactor.api.processes", "Processes._terminate", ("self", "process_name")),
        ("exabgp.reactor.api.processes", "ProcessError", None),
        ("exabgp.reactor.asynchronous", "ASYNC.run", ("self",)),
        ("exabgp.reactor.asynchronous", "ASYNC.ready", ("self",)),
        ("exabgp.reactor.asynchronous", "ASYNC._is_coroutine", ("self", "callback")),
        ("exabgp.reactor.asynchronous", "ASYNC._notify_error", ("self", "uid")),
        ("exabgp.reactor.asynchronous", "ASYNC.LIMIT", None),
        ("exabgp.reactor.peer", "Peer.run", ("self",)),
        ("exabgp.reactor.peer", "Peer.stopping", ("self",)),
        ("exabgp.reactor.peer", "Peer.socket", ("self",)),
        ("exabgp.reactor.peer", "ACTION.NOW", None),
        ("exabgp.reactor.peer", "ACTION.CLOSE", None),
        ("exabgp.bgp.fsm", "FSM.ESTABLISHED", None),
        ("exabgp.reactor.listener", "Listener._listen", None),
        ("exabgp.reactor.listener", "Listener._connected", ("self",)),
        ("exabgp.reactor.listener", "Listener.new_connections", ("self",)),
        ("exabgp.reactor.listener", "Listener.incoming", ("self",)),
        ("exabgp.rib.outgoing", "OutgoingRIB.pending", ("self",)),
        ("exabgp.protocol.ip", "IP.create", ("string", "packed", "klass")),
        ("exabgp.logger", "log.critical", None),
        ("exabgp.logger", "log.error", None),
        ("exabgp.reactor.api.command.limit", "match_neighbors", ("peers", "descriptions")),
        ("exabgp.reactor.api.command.limit", "match_neighbor", ("description", "name")),
        ("exabgp.reactor.api.command.announce", "match_neighbors", ("peers", "descriptions")),
        ("exabgp.reactor.api.command.rib", "match_neighbors", ("peers", "descriptions")),
        ("exabgp.reactor.api.command.limit", "extract_neighbors", ("command",)),
        ("exabgp.reactor.api.command.announce", "extract_neighbors", ("command",)),
        ("exabgp.reactor.api.command.rib", "extract_neighbors", ("command",)),
        ("exabgp.reactor.api.command.neighbor", "extract_neighbors", ("command",)),
    ),
    attributes=(
        ("exabgp.reactor.loop", "Reactor", ("_peers", "_poller", "listener", "asynchronous",
                                            "processes")),
        ("exabgp.reactor.api.processes", "Processes.clean", ("_process", "_broken")),
        ("exabgp.reactor.listener", "Listener", ("_sockets", "serving", "_accepted", "_reactor")),
        ("exabgp.reactor.peer", "Peer", ("fsm", "neighbor", "proto", "reactor")),
        ("exabgp.bgp.neighbor", "Neighbor", ("rib", "eor", "messages", "refresh",
                                             "auto_discovery")),
        ("exabgp.reactor.asynchronous", "ASYNC", ("_async",)),
    ),
    apply=apply,
)
