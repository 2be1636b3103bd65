"""How bgpd starts ExaBGP: ExaBGP's own ``main``, with its reactor's scheduling changed, one
route object shared by every neighbour it is sent to (:func:`shared_changes`), and update
groups: one encoding of an UPDATE for every session alike, one write per turn
(:func:`update_groups`).

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
  two addresses for each).  Sockets the daemon bound before starting ExaBGP
  (``BGPD_LISTEN_FDS``, :mod:`bgpd.speaker.listen`) are taken as ExaBGP's own.
* A command for ``neighbor <address>`` finds its peers by address: ExaBGP tries a regular
  expression per (peer, neighbour named) pair, which for one command to 599 neighbours is
  358,801 of them.  Every candidate is still confirmed by ExaBGP's own matcher.
* The peers a route command gives work wait for their turn until the API is quiet — no
  command waiting on its pipe, none for ``BATCH_QUIET`` — (or ``BATCH_WINDOW`` after the
  first such command): the daemon pipelines its commands, and a burst — a reflector's
  start, a new client's full table — reaches each peer as a few writes, not one per
  command.  One change alone waits ``BATCH_QUIET`` (1 ms).
* ExaBGP's callback runner makes a new asyncio event loop every reactor loop; generators
  (all its callbacks) are driven directly instead.
* ExaBGP flushes its pipe to the API process after every line it writes: a ``write(2)`` per
  event and a wake-up of the bridge and the daemon for each (a 599-peer start is ~3,000
  events).  Lines go into the pipe's buffer and the reactor flushes them before it waits for
  IO, in the order written: no line waits longer than the rest of the loop that wrote it.
* ExaBGP's ``log.debug`` and ``log.info`` are no-ops when its log level leaves them out:
  ExaBGP asks for each call whether the level and the message's source are enabled, three
  Python calls deep, and a 599-peer start makes thousands of them (2 to 4 % of its profile).
* The cyclic garbage collector runs as in the daemon (:func:`bgpd.runtime.tune_gc`): what
  the imports made is frozen out of its sight and young objects are collected every 50,000
  allocations, not 700 — a reflector's outgoing RIBs hold an entry per (route, client),
  and with the default thresholds the collector kept rescanning them.

Everything else — what a turn does, timers, the API, the configuration — is ExaBGP's,
unchanged.  ``BGPD_EXABGP_PLAIN=1`` runs ExaBGP exactly as shipped;
``BGPD_EXABGP_SKIP=scheduling``, ``=shared_changes``, ``=update_groups``, ``=logging``,
``=gc`` or ``=reload`` (comma-separated) leaves those out (to measure each step alone).

The launcher is written against one release (:data:`PINNED`, the version ``setup.cfg``
pins).  Before patching anything it checks the installed release and every private method,
signature and instance attribute it relies on (:data:`CONTRACT`); a mismatch ends it with
one message naming each difference and the way out (``BGPD_EXABGP_PLAIN=1``), instead of a
patch that half applies.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import os
import select
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bgpd.runtime import tune_gc
from bgpd.speaker import prestart
from bgpd.speaker.listen import ENV as LISTEN_ENV
from bgpd.speaker.listen import inherited

PINNED = "5.0.15"
EXIT_CONTRACT = 78  # EX_CONFIG: the installed ExaBGP is not the one the launcher knows

# (module, attribute path, the parameters it must take — or None for a value)
CONTRACT: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("exabgp.reactor.loop", "Reactor.__init__", ("self", "configuration")),
    ("exabgp.reactor.loop", "Reactor.active_peers", ("self",)),
    ("exabgp.reactor.loop", "Reactor._wait_for_io", ("self", "sleeptime")),
    ("exabgp.reactor.loop", "Reactor.reload", ("self",)),
    ("exabgp.reactor.loop", "Reactor._pending_adjribout", ("self",)),
    ("exabgp.reactor.loop", "Reactor.handle_connection", ("self", "peer_name", "connection")),
    ("exabgp.reactor.loop", "Reactor.teardown_peer", ("self", "name", "code")),
    ("exabgp.reactor.loop", "Reactor.peers", ("self", "service")),
    ("exabgp.reactor.api", "API.process", ("self", "reactor", "service", "command")),
    ("exabgp.reactor.api.processes", "Processes.write", ("self", "process", "string",
                                                         "neighbor")),
    ("exabgp.reactor.api.processes", "Processes._terminate", ("self", "process_name")),
    ("exabgp.reactor.api.processes", "ProcessError", None),
    ("exabgp.reactor.asynchronous", "ASYNC.run", ("self",)),
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
    ("exabgp.reactor.api.command.limit", "match_neighbors", ("peers", "descriptions")),
    ("exabgp.reactor.api.command.limit", "match_neighbor", ("description", "name")),
    ("exabgp.reactor.api.command.announce", "match_neighbors", ("peers", "descriptions")),
    ("exabgp.reactor.api.command.rib", "match_neighbors", ("peers", "descriptions")),
    ("exabgp.reactor.api.command.limit", "extract_neighbors", ("command",)),
    ("exabgp.reactor.api.command.announce", "extract_neighbors", ("command",)),
    ("exabgp.reactor.api.command.rib", "extract_neighbors", ("command",)),
    ("exabgp.reactor.api.command.neighbor", "extract_neighbors", ("command",)),
    ("exabgp.bgp.neighbor", "Neighbor.remove_self", ("self", "changes")),
    ("exabgp.bgp.neighbor", "Neighbor.ip_self", ("self", "afi")),
    ("exabgp.configuration.configuration", "_Configuration.inject_change",
     ("self", "peers", "change")),
    ("exabgp.configuration.configuration", "_Configuration.inject_eor",
     ("self", "peers", "family")),
    ("exabgp.bgp.message.update.attribute", "Attribute.CODE.NEXT_HOP", None),
    ("exabgp.bgp.message.update.attribute", "NextHop", None),
    ("exabgp.reactor.protocol", "Protocol.new_update", ("self", "include_withdraw")),
    ("exabgp.reactor.protocol", "_NOP", None),
    ("exabgp.reactor.protocol", "_UPDATE", None),
    ("exabgp.reactor.network.connection", "Connection.writer", ("self", "data")),
    ("exabgp.rib.outgoing", "OutgoingRIB.updates", ("self", "grouped")),
    ("exabgp.bgp.message.update", "Update.messages", ("self", "negotiated", "include_withdraw")),
    ("exabgp.rib.outgoing", "OutgoingRIB._update_rib", ("self", "change")),
    ("exabgp.rib.cache", "Cache.in_cache", ("self", "change")),
    ("exabgp.rib.cache", "Cache.update_cache", ("self", "change")),
    ("exabgp.rib.outgoing", "RIBdict", None),
    ("exabgp.bgp.message", "Action.ANNOUNCE", None),
    ("exabgp.logger", "_log.init", ("env",)),
    ("exabgp.logger", "_log.debug", ("message", "source", "level")),
    ("exabgp.logger", "_log.info", ("message", "source", "level")),
    ("exabgp.logger.option", "option.logit", None),
)
# instance attributes the patches read, as the class's __init__ (or the method named) must
# assign them
ATTRIBUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("exabgp.reactor.loop", "Reactor", ("_peers", "_poller", "listener", "asynchronous",
                                        "processes")),
    ("exabgp.reactor.api.processes", "Processes.clean", ("_process", "_broken")),
    ("exabgp.reactor.listener", "Listener", ("_sockets", "serving", "_accepted", "_reactor")),
    ("exabgp.reactor.peer", "Peer", ("fsm", "neighbor", "proto", "reactor")),
    ("exabgp.bgp.neighbor", "Neighbor", ("rib", "eor", "messages", "refresh")),
    ("exabgp.rib.change", "Change", ("nlri", "attributes")),
    ("exabgp.reactor.asynchronous", "ASYNC", ("_async",)),
    ("exabgp.bgp.neighbor", "Neighbor", ("_families", "auto_discovery")),
    ("exabgp.rib.outgoing", "OutgoingRIB", ("_new_nlri", "_new_attr_af_nlri", "_new_attribute")),
    ("exabgp.rib.cache", "Cache", ("cache", "_seen")),
    ("exabgp.reactor.protocol", "Protocol", ("neighbor", "connection", "peer", "negotiated")),
    ("exabgp.bgp.message.open.capability.negotiated", "Negotiated",
     ("local_as", "peer_as", "asn4", "families", "nexthop", "addpath", "msg_size", "aigp")),
    ("exabgp.bgp.message.open.capability.negotiated", "RequirePath", ("_send",)),
    ("exabgp.bgp.message.update", "Update", ("nlris", "attributes")),
    ("exabgp.bgp.message.update.attribute.attributes", "Attributes",
     ("_str", "_idx", "_json", "_dict")),
)


def _resolve(module: str, path: str) -> Any:
    value: Any = importlib.import_module(module)
    for part in path.split("."):
        value = getattr(value, part)
    return value


def contract_problems(pinned: str = PINNED) -> list[str]:
    """Every way the installed ExaBGP differs from what the launcher patches (empty: none)."""
    try:  # (not importlib.metadata: it costs the launcher more to import than to check)
        from exabgp.version import release as installed
    except ImportError:
        return ["ExaBGP is not installed"]
    problems = [] if installed == pinned else [
        f"ExaBGP {installed} is installed; the launcher is written against {pinned}"]
    for module, path, params in CONTRACT:
        try:
            value = _resolve(module, path)
        except (ImportError, AttributeError):
            problems.append(f"{module}.{path} is missing")
            continue
        if params is not None:
            try:
                found = tuple(inspect.signature(value).parameters)
            except (TypeError, ValueError):
                found = ()
            if found != params:
                problems.append(f"{module}.{path} takes ({', '.join(found)}), "
                                f"expected ({', '.join(params)})")
    for module, owner, names in ATTRIBUTES:
        method = owner if "." in owner else f"{owner}.__init__"
        try:
            source = inspect.getsource(_resolve(module, method))
        except (ImportError, AttributeError, OSError, TypeError):
            problems.append(f"{module}.{method} cannot be read")
            continue
        problems += [f"{module}.{method} no longer sets self.{name}" for name in names
                     if f"self.{name} =" not in source and f"self.{name}:" not in source]
    return problems


TIMER_TURN = 5.0
SCAN_PERIOD = 1.0
BATCH_QUIET = 0.001
BATCH_WINDOW = 0.25
_EVENTS = select.EPOLLIN | select.EPOLLPRI | select.EPOLLERR | select.EPOLLHUP


class EpollPoller:
    """``select.poll``'s interface (what ExaBGP's reactor uses of it) over ``epoll``."""

    def __init__(self) -> None:
        self._epoll = select.epoll()

    def register(self, fd: int, events: int = _EVENTS) -> None:
        # the reactor registers a peer's socket again after each of its turns: modify, the
        # common case, costs one system call and no exception
        try:
            self._epoll.modify(fd, events & _EVENTS)
        except FileNotFoundError:
            self._epoll.register(fd, events & _EVENTS)

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


_REACTOR: list[Any] = []  # the reactor of this process, once made


def queue_turns(keys: Any) -> None:
    """Peers that were just given work: they get a turn in the next loop."""
    if _REACTOR:
        turns = turns_of(_REACTOR[0])
        turns.urgent.update(keys)
        turns.wake = True


def queue_batched(keys: Any) -> None:
    """Peers an API command just gave routes (or End-of-RIB): they get their turn once the
    API is quiet — no command waiting on its pipe and none for ``BATCH_QUIET`` — or
    ``BATCH_WINDOW`` after the first command at the latest: a burst of commands goes out as
    one write per peer, not one per command, and a change alone at once."""
    if _REACTOR:
        turns = turns_of(_REACTOR[0])
        now = time.monotonic()
        for key in keys:
            turns.batched.setdefault(key, now)


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


_SELECTOR_KEYS = frozenset(("neighbor", "local-ip", "local-as", "peer-as", "router-id",
                            "family-allowed", ","))


def quick_extract(original: Any) -> Any:
    """ExaBGP's ``extract_neighbors`` (``original``) for the commands the daemon writes,
    ``neighbor A , neighbor B ... <action>``, in one pass over the text: ExaBGP's splits
    the rest of the command again at each word, which for a command naming 598 neighbours
    copies it about 1,800 times.  Anything else — a description with more than the address,
    a one-word action — goes to ExaBGP's own."""

    def extract_neighbors(command: str) -> Any:
        descriptions: list[list[str]] = []
        start = 0
        while command.startswith("neighbor ", start):
            end = command.find(" ", start + 9)
            if end <= start + 9:  # an empty address, or nothing after it
                break
            descriptions.append([command[start:end]])
            if command.startswith(" , ", end):
                start = end + 3
                continue
            action = end + 1
            word = command.find(" ", action)
            if word <= action or command[action:word] in _SELECTOR_KEYS:
                break
            return descriptions, command[action:]
        return original(command)

    return extract_neighbors


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


