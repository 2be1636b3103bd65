"""BFD's IO shell: UDP sockets and a clock for every :class:`~bgpd.bfd.session.Session`.

Theory of operation: one thread runs a ``selectors`` loop — not the daemon's event loop, which
a burst of routes or a reload can hold for longer than a detection time (100 ms x 3).  The
thread owns the sessions; everything else reaches them through two thread-safe doors:
:meth:`BfdService.configure` (the sessions wanted, applied at the thread's next turn) and
:meth:`BfdService.snapshot` (a copy for status and metrics).  What sessions tell BGP, and
every state change, go back to the event loop with ``call_soon_threadsafe``.

Transport (RFC 5881, single hop): packets come in on UDP 3784 (one socket per family) and are
accepted only with TTL / hop limit 255 (§5); each session sends from its own socket, bound to
the node's address and a source port in 49152-65535 (§4), with TTL 255 and DSCP CS6.  A packet
is matched to its session by Your Discriminator, or while that is zero by source address
(RFC 5880 §6.8.6), and must come from the session's peer.  Every packet dropped is counted by
reason; at most ``BURST`` packets are read per turn so that a flood cannot hold the timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import selectors
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address

import structlog

from bgpd.bfd.packet import Malformed, decode, encode
from bgpd.bfd.session import Session, Signal, Step, Timers
from ribs.types import Address

log = structlog.get_logger("bgpd.bfd")

PORT = 3784
SOURCE_PORTS = (49152, 65535)
BURST = 256
RECEIVE_BUFFER = 1 << 20  # a burst of junk should not push the peers' packets out
TTL = 255
_IP_RECVTTL = 12  # linux/in.h (Python's socket module has no name for it)
_SO_RCVBUFFORCE = 33  # asm-generic/socket.h
_CS6 = 0xC0


@dataclass(frozen=True, slots=True)
class Spec:
    """A session wanted: the peer, our address towards it, the interface and timers."""
    peer: Address
    local: Address
    interface: str | None
    timers: Timers


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change, for the log and the counters (made on the BFD thread)."""
    peer: Address
    before: str
    after: str
    diag: str
    remote_cpi: bool


@dataclass(frozen=True, slots=True)
class View:
    """One session as status shows it (a copy made on the BFD thread)."""
    peer: Address
    local: Address
    interface: str | None
    state: str
    remote_state: str
    diag: str
    since: float  # wall clock
    tx_interval: float
    detection_time: float
    multiplier: int
    remote_multiplier: int
    local_discriminator: int
    remote_discriminator: int
    remote_cpi: bool
    held_for: float
    received: int
    sent: int
    detections: int
    failures: int
    damped: int


Event = Signal | Transition


class _Endpoint:
    """A session and its sending socket."""

    def __init__(self, spec: Spec, session: Session, sock: socket.socket) -> None:
        self.spec, self.session, self.sock = spec, session, sock
        scope = socket.if_nametoindex(spec.interface) if (
            spec.interface and isinstance(spec.peer, IPv6Address)
            and spec.peer.is_link_local) else 0
        self.target: tuple[str, int] | tuple[str, int, int, int] = (
            (str(spec.peer), PORT, 0, scope) if spec.peer.version == 6 else (str(spec.peer), PORT))


