"""Export: split horizon, route reflection (RFC 4456), attributes, next-hop modes."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, ip_network

from hypothesis import given
from hypothesis import strategies as st

from ribs.bestpath import select
from ribs.context import Advertisement, Pool
from ribs.export import NextHopMode, advert_for
from ribs.types import LOCAL, AsPath, Attributes, Route
from tests.ribs_helpers import LOCAL_AS, context, export_peer, peer, route

CTX = context()
RR_CTX = context(cluster_id="1.0.0.1")
N1, N2 = peer("10.10.1.7"), peer("10.10.1.8")
TOR, TOR2 = peer("10.10.1.1", asn=65000), peer("10.10.1.2", asn=65001)
OWN = Route(ip_network("172.17.5.0/24"), LOCAL, Attributes())


def adv(r: Route, to, ctx=CTX):  # type: ignore[no-untyped-def]
    return advert_for(select([r]), to, ctx)


def test_own_block_goes_to_everyone_with_next_hop_self() -> None:
    a = adv(OWN, export_peer(N1))
    assert a is not None and a.attrs.next_hop is None and a.attrs.local_pref == 100
    e = adv(OWN, export_peer(TOR))
    assert e is not None and e.attrs.as_path == AsPath.of(LOCAL_AS) and e.attrs.local_pref is None


def test_ibgp_split_horizon_on_a_plain_node() -> None:
    learned = route("172.17.9.0/24", N1)
    assert adv(learned, export_peer(N2)) is None
    to_tor = adv(learned, export_peer(TOR))
    assert to_tor is not None and to_tor.attrs.next_hop is None  # Auto: self towards eBGP
    assert to_tor.attrs.as_path == AsPath.of(LOCAL_AS)


def test_never_back_to_the_source() -> None:
    assert adv(route("172.17.9.0/24", TOR, path=(65000,)), export_peer(TOR)) is None


def test_ebgp_learned_route_to_ibgp_keeps_next_hop_and_drops_foreign_med() -> None:
    r = route("172.17.9.0/24", TOR, path=(65000,), med=50)
    to_node = adv(r, export_peer(N1))
    assert to_node is not None
    assert to_node.attrs.next_hop == TOR.address and to_node.attrs.med == 50
    to_tor2 = adv(r, export_peer(TOR2))
    assert to_tor2 is not None and to_tor2.attrs.med is None
    assert to_tor2.attrs.as_path == AsPath.of(LOCAL_AS, 65000)


def test_next_hop_modes() -> None:
    r = route("172.17.9.0/24", TOR, path=(65000,))
    self_ = adv(r, export_peer(N1, mode=NextHopMode.SELF))
    assert self_ is not None and self_.attrs.next_hop is None
    keep = adv(r, export_peer(TOR2, mode=NextHopMode.KEEP))
    assert keep is not None and keep.attrs.next_hop == TOR.address


def test_reflection_rules() -> None:
    client, client2 = peer("10.10.1.7", rr_client=True), peer("10.10.1.8", rr_client=True)
    nonclient = peer("10.10.1.9")
    to = {p: export_peer(p, rr_client=p.rr_client) for p in (client, client2, nonclient)}
    from_client = route("172.17.9.0/24", client)
    a = adv(from_client, to[client2], RR_CTX)
    assert a is not None
    assert a.attrs.originator_id == IPv4Address("10.10.1.7")
    assert a.attrs.cluster_list == (IPv4Address("1.0.0.1"),)
    assert a.attrs.next_hop == client.address  # iBGP next hop unchanged
    assert adv(from_client, to[nonclient], RR_CTX) is not None
    assert adv(from_client, to[client], RR_CTX) is None  # not back to its source
    from_nonclient = route("172.17.10.0/24", nonclient)
    assert adv(from_nonclient, to[client], RR_CTX) is not None
    assert adv(from_nonclient, export_peer(peer("10.10.1.10")), RR_CTX) is None


def test_reflection_never_loops() -> None:
    client = peer("10.10.1.7", rr_client=True)
    r = route("172.17.9.0/24", client, originator="10.10.1.8", clusters=("1.0.0.2",))
    originator = export_peer(peer("10.10.1.8", rr_client=True), rr_client=True)
    assert adv(r, originator, RR_CTX) is None
    same_cluster = export_peer(peer("10.10.1.11"), rr_client=True, cluster_id="1.0.0.2")
    assert adv(r, same_cluster, RR_CTX) is None
    a = adv(r, export_peer(peer("10.10.1.12", rr_client=True), rr_client=True), RR_CTX)
    assert a is not None and a.attrs.originator_id == IPv4Address("10.10.1.8")
    assert a.attrs.cluster_list == (IPv4Address("1.0.0.1"), IPv4Address("1.0.0.2"))


def test_prefix_advertisement_communities() -> None:
    ctx = replace(CTX, advertisements=(Advertisement(
        ip_network("172.17.0.0/16"), communities=((64512, 100),),
        large_communities=((64512, 1, 2),)),))
    a = adv(OWN, export_peer(TOR), ctx)
    assert a is not None and a.attrs.communities == ((64512, 100),)
    assert a.attrs.large_communities == ((64512, 1, 2),)
    outside = Route(ip_network("172.20.0.0/24"), LOCAL, Attributes())
    b = adv(outside, export_peer(TOR), ctx)
    assert b is not None and b.attrs.communities == ()


def test_only_pool_and_service_prefixes_leave() -> None:
    assert adv(Route(ip_network("192.0.2.0/24"), LOCAL, Attributes()), export_peer(TOR)) is None


def test_another_nodes_service_address_goes_to_no_ebgp_peer() -> None:
    """Sent on with next hop self, it would draw a Local Service's traffic to a node without
    its endpoint (and a node excluded from load balancers would still announce the range)."""
    ctx = context(services=("10.96.0.0/12", "192.0.2.0/24"), cluster_id="1.0.0.1")
    own = Route(ip_network("192.0.2.7/32"), LOCAL, Attributes())
    assert adv(own, export_peer(TOR), ctx) is not None
    for prefix in ("192.0.2.7/32", "10.96.0.0/12"):
        learned = route(prefix, peer("10.10.1.7", rr_client=True))
        assert adv(learned, export_peer(TOR), ctx) is None
        assert adv(route(prefix, TOR2), export_peer(TOR), ctx) is None
        reflected = adv(learned, export_peer(N2, rr_client=True), ctx)  # iBGP: reflected
        assert reflected is not None and reflected.attrs.next_hop == learned.attrs.next_hop


@given(st.integers(7, 30), st.integers(7, 30), st.lists(st.integers(1, 5), max_size=3),
       st.booleans(), st.booleans())
def test_reflected_route_never_returns(src_i: int, dst_i: int, clusters: list[int],
                                       src_client: bool, dst_client: bool) -> None:
    src = peer(f"10.10.1.{src_i}", rr_client=src_client)
    dst = peer(f"10.10.1.{dst_i}", rr_client=dst_client)
    cl = tuple(f"1.0.0.{c}" for c in clusters)
    r = route("172.17.9.0/24", src, clusters=cl)
    for cluster_id in ("1.0.0.1", "1.0.0.9"):
        a = adv(r, export_peer(dst, rr_client=dst_client, cluster_id=cluster_id), RR_CTX)
        if a is not None:
            assert dst.key != src.key and dst.router_id != src.router_id
            assert IPv4Address(cluster_id) not in r.attrs.cluster_list


SOURCES = [OWN, route("172.17.9.0/24", N1), route("172.17.9.0/24", TOR, path=(65000,), med=7),
           route("172.17.9.0/24", peer("10.10.1.9", rr_client=True), clusters=("1.0.0.9",))]
PEER_SOURCES = [N1, N2, TOR, TOR2, peer("10.10.1.9", rr_client=True)]


@given(st.sampled_from(SOURCES), st.sampled_from([CTX, RR_CTX]),
       st.lists(st.tuples(st.sampled_from(PEER_SOURCES), st.booleans(),
                          st.sampled_from(list(NextHopMode)), st.sampled_from([64512, 64999])),
                min_size=1, max_size=12))
def test_an_advert_shared_by_an_update_group_is_the_one_each_peer_would_get(
        r: Route, ctx, peers) -> None:  # type: ignore[no-untyped-def]
    best = select([r])
    shared: dict[tuple[object, ...], object] = {}
    for src, client, mode, local_as in peers:
        to = replace(export_peer(src, rr_client=client, mode=mode), local_as=local_as)
        assert advert_for(best, to, ctx, shared) == advert_for(best, to, ctx)  # type: ignore[arg-type]


def test_a_route_goes_only_to_peers_of_its_family() -> None:
    """Each session carries its address's family: an IPv6 block never rides an IPv4 session
    (ExaBGP would refuse the whole command, IPv4 blocks with it) and an IPv4 block never
    reaches an IPv6 peer (it would be read as IPv6 bytes: 172.17.1.0/24 as ac11:100::/24)."""
    ctx = context(blocks=("172.17.5.0/24", "fd00:10::5:0/122"),
                  extra_pools=(Pool(ip_network("fd00:10::/48")),))
    v4, v6 = export_peer(peer("10.10.1.7")), export_peer(peer("fd00:1::7"))
    own4 = Route(ip_network("172.17.5.0/24"), LOCAL, Attributes())
    own6 = Route(ip_network("fd00:10::5:0/122"), LOCAL, Attributes())
    assert adv(own4, v4, ctx) is not None and adv(own6, v6, ctx) is not None
    assert adv(own6, v4, ctx) is None and adv(own4, v6, ctx) is None


def test_a_draining_node_tags_every_route_it_sends_and_ranks_them_last_inside() -> None:
    """RFC 8326: GRACEFUL_SHUTDOWN (65535:0) on every route, LOCAL_PREF 0 to iBGP peers;
    eBGP peers get the community (they lower their own preference)."""
    draining = replace(CTX, draining=True)
    mine = select([Route(ip_network("172.17.5.0/24"), LOCAL, Attributes())])
    learned = select([route("172.17.9.0/24", TOR)])
    to_node = advert_for(mine, export_peer(N2), draining)
    to_tor = advert_for(mine, export_peer(TOR), draining)
    passed_on = advert_for(learned, export_peer(N2), draining)
    assert to_node is not None and to_tor is not None and passed_on is not None
    assert (65535, 0) in to_node.attrs.communities and to_node.attrs.local_pref == 0
    assert (65535, 0) in to_tor.attrs.communities and to_tor.attrs.local_pref is None
    assert (65535, 0) in passed_on.attrs.communities and passed_on.attrs.local_pref == 0
    usual = advert_for(mine, export_peer(N2), CTX)
    assert usual is not None and (65535, 0) not in usual.attrs.communities
    assert usual.attrs.local_pref == 100
