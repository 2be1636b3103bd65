"""Import policy: the default guard, loop checks, BGPFilter rules, max-prefix."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ribs.context import Pool, PrefixSet
from ribs.policy import (
    Action,
    FilterRule,
    MatchOperator,
    PeerPolicy,
    Reason,
    exportable,
    guard,
    import_verdict,
)
from ribs.rib import Rib
from ribs.types import LOCAL, Attributes, Route, Source
from tests.ribs_helpers import context, export_peer, peer, route, session

CTX = context(node="10.10.1.5/24", blocks=("172.17.5.0/24",), services=("10.96.0.0/12",))
NODE = peer("10.10.1.7")
TOR = peer("10.10.1.1", asn=65000)

GUARD_CASES = [
    ("172.17.216.0/24", Reason.ACCEPTED),
    ("172.17.216.128/26", Reason.ACCEPTED),
    ("172.16.0.0/12", Reason.OWN_NETWORK),  # the pool covers our block
    ("10.96.0.0/12", Reason.ACCEPTED),  # an advertised service CIDR
    ("10.96.0.10/32", Reason.ACCEPTED),  # a Service's address: reflected, never programmed
    ("10.64.0.0/10", Reason.OUTSIDE_POOLS),  # wider than the service CIDR
    ("0.0.0.0/0", Reason.DEFAULT_ROUTE),
    ("172.17.5.0/24", Reason.OWN_NETWORK),  # our own block
    ("172.17.5.64/26", Reason.OWN_NETWORK),
    ("10.10.1.0/24", Reason.OWN_NETWORK),  # the node subnet
    ("10.10.0.0/16", Reason.OWN_NETWORK),  # covering it
    ("10.10.1.9/32", Reason.OWN_NETWORK),  # inside it
    ("192.0.2.1/32", Reason.OUTSIDE_POOLS),
    ("169.254.0.0/16", Reason.MARTIAN),
    ("127.0.0.0/8", Reason.MARTIAN),
    ("224.0.0.0/4", Reason.MARTIAN),
    ("fe80::/64", Reason.MARTIAN),
    ("fd00:1::/64", Reason.OUTSIDE_POOLS),
]


@pytest.mark.parametrize(("prefix", "reason"), GUARD_CASES)
def test_default_guard(prefix: str, reason: Reason) -> None:
    assert import_verdict(route(prefix, NODE), CTX) is reason


def test_guard_can_be_turned_off_but_not_loops_or_martians() -> None:
    ctx = context(guard=False)
    assert import_verdict(route("0.0.0.0/0", NODE), ctx) is Reason.ACCEPTED
    assert import_verdict(route("192.0.2.0/24", NODE), ctx) is Reason.ACCEPTED
    assert import_verdict(route("127.0.0.0/8", NODE), ctx) is Reason.MARTIAN
    assert import_verdict(route("172.17.9.0/24", TOR, path=(65000, 64512)), ctx) is (
        Reason.AS_PATH_LOOP)


@pytest.mark.parametrize(("kwargs", "allowed", "reason"), [
    ({"path": (65000, 64512)}, 0, Reason.AS_PATH_LOOP),
    ({"path": (65000, 64512)}, 1, Reason.ACCEPTED),
    ({"path": (64512, 65000, 64512)}, 1, Reason.AS_PATH_LOOP),
    ({"originator": "10.10.1.5"}, 0, Reason.ORIGINATOR_LOOP),
    ({"originator": "10.10.1.6"}, 0, Reason.ACCEPTED),
])
def test_loops(kwargs: dict, allowed: int, reason: Reason) -> None:  # type: ignore[type-arg]
    r = route("172.17.9.0/24", TOR, **kwargs)
    assert import_verdict(r, CTX, PeerPolicy(allowed_local_as=allowed)) is reason


def test_cluster_list_loop_on_a_reflector() -> None:
    ctx = context(cluster_id="1.0.0.1")
    r = route("172.17.9.0/24", NODE, clusters=("1.0.0.2", "1.0.0.1"))
    assert import_verdict(r, ctx) is Reason.CLUSTER_LOOP
    assert import_verdict(r, CTX) is Reason.ACCEPTED  # not a reflector: no cluster id


def rule(action: Action, cidr: str | None = None, op: MatchOperator | None = None,
         **kw: object) -> FilterRule:
    return FilterRule(action, ip_network(cidr) if cidr else None, op, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rules", "prefix", "reason"), [
    ([rule(Action.REJECT, "172.17.9.0/24", MatchOperator.EQUAL)], "172.17.9.0/24",
     Reason.FILTER_REJECT),
    ([rule(Action.REJECT, "172.17.9.0/24", MatchOperator.EQUAL)], "172.17.10.0/24",
     Reason.ACCEPTED),
    ([rule(Action.REJECT, "172.17.0.0/16", MatchOperator.IN)], "172.17.9.0/24",
     Reason.FILTER_REJECT),
    ([rule(Action.REJECT, "172.17.0.0/16", MatchOperator.NOT_IN)], "172.18.9.0/24",
     Reason.FILTER_REJECT),
    ([rule(Action.REJECT, "172.17.9.0/24", MatchOperator.NOT_EQUAL)], "172.17.9.0/24",
     Reason.ACCEPTED),
    ([rule(Action.REJECT, min_length=25)], "172.17.9.0/24", Reason.ACCEPTED),
    ([rule(Action.REJECT, min_length=25)], "172.17.9.0/26", Reason.FILTER_REJECT),
    ([rule(Action.REJECT, max_length=23)], "172.17.9.0/24", Reason.ACCEPTED),
    # first match wins
    ([rule(Action.ACCEPT, "0.0.0.0/0", MatchOperator.EQUAL), rule(Action.REJECT)],
     "0.0.0.0/0", Reason.FILTER_ACCEPT),
    ([rule(Action.REJECT), rule(Action.ACCEPT, "0.0.0.0/0", MatchOperator.EQUAL)],
     "0.0.0.0/0", Reason.FILTER_REJECT),
    # an explicit accept is the administrator's decision: the guard does not override it
    ([rule(Action.ACCEPT, "192.0.2.0/24", MatchOperator.EQUAL)], "192.0.2.0/24",
     Reason.FILTER_ACCEPT),
    # but never loops nor martians
    ([rule(Action.ACCEPT)], "127.0.0.0/8", Reason.MARTIAN),
    # interface rules never match BGP routes
    ([rule(Action.REJECT, interface="eth*")], "172.17.9.0/24", Reason.ACCEPTED),
])
def test_bgpfilter_rules(rules: list[FilterRule], prefix: str, reason: Reason) -> None:
    policy = PeerPolicy(import_v4=tuple(rules), import_v6=())
    assert import_verdict(route(prefix, TOR), CTX, policy) is reason


def test_v6_rules_do_not_apply_to_v4() -> None:
    policy = PeerPolicy(import_v6=(rule(Action.REJECT),))
    assert import_verdict(route("172.17.9.0/24", TOR), CTX, policy) is Reason.ACCEPTED


def test_export_filter() -> None:
    mine = Route(ip_network("172.17.5.0/24"), LOCAL, Attributes())
    assert exportable(mine, CTX)
    assert exportable(Route(ip_network("10.96.0.0/12"), LOCAL, Attributes()), CTX)
    assert not exportable(Route(ip_network("192.0.2.0/24"), LOCAL, Attributes()), CTX)
    reject = PeerPolicy(export_v4=(rule(Action.REJECT, "172.17.5.0/24", MatchOperator.EQUAL),))
    assert not exportable(mine, CTX, reject)
    only_remote = PeerPolicy(export_v4=(rule(Action.REJECT, remote_peers_only=True),))
    assert exportable(mine, CTX, only_remote)
    assert not exportable(route("172.17.9.0/24", NODE), CTX, only_remote)


def test_a_disabled_pool_routes_as_an_enabled_one_and_only_bgp_export_stops_export() -> None:
    """Disabling a pool is step 2 of Calico's pool migration: its pods keep their addresses,
    and confd's filters read disableBGPExport only, never disabled."""
    old = Pool(ip_network("10.244.0.0/16"), disabled=True, block_size=26)
    ctx = context(blocks=("172.17.5.0/24", "10.244.5.0/26"), extra_pools=(old,))
    assert import_verdict(route("10.244.9.0/26", NODE), ctx) is Reason.ACCEPTED
    assert import_verdict(route("10.244.9.0/26", TOR), ctx) is Reason.ACCEPTED
    assert exportable(Route(ip_network("10.244.5.0/26"), LOCAL, Attributes()), ctx)
    quiet = context(blocks=("10.244.5.0/26",), extra_pools=(
        Pool(ip_network("10.244.0.0/16"), disable_bgp_export=True),))
    assert not exportable(Route(ip_network("10.244.5.0/26"), LOCAL, Attributes()), quiet)
    gone = context(blocks=("10.244.5.0/26",))  # the pool deleted: confd exports nothing of it
    assert not exportable(Route(ip_network("10.244.5.0/26"), LOCAL, Attributes()), gone)


