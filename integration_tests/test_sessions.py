"""How a session ends decides what happens to its routes (RFC 4724 4).

One bgpd node and a BIRD 2 ToR, both with graceful restart, the ToR announcing a route.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from integration_tests.cluster import TOR_IP, Cluster
from integration_tests.netns import NetLab
from integration_tests.peers import Bird2, available

TOR_ROUTE = "172.17.100.0/24"


@pytest.fixture
def bird2() -> None:
    why = available("bird2")
    if why:
        pytest.skip(why)


def test_a_peer_shut_down_by_a_notification_takes_its_routes_with_it(
        lab: NetLab, tmp_path: Path, bird2: None) -> None:
    """The ToR's session disabled (BIRD sends Cease, administrative shutdown): its route
    leaves the kernel at once, as BIRD and FRR drop it — not after the restart time, which
    is for a peer that went without a word (killed: the route stays, kept as stale)."""
    c = Cluster(lab, tmp_path, nodes=1, tor_originate=(TOR_ROUTE,))
    node = c.nodes[0]
    c.start_all()
    try:
        tor = c.tor
        assert isinstance(tor, Bird2)

        def installed() -> bool:
            return any(r.startswith(TOR_ROUTE) for r in node.routes())

        c.wait(installed, 30, "the ToR's route in the kernel")
        tor.cli("disable", "n0")
        c.wait(lambda: not installed(), 10, "the route gone with the Cease")
        peer = next(p for p in c.status(node)["peers"] if p["address"] == TOR_IP)
        assert peer["stale_routes"] == 0
        assert '"notification": true' in (node.workdir / "bgpd.log").read_text()
        tor.cli("enable", "n0")
        c.wait(installed, 30, "the route back with the session")
        tor.kill()  # no NOTIFICATION: graceful restart keeps the route
        c.wait(lambda: any(p["stale_routes"] for p in c.status(node)["peers"]), 30,
               "the route kept as stale")
        assert installed()
    finally:
        c.stop_all()


def test_a_cordoned_or_drained_node_tags_its_routes_graceful_shutdown(
        lab: NetLab, tmp_path: Path, bird2: None) -> None:
    """RFC 8326 driven by Kubernetes: cordoning node-0 (``spec.unschedulable``) — or
    ``bgpd drain``, the ``bgpd/drain`` annotation, a taint the settings name — sends its
    block to the ToR with GRACEFUL_SHUTDOWN and to its mesh peer with LOCAL_PREF 0 too;
    uncordoning (``bgpd undrain``, the annotation or the taint gone) takes both back. Its
    sessions stay up throughout."""
    import signal
    from typing import Any

    c = Cluster(lab, tmp_path, nodes=2)
    me, other = c.nodes
    manifests = c.node_manifests
    cordoned = {"on": False, "annotated": False, "tainted": False}

    def with_cordon(n: Any) -> list[dict[str, Any]]:
        docs = manifests(n)
        if n is me and cordoned["on"]:
            docs[0]["spec"] = {"unschedulable": True}
        if n is me and cordoned["annotated"]:
            docs[0]["metadata"]["annotations"]["bgpd/drain"] = "true"
        if n is me and cordoned["tainted"]:
            docs[0]["spec"] = {"taints": [{"key": "ToBeDeletedByClusterAutoscaler",
                                           "value": "1700000000", "effect": "NoSchedule"}]}
        return docs

    c.node_manifests = with_cordon  # type: ignore[method-assign]
    c.start_all()
    try:
        tor = c.tor
        assert tor is not None

        def tagged() -> bool | None:
            route = tor.routes_from(me.ip).get(me.block)
            return None if route is None else "(65535,0)" in route.attrs.get("BGP.community", "")

        c.wait(lambda: tagged() is False, 30, "node-0's block at the ToR, untagged")
        flaps = {p["name"]: p["flaps"] for p in c.status(me)["peers"]}
        cordoned["on"] = True
        c.write_resources()
        assert me.proc is not None
        me.proc.send_signal(signal.SIGHUP)
        c.wait(lambda: tagged() is True, 10, "the block tagged GRACEFUL_SHUTDOWN")
        assert c.status(me)["draining"] == "cordoned (spec.unschedulable)"
        import json

        seen = json.loads(c.bgpd(other, "routes", "--prefix", me.block, "--output", "json"))
        mesh = [r for r in seen if str(r["from"]).startswith("Mesh_")]
        assert mesh and all(r["local_pref"] == 0 for r in mesh), seen
        cordoned["on"] = False
        c.write_resources()
        me.proc.send_signal(signal.SIGHUP)
        c.wait(lambda: tagged() is False, 10, "the tag gone with the cordon")
        c.bgpd(me, "drain")
        c.wait(lambda: tagged() is True, 10, "tagged by bgpd drain")
        c.bgpd(me, "undrain")
        c.wait(lambda: tagged() is False, 10, "untagged by bgpd undrain")
        for trigger, reason in (("annotated", "annotated bgpd/drain"),
                                ("tainted", "tainted ToBeDeletedByClusterAutoscaler")):
            cordoned[trigger] = True
            c.write_resources()
            me.proc.send_signal(signal.SIGHUP)
            c.wait(lambda: tagged() is True, 10, f"tagged while {trigger}")
            assert c.status(me)["draining"] == reason
            cordoned[trigger] = False
            c.write_resources()
            me.proc.send_signal(signal.SIGHUP)
            c.wait(lambda: tagged() is False, 10, f"untagged once no longer {trigger}")
        assert {p["name"]: p["flaps"] for p in c.status(me)["peers"]} == flaps
        assert '"event": "draining"' in (me.workdir / "bgpd.log").read_text()
    finally:
        c.stop_all()


def test_blocks_outlive_the_lost_reflector_on_the_datastores_word(
        lab: NetLab, tmp_path: Path, bird2: None) -> None:
    """Two nodes, no mesh, both clients of one BIRD 2 route reflector (graceful restart time
    5 s). The reflector dies: past those 5 s each node keeps the other's block — the same
    kernel route, no deletion — because the datastore still has that node there; a block
    the datastore no longer has goes at once."""
    import signal

    import yaml

    from integration_tests.test_daemon import RouteDeletions

    c = Cluster(lab, tmp_path, nodes=2, tor=False)
    a, b = c.nodes
    ns = c._attach("rr", f"{TOR_IP}/24", "br0")
    rr = Bird2(ns, tmp_path / "rr", router_id=TOR_IP, asn=64512, neighbors=[])
    rr.config = lambda: "".join(  # type: ignore[method-assign]
        [f"router id {TOR_IP};\nprotocol device {{}}\n"]
        + [f"protocol bgp n{i} {{ local {TOR_IP} as 64512; neighbor {n.ip} as 64512; "
           "rr client; graceful restart on; graceful restart time 5; connect retry time 1; "
           "ipv4 { import all; export all; }; }\n" for i, n in enumerate(c.nodes)])

    def write(docs: list[dict[str, object]]) -> None:
        (c.resources / "cluster.yaml").write_text(yaml.safe_dump_all(docs))

    docs = c.manifests()
    for doc in docs:
        if doc["kind"] == "BGPConfiguration":
            doc["spec"] = {"asNumber": 64512, "nodeToNodeMeshEnabled": False}
    docs.append(c.calico("BGPPeer", "rr", {"peerIP": TOR_IP, "asNumber": 64512}))
    write(docs)
    rr.start()
    c.start_all()
    try:
        c.wait(c.blocks_everywhere, 60, "each node's block at the other, through the reflector")
        before = [a.routes(), b.routes()]
        deletions = [RouteDeletions(a), RouteDeletions(b)]
        rr.kill()
        c.wait(lambda: all(c.status(n)["rib"]["retained_routes"] == 1 for n in c.nodes), 30,
               "the other's block retained after the reflector's restart time")
        for node, other in ((a, b), (b, a)):
            shown = c.bgpd(node, "routes", "--prefix", other.block)
            assert "retained (datastore)" in shown and "installed:" in shown, shown
        assert [a.routes(), b.routes()] == before
        assert [d.stop() for d in deletions] == [[], []]
        # node-1's block released in the datastore: node-0 lets its route go at once
        write([d for d in docs if not (d["kind"] == "BlockAffinity"
                                       and d["metadata"]["name"] == f"{b.name}-block")])
        assert a.proc is not None
        a.proc.send_signal(signal.SIGHUP)
        c.wait(lambda: b.block not in " ".join(a.routes()), 5, "the released block gone")
    finally:
        rr.kill()
        c.stop_all()


def test_a_decommissioning_stop_drains_before_it_withdraws(
        lab: NetLab, tmp_path: Path, bird2: None) -> None:
    """``withdraw_on_exit`` with ``drain_seconds``: on SIGTERM the node's block goes on
    with GRACEFUL_SHUTDOWN for those seconds (its peers move away while it still forwards,
    RFC 8326), then it is withdrawn and the node's kernel routes go."""
    import signal
    import threading

    c = Cluster(lab, tmp_path, nodes=1)
    me = c.nodes[0]
    c.start(me, withdraw_on_exit=True, drain_seconds=3.0)
    assert c.tor is not None
    c.tor.start()
    tor = c.tor
    try:
        def tagged() -> bool | None:
            route = tor.routes_from(me.ip).get(me.block)
            return None if route is None else "(65535,0)" in route.attrs.get("BGP.community", "")

        c.wait(lambda: tagged() is False, 30, "the block at the ToR, untagged")
        stopping = threading.Thread(target=c.signal, args=(me, signal.SIGTERM),
                                    kwargs={"wait": 30})
        stopping.start()
        c.wait(lambda: tagged() is True, 3, "the block tagged GRACEFUL_SHUTDOWN first")
        c.wait(lambda: tagged() is None, 15, "then withdrawn")
        stopping.join()
        assert me.proc is not None and me.proc.returncode == 0
        log = (me.workdir / "bgpd.log").read_text()
        assert '"reason": "stopping (drain_seconds 3)"' in log
    finally:
        c.stop_all()


