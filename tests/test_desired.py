"""Desired configuration: confd's session rules, table-driven."""

from __future__ import annotations

import base64
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from node_controller.desired import DesiredConfig, desired_config, hashed_router_id
from node_controller.store import Store


def node(name: str, ip: str | None, *, asn: str | None = None, rr: str | None = None,
         labels: dict[str, str] | None = None, pod_cidr: str | None = None) -> dict[str, Any]:
    annotations = {}
    if ip:
        annotations["projectcalico.org/IPv4Address"] = ip
    if asn:
        annotations["projectcalico.org/ASNumber"] = asn
    if rr:
        annotations["projectcalico.org/RouteReflectorClusterID"] = rr
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Node",
                           "metadata": {"name": name, "labels": labels or {},
                                        "annotations": annotations}}
    if pod_cidr:
        obj["spec"] = {"podCIDR": pod_cidr}
    return obj


def calico(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": kind, "metadata": {"name": name},
            "spec": spec}


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def build(*objs: dict[str, Any], me: str = "n9") -> DesiredConfig:
    store = Store()
    for obj in objs:
        store.apply(obj)
    return desired_config(store, me)


def peers(config: DesiredConfig) -> dict[str, tuple[str, int, int, str, bool]]:
    return {p.name: (str(p.address), p.port, p.peer_as, p.type, p.passive) for p in config.peers}


def test_mesh_passive_rule_compares_addresses_as_strings() -> None:
    cfg = build(node("n9", "10.0.0.9/24"), node("n10", "10.0.0.10/24"),
                node("n8", "10.0.0.8/24"), node("n91", "10.0.0.91/24"))
    assert peers(cfg) == {
        "Mesh_10_0_0_8": ("10.0.0.8", 179, 64512, "mesh", False),
        "Mesh_10_0_0_10": ("10.0.0.10", 179, 64512, "mesh", False),  # "10.0.0.10" < "10.0.0.9"
        "Mesh_10_0_0_91": ("10.0.0.91", 179, 64512, "mesh", True),
    }
    assert str(cfg.router_id) == "10.0.0.9" and cfg.local_as == 64512


def test_mesh_off() -> None:
    cfg = build(node("n9", "10.0.0.9/24"), node("n8", "10.0.0.8/24"),
                calico("BGPConfiguration", "default", nodeToNodeMeshEnabled=False))
    assert cfg.peers == ()


def test_route_reflectors_leave_the_mesh_and_reflect_to_clients() -> None:
    objs = [node("n9", "10.0.0.9/24"), node("n8", "10.0.0.8/24"),
            node("rr1", "10.0.0.1/24", rr="1.0.0.1", labels={"rr": "yes"}),
            node("rr2", "10.0.0.2/24", rr="1.0.0.1", labels={"rr": "yes"}),
            calico("BGPPeer", "to-rr", nodeSelector="!has(rr)", peerSelector="has(rr)")]
    client = build(*objs)
    assert set(peers(client)) == {"Mesh_10_0_0_8", "Node_10_0_0_1", "Node_10_0_0_2"}
    assert not any(p.rr_client for p in client.peers)
    rr = build(*objs, me="rr1")
    assert peers(rr) == {  # the reverse peerings; the other RR shares the cluster id
        "Node_10_0_0_8": ("10.0.0.8", 179, 64512, "node", True),  # "10.0.0.8" > "10.0.0.1"
        "Node_10_0_0_9": ("10.0.0.9", 179, 64512, "node", True),
    }
    assert all(p.rr_client for p in rr.peers)
    assert str(rr.route_reflector_cluster_id) == "1.0.0.1"


def test_global_peer_wins_over_node_specific_duplicate() -> None:
    cfg = build(node("n9", "10.0.0.9/24"),
                calico("BGPPeer", "global", peerIP="10.0.0.1", asNumber=65000),
                calico("BGPPeer", "mine", node="n9", peerIP="10.0.0.1", asNumber=65001),
                calico("BGPPeer", "mine-port", node="n9", peerIP="10.0.0.1:1179", asNumber=65002))
    assert peers(cfg) == {
        "Global_10_0_0_1": ("10.0.0.1", 179, 65000, "global", False),
        "Node_10_0_0_1_port_1179": ("10.0.0.1", 1179, 65002, "node", False),
    }


