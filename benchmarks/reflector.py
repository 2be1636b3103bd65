"""A Calico route reflector for N clients: bgpd, BIRD 1.6, FRR or GoBGP as the reflector.

    python -m benchmarks.reflector --clients 100[,300,599] --engine bgpd|bird|frr|gobgp [--compare]

The device under test (DUT, 198.18.0.1) is a Calico node that is a route reflector the way
Calico documents it: its Node has a ``RouteReflectorClusterID`` and the label
``route-reflector: "true"``, the node-to-node mesh is off, and one BGPPeer
(``nodeSelector: all()``, ``peerSelector: route-reflector == 'true'``) makes every node peer
with the reflectors — so the reflector peers back with every client, as ``rr client``.  BIRD
1.6 is configured as confd configures a reflector (``rr client; rr cluster id``); FRR with
one peer group of ``route-reflector-client``s, GoBGP with ``route-reflector-client`` on
every neighbour, both passive with the cluster id, as references.  Each client
is its own BIRD 2 process in a second namespace (its own address, ``strict bind``) announcing
its ``/24``.

Reported: ``established_s`` (DUT start → a connection with every client), ``full_s`` (→ every
client holds every client's block and the DUT's, N + 1 routes, read from each client's
control socket), CPU seconds and RSS of the DUT's processes by process at that moment.
``--compare`` runs all four in one invocation and adds ``bgpd_vs`` ratios against each and
against the fastest of the others.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import report
from benchmarks.dut import CALICO_TIMERS, Dut, cpu_seconds, role_of, rounded, rss_mb
from benchmarks.ingest import Profile
from benchmarks.mesh import block, neighbour_room, peer_ip
from integration_tests.netns import Namespace, NetLab, tunl0
from integration_tests.peers import FRR_BGPD
from integration_tests.waiting import wait_for

DUT_IP = "198.18.0.1"
CLUSTER_ID = "198.18.0.1"
DUT_BLOCK = "172.31.255.0/24"
# bgpd with some of its ExaBGP launcher's steps left out: each step measured in the same run
SKIP = {"bgpd-deepcopy": "shared_changes,update_groups", "bgpd-plain": "update_groups"}
REFERENCES = ("frr", "gobgp")


def client_config(i: int) -> str:
    return (f"router id {peer_ip(i)};\nprotocol device {{ scan time 60; }}\n"
            f"protocol static {{ ipv4; route {block(i)} blackhole; }}\n"
            f"protocol bgp reflector {{ local {peer_ip(i)} as 64512; neighbor {DUT_IP} as 64512; "
            "strict bind on; graceful restart on; connect delay time 1; "
            "connect retry time 2; error wait time 1, 10; "
            "ipv4 { import all; export all; }; }\n")


def start_clients(ns: Namespace, workdir: Path, clients: int) -> list[Path]:
    socks = []
    for i in range(clients):
        d = workdir / f"client{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "bird.conf").write_text(client_config(i))
        sock = d / "bird.ctl"
        ns.run("bird", "-c", str(d / "bird.conf"), "-s", str(sock), "-P", str(d / "pid"))
        socks.append(sock)
    return socks


def route_count(sock: Path) -> int:
    """``show route count`` over BIRD's control socket (no birdc process per question)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(b"show route count\n")
        data = b""
        while not any(line[:4] in (b"0000", b"0014") and line[4:5] == b" "
                      for line in data.splitlines()):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode(errors="replace").splitlines():
        words = line[5:].split()
        if len(words) > 2 and words[1] == "of" and words[0].isdigit():
            return int(words[0])
    return 0


def resources(clients: int) -> list[dict[str, Any]]:
    def calico(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "crd.projectcalico.org/v1", "kind": kind,
                "metadata": {"name": name}, "spec": spec}

    docs: list[dict[str, Any]] = [
        calico("BGPConfiguration", "default", {"asNumber": 64512,
                                               "nodeToNodeMeshEnabled": False}),
        calico("IPPool", "p", {"cidr": "172.16.0.0/12", "blockSize": 24, "ipipMode": "Always"}),
        calico("BGPPeer", "peer-with-route-reflectors", {
            "nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"}),
        {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": "dut", "labels": {"route-reflector": "true"},
            "annotations": {"projectcalico.org/IPv4Address": f"{DUT_IP}/16",
                            "projectcalico.org/RouteReflectorClusterID": CLUSTER_ID}}},
        calico("BlockAffinity", "dut", {"node": "dut", "cidr": DUT_BLOCK, "state": "confirmed",
                                        "deleted": "false"}),
    ]
    for i in range(clients):
        docs.append({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": f"n{i}", "annotations": {"projectcalico.org/IPv4Address":
                                             f"{peer_ip(i)}/16"}}})
        docs.append(calico("BlockAffinity", f"n{i}", {"node": f"n{i}", "cidr": block(i),
                                                      "state": "confirmed", "deleted": "false"}))
    return docs