class BfdService:
    def __init__(self, *, on_event: Callable[[Event], None],
                 loop: asyncio.AbstractEventLoop | None = None, port: int = PORT) -> None:
        self.on_event = on_event
        self.loop = loop
        self.port = port
        self.dropped: Counter[str] = Counter()
        self.send_errors = 0
        self._lock = threading.Lock()
        self._wanted: dict[Address, Spec] | None = None
        self._views: list[View] = []
        self._endpoints: dict[Address, _Endpoint] = {}
        self._by_discriminator: dict[int, _Endpoint] = {}
        self._receivers: dict[int, socket.socket] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._wall_offset = time.time() - time.monotonic()

    # --- the doors (any thread) ---------------------------------------------------------------
    def configure(self, specs: Iterable[Spec]) -> None:
        with self._lock:
            self._wanted = {s.peer: s for s in specs}
        if self._thread is None and self._wanted:
            self._start()
        self._wake()

    def snapshot(self) -> list[View]:
        with self._lock:
            return list(self._views)

    def stop(self) -> None:
        """Send AdminDown on every session, close the sockets, end the thread."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        self._thread = None

    # --- the thread -----------------------------------------------------------------------------
    def _start(self) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                self._receivers[family] = sock = self._receiver(family)
            except OSError as exc:
                log.error("bfd_listen_failed", family=_family(family), port=self.port,
                          problem=f"BFD packets of this family cannot be received: {exc}")
                continue
            self._selector.register(sock, selectors.EVENT_READ, family)
        self._thread = threading.Thread(target=self._run, name="bfd", daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: already awake
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            deadline = min((e.session.next_deadline() for e in self._endpoints.values()),
                           default=now + 1.0)
            for key, _ in self._selector.select(max(0.0, min(deadline - now, 1.0))):
                if key.data is None:
                    self._drain_wake()
                    self._apply(time.monotonic())
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]
            now = time.monotonic()
            for endpoint in list(self._endpoints.values()):
                if endpoint.session.next_deadline() <= now:
                    self._handle(endpoint, endpoint.session.tick(now))
            self._publish_views()
        self._shutdown()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _apply(self, now: float) -> None:
        with self._lock:
            wanted, self._wanted = self._wanted, None
        if wanted is None:
            return
        for peer in set(self._endpoints) - set(wanted):
            self._remove(self._endpoints[peer], now)
        for peer, spec in wanted.items():
            endpoint = self._endpoints.get(peer)
            if endpoint is not None and (endpoint.spec.local, endpoint.spec.interface) != (
                    spec.local, spec.interface):
                self._remove(endpoint, now)
                endpoint = None
            if endpoint is None:
                self._add(spec, now)
            elif endpoint.spec.timers != spec.timers:
                endpoint.session.reconfigure(spec.timers)
                endpoint.spec = spec

    def _add(self, spec: Spec, now: float) -> None:
        try:
            sock = self._sender(spec)
        except OSError as exc:
            self._emit(Transition(spec.peer, "-", "-", f"cannot send: {exc}", False))
            return
        discriminator = random.randrange(1, 2**32)
        while discriminator in self._by_discriminator:
            discriminator = random.randrange(1, 2**32)
        session = Session(peer=spec.peer, local=spec.local, discriminator=discriminator,
                          timers=spec.timers, now=now)
        endpoint = _Endpoint(spec, session, sock)
        self._endpoints[spec.peer] = endpoint
        self._by_discriminator[discriminator] = endpoint

    def _remove(self, endpoint: _Endpoint, now: float) -> None:
        self._send(endpoint, [endpoint.session.admin_down(now)])
        endpoint.sock.close()
        del self._endpoints[endpoint.spec.peer]
        del self._by_discriminator[endpoint.session.discriminator]

    def _shutdown(self) -> None:
        now = time.monotonic()
        for endpoint in list(self._endpoints.values()):
            self._remove(endpoint, now)
        for sock in self._receivers.values():
            sock.close()
        self._publish_views()

    def _read(self, sock: socket.socket) -> None:
        for _ in range(BURST):
            try:
                data, ancillary, _flags, source = sock.recvmsg(512, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.dropped["receive_error"] += 1
                return
            self._receive(data, ancillary, source)

    def _receive(self, data: bytes, ancillary: list[tuple[int, int, bytes]],
                 source: tuple[str, int] | tuple[str, int, int, int]) -> None:
        if _ttl(ancillary) != TTL:
            self.dropped["ttl"] += 1  # RFC 5881 §5: single hop only from a neighbour
            return
        try:
            pkt = decode(data)
        except Malformed as exc:
            self.dropped[str(exc)] += 1
            return
        address = ip_address(source[0].split("%", 1)[0])
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
        self._handle(endpoint, endpoint.session.receive(pkt, time.monotonic()))

    def _handle(self, endpoint: _Endpoint, step: Step) -> None:
        if step.send:
            self._send(endpoint, step.send)
        if step.transition is not None:
            before, after, diag = step.transition
            self._emit(Transition(endpoint.spec.peer, before.label, after.label, diag.label,
                                  endpoint.session.remote_cpi))
        if step.signal is not None:
            self._emit(step.signal)

    def _send(self, endpoint: _Endpoint, packets: Iterable[object]) -> None:
        for pkt in packets:
            try:
                endpoint.sock.sendto(encode(pkt), endpoint.target)  # type: ignore[arg-type]
            except OSError:
                self.send_errors += 1  # a link down: the peer's detection says the rest

    def _emit(self, event: Event) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self.on_event, event)

    def _publish_views(self) -> None:
        views = [self._view(e) for e in self._endpoints.values()]
        with self._lock:
            self._views = views

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
            failures=s.counters.failures, damped=s.counters.damped)

    # --- sockets --------------------------------------------------------------------------------
    def _receiver(self, family: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:  # past net.core.rmem_max (root), else as far as it allows
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            sock.bind(("::", self.port))
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
            sock.bind(("0.0.0.0", self.port))
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


def _ttl(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL),
                             (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)):
            return int(struct.unpack("i", data[:4])[0]) if len(data) >= 4 else data[0]
    return None


def _family(family: int) -> str:
    return "ipv6" if family == socket.AF_INET6 else "ipv4"