def test_node_selector_and_peer_selector() -> None:
    objs = [node("n9", "10.0.0.9/24", labels={"rack": "a"}),
            node("n8", "10.0.0.8/24", labels={"rack": "b"}, asn="65008"),
            calico("BGPConfiguration", "default", nodeToNodeMeshEnabled=False),
            calico("BGPPeer", "rack-a", nodeSelector="rack == 'a'", peerSelector="rack == 'b'")]
    cfg = build(*objs)
    assert peers(cfg) == {"Node_10_0_0_8": ("10.0.0.8", 179, 65008, "node", False)}
    back = build(*objs, me="n8")  # the implied reverse peering, with n9's AS
    assert peers(back) == {"Node_10_0_0_9": ("10.0.0.9", 179, 64512, "node", True)}
    assert back.local_as == 65008


def test_only_listen_port_log_and_advertisements_come_from_the_node_config() -> None:
    cfg = build(node("n9", "10.0.0.9/24"), node("n8", "10.0.0.8/24"),
                calico("BGPConfiguration", "default", asNumber=65100, listenPort=1790),
                calico("BGPConfiguration", "node.n9", asNumber=65200, listenPort=1791,
                       logSeverityScreen="Debug"),
                calico("BGPConfiguration", "node.n8", listenPort=1792))
    assert cfg.local_as == 65100  # asNumber of node.n9 is ignored
    assert cfg.listen_port == 1791 and cfg.log_severity == "Debug"
    assert peers(cfg)["Mesh_10_0_0_8"][1:3] == (1792, 65100)  # n8's own listen port


def test_dotted_and_string_asns() -> None:
    cfg = build(node("n9", "10.0.0.9/24", asn="1.10"),
                calico("BGPPeer", "p", peerIP="10.0.0.1", asNumber="65000"))
    assert cfg.local_as == (1 << 16) | 10
    assert peers(cfg)["Global_10_0_0_1"][2] == 65000


def test_missing_secret_leaves_the_peer_out_with_an_error() -> None:
    peer = calico("BGPPeer", "p", peerIP="10.0.0.1", asNumber=65000,
                  password={"secretKeyRef": {"name": "bgp", "key": "pw"}})
    cfg = build(node("n9", "10.0.0.9/24"), peer)
    assert cfg.peers == ()
    assert [(e.kind, e.name, e.field) for e in cfg.errors] == [
        ("BGPPeer", "p", "spec.password.secretKeyRef")]
    assert "Secret 'bgp' not found" in cfg.errors[0].message
    cfg = build(node("n9", "10.0.0.9/24"), peer, secret("bgp", pw="s3cret"))
    assert cfg.peers[0].password == "s3cret" and cfg.errors == ()
    assert cfg.as_dict()["peers"][0]["password"] is True
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg.as_dict())


def test_block_affinities_else_pod_cidrs() -> None:
    affinity = calico("BlockAffinity", "a", node="n9", cidr="172.17.9.0/24", state="confirmed",
                      deleted="false")
    pending = calico("BlockAffinity", "b", node="n9", cidr="172.17.10.0/24", state="pending")
    gone = calico("BlockAffinity", "c", node="n9", cidr="172.17.11.0/24", deleted="true")
    other = calico("BlockAffinity", "d", node="n8", cidr="172.17.8.0/24")
    cfg = build(node("n9", "10.0.0.9/24", pod_cidr="10.244.9.0/24"), affinity, pending, gone,
                other)
    assert [str(p) for p in cfg.blackholes] == ["172.17.9.0/24"]
    cfg = build(node("n9", "10.0.0.9/24", pod_cidr="10.244.9.0/24"))
    assert [str(p) for p in cfg.blackholes] == ["10.244.9.0/24"]


def test_services_are_announced_not_blackholed() -> None:
    cfg = build(node("n9", "10.0.0.9/24"),
                calico("BGPConfiguration", "default",
                       serviceClusterIPs=[{"cidr": "10.96.0.0/12"}],
                       serviceLoadBalancerIPs=[{"cidr": "192.0.2.0/24"}]))
    assert [str(p) for p in cfg.announce] == ["10.96.0.0/12", "192.0.2.0/24"]
    assert cfg.blackholes == ()


def test_peer_options() -> None:
    cfg = build(node("n9", "10.0.0.9/24"), calico(
        "BGPPeer", "p", peerIP="10.0.0.1", asNumber=65000, ttlSecurity=1,
        maxRestartTime="5m", keepaliveTime="10s", keepOriginalNextHop=True,
        numAllowedLocalASNumbers=2, sourceAddress="None"))
    p = cfg.peers[0]
    assert (p.ttl_security, p.restart_time, p.keepalive_time) == (1, 300.0, 10.0)
    assert (p.next_hop_mode, p.num_allowed_local_as, p.source_address) == ("Keep", 2, None)


