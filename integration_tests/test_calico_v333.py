"""Calico v3.33's BGPFilter operations and route priorities, end to end: two bgpd nodes
(real ExaBGP) and a BIRD 2 top-of-rack router, in namespaces, on a cluster whose
ClusterInformation says v3.33.

What confd renders for such a cluster (``confd/pkg/backends/calico/bgp_processor.go``,
``confd/pkg/resource/template/template_funcs.go``): an export rule's ``prependASPath`` comes
before the node's own AS on the wire, ``addCommunity`` adds the community, an import rule's
``setPriority`` becomes the kernel metric of the route, every other BGP route is programmed
at the normal priority (``ipv4NormalRoutePriority``), and the priority travels between
nodes in LOCAL_PREF (``2147483647 - priority``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from integration_tests.cluster import NODE_AS, TOR_AS, TOR_IP, Cluster, node_ip
from integration_tests.netns import NetLab
from integration_tests.peers import available

TOR_ROUTE = "172.17.100.0/24"


@pytest.fixture
def cluster(lab: NetLab, tmp_path: Path) -> Iterator[Cluster]:
    why = available("bird2")
    if why:
        pytest.skip(why)
    c = Cluster(lab, tmp_path, nodes=2, tor_originate=(TOR_ROUTE,))
    docs = c.manifests()
    for doc in docs:
        if doc["kind"] == "BGPConfiguration":
            doc["spec"]["ipv4NormalRoutePriority"] = 1500
            doc["spec"]["programClusterRoutes"] = "Enabled"  # v3.33's default leaves IPIP to Felix
        if doc["kind"] == "BGPPeer":
            doc["spec"]["filters"] = ["tor"]
    docs += [
        c.calico("ClusterInformation", "default", {"calicoVersion": "v3.33.0"}),
        c.calico("BGPFilter", "tor", {
            "exportV4": [{"peerType": "eBGP", "action": "Accept", "operations": [
                {"prependASPath": {"prefix": [64999]}},
                {"addCommunity": {"value": "65000:42"}}]}],
            "importV4": [
                {"cidr": TOR_ROUTE, "matchOperator": "Equal", "asPathPrefix": [TOR_AS],
                 "action": "Accept", "operations": [{"setPriority": {"value": 700}},
                                                    {"addCommunity": {"value": "65000:7"}}]},
                {"peerType": "iBGP", "action": "Reject"}]}),  # no iBGP rule is reached
    ]
    (c.resources / "cluster.yaml").write_text(yaml.safe_dump_all(docs))
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


def line_for(prefix: str, routes: set[str]) -> str | None:
    return next((r for r in routes if r.split()[0] == prefix), None)


def test_filter_operations_and_priorities_reach_the_wire_and_the_kernel(cluster: Cluster
                                                                          ) -> None:
    c = cluster
    n0, n1 = c.nodes
    assert c.tor is not None
    tor = c.tor

    def sent_to_tor() -> bool:
        route = tor.routes_from(node_ip(0)).get(n0.block)
        return route is not None and "BGP.community" in route.attrs

    c.wait(sent_to_tor, 60, "the ToR learned node-0's block with its community")
    route = tor.routes_from(node_ip(0))[n0.block]
    # the rule's AS comes after ours, as BIRD's export filter runs before it prepends its AS
    assert route.attrs["BGP.as_path"].split() == [str(NODE_AS), "64999"]
    assert "(65000,42)" in route.attrs["BGP.community"]

    def programmed(node_index: int, prefix: str, metric: int) -> bool:
        line = line_for(prefix, c.nodes[node_index].routes())
        return line is not None and f"metric {metric}" in line

    # the ToR's route: the import rule's priority is its metric, on both nodes
    for i in (0, 1):
        c.wait(lambda i=i: programmed(i, TOR_ROUTE, 700), 60, f"node-{i}: {TOR_ROUTE} at 700")
        line = line_for(TOR_ROUTE, c.nodes[i].routes())
        assert line is not None and f"via {TOR_IP} dev tunl0" in line
    # the other node's block: the normal priority, carried over the mesh in LOCAL_PREF
    c.wait(lambda: programmed(0, n1.block, 1500), 60, "node-0: node-1's block at 1500")
    c.wait(lambda: programmed(1, n0.block, 1500), 60, "node-1: node-0's block at 1500")
    # nothing at the kernel's default metric is left behind
    for n in (n0, n1):
        assert all("metric" in r for r in n.routes() if not r.startswith("blackhole")), n.routes()
    # what the node imported carries the rule's community and priority (bgpd routes shows them)
    rows = json.loads(c.bgpd(n0, "routes", "--prefix", TOR_ROUTE, "--output", "json"))
    assert [(r["from"], r["communities"], r["local_pref"], r["as_path"]) for r in rows] == [
        ("Global_198_51_100_1", ["65000:7"], 2147483647 - 700, str(TOR_AS))], rows
