"""rtnetlink codec: what is encoded decodes back to the same value (no kernel needed)."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Network, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd import rtnl
from ribs.kernel_plan import KernelRoute, NextHop, OpKind

LINKS = {2: "eth0", 7: "tunl0"}
INDEX = {name: index for index, name in LINKS.items()}


def roundtrip(route: KernelRoute, op: OpKind = OpKind.ADD) -> rtnl.RouteMessage | None:
    data = rtnl.encode_route(op, route, seq=5, protocol=12, table=254, ifindex=INDEX.__getitem__)
    (msg,) = rtnl.iter_messages(data)
    assert msg.seq == 5 and msg.end == len(data)
    return rtnl.RouteDecoder(LINKS).decode(msg)


@pytest.mark.parametrize("route", [
    KernelRoute.via(ip_network("172.17.216.0/24"), ip_address("10.10.1.7"), "tunl0", onlink=True),
    KernelRoute.via(ip_network("172.17.216.0/24"), ip_address("10.10.1.7"), "eth0"),
    KernelRoute.blackhole(ip_network("172.17.5.0/24")),
    KernelRoute.blackhole(ip_network("fd00:5::/64"), metric=7),
    KernelRoute(prefix=ip_network("172.17.9.0/24"), nexthops=(
        NextHop(ip_address("10.0.0.1"), "tunl0", True), NextHop(ip_address("10.0.0.2"), "eth0"))),
    KernelRoute(prefix=ip_network("fd00:9::/64"), nexthops=(
        NextHop(ip_address("fd00::1"), "tunl0", True), NextHop(ip_address("fd00::2"), "eth0"))),
    KernelRoute.via(ip_network("0.0.0.0/0"), ip_address("10.0.0.1"), "eth0", metric=100),
])
def test_encode_decode_roundtrip(route: KernelRoute) -> None:
    decoded = roundtrip(route)
    assert decoded is not None
    assert (decoded.protocol, decoded.table) == (12, 254)
    assert decoded.route == route


def test_unknown_device_is_reported_by_name() -> None:
    route = KernelRoute.via(ip_network("172.17.1.0/24"), ip_address("10.0.0.1"), "nosuch0")
    with pytest.raises(rtnl.UnknownDevice, match="nosuch0"):
        rtnl.encode_route(OpKind.ADD, route, seq=1, protocol=12, table=254,
                          ifindex=lambda name: INDEX[name] if name in INDEX else
                          (_ for _ in ()).throw(rtnl.UnknownDevice(name)))


def test_delete_matches_protocol_any_scope_and_type() -> None:
    route = KernelRoute.blackhole(ip_network("172.17.5.0/24"))
    data = rtnl.encode_route(OpKind.DELETE, route, seq=1, protocol=12, table=254, ifindex=INDEX.get)
    _len, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", data)
    _fam, dst_len, _s, _t, table, proto, scope, rtype, _f = struct.unpack_from(
        "=BBBBBBBBI", data, 16)
    assert (kind, dst_len, table, proto, scope, rtype) == (rtnl.RTM_DELROUTE, 24, 254, 12, 255, 0)
    assert not flags & rtnl.NLM_F_ACK  # acknowledged per batch, not per route


def test_extended_ack_text_is_read() -> None:
    text = b"Nexthop has invalid gateway\0"
    pad = b"\0" * (-len(text) & 3)
    tlv = struct.pack("=HH", 4 + len(text), rtnl.NLMSGERR_ATTR_MSG) + text + pad
    body = struct.pack("=i", -101) + struct.pack("=IHHII", 60, 24, 1, 9, 0) + tlv
    data = struct.pack("=IHHII", 16 + len(body), rtnl.NLMSG_ERROR,
                       rtnl.NLM_F_CAPPED | rtnl.NLM_F_ACK_TLVS, 9, 0) + body
    (msg,) = rtnl.iter_messages(data)
    assert rtnl.decode_error(msg) == (101, "Nexthop has invalid gateway")


def test_truncated_datagram_yields_only_whole_messages() -> None:
    route = KernelRoute.blackhole(ip_network("172.17.5.0/24"))
    one = rtnl.encode_route(OpKind.ADD, route, seq=1, protocol=12, table=254, ifindex=INDEX.get)
    assert len(list(rtnl.iter_messages(one + one[:20]))) == 1


def test_fast_ipv4_network_is_used_and_exact() -> None:
    assert rtnl._fast_path_agrees()


@given(st.integers(0, 32), st.integers(0, 2**32 - 1))
def test_fast_ipv4_network_equals_public_constructor(length: int, address: int) -> None:
    address &= (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
    fast, slow = rtnl._ipv4_network(address, length), IPv4Network((address, length))
    assert fast == slow and hash(fast) == hash(slow) and str(fast) == str(slow)
    assert fast.overlaps(slow) and fast.num_addresses == slow.num_addresses


def test_the_memo_holds_the_last_dump_only() -> None:
    """Decoded routes are remembered from the last complete dump, not from every event: a
    route deleted since is forgotten at the next dump (memory follows the table)."""
    a = KernelRoute.via(ip_network("172.17.1.0/24"), ip_address("10.0.0.1"), "eth0")
    b = KernelRoute.via(ip_network("172.17.2.0/24"), ip_address("10.0.0.2"), "eth0")

    def dump(seq: int, *routes: KernelRoute) -> bytes:
        body = b"".join(rtnl.encode_route(OpKind.ADD, r, seq=seq, protocol=12, table=254,
                                          ifindex=INDEX.__getitem__) for r in routes)
        done = struct.pack("=LHHLL", 20, rtnl.NLMSG_DONE, 0, seq, 0) + b"\0" * 4
        return body + done

    decoder = rtnl.RouteDecoder(LINKS)
    out: list[KernelRoute] = []
    assert decoder.decode_dump(dump(1, a, b), 1, out, protocol=12, table=254)
    assert out == [a, b] and len(decoder._memo[socket.AF_INET]) == 2
    event = next(iter(rtnl.iter_messages(rtnl.encode_route(
        OpKind.ADD, KernelRoute.blackhole(ip_network("172.17.3.0/24")), seq=9, protocol=12,
        table=254, ifindex=INDEX.__getitem__))))
    assert decoder.decode(event) is not None  # an event: looked up, not remembered
    assert len(decoder._memo[socket.AF_INET]) == 2
    out.clear()
    assert decoder.decode_dump(dump(2, a), 2, out, protocol=12, table=254)
    assert out == [a] and len(decoder._memo[socket.AF_INET]) == 1  # b deleted since: forgotten
    assert decoder.decode_dump(dump(3, a, b), 3, out, protocol=12, table=254)
    decoder.forget({b})  # deleted by the daemon itself: forgotten before the next dump
    assert [m.route for m in decoder._memo[socket.AF_INET].values() if m] == [a]