@pytest.mark.parametrize(("obj", "field", "words"), [
    (calico("BGPPeer", "x", peerIP="10.0.0.1"), "spec.asNumber", "required"),
    (calico("BGPPeer", "x", peerIP="nope", asNumber=1), "spec.peerIP", "not an IP"),
    (calico("BGPPeer", "x", peerSelector="all()", asNumber=1), "spec.asNumber", "must be empty"),
    (calico("BGPPeer", "x", node="a", nodeSelector="all()", peerIP="1.1.1.1", asNumber=1),
     "spec.nodeSelector", "cannot both"),
    (calico("BGPPeer", "x", peerIP="1.1.1.1", asNumber="1.70000"), "spec.asNumber", "65535"),
    (calico("BGPPeer", "x", peerSelector="rack = 'a'"), "spec.peerSelector", "position 5"),
    (calico("BGPPeer", "x", peerIP="1.1.1.1", asNumber=1, maxRestartTime="2 minutes"),
     "spec.maxRestartTime", "not a duration"),
    (calico("BGPConfiguration", "default", listenPort=70000), "spec.listenPort", "1..65535"),
    (calico("BGPConfiguration", "default", nodeToNodeMeshEnabled=False,
            nodeMeshMaxRestartTime="10s"), "spec.nodeMeshMaxRestartTime", "not allowed"),
    (calico("BGPConfiguration", "default", communities=[{"name": "a", "value": "1:2"}]),
     "spec.communities", "prefixAdvertisements"),
    (calico("BGPConfiguration", "default", bindMode="All"), "spec.bindMode", "not one of"),
    (calico("BGPConfiguration", "default", programClusterRoutes="IPIP"),
     "spec.programClusterRoutes", "not one of"),
    (calico("IPPool", "p", cidr="10.0.0.0/8", ipipMode="Always", vxlanMode="Always"),
     "spec.vxlanMode", "cannot both"),
    (calico("IPPool", "p", cidr="10.0.0.0/8", blockSize=12), "spec.blockSize", "outside"),
    (calico("IPPool", "p", cidr="fd00::/48", ipipMode="Always"), "spec.ipipMode", "IPv4 only"),
    (calico("BGPFilter", "f", importV4=[{"cidr": "10.0.0.0/8", "action": "Accept"}]),
     "spec.importV4[0].matchOperator", "go together"),
    (calico("BGPFilter", "f", importV4=[{"cidr": "fd00::/8", "matchOperator": "In",
                                          "action": "Accept"}]),
     "spec.importV4[0].cidr", "not an IPv4"),
    (calico("BGPFilter", "f", exportV4=[{"matchOperator": "In"}]), "spec.exportV4[0].action",
     "required"),
    (calico("BlockAffinity", "b", node="n9", cidr="172.17.0.0/24", deleted="maybe"),
     "spec.deleted", "expected"),
    (node("bad", "10.0.0.300/24"), "metadata.annotations.projectcalico.org/IPv4Address",
     "not an address"),
])
def test_invalid_objects_are_named_and_the_rest_still_applies(obj: dict[str, Any], field: str,
                                                              words: str) -> None:
    good = calico("BGPPeer", "good", peerIP="10.0.0.1", asNumber=65000)
    cfg = build(node("n9", "10.0.0.9/24"), good, obj)
    errors = [e for e in cfg.errors if e.name == obj["metadata"]["name"]]
    assert len(errors) == 1, cfg.errors
    assert errors[0].kind == obj["kind"] and errors[0].field == field
    assert words in errors[0].message
    assert "Global_10_0_0_1" in peers(cfg)


def test_a_bad_edit_keeps_the_last_good_version() -> None:
    store = Store()
    store.apply(node("n9", "10.0.0.9/24"))
    store.apply(calico("BGPPeer", "p", peerIP="10.0.0.1", asNumber=65000))
    store.apply(calico("BGPPeer", "p", peerIP="10.0.0.1"))  # asNumber removed by mistake
    cfg = desired_config(store, "n9")
    assert peers(cfg)["Global_10_0_0_1"][2] == 65000
    assert [e.field for e in cfg.errors] == ["spec.asNumber"]


def test_status_only_change_is_no_change() -> None:
    store = Store()
    n = node("n9", "10.0.0.9/24")
    assert store.apply(n)
    n2 = {**n, "status": {"conditions": [{"type": "Ready", "lastHeartbeatTime": "now"}]},
          "metadata": {**n["metadata"], "resourceVersion": "42"}}
    assert not store.apply(n2)


def test_unknown_node() -> None:
    cfg = build(node("n8", "10.0.0.8/24"))
    assert cfg.peers == () and cfg.errors[-1].kind == "Node"


