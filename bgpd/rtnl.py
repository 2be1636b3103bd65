"""rtnetlink route and link messages: encoding and decoding, no sockets.

Theory of operation: the daemon sends only a handful of message shapes — route add, replace and
delete, a protocol-filtered route dump, a link dump — so it encodes them directly with
precompiled ``struct`` layouts instead of building generic netlink objects (which costs
~300 µs a route and would cap installs at a few thousand routes per second).  Decoding reads
the same few attributes back.  Everything here is pure: bytes in, values out.  The IO lives in
:mod:`bgpd.kernel`.

Layouts (linux/netlink.h, linux/rtnetlink.h): ``nlmsghdr`` (len u32, type u16, flags u16,
seq u32, pid u32); ``rtmsg`` (family, dst_len, src_len, tos, table, protocol, scope, type: u8;
flags u32); ``rtattr`` (len u16, type u16, payload padded to 4); ``rtnexthop`` (len u16,
flags u8, hops u8, ifindex s32); ``ifinfomsg`` (family u8, pad u8, type u16, index s32,
flags u32, change u32); ``nlmsgerr`` (error s32, the request's header, then extended-ack TLVs).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import NamedTuple

from ribs.kernel_plan import KernelRoute, NextHop, OpKind, RouteKind
from ribs.types import IPv4Prefix, IPv6Prefix

PROTO_BIRD = 12  # the routes bgpd owns, as Calico's BIRD tags them
TABLE_MAIN = 254

# message types
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_GETADDR = 22
IFA_ADDRESS, IFA_LOCAL = 1, 2
# header flags
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_CAPPED = 0x100  # on an NLMSG_ERROR: only the request's header is echoed
NLM_F_ACK_TLVS = 0x200  # on an NLMSG_ERROR: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1
# route attributes
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 9, 15
RTNH_F_ONLINK = 0x4
RT_SCOPE_UNIVERSE, RT_SCOPE_NOWHERE = 0, 255
RT_TABLE_COMPAT = 252
IFLA_IFNAME = 3
# multicast groups (bit masks for bind)
RTMGRP_LINK, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE = 0x1, 0x40, 0x400
# socket options (SOL_NETLINK)
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 10, 11, 12

_RTN = {
    1: RouteKind.UNICAST,
    6: RouteKind.BLACKHOLE,
    7: RouteKind.UNREACHABLE,
    8: RouteKind.PROHIBIT,
}
_RTN_CODE = {kind: code for code, kind in _RTN.items()}
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}

_HDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_RTA_U32 = struct.Struct("=HHI")
_RTNH = struct.Struct("=HBBi")
_IFINFO = struct.Struct("=BxHiII")
_ERR = struct.Struct("=i")
_IFADDR = struct.Struct("=BBBBI")
_U32 = struct.Struct("=I")

# No NLM_F_ACK: the kernel answers failures anyway; the sender acks the last of a batch only.
_OP_FLAGS = {
    OpKind.ADD: NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
    OpKind.REPLACE: NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
    OpKind.DELETE: NLM_F_REQUEST,
}


class UnknownDevice(LookupError):
    """A next hop names a device the namespace does not have."""


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _RTA.pack(length, kind) + payload + b"\0" * (-length & 3)


def _u32(kind: int, value: int) -> bytes:
    return _RTA_U32.pack(8, kind, value)


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HDR.pack(16 + len(body), kind, flags, seq, 0) + body


def encode_route(
    op: OpKind,
    route: KernelRoute,
    *,
    seq: int,
    protocol: int,
    table: int,
    ifindex: Callable[[str], int],
) -> bytes:
    """One RTM_NEWROUTE / RTM_DELROUTE request; ``ifindex`` maps device names (may raise
    :class:`UnknownDevice`)."""
    prefix = route.prefix
    family = _AF[prefix.version]
    attrs = [_u32(RTA_TABLE, table)]
    if prefix.prefixlen:
        attrs.append(_attr(RTA_DST, prefix.network_address.packed))
    if op is OpKind.DELETE:
        if route.effective_metric:
            attrs.append(_u32(RTA_PRIORITY, route.effective_metric))
        header = _RTMSG.pack(
            family, prefix.prefixlen, 0, 0, table if table < 256 else RT_TABLE_COMPAT,
            protocol, RT_SCOPE_NOWHERE, 0, 0,
        )
        return _message(RTM_DELROUTE, _OP_FLAGS[op], seq, header + b"".join(attrs))

    if route.metric is not None:
        attrs.append(_u32(RTA_PRIORITY, route.metric))
    flags = 0
    hops = route.nexthops
    if len(hops) == 1:
        hop = hops[0]
        if hop.gateway is not None:
            attrs.append(_attr(RTA_GATEWAY, hop.gateway.packed))
        if hop.ifname is not None:
            attrs.append(_u32(RTA_OIF, ifindex(hop.ifname)))
        if hop.onlink:
            flags |= RTNH_F_ONLINK
    elif hops:
        entries = []
        for hop in hops:
            gw = _attr(RTA_GATEWAY, hop.gateway.packed) if hop.gateway is not None else b""
            index = ifindex(hop.ifname) if hop.ifname is not None else 0
            hop_flags = RTNH_F_ONLINK if hop.onlink else 0
            entries.append(_RTNH.pack(8 + len(gw), hop_flags, 0, index) + gw)
        attrs.append(_attr(RTA_MULTIPATH, b"".join(entries)))
    header = _RTMSG.pack(
        family, prefix.prefixlen, 0, 0, table if table < 256 else RT_TABLE_COMPAT,
        protocol, RT_SCOPE_UNIVERSE, _RTN_CODE[route.kind], flags,
    )
    return _message(RTM_NEWROUTE, _OP_FLAGS[op], seq, header + b"".join(attrs))


def encode_route_dump(version: int, *, seq: int, protocol: int, table: int) -> bytes:
    """A dump request the kernel filters itself (needs NETLINK_GET_STRICT_CHK on the socket)."""
    header = _RTMSG.pack(
        _AF[version], 0, 0, 0, table if table < 256 else RT_TABLE_COMPAT, protocol, 0, 0, 0
    )
    return _message(
        RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, header + _u32(RTA_TABLE, table)
    )


def encode_addr_dump(*, seq: int) -> bytes:
    return _message(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, _IFADDR.pack(0, 0, 0, 0, 0))


def decode_addr(msg: Message) -> tuple[int, IPv4Address | IPv6Address, int] | None:
    """(ifindex, address, prefix length) of an RTM_NEWADDR."""
    family, length, _flags, _scope, index = _IFADDR.unpack_from(msg.data, msg.offset)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    found: bytes | None = None
    for kind, lo, hi in _attrs(msg.data, msg.offset + _IFADDR.size, msg.end):
        if kind == IFA_LOCAL or (kind == IFA_ADDRESS and found is None):
            found = msg.data[lo:hi]
    if found is None:
        return None
    return index, _address(4 if family == socket.AF_INET else 6, found), length


def encode_link_dump(*, seq: int) -> bytes:
    return _message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, _IFINFO.pack(0, 0, 0, 0, 0))


@dataclass(frozen=True, slots=True)
class Message:
    kind: int
    flags: int
    seq: int
    data: bytes
    offset: int  # where the payload starts in ``data``
    end: int


def iter_messages(data: bytes) -> Iterator[Message]:
    """Split one datagram into netlink messages (a truncated tail is dropped)."""
    pos, size = 0, len(data)
    while pos + 16 <= size:
        length, kind, flags, seq, _ = _HDR.unpack_from(data, pos)
        if length < 16 or pos + length > size:
            return
        yield Message(kind, flags, seq, data, pos + 16, pos + length)
        pos += (length + 3) & ~3


def _attrs(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute in data[pos:end]."""
    while pos + 4 <= end:
        length, kind = _RTA.unpack_from(data, pos)
        if length < 4 or pos + length > end:
            return
        yield kind & 0x3FFF, pos + 4, pos + length
        pos += (length + 3) & ~3


