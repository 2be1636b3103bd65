"""The RIB as a whole: properties over event sequences, and the seed cluster's shape."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from ribs.context import EncapMode, NodeContext, Pool, PrefixSet
from ribs.export import ExportPeer
from ribs.kernel_plan import RouteKind
from ribs.rib import Rib
from ribs.types import Attributes, Route, Source, host
from tests.ribs_helpers import context, export_peer, peer, route, session

CTX = context()
PEERS = [peer(f"10.10.1.{i}") for i in (7, 8, 9)] + [peer("10.10.1.1", asn=65000)]

ops = st.lists(st.tuples(
    st.sampled_from(["announce", "withdraw"]), st.integers(0, 3), st.integers(1, 6),
    st.sampled_from([None, 50, 200]), st.integers(0, 2)), max_size=40)


def run(events, rib: Rib) -> None:  # type: ignore[no-untyped-def]
    for action, p, block, lp, plen in events:
        src = PEERS[p]
        prefix = f"172.17.{block}.0/24"
        if action == "announce":
            path = tuple([65000] * plen) if src.ebgp else ()
            rib.receive(route(prefix, src, lp=lp, path=path))
        else:
            rib.withdraw(route(prefix, src).prefix, src.key)


def fresh() -> Rib:
    rib = Rib(CTX)
    rib.set_peers([export_peer(p) for p in PEERS])
    for p in PEERS:
        rib.peer_up(session(p), now=0)
    return rib


def final_announcements(events):  # type: ignore[no-untyped-def]
    """The last event per (peer, prefix): the state the sequence ends in."""
    last = {}
    for e in events:
        last[(e[1], e[2])] = e
    return list(last.values())


@given(ops, st.randoms())
def test_loc_rib_does_not_depend_on_arrival_order(events, rnd) -> None:  # type: ignore[no-untyped-def]
    a, b = fresh(), fresh()
    run(events, a)
    final = final_announcements(events)
    rnd.shuffle(final)
    run(final, b)
    assert {b_.route.prefix: b_ for b_ in a.table.bests()} == {
        b_.route.prefix: b_ for b_ in b.table.bests()}
    assert sorted(map(str, a.fib_routes())) == sorted(map(str, b.fib_routes()))
    assert {k: dict(v) for k, v in a.out.items()} == {k: dict(v) for k, v in b.out.items()}


@given(ops, ops)
def test_compacting_changes_nothing_but_room(first, then) -> None:  # type: ignore[no-untyped-def]
    a, b = fresh(), fresh()
    run(first, a)
    run(first, b)
    b.compact()  # as the daemon does after a large withdrawal
    run(then, a)
    run(then, b)
    assert list(a.table.bests()) == list(b.table.bests())
    assert a.fib_routes() == b.fib_routes() and a.out == b.out and a.received == b.received
    assert a.rejected == b.rejected and a.table.sources() == b.table.sources()


@given(ops)
def test_withdrawing_everything_empties_every_table(events) -> None:  # type: ignore[no-untyped-def]
    rib = fresh()
    run(events, rib)
    for p in PEERS:
        for block in range(1, 7):
            rib.withdraw(route(f"172.17.{block}.0/24", p).prefix, p.key)
    assert len(rib.table) == 0 and rib.fib_routes() == []
    assert all(not out for out in rib.out.values())
    assert rib.table.sources() == []


def test_peer_up_sends_the_full_table_and_asks_for_eor() -> None:
    rib = Rib(CTX)
    rib.set_peers([export_peer(PEERS[0])])
    rib.set_local([CTX.own_blocks.prefixes[0]])
    delta = rib.peer_up(session(PEERS[0]), now=0)
    assert [str(a.prefix) for a in delta.adverts] == ["172.17.5.0/24"]
    assert delta.synced_peers == [PEERS[0].key]


def test_removed_peer_loses_its_routes() -> None:
    rib = fresh()
    rib.receive(route("172.17.9.0/24", PEERS[0]))
    delta = rib.set_peers([export_peer(p) for p in PEERS[1:]])
    assert [str(c.prefix) for c in delta.changes] == ["172.17.9.0/24"]


def test_context_change_reevaluates_received_routes() -> None:
    rib = fresh()
    rib.receive(route("172.17.9.0/24", PEERS[0]))
    rib.receive(route("192.0.2.0/24", PEERS[0]))
    assert len(rib.table) == 1
    wider = context(extra_pools=(Pool(IPv4Network("192.0.2.0/24")),))
    rib.set_context(wider)
    assert len(rib.table) == 2
    rib.set_context(CTX)
    assert len(rib.table) == 1


def seed_node(n: int, nodes: int = 600) -> tuple[NodeContext, list[Source]]:
    """Node ``n`` of the 600-node seed cluster: pool 172.17.0.0/12, /24 blocks, IPIP Always."""
    base = int(IPv4Address("172.17.0.0"))
    ctx = NodeContext(
        local_as=64512, router_id=IPv4Address(int(IPv4Address("10.10.0.10")) + n),
        node_v4=IPv4Interface((int(IPv4Address("10.10.0.10")) + n, 16)),
        own_blocks=PrefixSet([IPv4Network((base + 256 * n, 24))]),
        pools=(Pool(IPv4Network("172.17.0.0/12", strict=False), ipip=EncapMode.ALWAYS),),
        interface="eth0",
    )
    sources = [Source.bgp(IPv4Address(int(IPv4Address("10.10.0.10")) + i), peer_as=64512,
                          local_as=64512, router_id=IPv4Address(int(IPv4Address("10.10.0.10")) + i))
               for i in range(nodes) if i != n]
    return ctx, sources


def test_seed_cluster_600_nodes() -> None:
    me = 4
    ctx, sources = seed_node(me)
    rib = Rib(ctx)
    rib.set_peers([ExportPeer(s.key, s.address, 64512, 64512, router_id=s.router_id)  # type: ignore[arg-type]
                   for s in sources])
    rib.set_local(ctx.own_blocks)
    base = int(IPv4Address("172.17.0.0"))
    for s in sources:
        rib.peer_up(session(s), now=0)
        i = int(s.address) - int(IPv4Address("10.10.0.10"))  # type: ignore[arg-type]
        rib.receive(Route(IPv4Network((base + 256 * i, 24)), s,
                          route("172.17.0.0/24", s).attrs))
    fib = rib.fib_routes()
    tunnels = [r for r in fib if r.kind is RouteKind.UNICAST]
    holes = [r for r in fib if r.kind is RouteKind.BLACKHOLE]
    assert len(tunnels) == 599 and len(holes) == 1
    assert str(holes[0]) == "blackhole 172.17.4.0/24"
    assert all(len(r.nexthops) == 1 and r.nexthops[0].ifname == "tunl0" and r.nexthops[0].onlink
               for r in tunnels)
    assert "172.17.216.0/24 via 10.10.0.226 dev tunl0 onlink" in map(str, fib)
    # every mesh peer is sent our block, and only our block (iBGP split horizon)
    assert all(set(map(str, out)) == {"172.17.4.0/24"} for out in rib.out.values())


def test_cached_hash_prefixes_mix_with_plain_networks() -> None:
    from ipaddress import IPv6Network, ip_network

    from ribs.types import prefix, prefix_bits

    for text in ("172.17.9.0/24", "fd00:17::/64"):
        fast, plain = prefix(text), ip_network(text)
        assert fast == plain and hash(fast) == hash(plain) and {plain: 1}[fast] == 1
        assert prefix_bits(fast) == prefix_bits(plain) == (
            plain.version, int(plain.network_address), plain.prefixlen)
    assert isinstance(prefix((1 << 64, 64), version=6), IPv6Network)


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_values_that_remember_their_hash_equal_plain_ones(plain) -> None:  # type: ignore[no-untyped-def]
    fast = host(str(plain))
    assert fast == plain and hash(fast) == hash(plain) == hash(fast)
    assert {fast: 1}[plain] == 1 and {plain: 1}[fast] == 1
    attrs = Attributes(next_hop=plain, local_pref=100)
    assert hash(attrs) == hash(Attributes(next_hop=fast, local_pref=100))
    changed = replace(attrs, local_pref=200)  # a copy does not take the original's hash
    assert changed != attrs and hash(changed) == hash(Attributes(next_hop=plain, local_pref=200))