def test_a_missing_or_invalid_filter_closes_the_peer_and_says_why() -> None:
    tor = calico("BGPPeer", "tor", peerIP="192.0.2.1", asNumber=65000,
                 filters=["gone", "broken"])
    broken = calico("BGPFilter", "broken", importV4=[{"cidr": "10.0.0.0/8",
                                                      "matchOperator": "In"}])
    cfg = build(node("n9", "10.0.0.9/24"), tor, broken)
    (p,) = cfg.peers
    assert p.filters == ("gone", "broken")  # kept: the router closes the peer
    messages = {e.message for e in cfg.errors if e.name == "tor"}
    assert ("BGPFilter 'gone' not found: the peer imports and exports nothing until it is "
            "valid") in messages
    assert any(m.startswith("BGPFilter 'broken' is invalid (spec.importV4[0].action:")
               for m in messages)


def test_bgpd_annotations_on_a_bgppeer() -> None:
    tor = calico("BGPPeer", "tor", peerIP="192.0.2.1", asNumber=65000)
    tor["metadata"]["annotations"] = {"bgpd/max-prefixes": "500",
                                      "bgpd/max-prefixes-action": "teardown",
                                      "bgpd/accept-node-block-routes": "true"}
    (p,) = build(node("n9", "10.0.0.9/24"), tor).peers
    assert (p.max_prefixes, p.max_prefixes_action, p.accept_node_block_routes) == (
        500, "teardown", True)
    tor["metadata"]["annotations"] = {"bgpd/max-prefixes": "lots"}
    cfg = build(node("n9", "10.0.0.9/24"), tor)
    assert not cfg.peers
    assert [(e.name, e.field) for e in cfg.errors] == [
        ("tor", "metadata.annotations.bgpd/max-prefixes")]


def test_other_nodes_blocks_from_affinities_or_pod_cidrs() -> None:
    cfg = build(node("n9", "10.0.0.9/24"), node("n8", "10.0.0.8/24"),
                node("n7", "10.0.0.7/24", pod_cidr="10.244.7.0/24"),
                calico("BlockAffinity", "a8", node="n8", cidr="172.17.8.0/24",
                       state="confirmed", deleted="false"),
                calico("BlockAffinity", "a9", node="n9", cidr="172.17.9.0/24",
                       state="confirmed", deleted="false"))
    assert [str(b) for b in cfg.other_blocks] == ["10.244.7.0/24", "172.17.8.0/24"]
    assert [str(b) for b in cfg.blackholes] == ["172.17.9.0/24"]


# --- Calico v3.33 fields ------------------------------------------------------------------
def test_reverse_peering_manual_leaves_the_other_side_to_its_own_bgppeer() -> None:
    objs = [node("n9", "10.0.0.9/24", labels={"rack": "a"}),
            node("n8", "10.0.0.8/24", labels={"rack": "b"}),
            calico("BGPConfiguration", "default", nodeToNodeMeshEnabled=False),
            calico("BGPPeer", "rack-a", nodeSelector="rack == 'a'", peerSelector="rack == 'b'",
                   reversePeering="Manual")]
    assert list(peers(build(*objs))) == ["Node_10_0_0_8"]
    assert peers(build(*objs, me="n8")) == {}
    auto = [*objs[:3], calico("BGPPeer", "rack-a", nodeSelector="rack == 'a'",
                              peerSelector="rack == 'b'", reversePeering="Auto")]
    assert list(peers(build(*auto, me="n8"))) == ["Node_10_0_0_9"]


def test_local_as_number_is_our_as_on_peer_ip_sessions_only() -> None:
    objs = [node("n9", "10.0.0.9/24", labels={"rack": "a"}), node("n8", "10.0.0.8/24"),
            calico("BGPConfiguration", "default", nodeToNodeMeshEnabled=False),
            calico("BGPPeer", "tor", peerIP="10.0.0.1", asNumber=65000, localASNumber=65101),
            calico("BGPPeer", "sel", peerSelector="all()", localASNumber=65102)]
    cfg = build(*objs)
    by_name = {p.name: p for p in cfg.peers}
    assert by_name["Global_10_0_0_1"].local_as == 65101
    assert by_name["Global_10_0_0_8"].local_as == 64512  # confd: peerIP peerings only
    assert cfg.local_as == 64512


