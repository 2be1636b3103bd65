"""Dual stack as a Calico cluster runs it: the mesh and the ToR in each family.

Three nodes with an IPv4 /24 and an IPv6 /122 block each, annotated with both addresses:
two run bgpd, one runs BIRD 2 configured as confd configures bird and bird6; a BIRD 2 ToR
peers with every node in each family (BGPPeers ``tor`` and ``tor6``).  Pods have both
families, with Calico's routes.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from integration_tests.cluster import TOR_IP, TOR_IP6, Cluster
from integration_tests.netns import NetLab
from integration_tests.peers import available

TOR_ROUTE6 = "fd00:10::f0:0/120"  # inside the IPv6 pool, wider than its blocks: accepted


@pytest.fixture
def bird2() -> None:
    why = available("bird2")
    if why:
        pytest.skip(why)


def test_every_pod_reaches_every_pod_in_both_families(lab: NetLab, tmp_path: Path,
                                                      bird2: None) -> None:
    c = Cluster(lab, tmp_path, nodes=3, bird_nodes=1, pods=1, ipv6=True,
                tor_originate=(TOR_ROUTE6,))
    c.start_all()
    try:
        c.wait(c.blocks_everywhere, 60, "every block of each family on every node")
        bird, me, other = c.nodes
        # IPv6 blocks as plain routes via the peer's global address (BIRD sends a
        # link-local one beside it), IPv4 ones through tunl0
        assert f"{other.block6} via {other.ip6} dev eth0 proto bird metric 1024 pref medium" \
            in me.routes6() or any(r.startswith(f"{other.block6} via {other.ip6} dev eth0")
                                   for r in me.routes6()), me.routes6()
        assert any(r.startswith(f"{bird.block6} via {bird.ip6} dev eth0")
                   for r in me.routes6()), me.routes6()
        assert any(r.startswith(f"blackhole {me.block6}") for r in me.routes6())
        # the ToR, a directly connected eBGP peer, sends a global and a link-local next
        # hop: the global one is installed, as BIRD6 does
        c.wait(lambda: any(r.startswith(f"{TOR_ROUTE6} via {TOR_IP6} dev eth0")
                           for r in me.routes6()), 10, "the ToR's route via its global address")
        assert any(r.startswith(f"{me.block6} via {me.ip6}") for r in bird.routes6())
        # the ToR holds each node's blocks of each family on that family's session only
        # (and, from a bgpd node, the other nodes' blocks too: Calico exports the pools'
        # routes to a global peer whatever their source; the lab's BIRD exports its own)
        tor = c.tor
        assert tor is not None
        blocks4, blocks6 = {n.block for n in c.nodes}, {n.block6 for n in c.nodes}
        c.wait(lambda: all(n.block in set(tor.routes_from(n.ip)) <= blocks4
                           and n.block6 in set(tor.routes_from(n.ip6)) <= blocks6
                           for n in c.nodes), 30, "the ToR's routes per family")
        assert set(tor.routes_from(me.ip)) == blocks4
        assert set(tor.routes_from(me.ip6)) == blocks6
        for src in c.nodes:
            for dst in c.nodes:
                if src is not dst:
                    assert c.ping(src.pods[0], dst.pod_ips[0]), (src.name, dst.pod_ips[0])
                    assert c.ping(src.pods[0], dst.pod_ips6[0]), (src.name, dst.pod_ips6[0])
        # a block of either family added to a bgpd node, and taken away
        extra6, extra4 = "fd00:10::ff:0/122", "172.17.99.0/24"
        extras = [c.affinity("node-1-extra6", me.name, extra6),
                  c.affinity("node-1-extra4", me.name, extra4)]
        c.write_resources(extras)
        start = time.monotonic()
        me.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

        def everywhere(present: bool) -> bool:
            return all((extra6 in " ".join(n.routes6()) and extra4 in " ".join(n.routes()))
                       == present for n in (bird, other)) and (
                (extra6 in tor.routes_from(me.ip6)) == present)

        c.wait(lambda: everywhere(True), 10, "the new blocks on every node and the ToR")
        added = time.monotonic() - start
        c.write_resources()
        start = time.monotonic()
        me.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        c.wait(lambda: everywhere(False), 10, "the blocks withdrawn everywhere")
        removed = time.monotonic() - start
        print(f"dual stack: blocks added everywhere in {added:.2f}s, removed in {removed:.2f}s")
        assert extra4 not in tor.routes_from(me.ip6) and extra6 not in tor.routes_from(me.ip)
        code, metrics = c.http(me, "/metrics")
        assert code == 200
        assert ('bgpd_bgp_session_up{family="ipv6",name="Mesh_fd00_198_51_100__11",'
                'peer="fd00:198:51:100::11",type="mesh"} 1.0') in metrics, metrics
        status = c.status(me)
        assert status["rib"]["prefixes_by_family"]["ipv6"] == 4  # 3 blocks and the ToR's
        assert status["kernel"]["owned_by_family"]["ipv6"] == 4  # 2 learned, a blackhole, ToR
        names = {p["name"] for p in status["peers"] if p["established"]}
        assert names == {"Mesh_198_51_100_11", "Mesh_198_51_100_13",
                         "Mesh_fd00_198_51_100__11", "Mesh_fd00_198_51_100__13",
                         f"Global_{TOR_IP.replace('.', '_')}",
                         f"Global_{TOR_IP6.replace(':', '_')}"}, names
    finally:
        c.stop_all()


def test_an_ipv6_only_node_and_an_ipv4_only_node_beside_a_dual_stack_one(
        lab: NetLab, tmp_path: Path) -> None:
    """As Calico: each pair of nodes peers in the families both have; the IPv6-only node's
    router id is the hash of its name (calico-node's ``CALICO_ROUTER_ID=hash``)."""
    from node_controller.desired import hashed_router_id

    c = Cluster(lab, tmp_path, nodes=3, tor=False, ipv6=True)
    dual, v6only, v4only = c.nodes
    manifests = c.node_manifests

    def single_stack(n: Any) -> list[dict[str, Any]]:
        docs = manifests(n)
        notes = docs[0]["metadata"]["annotations"]
        if n is v6only:
            del notes["projectcalico.org/IPv4Address"]
            del notes["projectcalico.org/IPv4IPIPTunnelAddr"]
            return [d for d in docs
                    if d.get("kind") != "BlockAffinity" or d["spec"]["cidr"] != n.block]
        if n is v4only:
            del notes["projectcalico.org/IPv6Address"]
            return [d for d in docs
                    if d.get("kind") != "BlockAffinity" or d["spec"]["cidr"] != n.block6]
        return docs

    c.node_manifests = single_stack  # type: ignore[method-assign]
    c.write_resources()
    c.start_all()
    try:
        def sessions(n: Any) -> set[str]:
            return {p["name"] for p in c.status(n)["peers"] if p["established"]}

        c.wait(lambda: sessions(dual) == {"Mesh_198_51_100_13", "Mesh_fd00_198_51_100__12"}
               and sessions(v6only) == {"Mesh_fd00_198_51_100__11"}
               and sessions(v4only) == {"Mesh_198_51_100_11"}, 30, "one session per family")
        c.wait(lambda: any(v6only.block6 in r for r in dual.routes6())
               and any(v4only.block in r for r in dual.routes())
               and any(dual.block6 in r for r in v6only.routes6())
               and any(dual.block in r for r in v4only.routes()), 30, "blocks per family")
        assert not v6only.routes() and not v4only.routes6()
        assert c.status(v6only)["router_id"] == str(hashed_router_id(v6only.name))
        assert not c.status(v6only)["errors"] and not c.status(v4only)["errors"]
    finally:
        c.stop_all()
