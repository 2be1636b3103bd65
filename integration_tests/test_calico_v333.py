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
from integration_tests.peers import Bird2, Neighbor, available

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


def test_a_local_workload_peers_with_its_node(lab: NetLab, tmp_path: Path) -> None:
    """A BGPPeer's ``localWorkloadSelector``: the pod Felix says it selects (an endpoint
    status file naming the BGPPeer; Felix itself cannot run here, the test writes the file as
    Felix does) gets a passive session from its node, towards the node's peering address
    (``localWorkloadPeeringIPV4``, which Felix would make local to the node; here an address
    on the node's loopback).  A BIRD 2 in the pod's namespace speaks for the workload."""
    why = available("bird2")
    if why:
        pytest.skip(why)
    c = Cluster(lab, tmp_path, nodes=1, pods=1, tor=False)
    n0 = c.nodes[0]
    pod, pod_ip, peering_ip = n0.pods[0], n0.pod_ips[0], "169.254.0.179"
    n0.ns.ip("addr", "add", f"{peering_ip}/32", "dev", "lo")
    docs = c.manifests()
    for doc in docs:
        if doc["kind"] == "BGPConfiguration":
            doc["spec"]["localWorkloadPeeringIPV4"] = peering_ip
    docs += [
        c.calico("BGPPeer", "vms", {"localWorkloadSelector": "app == 'vm'", "asNumber": 65100,
                                    "filters": ["vm-in"]}),
        c.calico("BGPFilter", "vm-in", {"importV4": [
            {"cidr": "10.200.0.0/16", "matchOperator": "In", "action": "Accept"}]}),
    ]
    (c.resources / "cluster.yaml").write_text(yaml.safe_dump_all(docs))
    status_dir = n0.workdir / "endpoint-status"
    status_dir.mkdir(parents=True, exist_ok=True)
    vm = Bird2(pod, tmp_path / "vm", router_id=pod_ip, asn=65100,
               neighbors=[Neighbor(peering_ip, NODE_AS, multihop=True)],
               originate=("10.200.0.0/24",))
    vm.start()
    c.start_all()
    try:
        name = f"Local_Workload_{pod_ip.replace('.', '_')}"

        def peer_state() -> dict[str, object]:
            return {p["name"]: p for p in c.status(n0)["peers"]}.get(name) or {}

        c.wait(lambda: f"blackhole {n0.block} proto bird" in n0.routes(), 60, "node-0 up")
        assert not peer_state()  # no status file yet: no session
        (status_dir / "k8s-default-vm-eth0").write_text(json.dumps({
            "ifaceName": "cali0000", "mac": "ee:ee:ee:ee:ee:ee",
            "ipv4Nets": [f"{pod_ip}/32"], "bgpPeerName": "vms"}))
        c.wait(lambda: bool(peer_state().get("established")), 60, "the workload's session")
        assert peer_state()["type"] == "local workload"
        c.wait(lambda: any(r.startswith(f"10.200.0.0/24 via {pod_ip}") for r in n0.routes()),
               30, "the workload's route in the node's kernel")
        c.wait(lambda: n0.block in vm.routes_from(peering_ip), 30, "the node's block sent")
        # Felix removes the file when the pod goes (or stops selecting it): the session ends
        (status_dir / "k8s-default-vm-eth0").unlink()
        c.wait(lambda: not peer_state(), 30, "the session removed")
        c.wait(lambda: not any(r.startswith("10.200.0.0/24") for r in n0.routes()), 30,
               "the workload's route withdrawn")
    finally:
        c.stop_all()
        vm.stop()
