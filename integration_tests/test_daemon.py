"""bgpd run end to end: two bgpd nodes and a BIRD top-of-rack router, in namespaces.

The resources come from a static folder (no API server can run here; the watcher has its
own tests against the test API server).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration_tests.calico_readers import (
    reporter_complete,
    reporter_peers,
    reporter_routes,
    reporter_status,
)
from integration_tests.cluster import TOR_IP, Cluster, Node, node_ip
from integration_tests.monitor import RouteMonitor
from integration_tests.netns import NetLab
from integration_tests.peers import available


@pytest.fixture
def cluster(lab: NetLab, tmp_path: Path) -> Iterator[Cluster]:
    why = available("bird2")
    if why:
        pytest.skip(why)
    c = Cluster(lab, tmp_path, nodes=2, tor_originate=("172.17.100.0/24", "0.0.0.0/0",
                                                       "198.51.100.0/24", "192.0.2.1/32"))
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


def expected(c: Cluster, node: Node) -> set[str]:
    other = c.nodes[1 - node.index]
    return {f"{other.block} via {other.ip} dev tunl0 proto bird onlink",
            f"blackhole {node.block} proto bird",
            f"172.17.100.0/24 via {TOR_IP} dev tunl0 proto bird onlink"}


def converged(c: Cluster) -> None:
    for n in c.nodes:
        c.wait(lambda n=n: n.routes() == expected(c, n), 60, f"{n.name}'s routes")
    assert c.tor is not None
    c.wait(lambda: {"172.17.1.0/24", "172.17.2.0/24"} <= set(c.tor.routes_from(node_ip(0)))
           | set(c.tor.routes_from(node_ip(1))), 30, "the ToR learned both blocks")


class RouteDeletions:
    """Every owned route deleted in a node's namespace while this watches."""

    def __init__(self, node: Node) -> None:
        self.monitor = RouteMonitor(node.ns.name)

    def stop(self) -> list[str]:
        self.monitor.stop()
        return self.monitor.deleted_owned()


def exabgp_starts(node: Node) -> list[bool]:
    """For each ExaBGP the node's daemon started: whether it was the pre-started launcher."""
    return [json.loads(line)["prestarted"] for line in
            (node.workdir / "bgpd.log").read_text().splitlines() if '"exabgp_started"' in line]


def test_two_nodes_and_a_tor(cluster: Cluster) -> None:
    c = cluster
    converged(c)
    n0 = c.nodes[0]

    def tor_view() -> dict[str, Any]:
        return {p["address"]: p for p in c.status(n0)["peers"]}

    # the two blocks the ToR sends back come after it learned them: rejected a moment later
    c.wait(lambda: tor_view()[TOR_IP]["routes_rejected"] >= 5, 30, "the ToR's routes judged")
    peers = tor_view()
    assert peers[TOR_IP]["established"] and peers[node_ip(1)]["established"]
    assert peers[node_ip(1)]["type"] == "node-to-node mesh"
    # the default route, the node subnet, a /32 outside the pools, our own block sent back
    # and the other node's block sent back (our AS in its path)
    assert peers[TOR_IP]["routes_rejected"] == 5
    text = c.bgpd(n0, "status")
    assert "PEER ADDRESS" in text and TOR_IP in text and "established" in text
    routes = c.bgpd(n0, "routes")
    assert "rejected by policy (default_route)" in routes
    assert "rejected by policy (overlaps_own_network)" in routes
    assert "rejected by policy (as_path_loop)" in routes
    assert "rejected by policy (outside_pools)" in routes
    assert "installed: 172.17.100.0/24 via 198.51.100.1 dev tunl0 onlink" in routes
    code, metrics = c.http(n0, "/metrics")
    assert code == 200
    assert ('bgpd_bgp_session_up{family="ipv4",name="Global_198_51_100_1",'
            f'peer="{TOR_IP}",type="global"}} 1.0') \
        in metrics
    assert 'bgpd_bgp_routes_rejected_total{peer="Global_198_51_100_1",reason="default_route"} 1.0' \
        in metrics
    assert 'bgpd_kernel_routes_owned{family="ipv4"} 3.0' in metrics
    assert 'bgpd_kernel_routes_owned{family="ipv6"} 0.0' in metrics
    # ready once the start's End-of-RIB exchange is over: the other node restarted with it,
    # so each waits for the other's End-of-RIB at most restart_peer_grace (RFC 4724 4.1)
    c.wait(lambda: c.http(n0, "/readyz")[0] == 200, 30, "ready")
    assert c.http(n0, "/livez")[0] == 200
    # the sessions above ran on the launcher `bgpd run` started before its configuration
    assert exabgp_starts(n0) == [True]


