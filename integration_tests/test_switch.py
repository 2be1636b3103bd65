"""Switching a node from BIRD to bgpd under traffic (``bgpd takeover``, then bgpd started),
and back.

Three nodes, node-0 running BIRD 2 as confd configures it (graceful restart on, kernel routes
``persist``), node-1 and node-2 bgpd; a pod on node-1 pings the pod on node-0 every 10 ms
(requests need node-1's route to node-0's block, replies node-0's route back) and every node's
``proto bird`` routes are watched.  ``bgpd takeover`` makes BIRD leave without a Cease, bgpd
starts on node-0: no packet lost, no route deleted anywhere.  BIRD stopped by SIGTERM instead
(what runit does) sends Cease: its peers drop its block at once — the first run shows that
loss, so the second is known to measure something.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from integration_tests.cluster import BGPD, Cluster, Node
from integration_tests.monitor import Pinger
from integration_tests.netns import NetLab
from integration_tests.peers import available
from integration_tests.test_daemon import RouteDeletions


@pytest.fixture(autouse=True)
def _needs_bird() -> None:
    why = available("bird2")
    if why:
        pytest.skip(why)


def switch(lab: NetLab, tmp_path: Path, *, takeover: bool) -> tuple[int, int, list[list[str]],
                                                                     str]:
    """(sent, received, routes deleted on each node, what takeover said)."""
    c = Cluster(lab, tmp_path, nodes=3, bird_nodes=1, mode="Never", pods=1, tor=False)
    bird_node, n1, _n2 = c.nodes
    c.start_all()
    try:
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        c.wait(lambda: all(all(p["established"] for p in c.status(n)["peers"])
                           for n in c.nodes[1:]), 30, "the bgpd nodes' sessions")
        monitors = [RouteDeletions(n) for n in c.nodes]
        ping = Pinger(n1.pods[0].name, bird_node.pod_ips[0], interval=0.01)
        time.sleep(1)
        said = ""
        assert bird_node.bird is not None
        if takeover:
            said = bird_node.ns.run(*BGPD, "takeover", "--bird-socket", bird_node.bird.sock)
        else:
            bird_node.bird.stop()  # SIGTERM, as runit stops calico-node's BIRD
        c.start(bird_node)
        c.wait(lambda: all(p["established"] for p in c.status(bird_node)["peers"])
               and len(c.status(bird_node)["peers"]) == 2, 60, "bgpd's sessions on node-0")
        c.wait(lambda: not c.status(bird_node)["rib"]["restarting"], 30, "its restart done")
        c.wait(c.blocks_everywhere, 30, "routes everywhere again")
        time.sleep(1)
        sent, received = ping.stop()
        return sent, received, [m.stop() for m in monitors], said
    finally:
        c.stop_all()


def test_bird_to_bgpd_with_takeover_loses_nothing(lab: NetLab, tmp_path: Path) -> None:
    sent, received, deleted, said = switch(lab, tmp_path / "sigterm", takeover=False)
    print(f"SIGTERM: {sent - received} of {sent} lost, deleted {deleted}")
    assert received < sent and any(deleted), "SIGTERM lost nothing: the test sees nothing"
    lab.close()
    sent, received, deleted, said = switch(lab, tmp_path / "takeover", takeover=True)
    print(f"takeover: {sent - received} of {sent} lost; {said}")
    assert "asked for graceful restart" in said
    assert sent > 100 and received == sent
    assert deleted == [[], [], []]


def test_takeover_refuses_a_bird_without_graceful_restart(lab: NetLab, tmp_path: Path) -> None:
    """Its peers would drop the node's routes however BIRD left: refused, BIRD left running,
    and the reason given."""
    c = Cluster(lab, tmp_path, nodes=2, bird_nodes=1, mode="Never", tor=False,
                bird_graceful=False)
    bird_node = c.nodes[0]
    c.start_all()
    try:
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        c.wait(lambda: all(p["established"] for p in c.status(c.nodes[1])["peers"]), 30,
               "the session")
        assert bird_node.bird is not None
        done = subprocess.run(["ip", "netns", "exec", bird_node.ns.name, *BGPD, "takeover",
                               "--bird-socket", bird_node.bird.sock],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert "sessions without graceful restart: Mesh_198_51_100_12" in done.stderr
        assert "BIRD 2.0" in bird_node.bird.cli("show", "status")  # still there
    finally:
        c.stop_all()


def test_bgpd_back_to_bird_loses_nothing(lab: NetLab, tmp_path: Path) -> None:
    """The way back: bgpd stopped by SIGTERM (it withdraws nothing, its kernel routes stay,
    its peers keep its routes by graceful restart), then BIRD started as calico-node starts
    it (``bird -R``): no packet lost, no route deleted on any node."""
    import signal

    c = Cluster(lab, tmp_path, nodes=3, mode="Never", pods=1, tor=False)
    node, n1, _n2 = c.nodes
    c.start_all()
    try:
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        monitors = [RouteDeletions(n) for n in c.nodes]
        ping = Pinger(n1.pods[0].name, node.pod_ips[0], interval=0.01)
        time.sleep(1)
        c.signal(node, signal.SIGTERM)
        c.start_bird(node, graceful=True)
        assert node.bird is not None
        bird = node.bird
        def established() -> bool:
            lines = bird.cli("show", "protocols").splitlines()
            return all(any(f"Mesh_{n.ip.replace('.', '_')}" in line and "Established" in line
                           for line in lines) for n in c.nodes[1:])

        c.wait(established, 60, "BIRD's sessions on node-0")
        c.wait(lambda: "recovery in progress" not in bird.cli("show", "status"), 60,
               "BIRD's graceful restart recovery done (its kernel routes synced)")
        c.wait(c.blocks_everywhere, 30, "routes everywhere again")
        time.sleep(2)
        sent, received = ping.stop()
        deleted = [m.stop() for m in monitors]
        print(f"bgpd to BIRD: {sent - received} of {sent} lost")
        assert sent > 100 and received == sent
        assert deleted == [[], [], []]
    finally:
        c.stop_all()


def test_bird1_node_to_bgpd_and_back_beside_bird_and_bgpd_peers(lab: NetLab,
                                                                tmp_path: Path) -> None:
    """Calico's own BIRD (the 1.6 lineage), started as calico-node starts it (``bird -R``),
    with a BIRD 2 peer and a bgpd peer: ``bgpd takeover`` kills it (BIRD 1 has no
    ``graceful restart`` command; a kill sends nothing), bgpd takes its place, then bgpd is
    stopped by SIGTERM and BIRD 1.6 started again with ``-R``.  Pods on both peers ping the
    switched node's pod every 10 ms throughout: none lost, no route deleted on any node."""
    import signal

    why = available("bird1")
    if why:
        pytest.skip(why)
    c = Cluster(lab, tmp_path, nodes=3, bird_nodes=2, bird1_nodes=1, bird_restarting=True,
                mode="Never", pods=1, tor=False)
    node, bird2_peer, bgpd_peer = c.nodes
    c.start_all()
    try:
        def bird_established(n: Node, peers: list[Node]) -> bool:
            assert n.bird is not None
            lines = n.bird.cli("show", "protocols").splitlines()
            return all(any(f"Mesh_{p.ip.replace('.', '_')}" in line and "Established" in line
                           for line in lines) for p in peers)

        def bgpd_established(n: Node, count: int) -> bool:
            peers = c.status(n)["peers"]
            return len(peers) == count and all(p["established"] for p in peers)

        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        c.wait(lambda: bird_established(node, [bird2_peer, bgpd_peer]), 60,
               "BIRD 1.6's sessions")
        assert node.bird is not None and "1.6" in node.bird.cli("show", "status")
        c.wait(lambda: "recovery in progress" not in node.bird.cli("show", "status"), 60,
               "BIRD 1.6's start-up recovery (-R) done")
        monitors = [RouteDeletions(n) for n in c.nodes]
        pings = [Pinger(p.pods[0].name, node.pod_ips[0], interval=0.01)
                 for p in (bird2_peer, bgpd_peer)]
        time.sleep(1)

        said = node.ns.run(*BGPD, "takeover", "--bird-socket", node.bird.sock)
        assert "killed (SIGKILL" in said, said
        c.start(node)
        c.wait(lambda: bgpd_established(node, 2), 60, "bgpd's sessions on node-0")
        c.wait(lambda: not c.status(node)["rib"]["restarting"], 30, "bgpd's restart done")
        c.wait(c.blocks_everywhere, 30, "routes everywhere with bgpd on node-0")
        time.sleep(1)

        c.signal(node, signal.SIGTERM)
        c.start_bird(node, graceful=True)
        c.wait(lambda: bird_established(node, [bird2_peer, bgpd_peer]), 60,
               "BIRD 1.6's sessions again")
        c.wait(lambda: "recovery in progress" not in node.bird.cli("show", "status"), 60,
               "BIRD 1.6's graceful restart recovery done")
        c.wait(c.blocks_everywhere, 30, "routes everywhere with BIRD 1.6 back")
        time.sleep(1)
        results = [p.stop() for p in pings]
        deleted = [m.stop() for m in monitors]
        print(f"BIRD 1.6 -> bgpd -> BIRD 1.6: {results} (sent, received); {said}")
        assert all(sent > 200 and received == sent for sent, received in results), results
        assert deleted == [[], [], []]
    finally:
        c.stop_all()


