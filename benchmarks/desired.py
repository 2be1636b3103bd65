"""Desired-configuration recomputation in a large store.

    python -m benchmarks.desired --nodes 600 --peers 50 --json

A store of ``--nodes`` nodes (the seed cluster: /24 blocks from 172.17.0.0/12, full mesh),
``--peers`` BGPPeers (global, node-scoped and selector-based) and their BGPFilters; then
single-object changes — a BGPPeer edit, a node joining, a block moving, a node heartbeat —
each followed by what the controller does (apply to the store; recompute when the store
says something changed).  Reports the recompute time per change (p50/p99), how many changes
per second the whole path absorbs, and that heartbeats cause no recomputation.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from benchmarks.common import report
from node_controller.desired import desired_config
from node_controller.store import Store


def node(i: int, heartbeat: int = 0) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{i}", "labels": {"rack": f"r{i % 20}"},
                         "annotations": {
                             "projectcalico.org/IPv4Address": f"10.{10 + i // 250}.{i % 250}.10/16"
                         }},
            "status": {"conditions": [{"type": "Ready", "lastHeartbeatTime": str(heartbeat)}]}}


def affinity(i: int, owner: int) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
            "metadata": {"name": f"block-{i}"},
            "spec": {"node": f"node-{owner}", "cidr": f"172.{17 + i // 256}.{i % 256}.0/24",
                     "state": "confirmed", "deleted": "false"}}


def peer(i: int, asn: int = 65000) -> dict[str, Any]:
    spec: dict[str, Any] = {"peerIP": f"192.0.2.{i % 250}:{1000 + i}", "asNumber": asn,
                            "filters": [f"filter-{i % 5}"]}
    if i % 3 == 1:
        spec["node"] = f"node-{i}"
    elif i % 3 == 2:
        spec["nodeSelector"] = f"rack == 'r{i % 20}'"
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
            "metadata": {"name": f"peer-{i}"}, "spec": spec}


def bgp_filter(i: int) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPFilter",
            "metadata": {"name": f"filter-{i}"},
            "spec": {"importV4": [{"action": "Reject", "cidr": "0.0.0.0/0",
                                   "matchOperator": "Equal"}]}}


def run(nodes: int, peers: int, changes: int, seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    store = Store()
    store.apply({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
                 "metadata": {"name": "pool"},
                 "spec": {"cidr": "172.17.0.0/12", "blockSize": 24, "ipipMode": "Always"}})
    for i in range(nodes):
        store.apply(node(i))
        store.apply(affinity(i, i))
    for i in range(5):
        store.apply(bgp_filter(i))
    for i in range(peers):
        store.apply(peer(i))
    me = "node-1"
    baseline = desired_config(store, me)
    assert len(baseline.peers) >= nodes - 1

    times: list[float] = []
    recomputes = heartbeats = heartbeat_recomputes = 0
    start = time.perf_counter()
    for n in range(changes):
        kind = n % 4
        if kind == 0:
            obj = peer(rnd.randrange(peers), asn=65000 + rnd.randrange(100))
        elif kind == 1:
            obj = node(nodes + n)  # a node joins
        elif kind == 2:
            obj = affinity(rnd.randrange(nodes), rnd.randrange(nodes))
        else:
            obj = node(rnd.randrange(nodes), heartbeat=n)  # status only
            heartbeats += 1
        if store.apply(obj):
            t0 = time.perf_counter()
            desired_config(store, me)
            times.append(time.perf_counter() - t0)
            recomputes += 1
            heartbeat_recomputes += kind == 3
    elapsed = time.perf_counter() - start
    ms = sorted(t * 1000 for t in times)
    return {
        "nodes": nodes, "peers": peers, "changes": changes,
        "recompute_ms_p50": round(statistics.median(ms), 2),
        "recompute_ms_p99": round(ms[int(len(ms) * 0.99) - 1], 2),
        "events_per_s": round(changes / elapsed),
        "recomputes": recomputes, "heartbeats": heartbeats,
        "heartbeat_recomputes": heartbeat_recomputes,
        "mesh_peers": len(baseline.peers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=600)
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--changes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    report("desired", run(args.nodes, args.peers, args.changes, args.seed),
           save=not args.no_save)


if __name__ == "__main__":
    main()