def test_load_balancer_aggregation_and_single_addresses() -> None:
    spec = {"serviceClusterIPs": [{"cidr": "10.96.0.0/12"}, {"cidr": "10.95.0.1/32"}],
            "serviceExternalIPs": [{"cidr": "198.51.100.0/24"}, {"cidr": "198.51.101.7/32"}],
            "serviceLoadBalancerIPs": [{"cidr": "192.0.2.0/24"}, {"cidr": "192.0.3.9/32"}]}
    me = node("n9", "10.0.0.9/24")
    cfg = build(me, calico("BGPConfiguration", "default", **spec))
    # every cluster IP range; external and LB ranges but not their single addresses
    assert [str(p) for p in cfg.announce] == ["10.95.0.1/32", "10.96.0.0/12", "192.0.2.0/24",
                                              "198.51.100.0/24"]
    off = build(me, calico("BGPConfiguration", "default", serviceLoadBalancerAggregation="Disabled",
                           **spec))
    assert [str(p) for p in off.announce] == ["10.95.0.1/32", "10.96.0.0/12", "198.51.100.0/24"]
    # still service CIDRs: what is inside them may be exported (per-service routes)
    assert "192.0.2.0/24" in [str(p) for p in off.service_cidrs]


def test_route_priorities_follow_the_clusters_calico_version() -> None:
    me = node("n9", "10.0.0.9/24")
    conf = calico("BGPConfiguration", "default", ipv4NormalRoutePriority=2000)
    assert not build(me, conf).calico_v3_33  # no ClusterInformation: older Calico's encoding
    old = calico("ClusterInformation", "default", calicoVersion="v3.32.1")
    assert not build(me, conf, old).calico_v3_33
    new = build(me, conf, calico("ClusterInformation", "default", calicoVersion="v3.33.0"))
    assert new.calico_v3_33 and (new.normal_priority_v4, new.normal_priority_v6) == (2000, 1024)
    dev = calico("ClusterInformation", "default", calicoVersion="v3.34.0-0.dev-12-gabcdef")
    assert build(me, dev).calico_v3_33


def test_local_workload_peers_come_from_felixs_status_files() -> None:
    from node_controller.models import LocalWorkload
    store = Store()
    for obj in (node("n9", "10.0.0.9/24", labels={"rack": "a"}),
                calico("BGPPeer", "vms", localWorkloadSelector="app == 'vm'", asNumber=65100,
                       localASNumber=65009, nodeSelector="rack == 'a'", filters=["f"]),
                calico("BGPPeer", "other", localWorkloadSelector="app == 'x'", asNumber=65200,
                       node="n8"),
                calico("BGPFilter", "f", importV4=[{"action": "Accept"}])):
        store.apply(obj)
    vm = LocalWorkload("k8s-default-vm1-eth0", "vms", IPv4Address("172.17.9.10"),
                       IPv6Address("fd00:9::10"))
    stray = LocalWorkload("k8s-default-x-eth0", "other", IPv4Address("172.17.9.11"))
    cfg = desired_config(store, "n9", [vm, stray])
    got = {p.name: (str(p.address), p.peer_as, p.local_as, p.type, p.passive,
                    p.source_address, p.filters) for p in cfg.peers}
    assert got == {
        "Local_Workload_172_17_9_10": ("172.17.9.10", 65100, 65009, "local_workload", True,
                                       None, ("f",)),
        "Local_Workload_fd00_9__10": ("fd00:9::10", 65100, 65009, "local_workload", True,
                                       None, ("f",)),
    }  # "other" selects node n8 only: its workload here makes no session
    assert desired_config(store, "n9").peers == ()
    assert "Local_Workload" not in str(desired_config(store, "n8", [vm]).peers)  # no reverse


def test_program_cluster_routes_default_follows_the_version() -> None:
    me = node("n9", "10.0.0.9/24")
    v333 = calico("ClusterInformation", "default", calicoVersion="v3.33.1")
    assert build(me).program_cluster_routes() == "Enabled"
    assert build(me, v333).program_cluster_routes() == "EnabledNoEncapOnly"
    assert build(me, v333).program_cluster_routes("Enabled") == "Enabled"  # bgpd's setting
    explicit = calico("BGPConfiguration", "default", programClusterRoutes="Disabled")
    assert build(me, v333, explicit).program_cluster_routes("Enabled") == "Disabled"



