"""The BIRD-compatible replies, against what reads them on a Calico node, rule for rule:
calico-node's probes (``node/pkg/health/bird/bird.go``) and its node-status reporter, which
fills CalicoNodeStatus from BIRD's socket (``node/pkg/status/populators/``: ``show
status``, ``show protocols``, ``show protocols all <name>``, ``show route``)."""

from __future__ import annotations

import re
import time
from ipaddress import IPv4Address, ip_address, ip_network
from types import SimpleNamespace
from typing import Any

from bgpd import birdctl
from bgpd.birdctl import status as bird_status
from bgpd.speaker.config import Neighbor
from bgpd.speaker.core import PeerSession, SessionState
from integration_tests.calico_readers import (
    reporter_complete,
    reporter_peers,
    reporter_routes,
    reporter_status,
)
from ribs.table import Table
from ribs.types import LOCAL, AsPath, Attributes, Route
from tests.ribs_helpers import peer, route


def calico_gr_in_progress(lines: list[str]) -> bool:
    """calico-node's reading of ``show status``, rule for rule."""
    for line in lines:
        if line.startswith("0013"):
            return False
        if line.startswith("0024"):
            return True
        if not line.startswith(("0001", "1000", "1011", " ")):
            raise ValueError(f"unexpected output line from BIRD: {line!r}")
    return False


# --- a node: two IPv4 sessions (one up), one IPv6 session, its block and learned routes ---
def node() -> Any:
    mesh, tor, v6 = (peer("10.0.0.2"), peer("10.0.0.9", asn=65000), peer("fd00::2"))
    now = time.time()

    def session(name: str, address: str, state: SessionState, asn: int = 64512,
                error: str = "") -> tuple[Any, PeerSession]:
        n = Neighbor(name=name, address=ip_address(address), peer_as=asn, local_as=64512,
                     local_address=ip_address("10.0.0.1") if ":" not in address else None)
        opened = SimpleNamespace(router_id=IPv4Address("10.0.0.2"), hold_time=240)
        return n.address, PeerSession(n, state=state, since=now - 60, last_error=error,
                                      open=opened if state is SessionState.ESTABLISHED else None)

    table = Table()
    for r in (route("172.17.2.0/24", mesh), route("172.17.100.0/24", tor, path=(65000,)),
              route("172.17.100.0/24", mesh), route("fd00:17:2::/122", v6),
              Route(ip_network("172.17.1.0/24"), LOCAL, Attributes(as_path=AsPath()))):
        table.update(r)
    rib = SimpleNamespace(table=table, out={mesh.key: {"x": 1}}, restarting=False)
    return SimpleNamespace(
        speaker=SimpleNamespace(peers=dict([
            session("Mesh_10_0_0_2", "10.0.0.2", SessionState.ESTABLISHED),
            session("Global_10_0_0_9", "10.0.0.9", SessionState.CONNECT, 65000,
                    "Connection refused\nby peer"),
            session("Mesh_fd00__2", "fd00::2", SessionState.ESTABLISHED)])),
        router=SimpleNamespace(rib=rib, interface="eth0", settings=SimpleNamespace(
            interface=None), config=SimpleNamespace(router_id=IPv4Address("10.0.0.1")),
            draining=lambda: None),
        started=now - 120, last_reconfigure=now - 30)


def test_status_says_graceful_restart_while_the_kept_routes_wait() -> None:
    parts = node()
    parts.router.rib.restarting = True
    during = bird_status(parts)
    assert calico_gr_in_progress(during) and during[-1].startswith("0013")
    parts.router.rib.restarting = False
    assert not calico_gr_in_progress(bird_status(parts))
    parts.router.rib = None  # no configuration yet
    assert not calico_gr_in_progress(bird_status(parts))
    assert bird_status(parts)[0].startswith("1000-BIRD ")  # what liveness looks for


def test_the_node_status_reporter_reads_the_daemon_status() -> None:
    found = reporter_status(bird_status(node()))
    assert found["routerID"] == "10.0.0.1" and found["version"].startswith("v")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", found["lastBootTime"])
    assert found["lastBootTime"] < found["lastReconfigurationTime"]


def test_status_says_the_node_drains_without_upsetting_calico_node() -> None:
    parts = node()
    parts.router.draining = lambda: "cordoned (spec.unschedulable)"
    lines = bird_status(parts)
    assert (" Graceful shutdown (RFC 8326) of every route sent: cordoned (spec.unschedulable)"
            in lines)
    assert not calico_gr_in_progress(lines) and lines[-1].startswith("0013")
    assert reporter_status(lines)["routerID"] == "10.0.0.1"


