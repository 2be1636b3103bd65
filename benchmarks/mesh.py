"""One node of a full mesh: bgpd (daemon + ExaBGP + kernel sync) or BIRD as that node.

    python -m benchmarks.mesh --peers 100[,300,599] --engine bgpd|bgpd-stock|bird|bird2
        [--role passive|active|mesh] [--storm] [--compare] [--idle 60] --json

The device under test (DUT) is one node in its own namespace; the other ``--peers`` nodes are
emulated in a second namespace, each by its own BIRD 2 process bound to its own address
(``strict bind``: one listener per emulated node, so the emulator does not serialise
connections the way one BIRD holding hundreds of sessions would), each announcing its ``/24``
from 172.17.0.0/12.  Both sides apply the mesh's string-ordered passive rule (the node whose
address is the smaller string connects); the role picks the DUT's address so that:

* ``passive``: every emulated node connects to the DUT (DUT 198.18.0.1, the smallest);
* ``active``: the DUT connects to every emulated node (DUT 198.18.9.1, the greatest);
* ``mesh``: some each way, as for a node in the middle of a real cluster (198.18.10.251
  among emulated nodes from 198.18.10.1: ``dut_connects`` says to how many it connects).

``--storm``: after convergence the DUT is killed (SIGKILL), its routes flushed (a node that
rebooted) and started again at once.  Every emulated node saw its session drop at the same
instant and retries on the same timers, so all of them reconnect in lock-step, as after a
mass restart.  ``storm_converged_s`` is counted from the new start.

Reported (the clock starts as the engine is started, its input files already written):
``established_s`` (DUT start → a BGP connection with every peer, counted by the
kernel in the DUT's namespace — engine-neutral and cheap under load), ``converged_s`` (→ every
peer's block in the DUT's kernel), ``cpu_s`` of the DUT's processes to convergence,
``rss_mb`` of the DUT's processes, ``idle_cpu_pct`` over ``--idle`` seconds after, ``flaps``
(sessions lost meanwhile), and how many emulated peers learned the DUT's block.  Several sizes
or ``--compare`` (bgpd and BIRD 1.6 in one invocation) print ``{"runs": [...],
"bgpd_vs_bird": [...]}``, the ratios taken between runs of the same size and role.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from benchmarks.common import report
from benchmarks.dut import (
    Dut,
    bird_node_config,
    cpu_seconds,
    owned_routes,
    role_of,
    rounded,
    rss_mb,
)
from benchmarks.ingest import Profile
from integration_tests.netns import Namespace, NetLab, tunl0

DUT_IPS = {"passive": "198.18.0.1", "active": "198.18.9.1", "mesh": "198.18.10.251"}
FIRST_BLOCK = int(IPv4Address("172.17.0.0"))
DUT_BLOCK = "172.31.255.0/24"


def peer_ip(i: int) -> str:
    """Emulated nodes on 198.18.10.1-250, 198.18.11.1-250, ...: never a node under test's
    address."""
    return f"198.18.{10 + i // 250}.{1 + i % 250}"


def block(i: int) -> str:
    return str(IPv4Network((FIRST_BLOCK + 256 * i, 24)))


def passive(me: str, other: str) -> bool:
    """The mesh's rule (as confd's): a node waits for peers whose address string is greater."""
    return other > me


def emulator_config(i: int, dut_ip: str) -> str:
    wait = "passive on; " if passive(peer_ip(i), dut_ip) else ""
    return (f"router id {peer_ip(i)};\nprotocol device {{ scan time 60; }}\n"
            f"protocol static {{ ipv4; route {block(i)} blackhole; }}\n"
            f"protocol bgp dut {{ local {peer_ip(i)} as 64512; neighbor {dut_ip} as 64512; "
            f"{wait}strict bind on; graceful restart on; connect delay time 1; "
            "connect retry time 2; error wait time 1, 10; "
            "ipv4 { import all; export all; }; }\n")


def start_emulators(ns: Namespace, workdir: Path, peers: int, dut_ip: str) -> list[Path]:
    socks = []
    for i in range(peers):
        d = workdir / f"emu{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "bird.conf").write_text(emulator_config(i, dut_ip))
        sock = d / "bird.ctl"
        ns.run("bird", "-c", str(d / "bird.conf"), "-s", str(sock), "-P", str(d / "pid"))
        socks.append(sock)
    return socks


def resources(peers: int, dut_ip: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPConfiguration",
         "metadata": {"name": "default"}, "spec": {"asNumber": 64512}},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "p"},
         "spec": {"cidr": "172.16.0.0/12", "blockSize": 24, "ipipMode": "Always"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": "dut", "annotations": {"projectcalico.org/IPv4Address": f"{dut_ip}/16"}}},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
         "metadata": {"name": "dut"},
         "spec": {"node": "dut", "cidr": DUT_BLOCK, "state": "confirmed", "deleted": "false"}},
    ]
    for i in range(peers):
        annotations = {"projectcalico.org/IPv4Address": f"{peer_ip(i)}/16"}
        docs.append({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": f"n{i}", "annotations": annotations}})
        docs.append({"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
                     "metadata": {"name": f"n{i}"},
                     "spec": {"node": f"n{i}", "cidr": block(i), "state": "confirmed",
                              "deleted": "false"}})
    return docs


def bird_dut_config(peers: int, version: int, dut_ip: str) -> str:
    """The DUT as Calico's confd configures BIRD for a mesh."""
    return bird_node_config(version, dut_ip, DUT_BLOCK, [
        (f"Mesh_{peer_ip(i).replace('.', '_')}", peer_ip(i), passive(dut_ip, peer_ip(i)))
        for i in range(peers)])


