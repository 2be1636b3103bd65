"""Propagation latency: a new block on node A until its route is in node C's kernel.

    python -m benchmarks.propagation [--samples 200] [--engine bgpd|bird] [--compare] --json

Three nodes in namespaces (IPIP mode, full mesh).  bgpd: the nodes read the Kubernetes API
test server; each sample creates a BlockAffinity for node A and the clock runs from the
create call to the moment ``ip monitor`` in node C's namespace receives the route from the
kernel — the watch, node A's configuration, its speaker, BGP, node C's RIB and kernel sync,
all of it.  Samples are ``--gap`` apart (isolated changes: bgpd batches a burst of resource
changes into one recomputation per 50 ms).  ``bird``: every node runs BIRD 2 configured as
confd configures it; each sample adds the block to node A's configuration and runs ``birdc
configure`` (what confd does — its own reaction time to the resource is not counted), the
clock running from that command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.common import report
from integration_tests.cluster import Cluster
from integration_tests.kube_cluster import k8s_cluster
from integration_tests.monitor import RouteMonitor
from integration_tests.netns import NetLab


def sample_block(i: int) -> str:
    return f"172.{20 + i // 256}.{i % 256}.0/24"


def is_route_for(cidr: str, line: str) -> bool:
    return line.startswith(cidr + " ")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(c: Cluster, samples: int, add: Any, gap: float) -> list[float]:
    a, dest = c.nodes[0], c.nodes[-1]
    c.wait(c.blocks_everywhere, 90, "every block on every node")
    monitor = RouteMonitor(dest.ns.name)
    time.sleep(0.5)  # ip monitor has subscribed
    latencies = []
    try:
        for i in range(samples):
            cidr = sample_block(i)
            since = len(monitor.events)
            start = time.time()
            add(a, cidr)
            event = monitor.wait_for(partial(is_route_for, cidr), 30, since)
            if event is None:
                raise SystemExit(f"sample {i}: {cidr} never reached {dest.name}'s kernel")
            latencies.append((event[0] - start) * 1000)
            time.sleep(gap)
    finally:
        monitor.stop()
    return latencies


def run(engine: str, samples: int, workdir: Path, gap: float = 0.2) -> dict[str, Any]:
    with NetLab() as lab:
        if engine == "bgpd":
            with k8s_cluster(lab, workdir, nodes=3, mode="Always", tor=False) as (c, server):
                def add(node: Any, cidr: str) -> None:
                    server.put(c.affinity(f"{node.name}-{cidr.split('/')[0]}", node.name, cidr))

                latencies = measure(c, samples, add, gap)
        else:
            c = Cluster(lab, workdir, nodes=3, mode="Always", tor=False, bird_nodes=3)
            c.start_all()
            try:
                def add(node: Any, cidr: str) -> None:
                    node.extra_blocks.append(cidr)
                    node.bird.reconfigure()  # what confd does after a change

                latencies = measure(c, samples, add, gap)
            finally:
                c.stop_all()
    return {"engine": engine, "samples": len(latencies), "gap_s": gap,
            "p50_ms": round(percentile(latencies, 0.5), 1),
            "p90_ms": round(percentile(latencies, 0.9), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1),
            "mean_ms": round(sum(latencies) / len(latencies), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--engine", choices=["bgpd", "bird"], default="bgpd")
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--compare", action="store_true", help="run bgpd and BIRD 2 nodes")
    parser.add_argument("--workdir", default="/tmp/bgpd-bench-propagation")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    runs = []
    for engine in (["bgpd", "bird"] if args.compare else [args.engine]):
        subprocess.run(["rm", "-rf", args.workdir], check=False)
        runs.append(run(engine, args.samples, Path(args.workdir), args.gap))
        print(json.dumps(runs[-1]), flush=True)
    if len(runs) == 1:
        report("propagation", runs[0], save=not args.no_save)
        return
    ratios = {k: round(runs[0][k] / runs[1][k], 2) for k in ("p50_ms", "p99_ms")
              if runs[1][k]}
    report("propagation", {"runs": runs, "bgpd_vs_bird": ratios}, save=not args.no_save)


if __name__ == "__main__":
    main()