def test_felix_configuration_takes_its_half_of_the_cluster_routes() -> None:
    """Felix's programClusterRoutes (node.<name> before default, as Felix reads it): BGP
    takes the complement where the BGPConfiguration does not say (tigera-operator writes
    the pair; a hand-set Felix half alone is completed); both set by hand and not
    complementary: a class both claim is left to Felix (notice), one neither claims is an
    error naming both objects."""
    from bgpd.translate import node_context

    me = node("n9", "10.0.0.9/24")
    v333 = calico("ClusterInformation", "default", calicoVersion="v3.33.1")

    def felix(name: str, value: str) -> dict[str, Any]:
        return calico("FelixConfiguration", name, programClusterRoutes=value,
                      bpfEnabled=False)  # Felix's other fields: not read

    def routes(config: DesiredConfig) -> tuple[bool, bool]:
        ctx = node_context(config, import_guard=True)
        return ctx.cluster_routes.ipip, ctx.cluster_routes.no_encap

    # the operator's clusterRoutingMode: Felix (Felix Enabled, BGP Disabled): BGP programs none
    operator = build(me, v333, felix("default", "Enabled"),
                     calico("BGPConfiguration", "default", programClusterRoutes="Disabled"))
    assert routes(operator) == (False, False) and not operator.errors + operator.notices
    # Felix's half alone, pre-v3.33 cluster (BGP's default would be Enabled): completed
    alone = build(me, felix("default", "EnabledIPIPOnly"))
    assert alone.program_cluster_routes() == "EnabledNoEncapOnly"
    assert routes(alone) == (False, True) and not alone.errors
    # the node's own object first
    mine = build(me, felix("default", "Enabled"), felix("node.n9", "Disabled"))
    assert mine.felix_configuration == "node.n9" and routes(mine) == (True, True)
    assert build(me, felix("node.n8", "Enabled")).felix_configuration is None  # another's
    # both by hand: BGP Enabled, Felix EnabledIPIPOnly: IPIP left to Felix, a notice
    both = build(me, felix("default", "EnabledIPIPOnly"),
                 calico("BGPConfiguration", "default", programClusterRoutes="Enabled"))
    assert routes(both) == (False, True) and not both.errors
    assert [(n.kind, n.field) for n in both.notices] == [
        ("BGPConfiguration", "spec.programClusterRoutes")]
    assert "IPIP pools are left to Felix" in both.notices[0].message
    assert "FelixConfiguration 'default'" in both.notices[0].message
    # neither claims the unencapsulated pools: an error; bgpd follows its BGPConfiguration
    gap = build(me, felix("node.n9", "EnabledIPIPOnly"),
                calico("BGPConfiguration", "default", programClusterRoutes="Disabled"))
    assert routes(gap) == (False, False)
    assert [e.field for e in gap.errors] == ["spec.programClusterRoutes"]
    assert "unencapsulated pools are programmed by neither" in gap.errors[0].message
    assert "FelixConfiguration 'node.n9'" in gap.errors[0].message


def test_felix_configuration_bad_value_names_the_field() -> None:
    bad = build(node("n9", "10.0.0.9/24"),
                calico("FelixConfiguration", "default", programClusterRoutes="Felix"))
    assert [(e.kind, e.name, e.field) for e in bad.errors] == [
        ("FelixConfiguration", "default", "spec.programClusterRoutes")]
    assert bad.felix_cluster_routes is None


@pytest.mark.parametrize(("obj", "field", "words"), [
    (calico("BGPConfiguration", "default", ipv4NormalRoutePriority=0),
     "spec.ipv4NormalRoutePriority", "outside"),
    (calico("BGPConfiguration", "default", ipv6NormalRoutePriority="high"),
     "spec.ipv6NormalRoutePriority", "whole number"),
    (calico("BGPConfiguration", "default", serviceLoadBalancerAggregation="Off"),
     "spec.serviceLoadBalancerAggregation", "not one of"),
    (calico("BGPConfiguration", "default", localWorkloadPeeringIPV4="fe80::1"),
     "spec.localWorkloadPeeringIPV4", "not an IPv4"),
    (calico("BGPConfiguration", "default", localWorkloadPeeringIPV6="nope"),
     "spec.localWorkloadPeeringIPV6", "not an IP"),
    (calico("BGPPeer", "x", peerIP="10.0.0.1", asNumber=1, localASNumber="big"),
     "spec.localASNumber", "not an AS number"),
    (calico("BGPPeer", "x", peerSelector="all()", reversePeering="Sometimes"),
     "spec.reversePeering", "not one of"),
    (calico("BGPPeer", "x", localWorkloadSelector="app == 'vm'", peerIP="10.0.0.1",
            asNumber=65000), "spec.localWorkloadSelector", "must be empty"),
    (calico("BGPPeer", "x", localWorkloadSelector="app == 'vm'"), "spec.asNumber", "required"),
    (calico("BGPPeer", "x", localWorkloadSelector="app ==", asNumber=65000),
     "spec.localWorkloadSelector", "position"),
    (calico("ClusterInformation", "default", calicoVersion="master"),
     "spec.calicoVersion", "not a version"),
    (calico("BGPFilter", "f", importV4=[{"action": "Accept", "matchOperator": "Around",
                                          "cidr": "10.0.0.0/8"}]),
     "spec.importV4[0].matchOperator", "not one of"),
])
def test_v333_fields_invalid(obj: dict[str, Any], field: str, words: str) -> None:
    test_invalid_objects_are_named_and_the_rest_still_applies(obj, field, words)