NEIGH = Path("/proc/sys/net/ipv4/neigh/default")
ROOM = {"gc_thresh1": 1024, "gc_thresh2": 4096, "gc_thresh3": 8192}


@contextlib.contextmanager
def neighbour_room() -> Iterator[None]:
    """Room in the kernel's ARP table for a node with hundreds of neighbours, as large
    clusters configure their nodes.  The table and its limits are the host's, shared by
    every namespace: past ``gc_thresh2`` (512 by default) the kernel keeps evicting entries
    and the SYN-ACKs of a burst of connections wait on ARP, for tens of seconds.  Raised for
    the run, restored after."""
    before = {name: int((NEIGH / name).read_text()) for name in ROOM}
    try:
        for name, value in ROOM.items():
            if before[name] < value:
                (NEIGH / name).write_text(str(value))
        yield
    finally:
        for name, value in before.items():
            (NEIGH / name).write_text(str(value))


def learned_dut_block(emu: Namespace, socks: list[Path]) -> int:
    count = 0
    for sock in socks:
        out = emu.run("birdc", "-s", str(sock), "show", "route", DUT_BLOCK, check=False)
        count += DUT_BLOCK in out
    return count


def converge(dut: Dut, peers: int, start: float,
             timeout: float = 600) -> tuple[float | None, float | None]:
    """Seconds from ``start`` to every session up and to every peer's block in the kernel."""
    established_s = converged_s = None
    deadline = start + timeout
    while time.monotonic() < deadline and (converged_s is None or established_s is None):
        if established_s is None and dut.established() >= peers:
            established_s = time.monotonic() - start
        if converged_s is None and owned_routes(dut.ns) >= peers:
            converged_s = time.monotonic() - start
        time.sleep(0.05)
    return established_s, converged_s