def bird_config(clients: int, version: int) -> str:
    """The DUT as confd configures BIRD 1.6 for a reflector: every client ``rr client``
    with the node's cluster id, reflected routes keep their next hop."""
    assert version == 1, "the reference reflector is BIRD 1.6"
    head = (f"router id {DUT_IP};\nprotocol device {{ scan time 2; }}\n"
            f"protocol static blocks {{ route {DUT_BLOCK} blackhole; }}\n"
            "protocol kernel { learn no; persist; merge paths on; graceful restart on; "
            "scan time 2; import none; export filter { if source = RTS_BGP then accept; "
            'if proto = "blocks" then accept; reject; }; }\n')
    return head + "".join(
        f"protocol bgp Node_{peer_ip(i).replace('.', '_')} {{ local as 64512; "
        f"neighbor {peer_ip(i)} as 64512; source address {DUT_IP}; direct; gateway direct; "
        f"passive on; rr client; rr cluster id {CLUSTER_ID}; graceful restart on; "
        f"{CALICO_TIMERS}import all; export all; }}\n" for i in range(clients))


def frr_config(clients: int) -> str:
    lines = ["frr defaults traditional", "hostname dut", "log stdout warnings",
             "router bgp 64512", f" bgp router-id {DUT_IP}", f" bgp cluster-id {CLUSTER_ID}",
             " no bgp ebgp-requires-policy", " no bgp network import-check",
             " bgp graceful-restart", " neighbor clients peer-group",
             " neighbor clients remote-as 64512", " neighbor clients passive"]
    lines += [f" neighbor {peer_ip(i)} peer-group clients" for i in range(clients)]
    lines += [" address-family ipv4 unicast", f"  network {DUT_BLOCK}",
              "  neighbor clients route-reflector-client", " exit-address-family"]
    return "\n".join(lines) + "\n"