def decode_error(msg: Message) -> tuple[int, str]:
    """(errno, extended-ack text) of an NLMSG_ERROR; errno 0 is a plain acknowledgement."""
    (error,) = _ERR.unpack_from(msg.data, msg.offset)
    text = ""
    if error and msg.flags & NLM_F_ACK_TLVS:
        (orig_len,) = _U32.unpack_from(msg.data, msg.offset + 4)
        echoed = 16 if msg.flags & NLM_F_CAPPED else max(16, (orig_len + 3) & ~3)
        start = msg.offset + 4 + echoed
        for kind, lo, hi in _attrs(msg.data, start, msg.end):
            if kind == NLMSGERR_ATTR_MSG:
                text = msg.data[lo:hi].rstrip(b"\0").decode("utf-8", "replace")
    return -error, text


class RouteMessage(NamedTuple):
    """A decoded route with the fields that decide ownership."""

    protocol: int
    table: int
    route: KernelRoute


def _address(version: int, raw: bytes) -> IPv4Address | IPv6Address:
    return IPv4Address(raw) if version == 4 else IPv6Address(raw)


class RouteDecoder:
    """Decodes route messages, given the namespace's device names.

    Next hops are interned (a table's routes share a handful of them) and the routes of the
    last complete dump are remembered by their exact bytes, so reading an unchanged table
    again costs a dictionary look-up per route.  Only the last dump's routes are kept: a route
    deleted since then is forgotten at the next dump, and route events are looked up but not
    remembered — memory follows the table, not the churn it has seen.  :meth:`set_links`
    forgets both (device names appear in the values).
    """

    def __init__(self, ifnames: Mapping[int, str] | None = None) -> None:
        self.ifnames: Mapping[int, str] = dict(ifnames or {})
        self._hops: dict[tuple[int, bytes | None, int, bool], NextHop] = {}
        # by address family (a message's first byte): the last complete dump's routes
        self._memo: dict[int, dict[bytes, RouteMessage | None]] = {}
        self._dumping: tuple[int, dict[bytes, RouteMessage | None]] | None = None

    def set_links(self, ifnames: Mapping[int, str]) -> None:
        self.ifnames = dict(ifnames)
        self._hops.clear()
        self._memo.clear()
        self._dumping = None

    def forget(self, routes: Collection[KernelRoute]) -> None:
        """Drop the remembered decodings of ``routes`` (deleted from the kernel since the
        last dump)."""
        for family, memo in self._memo.items():
            self._memo[family] = {key: found for key, found in memo.items()
                                  if found is None or found.route not in routes}

    def decode(self, msg: Message) -> RouteMessage | None:
        """A route message as a value; None for families the daemon does not handle."""
        key = msg.data[msg.offset : msg.end]
        memo = self._memo.get(key[0], {}) if key else {}
        return memo[key] if key in memo else self._decode(key)

    def decode_dump(
        self, data: bytes, seq: int, out: list[KernelRoute], *, protocol: int, table: int,
        version: int = 4,
    ) -> bool:
        """Append the routes of one dump datagram to ``out``; True once the dump is done.
        ``version``: the IP version the dump asked for.

        Routes of another protocol or table are dropped here too, should a kernel without
        strict checking ignore the dump's filter.

        The hot path of a snapshot: it walks the datagram without building message objects.
        """
        pos, size = 0, len(data)
        unpack = _HDR.unpack_from
        family = _AF[version]
        if self._dumping is None or self._dumping[0] != seq:
            self._dumping = (seq, {})
        seen = self._dumping[1]
        memo = self._memo.get(family, {})
        while pos + 16 <= size:
            length, kind, _flags, mseq, _ = unpack(data, pos)
            if length < 16 or pos + length > size:
                break
            if mseq == seq:
                if kind == RTM_NEWROUTE:
                    key = data[pos + 16 : pos + length]
                    found = memo[key] if key in memo else self._decode(key)
                    seen[key] = found
                    if found is not None and found.protocol == protocol and found.table == table:
                        out.append(found.route)
                elif kind == NLMSG_DONE:
                    self._memo[family], self._dumping = seen, None
                    return True
                elif kind == NLMSG_ERROR:
                    msg = Message(kind, _flags, mseq, data, pos + 16, pos + length)
                    raise DumpError(*decode_error(msg))
            pos += (length + 3) & ~3
        return False

    def _hop(self, version: int, gateway: bytes | None, oif: int, onlink: bool) -> NextHop:
        key = (version, gateway, oif, onlink)
        hop = self._hops.get(key)
        if hop is None:
            name = (self.ifnames.get(oif) or f"if{oif}") if oif else None
            gw = _address(version, gateway) if gateway else None
            hop = self._hops[key] = NextHop(gw, name, onlink)
        return hop

    def _decode(self, data: bytes) -> RouteMessage | None:
        family, dst_len, _src, _tos, table, protocol, _scope, rtype, rflags = (
            _RTMSG.unpack_from(data, 0)
        )
        if family == socket.AF_INET:
            version = 4
        elif family == socket.AF_INET6:
            version = 6
        else:
            return None
        dst = b""
        gateway: bytes | None = None
        oif = 0
        metric: int | None = None  # absent: the kernel's default for the family
        multipath: list[NextHop] = []
        pos, end = _RTMSG.size, len(data)
        unpack_rta, unpack_u32 = _RTA.unpack_from, _U32.unpack_from
        while pos + 4 <= end:
            length, kind = unpack_rta(data, pos)
            if length < 4:
                break
            kind &= 0x3FFF
            if kind == RTA_DST:
                dst = data[pos + 4 : pos + length]
            elif kind == RTA_GATEWAY:
                gateway = data[pos + 4 : pos + length]
            elif kind == RTA_OIF:
                (oif,) = unpack_u32(data, pos + 4)
            elif kind == RTA_PRIORITY:
                (metric,) = unpack_u32(data, pos + 4)
            elif kind == RTA_TABLE:
                (table,) = unpack_u32(data, pos + 4)
            elif kind == RTA_MULTIPATH:
                multipath = self._multipath(data, pos + 4, pos + length, version)
            pos += (length + 3) & ~3
        route_kind = _RTN.get(rtype, RouteKind.OTHER)
        if route_kind is not RouteKind.UNICAST:
            hops: tuple[NextHop, ...] = ()
        elif multipath:
            hops = tuple(multipath)
        else:
            hops = (self._hop(version, gateway, oif, bool(rflags & RTNH_F_ONLINK)),)
        network: IPv4Network | IPv6Network
        if version == 4:
            network = _ipv4_network(int.from_bytes(dst, "big"), dst_len)
        else:
            network = IPv6Prefix((int.from_bytes(dst, "big"), dst_len))
        route = KernelRoute(prefix=network, kind=route_kind, nexthops=hops, metric=metric)
        return RouteMessage(protocol=protocol, table=table, route=route)

    def _multipath(self, data: bytes, pos: int, end: int, version: int) -> list[NextHop]:
        hops = []
        while pos + 8 <= end:
            length, flags, _weight, index = _RTNH.unpack_from(data, pos)
            if length < 8:
                break
            gateway = None
            for kind, lo, hi in _attrs(data, pos + 8, pos + length):
                if kind == RTA_GATEWAY:
                    gateway = data[lo:hi]
            hops.append(self._hop(version, gateway, index, bool(flags & RTNH_F_ONLINK)))
            pos += (length + 3) & ~3
        return hops


