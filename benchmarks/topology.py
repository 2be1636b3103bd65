"""Operations on a larger cluster with two route reflectors, under traffic.

    python -m benchmarks.topology [--nodes 30] [--round-trips 3] [--cold-starts 5] [--no-save]

``--nodes`` bgpd nodes (30), a pod each, routes without encapsulation; each pod pings the
next node's pod every 20 ms (a ring: every node's block is needed by the flow towards it,
and by that flow's replies), and every node's ``proto bird`` routes are watched.  node-0 and
node-1 are the reflectors (one cluster ID, as the docs' example has it).

``round trip``: from the full mesh to the reflectors and back, in Calico's documented order
(:mod:`integration_tests.topology`); each step waits for every node's sessions to be what it
leads to.  After each way, every node must have exactly the sessions the topology wants,
established: to both reflectors (a reflector: to every other node) or to every other node.

``cold start``: on the reflectors, every bgpd stopped by SIGTERM at once, then every one
started at once (a restart of the whole DaemonSet, or of the machines' daemons); counted
until every node has its sessions back, every block and its restart done.

Printed for each: pings lost (of sent), ``proto bird`` routes deleted on each node (none
is the goal), seconds taken.
"""

from __future__ import annotations

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import arguments, report
from integration_tests.cluster import Cluster, Node
from integration_tests.monitor import Pinger, stop_all
from integration_tests.netns import NetLab
from integration_tests.test_daemon import RouteDeletions
from integration_tests.topology import Topology, sessions


class Traffic:
    """The ring of pings and a route monitor on every node, from start to :meth:`stop`."""

    def __init__(self, c: Cluster) -> None:
        nodes = c.nodes
        self.pings = [Pinger(a.pods[0].name, b.pod_ips[0], interval=0.02)
                      for a, b in zip(nodes, nodes[1:] + nodes[:1], strict=True)]
        self.monitors = {n.name: RouteDeletions(n) for n in nodes}

    def stop(self) -> dict[str, Any]:
        sent, received = stop_all(self.pings)
        deleted = {name: m.stop() for name, m in self.monitors.items()}
        return {"sent": sent, "lost": sent - received,
                "routes_deleted": {k: v for k, v in deleted.items() if v}}


def wanted(c: Cluster, reflectors: list[Node], mesh: bool) -> dict[str, dict[str, str]]:
    """Each node's sessions by peer node, with the peering's name prefix, as the topology
    wants them: the full mesh, or every node on the reflectors."""
    out: dict[str, dict[str, str]] = {}
    for n in c.nodes:
        others = [o for o in c.nodes if o is not n]
        if mesh:
            out[n.name] = {o.name: "Mesh" for o in others}
        else:
            out[n.name] = {o.name: "Node" for o in others
                           if n in reflectors or o in reflectors}
    return out


def now(c: Cluster) -> dict[str, dict[str, str]]:
    """Each node's established sessions (one held for a handover: "held")."""
    return {n.name: {peer: "held" if held else kind
                     for peer, (kind, held) in sessions(c, n).items()} for n in c.nodes}


def round_trip(c: Cluster, topology: Topology, timeout: float) -> dict[str, Any]:
    rr = topology.reflectors
    clients = [n for n in c.nodes if n not in rr]
    mesh, on_rr = wanted(c, rr, True), wanted(c, rr, False)
    took: dict[str, float] = {}
    traffic = Traffic(c)
    time.sleep(1)

    def state(n: Node) -> dict[str, tuple[str, bool]]:
        return sessions(c, n)

    start = time.monotonic()
    took["cluster ID"] = topology.step("the reflectors' mesh sessions held", lambda: all(
        set(state(r).values()) == {("Mesh", True)} for r in rr), timeout, cluster_id=True)
    topology.step("labelled", lambda: True, timeout, labelled=True)
    took["BGPPeer"] = topology.step("the reflectors' sessions", lambda: all(
        {p: k for p, (k, _) in state(n).items() if p in {r.name for r in rr}}
        == {r.name: "Node" for r in rr if r is not n} for n in c.nodes)
        and c.blocks_everywhere(), timeout, peering=True)
    took["mesh off"] = topology.step("every node on the reflectors alone",
                                     lambda: now(c) == on_rr, timeout, mesh=False)
    forward_ok = now(c) == on_rr
    took["mesh on"] = topology.step("the mesh back between the clients", lambda: all(
        len(state(n)) == len(c.nodes) - 1 for n in clients), timeout, mesh=True)
    took["BGPPeer deleted"] = topology.step("the reflectors' sessions held", lambda: all(
        all(held for _, held in state(r).values()) for r in rr), timeout, peering=False)
    topology.step("unlabelled", lambda: True, timeout, labelled=False)
    took["cluster ID removed"] = topology.step("the full mesh", lambda: now(c) == mesh,
                                               timeout, cluster_id=False)
    back_ok = now(c) == mesh
    c.wait(c.blocks_everywhere, timeout, "every block everywhere")
    time.sleep(1)
    return {"seconds": round(time.monotonic() - start, 1),
            "steps_s": {k: round(v, 1) for k, v in took.items()},
            "every_session_on_reflectors": forward_ok, "every_session_back": back_ok,
            **traffic.stop()}


def cold_start(c: Cluster, timeout: float) -> dict[str, Any]:
    traffic = Traffic(c)
    time.sleep(1)
    with ThreadPoolExecutor(len(c.nodes)) as pool:
        list(pool.map(lambda n: c.signal(n, signal.SIGTERM, wait=60), c.nodes))
        start = time.monotonic()
        list(pool.map(c.start, c.nodes))
    want = wanted(c, [c.nodes[0], c.nodes[1]], False)

    def back() -> bool:
        return (now(c) == want and not any(c.status(n)["rib"]["restarting"] for n in c.nodes)
                and c.blocks_everywhere())

    took = c.wait(back, timeout, "every session, block and restart back")
    took = time.monotonic() - start
    time.sleep(2)
    return {"seconds_back": round(took, 1), **traffic.stop()}


def run(nodes: int, round_trips: int, cold_starts: int, workdir: Path,
        timeout: float) -> dict[str, Any]:
    with NetLab() as lab:
        c = Cluster(lab, workdir, nodes=nodes, mode="Never", pods=1, tor=False)
        topology = Topology(c, c.nodes[:2])
        c.write_resources()
        for n in c.nodes:
            c.start(n)
        try:
            c.wait(c.blocks_everywhere, timeout, "the mesh's routes everywhere")
            trips = [round_trip(c, topology, timeout) for _ in range(round_trips)]
            for key, value in (("cluster_id", True), ("labelled", True), ("peering", True)):
                setattr(topology, key, value)
            topology.step("on the reflectors", lambda: now(c) == wanted(
                c, topology.reflectors, False), timeout, mesh=False)
            starts = [cold_start(c, timeout) for _ in range(cold_starts)]
            return {"nodes": nodes, "reflectors": 2, "round_trips": trips,
                    "cold_starts": starts}
        finally:
            c.stop_all()


def main() -> None:
    parser = arguments(__doc__, "topology")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--round-trips", type=int, default=3)
    parser.add_argument("--cold-starts", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds each step or start may take")
    args = parser.parse_args()
    subprocess.run(["rm", "-rf", args.workdir], check=False)
    result = run(args.nodes, args.round_trips, args.cold_starts, Path(args.workdir),
                 args.timeout)
    report("topology", result, save=not args.no_save)


if __name__ == "__main__":
    main()