def gobgp_config(clients: int) -> str:
    lines = ["[global.config]", "  as = 64512", f'  router-id = "{DUT_IP}"', "  port = 179",
             f'  local-address-list = ["{DUT_IP}"]']
    for i in range(clients):
        lines += ["[[neighbors]]", "  [neighbors.config]",
                  f'    neighbor-address = "{peer_ip(i)}"', "    peer-as = 64512",
                  "  [neighbors.transport.config]", "    passive-mode = true",
                  "  [neighbors.route-reflector.config]", "    route-reflector-client = true",
                  f'    route-reflector-cluster-id = "{CLUSTER_ID}"',
                  "  [neighbors.graceful-restart.config]", "    enabled = true",
                  "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                  '      afi-safi-name = "ipv4-unicast"']
    return "\n".join(lines) + "\n"


class Reference(Dut):
    """FRR or GoBGP as the reflector (the references BIRD is not)."""

    def __init__(self, engine: str, ns: Namespace, workdir: Path, clients: int) -> None:
        super().__init__(engine, ns, workdir, docs=[], bird_config=lambda version: "")
        self.clients = clients

    def prepare(self) -> None:
        if self.engine == "frr":
            (self.workdir / "frr.conf").write_text(frr_config(self.clients))
        else:
            (self.workdir / "gobgpd.toml").write_text(gobgp_config(self.clients))

    def start(self) -> None:
        self.prepare()
        if self.engine == "frr":
            conf = self.workdir / "frr.conf"
            pidfile = self.workdir / "pid"
            self.ns.run(FRR_BGPD, "-d", "-S", "-Z", "-f", str(conf), "-i", str(pidfile),
                        "--vty_socket", str(self.workdir), "-P", "0", "-u", "root",
                        "-g", "root")
            wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10,
                     "FRR bgpd's pid file", interval=0.01)
            self.pid = int(pidfile.read_text())
            return
        conf = self.workdir / "gobgpd.toml"
        log = open(self.workdir / "gobgpd.log", "wb")  # noqa: SIM115 - lives with the process
        self.proc = self.ns.popen("gobgpd", "-f", str(conf), "--api-hosts", "127.0.0.1:50051",
                                  "--pprof-disable", stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        # its API answers before it has loaded every neighbour, and refuses routes till then
        wait_for(lambda: self._gobgp("global", "rib", "add", DUT_BLOCK, check=False) == ""
                 and DUT_BLOCK in self._gobgp("global", "rib", check=False), 30,
                 "GoBGP to take the reflector's block", interval=0.1)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        super().stop(sig)  # (GoBGP takes over 30 s to close 300 sessions on SIGTERM)

    def _gobgp(self, *args: str, check: bool = True) -> str:
        return self.ns.run("gobgp", "-p", "50051", *args, check=check)


def wait_full(dut: Dut, socks: list[Path], start: float, timeout: float
              ) -> tuple[float | None, float | None]:
    """Seconds from ``start`` to a connection with every client, and to every client full."""
    want = len(socks) + 1
    pending = list(socks)
    established_s = full_s = None
    deadline = start + timeout
    # one client at a time, in order, until it is full (a full client stays full here): a
    # round over every client's socket per check kept a core busy at 599 clients, taken
    # from the device under test
    while time.monotonic() < deadline and (full_s is None or established_s is None):
        if established_s is None and dut.established() >= len(socks):
            established_s = time.monotonic() - start
        while pending and route_count(pending[0]) >= want:
            pending.pop(0)
        if not pending:
            full_s = time.monotonic() - start
        else:
            time.sleep(0.05)
    return established_s, full_s


def run(clients: int, engine: str, workdir: Path, *, timeout: float = 900,
        profile: bool = False, inspect: Callable[[list[Path]], None] | None = None,
        ) -> dict[str, Any]:
    """One measurement; ``inspect`` is handed the clients' control sockets once every
    client is full (a test reads their tables)."""
    with neighbour_room(), NetLab() as lab:
        dut_ns, emu = lab.namespace("dut"), lab.namespace("clients")
        lab.veth(dut_ns, "eth0", emu, "eth0")
        lab.address(dut_ns, "eth0", f"{DUT_IP}/16")
        for i in range(clients):
            lab.address(emu, "eth0", f"{peer_ip(i)}/16")
        tunl0(dut_ns)
        socks = start_clients(emu, workdir / "clients", clients)
        env = {"BGPD_EXABGP_SKIP": SKIP[engine]} if engine in SKIP else {}
        dut = Reference(engine, dut_ns, workdir / "dut", clients) if engine in REFERENCES \
            else Dut("bgpd" if engine.startswith("bgpd") else engine, dut_ns, workdir / "dut",
                     docs=resources(clients), env=env,
                     bird_config=lambda version: bird_config(clients, version))
        dut.prepare()
        start = time.monotonic()
        dut.start()
        profiler = None
        try:
            if profile and engine.startswith("bgpd") and dut.pid is not None:
                profiler = Profile(dut.pid)  # the daemon and its children, from the start
            established_s, full_s = wait_full(dut, socks, start, timeout)
            profiled = profiler.stop() if profiler else None
            if inspect is not None and full_s is not None:
                inspect(socks)
            pids = dut.pids()
            cpu = {role_of(pid): round(cpu_seconds([pid]), 2) for pid in pids}
            rss = {role_of(pid): round(rss_mb([pid]), 1) for pid in pids}
        finally:
            dut.stop()
    return {"clients": clients, "engine": engine, "established_s": rounded(established_s),
            "full_s": rounded(full_s), "cpu_s": round(sum(cpu.values()), 2),
            "cpu_s_by_process": cpu, "rss_mb": round(sum(rss.values()), 1),
            "rss_mb_by_process": rss, **({"profile": profiled} if profiled else {})}


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """bgpd's figures over each other engine's of the same size, and over the fastest of
    them (``fastest``: the issue's goal is time within 1.5x of the fastest reference)."""
    out = []
    for ours in (r for r in runs if r["engine"].startswith("bgpd")):
        others = [r for r in runs if not r["engine"].startswith("bgpd")
                  and r["clients"] == ours["clients"]]
        timed = [r for r in others if r["full_s"] is not None]
        if timed:
            others.append({**min(timed, key=lambda r: r["full_s"]),
                           "engine": "fastest:" + min(timed, key=lambda r: r["full_s"])["engine"]})
        for theirs in others:
            ratios: dict[str, Any] = {"clients": ours["clients"], "engine": ours["engine"],
                                      "against": theirs["engine"]}
            for key in ("full_s", "cpu_s", "rss_mb"):
                if ours[key] is not None and theirs[key]:
                    ratios[key] = round(ours[key] / theirs[key], 2)
            out.append(ratios)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="100", help="sizes, comma-separated (100,300,599)")
    parser.add_argument("--engine", default="bgpd",
                        help="bgpd; bgpd-deepcopy (ExaBGP copying every route for every "
                             "client, as shipped); bgpd-plain (no update groups in ExaBGP); "
                             "bird (BIRD 1.6 as confd configures a reflector); frr; gobgp; "
                             "comma-separated")
    parser.add_argument("--compare", action="store_true",
                        help="bgpd, BIRD 1.6, FRR and GoBGP, and ratios")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--profile", action="store_true",
                        help="bgpd: sample its processes with py-spy until every client is full")
    parser.add_argument("--workdir", default="/tmp/bgpd-bench-reflector")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    runs = []
    for clients in (int(n) for n in str(args.clients).split(",")):
        for engine in (["bgpd", "bird", "frr", "gobgp"] if args.compare
                       else str(args.engine).split(",")):
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
            runs.append(run(clients, engine, workdir, timeout=args.timeout,
                            profile=args.profile))
            print(json.dumps(runs[-1]), flush=True)
    if len(runs) == 1:
        report("reflector", runs[0], save=not args.no_save)
    else:
        report("reflector", {"runs": runs, "bgpd_vs": compare(runs)},
               save=not args.no_save)


if __name__ == "__main__":
    main()