def test_the_node_status_reporter_reads_each_family_s_peers() -> None:
    parts = node()
    v4 = reporter_peers(birdctl.protocols(parts, 4), ".")
    assert [(p["session"], p["type"]) for p in v4] == [("Mesh_10_0_0_2", "NodeMesh"),
                                                       ("Global_10_0_0_9", "GlobalPeer")]
    v6 = reporter_peers(birdctl.protocols(parts, 6), ":")
    assert [(p["session"], p["name_ip"]) for p in v6] == [("Mesh_fd00__2", "fd00::2")]
    # then one "show protocols all <name>" per peer, on the same connection
    assert reporter_complete(birdctl.protocols(parts, 4, "Mesh_10_0_0_2", details=True)) == {
        "state": "Established", "peerIP": "10.0.0.2"}
    down = birdctl.protocols(parts, 4, "Global_10_0_0_9", details=True)
    assert reporter_complete(down) == {"state": "Connect", "peerIP": "10.0.0.9"}
    assert "    Last error:       Connection refused by peer" in [line[1:] for line in down]
    assert birdctl.protocols(parts, 4, "Mesh_fd00__2") == ["9002 Mesh_fd00__2 is not a protocol"]


def test_the_node_status_reporter_reads_each_family_s_routes() -> None:
    parts = node()
    v4 = reporter_routes(birdctl.routes(parts, 4), ".")
    assert [(r["dest"], r["type"], r["gateway"], r["iface"], r["sourceType"], r.get("peerIP"))
            for r in v4] == [
        ("172.17.1.0/24", "FIB", "N/A", "blackhole", "Static", None),
        ("172.17.2.0/24", "FIB", "10.0.0.2", "eth0", "NodeMesh", "10.0.0.2"),
        # two paths: the shorter AS path is best and comes first, the other one below it
        # without a destination
        ("172.17.100.0/24", "FIB", "10.0.0.2", "eth0", "NodeMesh", "10.0.0.2"),
        ("172.17.100.0/24", "RIB", "10.0.0.9", "eth0", "BGPPeer", "10.0.0.9")]
    v6 = reporter_routes(birdctl.routes(parts, 6), ":")
    assert [(r["dest"], r["peerIP"]) for r in v6] == [("fd00:17:2::/122", "fd00::2")]
    parts.router.rib = None
    assert birdctl.routes(parts, 4) == ["0000 "]


def test_commands_as_birdc_types_them() -> None:
    parts = node()
    assert birdctl.answer(parts, "show protocols\n") == birdctl.protocols(parts, 4)
    assert birdctl.answer(parts, "SHOW  protocols all Mesh_10_0_0_2") == birdctl.protocols(
        parts, 4, "Mesh_10_0_0_2", details=True)
    assert birdctl.answer(parts, "show route", 6) == birdctl.routes(parts, 6)
    assert birdctl.answer(parts, "quit") is None
    assert birdctl.answer(parts, "\n") == ["9001 syntax error"]
    assert birdctl.answer(parts, "configure")[0].startswith("9001 ")  # type: ignore[index]


# BIRD 2.0.12's reply to ``show bfd sessions`` (from its socket, in a namespace: a session Up
# at 100 ms x 3 and one Down): bgpd's must read the same, line for line in shape
BIRD2_BFD = ["1020-bfd1:",
             " IP address                Interface  State      Since         Interval  Timeout",
             " 192.0.2.9                 eth0       Down       05:47:36.828    1.000    0.000",
             " 192.0.2.1                 eth0       Up         05:47:37.580    0.100    0.300",
             "0000 "]


def test_show_bfd_sessions_reads_as_bird_2() -> None:
    def view(peer: str, state: str, interval: float) -> Any:
        return SimpleNamespace(peer=ip_address(peer), interface="eth0", state=state,
                               since=time.time(), tx_interval=interval, detection_time=0.3)

    views = [view("192.0.2.1", "Up", 0.1), view("192.0.2.9", "Down", 1.0),
             view("fd00::9", "Up", 0.1)]
    parts = SimpleNamespace(router=SimpleNamespace(bfd=SimpleNamespace(
        service=SimpleNamespace(snapshot=lambda: views))))
    lines = birdctl.answer(parts, "show bfd sessions")  # type: ignore[arg-type]
    assert lines is not None
    assert lines[:2] == BIRD2_BFD[:2] and lines[-1] == BIRD2_BFD[-1]
    row = re.compile(r"^ (\S+) +(\S+) +(\S+) +(\d\d:\d\d:\d\d\.\d{3}) +(\d+\.\d{3}) +"
                     r"(\d+\.\d{3})$")
    ours = [row.match(line).groups() for line in lines[2:-1]]  # type: ignore[union-attr]
    theirs = [row.match(line).groups() for line in BIRD2_BFD[2:-1]]  # type: ignore[union-attr]
    assert [(a, i, s, t, d) for a, i, s, _, t, d in ours] == [
        ("192.0.2.1", "eth0", "Up", "0.100", "0.300"), ("192.0.2.9", "eth0", "Down", "1.000",
                                                         "0.000")]
    for mine, bird in zip(lines[2:-1], BIRD2_BFD[2:-1][::-1], strict=True):
        assert [m.start() for m in re.finditer(r"\S+", mine)] == [
            m.start() for m in re.finditer(r"\S+", bird)]  # the same columns
    assert theirs  # (the reference rows parse)
