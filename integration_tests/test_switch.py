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

import pytest

from integration_tests.cluster import BGPD, Cluster
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