def indexed_match(original: Any, match_one: Any) -> Any:
    """ExaBGP's ``match_neighbors`` (``original``), looking at a peer only for the
    descriptions that name its address: a peer's key starts with ``neighbor <address>`` when
    made from its name, and no other key can hold that phrase, as ExaBGP builds them.  Each
    remaining pair is still decided by ExaBGP's ``match_neighbor`` (``match_one``).  One
    command for 599 neighbours is 599 checks instead of 358,801 regular expressions (more
    patterns than ``re`` caches: each was compiled anew, 15 s per command)."""

    # the peers list last indexed (kept: its id names the index) -> head -> [(position, name)]
    indexed: list[Any] = [None, {}]

    def match_neighbors(peers: Any, descriptions: Any) -> Any:
        found = find(peers, descriptions)
        queue_batched(found)  # the command gives these peers work
        return found

    def heads(peers: Any) -> dict[str, list[tuple[int, Any]]]:
        """The peers by head; the reactor hands the same list until its peers change."""
        if indexed[0] is not peers:
            index: dict[str, list[tuple[int, Any]]] = {}
            for position, name in enumerate(peers):
                index.setdefault(neighbor_head(name) or "", []).append((position, name))
            indexed[:] = [peers, index]
        return indexed[1]

    def find(peers: Any, descriptions: Any) -> Any:
        if not descriptions:
            return peers
        alone: set[str] = set()  # heads named by a description of the address alone
        by_head: dict[str, list[Any]] = {}
        for description in descriptions:
            if len(description) == 1:
                wanted = description
            else:
                wanted = [s for s in description if s.startswith("neighbor ")]
            head = wanted[0] if len(wanted) == 1 else ""
            if (not head.startswith("neighbor ") or head.strip() == "neighbor *"
                    or " " in head[9:]):
                return original(peers, descriptions)
            if len(description) == 1:
                alone.add(head)
            else:
                by_head.setdefault(head, []).append(description)
        if not isinstance(peers, list):
            peers = list(peers)
        # a description that is its address alone matches every peer with that head (what
        # ExaBGP's matcher would find, without a regular expression per peer); the peers
        # come out in the order they were given
        index = heads(peers)
        found: list[tuple[int, Any]] = []
        for head in alone:
            found += index.get(head, ())
        for head, ds in by_head.items():
            if head not in alone:
                found += [(position, name) for position, name in index.get(head, ())
                          if any(match_one(d, name) for d in ds)]
        found.sort(key=_first)
        return [name for _, name in found]

    return match_neighbors


