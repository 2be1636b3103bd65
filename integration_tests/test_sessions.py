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