def test_max_prefix_refuses_excess_and_raises_one_alarm() -> None:
    rib = Rib(CTX)
    limited = PeerPolicy(max_prefixes=3)
    rib.set_peers([export_peer(TOR, policy=limited), export_peer(NODE)])
    rib.peer_up(session(TOR), now=0)
    rib.peer_up(session(NODE), now=0)
    alarms = []
    for i in range(6):
        delta = rib.receive(route(f"172.17.{10 + i}.0/24", TOR))
        alarms += delta.alarms
    assert rib.table.count(TOR.key) == 3
    assert len(alarms) == 1 and "limit of 3" in alarms[0]
    assert rib.rejections[(str(TOR), "max_prefix")] == 3
    # the other peer is unaffected
    rib.receive(route("172.17.30.0/24", NODE))
    assert rib.table.count(NODE.key) == 1
    # room freed: a refused route gets in
    rib.withdraw(route("172.17.10.0/24", TOR).prefix, TOR.key)
    assert rib.table.count(TOR.key) == 3
    assert sum(1 for r in rib.rejected.values() if r is Reason.MAX_PREFIX) == 2


def test_rejections_are_counted_per_peer_and_reason() -> None:
    rib = Rib(CTX)
    rib.set_peers([export_peer(TOR)])
    rib.peer_up(session(TOR), now=0)
    for prefix in ("0.0.0.0/0", "172.17.5.0/24", "10.10.1.0/24", "192.0.2.1/32", "172.17.9.0/24"):
        rib.receive(route(prefix, TOR))
    assert dict(rib.rejections) == {
        (str(TOR), "default_route"): 1, (str(TOR), "overlaps_own_network"): 2,
        (str(TOR), "outside_pools"): 1,
    }
    assert [b.route.prefix for b in rib.table.bests()] == [ip_network("172.17.9.0/24")]
    assert [str(r) for r in rib.fib_routes()] == [
        "172.17.9.0/24 via 10.10.1.1 dev tunl0 onlink"]