def _said(items: tuple[Any, ...]) -> dict[tuple[str, str, str], str]:
    return {(e.kind, e.name, e.field): e.message for e in items}


def test_two_bgppeers_making_one_session_are_an_error_on_the_second() -> None:
    objs = [node("n9", "10.0.0.9/24", labels={"rack": "a"}),
            node("n8", "10.0.0.8/24", labels={"rack": "b"}),
            calico("BGPConfiguration", "default", nodeToNodeMeshEnabled=False),
            calico("BGPPeer", "a-to-b", nodeSelector="rack == 'a'", peerSelector="rack == 'b'"),
            calico("BGPPeer", "racks-a-b", nodeSelector="rack == 'a'",
                   peerSelector="rack in {'b', 'c'}")]
    cfg = build(*objs)
    assert peers(cfg) == {"Node_10_0_0_8": ("10.0.0.8", 179, 64512, "node", False)}
    assert cfg.peers[0].origin == ("BGPPeer", "a-to-b")
    assert _said(cfg.errors) == {("BGPPeer", "racks-a-b", "spec.peerSelector"): (
        "peer Node_10_0_0_8: BGPPeer/a-to-b already makes this session (10.0.0.8 port 179): "
        "left out")}
    twice = build(*objs[:3], calico("BGPPeer", "b1", peerIP="10.0.0.1", asNumber=65000),
                  calico("BGPPeer", "b2", peerIP="10.0.0.1", asNumber=65001))
    assert [p.peer_as for p in twice.peers] == [65000]
    assert _said(twice.errors) == {("BGPPeer", "b2", "spec.peerIP"): (
        "peer Global_10_0_0_1: BGPPeer/b1 already makes this session (10.0.0.1 port 179): "
        "left out")}


def test_overlapping_pools_are_an_error_and_a_pool_over_the_node_subnet_a_notice() -> None:
    cfg = build(node("n9", "10.0.0.9/24"),
                calico("IPPool", "a", cidr="172.17.0.0/16", ipipMode="Always"),
                calico("IPPool", "b", cidr="172.17.128.0/17", vxlanMode="Always"),
                calico("IPPool", "c", cidr="10.0.0.0/16"))
    assert _said(cfg.errors) == {("IPPool", "b", "spec.cidr"): (
        "172.17.128.0/17 overlaps IPPool 'a' (172.17.0.0/16), which Calico refuses: a route "
        "inside both follows the more specific pool")}
    assert _said(cfg.notices) == {("IPPool", "c", "spec.cidr"): (
        "10.0.0.0/16 overlaps this node's subnet 10.0.0.0/24: no route into the subnet is "
        "taken from a peer, whatever the pool")}


def test_a_keepalive_time_of_zero_is_birds_default_and_says_so() -> None:
    cfg = build(node("n9", "10.0.0.9/24"),
                calico("BGPPeer", "tor", peerIP="10.0.0.1", asNumber=65000, keepaliveTime="0s"))
    assert not cfg.errors
    assert _said(cfg.notices) == {("BGPPeer", "tor", "spec.keepaliveTime"): (
        "0s is BIRD's default, as Calico passes it on: hold time 240 s, keepalives every 80 s")}


def test_two_nodes_at_one_address_are_an_error_on_the_second() -> None:
    cfg = build(node("n9", "10.0.0.9/24"), node("n8", "10.0.0.8/24"),
                node("n8-clone", "10.0.0.8/24"))
    assert [(p.name, p.calico_node) for p in cfg.peers] == [("Mesh_10_0_0_8", "n8")]
    assert _said(cfg.errors) == {
        ("Node", "n8-clone", "metadata.annotations.projectcalico.org/IPv4Address"): (
            "10.0.0.8 is node 'n8''s address too: the one session to it (Mesh_10_0_0_8) is "
            "'n8''s")}


def node6(name: str, ip4: str | None, ip6: str | None, **kw: Any) -> dict[str, Any]:
    obj = node(name, ip4, **kw)
    if ip6:
        obj["metadata"]["annotations"]["projectcalico.org/IPv6Address"] = ip6
    return obj


