"""Service advertisement: confd's route-generator rules, per Service, per node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from node_controller.desired import DesiredConfig, desired_config
from node_controller.kube import SERVICE_RESOURCES, dependent_resources, resources
from node_controller.services import (
    ANY_ENDPOINT,
    LOCAL_ENDPOINT,
    SINGLE_EXTERNAL,
    SINGLE_LB,
)
from node_controller.store import Store
from tests.test_desired import calico, node

ROOT = Path(__file__).resolve().parent.parent
RANGES = {"serviceClusterIPs": [{"cidr": "10.96.0.0/12"}, {"cidr": "fd00:96::/112"}],
          "serviceExternalIPs": [{"cidr": "192.0.2.0/24"}, {"cidr": "198.51.100.77/32"}],
          "serviceLoadBalancerIPs": [{"cidr": "203.0.113.0/24"}, {"cidr": "203.0.114.9/32"}]}


def service(name: str, *, ns: str = "shop", type_: str = "LoadBalancer",
            cluster_ip: str | None = "10.96.0.10", policy: str | None = "Local",
            external: tuple[str, ...] = (), lb: tuple[str, ...] = (),
            families: tuple[str, ...] = ("IPv4",), extra_ips: tuple[str, ...] = ()
            ) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "ipFamilies": list(families)}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip, *extra_ips] if cluster_ip != "None" else ["None"]
    if policy:
        spec["externalTrafficPolicy"] = policy
    if external:
        spec["externalIPs"] = list(external)
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": spec}
    if lb:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb]}}
    return obj


def slice_(name: str, svc: str, *endpoints: tuple[str | None, bool | None],
           ns: str = "shop", family: str = "IPv4") -> dict[str, Any]:
    eps = []
    for i, (where, ready) in enumerate(endpoints):
        ep: dict[str, Any] = {"addresses": [f"172.17.0.{i + 1}"]}
        if where is not None:
            ep["nodeName"] = where
        if ready is not None:
            ep["conditions"] = {"ready": ready}
        eps.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": family, "endpoints": eps}


def nodes(**labels: str) -> list[dict[str, Any]]:
    return [node("n1", "10.0.0.1/24", labels=labels), node("n2", "10.0.0.2/24")]


def build(*objs: dict[str, Any], me: str = "n1", **config: Any) -> DesiredConfig:
    store = Store()
    for obj in (*nodes(), calico("BGPConfiguration", "default", **{**RANGES, **config}), *objs):
        assert store.apply(obj), obj
    return desired_config(store, me)


def routes(cfg: DesiredConfig) -> dict[str, tuple[str, str]]:
    assert not cfg.errors, cfg.errors
    out = {str(r.prefix): (r.service, r.reason) for r in cfg.services}
    assert {r.prefix for r in cfg.services} <= set(cfg.announce)
    return out


def test_local_policy_follows_the_ready_endpoint() -> None:
    svc = service("web", external=("192.0.2.7",), lb=("203.0.113.5",))
    here = slice_("web-1", "web", ("n1", True), ("n2", True))
    expected = {p: ("shop/web", LOCAL_ENDPOINT)
                for p in ("10.96.0.10/32", "192.0.2.7/32", "203.0.113.5/32")}
    assert routes(build(svc, here)) == expected
    assert routes(build(svc, here, me="n2")) == expected
    elsewhere = slice_("web-1", "web", ("n1", False), ("n2", True))
    assert routes(build(svc, elsewhere)) == {}
    assert routes(build(svc, elsewhere, me="n2")) == expected
    unset = slice_("web-1", "web", ("n1", None))  # no ready condition: ready
    assert routes(build(svc, unset)) == expected
    assert routes(build(svc)) == {}  # no endpoints at all


def test_every_slice_of_the_service_counts() -> None:
    """A slice without a local endpoint does not withdraw what another slice justifies."""
    svc = service("web")
    cfg = build(svc, slice_("web-1", "web", ("n2", True)), slice_("web-2", "web", ("n1", True)),
                slice_("other", "db", ("n1", True)),
                slice_("web-1", "web", ("n1", True), ns="elsewhere"))
    assert routes(cfg) == {"10.96.0.10/32": ("shop/web", LOCAL_ENDPOINT)}
    # a slice of another family than the Service's does not count
    assert routes(build(svc, slice_("web-6", "web", ("n1", True), family="IPv6"))) == {}


def test_addresses_only_inside_their_ranges() -> None:
    svc = service("web", cluster_ip="10.96.0.10", extra_ips=("fd00:97::1",),
                  families=("IPv4", "IPv6"), external=("192.0.2.7", "10.1.1.1"),
                  lb=("203.0.113.5", "192.0.2.8"))
    cfg = build(svc, slice_("web-1", "web", ("n1", True)))
    assert set(routes(cfg)) == {"10.96.0.10/32", "192.0.2.7/32", "203.0.113.5/32"}
    # no serviceClusterIPs: cluster IPs are not announced, external ones are
    cfg = build(svc, slice_("web-1", "web", ("n1", True)), serviceClusterIPs=[])
    assert set(routes(cfg)) == {"192.0.2.7/32", "203.0.113.5/32"}
    v6 = service("v6", cluster_ip="fd00:96::a", families=("IPv6",), policy="Local")
    cfg = build(v6, slice_("v6-1", "v6", ("n1", True), family="IPv6"))
    assert routes(cfg) == {"fd00:96::a/128": ("shop/v6", LOCAL_ENDPOINT)}


def test_what_is_left_out_unexpectedly_is_a_notice_naming_the_service_and_field() -> None:
    svc = service("web", cluster_ip="10.96.0.10", extra_ips=("fd00:97::1",),
                  families=("IPv4", "IPv6"), external=("10.1.1.1",), lb=("2001:db8::5",))
    cfg = build(svc, slice_("web-1", "web", ("n1", True), ("gone", True)),
                serviceLoadBalancerIPs=[{"cidr": "203.0.113.0/24"}])
    assert not cfg.errors
    assert {(n.kind, n.name, n.field): n.message for n in cfg.notices} == {
        ("Service", "shop/web", "spec.clusterIPs"):
            "fd00:97::1 is outside every serviceClusterIPs range of BGPConfiguration "
            "'default': not announced",
        ("Service", "shop/web", "spec.externalIPs"):
            "10.1.1.1 is outside every serviceExternalIPs range of BGPConfiguration "
            "'default': not announced",
        ("Service", "shop/web", "status.loadBalancer.ingress"):
            "2001:db8::5 is outside every serviceLoadBalancerIPs range of BGPConfiguration "
            "'default' (it has no IPv6 range): not announced",
        ("EndpointSlice", "shop/web-1", "endpoints.nodeName"):
            "ready endpoints on 'gone', not nodes of the cluster: no node announces the "
            "Service for them"}
    # a kind without ranges is not announced by design: nothing to say
    assert not build(svc, serviceExternalIPs=[], serviceClusterIPs=[{"cidr": "10.96.0.0/12"},
                                                                    {"cidr": "fd00::/8"}],
                     serviceLoadBalancerIPs=[]).notices


def test_cluster_policy_single_addresses_from_every_node() -> None:
    lb = service("lb", policy="Cluster", lb=("203.0.114.9",))
    for me in ("n1", "n2"):  # no endpoint needed, on any node
        assert routes(build(lb, me=me)) == {"10.96.0.10/32": ("shop/lb", SINGLE_LB),
                                            "203.0.114.9/32": ("shop/lb", SINGLE_LB)}
    ext = service("ext", type_="NodePort", policy="Cluster", external=("198.51.100.77",))
    assert routes(build(ext)) == {"10.96.0.10/32": ("shop/ext", SINGLE_EXTERNAL),
                                  "198.51.100.77/32": ("shop/ext", SINGLE_EXTERNAL)}
    # an address inside a range, not a single-address entry: the range covers it
    ranged = service("r", policy="Cluster", lb=("203.0.113.5",))
    assert routes(build(ranged, slice_("r-1", "r", ("n1", True)))) == {}


def test_aggregation_disabled_announces_services_with_any_ready_endpoint() -> None:
    svc = service("web", policy="Cluster", lb=("203.0.113.5",))
    ready = slice_("web-1", "web", ("n2", True))
    cfg = build(svc, ready, serviceLoadBalancerAggregation="Disabled")
    assert routes(cfg) == {"10.96.0.10/32": ("shop/web", ANY_ENDPOINT),
                           "203.0.113.5/32": ("shop/web", ANY_ENDPOINT)}
    assert "203.0.113.0/24" not in {str(p) for p in cfg.announce}
    none_ready = slice_("web-1", "web", ("n2", False))
    assert routes(build(svc, none_ready, serviceLoadBalancerAggregation="Disabled")) == {}
    assert routes(build(svc, ready)) == {}  # Enabled: the range is announced instead


def test_services_not_advertised() -> None:
    ready = slice_("s-1", "s", ("n1", True))
    assert routes(build(service("s", cluster_ip="None"), ready)) == {}  # headless
    assert routes(build(service("s", cluster_ip=None), ready)) == {}
    assert routes(build(service("s", type_="ExternalName"), ready)) == {}
    no_ranges: dict[str, Any] = {k: [] for k in RANGES}
    assert routes(build(service("s"), ready, **no_ranges)) == {}


def test_a_node_excluded_from_load_balancers_announces_no_service_address() -> None:
    store = Store()
    for obj in (*nodes(**{"node.kubernetes.io/exclude-from-external-load-balancers": "true"}),
                calico("BGPConfiguration", "default", **RANGES),
                service("web"), slice_("web-1", "web", ("n1", True))):
        store.apply(obj)
    cfg = desired_config(store, "n1")
    assert cfg.services == () and cfg.announce == ()  # neither the /32s nor the ranges
    assert desired_config(store, "n2").services == ()  # no local endpoint there
    assert "10.96.0.0/12" in {str(p) for p in desired_config(store, "n2").announce}


def test_one_address_of_two_services_is_announced_while_either_justifies_it() -> None:
    a = service("a", external=("192.0.2.7",), cluster_ip="10.96.0.1")
    b = service("b", external=("192.0.2.7",), cluster_ip="10.96.0.2")
    cfg = build(a, b, slice_("a-1", "a", ("n1", True)), slice_("b-1", "b", ("n1", True)))
    assert [(str(r.prefix), r.service) for r in cfg.services if str(r.prefix) == "192.0.2.7/32"
            ] == [("192.0.2.7/32", "shop/a"), ("192.0.2.7/32", "shop/b")]
    assert [str(p) for p in cfg.announce].count("192.0.2.7/32") == 1
    cfg = build(a, b, slice_("b-1", "b", ("n1", True)))
    assert routes(cfg)["192.0.2.7/32"] == ("shop/b", LOCAL_ENDPOINT)


@pytest.mark.parametrize(("obj", "field"), [
    ({"spec": {"clusterIP": "10.96.0.300"}}, "spec.clusterIP"),
    ({"spec": {"clusterIP": "10.96.0.1", "externalIPs": ["192.0.2.1", "x"]}},
     "spec.externalIPs[1]"),
    ({"spec": {"clusterIP": "10.96.0.1", "type": "Magic"}}, "spec.type"),
    ({"spec": {"clusterIP": "10.96.0.1", "ipFamilies": ["IPv5"]}}, "spec.ipFamilies[0]"),
    ({"spec": {"clusterIP": "10.96.0.1", "ipFamilies": [["IPv4"]]}}, "spec.ipFamilies[0]"),
    ({"spec": {"clusterIP": "10.96.0.1"}, "status": {"loadBalancer": {"ingress": [
        {"ip": 7}]}}}, "status.loadBalancer.ingress[0].ip"),
])
def test_an_invalid_service_is_named_with_its_field(obj: dict[str, Any], field: str) -> None:
    store = Store()
    for o in (*nodes(), calico("BGPConfiguration", "default", **RANGES)):
        store.apply(o)
    store.apply({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "bad", "namespace": "shop"}, **obj})
    errors = desired_config(store, "n1").errors
    assert [(e.kind, e.name, e.field) for e in errors] == [("Service", "shop/bad", field)]


def test_an_invalid_endpoint_slice_keeps_its_last_valid_version() -> None:
    store = Store()
    for o in (*nodes(), calico("BGPConfiguration", "default", **RANGES), service("web"),
              slice_("web-1", "web", ("n1", True))):
        store.apply(o)
    broken = slice_("web-1", "web", ("n1", True))
    broken["endpoints"][0]["conditions"]["ready"] = "maybe"
    assert store.apply(broken)
    cfg = desired_config(store, "n1")
    assert [(e.name, e.field) for e in cfg.errors] == [("shop/web-1",
                                                        "endpoints[0].conditions.ready")]
    assert [str(r.prefix) for r in cfg.services] == ["10.96.0.10/32"]


def test_an_endpoint_change_that_decides_nothing_changes_nothing() -> None:
    store = Store()
    store.apply(slice_("web-1", "web", ("n1", True)))
    moved = slice_("web-1", "web", ("n1", True))
    moved["endpoints"][0]["addresses"] = ["172.17.9.9"]
    assert not store.apply(moved)  # the model keeps only the ready endpoints' nodes
    assert store.apply(slice_("web-1", "web", ("n2", True)))


def test_services_are_not_saved_as_last_valid_resources() -> None:
    store = Store()
    store.apply(service("web"))
    store.apply(slice_("web-1", "web", ("n1", True)))
    assert store.valid == {} and len(store.objects["Service"]) == 1


def test_services_are_watched_only_while_service_addresses_are_advertised() -> None:
    store = Store()
    store.apply(calico("BGPConfiguration", "default"))
    assert dependent_resources(store, "calico-system") == set()
    store.apply(calico("BGPConfiguration", "default", serviceExternalIPs=[
        {"cidr": "192.0.2.0/24"}]))
    assert dependent_resources(store, "calico-system") == set(SERVICE_RESOURCES)
    assert [r.path for r in SERVICE_RESOURCES] == [
        "/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices"]


def test_the_cluster_role_grants_every_watch() -> None:
    docs = list(yaml.safe_load_all((ROOT / "config/kubernetes/bgpd.yaml").read_text()))
    role = next(d for d in docs if d and d["kind"] == "ClusterRole")
    granted = {(group, res) for rule in role["rules"] if {"list", "watch"} <= set(rule["verbs"])
               for group in rule["apiGroups"] for res in rule["resources"]}
    for r in (*resources("n1"), *SERVICE_RESOURCES):
        assert (r.group, r.plural) in granted, r


def test_results_kept_between_computations_equal_a_fresh_computation() -> None:
    """Under churn the routes of unchanged Services are reused (``store.memo``): after each
    change they are what a store built from scratch gives."""
    import random

    rng = random.Random(3)
    base = [*nodes(), calico("BGPConfiguration", "default", **RANGES)]
    objs: dict[str, dict[str, Any]] = {}
    for i in range(20):
        objs[f"s{i}"] = service(f"s{i}", cluster_ip=f"10.96.0.{i + 1}",
                                policy=rng.choice(["Local", "Cluster"]))
        objs[f"e{i}"] = slice_(f"s{i}-1", f"s{i}", ("n1", True))
    live = Store()
    for obj in (*base, *objs.values()):
        live.apply(obj)
    for step in range(60):
        i = rng.randrange(20)
        if step % 7 == 0:
            objs["default"] = calico("BGPConfiguration", "default", **RANGES,
                                     serviceLoadBalancerAggregation=rng.choice(
                                         ["Enabled", "Disabled"]))
            live.apply(objs["default"])
        elif step % 5 == 0:
            live.delete("Service", f"shop/s{i}")
            objs.pop(f"s{i}", None)
        else:
            objs[f"e{i}"] = slice_(f"s{i}-1", f"s{i}", (rng.choice(["n1", "n2"]),
                                                         rng.choice([True, False])))
            live.apply(objs[f"e{i}"])
        fresh = Store()
        for obj in (*base, *objs.values()):
            fresh.apply(obj)
        assert desired_config(live, "n1").services == desired_config(fresh, "n1").services


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(
        ["10.96.0.1", "IPv4", "Local", "n1", "LoadBalancer", "x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["spec", "status", "metadata", "labels", "type", "clusterIP", "clusterIPs",
         "externalIPs", "ipFamilies", "externalTrafficPolicy", "loadBalancer", "ingress", "ip",
         "endpoints", "conditions", "ready", "nodeName", "addressType", "name", "namespace",
         "kubernetes.io/service-name"]), inner, max_size=4),
    max_leaves=14)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["Service", "EndpointSlice"]), json_values)
def test_any_service_or_slice_is_valid_or_an_error_naming_it(kind: str, body: Any) -> None:
    obj = {**(body if isinstance(body, dict) else {"spec": body}), "kind": kind,
           "apiVersion": "v1" if kind == "Service" else "discovery.k8s.io/v1",
           "metadata": {"name": "s", "namespace": "shop"}}
    store = Store()
    for o in (*nodes(), calico("BGPConfiguration", "default", **RANGES), obj):
        store.apply(o)  # never raises: an invalid one is an error of the store
    config = desired_config(store, "n1")
    assert all(e.name == "shop/s" for e in config.errors)
