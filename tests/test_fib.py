"""FIB plan: Calico's kernel route shapes from best paths."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Interface, ip_network

import pytest

from ribs.bestpath import Best, Step, select
from ribs.context import ClusterRoutes, EncapMode, Pool
from ribs.fib import kernel_route
from ribs.types import LOCAL, Attributes, Route
from tests.ribs_helpers import context, peer, route

SAME = peer("10.10.1.7")  # on the node's /24
OTHER = peer("10.10.2.7")  # another subnet


@pytest.mark.parametrize(("mode", "src", "shape"), [
    (EncapMode.ALWAYS, SAME, "172.17.216.0/24 via 10.10.1.7 dev tunl0 onlink"),
    (EncapMode.ALWAYS, OTHER, "172.17.216.0/24 via 10.10.2.7 dev tunl0 onlink"),
    (EncapMode.CROSS_SUBNET, SAME, "172.17.216.0/24 via 10.10.1.7 dev eth0"),
    (EncapMode.CROSS_SUBNET, OTHER, "172.17.216.0/24 via 10.10.2.7 dev tunl0 onlink"),
    (EncapMode.NEVER, SAME, "172.17.216.0/24 via 10.10.1.7 dev eth0"),
    (EncapMode.NEVER, OTHER, "172.17.216.0/24 via 10.10.2.7"),
])
def test_shapes(mode: EncapMode, src, shape: str) -> None:  # type: ignore[no-untyped-def]
    r = kernel_route(select([route("172.17.216.0/24", src)]), context(ipip=mode))
    assert str(r) == shape


def test_own_block_is_a_blackhole_and_services_are_not_installed() -> None:
    ctx = context(services=("10.96.0.0/12",))
    block = Route(ip_network("172.17.5.0/24"), LOCAL, Attributes())
    assert str(kernel_route(select([block]), ctx)) == "blackhole 172.17.5.0/24"
    svc = Route(ip_network("10.96.0.0/12"), LOCAL, Attributes())
    assert kernel_route(select([svc]), ctx) is None
    # nor routed to the node that announced them (Calico's reject CIDRs): kube-proxy's
    for prefix in ("10.96.0.0/12", "10.96.0.10/32"):
        assert kernel_route(select([route(prefix, SAME)]), ctx) is None


def test_vxlan_pools_are_left_to_felix() -> None:
    vx = Pool(ip_network("172.30.0.0/16"), vxlan=EncapMode.ALWAYS)
    ctx = context(extra_pools=(vx,))
    assert kernel_route(select([route("172.30.1.0/24", SAME)]), ctx) is None
    assert kernel_route(select([route("172.17.1.0/24", SAME)]), ctx) is not None


@pytest.mark.parametrize(("value", "ipip", "plain"), [
    ("Enabled", True, True), ("Disabled", False, False),
    ("EnabledIPIPOnly", True, False), ("EnabledNoEncapOnly", False, True),
])
def test_program_cluster_routes_picks_the_pools(value: str, ipip: bool, plain: bool) -> None:
    """programClusterRoutes as confd reads it: IPIP pools (Always, CrossSubnet) and
    unencapsulated ones each programmed or left to Felix; routes outside every pool are
    programmed whatever it says."""
    pools = (Pool(ip_network("172.30.0.0/16")),
             Pool(ip_network("172.31.0.0/16"), ipip=EncapMode.CROSS_SUBNET))
    ctx = replace(context(ipip=EncapMode.ALWAYS, extra_pools=pools),
                  cluster_routes=ClusterRoutes.named(value))
    for prefix, wanted in (("172.17.1.0/24", ipip), ("172.31.1.0/24", ipip),
                           ("172.30.1.0/24", plain), ("10.200.0.0/24", True)):
        assert (kernel_route(select([route(prefix, SAME)]), ctx) is not None) is wanted, prefix


def test_route_via_ourselves_is_not_installed() -> None:
    assert kernel_route(select([route("172.17.9.0/24", SAME, nh="10.10.1.5")]), context()) is None


def test_ecmp_each_hop_in_its_own_shape() -> None:
    a, b = route("172.17.9.0/24", SAME), route("172.17.9.0/24", OTHER)
    best = select([a, b])
    assert len(best.multipath) == 2
    r = kernel_route(best, context(ipip=EncapMode.CROSS_SUBNET))
    assert str(r) == ("172.17.9.0/24 nexthop via 10.10.1.7 dev eth0 "
                      "nexthop via 10.10.2.7 dev tunl0 onlink")


def test_duplicate_next_hops_in_ecmp_collapse() -> None:
    a = route("172.17.9.0/24", SAME)
    b = route("172.17.9.0/24", OTHER, nh="10.10.1.7")
    r = kernel_route(Best(a, Step.ROUTER_ID, (a, b)), context())
    assert r is not None and len(r.nexthops) == 1


def test_ipv6_is_never_tunnelled() -> None:
    ctx = replace(context(), node_v6=IPv6Interface("fd00:10::5/64"),
                  pools=(*context().pools, Pool(ip_network("fd00:17::/48"),
                                                ipip=EncapMode.ALWAYS)))
    r = kernel_route(select([route("fd00:17:1::/64", peer("fd00:10::7"))]), ctx)
    assert str(r) == "fd00:17:1::/64 via fd00:10::7 dev eth0"


def test_a_link_local_next_hop_goes_with_the_nodes_interface() -> None:
    ctx = replace(context(), node_v6=IPv6Interface("fd00:10::5/64"))
    r = kernel_route(select([route("fd00:17:1::/64", peer("fd00:10::7"), nh="fe80::7")]), ctx)
    assert str(r) == "fd00:17:1::/64 via fe80::7 dev eth0"
