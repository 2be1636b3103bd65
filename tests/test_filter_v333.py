"""BGPFilter rules of Calico v3.33 (peerType, communities, asPathPrefix, priority,
operations) and route priorities: parsed as confd reads them, applied as its BIRD functions
do (``confd/pkg/resource/template/template_funcs.go``, ``bgp_processor.go``)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_network
from typing import Any

import pytest

from node_controller.errors import Invalid
from node_controller.models import parse_bgp_filter
from ribs.bestpath import select
from ribs.export import advert_for
from ribs.fib import kernel_route
from ribs.policy import (
    BIRD_INT_MAX,
    PeerPolicy,
    Reason,
    export_rule,
    import_route,
)
from ribs.types import LOCAL, AsPath, Route
from tests.ribs_helpers import LOCAL_AS, context, export_peer, peer, route

CTX = context(node="10.10.1.5/24", blocks=("172.17.5.0/24",))
NODE = peer("10.10.1.7")  # iBGP
TOR = peer("10.10.1.1", asn=65000)  # eBGP


def rules(**spec: Any) -> PeerPolicy:
    f = parse_bgp_filter({"kind": "BGPFilter", "metadata": {"name": "f"}, "spec": spec})
    return PeerPolicy(import_v4=f.import_v4, export_v4=f.export_v4, import_v6=f.import_v6,
                      export_v6=f.export_v6)


def with_communities(r: Route, *std: tuple[int, int],
                     large: tuple[tuple[int, int, int], ...] = ()) -> Route:
    return replace(r, attrs=replace(r.attrs, communities=std, large_communities=large))


def test_peer_type_splits_ibgp_from_ebgp_sessions() -> None:
    policy = rules(importV4=[{"peerType": "eBGP", "action": "Reject"},
                             {"peerType": "iBGP", "cidr": "172.17.0.0/12", "matchOperator": "In",
                              "action": "Accept"}])
    assert import_route(route("172.17.9.0/24", TOR, path=(65000,)), CTX, policy)[0] \
        is Reason.FILTER_REJECT
    assert import_route(route("172.17.9.0/24", NODE), CTX, policy)[0] is Reason.FILTER_ACCEPT
    export = rules(exportV4=[{"peerType": "eBGP", "action": "Reject"}])
    mine = Route(ip_network("172.17.5.0/24"), LOCAL)
    assert export_rule(mine, CTX, export, ebgp=True) == (False, ())
    assert export_rule(mine, CTX, export, ebgp=False) == (True, ())  # no rule: Calico's default


def test_community_match_standard_and_large() -> None:
    policy = rules(importV4=[
        {"communities": {"values": ["65000:100"]}, "action": "Reject"},
        {"communities": {"values": ["65000:100:999"]}, "action": "Reject"}])
    plain = route("172.17.9.0/24", TOR, path=(65000,))
    assert import_route(plain, CTX, policy)[0] is Reason.ACCEPTED
    assert import_route(with_communities(plain, (65000, 100)), CTX, policy)[0] \
        is Reason.FILTER_REJECT
    assert import_route(with_communities(plain, (65000, 101)), CTX, policy)[0] is Reason.ACCEPTED
    assert import_route(with_communities(plain, large=((65000, 100, 999),)), CTX, policy)[0] \
        is Reason.FILTER_REJECT


@pytest.mark.parametrize(("path", "hit"), [
    ((65000, 65001, 65009), True), ((65000, 65001), True), ((65000,), False),
    ((65001, 65000, 65001), False), ((), False),
])
def test_as_path_prefix_is_the_start_of_the_path(path: tuple[int, ...], hit: bool) -> None:
    policy = rules(importV4=[{"asPathPrefix": [65000, 65001], "action": "Reject"}])
    verdict = import_route(route("172.17.9.0/24", TOR, path=path), CTX, policy)[0]
    assert (verdict is Reason.FILTER_REJECT) is hit


def test_as_path_prefix_stops_at_a_set() -> None:
    from ribs.types import Segment, SegmentType
    policy = rules(importV4=[{"asPathPrefix": [65000, 65001], "action": "Reject"}])
    r = route("172.17.9.0/24", TOR)
    r = replace(r, attrs=replace(r.attrs, as_path=AsPath((
        Segment(SegmentType.SEQUENCE, (65000,)), Segment(SegmentType.SET, (65001,))))))
    assert import_route(r, CTX, policy)[0] is Reason.ACCEPTED


def test_priority_is_read_from_local_pref_and_set_into_it() -> None:
    # a route from a v3.33 node at priority 512 carries LOCAL_PREF 2147483647 - 512
    elevated = route("172.17.9.0/24", NODE, lp=BIRD_INT_MAX - 512)
    normal = route("172.17.9.0/24", NODE, lp=BIRD_INT_MAX - 1024)
    policy = rules(importV4=[{"priority": 512, "action": "Accept",
                              "operations": [{"setPriority": {"value": 256}}]},
                             {"priority": 1024, "action": "Reject"}])
    verdict, accepted = import_route(elevated, CTX, policy)
    assert verdict is Reason.FILTER_ACCEPT and accepted.attrs.local_pref == BIRD_INT_MAX - 256
    assert import_route(normal, CTX, policy)[0] is Reason.FILTER_REJECT
    # on import a route without LOCAL_PREF (eBGP) has no priority: no priority rule matches
    assert import_route(route("172.17.9.0/24", TOR, path=(65000,)), CTX, policy)[0] \
        is Reason.ACCEPTED
    # on export every route has one: the normal priority when it carries none
    export = rules(exportV4=[{"priority": 1024, "action": "Reject"}])
    assert not export_rule(Route(ip_network("172.17.5.0/24"), LOCAL), CTX, export)[0]
    assert export_rule(elevated, CTX, export)[0]


def test_import_operations_apply_in_order_and_only_on_accept() -> None:
    policy = rules(importV4=[{"cidr": "172.17.0.0/12", "matchOperator": "In", "action": "Accept",
                              "operations": [{"addCommunity": {"value": "65000:200"}},
                                             {"prependASPath": {"prefix": [65001, 65002]}},
                                             {"addCommunity": {"value": "65000:1:2"}},
                                             {"setPriority": {"value": 100}}]}])
    verdict, accepted = import_route(route("172.17.9.0/24", TOR, path=(65000,)), CTX, policy)
    assert verdict is Reason.FILTER_ACCEPT
    attrs = accepted.attrs
    assert str(attrs.as_path) == "65001 65002 65000"
    assert attrs.communities == ((65000, 200),) and attrs.large_communities == ((65000, 1, 2),)
    assert attrs.local_pref == BIRD_INT_MAX - 100
    # a community already there is not added twice
    again = with_communities(route("172.17.9.0/24", TOR, path=(65000,)), (65000, 200))
    assert import_route(again, CTX, policy)[1].attrs.communities == ((65000, 200),)


def test_export_operations_come_before_our_own_as_and_keep_update_groups_apart() -> None:
    policy = rules(exportV4=[{"peerType": "eBGP", "action": "Accept",
                              "operations": [{"prependASPath": {"prefix": [64999]}},
                                             {"addCommunity": {"value": "65000:42"}}]}])
    best = select([Route(ip_network("172.17.5.0/24"), LOCAL)])
    tor = export_peer(TOR, policy=policy)
    plain = export_peer(peer("10.10.1.2", asn=65000))
    shared: dict[Any, Any] = {}
    advert = advert_for(best, tor, CTX, shared)  # type: ignore[arg-type]
    assert advert is not None
    assert str(advert.attrs.as_path) == f"{LOCAL_AS} 64999"  # BIRD prepends ours after
    assert advert.attrs.communities == ((65000, 42),)
    other = advert_for(best, plain, CTX, shared)  # type: ignore[arg-type]
    assert other is not None and str(other.attrs.as_path) == str(LOCAL_AS)
    assert other.attrs.communities == ()
    # towards iBGP the eBGP-only rule does not match: Calico's default export, untouched
    ibgp = advert_for(best, export_peer(NODE, policy=policy), CTX)
    assert ibgp is not None and ibgp.attrs.communities == () and str(ibgp.attrs.as_path) == ""


def test_priorities_set_local_pref_towards_ibgp_and_the_kernel_metric() -> None:
    mine = select([Route(ip_network("172.17.5.0/24"), LOCAL)])
    legacy = advert_for(mine, export_peer(NODE), CTX)
    assert legacy is not None and legacy.attrs.local_pref == 100
    v333 = replace(CTX, priorities=True, normal_priority_v4=2000)
    advert = advert_for(mine, export_peer(NODE), v333)
    assert advert is not None and advert.attrs.local_pref == BIRD_INT_MAX - 2000
    tor = advert_for(mine, export_peer(TOR), v333)
    assert tor is not None and tor.attrs.local_pref is None  # never to eBGP

    learned = select([route("172.17.9.0/24", NODE, lp=BIRD_INT_MAX - 512)])
    ebgp = select([route("172.17.10.0/24", TOR, path=(65000,))])
    old = kernel_route(learned, CTX)
    assert old is not None and old.metric is None
    new = kernel_route(learned, v333)
    assert new is not None and new.metric == 512
    new_ebgp = kernel_route(ebgp, v333)
    assert new_ebgp is not None and new_ebgp.metric == 2000


@pytest.mark.parametrize(("rule", "field", "words"), [
    ({"action": "Reject", "operations": [{"addCommunity": {"value": "1:2"}}]},
     "spec.importV4[0].operations", "only an Accept"),
    ({"action": "Accept", "operations": [{}]}, "spec.importV4[0].operations[0]", "exactly one"),
    ({"action": "Accept", "operations": [{"addCommunity": {"value": "1:2"},
                                          "setPriority": {"value": 5}}]},
     "spec.importV4[0].operations[0]", "exactly one"),
    ({"action": "Accept", "operations": [{"addCommunity": {"value": "65536:1"}}]},
     "spec.importV4[0].operations[0].addCommunity.value", "not a community"),
    ({"action": "Accept", "operations": [{"addCommunity": {}}]},
     "spec.importV4[0].operations[0].addCommunity.value", "required"),
    ({"action": "Accept", "operations": [{"prependASPath": {"prefix": []}}]},
     "spec.importV4[0].operations[0].prependASPath.prefix", "1 to 10"),
    ({"action": "Accept", "operations": [{"prependASPath": {"prefix": ["x"]}}]},
     "spec.importV4[0].operations[0].prependASPath.prefix[0]", "not an AS number"),
    ({"action": "Accept", "operations": [{"setPriority": {"value": 0}}]},
     "spec.importV4[0].operations[0].setPriority.value", "outside"),
    ({"action": "Accept", "operations": [{"setPriority": {"value": 5}}] * 11},
     "spec.importV4[0].operations", "at most 10"),
    ({"action": "Accept", "peerType": "EBGP"}, "spec.importV4[0].peerType", "not one of"),
    ({"action": "Accept", "communities": {"values": ["1:2", "3:4"]}},
     "spec.importV4[0].communities.values", "exactly one"),
    ({"action": "Accept", "communities": {"values": ["1:2:3:4"]}},
     "spec.importV4[0].communities.values[0]", "not a community"),
    ({"action": "Accept", "asPathPrefix": [0]}, "spec.importV4[0].asPathPrefix[0]", "outside"),
    ({"action": "Accept", "priority": 2147483647}, "spec.importV4[0].priority", "outside"),
    ({"action": "Accept", "prefixLength": {"min": 24}}, "spec.importV4[0].prefixLength",
     "needs cidr"),
])
def test_invalid_rules_name_the_field(rule: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(Invalid) as caught:
        rules(importV4=[rule])
    assert caught.value.field == field and words in caught.value.message
