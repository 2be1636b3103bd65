"""The kernel adapter: the daemon's only netlink user.

Theory of operation: one :class:`Kernel` talks to the routing table of one network namespace
for one protocol number (default 12, ``proto bird``) and one table (default main).

* **Snapshot** asks the kernel to filter the dump by protocol and table (strict checking on
  the socket, as ``ip route show proto bird`` does), so reading our routes costs the same
  whether the table holds a hundred foreign routes or a hundred thousand.
* **Apply** encodes the planned operations with :mod:`bgpd.rtnl` and sends them many to a
  datagram.  Only the last message of a datagram asks for an acknowledgement: the kernel
  handles a datagram synchronously and answers every failed message with an error carrying
  its sequence number, so one round trip per datagram gives a result per route.  A delete of
  a route that is already gone counts as done.  Failures are mapped to :mod:`bgpd.errors`.
* **Events**: a second socket joined to the route and link multicast groups feeds a
  :class:`Monitor`; a reader callback drains it without awaiting per datagram, and an
  overflow of its buffer is reported as such (the caller then resyncs from a snapshot).

Sockets for another namespace are created inside it through pyroute2 (which enters the
namespace in a helper process and passes the socket back, so this process never changes
namespace); in the daemon's own namespace a plain socket is opened and pyroute2 never
imported.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bgpd import rtnl
from bgpd.errors import KernelError, NamespaceNotFound, NoSuchDevice, kernel_error
from bgpd.rtnl import PROTO_BIRD, TABLE_MAIN
from ribs.kernel_plan import Address, KernelRoute, Op, OpKind

_BATCH_BYTES = 60_000  # below the default netlink send buffer
_RCVBUF = 8 << 20


@dataclass(frozen=True, slots=True)
class OpResult:
    op: Op
    error: KernelError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class RouteEvent:
    """A route changed in our table: ``owned`` when it carries our protocol number."""

    deleted: bool
    owned: bool
    route: KernelRoute


@dataclass(frozen=True, slots=True)
class LinkEvent:
    deleted: bool
    index: int
    name: str | None


@dataclass(frozen=True, slots=True)
class Overflow:
    """Events were lost (socket buffer overrun): only a fresh snapshot tells the truth."""


Event = RouteEvent | LinkEvent | Overflow


def _netlink_socket(netns: str | None, *, groups: int = 0) -> socket.socket:
    if netns is None:  # the daemon's own namespace: no helper process, and no pyroute2 to
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    else:  # import (its package imports most of itself: a fifth of the daemon's start)
        from pyroute2.netns import create_socket
        try:
            sock = create_socket(netns, family=socket.AF_NETLINK, socket_type=socket.SOCK_RAW,
                                 proto=socket.NETLINK_ROUTE, flags=0)
        except FileNotFoundError as exc:
            raise NamespaceNotFound(f"network namespace {netns!r} does not exist") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, _RCVBUF)  # SO_RCVBUFFORCE (needs CAP_NET_ADMIN)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    for option in (rtnl.NETLINK_CAP_ACK, rtnl.NETLINK_EXT_ACK, rtnl.NETLINK_GET_STRICT_CHK):
        sock.setsockopt(rtnl.SOL_NETLINK, option, 1)
    sock.bind((0, groups))
    sock.setblocking(False)
    return sock


class Kernel:
    """Owned routes of one protocol in one table of one namespace."""

    def __init__(self, *, netns: str | None = None, protocol: int = PROTO_BIRD,
                 table: int = TABLE_MAIN) -> None:
        self.netns = netns
        self.protocol = protocol
        self.table = table
        self._sock = _netlink_socket(netns)
        self._seq = 0
        self._lock = asyncio.Lock()
        self.ifnames: dict[int, str] = {}
        self.decoder = rtnl.RouteDecoder()
        self._ifindex: dict[str, int] = {}

    def close(self) -> None:
        self._sock.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    async def _recv(self) -> bytes:
        return await asyncio.get_running_loop().sock_recv(self._sock, 1 << 16)

    async def _dump(self, request: bytes, seq: int) -> list[rtnl.Message]:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self._sock, request)
        out: list[rtnl.Message] = []
        while True:
            for msg in rtnl.iter_messages(await self._recv()):
                if msg.seq != seq:
                    continue
                if msg.kind == rtnl.NLMSG_DONE:
                    return out
                if msg.kind == rtnl.NLMSG_ERROR:
                    err, detail = rtnl.decode_error(msg)
                    raise kernel_error(err, detail, adding=False)
                out.append(msg)

    async def refresh_links(self) -> Mapping[int, str]:
        """Re-read the namespace's devices (index ↔ name)."""
        async with self._lock:
            seq = self._next_seq()
            msgs = await self._dump(rtnl.encode_link_dump(seq=seq), seq)
        names = {}
        for msg in msgs:
            index, name = rtnl.decode_link(msg)
            if name is not None:
                names[index] = name
        self.set_links(names)
        return names

    async def interface_of(self, address: Address) -> str | None:
        """The device that holds ``address`` in this namespace (None if none does)."""
        async with self._lock:
            seq = self._next_seq()
            msgs = await self._dump(rtnl.encode_addr_dump(seq=seq), seq)
        if not self.ifnames:
            await self.refresh_links()
        for msg in msgs:
            decoded = rtnl.decode_addr(msg)
            if decoded is not None and decoded[1] == address:
                return self.ifnames.get(decoded[0])
        return None

    def set_links(self, names: Mapping[int, str]) -> None:
        self.ifnames = dict(names)
        self._ifindex = {name: index for index, name in names.items()}
        self.decoder.set_links(self.ifnames)

    def note_link(self, event: LinkEvent) -> None:
        """Keep the device map current from a link event."""
        old = self.ifnames.pop(event.index, None)
        if old is not None:
            self._ifindex.pop(old, None)
        if not event.deleted and event.name is not None:
            self.ifnames[event.index] = event.name
            self._ifindex[event.name] = event.index
        if old != event.name or event.deleted:
            self.decoder.set_links(self.ifnames)

    def ifindex(self, name: str) -> int:
        try:
            return self._ifindex[name]
        except KeyError:
            raise rtnl.UnknownDevice(name) from None

    async def snapshot(self) -> list[KernelRoute]:
        """Every route of our protocol in our table, IPv4 and IPv6 (filtered by the kernel)."""
        if not self.ifnames:
            await self.refresh_links()
        loop = asyncio.get_running_loop()
        routes: list[KernelRoute] = []
        async with self._lock:
            for version in (4, 6):
                seq = self._next_seq()
                request = rtnl.encode_route_dump(
                    version, seq=seq, protocol=self.protocol, table=self.table
                )
                await loop.sock_sendall(self._sock, request)
                try:
                    while not self.decoder.decode_dump(
                        await self._recv(), seq, routes, protocol=self.protocol,
                        table=self.table, version=version,
                    ):
                        pass
                except rtnl.DumpError as exc:
                    raise kernel_error(*exc.args, adding=False) from exc
        return routes

    async def apply(self, ops: Sequence[Op]) -> list[OpResult]:
        """Write ``ops`` in order; one result per op, failures as :class:`KernelError` values."""
        if not ops:
            return []
        if not self.ifnames:
            await self.refresh_links()
        errors: dict[int, KernelError] = {}
        async with self._lock:
            first_seq = self._seq + 1
            chunk: list[bytes] = []
            size = 0
            for i, op in enumerate(ops):
                seq = self._next_seq()
                try:
                    data = rtnl.encode_route(
                        op.kind, op.route, seq=seq, protocol=self.protocol,
                        table=self.table, ifindex=self.ifindex,
                    )
                except rtnl.UnknownDevice as exc:
                    errors[i] = NoSuchDevice(f"no device named {exc.args[0]!r} in this namespace")
                    continue
                chunk.append(data)
                size += len(data)
                if size >= _BATCH_BYTES:
                    await self._send_batch(chunk, ops, first_seq, errors)
                    chunk, size = [], 0
            if chunk:
                await self._send_batch(chunk, ops, first_seq, errors)
        deleted = {op.route for i, op in enumerate(ops) if op.kind is OpKind.DELETE
                   and i not in errors}
        if deleted:  # a flood's withdrawal: its decoded routes are not kept until the next dump
            self.decoder.forget(deleted)
        return [OpResult(op, errors.get(i)) for i, op in enumerate(ops)]

    async def _send_batch(
        self, chunk: list[bytes], ops: Sequence[Op], first_seq: int,
        errors: dict[int, KernelError],
    ) -> None:
        # Ask for an acknowledgement on the last message only: it marks the end of the replies.
        last = bytearray(chunk[-1])
        flags, barrier = struct.unpack_from("=HI", last, 6)
        struct.pack_into("=H", last, 6, flags | rtnl.NLM_F_ACK)
        chunk[-1] = bytes(last)
        await asyncio.get_running_loop().sock_sendall(self._sock, b"".join(chunk))
        while True:
            for msg in rtnl.iter_messages(await self._recv()):
                if msg.kind != rtnl.NLMSG_ERROR:
                    continue
                err, detail = rtnl.decode_error(msg)
                index = (msg.seq - first_seq) & 0xFFFFFFFF
                if err and index < len(ops):
                    op = ops[index]
                    if not (op.kind is OpKind.DELETE and err == errno.ESRCH):
                        errors[index] = kernel_error(err, detail, adding=op.kind is OpKind.ADD)
                if msg.seq == barrier:
                    return

    def monitor(self) -> Monitor:
        return Monitor(self)