prefixes = st.builds(
    lambda addr, length: ip_network((addr & ~((1 << (32 - length)) - 1) & 0xFFFFFFFF, length)),
    st.integers(0, 2**32 - 1), st.integers(0, 32))


@given(prefixes)
def test_guard_never_admits_outside_pools_or_over_own_networks(prefix) -> None:  # type: ignore[no-untyped-def]
    if guard(prefix, CTX) is Reason.ACCEPTED:
        pools = CTX.pool_cidrs
        assert pools.contains(prefix) or CTX.service_cidrs.contains(prefix)
        assert not CTX.node_networks.overlaps(prefix)
        assert not CTX.own_blocks.overlaps(prefix)
        assert not any(prefix.overlaps(b) for b in CTX.own_blocks)


def test_prefix_set_overlaps() -> None:
    s = PrefixSet([ip_network("10.0.0.0/16")])
    assert s.overlaps(ip_network("10.0.1.0/24")) and s.overlaps(ip_network("10.0.0.0/8"))
    assert not s.overlaps(ip_network("10.1.0.0/16"))
    assert s.covering(ip_network("10.0.3.0/24")) == ip_network("10.0.0.0/16")


nets = st.builds(lambda a, n, v6: ip_network((a % (1 << 32), n % 33) if not v6
                                            else (a << 96, n % 129), strict=False),
                 st.integers(0, 2**32 - 1), st.integers(0, 128), st.booleans())


