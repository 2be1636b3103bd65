"""Restart loss: pod-to-pod traffic while one node's routing engine is restarted.

    python -m benchmarks.restart [--engine bgpd|bird-gr|bird-nogr] [--compare] --json

Two nodes in namespaces with a pod each, routes without encapsulation (IPIP cannot carry
packets on this kernel, see README), a full mesh.  A pod on node 0 pings the pod on node 1
at 100 packets/s (requests need node 0's route to node 1's block, replies node 1's route
back) while node 1's engine is restarted twice: ``graceful`` (SIGTERM, then started again)
and ``crash`` (SIGKILL, then started again).  Counted for each: packets lost, and the
``proto bird`` routes deleted from either node's kernel (``ip monitor``), from one second
before the signal until a new session is up, both blocks are routed and three seconds have
passed.

Engines: ``bgpd`` on both nodes; ``bird-gr``, both nodes BIRD 2 as Calico configures it
(graceful restart on, kernel routes ``persist``) and restarted as calico-node starts it
(``bird -R``); ``bird-nogr``, the same with graceful restart off and a plain start.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import report
from integration_tests.cluster import Cluster, Node
from integration_tests.monitor import Pinger, RouteMonitor
from integration_tests.netns import NetLab

ENGINES = ("bgpd", "bird-gr", "bird-nogr")
SOAK = 3.0


def sessions(node: Node) -> set[str]:
    """The node's established BGP connections (addresses and ports: a new one after a
    restart differs in its ports)."""
    out = node.ns.run("ss", "-Htn", "state", "established", "( sport = :179 or dport = :179 )")
    return {" ".join(line.split()[2:4]) for line in out.splitlines()}


def restart(c: Cluster, node: Node, engine: str, sig: int) -> None:
    if engine == "bgpd":
        c.signal(node, sig)
        c.start(node)
        return
    assert node.bird is not None
    if sig == signal.SIGKILL:
        node.bird.kill()
    else:
        node.bird.stop()
    node.bird.start(graceful=engine == "bird-gr")


def run(engine: str, workdir: Path, rate: int = 100) -> dict[str, Any]:
    bird = engine != "bgpd"
    out: dict[str, Any] = {"engine": engine, "packets_per_s": rate}
    with NetLab() as lab:
        c = Cluster(lab, workdir, nodes=2, mode="Never", pods=1, tor=False,
                    bird_nodes=2 if bird else 0, bird_graceful=engine == "bird-gr")
        c.start_all()
        try:
            n0, n1 = c.nodes
            c.wait(lambda: n1.block in " ".join(n0.routes())
                   and n0.block in " ".join(n1.routes()), 60, "both blocks routed")
            c.wait(lambda: c.ping(n0.pods[0], n1.pod_ips[0]), 30, "the pods reach each other")
            for kind, sig in (("graceful", signal.SIGTERM), ("crash", signal.SIGKILL)):
                monitors = [RouteMonitor(n.ns.name) for n in c.nodes]
                ping = Pinger(n0.pods[0].name, n1.pod_ips[0], interval=1 / rate)
                time.sleep(1.0)
                before = sessions(n1)
                start = time.monotonic()
                restart(c, n1, engine, sig)
                c.wait(lambda old=before: bool(sessions(n1) - old), 120, "a new session")
                back = time.monotonic() - start
                c.wait(lambda: n0.block in " ".join(n1.routes())
                       and n1.block in " ".join(n0.routes()), 120, "both blocks routed again")
                routed = time.monotonic() - start
                time.sleep(SOAK)
                sent, received = ping.stop()
                for m in monitors:
                    m.stop()
                out[kind] = {"sent": sent, "lost": sent - received,
                             "owned_routes_deleted": sum(len(m.deleted_owned())
                                                         for m in monitors),
                             "session_back_s": round(back, 2),
                             "routes_back_s": round(routed, 2)}
        finally:
            c.stop_all()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=ENGINES, default="bgpd")
    parser.add_argument("--compare", action="store_true", help="run all three engines")
    parser.add_argument("--rate", type=int, default=100, help="ping packets per second")
    parser.add_argument("--workdir", default="/tmp/bgpd-bench-restart")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    runs = []
    for engine in (ENGINES if args.compare else [args.engine]):
        subprocess.run(["rm", "-rf", args.workdir], check=False)
        runs.append(run(engine, Path(args.workdir), args.rate))
        print(json.dumps(runs[-1]), flush=True)
    report("restart", runs[0] if len(runs) == 1 else {"runs": runs}, save=not args.no_save)


if __name__ == "__main__":
    main()
