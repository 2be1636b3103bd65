"""Service advertisement under endpoint churn, as a top-of-rack router sees it.

    python -m benchmarks.services [--services 1000] [--endpoints 3] [--rate 50]
                                  [--seconds 30] [--nodes 4] --json

``--nodes`` bgpd nodes in namespaces read the Kubernetes API test server and peer with a BIRD
2 top-of-rack router that programs its kernel with every path (ECMP), so ``ip monitor`` in its
namespace timestamps each change of its table.  The cluster holds ``--services``
``externalTrafficPolicy: Local`` Services (cluster IPs in ``serviceClusterIPs``), each with
one EndpointSlice of ``--endpoints`` ready endpoints placed on random nodes: each Service's
``/32`` is due at the ToR from exactly the nodes hosting one of its endpoints.  After the
initial load has converged (every ``/32`` with its next hops), each node's daemons are
measured idle for ``--seconds``, then ``--rate`` changes a second for ``--seconds``: an
endpoint of a random Service moves to another node.  For each change that alters a
Service's set of nodes, the propagation is the time from the EndpointSlice's update in the
API to the ToR's kernel holding exactly the new set of next hops, and the transition the
time between the first and the last change of that route on the way (an intermediate state:
both nodes or neither); a change overtaken by the next change of the same Service is not
sampled.  Then the churn stops and the ToR must hold every Service exactly as placed.  CPU:
of every node's daemon, ExaBGP and bridge, as a share of one core per node, idle and under
churn (the baseline of the same run).
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import report
from benchmarks.dut import cpu_seconds, process_tree, role_of
from benchmarks.propagation import percentile
from integration_tests.cluster import Cluster
from integration_tests.kube_cluster import k8s_cluster
from integration_tests.kube_server import KubeServer
from integration_tests.monitor import RouteMonitor
from integration_tests.netns import NetLab
from integration_tests.peers import ROUTERS, Bird2

SERVICE_RANGE = "10.96.0.0/12"


class KernelTor(Bird2):
    """The ToR, programming every equal path into its kernel: its table, timestamped."""

    kind = "bird2-kernel"

    def config(self) -> str:
        return (super().config()
                + "protocol kernel { ipv4 { export all; }; merge paths on; }\n")


ROUTERS[KernelTor.kind] = KernelTor


def cluster_ip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def service(i: int) -> dict[str, Any]:
    ip = cluster_ip(i)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"svc-{i}", "namespace": "bench"},
            "spec": {"type": "NodePort", "clusterIP": ip, "clusterIPs": [ip],
                     "ipFamilies": ["IPv4"], "externalTrafficPolicy": "Local",
                     "ports": [{"port": 80}]}}


def endpoint_slice(i: int, nodes: list[str]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"svc-{i}-x", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"172.30.{i // 250}.{k}"], "nodeName": node,
                           "conditions": {"ready": True}} for k, node in enumerate(nodes)]}


class TorTable:
    """The ToR kernel's next hops per prefix, from ``ip -o monitor route`` events."""

    def __init__(self, monitor: RouteMonitor) -> None:
        self.monitor = monitor
        self.read = 0
        self.hops: dict[str, frozenset[str]] = {}
        self.history: dict[str, list[tuple[float, frozenset[str]]]] = {}

    def update(self) -> None:
        events = self.monitor.events[self.read:]
        self.read += len(events)
        for when, line in events:
            deleted = line.startswith("Deleted ")
            words = line.split()
            if not words:
                continue
            prefix = words[1] if deleted else words[0]
            if "/" not in prefix:
                prefix += "/32"
            hops = frozenset() if deleted else frozenset(re.findall(r"via (\S+)", line))
            self.hops[prefix] = hops
            self.history.setdefault(prefix, []).append((when, hops))


def wait_exact(table: TorTable, expected: dict[str, frozenset[str]], timeout: float) -> float:
    start = time.monotonic()
    while True:
        table.update()
        wrong = [p for p, hops in expected.items() if table.hops.get(p, frozenset()) != hops]
        if not wrong:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            p = wrong[0]
            raise SystemExit(f"{len(wrong)} Services wrong at the ToR after {timeout:g} s, "
                             f"e.g. {p}: {sorted(table.hops.get(p, ()))} instead of "
                             f"{sorted(expected[p])}")
        time.sleep(0.1)


def daemons_cpu(c: Cluster) -> dict[str, float]:
    """CPU seconds of every node's processes, by role (daemon, exabgp, bridge)."""
    total: dict[str, float] = {}
    for n in c.nodes:
        assert n.proc is not None
        for pid in process_tree(n.proc.pid):
            role = role_of(pid)
            total[role] = total.get(role, 0.0) + cpu_seconds([pid])
    return total


def spent(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before.get(role, 0.0) for role in after}