class Monitor:
    """Route and link events of the kernel's namespace, drained by a reader callback."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        groups = rtnl.RTMGRP_LINK | rtnl.RTMGRP_IPV4_ROUTE | rtnl.RTMGRP_IPV6_ROUTE
        self._sock = _netlink_socket(kernel.netns, groups=groups)
        self._events: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._drain)

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _drain(self) -> None:
        kernel = self._kernel
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._events.append(Overflow())
                continue
            for msg in rtnl.iter_messages(data):
                self._decode(msg, kernel)
        if self._events:
            self._ready.set()

    def _decode(self, msg: rtnl.Message, kernel: Kernel) -> None:
        if msg.kind in (rtnl.RTM_NEWROUTE, rtnl.RTM_DELROUTE):
            decoded = kernel.decoder.decode(msg)
            if decoded is not None and decoded.table == kernel.table:
                self._events.append(RouteEvent(
                    deleted=msg.kind == rtnl.RTM_DELROUTE,
                    owned=decoded.protocol == kernel.protocol,
                    route=decoded.route,
                ))
        elif msg.kind in (rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK):
            index, name = rtnl.decode_link(msg)
            event = LinkEvent(deleted=msg.kind == rtnl.RTM_DELLINK, index=index, name=name)
            kernel.note_link(event)
            self._events.append(event)

    async def next_batch(self) -> list[Event]:
        """Wait for events and return all that are queued."""
        while not self._events:
            self._ready.clear()
            await self._ready.wait()
        batch = list(self._events)
        self._events.clear()
        return batch
