"""Reflector outage: every route reflector gone for minutes while the nodes and pods live on.

    python -m benchmarks.outage [--outage 600] [--restart-time 120] [--no-save]

Four nodes with a pod each, routes without encapsulation, no mesh: every node a client of two
BIRD 2 route reflectors (as calico/routereflector runs them: graceful restart on, its time
``--restart-time``).  node-0 and node-1 run BIRD 2 as confd configures a node peering with
reflectors (graceful restart on), node-2 and node-3 bgpd.  Every pod pings every other pod
every 20 ms.  Both reflectors are killed (power off: no Cease) and stay down ``--outage``
seconds; then node-3's Node object is deleted from the datastore and the time until node-2
drops node-3's block is measured.

Printed: packets lost per pair kind (bgpd to bgpd, and any pair with a BIRD node), the routes
each node holds to the other blocks at the end of the outage, and the deletion's time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import arguments, report
from integration_tests.cluster import NODE_AS, Cluster, Node
from integration_tests.monitor import Pinger
from integration_tests.netns import NetLab
from integration_tests.peers import Bird2

REFLECTORS = ("198.51.100.201", "198.51.100.202")


def reflector(c: Cluster, address: str, restart_time: int, workdir: Path) -> Bird2:
    ns = c._attach(f"rr{address[-1]}", f"{address}/24", "br0")
    rr = Bird2(ns, workdir, router_id=address, asn=NODE_AS, neighbors=[])
    rr.config = lambda: "".join(  # type: ignore[method-assign]
        [f"router id {address};\nprotocol device {{}}\n"]
        + [f"protocol bgp n{i} {{ local {address} as {NODE_AS}; neighbor {n.ip} as {NODE_AS}; "
           f"rr client; rr cluster id 244.0.0.1; graceful restart on; "
           f"graceful restart time {restart_time}; connect retry time 1; "
           "ipv4 { import all; export all; add paths on; }; }\n"
           for i, n in enumerate(c.nodes)])
    return rr


def bird_client(confd: Callable[[Node], str], node: Node) -> str:
    """BIRD 2 on a node as confd renders it with the mesh off and a BGPPeer per reflector
    (its block a blackhole; learned blocks to the kernel; one ``Global_<ip>`` protocol per
    peerIP BGPPeer, graceful restart on from confd's ``bgp_template``:
    confd/tests/compiled_templates/explicit_peering/global/bird.cfg):
    :meth:`Cluster.bird_config` with the mesh sessions replaced."""
    lines = [line for line in confd(node).splitlines()
             if not line.startswith("protocol bgp Mesh_")]
    for address in REFLECTORS:
        lines.append(
            f"protocol bgp Global_{address.replace('.', '_')} {{ local {node.ip} as {NODE_AS}; "
            f"neighbor {address} as {NODE_AS}; graceful restart on; connect retry time 1; "
            "ipv4 { import all; export filter { if proto = \"blocks\" then accept; reject; }; "
            "add paths on; }; }")
    return "\n".join(lines) + "\n"


def other_blocks(c: Cluster, n: Node) -> int:
    return sum(o.block in " ".join(n.routes()) for o in c.nodes if o is not n)


def run(outage: float, restart_time: int, workdir: Path) -> dict[str, Any]:
    with NetLab() as lab:
        c = Cluster(lab, workdir, nodes=4, mode="Never", pods=1, tor=False, bird_nodes=2)
        rrs = [reflector(c, a, restart_time, workdir / f"rr{i}") for i, a in enumerate(REFLECTORS)]
        confd = c.bird_config
        c.bird_config = lambda node: bird_client(confd, node)  # type: ignore[method-assign]
        manifests = c.manifests
        deleted: set[str] = set()

        def no_mesh() -> list[dict[str, Any]]:
            docs = [d for d in manifests() if not (d["kind"] == "Node"
                                                   and d["metadata"]["name"] in deleted)]
            docs[0]["spec"]["nodeToNodeMeshEnabled"] = False
            return docs + [c.calico("BGPPeer", f"rr{i}", {"peerIP": a, "asNumber": NODE_AS})
                           for i, a in enumerate(REFLECTORS)]

        c.manifests = no_mesh  # type: ignore[method-assign]
        c.write_resources()
        for rr in rrs:
            rr.start()
        c.start_all()
        try:
            c.wait(c.blocks_everywhere, 90, "every block everywhere, through the reflectors")
            pings = {(a.name, b.name): Pinger(a.pods[0].name, b.pod_ips[0], interval=0.02)
                     for a in c.nodes for b in c.nodes if a is not b}
            time.sleep(1.0)
            for rr in rrs:
                rr.kill()
            start = time.monotonic()
            held_at_restart_time: dict[str, int] = {}
            while time.monotonic() - start < outage:
                if not held_at_restart_time and time.monotonic() - start > restart_time + 5:
                    held_at_restart_time = {n.name: other_blocks(c, n) for n in c.nodes}
                time.sleep(1.0)
            held = {n.name: other_blocks(c, n) for n in c.nodes}
            lost: dict[str, list[int]] = {"bgpd-bgpd": [0, 0], "with a BIRD node": [0, 0]}
            speaker = {n.name: n.speaker for n in c.nodes}
            for (a, b), ping in pings.items():
                sent, received = ping.stop()
                kind = ("bgpd-bgpd" if speaker[a] == speaker[b] == "bgpd"
                        else "with a BIRD node")
                lost[kind][0] += sent - received
                lost[kind][1] += sent
            n2, n3 = c.nodes[2], c.nodes[3]
            deleted.add(n3.name)
            c.write_resources()
            assert n2.proc is not None
            removed_at = time.monotonic()
            n2.proc.send_signal(signal.SIGHUP)
            c.wait(lambda: n3.block not in " ".join(n2.routes()), 30,
                   "node-3's block gone from node-2")
            gone = time.monotonic() - removed_at
            return {"outage_s": outage, "restart_time_s": restart_time,
                    "lost": {k: {"lost": v[0], "sent": v[1]} for k, v in lost.items()},
                    "other_blocks_held_after_restart_time": held_at_restart_time,
                    "other_blocks_held_at_end": held,
                    "deleted_node_route_gone_s": round(gone, 3)}
        finally:
            c.stop_all()
            for rr in rrs:
                rr.kill()


def main() -> None:
    parser = arguments(__doc__, "outage")
    parser.add_argument("--outage", type=float, default=600.0, help="seconds")
    parser.add_argument("--restart-time", type=int, default=120,
                        help="the reflectors' graceful-restart time (s)")
    args = parser.parse_args()
    subprocess.run(["rm", "-rf", args.workdir], check=False)
    result = run(args.outage, args.restart_time, Path(args.workdir))
    print(json.dumps(result), flush=True)
    report("outage", result, save=not args.no_save)


if __name__ == "__main__":
    main()