def patch() -> None:
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
    listen_fds = inherited(os.environ.get(LISTEN_ENV, ""))

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._poller = EpollPoller()
        _REACTOR[:] = [self]

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
        if _REACTOR:  # the API is busy until its commands have run, not just been read
            turns_of(_REACTOR[0]).api_busy = True
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
    matcher = indexed_match(limit.match_neighbors, limit.match_neighbor)
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


def buffered_api_writes(processes_cls: Any, process_error: Any) -> Callable[[], None]:
    """ExaBGP's ``Processes.write`` without its flush per line; the function returned flushes
    every pipe written since it last ran, and a process stopped is flushed first.  A write
    fails as ExaBGP's does: a broken pipe marks the process broken and raises
    ``ProcessError``."""
    unflushed: dict[str, Any] = {}  # process name -> its pipe (insertion order: first written)
    original_terminate = processes_cls._terminate

    def write(self: Any, process: Any, string: Any, neighbor: Any = None) -> bool:
        if string is None:
            return True
        pipe = self._process[process].stdin
        try:
            pipe.write(f"{string}\n".encode("ascii"))  # (Python retries it if interrupted)
        except OSError as exc:
            self._broken.append(process)
            raise process_error from exc
        unflushed[process] = pipe
        return True

    def flush(names: Iterable[str] | None = None) -> None:
        for name in list(unflushed) if names is None else [n for n in names if n in unflushed]:
            pipe = unflushed.pop(name)
            with contextlib.suppress(OSError, ValueError):  # as ExaBGP's: the next write's
                pipe.flush()                               # flush tries again (or closed)

    def terminate(self: Any, process_name: Any) -> Any:
        flush([process_name])  # what it was told before it is stopped
        return original_terminate(self, process_name)

    processes_cls.write = write
    processes_cls._terminate = terminate
    return flush