@given(st.lists(nets, max_size=30), nets)
def test_prefix_set_covering_is_the_longest_member_containing_it(members: list[object],
                                                                 probe: object) -> None:
    containing = [m for m in members if m.version == probe.version  # type: ignore[attr-defined]
                  and probe.subnet_of(m)]  # type: ignore[attr-defined]
    expected = max(containing, key=lambda m: m.prefixlen, default=None)  # type: ignore[attr-defined]
    assert PrefixSet(members).covering(probe) == expected  # type: ignore[arg-type]


def test_more_specifics_of_another_nodes_block_only_from_calico_nodes() -> None:
    from dataclasses import replace

    ctx = replace(CTX, other_blocks=PrefixSet([ip_network("172.17.3.0/24")]))
    external = PeerPolicy()
    calico_node = PeerPolicy(node_routes=True)
    for prefix in ("172.17.3.0/25", "172.17.3.77/32"):  # a hijack of node 3's pods
        assert import_verdict(route(prefix, TOR), ctx, external) is Reason.OTHER_NODE_BLOCK
        assert import_verdict(route(prefix, NODE), ctx, calico_node) is Reason.ACCEPTED
    # the block itself and aggregates follow the usual rules (AS-per-rack: from the ToR)
    assert import_verdict(route("172.17.3.0/24", TOR), ctx, external) is Reason.ACCEPTED
    assert import_verdict(route("172.17.2.0/23", TOR), ctx, external) is Reason.ACCEPTED
    # an explicit Accept rule is the administrator's decision
    accept = PeerPolicy(import_v4=(rule(Action.ACCEPT, "172.17.3.0/24", MatchOperator.IN),))
    assert import_verdict(route("172.17.3.7/32", TOR), ctx, accept) is Reason.FILTER_ACCEPT


def test_more_specifics_of_the_pools_blocks_only_from_calico_nodes() -> None:
    """Blocks whose affinity is not known here (only this node's are watched), or not given
    out yet, are protected by the pool's block size."""
    from dataclasses import replace

    ctx = replace(CTX, pools=(Pool(ip_network("172.16.0.0/12"), block_size=26),
                              Pool(ip_network("fd00:17::/48"), block_size=122)))
    external, calico_node = PeerPolicy(), PeerPolicy(node_routes=True)
    for prefix in ("172.17.9.0/27", "172.17.9.77/32", "fd00:17::7/128"):
        assert import_verdict(route(prefix, TOR), ctx, external) is Reason.INSIDE_A_BLOCK
        assert import_verdict(route(prefix, NODE), ctx, calico_node) is Reason.ACCEPTED
    for prefix in ("172.17.9.0/26", "172.17.8.0/24", "fd00:17::40/122"):  # blocks, aggregates
        assert import_verdict(route(prefix, TOR), ctx, external) is Reason.ACCEPTED
    # a pool of unknown block size: only known blocks are protected
    assert import_verdict(route("172.17.9.0/27", TOR), CTX, external) is Reason.ACCEPTED