def test_dual_stack_mesh_in_each_family_as_confd_renders_bird_and_bird6() -> None:
    cfg = build(node6("n9", "10.0.0.9/24", "fd00::9/64"),
                node6("n10", "10.0.0.10/24", "fd00::10/64"),
                node6("n8", "10.0.0.8/24", None),  # IPv4 only
                node6("n7", None, "fd00::7/64"),  # IPv6 only
                node6("rr", "10.0.0.2/24", "fd00::2/64", rr="1.0.0.1"))
    assert peers(cfg) == {
        "Mesh_10_0_0_8": ("10.0.0.8", 179, 64512, "mesh", False),
        "Mesh_10_0_0_10": ("10.0.0.10", 179, 64512, "mesh", False),
        "Mesh_fd00__7": ("fd00::7", 179, 64512, "mesh", False),  # "fd00::7" < "fd00::9"
        "Mesh_fd00__10": ("fd00::10", 179, 64512, "mesh", False),  # "fd00::10" < "fd00::9"
    }
    sources = {p.name: str(p.source_address) for p in cfg.peers}
    assert sources["Mesh_fd00__7"] == "fd00::9" and sources["Mesh_10_0_0_8"] == "10.0.0.9"
    assert cfg.router_id == IPv4Address("10.0.0.9")
    v6_only = build(*[node6("n9", "10.0.0.9/24", "fd00::9/64"),
                      node6("n7", None, "fd00::7/64")], me="n7")
    assert peers(v6_only) == {"Mesh_fd00__9": ("fd00::9", 179, 64512, "mesh", True)}
    assert not v6_only.errors
    # calico-node's CALICO_ROUTER_ID=hash (HashToIPv4): values of Calico's algorithm
    assert v6_only.router_id == hashed_router_id("n7")
    assert [str(hashed_router_id(n)) for n in ("node-1", "node-3", "node-18")] == [
        "53.151.27.230", "168.76.254.138", "213.194.139.227"]  # node-18: first byte > 223


def test_selector_peerings_in_both_families_and_reverse_by_peer_ip_in_its_own() -> None:
    objs = [node6("n9", "10.0.0.9/24", "fd00::9/64", labels={"rack": "a"}),
            node6("n8", "10.0.0.8/24", "fd00::8/64", labels={"rack": "b"}),
            calico("BGPConfiguration", "default", nodeToNodeMeshEnabled=False),
            calico("BGPPeer", "rack-a", nodeSelector="rack == 'a'", peerSelector="rack == 'b'")]
    assert peers(build(*objs)) == {
        "Node_10_0_0_8": ("10.0.0.8", 179, 64512, "node", False),
        "Node_fd00__8": ("fd00::8", 179, 64512, "node", False)}
    assert peers(build(*objs, me="n8")) == {
        "Node_10_0_0_9": ("10.0.0.9", 179, 64512, "node", True),
        "Node_fd00__9": ("fd00::9", 179, 64512, "node", True)}
    by_ip = [*objs[:3], calico("BGPPeer", "to-n8", node="n9", peerIP="fd00::8", asNumber=64512)]
    assert peers(build(*by_ip)) == {"Node_fd00__8": ("fd00::8", 179, 64512, "node", False)}
    assert peers(build(*by_ip, me="n8")) == {
        "Node_fd00__9": ("fd00::9", 179, 64512, "node", True)}


def test_a_cordoned_node_drains() -> None:
    cordoned = node("n9", "10.0.0.9/24")
    cordoned["spec"] = {"unschedulable": True}
    assert build(cordoned).draining == "cordoned (spec.unschedulable)"
    assert build(node("n9", "10.0.0.9/24")).draining is None


def test_a_node_annotated_bgpd_drain_drains_and_its_taints_are_handed_on() -> None:
    annotated = node("n9", "10.0.0.9/24")
    annotated["metadata"]["annotations"]["bgpd/drain"] = "true"
    assert build(annotated).draining == "annotated bgpd/drain"
    annotated["metadata"]["annotations"]["bgpd/drain"] = "false"
    assert build(annotated).draining is None
    tainted = node("n9", "10.0.0.9/24")
    tainted["spec"] = {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "1",
                                   "effect": "NoSchedule"}, {"key": "dedicated"}]}
    config = build(tainted)
    assert config.taints == ("ToBeDeletedByClusterAutoscaler", "dedicated")
    assert config.draining is None  # which taints drain is the daemon's setting


@pytest.mark.parametrize(("where", "value", "field"), [
    ("annotation", "yes", "metadata.annotations.bgpd/drain"),
    ("taint", {"effect": "NoSchedule"}, "spec.taints[0].key"),
])
def test_a_bad_drain_annotation_or_taint_names_its_field(where: str, value: Any,
                                                         field: str) -> None:
    bad = node("n9", "10.0.0.9/24")
    if where == "annotation":
        bad["metadata"]["annotations"]["bgpd/drain"] = value
    else:
        bad["spec"] = {"taints": [value]}
    store = Store()
    store.apply(bad)
    assert [(e.kind, e.name, e.field) for e in store.error_list()] == [("Node", "n9", field)]
