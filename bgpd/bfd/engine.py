"""The BFD engine: every session's packets and clock, in a process of its own.

Theory of operation: ``python -m bgpd.bfd.engine``, started by
:class:`~bgpd.bfd.service.BfdService`, runs one ``selectors`` loop over the UDP sockets and
its command pipe, and runs each :class:`~bgpd.bfd.session.Session` (pure) by the clock.  Not
a thread of the daemon: a thread shares the daemon's interpreter lock, and a single
``json.loads`` of a 22 MB watch list holds that lock for 0.42 s (measured with
``integration_tests/bfd_probe.py``'s ``parse``), longer than a 300 ms detection time — the
peers took the session for dead.  A process has its own.

Transport: single hop (RFC 5881) packets come in on UDP 3784 and are accepted only with TTL /
hop limit 255 (§5); multihop (RFC 5883) packets come in on UDP 4784 and are accepted with the
session's lowest TTL (``Spec.min_ttl``: from ``ttlSecurity``, else any); one socket per family
and port.  Each session sends from its own socket, bound to the node's address and a source
port in 49152-65535 (RFC 5881 §4), connected to the peer's port 3784 or 4784, with TTL 255 and
DSCP CS6.  A packet is matched to its session by Your Discriminator, or while that is zero by
source address (RFC 5880 §6.8.6; one session per peer address, so the source alone names it
on either port), and must come from the session's peer, on the session's port.  Every packet
dropped is counted by reason; at most ``BURST`` packets are read per turn so that a flood
cannot hold the timers.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import selectors
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Iterable
from ipaddress import IPv6Address, ip_address
from typing import Any, BinaryIO

from bgpd.bfd.messages import Spec, Transition, View, plain, spec_of
from bgpd.bfd.packet import Control, Malformed, State, decode, encode
from bgpd.bfd.session import Session, Step
from ribs.types import Address

PORT = 3784
MULTIHOP_PORT = 4784
SOURCE_PORTS = (49152, 65535)
BURST = 256
RECEIVE_BUFFER = 1 << 20  # a burst of junk should not push the peers' packets out
VIEWS_EVERY = 2.0  # seconds between copies of the sessions sent to the daemon (a state
# change is sent at once)
QUANTUM = 0.005  # seconds: the loop turns at most this often ...
SLACK_SHARE = 0.05  # ... and at most this share of the shortest transmit interval
TTL = 255
_IP_RECVTTL = 12  # linux/in.h (Python's socket module has no name for it)
_SO_RCVBUFFORCE = 33  # asm-generic/socket.h
_CS6 = 0xC0


class _Endpoint:
    """A session and its sending socket (``target`` None: connected to the peer)."""

    def __init__(self, spec: Spec, session: Session, sock: socket.socket,
                 target: tuple[str, int] | tuple[str, int, int, int] | None) -> None:
        self.spec, self.session, self.sock, self.target = spec, session, sock, target
        self.due: float | None = None  # the deadline of its entry in force in the heap
        self.removed = False
        self.steady: bytes | None = None  # the peer's steady Up packet, and its source
        self.steady_source = ""
        self.wire: tuple[Control | None, bytes] = (None, b"")  # the last packet sent, encoded


def _target(spec: Spec, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    """Where the session's packets go (a link-local peer through its interface)."""
    if spec.peer.version == 4:
        return str(spec.peer), port
    scope = socket.if_nametoindex(spec.interface) if (
        spec.interface and isinstance(spec.peer, IPv6Address) and spec.peer.is_link_local) else 0
    return str(spec.peer), port, 0, scope