def run(services: int, endpoints: int, rate: float, seconds: float, nodes: int,
        workdir: Path, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    with NetLab() as lab, k8s_cluster(lab, workdir, nodes=nodes, mode="Never",
                                      tor=KernelTor.kind) as (c, server):
        names = [n.name for n in c.nodes]
        ip_of = {n.name: n.ip for n in c.nodes}
        tor = c.tor
        assert tor is not None
        c.wait(lambda: all(tor.established(n.ip) for n in c.nodes), 60, "ToR sessions")
        monitor = RouteMonitor(tor.ns.name, oneline=True)
        table = TorTable(monitor)
        try:
            placement = [[rng.choice(names) for _ in range(endpoints)] for _ in range(services)]

            def expected(i: int) -> frozenset[str]:
                return frozenset(ip_of[n] for n in placement[i])

            load_start = time.monotonic()
            put_objects(server, c, placement)
            due = {f"{cluster_ip(i)}/32": expected(i) for i in range(services)}
            wait_exact(table, due, 120)
            load_s = time.monotonic() - load_start
            time.sleep(1)
            start_cpu = daemons_cpu(c)
            time.sleep(seconds)
            idle_end = daemons_cpu(c)
            changes = churn(server, placement, rate, seconds, rng, names)
            idle, busy = spent(idle_end, start_cpu), spent(daemons_cpu(c), idle_end)
            idle_cpu, churn_cpu = sum(idle.values()), sum(busy.values())
            due = {f"{cluster_ip(i)}/32": expected(i) for i in range(services)}
            settle_s = wait_exact(table, due, 60)
            time.sleep(1)
            table.update()
            latencies, transitions, overtaken = samples(changes, table, ip_of)
        finally:
            monitor.stop()
    share = 100 / (seconds * nodes)
    return {
        "services": services, "endpoints": services * endpoints, "nodes": nodes,
        "rate_per_s": rate, "seconds": seconds, "initial_load_s": round(load_s, 2),
        "changes": len(changes),
        "sampled": len(latencies), "overtaken": overtaken,
        "propagation_p50_ms": _ms(latencies, 0.5), "propagation_p99_ms": _ms(latencies, 0.99),
        "propagation_max_ms": _ms(latencies, 1.0), "transition_p99_ms": _ms(transitions, 0.99),
        "transition_max_ms": _ms(transitions, 1.0),
        "exact_after_churn": True, "settled_after_churn_s": round(settle_s, 2),
        "daemon_cpu_idle_pct_per_node": round(idle_cpu * share, 2),
        "daemon_cpu_churn_pct_per_node": round(churn_cpu * share, 2),
        "churn_cpu_pct_per_node_by_process": {role: round(v * share, 2)
                                              for role, v in sorted(busy.items())},
        "churn_vs_idle_cpu": round(churn_cpu / idle_cpu, 1) if idle_cpu else None,
    }


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 1) if values else None


def put_objects(server: KubeServer, c: Cluster, placement: list[list[str]]) -> None:
    default = c.calico("BGPConfiguration", "default", {
        "asNumber": 64512, "nodeToNodeMeshEnabled": True,
        "serviceClusterIPs": [{"cidr": SERVICE_RANGE}]})
    for i, nodes in enumerate(placement):
        server.put(service(i))
        server.put(endpoint_slice(i, nodes))
    server.put(default)


def churn(server: KubeServer, placement: list[list[str]], rate: float, seconds: float,
          rng: random.Random, names: list[str]
          ) -> list[tuple[float, int, frozenset[str], frozenset[str]]]:
    """Move endpoints at ``rate`` a second: (Unix time of the update, Service, its nodes
    before, after)."""
    changes = []
    start = time.monotonic()
    for k in range(int(rate * seconds)):
        time.sleep(max(0.0, start + k / rate - time.monotonic()))
        i = rng.randrange(len(placement))
        slot = rng.randrange(len(placement[i]))
        before = frozenset(placement[i])
        placement[i][slot] = rng.choice([n for n in names if n != placement[i][slot]])
        when = time.time()
        server.put(endpoint_slice(i, placement[i]))
        changes.append((when, i, before, frozenset(placement[i])))
    return changes


def samples(changes: list[tuple[float, int, frozenset[str], frozenset[str]]], table: TorTable,
            ip_of: dict[str, str]) -> tuple[list[float], list[float], int]:
    """Propagation and transition (ms) of each change that altered a Service's nodes, and
    how many were overtaken by the next change of the same Service."""
    latencies, transitions, overtaken = [], [], 0
    next_change: dict[int, float] = {}
    for when, i, before, after in reversed(changes):
        following = next_change.get(i)
        next_change[i] = when
        if before == after:
            continue  # the Service's set of nodes did not change
        hops = frozenset(ip_of[n] for n in after)
        history = [(t, h) for t, h in table.history.get(f"{cluster_ip(i)}/32", []) if t >= when]
        done = next((t for t, h in history if h == hops), None)
        if done is None or (following is not None and done > following):
            overtaken += 1
            continue
        latencies.append((done - when) * 1000)
        transitions.append((done - history[0][0]) * 1000)
    return latencies, transitions, overtaken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=3, help="per Service")
    parser.add_argument("--rate", type=float, default=50, help="endpoint moves a second")
    parser.add_argument("--seconds", type=float, default=30, help="of idle, then of churn")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--workdir", default="/tmp/bgpd-bench-services")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    subprocess.run(["rm", "-rf", args.workdir], check=False)
    result = run(args.services, args.endpoints, args.rate, args.seconds, args.nodes,
                 Path(args.workdir))
    report("services", result, save=not args.no_save)


if __name__ == "__main__":
    main()