class DumpError(Exception):
    """The kernel answered a dump request with an error: (errno, extended-ack text)."""


def _ipv4_network_checked(address: int, prefixlen: int) -> IPv4Network:
    return IPv4Prefix((address, prefixlen))


def _ipv4_network_fast(address: int, prefixlen: int) -> IPv4Network:
    """IPv4Network without re-validating what the kernel hands us (a dumped destination is
    always a network address); ~2.5x faster than the public constructor."""
    net = object.__new__(IPv4Prefix)
    net.network_address = IPv4Address(address)
    net.netmask, net._prefixlen = IPv4Network._make_netmask(prefixlen)  # type: ignore[attr-defined]
    return net


def _fast_path_agrees() -> bool:
    """Use the fast constructor only where it builds exactly what the public one does."""
    try:
        for address, length in ((0xAC100000, 12), (0xAC11D800, 24), (0xC0000201, 32), (0, 0)):
            fast, slow = _ipv4_network_fast(address, length), _ipv4_network_checked(address, length)
            if (fast != slow or hash(fast) != hash(slow) or str(fast) != str(slow)
                    or fast.prefixlen != slow.prefixlen or not fast.subnet_of(slow)):
                return False
    except Exception:
        return False
    return True


_ipv4_network = _ipv4_network_fast if _fast_path_agrees() else _ipv4_network_checked


def decode_link(msg: Message) -> tuple[int, str | None]:
    """(ifindex, name) of an RTM_NEWLINK / RTM_DELLINK."""
    _family, _type, index, _flags, _change = _IFINFO.unpack_from(msg.data, msg.offset)
    for kind, lo, hi in _attrs(msg.data, msg.offset + _IFINFO.size, msg.end):
        if kind == IFLA_IFNAME:
            return index, msg.data[lo:hi].rstrip(b"\0").decode()
    return index, None