def run(peers: int, engine: str, idle: float, workdir: Path, *, role: str = "passive",
        storm: bool = False, reactor_speed: float = 5.0, profile: bool = False
        ) -> dict[str, Any]:
    dut_ip = DUT_IPS[role]
    with neighbour_room(), NetLab() as lab:
        dut_ns, emu = lab.namespace("dut"), lab.namespace("emu")
        lab.veth(dut_ns, "eth0", emu, "eth0")
        lab.address(dut_ns, "eth0", f"{dut_ip}/16")
        for i in range(peers):
            lab.address(emu, "eth0", f"{peer_ip(i)}/16")
        tunl0(dut_ns)
        socks = start_emulators(emu, workdir / "emu", peers, dut_ip)
        dut = Dut(engine, dut_ns, workdir / "dut", docs=resources(peers, dut_ip),
                  bird_config=lambda version: bird_dut_config(peers, version, dut_ip),
                  reactor_speed=reactor_speed)
        dut.prepare()
        start = time.monotonic()
        dut.start()
        profiler = Profile(dut.pid) if profile and engine == "bgpd" and dut.pid else None
        established_s, converged_s = converge(dut, peers, start)
        profiled = profiler.stop() if profiler else None
        pids = dut.pids()
        cpu_by_process = {role_of(pid): round(cpu_seconds([pid]), 2) for pid in pids}
        cpu = cpu_seconds(pids)  # to convergence (and every session up)
        rss = rss_mb(pids)
        sessions_before = dut.established()
        idle_pids = dut.pids()
        idle_start = {pid: cpu_seconds([pid]) for pid in idle_pids}
        time.sleep(idle)
        per_process = {role_of(pid): round((cpu_seconds([pid]) - idle_start[pid]) / idle * 100,
                                           2) for pid in idle_pids}
        idle_cpu = sum(per_process.values())
        flaps = max(0, sessions_before - dut.established())
        learned = learned_dut_block(emu, socks)
        result: dict[str, Any] = {
            "peers": peers, "engine": engine, "role": role, "dut_ip": dut_ip,
            "dut_connects": sum(not passive(dut_ip, peer_ip(i)) for i in range(peers)),
            "established_s": rounded(established_s), "converged_s": rounded(converged_s),
            "cpu_s": round(cpu, 2), "cpu_s_by_process": cpu_by_process, "rss_mb": round(rss, 1),
            "idle_cpu_pct": round(idle_cpu, 2), "idle_cpu_by_process": per_process,
            "idle_s": idle, "flaps": flaps, "peers_learned_dut_block": learned,
            **({"exabgp_reactor_speed": reactor_speed} if engine == "bgpd" else {}),
            **({"profile": profiled} if profiled else {})}
        if storm:
            dut.stop(signal.SIGKILL)
            dut_ns.ip("route", "flush", "proto", "bird")
            restart = time.monotonic()
            dut.start()
            storm_established, storm_converged = converge(dut, peers, restart)
            result.update(storm_established_s=rounded(storm_established),
                          storm_converged_s=rounded(storm_converged),
                          storm_cpu_s=round(cpu_seconds(dut.pids()), 2))
        dut.stop()
    return result


RATIOS = {"converged": "converged_s", "established": "established_s", "cpu": "cpu_s",
          "rss": "rss_mb", "idle_cpu": "idle_cpu_pct", "storm_converged": "storm_converged_s"}


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """bgpd's figures over BIRD 1.6's, for each size and role measured with both."""
    out = []
    for ours in (r for r in runs if r["engine"] == "bgpd"):
        for theirs in (r for r in runs if r["engine"] == "bird"):
            if (theirs["peers"], theirs["role"]) != (ours["peers"], ours["role"]):
                continue
            ratios: dict[str, Any] = {"peers": ours["peers"], "role": ours["role"]}
            for name, key in RATIOS.items():
                a, b = ours.get(key), theirs.get(key)
                if a is not None and b:
                    ratios[name] = round(a / b, 2)
            out.append(ratios)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", default="100",
                        help="emulated peers; several sizes comma-separated (100,300,599)")
    parser.add_argument("--engine", choices=["bgpd", "bgpd-stock", "bird", "bird2"],
                        default="bgpd", help="bgpd-stock: bgpd with ExaBGP's reactor as shipped")
    parser.add_argument("--role", choices=sorted(DUT_IPS), default="passive",
                        help="who connects: peers to the node, the node to peers, or the "
                             "mesh rule per peer")
    parser.add_argument("--storm", action="store_true",
                        help="then kill and restart the node: every peer reconnects at once")
    parser.add_argument("--compare", action="store_true",
                        help="run bgpd and BIRD 1.6 and report bgpd_vs_bird ratios")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    parser.add_argument("--workdir", default="/tmp/bgpd-bench-mesh")
    parser.add_argument("--reactor-speed", type=float, default=5.0,
                        help="bgpd: ExaBGP's idle loop period in 10 ms (the daemon's default: 5)")
    parser.add_argument("--profile", action="store_true",
                        help="bgpd: sample its processes with py-spy until converged")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    sizes = [int(n) for n in str(args.peers).split(",")]
    engines = ["bgpd", "bird"] if args.compare else [args.engine]
    runs = []
    for peers in sizes:
        for engine in engines:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
            result = run(peers, engine, args.idle, workdir, role=args.role, storm=args.storm,
                         reactor_speed=args.reactor_speed, profile=args.profile)
            print(json.dumps(result), flush=True)
            runs.append(result)
    if len(runs) == 1:
        report("mesh", runs[0], save=not args.no_save)
    else:
        report("mesh", {"runs": runs, "bgpd_vs_bird": compare(runs)}, save=not args.no_save)


if __name__ == "__main__":
    main()
