"""One node of a full mesh: bgpd (daemon + ExaBGP + kernel sync) or BIRD as that node.

    python -m benchmarks.mesh --peers 100 --engine bgpd|bird|bird2 [--idle 60] --json

The device under test (DUT) is one node (198.18.0.1) in its own namespace; the other
``--peers`` nodes are emulated in a second namespace, each by its own BIRD 2 process bound to
its own address (``strict bind``: one listener per emulated node, so the emulator does not
serialise connections the way one BIRD holding hundreds of sessions would), each announcing
its ``/24`` from 172.17.0.0/12.  The mesh's string-ordered passive rule applies (with the DUT
at 198.18.0.1 every emulated node has the greater address, so the DUT is passive and the
peers connect, as in a real cluster for this node).

Reported: ``established_s`` (DUT start → a BGP connection with every peer, counted by the
kernel in the DUT's namespace — engine-neutral and cheap under load), ``converged_s`` (→ every
peer's block in the DUT's kernel), ``cpu_s`` of the DUT's processes to convergence,
``rss_mb`` of the DUT's processes, ``idle_cpu_pct`` over ``--idle`` seconds after, ``flaps``
(sessions lost meanwhile), and how many emulated peers learned the DUT's block.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import report
from integration_tests.netns import Namespace, NetLab, tunl0
from integration_tests.peers import BIRD1

DUT_IP = "198.18.0.1"
BASE = int(IPv4Address("198.18.1.0"))
FIRST_BLOCK = int(IPv4Address("172.17.0.0"))
DUT_BLOCK = "172.31.255.0/24"
TICKS = os.sysconf("SC_CLK_TCK")


def peer_ip(i: int) -> str:
    return str(IPv4Address(BASE + 1 + i))


def block(i: int) -> str:
    return str(IPv4Network((FIRST_BLOCK + 256 * i, 24)))


def emulator_config(i: int) -> str:
    return (f"router id {peer_ip(i)};\nprotocol device {{ scan time 60; }}\n"
            f"protocol static {{ ipv4; route {block(i)} blackhole; }}\n"
            f"protocol bgp dut {{ local {peer_ip(i)} as 64512; neighbor {DUT_IP} as 64512; "
            "strict bind on; graceful restart on; connect delay time 1; "
            "connect retry time 2; error wait time 1, 10; "
            "ipv4 { import all; export all; }; }\n")


def start_emulators(ns: Namespace, workdir: Path, peers: int) -> list[Path]:
    socks = []
    for i in range(peers):
        d = workdir / f"emu{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "bird.conf").write_text(emulator_config(i))
        sock = d / "bird.ctl"
        ns.run("bird", "-c", str(d / "bird.conf"), "-s", str(sock), "-P", str(d / "pid"))
        socks.append(sock)
    return socks


def resources(folder: Path, peers: int) -> None:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPConfiguration",
         "metadata": {"name": "default"}, "spec": {"asNumber": 64512}},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "p"},
         "spec": {"cidr": "172.16.0.0/12", "blockSize": 24, "ipipMode": "Always"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": "dut", "annotations": {"projectcalico.org/IPv4Address": f"{DUT_IP}/16"}}},
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
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cluster.yaml").write_text(yaml.safe_dump_all(docs))


def bird_dut_config(peers: int, version: int) -> str:
    """The DUT as Calico's confd configures BIRD: a mesh, blocks blackholed, learned blocks to
    the kernel (BIRD 1.6 cannot write Calico's onlink tunl0 shape; the route is plain)."""
    if version == 2:
        head = (f"router id {DUT_IP};\nprotocol device {{ scan time 10; }}\n"
                f"protocol static blocks {{ ipv4; route {DUT_BLOCK} blackhole; }}\n"
                "protocol kernel { learn no; persist; merge paths on; graceful restart on; "
                "metric 0; ipv4 { import none; export filter { if source = RTS_BGP then { "
                'ifname = "tunl0"; onlink = true; gw = bgp_next_hop; accept; } '
                'if proto = "blocks" then accept; reject; }; }; }\n')
        body = "".join(
            f"protocol bgp Mesh_{peer_ip(i).replace('.', '_')} {{ local {DUT_IP} as 64512; "
            f"neighbor {peer_ip(i)} as 64512; passive on; graceful restart on; "
            "ipv4 { import all; export filter { if proto = \"blocks\" then accept; reject; }; "
            "next hop self; }; }\n" for i in range(peers))
        return head + body
    head = (f"router id {DUT_IP};\nprotocol device {{ scan time 2; }}\n"
            f"protocol static blocks {{ route {DUT_BLOCK} blackhole; }}\n"
            "protocol kernel { learn no; persist; merge paths on; graceful restart on; "
            "scan time 2; import none; export filter { if source = RTS_BGP then accept; "
            'if proto = "blocks" then accept; reject; }; }\n')
    body = "".join(
        f"protocol bgp Mesh_{peer_ip(i).replace('.', '_')} {{ local as 64512; "
        f"neighbor {peer_ip(i)} as 64512; source address {DUT_IP}; passive on; "
        "direct; gateway direct; graceful restart on; import all; "
        "export filter { if proto = \"blocks\" then accept; reject; }; next hop self; }\n"
        for i in range(peers))
    return head + body


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def role(pid: int) -> str:
    """A short name for a DUT process: the daemon, ExaBGP, its API bridge, BIRD."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return str(pid)
    for key, name in (("bridge.py", "bridge"), ("speaker.engine", "exabgp"),
                      ("exabgp", "exabgp"), ("bgpd run", "daemon"), ("bird", "bird")):
        if key in cmd:
            return name
    return cmd.split(" ")[0].rsplit("/", 1)[-1]


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def owned_routes(ns: Namespace) -> int:
    return sum(1 for line in ns.ip("route", "show", "proto", "bird").splitlines()
               if line.startswith("172."))


class Dut:
    def __init__(self, engine: str, ns: Namespace, workdir: Path, peers: int,
                 reactor_speed: float = 5.0) -> None:
        self.engine, self.ns, self.workdir, self.peers = engine, ns, workdir, peers
        self.reactor_speed = reactor_speed
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    def start(self) -> None:
        if self.engine == "bgpd":
            folder = self.workdir / "resources"
            resources(folder, self.peers)
            settings = self.workdir / "bgpd.yaml"
            settings.write_text(yaml.safe_dump({
                "node_name": "dut", "datastore": "static", "resources": str(folder),
                "state_dir": str(self.workdir / "state"),
                "control_socket": str(self.workdir / "bgpd.sock"), "bird_socket": None,
                "metrics_address": None, "log_level": "warning",
                "exabgp_reactor_speed": self.reactor_speed}))
            log = open(self.workdir / "bgpd.log", "wb")  # noqa: SIM115
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns.name, sys.executable,
                                          "-m", "bgpd", "run", "--config", str(settings)],
                                         stdout=log, stderr=subprocess.STDOUT)
            self.pid = self.proc.pid
            return
        version = 2 if self.engine == "bird2" else 1
        conf = self.workdir / "bird.conf"
        conf.write_text(bird_dut_config(self.peers, version))
        binary = "bird" if version == 2 else f"{BIRD1}/bird"
        self.ns.run(binary, "-c", str(conf), "-s", str(self.workdir / "bird.ctl"),
                    "-P", str(self.workdir / "pid"))
        self.pid = int((self.workdir / "pid").read_text())

    def pids(self) -> list[int]:
        return process_tree(self.pid) if self.pid else []

    def established(self) -> int:
        """Established BGP connections in the DUT's namespace, counted by the kernel (the
        same for every engine, and cheap while the engine is busy)."""
        out = self.ns.run("ss", "-Htn", "state", "established",
                          "( sport = :179 or dport = :179 )")
        return len(out.splitlines())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        elif self.pid:
            os.kill(self.pid, signal.SIGTERM)


def learned_dut_block(emu: Namespace, socks: list[Path]) -> int:
    count = 0
    for sock in socks:
        out = emu.run("birdc", "-s", str(sock), "show", "route", DUT_BLOCK, check=False)
        count += DUT_BLOCK in out
    return count


def run(peers: int, engine: str, idle: float, workdir: Path,
        reactor_speed: float = 5.0) -> dict[str, Any]:
    with NetLab() as lab:
        dut_ns, emu = lab.namespace("dut"), lab.namespace("emu")
        lab.veth(dut_ns, "eth0", emu, "eth0")
        lab.address(dut_ns, "eth0", f"{DUT_IP}/16")
        for i in range(peers):
            lab.address(emu, "eth0", f"{peer_ip(i)}/16")
        tunl0(dut_ns)
        socks = start_emulators(emu, workdir / "emu", peers)
        dut = Dut(engine, dut_ns, workdir / "dut", peers, reactor_speed)
        (workdir / "dut").mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        dut.start()
        established_s = converged_s = None
        deadline = start + 300
        while time.monotonic() < deadline and (converged_s is None or established_s is None):
            if established_s is None and dut.established() >= peers:
                established_s = time.monotonic() - start
            if converged_s is None and owned_routes(dut_ns) >= peers:
                converged_s = time.monotonic() - start
            time.sleep(0.05)
        pids = dut.pids()
        cpu = cpu_seconds(pids)  # to convergence (and every session up)
        rss = rss_mb(pids)
        sessions_before = dut.established()
        idle_pids = dut.pids()
        idle_start = {pid: cpu_seconds([pid]) for pid in idle_pids}
        time.sleep(idle)
        per_process = {role(pid): round((cpu_seconds([pid]) - idle_start[pid]) / idle * 100, 2)
                       for pid in idle_pids}
        idle_cpu = sum(per_process.values())
        flaps = max(0, sessions_before - dut.established())
        learned = learned_dut_block(emu, socks)
        dut.stop()
    return {"peers": peers, "engine": engine, "role": "mesh (DUT passive)",
            "established_s": round(established_s, 2) if established_s else None,
            "converged_s": round(converged_s, 2) if converged_s else None,
            "cpu_s": round(cpu, 2), "rss_mb": round(rss, 1),
            "idle_cpu_pct": round(idle_cpu, 2), "idle_cpu_by_process": per_process,
            "idle_s": idle, "flaps": flaps,
            "peers_learned_dut_block": learned,
            **({"exabgp_reactor_speed": reactor_speed} if engine == "bgpd" else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=int, default=100)
    parser.add_argument("--engine", choices=["bgpd", "bird", "bird2"], default="bgpd")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    parser.add_argument("--workdir", default="/tmp/bgpd-bench-mesh")
    parser.add_argument("--reactor-speed", type=float, default=5.0,
                        help="bgpd: ExaBGP's idle loop period in 10 ms (the daemon's default: 5)")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    subprocess.run(["rm", "-rf", str(workdir)], check=False)
    report("mesh", run(args.peers, args.engine, args.idle, workdir, args.reactor_speed),
           save=not args.no_save)


if __name__ == "__main__":
    main()