def test_a_closed_policy_lets_nothing_in_or_out() -> None:
    closed = PeerPolicy(closed=True)
    assert import_verdict(route("172.17.216.0/24", TOR), CTX, closed) is (
        Reason.FILTER_UNAVAILABLE)
    mine = Route(ip_network("172.17.5.0/24"), LOCAL, Attributes())
    assert exportable(mine, CTX) and not exportable(mine, CTX, closed)


def test_max_prefix_can_close_the_session_once() -> None:
    rib = Rib(CTX)
    rib.set_peers([export_peer(TOR, policy=PeerPolicy(max_prefixes=2, teardown_at_limit=True))])
    rib.peer_up(session(TOR), now=0)
    teardowns = []
    for i in range(5):
        teardowns += rib.receive(route(f"172.17.{10 + i}.0/24", TOR)).teardowns
    assert teardowns == [TOR.key]


@pytest.mark.parametrize(("hop", "bad"), [
    ("10.10.1.7", False), ("192.0.2.9", False),
    ("0.0.0.0", True), ("0.1.2.3", True), ("127.0.0.1", True), ("224.0.0.5", True),
    ("255.255.255.255", True), ("240.0.0.1", True),
    ("10.10.1.5", True),  # this node's own address
])
def test_a_route_whose_next_hop_cannot_be_forwarded_to_is_refused(hop: str, bad: bool) -> None:
    verdict = import_verdict(route("172.17.216.0/24", NODE, nh=hop), CTX)
    assert (verdict is Reason.INVALID_NEXT_HOP) == bad, verdict
    off_link = hop == "192.0.2.9"  # the ToR is a directly connected eBGP peer
    assert (import_verdict(route("172.17.216.0/24", TOR, nh=hop), CTX)
            is Reason.INVALID_NEXT_HOP) == (bad or off_link)


def test_a_directly_connected_ebgp_peer_must_give_a_next_hop_on_the_shared_subnet() -> None:
    """RFC 4271 5.1.3 (as BIRD holds a direct session to it): the peer itself or a third party
    on the node's subnet; a multihop eBGP peer (not on the node's subnet) and an iBGP peer
    may name any next hop."""
    def verdict(source: Source, hop: str) -> Reason:
        return import_verdict(route("172.17.216.0/24", source, nh=hop), CTX)

    assert verdict(TOR, "10.10.1.1") is not Reason.INVALID_NEXT_HOP
    assert verdict(TOR, "10.10.1.9") is not Reason.INVALID_NEXT_HOP  # third party
    assert verdict(TOR, "10.10.2.9") is Reason.INVALID_NEXT_HOP
    far = peer("10.20.0.1", asn=65000)
    assert verdict(far, "10.20.0.1") is not Reason.INVALID_NEXT_HOP
    assert verdict(NODE, "10.10.2.9") is not Reason.INVALID_NEXT_HOP


@pytest.mark.parametrize("community", [(65535, 0), (65535, 6)],
                         ids=["GRACEFUL_SHUTDOWN", "LLGR_STALE"])
def test_a_route_tagged_graceful_shutdown_ranks_below_every_other(
        community: tuple[int, int]) -> None:
    """RFC 8326 4: LOCAL_PREF 0 on receipt; the same route without the tag wins. RFC 9494
    4.6 the same for a route another speaker keeps stale by long-lived graceful restart."""
    from ribs.bestpath import select
    from ribs.policy import import_route

    tagged = route("172.17.216.0/24", TOR)
    tagged = replace(tagged, attrs=replace(tagged.attrs, communities=(community,)))
    verdict, accepted = import_route(tagged, CTX)
    assert verdict is Reason.ACCEPTED and accepted.attrs.local_pref == 0
    other = route("172.17.216.0/24", peer("10.10.1.2", asn=65001), path=(65001, 65002))
    assert select([accepted, import_route(other, CTX)[1]]).route.source == other.source