def test_restarts_never_remove_a_kernel_route(cluster: Cluster) -> None:
    c = cluster
    converged(c)
    n0 = c.nodes[0]
    monitor = RouteDeletions(n0)
    for sig in (signal.SIGKILL, signal.SIGTERM):
        c.signal(n0, sig)
        assert n0.routes() == expected(c, n0)  # nothing removed by the exit
        c.start(n0)
        c.wait(lambda: all(p["established"] for p in c.status(n0)["peers"]), 60,
               "sessions back")
        c.wait(lambda: c.http(n0, "/readyz")[0] == 200, 60, "ready again")
        assert n0.routes() == expected(c, n0)
    assert monitor.stop() == []
    # the ToR kept our block throughout (graceful restart) and has it now
    assert c.tor is not None
    assert "172.17.1.0/24" in c.tor.routes_from(n0.ip)


def test_withdraw_on_exit_removes_everything(cluster: Cluster) -> None:
    c = cluster
    converged(c)
    n0 = c.nodes[0]
    assert c.signal(n0, signal.SIGKILL) is not None
    c.start(n0, "--withdraw-on-exit")
    c.wait(lambda: all(p["established"] for p in c.status(n0)["peers"]), 60, "sessions back")
    assert c.signal(n0, signal.SIGTERM) == 0
    assert n0.routes() == set()
    assert c.tor is not None
    c.wait(lambda: "172.17.1.0/24" not in c.tor.routes_from(n0.ip), 15,
           "the ToR dropped our block")
    c.wait(lambda: f"{c.nodes[0].block} via {n0.ip} dev tunl0 proto bird onlink"
           not in c.nodes[1].routes(), 15, "the other node dropped our block")


