"""Drain loss: traffic to a Service on two nodes while one of them is taken down for maintenance.

    python -m benchmarks.drain [--runs 5] [--rate 1000] [--tor bird2|frr] [--no-save]

Two nodes in namespaces, each with a ready endpoint of an ``externalTrafficPolicy: Local``
Service whose external IP (192.0.2.7) both announce to a top-of-rack router (BIRD 2, or FRR
with zebra: ``--tor frr``).  The ToR installs its best path in its kernel (FRR: both, equal
cost) and honours RFC 8326 as docs/operating.md configures it (a route received with
GRACEFUL_SHUTDOWN gets LOCAL_PREF 0); BIRD prefers node-0 (the lower router id).
The ToR pings the Service IP ``rate`` times a second in 8 flows (8 source addresses, which an
ECMP ToR spreads over the nodes; each node answers for the Service IP: the address is on its
loopback, where kube-proxy would take the packet to the endpoint), while node-0 is taken down
as an operator would before a reboot:

* ``bgpd``: node-0 cordoned (``spec.unschedulable``), the drain waited for (the ToR's kernel
  route moves to node-1: what ``bgpd status`` lets an operator see), bgpd stopped (SIGTERM),
  node-0's link taken down at once (the reboot going on);
* ``bird`` (Calico today): node-0 runs BIRD 2 as confd configures it, the Service address one
  of its static routes; the cordon changes nothing for BIRD and there is nothing to wait
  for: BIRD is stopped by SIGTERM (as runit stops calico-node's BIRD: it sends Cease, then
  exits), then the link goes down at once.

Each is stopped both ways: ``term`` as above, ``kill`` (SIGKILL: a node that dies or is cut
off without a word, where graceful restart has the ToR keep the node's routes).  Counted:
packets lost from the cordon until a second after the ToR routes to node-1 (a lower bound
when the node is gone for long: ping sends less while its probes go unanswered), when the
ToR moved and when the link went down (from the cordon), and for how long the ToR sent the
traffic to the node that was gone (``to_dead_node_s``; ">3.0": still after 3 s, as it will
be until the graceful-restart time runs out).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import arguments, report
from integration_tests.cluster import Cluster, Node
from integration_tests.monitor import Pinger, stop_all
from integration_tests.netns import Namespace, NetLab
from integration_tests.peers import FRR_BGPD, Bird2, Frr
from integration_tests.waiting import wait_for

FRR_ZEBRA = "/usr/lib/frr/zebra"

SERVICE_IP = "192.0.2.7"
ENGINES = ("bgpd", "bird")
STOPS = ("term", "kill")
WINDOW = 3.0  # seconds watched after the link went down
FLOWS = 8  # ping flows (source addresses) sharing the rate
# the ToR's import, as RFC 8326 section 4 asks a receiver to be configured
HONOUR_GSHUT = "import filter { if (65535, 0) ~ bgp_community then bgp_local_pref = 0; accept; };"


def service(nodes: list[Node]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                  "ipFamilies": ["IPv4"], "externalIPs": [SERVICE_IP],
                  "externalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30080}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-x1", "namespace": "shop",
                      "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"port": 80}],
         "endpoints": [{"addresses": [f"172.17.{n.index + 1}.10"], "nodeName": n.name,
                        "conditions": {"ready": True}} for n in nodes]},
    ]


def flows(c: Cluster, tor: Namespace, rate: int) -> list[Pinger]:
    """The ToR pinging the Service ``rate`` times a second in ``FLOWS`` flows, from as many
    source addresses (an ECMP ToR hashes them over the nodes), once the Service answers."""
    sources = [f"198.51.100.{50 + i}" for i in range(FLOWS)]
    for address in sources:
        tor.ip("addr", "add", f"{address}/24", "dev", "eth0")
    c.wait(lambda: c.ping(tor, SERVICE_IP), 10, "the Service answering")
    return [Pinger(tor.name, SERVICE_IP, interval=FLOWS / rate, source=a) for a in sources]


def tor_route(c: Cluster) -> str:
    assert c.tor is not None
    return " ".join(c.tor.ns.run("ip", "route", "show", f"{SERVICE_IP}/32").split())


def only(c: Cluster, node: Node) -> bool:
    """The ToR's kernel sends the Service's traffic to ``node`` alone (an FRR ToR spreads it
    over equal paths: every path but one must be gone)."""
    route = tor_route(c)
    return all((f"via {n.ip} " in route + " ") == (n is node) for n in c.nodes)


class FrrWithZebra(Frr):
    """FRR as a forwarding ToR: zebra beside bgpd, installing the best paths (ECMP) in the
    namespace's kernel."""

    def start(self) -> None:
        conf = self.workdir / "frr.conf"
        conf.write_text(self.config())
        shutil.chown(self.workdir, "frr", "frr")
        zserv = str(self.workdir / "zserv.api")
        common = ["--vty_socket", str(self.workdir), "-P", "0", "-z", zserv]
        # zebra as FRR's user (its vty group is compiled in), keeping what it needs of root's
        self.ns.run(FRR_ZEBRA, "-d", "-f", "/dev/null", "-i", str(self.workdir / "zebra.pid"),
                    "-u", "frr", "-g", "frr", *common)
        wait_for(Path(zserv).exists, 10, "zebra's socket")
        self.ns.run(FRR_BGPD, "-d", "-S", "-f", str(conf), "-i", str(self.workdir / "pid"),
                    "-u", "root", "-g", "root", *common)
        wait_for((self.workdir / "bgpd.vty").exists, 10, "FRR bgpd's vty socket")

    def stop(self) -> None:
        super().stop()
        pid = self.workdir / "zebra.pid"
        if pid.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid.read_text()), signal.SIGKILL)


