"""Failover loss: traffic to a Service on three nodes while one of them fails hard.

    python -m benchmarks.failover [--runs 5] [--rate 1000] [--window 300] [--no-save]

Three nodes in namespaces, each with a ready endpoint of an ``externalTrafficPolicy: Local``
Service whose external IP (192.0.2.7) all three announce to a top-of-rack router: BIRD 2
installing the equal paths in its kernel (``merge paths``: ECMP), with BFD at 100 ms x 3 on
each session.  The ToR pings the Service IP ``rate`` times a second in 8 flows (8 source
addresses, spread over the nodes by the kernel's multipath hash; each node answers for the
Service IP, on its loopback where kube-proxy would take the packet to the endpoint).  Then
node-2 fails hard: every packet in or out of it dropped (nftables, its own namespace).

Engines, in one run: ``bgpd-bfd`` (bgpd on the nodes, the ToR's BGPPeer asking for BFD as
Calico Enterprise's API has it, a BFDConfiguration at 100 ms x 3), ``bird-bfd`` (the nodes
running BIRD 2 as confd configures it, plus BFD on the ToR's session — what a Calico
Enterprise node runs), ``bgpd`` (no BFD: Calico's open-source edition today, BIRD or bgpd
alike: the ToR keeps the path for the hold time, then graceful restart's).

Counted: packets lost from the failure until a second after the ToR's kernel stops routing to
node-2 (without BFD: when the ToR's hold timer runs out), or until ``--window`` seconds (then
a lower bound); when the ToR moved.  Goal: bgpd with
BFD loses at most 1.5 times what BIRD with BFD loses, and at most 1 % of today's.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import arguments, report
from benchmarks.drain import SERVICE_IP, flows, service, tor_route
from integration_tests.cluster import TOR_AS, TOR_IP, Cluster, Node
from integration_tests.monitor import stop_all
from integration_tests.netns import NetLab
from integration_tests.peers import Bird2

ENGINES = ("bgpd-bfd", "bird-bfd", "bgpd")
BFD = (100, 100, 3)  # min rx, min tx (ms), multiplier
FAIL = ("add table inet failed; "
        "add chain inet failed in { type filter hook input priority -300; policy drop; }; "
        "add chain inet failed out { type filter hook output priority -300; policy drop; }")


def routes_via(c: Cluster, node: Node) -> bool:
    return f"via {node.ip} " in tor_route(c) + " "


def bird_with_bfd(plain: str) -> str:
    """confd's BIRD 2 with BFD on the ToR's session (Calico Enterprise's shape of it)."""
    rx, tx, multiplier = BFD
    text = plain.replace(f"neighbor {TOR_IP} as {TOR_AS}; ",
                         f"neighbor {TOR_IP} as {TOR_AS}; bfd on; ")
    return text + (f'protocol bfd {{ interface "eth0" {{ min rx interval {rx} ms; '
                   f"min tx interval {tx} ms; idle tx interval 1 s; multiplier {multiplier}; "
                   "}; }\n")


def run(engine: str, workdir: Path, rate: int, window: float) -> dict[str, Any]:
    bird = engine.startswith("bird")
    with NetLab() as lab:
        c = Cluster(lab, workdir, nodes=3, mode="Never", tor=True, tor_peer=False,
                    bird_nodes=3 if bird else 0)
        tor = c.tor
        assert isinstance(tor, Bird2)
        if engine != "bgpd":
            tor.bfd = BFD  # (BFD on each of its sessions)
        plain = tor.config
        tor.config = lambda: plain() + (  # type: ignore[method-assign]
            "protocol kernel { merge paths on; ipv4 { export all; }; }\n")
        for n in c.nodes:
            n.static_routes = [f"{SERVICE_IP}/32"]  # (a BIRD node's, as confd hands it over)
        if bird:
            confd = c.bird_config
            c.bird_config = lambda node: bird_with_bfd(confd(node))  # type: ignore[method-assign]
        manifests = c.manifests

        def with_service() -> list[dict[str, Any]]:
            docs = manifests()
            docs[0]["spec"]["serviceExternalIPs"] = [{"cidr": "192.0.2.0/24"}]
            peer: dict[str, Any] = {"peerIP": TOR_IP, "asNumber": TOR_AS}
            if engine == "bgpd-bfd":
                peer["failureDetectionMode"] = "BFDIfDirectlyConnected"
                rx, tx, multiplier = BFD
                docs.append(c.calico("BFDConfiguration", "default", {"interfaces": [{
                    "matchPattern": "eth*", "minimumRecvInterval": f"{rx}ms",
                    "minimumSendInterval": f"{tx}ms", "idleSendInterval": "1s",
                    "multiplier": multiplier}]}))
            return [*docs, c.calico("BGPPeer", "tor", peer), *service(c.nodes)]

        c.manifests = with_service  # type: ignore[method-assign]
        c.write_resources()
        for n in c.nodes:
            n.ns.ip("addr", "add", f"{SERVICE_IP}/32", "dev", "lo")
        c.start_all()
        failed = c.nodes[2]
        try:
            c.wait(lambda: all(routes_via(c, n) for n in c.nodes), 90,
                   "the ToR routing to all three nodes (ECMP)")
            if engine != "bgpd":
                c.wait(lambda: tor.cli("show", "bfd", "sessions").count(" Up ") == 3, 30,
                       "BFD Up with every node")
            pings = flows(c, tor.ns, rate)
            time.sleep(2.0)  # traffic flowing before anything happens
            failed.ns.run("nft", FAIL)
            start = time.monotonic()
            moved: float | None = None
            while time.monotonic() - start < window:
                if not routes_via(c, failed):
                    moved = time.monotonic() - start
                    break
                time.sleep(0.01)
            time.sleep(1.0 if moved is not None else 0.0)
            sent, received = stop_all(pings)
            return {"engine": engine, "packets_per_s": rate, "sent": sent,
                    "lost": sent - received,
                    "tor_moved_s": round(moved, 3) if moved is not None else f">{window}"}
        finally:
            c.stop_all()


def main() -> None:
    parser = arguments(__doc__, "failover")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=int, default=1000, help="ping packets per second")
    parser.add_argument("--window", type=float, default=300.0,
                        help="seconds watched after the failure, at most")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        for engine in ENGINES:
            subprocess.run(["rm", "-rf", args.workdir], check=False)
            runs.append({"run": i + 1, **run(engine, Path(args.workdir), args.rate,
                                             args.window)})
            print(json.dumps(runs[-1]), flush=True)
    lost = {e: [r["lost"] for r in runs if r["engine"] == e] for e in ENGINES}
    worst, bird, today = max(lost["bgpd-bfd"]), min(lost["bird-bfd"]), min(lost["bgpd"])
    report("failover", {"runs": runs, "lost": lost,
                        "goal_met": worst <= 1.5 * max(bird, 1) and worst <= 0.01 * today},
           save=not args.no_save)


if __name__ == "__main__":
    main()