def test_broken_settings_and_resources_are_named(tmp_path: Path) -> None:
    import sys

    bad = tmp_path / "bgpd.yaml"
    bad.write_text("datastore: static\nresources: /nonexistent\nlisten_prot: 179\n")
    proc = subprocess.run([sys.executable, "-m", "bgpd", "run", "--config", str(bad)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert f"{bad}:3: unknown setting 'listen_prot'" in proc.stderr
    missing = tmp_path / "k.yaml"
    bad.write_text(f"datastore: kubernetes\nkubeconfig: {missing}\n")
    proc = subprocess.run([sys.executable, "-m", "bgpd", "run", "--config", str(bad)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"bgpd: settings: {bad}: kubeconfig: {missing}: no such file"]
    # (a folder of manifests that is not valid YAML does not stop the daemon: test_hostile)


def test_bird_compatible_socket_answers_as_calicoctl_reads_it(lab: NetLab, tmp_path: Path) -> None:
    """The reply format calicoctl node status parses: 0001 hello, 2002 header with the six
    column names, 1002 first row, space-led rows, 0000 end; rows name BGP peers as
    Mesh_/Node_/Global_ followed by the address with '_' for '.'."""
    import socket

    if available("bird2"):
        pytest.skip(str(available("bird2")))
    c = Cluster(lab, tmp_path, nodes=2, tor_originate=("172.17.100.0/24",))
    c.tor.start()  # type: ignore[union-attr]
    n0 = c.nodes[0]
    path = n0.workdir / "calico" / "bird.ctl"
    path.parent.mkdir()
    for n in c.nodes:
        c.start(n, bird_socket=str(n.workdir / "calico" / "bird.ctl"))
    try:
        converged(c)

        def ask(command: str) -> list[str]:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
                s.settimeout(5)
                s.sendall(command.encode() + b"\n")
                data = b""
                while not any(line.startswith((b"0000", b"0013")) for line in data.splitlines()):
                    data += s.recv(65536)
            return data.decode().splitlines()

        lines = ask("show protocols")
        assert lines[0].startswith("0001 ")
        assert lines[1].startswith("2002-")
        assert lines[1][5:].split() == ["name", "proto", "table", "state", "since", "info"]
        assert lines[-1].startswith("0000")
        rows = [lines[2][5:]] + [line[1:] for line in lines[3:-1]]
        assert lines[2].startswith("1002-") and all(line.startswith(" ") for line in lines[3:-1])
        peers = {}
        for row in rows:
            columns = row.split()
            assert len(columns) >= 6 and columns[1] == "BGP"
            kind, _, rest = columns[0].partition("_")
            peers[rest.replace("_", ".")] = (kind, columns[3], " ".join(columns[5:]))
        assert peers == {TOR_IP: ("Global", "up", "Established"),
                         node_ip(1): ("Mesh", "up", "Established")}
        status = ask("show status")
        assert status[-1].startswith("0013") and "Router ID is 198.51.100.11" in status[2]
        # calico-node's liveness probe: BIRD's own client, output starting with "BIRD"
        out = n0.ns.run("birdc", "-s", str(path), "show", "status")
        assert any(line.startswith("BIRD") for line in out.splitlines()), out
        assert "Daemon is up and running" in out
        # calico-node's node-status reporter (it fills CalicoNodeStatus from these answers)
        found = reporter_status(status)
        assert found["routerID"] == "198.51.100.11" and found["version"].startswith("v")
        for peer in reporter_peers(lines, "."):
            detail = reporter_complete(ask(f"show protocols all {peer['session']}")[1:])
            assert detail == {"state": "Established", "peerIP": peer["name_ip"]}
        learned = {(r["dest"], r["type"], r["sourceType"], r.get("peerIP"))
                   for r in reporter_routes(ask("show route")[1:], ".")}
        assert {("172.17.100.0/24", "FIB", "BGPPeer", TOR_IP),
                (c.nodes[1].block, "FIB", "NodeMesh", node_ip(1))} <= learned
        assert (n0.block, "FIB", "Static", None) in learned
        out = n0.ns.run("birdc", "-s", str(path), "show", "route")  # and as people read it
        assert f"{c.nodes[1].block}" in out and f"via {node_ip(1)} on eth0" in out, out
        v6 = n0.workdir / "calico" / "bird6.ctl"  # BIRD6's socket: no IPv6 session here
        assert "Mesh_" not in n0.ns.run("birdc", "-s", str(v6), "show", "protocols")
    finally:
        c.stop_all()


@pytest.mark.slow
def test_hung_exabgp_is_detected_and_replaced_without_kernel_changes(cluster: Cluster) -> None:
    import os

    c = cluster
    converged(c)
    n0 = c.nodes[0]
    monitor = RouteDeletions(n0)
    pid = c.status(n0)["speaker"]["exabgp_pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        c.wait(lambda: c.http(n0, "/livez")[0] == 503 or c.status(n0)["speaker"]["restarts"],
               40, "the hang noticed")
        c.wait(lambda: c.status(n0)["speaker"]["restarts"] >= 1, 40, "ExaBGP replaced")
    finally:
        with contextlib.suppress(ProcessLookupError):  # replaced: that process is gone
            os.kill(pid, signal.SIGCONT)
    c.wait(lambda: all(p["established"] for p in c.status(n0)["peers"]), 60, "sessions back")
    assert n0.routes() == expected(c, n0)
    assert monitor.stop() == []
    assert exabgp_starts(n0) == [True, False]  # the replacement: a launcher of its own