def honour_gshut_frr(plain: str, nodes: list[Node]) -> str:
    """docs/operating.md's FRR import policy, on every node's session."""
    lines = plain.splitlines()
    lines[1:1] = ["bgp community-list standard GSHUT permit 65535:0",
                  "route-map FROM-NODES permit 10", " match community GSHUT",
                  " set local-preference 0", "route-map FROM-NODES permit 20"]
    at = lines.index(" address-family ipv4 unicast") + 1
    lines[at:at] = [f"  neighbor {n.ip} route-map FROM-NODES in" for n in nodes]
    return "\n".join(lines) + "\n"


def run(engine: str, stop: str, workdir: Path, rate: int, tor_kind: str = "bird2"
        ) -> dict[str, Any]:
    with NetLab() as lab:
        c = Cluster(lab, workdir, nodes=2, mode="Never", tor=tor_kind,
                    bird_nodes=1 if engine == "bird" else 0)
        n0, n1 = c.nodes
        n0.static_routes = [f"{SERVICE_IP}/32"]  # (a BIRD node's, as confd hands it over)
        tor = c.tor
        if tor_kind == "frr":
            assert isinstance(tor, Frr)
            tor = c.tor = FrrWithZebra(tor.ns, tor.workdir, router_id=tor.router_id,
                                       asn=tor.asn, neighbors=tor.neighbors)
            frr_plain = tor.config
            tor.config = lambda: honour_gshut_frr(frr_plain(), c.nodes)  # type: ignore[method-assign]
        else:
            assert isinstance(tor, Bird2)
            plain = tor.config
            tor.config = lambda: plain().replace(  # type: ignore[method-assign]
                "import all;", HONOUR_GSHUT) + "protocol kernel { ipv4 { export all; }; }\n"
        manifests, node_manifests = c.manifests, c.node_manifests
        cordoned = {"on": False}

        def with_service() -> list[dict[str, Any]]:
            docs = manifests()
            docs[0]["spec"]["serviceExternalIPs"] = [{"cidr": "192.0.2.0/24"}]
            return docs + service(c.nodes)

        def with_cordon(n: Node) -> list[dict[str, Any]]:
            docs = node_manifests(n)
            if n is n0 and cordoned["on"]:
                docs[0]["spec"] = {"unschedulable": True}
            return docs

        c.manifests = with_service  # type: ignore[method-assign]
        c.node_manifests = with_cordon  # type: ignore[method-assign]
        c.write_resources()
        for n in c.nodes:
            n.ns.ip("addr", "add", f"{SERVICE_IP}/32", "dev", "lo")
        c.start_all()
        try:
            c.wait(lambda: f"via {n0.ip} " in tor_route(c) + " ", 60, "the ToR routing to node-0")
            c.wait(lambda: f"{SERVICE_IP}/32" in tor.routes_from(n1.ip), 30,
                   "node-1's announcement at the ToR")
            pings = flows(c, tor.ns, rate)
            time.sleep(1.0)  # traffic flowing before anything happens
            start = time.monotonic()
            cordoned["on"] = True
            c.write_resources()
            if engine == "bgpd":
                assert n0.proc is not None
                n0.proc.send_signal(signal.SIGHUP)
                c.wait(lambda: only(c, n1), 30, "the drain: the ToR on node-1 alone")
                c.signal(n0, signal.SIGTERM if stop == "term" else signal.SIGKILL)
            else:
                assert n0.bird is not None
                # SIGTERM: BIRD sends Cease to its peers and exits; SIGKILL: it sends nothing
                n0.bird.stop() if stop == "term" else n0.bird.kill()
            gone_first = only(c, n1)  # the ToR moved before the link went
            n0.ns.ip("link", "set", "eth0", "down")  # the reboot goes on at once
            down = time.monotonic()
            moved: float | None = down - start if gone_first else None
            while moved is None and time.monotonic() - down < WINDOW:
                if only(c, n1):
                    moved = time.monotonic() - start
                    break
                time.sleep(0.01)
            time.sleep(1.0 if moved is not None else 0.0)
            sent, received = stop_all(pings)
            after = down - start
            return {"engine": engine, "stop": stop, "tor": tor_kind,
                    "packets_per_s": rate, "sent": sent,
                    "lost": sent - received,
                    "tor_moved_s": round(moved, 3) if moved is not None else None,
                    "link_down_s": round(after, 3),
                    # how long the ToR sent the traffic to a node that was gone
                    "to_dead_node_s": round(max(0.0, moved - after), 3)
                    if moved is not None else f">{WINDOW}"}
        finally:
            c.stop_all()


def main() -> None:
    parser = arguments(__doc__, "drain")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=int, default=1000, help="ping packets per second")
    parser.add_argument("--tor", choices=("bird2", "frr"), default="bird2",
                        help="the ToR: BIRD 2, or FRR with zebra")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        for engine in ENGINES:
            for stop in STOPS:
                subprocess.run(["rm", "-rf", args.workdir], check=False)
                runs.append({"run": i + 1, **run(engine, stop, Path(args.workdir), args.rate,
                                                 args.tor)})
                print(json.dumps(runs[-1]), flush=True)
    lost = {f"{e} {s}": [r["lost"] for r in runs if (r["engine"], r["stop"]) == (e, s)]
            for e in ENGINES for s in STOPS}
    report("drain", {"runs": runs, "lost": lost,
                     "goal_met": all(x == 0 for k, v in lost.items() if k.startswith("bgpd")
                                     for x in v)}, save=not args.no_save)


if __name__ == "__main__":
    main()
