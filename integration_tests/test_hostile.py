"""No input stops the daemon: hostile-but-plausible resources applied to a running cluster.

Two bgpd nodes and a BIRD 2 ToR in namespaces, real ExaBGP.  Each resource set below is
applied to node-0 — by SIGHUP over a static folder, and through the Kubernetes API test
server — and after each: the same process answers ``bgpd status``, the error names the
object that caused it, the node reports itself degraded, no session that the change does not
name was reset (no flap, same ``since``), and no kernel route changed on any node.  Then the
set is taken back and the error goes.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration_tests import kube_cluster
from integration_tests.cluster import Cluster, node_ip
from integration_tests.netns import NetLab
from integration_tests.peers import available
from integration_tests.test_daemon import RouteDeletions

CALICO = "crd.projectcalico.org/v1"
NODE1 = node_ip(1)


def calico(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": CALICO, "kind": kind, "metadata": {"name": name}, "spec": spec}


def peer(name: str, **spec: Any) -> dict[str, Any]:
    return calico("BGPPeer", name, spec)


def secret(name: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "calico-system"},
            "stringData": {"password": value}}


def with_password(name: str, address: str, secret_name: str) -> dict[str, Any]:
    return peer(name, peerIP=address, asNumber=65010,
                password={"secretKeyRef": {"name": secret_name, "key": "password"}})


def node1(annotation: str, *, name: str = "node-1", tunnel: str = "172.17.2.1"
          ) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "labels": {"kubernetes.io/hostname": name},
        "annotations": {"projectcalico.org/IPv4Address": annotation,
                        "projectcalico.org/IPv4IPIPTunnelAddr": tunnel}}}


# (what it is, the documents, the object whose error must show: (kind, name))
CASES: list[tuple[str, list[dict[str, Any]], tuple[str, str]]] = [
    ("a BGPPeer on a mesh node at another port",
     [peer("tor-alt-port", peerIP=f"{NODE1}:1790", asNumber=64512)], ("BGPPeer", "tor-alt-port")),
    ("peerIP not an address", [peer("p-banana", peerIP="banana", asNumber=65001)],
     ("BGPPeer", "p-banana")),
    ("port 0", [peer("p-port0", peerIP="192.0.2.20:0", asNumber=65001)], ("BGPPeer", "p-port0")),
    ("the unspecified address", [peer("p-zero", peerIP="0.0.0.0", asNumber=65001)],
     ("BGPPeer", "p-zero")),
    ("a multicast address", [peer("p-mcast", peerIP="224.0.0.5", asNumber=65001)],
     ("BGPPeer", "p-mcast")),
    ("an IPv6 peer on a node without IPv6", [peer("p-v6", peerIP="2001:db8::7",
                                                  asNumber=65001)], ("BGPPeer", "p-v6")),
    ("AS 0", [peer("p-as0", peerIP="192.0.2.21", asNumber=0)], ("BGPPeer", "p-as0")),
    ("AS above 32 bits", [peer("p-as-big", peerIP="192.0.2.22", asNumber=4294967296)],
     ("BGPPeer", "p-as-big")),
    ("a dotted AS out of range", [peer("p-as-dot", peerIP="192.0.2.23", asNumber="1.70000")],
     ("BGPPeer", "p-as-dot")),
    ("keepalive of 100000 hours", [peer("p-keep", peerIP="192.0.2.24", asNumber=65001,
                                        keepaliveTime="100000h")], ("BGPPeer", "p-keep")),
    ("restart time over 12 bits", [peer("p-restart", peerIP="192.0.2.25", asNumber=65001,
                                        maxRestartTime="5000s")], ("BGPPeer", "p-restart")),
    ("ttlSecurity 300", [peer("p-ttl", peerIP="192.0.2.26", asNumber=65001, ttlSecurity=300)],
     ("BGPPeer", "p-ttl")),
    ("node and nodeSelector", [peer("p-both", peerIP="192.0.2.27", asNumber=65001,
                                    node="node-0", nodeSelector="all()")], ("BGPPeer", "p-both")),
    ("a selector that does not parse", [peer("p-sel", peerSelector="rack == ")],
     ("BGPPeer", "p-sel")),
    ("a missing Secret", [with_password("p-nosecret", "192.0.2.28", "absent")],
     ("BGPPeer", "p-nosecret")),
    ("an empty password", [secret("empty", ""), with_password("p-empty", "192.0.2.29", "empty")],
     ("BGPPeer", "p-empty")),
    ("a password of 100 bytes", [secret("long", "x" * 100),
                                 with_password("p-long", "192.0.2.30", "long")],
     ("BGPPeer", "p-long")),
    ("a port over 65535", [peer("p-port-big", peerIP="192.0.2.34:70000", asNumber=65001)],
     ("BGPPeer", "p-port-big")),
    ("a Secret that is not base64", [
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "notb64", "namespace": "calico-system"},
         "data": {"password": "!!not base64!!"}},
        with_password("p-notb64", "192.0.2.35", "notb64")], ("Secret", "notb64")),
    ("sourceAddress banana", [peer("p-src", peerIP="192.0.2.31", asNumber=65001,
                                   sourceAddress="Banana")], ("BGPPeer", "p-src")),
    ("reachableBy not an address", [peer("p-reach", peerIP="192.0.2.32", asNumber=65001,
                                         reachableBy="gw")], ("BGPPeer", "p-reach")),
    ("numAllowedLocalASNumbers 99", [peer("p-allow", peerIP="192.0.2.33", asNumber=65001,
                                          numAllowedLocalASNumbers=99)], ("BGPPeer", "p-allow")),
    ("a bgpd annotation given yes for true", [
        {**peer("p-mhop", peerIP="192.0.2.36", asNumber=65001,
                failureDetectionMode="BFDIfDirectlyConnected"),
         "metadata": {"name": "p-mhop", "annotations": {"bgpd/bfd-multihop": "yes"}}}],
     ("BGPPeer", "p-mhop")),
    ("a filter rule without action", [
        calico("BGPFilter", "f-bad", {"importV4": [{"cidr": "10.0.0.0/8",
                                                    "matchOperator": "In"}]})],
     ("BGPFilter", "f-bad")),
    ("an IPv6 CIDR in an IPv4 rule", [
        calico("BGPFilter", "f-v6", {"exportV4": [{"action": "Reject", "cidr": "fd00::/8",
                                                   "matchOperator": "In"}]})],
     ("BGPFilter", "f-v6")),
    ("the pool edited to cidr banana", [calico("IPPool", "pool", {"cidr": "banana"})],
     ("IPPool", "pool")),
    ("a second pool with IPIP and VXLAN", [
        calico("IPPool", "pool2", {"cidr": "172.30.0.0/16", "ipipMode": "Always",
                                   "vxlanMode": "Always"})], ("IPPool", "pool2")),
    ("the default BGPConfiguration's AS edited to banana", [
        calico("BGPConfiguration", "default", {"asNumber": "banana",
                                               "nodeToNodeMeshEnabled": True})],
     ("BGPConfiguration", "default")),
    ("listenPort 99999", [calico("BGPConfiguration", "default", {
        "asNumber": 64512, "nodeToNodeMeshEnabled": True, "listenPort": 99999})],
     ("BGPConfiguration", "default")),
    ("a node's listenPort not a number", [calico("BGPConfiguration", "node.node-0",
                                                 {"listenPort": "abc"})],
     ("BGPConfiguration", "node.node-0")),
    ("another node's address edited to banana", [node1("banana")], ("Node", "node-1")),
    ("another node's tunnel address with a prefix length",
     [node1(f"{NODE1}/24", tunnel="172.17.2.1/32")], ("Node", "node-1")),
    ("a clone of another node at its address", [node1(f"{NODE1}/24", name="node-1-clone")],
     ("Node", "node-1-clone")),
    ("a clone of this node at its address", [node1(f"{node_ip(0)}/24", name="node-0-clone")],
     ("Node", "node-0-clone")),
    ("the pool's ipipMode in lower case", [calico("IPPool", "pool", {
        "cidr": "172.17.0.0/12", "blockSize": 24, "ipipMode": "always"})], ("IPPool", "pool")),
    ("a VXLAN pool over the pool", [calico("IPPool", "pool-vxlan", {
        "cidr": "172.17.128.0/17", "vxlanMode": "Always"})], ("IPPool", "pool-vxlan")),
    ("this node's BlockAffinity state capitalised", [calico("BlockAffinity", "node-0-block", {
        "node": "node-0", "cidr": "172.17.1.0/24", "state": "Confirmed", "deleted": "false"})],
     ("BlockAffinity", "node-0-block")),
    # this node's own (another node's it does not watch through the API), written without
    # the labels: the watch by label must not take it for a deletion
    ("a BlockAffinity deleted: maybe", [calico("BlockAffinity", "node-0-block", {
        "node": "node-0", "cidr": "172.17.1.0/24", "state": "confirmed", "deleted": "maybe"})],
     ("BlockAffinity", "node-0-block")),
    ("a spec that is not an object", [{"apiVersion": CALICO, "kind": "BGPPeer",
                                          "metadata": {"name": "p-nospec"}, "spec": "none"}],
     ("BGPPeer", "p-nospec")),
]


def fingerprint(c: Cluster) -> tuple[dict[str, tuple[int, str]], list[set[str]]]:
    """node-0's sessions (flaps, since) and every node's kernel routes."""
    status = c.status(c.nodes[0])
    sessions = {p["name"]: (p["flaps"], p["since"]) for p in status["peers"]
                if p["established"]}
    return sessions, [n.routes() for n in c.nodes]


def named(c: Cluster, want: tuple[str, str]) -> bool:
    status = c.status(c.nodes[0])
    return any((e["kind"], e["name"]) == want for e in status["errors"]) and bool(
        status["degraded"])


def clean(c: Cluster) -> bool:
    status = c.status(c.nodes[0])
    return not status["errors"] and not status["degraded"] and len(status["peers"]) == 2


def exercise(c: Cluster, apply: Callable[[list[dict[str, Any]]], None],
             undo: Callable[[list[dict[str, Any]]], None]) -> None:
    c.wait(lambda: clean(c) and all(p["established"] for p in c.status(c.nodes[0])["peers"]),
           60, "both sessions of node-0 up, no error")
    before = fingerprint(c)
    assert set(before[0]) == {"Mesh_198_51_100_12", "Global_198_51_100_1"}
    pid = c.nodes[0].proc.pid if c.nodes[0].proc else None
    deletions = RouteDeletions(c.nodes[0])
    for what, docs, want in CASES:
        apply(docs)
        c.wait(lambda want=want: named(c, want), 20, f"{what}: an error naming {want}")
        assert c.nodes[0].proc is not None and c.nodes[0].proc.poll() is None, what
        assert c.nodes[0].proc.pid == pid
        assert fingerprint(c) == before, what
        undo(docs)
        c.wait(lambda: clean(c), 20, f"{what}: the error gone once the set is taken back")
        assert fingerprint(c) == before, what
    assert deletions.stop() == []


@pytest.fixture
def bird2() -> None:
    why = available("bird2")
    if why:
        pytest.skip(why)


@pytest.mark.slow
def test_hostile_resources_by_sighup(lab: NetLab, tmp_path: Path, bird2: None) -> None:
    c = Cluster(lab, tmp_path, nodes=2)
    c.start_all()
    broken = c.resources / "zz-broken.yaml"

    def apply(docs: list[dict[str, Any]]) -> None:
        """Each document edits its object where it stands (as ``kubectl edit`` does), or
        is added after the rest."""
        edits = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        current = c.manifests()
        keys = {(d["kind"], d["metadata"]["name"]) for d in current}
        text = yaml.safe_dump_all(
            [edits.get((d["kind"], d["metadata"]["name"]), d) for d in current]
            + [d for key, d in edits.items() if key not in keys])
        (c.resources / "cluster.yaml").write_text(text)
        c.nodes[0].proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

    def undo(docs: list[dict[str, Any]]) -> None:
        broken.unlink(missing_ok=True)
        c.write_resources()
        c.nodes[0].proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

    try:
        c.wait(c.blocks_everywhere, 60, "blocks everywhere")
        exercise(c, apply, undo)
        # a bad edit in place across a restart: the last valid version, saved, applies
        routes = [n.routes() for n in c.nodes]
        apply([calico("IPPool", "pool", {"cidr": "172.17.0.0/12", "blockSize": 24,
                                         "ipipMode": "always"})])
        c.wait(lambda: named(c, ("IPPool", "pool")), 20, "the bad pool named")
        c.restart(c.nodes[0])
        c.wait(lambda: named(c, ("IPPool", "pool")), 20, "the bad pool named after a restart")
        assert [n.routes() for n in c.nodes] == routes
        undo([])
        c.wait(lambda: clean(c), 20, "clean again")
        # and a file that is not YAML: the whole reload is refused, file and line named
        broken.write_text("kind: BGPPeer\nmetadata: {name: x\n")
        c.nodes[0].proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        c.wait(lambda: any(e["kind"] == "File" and f"{broken}:3:" in e["message"]
                           for e in c.status(c.nodes[0])["errors"]), 20, "the file named")
        assert c.status(c.nodes[0])["peers"][0]["established"]
    finally:
        c.stop_all()


@pytest.mark.slow
def test_hostile_resources_through_the_api(lab: NetLab, tmp_path: Path, bird2: None) -> None:
    with kube_cluster.k8s_cluster(lab, tmp_path, nodes=2) as (c, server):
        originals = {(d["kind"], d["metadata"]["name"]): d for d in c.manifests()}

        def apply(docs: list[dict[str, Any]]) -> None:
            for doc in docs:
                server.put(doc)  # stored as is: what an older CRD schema would let through

        def undo(docs: list[dict[str, Any]]) -> None:
            for doc in docs:
                key = (doc["kind"], doc["metadata"]["name"])
                if key in originals:
                    server.put(originals[key])
                else:
                    server.remove(doc["kind"], key[1], doc["metadata"].get("namespace", ""))

        c.wait(c.blocks_everywhere, 60, "blocks everywhere")
        exercise(c, apply, undo)
        # a bad edit across a restart: the last valid version, saved, applies
        routes = [n.routes() for n in c.nodes]
        bad = [calico("IPPool", "pool", {"cidr": "172.17.0.0/12", "blockSize": 24,
                                         "ipipMode": "always"})]
        apply(bad)
        c.wait(lambda: named(c, ("IPPool", "pool")), 20, "the bad pool named")
        c.restart(c.nodes[0])
        c.wait(lambda: named(c, ("IPPool", "pool")), 20, "the bad pool named after a restart")
        assert [n.routes() for n in c.nodes] == routes
        undo(bad)
        c.wait(lambda: clean(c), 20, "clean again")