def shared_changes(neighbor_cls: Any, configuration_cls: Any) -> None:
    """Every neighbour a route command names holds the same change object, not a deep copy
    of it: ExaBGP's ``Neighbor.remove_self`` deep-copies each route for each neighbour
    (53 % of a reflector's time, ~4 KB per route per neighbour) although only a route with
    ``next-hop self`` differs between neighbours.  Nothing later changes a stored change in
    place (a withdrawal copies before it marks one), so one object serves them all; a
    ``next-hop self`` route gets its own change, NLRI and attributes, shallow copies, with
    the neighbour's address as next hop — what the original does after its deep copy.  And
    a command's neighbours are looked up in a set, not a list (``inject_change`` asks once
    per configured neighbour)."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update.attribute import Attribute, NextHop
    from exabgp.rib.outgoing import RIBdict

    original_inject = configuration_cls.inject_change
    original_eor = configuration_cls.inject_eor

    def remove_self(self: Any, changes: Any) -> Any:
        if not changes.nlri.nexthop.SELF:
            return changes
        change = copy.copy(changes)
        change.nlri = copy.copy(changes.nlri)
        change.attributes = copy.copy(changes.attributes)
        own = self.ip_self(change.nlri.afi)
        change.nlri.nexthop = own
        if Attribute.CODE.NEXT_HOP in change.attributes:
            change.attributes[Attribute.CODE.NEXT_HOP] = NextHop(str(own), own.pack())
            # the copy's cached text and index named "self": made again from the new hop
            change.attributes._str = change.attributes._idx = change.attributes._json = ""
            change.attributes._dict = {}
        return change

    def inject_change(self: Any, peers: Any, change: Any) -> Any:
        """ExaBGP's, with what is the same for every neighbour worked out once per change
        (its family, indexes and action: ExaBGP recomputes them per neighbour, a third of a
        reflector's time); a neighbour whose change differs (``next-hop self``) or which
        lacks the family goes ExaBGP's own way."""
        peers = set(peers)
        family = change.nlri.family().afi_safi()
        index = change.index()
        attr_index = change.attributes.index()
        hop_index = change.nlri.nexthop.index()
        announce = change.nlri.action == Action.ANNOUNCE
        own = change.nlri.nexthop.SELF  # only then can a neighbour's change differ
        result = False
        for name, neighbor in self.neighbors.items():
            if name not in peers:
                continue
            if family not in neighbor._families or (
                    own and neighbor.remove_self(change) is not change):
                result = original_inject(self, {name}, change) or result
                continue
            rib = neighbor.rib.outgoing
            result = True
            seen = rib._seen if rib.cache else None
            if seen is not None and announce:  # ExaBGP's in_cache: sent already, unchanged
                cached = seen.get(family, {}).get(index)
                if (cached and cached.attributes.index() == attr_index
                        and cached.nlri.nexthop.index() == hop_index):
                    continue
            rib._new_attr_af_nlri.setdefault(attr_index, {}).setdefault(
                family, RIBdict({}))[index] = change
            rib._new_nlri[index] = change
            rib._new_attribute[attr_index] = change.attributes
            if seen is not None:  # ExaBGP's update_cache
                if announce:
                    seen.setdefault(family, {})[index] = change
                elif family in seen:
                    seen[family].pop(index, None)
        return result

    def inject_eor(self: Any, peers: Any, family: Any) -> Any:
        return original_eor(self, set(peers), family)

    neighbor_cls.remove_self = remove_self
    configuration_cls.inject_change = inject_change
    configuration_cls.inject_eor = inject_eor


ENCODED_KEEP = 8192  # UPDATE encodings kept for the peers that send the same one next


def session_group(negotiated: Any) -> tuple[Any, ...]:
    """Everything of a session that an UPDATE's encoding depends on (ASNs and their size,
    families, extended next hops, ADD-PATH, message size, AIGP): sessions alike in all of
    these are one update group — the same routes make the same bytes for each of them.
    Computed once a session is established (a new session has a new ``Negotiated``)."""
    group = negotiated.__dict__.get("_bgpd_group")
    if group is None:
        group = negotiated._bgpd_group = (
            int(negotiated.local_as), int(negotiated.peer_as), bool(negotiated.asn4),
            tuple(negotiated.families), tuple(negotiated.nexthop),
            tuple(sorted(negotiated.addpath._send.items())), int(negotiated.msg_size),
            bool(negotiated.aigp))
    return group


def update_groups(protocol_cls: Any) -> None:
    """Update groups: one encoding of an UPDATE for every session of one group, and one
    socket write per turn, not one per message.

    ExaBGP encodes every UPDATE anew for every peer and writes each message with its own
    ``send`` (after a ``poll`` for writability): for a reflector that is (routes times clients)
    encodings and system calls, 40 % of its time at 300 clients in the ``send`` alone.  Here
    a peer's turn encodes its outgoing RIB's updates, taking the bytes of an update already
    encoded for a session of the same group (:func:`session_group`) when the update is made
    of the same route objects — which, with :func:`shared_changes`, every neighbour a command
    names holds — and writes them as one buffer.  A route with ``next-hop self`` (its bytes
    differ per session) is encoded on its own, as ExaBGP does, and a neighbour whose API
    wants each sent UPDATE reported keeps ExaBGP's own path."""
    from exabgp.reactor.protocol import _NOP, _UPDATE

    original_new_update = protocol_cls.new_update
    encoded: dict[tuple[Any, ...], tuple[Any, list[Any], list[bytes]]] = {}

    def messages(update: Any, group: tuple[Any, ...], negotiated: Any,
                 include_withdraw: bool) -> list[bytes]:
        attributes, nlris = update.attributes, update.nlris
        hop = attributes.get(NEXT_HOP) if hasattr(attributes, "get") else None
        if len(nlris) == 1:  # a reflector's: one client's block per UPDATE
            nlri = nlris[0]
            own = getattr(getattr(nlri, "nexthop", None), "SELF", False)
            made_of: Any = (id(nlri), nlri.action)
        else:
            own = any(getattr(getattr(n, "nexthop", None), "SELF", False) for n in nlris)
            made_of = tuple((id(n), n.action) for n in nlris)
        if own or getattr(hop, "SELF", False):
            return list(update.messages(negotiated, include_withdraw))
        key = (group, include_withdraw, id(attributes), made_of)
        hit = encoded.get(key)
        # the entry holds the objects it was made of: their ids cannot be reused meanwhile
        if hit is not None and hit[0] is attributes and all(
                a is b for a, b in zip(hit[1], nlris, strict=True)):
            return hit[2]
        made = list(update.messages(negotiated, include_withdraw))
        encoded[key] = (attributes, list(nlris), made)
        while len(encoded) > ENCODED_KEEP:
            del encoded[next(iter(encoded))]
        return made

    def new_update(self: Any, include_withdraw: bool) -> Any:
        if self.neighbor.api.get("send-update", False):
            yield from original_new_update(self, include_withdraw)
            return
        negotiated = self.negotiated
        group = session_group(negotiated)
        out: list[bytes] = []
        for update in self.neighbor.rib.outgoing.updates(self.neighbor["group-updates"]):
            out += messages(update, group, negotiated, include_withdraw)
        if out:
            self.peer.stats["send-update"] += len(out)
            for _ in self.connection.writer(b"".join(out)):
                yield _NOP  # the socket took part of it: the rest in a later turn
        yield _UPDATE

    from exabgp.bgp.message.update.attribute import Attribute

    NEXT_HOP = Attribute.CODE.NEXT_HOP
    protocol_cls.new_update = new_update


def _eat(message: Any, source: Any = "", level: Any = "") -> None:
    pass


def quiet_logging(log_cls: Any, option_cls: Any) -> None:
    """Once ExaBGP has read its log settings (``log.init``), each of ``log.debug`` and
    ``log.info`` whose level is off does nothing: ExaBGP's own would return the same
    nothing after asking ``option.log_enabled`` (the level is set there, once, for every
    source).  A level that is on keeps ExaBGP's method."""
    original_init = log_cls.init
    methods = {"debug": "DEBUG", "info": "INFO"}
    originals = {name: log_cls.__dict__[name] for name in methods}

    def init(env: Any) -> None:
        original_init(env)
        for name, level in methods.items():
            on = option_cls.logit.get(level, False)
            setattr(log_cls, name, originals[name] if on else staticmethod(_eat))

    log_cls.init = staticmethod(init)


def reload_not_gated(reactor_cls: Any) -> None:
    """Reload whatever the peers have queued: ``Reactor.run`` clears the reload signal, then
    skips the reload while ``_pending_adjribout`` is true, and a peer that cannot connect
    has routes queued for as long as it cannot — every reload in that time was lost."""
    reactor_cls._pending_adjribout = _nothing_pending


def _nothing_pending(self: Any) -> bool:
    return False


SKIP_ENV = "BGPD_EXABGP_SKIP"  # patches to leave out, comma-separated (measuring one alone)


def main() -> None:
    problems = None
    if sys.argv[1:] == [prestart.WAIT]:  # pre-started: import now, start when told
        problems = contract_problems()
        import exabgp.application.main  # noqa: F401

        prestart.take_start(sys.stdin.buffer.readline())
    if os.environ.get("BGPD_EXABGP_PLAIN") != "1":
        problems = contract_problems() if problems is None else problems
        if problems:
            print("bgpd's ExaBGP launcher cannot patch this ExaBGP: " + "; ".join(problems)
                  + ". Install the pinned release, or set BGPD_EXABGP_PLAIN=1 to run ExaBGP "
                  "as shipped (slower with many peers).", file=sys.stderr)
            sys.exit(EXIT_CONTRACT)
        skip = set(os.environ.get(SKIP_ENV, "").split(","))
        if "scheduling" not in skip:
            patch()
        if "shared_changes" not in skip:
            from exabgp.bgp.neighbor import Neighbor
            from exabgp.configuration.configuration import _Configuration

            shared_changes(Neighbor, _Configuration)
        if "update_groups" not in skip:
            from exabgp.reactor.protocol import Protocol

            update_groups(Protocol)
        if "logging" not in skip:
            from exabgp.logger import _log
            from exabgp.logger.option import option

            quiet_logging(_log, option)
        if "gc" not in skip:
            tune_gc()
        if "reload" not in skip:
            from exabgp.reactor.loop import Reactor

            reload_not_gated(Reactor)
    from exabgp.application.main import main as exabgp_main

    exabgp_main()


if __name__ == "__main__":
    main()