class Engine:
    """The sessions, their sockets and their clock: one process's main loop."""

    def __init__(self, *, commands: BinaryIO, out: BinaryIO, port: int = PORT,
                 multihop_port: int = MULTIHOP_PORT) -> None:
        self.commands, self.out = commands, out
        self.port, self.multihop_port = port, multihop_port
        self.dropped: Counter[str] = Counter()
        self.send_errors = 0
        self._buffer = b""
        self._endpoints: dict[Address, _Endpoint] = {}
        self._addresses: dict[str, Address] = {}
        # (deadline, order, endpoint): every session's next deadline, earliest first
        self._heap: list[tuple[float, int, _Endpoint]] = []
        self._order = itertools.count()
        self._by_discriminator: dict[int, _Endpoint] = {}
        self._steady: dict[bytes, _Endpoint] = {}  # a steady packet -> its session's endpoint
        self._receivers: dict[tuple[int, bool], socket.socket] = {}  # (family, multihop)
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self._views_sent = 0.0
        self._changed = True
        self._wall_offset = time.time() - time.monotonic()
        self._quantum = QUANTUM
        self._turned = 0.0

    def run(self) -> None:
        os.set_blocking(self.commands.fileno(), False)
        self._selector.register(self.commands, selectors.EVENT_READ, None)
        for family in (socket.AF_INET, socket.AF_INET6):
            for multihop, port in ((False, self.port), (True, self.multihop_port)):
                try:
                    self._receivers[family, multihop] = sock = self._receiver(family, port)
                except OSError as exc:
                    self._write({"problem": {"family": _family(family), "port": port,
                                             "error": str(exc)}})
                    continue
                self._selector.register(sock, selectors.EVENT_READ, multihop)
        while not self._stopping:
            now = time.monotonic()
            if now < self._turned + self._quantum:  # packets gather: one turn for many
                time.sleep(self._turned + self._quantum - now)
                now = time.monotonic()
            wait = min(self._heap[0][0] - now, VIEWS_EVERY) if self._heap else VIEWS_EVERY
            for key, _ in self._selector.select(max(0.0, wait)):
                if key.data is None:
                    self._command()
                else:
                    self._read(key.fileobj, key.data)  # type: ignore[arg-type]
            now = self._turned = time.monotonic()
            heap = self._heap
            while heap and heap[0][0] <= now:
                due, _, endpoint = heapq.heappop(heap)
                if due == endpoint.due and not endpoint.removed:  # (else superseded)
                    endpoint.due = None  # taken: the tick schedules the next one
                    self._handle(endpoint, endpoint.session.tick(now))
            if self._changed or now - self._views_sent >= VIEWS_EVERY:
                self._publish_views(now)
        self._shutdown()

    def _command(self) -> None:
        """Lines from the daemon: ``{"configure": [spec, ...]}``, ``{"views": true}`` (a copy
        of the sessions now) or ``{"stop": true}``; the
        end of the pipe (the daemon gone without a word) stops the engine without AdminDown:
        to the peers that is a failure, as it is."""
        try:
            data = os.read(self.commands.fileno(), 1 << 16)
        except BlockingIOError:
            return
        if not data:
            os._exit(0)
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            message = json.loads(line)
            if message.get("stop"):
                self._stopping = True
            elif message.get("views"):
                self._changed = True  # sent at the end of this turn
            elif "configure" in message:
                self._apply({s.peer: s for s in map(spec_of, message["configure"])},
                            time.monotonic())

    def _apply(self, wanted: dict[Address, Spec], now: float) -> None:
        self._changed = True
        for peer in set(self._endpoints) - set(wanted):
            self._remove(self._endpoints[peer], now)
        for peer, spec in wanted.items():
            endpoint = self._endpoints.get(peer)
            if endpoint is not None and _path(endpoint.spec) != _path(spec):
                self._remove(endpoint, now)
                endpoint = None
            if endpoint is None:
                self._add(spec, now)
            elif endpoint.spec != spec:  # (the timers or the lowest TTL)
                endpoint.session.reconfigure(spec.timers)
                endpoint.spec = spec
                self._schedule(endpoint)
        self._retune()

    def _add(self, spec: Spec, now: float) -> None:
        try:
            target = _target(spec, self.multihop_port if spec.multihop else self.port)
            sock = self._sender(spec)
        except OSError as exc:  # (an interface gone, an address not on the node)
            self._write({"transition": plain(Transition(spec.peer, "-", "-",
                                                         f"cannot send: {exc}", False))})
            return
        discriminator = random.randrange(1, 2**32)
        while discriminator in self._by_discriminator:
            discriminator = random.randrange(1, 2**32)
        session = Session(peer=spec.peer, local=spec.local, discriminator=discriminator,
                          timers=spec.timers, now=now)
        try:  # a connected socket sends without an address to parse or a route to look up
            sock.connect(target)
            endpoint = _Endpoint(spec, session, sock, None)
        except OSError:  # (no route now): sent with the address, packet by packet
            endpoint = _Endpoint(spec, session, sock, target)
        self._endpoints[spec.peer] = endpoint
        self._by_discriminator[discriminator] = endpoint
        self._schedule(endpoint)

    def _remove(self, endpoint: _Endpoint, now: float) -> None:
        self._send(endpoint, [endpoint.session.admin_down(now)])
        endpoint.sock.close()
        endpoint.removed = True
        del self._endpoints[endpoint.spec.peer]
        del self._by_discriminator[endpoint.session.discriminator]
        if endpoint.steady is not None:
            del self._steady[endpoint.steady]

    def _shutdown(self) -> None:
        now = time.monotonic()
        for endpoint in list(self._endpoints.values()):
            self._remove(endpoint, now)
        for sock in self._receivers.values():
            sock.close()
        self._publish_views(now)

    def _read(self, sock: socket.socket, multihop: bool) -> None:
        for _ in range(BURST):
            try:
                data, ancillary, _flags, source = sock.recvmsg(512, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.dropped["receive_error"] += 1
                return
            self._receive(data, ancillary, source, multihop)

    def _receive(self, data: bytes, ancillary: list[tuple[int, int, bytes]],
                 source: tuple[str, int] | tuple[str, int, int, int], multihop: bool) -> None:
        ttl = _ttl(ancillary)
        if not multihop and ttl != TTL:
            self.dropped["ttl"] += 1  # RFC 5881 §5: single hop only from a neighbour
            return
        steady = self._steady.get(data)
        if (steady is not None and source[0] == steady.steady_source
                and steady.spec.multihop is multihop and ttl >= steady.spec.min_ttl
                and steady.session.state is State.UP):
            steady.session.heard(time.monotonic())  # (its deadline in the heap can only be
            return  # earlier than the new one: a tick then finds nothing due and reschedules)
        try:
            pkt = decode(data)
        except Malformed as exc:
            self.dropped[str(exc)] += 1
            return
        address = self._addresses.get(source[0])
        if address is None:  # (parsed once per source: ipaddress is slow per packet)
            if len(self._addresses) > 4096:
                self._addresses.clear()
            address = self._addresses[source[0]] = ip_address(source[0].split("%", 1)[0])
        if pkt.your_discriminator:
            endpoint = self._by_discriminator.get(pkt.your_discriminator)
            if endpoint is None:
                self.dropped["unknown_discriminator"] += 1
                return
            if endpoint.spec.peer != address:
                self.dropped["wrong_source"] += 1
                return
        else:
            found = self._endpoints.get(address)
            if found is None:
                self.dropped["unknown_peer"] += 1
                return
            endpoint = found
        if endpoint.spec.multihop is not multihop:
            self.dropped["wrong_port"] += 1  # (single hop on 4784, or multihop on 3784)
            return
        if ttl < endpoint.spec.min_ttl:
            self.dropped["ttl"] += 1  # RFC 5883: fewer hops left than ttlSecurity allows
            return
        session = endpoint.session
        timers = (session.tx_interval(), session.detection_time())
        self._handle(endpoint, session.receive(pkt, time.monotonic()))
        if endpoint.steady is not None:
            del self._steady[endpoint.steady]
            endpoint.steady = None
        if pkt.state is State.UP and not (pkt.poll or pkt.final) and session.state is State.UP:
            endpoint.steady, endpoint.steady_source = data, source[0]  # (see Session.heard)
            self._steady[data] = endpoint
        if (session.tx_interval(), session.detection_time()) != timers:
            self._changed = True  # (status shows the timers agreed as soon as they are)
            self._retune()

    def _retune(self) -> None:
        """The loop's quantum from the shortest transmit interval, and each session told how
        late its ticks may run (a transmit interval only shortens by a packet received or a
        reconfiguration: both end here)."""
        shortest = min((e.session.tx_interval() for e in self._endpoints.values()),
                       default=1.0)
        self._quantum = min(QUANTUM, SLACK_SHARE * shortest)
        for endpoint in self._endpoints.values():
            endpoint.session.slack = self._quantum

    def _schedule(self, endpoint: _Endpoint) -> None:
        """The session's next deadline into the heap, unless the entry in force already has
        it (most packets received change nothing of it); an entry superseded is left to be
        skipped: ``due`` names the one in force."""
        deadline = endpoint.session.next_deadline()
        if deadline != endpoint.due:
            endpoint.due = deadline
            heapq.heappush(self._heap, (deadline, next(self._order), endpoint))

    def _handle(self, endpoint: _Endpoint, step: Step) -> None:
        self._schedule(endpoint)
        if step.send:
            self._send(endpoint, step.send)
        if step.transition is not None:
            before, after, diag = step.transition
            self._changed = True
            self._write({"transition": plain(Transition(
                endpoint.spec.peer, before.label, after.label, diag.label,
                endpoint.session.remote_cpi))})
        if step.signal is not None:
            self._write({"signal": plain(step.signal)})

    def _send(self, endpoint: _Endpoint, packets: Iterable[Control]) -> None:
        for pkt in packets:
            if endpoint.wire[0] is not pkt:  # (a periodic packet is the same value each time)
                endpoint.wire = (pkt, encode(pkt))
            try:
                if endpoint.target is None:
                    endpoint.sock.send(endpoint.wire[1])
                else:
                    endpoint.sock.sendto(endpoint.wire[1], endpoint.target)
            except OSError:
                self.send_errors += 1  # a link down: the peer's detection says the rest

    def _write(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message).encode() + b"\n")
        self.out.flush()

    def _publish_views(self, now: float) -> None:
        self._write({"views": [plain(self._view(e)) for e in self._endpoints.values()],
                     "dropped": dict(self.dropped), "send_errors": self.send_errors})
        self._views_sent, self._changed = now, False

    def _view(self, endpoint: _Endpoint) -> View:
        s, now = endpoint.session, time.monotonic()
        return View(
            peer=endpoint.spec.peer, local=endpoint.spec.local,
            interface=endpoint.spec.interface, state=s.state.label,
            remote_state=s.remote_state.label, diag=s.diag.label,
            since=s.since + self._wall_offset, tx_interval=s.tx_interval(),
            detection_time=s.detection_time(), multiplier=s.timers.multiplier,
            remote_multiplier=s.remote_mult, local_discriminator=s.discriminator,
            remote_discriminator=s.remote_discriminator, remote_cpi=s.remote_cpi,
            held_for=round(s.held_for(now), 3), received=s.counters.received,
            sent=s.counters.sent, detections=s.counters.detections,
            failures=s.counters.failures, damped=s.counters.damped,
            latest=round(s.counters.latest, 4), multihop=endpoint.spec.multihop)

    # --- sockets --------------------------------------------------------------------------------
    def _receiver(self, family: int, port: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:  # past net.core.rmem_max (root), else as far as it allows
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            sock.bind(("::", port))
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
            sock.bind(("0.0.0.0", port))
        sock.setblocking(False)
        return sock

    def _sender(self, spec: Spec) -> socket.socket:
        family = socket.AF_INET6 if spec.peer.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, _CS6)
            else:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, _CS6)
            if spec.interface:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                                spec.interface.encode())
            for _ in range(64):
                port = random.randint(*SOURCE_PORTS)
                try:
                    sock.bind((str(spec.local), port))
                    break
                except OSError as exc:
                    if exc.errno != 98:  # EADDRINUSE: try another port
                        raise
            else:
                raise OSError("no free source port in 49152-65535")
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock


def _ttl(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The packet's TTL / hop limit (0 if the kernel did not say)."""
    for level, kind, data in ancillary:
        if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL),
                             (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)):
            return int(struct.unpack("i", data[:4])[0]) if len(data) >= 4 else data[0]
    return 0


def _path(spec: Spec) -> tuple[object, ...]:
    """What a session's socket is made for: a change of it makes a new session."""
    return spec.local, spec.interface, spec.multihop


def _family(family: int) -> str:
    return "ipv6" if family == socket.AF_INET6 else "ipv4"


def main() -> int:
    from bgpd.speaker.bridge import die_with_parent

    die_with_parent()  # the daemon killed: no AdminDown, the peers see the failure
    port = int(sys.argv[1]) if len(sys.argv) > 1 else PORT
    multihop_port = int(sys.argv[2]) if len(sys.argv) > 2 else MULTIHOP_PORT
    Engine(commands=sys.stdin.buffer, out=sys.stdout.buffer, port=port,
           multihop_port=multihop_port).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