def test_an_frr_tor_with_the_documented_route_map_moves_off_a_drained_node(
        lab: NetLab, tmp_path: Path) -> None:
    """docs/operating.md's FRR import policy, on an FRR ToR (its BGP table: FRR runs without
    zebra here): the service range both nodes announce is best through node-0, then, once
    node-0 drains, through node-1 — its path from node-0 kept, at LOCAL_PREF 0 — and back
    at the default preference once it undrains."""
    import json

    from integration_tests.peers import Frr

    why = available("frr")
    if why:
        pytest.skip(why)
    c = Cluster(lab, tmp_path, nodes=2, tor="frr")
    n0, n1 = c.nodes
    tor = c.tor
    assert isinstance(tor, Frr)
    plain = tor.config

    def with_policy() -> str:
        lines = plain().splitlines()
        lines[1:1] = ["bgp community-list standard GSHUT permit 65535:0",
                      "route-map FROM-NODES permit 10", " match community GSHUT",
                      " set local-preference 0", "route-map FROM-NODES permit 20"]
        at = lines.index(" address-family ipv4 unicast") + 1
        lines[at:at] = [f"  neighbor {n.ip} route-map FROM-NODES in" for n in c.nodes]
        return "\n".join(lines) + "\n"

    tor.config = with_policy  # type: ignore[method-assign]
    manifests = c.manifests

    def with_services() -> list[dict[str, object]]:
        docs = manifests()
        docs[0]["spec"]["serviceClusterIPs"] = [{"cidr": "10.96.0.0/12"}]
        return docs

    c.manifests = with_services  # type: ignore[method-assign]
    c.write_resources()
    c.start_all()
    try:
        def best() -> tuple[str | None, dict[str, object]]:
            """The best path's next hop, and each path's LOCAL_PREF by next hop (FRR leaves
            it out where it is the default)."""
            data = json.loads(tor.vtysh("show bgp ipv4 unicast 10.96.0.0/12 json") or "{}")
            paths = data.get("paths") or []
            chosen = next((p for p in paths if (p.get("bestpath") or {}).get("overall")), None)
            hop = chosen["nexthops"][0]["ip"] if chosen else None
            return hop, {p["nexthops"][0]["ip"]: p.get("locPrf") for p in paths}

        both = {n0.ip: None, n1.ip: None}
        c.wait(lambda: best() == (n0.ip, both), 60, "the range best through node-0")
        c.bgpd(n0, "drain")
        c.wait(lambda: best() == (n1.ip, {**both, n0.ip: 0}), 10,
               "best through node-1 once node-0 drains")
        c.bgpd(n0, "undrain")  # (which is best then: FRR keeps the older of equal paths)
        c.wait(lambda: best()[1] == both, 10, "node-0's path at the default preference again")
    finally:
        c.stop_all()