class Holds:
    """Samples, every 50 ms from another thread, whether ``router`` holds ``prefix`` from
    ``neighbor``; :meth:`stop` says how many samples found it missing (of how many)."""

    def __init__(self, router: Any, neighbor: str, prefix: str) -> None:
        import threading

        self.missing = self.samples = 0
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.05):
                self.samples += 1
                self.missing += prefix not in router.routes_from(neighbor)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return self.missing, self.samples


def test_bird_node_to_bgpd_and_back_beside_an_frr_tor(lab: NetLab, tmp_path: Path) -> None:
    """The switch as above with an FRR ToR among the node's peers (graceful restart, as the
    FRR ToR of docs/operating.md): BIRD 2 leaves by ``bgpd takeover``, bgpd takes over, bgpd
    is stopped by SIGTERM and BIRD 2 started with ``-R``; throughout, the ToR never lacks the
    node's block (sampled every 50 ms), a pod on the other node pings the node's pod every
    10 ms without a loss, and no route is deleted on either node."""
    import signal

    why = available("frr")
    if why:
        pytest.skip(why)
    c = Cluster(lab, tmp_path, nodes=2, bird_nodes=1, bird_restarting=True, mode="Never",
                pods=1, tor="frr")
    node, other = c.nodes
    tor = c.tor
    assert tor is not None
    c.start_all()
    try:
        c.wait(c.blocks_everywhere, 60, "routes everywhere")
        c.wait(lambda: node.block in tor.routes_from(node.ip), 60, "the block at the ToR")
        assert node.bird is not None
        c.wait(lambda: "recovery in progress" not in node.bird.cli("show", "status"), 60,
               "BIRD's start-up recovery (-R) done")
        holds = Holds(tor, node.ip, node.block)
        monitors = [RouteDeletions(n) for n in c.nodes]
        ping = Pinger(other.pods[0].name, node.pod_ips[0], interval=0.01)
        time.sleep(1)
        node.ns.run(*BGPD, "takeover", "--bird-socket", node.bird.sock)
        c.start(node)
        c.wait(lambda: len(c.status(node)["peers"]) == 2
               and all(p["established"] for p in c.status(node)["peers"]), 60,
               "bgpd's sessions (the mesh and the ToR)")
        c.wait(lambda: not c.status(node)["rib"]["restarting"], 30, "bgpd's restart done")
        time.sleep(1)
        c.signal(node, signal.SIGTERM)
        c.start_bird(node, graceful=True)
        c.wait(lambda: "recovery in progress" not in node.bird.cli("show", "status"), 60,
               "BIRD's graceful restart recovery done")
        c.wait(lambda: tor.established(node.ip), 30, "the ToR's session with BIRD again")
        time.sleep(1)
        missing, samples = holds.stop()
        sent, received = ping.stop()
        deleted = [m.stop() for m in monitors]
        print(f"FRR ToR: block missing in {missing} of {samples} samples; "
              f"{sent - received} of {sent} pings lost")
        assert samples > 20 and missing == 0  # (sampled throughout)
        assert sent > 200 and received == sent
        assert deleted == [[], []]
    finally:
        c.stop_all()
