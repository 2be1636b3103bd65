"""The node under test of the BGP benchmarks: bgpd (daemon + ExaBGP + bridge) or BIRD, in a
namespace, and what is measured of its processes from ``/proc``."""

from __future__ import annotations

import compileall
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from integration_tests.netns import Namespace
from integration_tests.peers import BIRD1
from integration_tests.waiting import WaitTimeout, wait_for

TICKS = os.sysconf("SC_CLK_TCK")


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


def role_of(pid: int) -> str:
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
    """``proto bird`` routes to pod networks in ``ns`` (the engine's own blackholes too)."""
    return sum(1 for line in ns.ip("route", "show", "proto", "bird").splitlines()
               if line.startswith("172."))


# the timers of Calico's BIRD template (bird.cfg.template's bgp_template)
CALICO_TIMERS = "connect delay time 2; connect retry time 5; error wait time 5, 30; "


def bird_node_config(version: int, node_ip: str, block: str,
                     peers: Sequence[tuple[str, str, bool]]) -> str:
    """A node as Calico's confd configures BIRD: its block blackholed and exported, learned
    routes to the kernel (BIRD 1.6 cannot write Calico's onlink tunl0 shape: the route is
    plain), one BGP protocol per (name, address, passive) peer, iBGP AS 64512."""
    export = 'export filter { if proto = "blocks" then accept; reject; };'
    if version == 2:
        head = (f"router id {node_ip};\nprotocol device {{ scan time 10; }}\n"
                f"protocol static blocks {{ ipv4; route {block} blackhole; }}\n"
                "protocol kernel { learn no; persist; merge paths on; graceful restart on; "
                "metric 0; ipv4 { import none; export filter { if source = RTS_BGP then { "
                'ifname = "tunl0"; onlink = true; gw = bgp_next_hop; accept; } '
                'if proto = "blocks" then accept; reject; }; }; }\n')
        return head + "".join(
            f"protocol bgp {name} {{ local {node_ip} as 64512; neighbor {address} as 64512; "
            f"{'passive on; ' if waits else ''}graceful restart on; {CALICO_TIMERS}"
            f"ipv4 {{ import all; {export} next hop self; }}; }}\n"
            for name, address, waits in peers)
    head = (f"router id {node_ip};\nprotocol device {{ scan time 2; }}\n"
            f"protocol static blocks {{ route {block} blackhole; }}\n"
            "protocol kernel { learn no; persist; merge paths on; graceful restart on; "
            "scan time 2; import none; export filter { if source = RTS_BGP then accept; "
            'if proto = "blocks" then accept; reject; }; }\n')
    return head + "".join(
        f"protocol bgp {name} {{ local as 64512; neighbor {address} as 64512; "
        f"source address {node_ip}; {'passive on; ' if waits else ''}direct; gateway direct; "
        f"graceful restart on; {CALICO_TIMERS}import all; {export} next hop self; }}\n"
        for name, address, waits in peers)


def rounded(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


@functools.cache
def compiled() -> None:
    """bgpd's packages compiled to bytecode, as an installed package is (pip compiles what it
    installs): with PYTHONDONTWRITEBYTECODE set every start would compile them again and the
    benchmark would count it."""
    root = Path(__file__).resolve().parent.parent
    for package in ("bgpd", "ribs", "node_controller"):
        compileall.compile_dir(root / package, quiet=1)


class Dut:
    """One node's routing engine. ``docs``: the Calico resources bgpd reads (a static
    folder); ``bird_config(version)``: the same node as confd would configure BIRD."""

    def __init__(self, engine: str, ns: Namespace, workdir: Path, *,
                 docs: list[dict[str, Any]], bird_config: Callable[[int], str],
                 reactor_speed: float = 5.0, env: dict[str, str] | None = None,
                 **settings: Any) -> None:
        self.engine, self.ns, self.workdir = engine, ns, workdir
        self.env = env or {}
        self.docs, self.bird_config = docs, bird_config
        self.reactor_speed, self.settings = reactor_speed, settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self._prepared = False
        workdir.mkdir(parents=True, exist_ok=True)

    def prepare(self) -> None:
        """The engine's input files, written before the clock starts (a real node has its
        resources in the datastore and its configuration on disk before the engine runs);
        ``start`` prepares what was not."""
        if self._prepared:
            return
        if self.engine in ("bgpd", "bgpd-stock"):
            compiled()
            folder = self.workdir / "resources"
            folder.mkdir(parents=True, exist_ok=True)
            # one List, as `kubectl get -o json` exports a cluster's resources
            (folder / "cluster.json").write_text(json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": self.docs}))
            stock = self.engine == "bgpd-stock"
            (self.workdir / "bgpd.yaml").write_text(yaml.safe_dump({
                "node_name": "dut", "datastore": "static", "resources": str(folder),
                "state_dir": str(self.workdir / "state"), "data_dir": str(self.workdir / "data"),
                "control_socket": str(self.workdir / "bgpd.sock"), "bird_socket": None,
                "metrics_address": None, "log_level": "warning",
                "exabgp_reactor_speed": 1.0 if stock else self.reactor_speed,
                **self.settings}))
        else:
            (self.workdir / "bird.conf").write_text(
                self.bird_config(2 if self.engine == "bird2" else 1))
        self._prepared = True

    def start(self) -> None:
        self.prepare()
        if self.engine in ("bgpd", "bgpd-stock"):
            # bgpd-stock: ExaBGP's reactor as shipped (no bgpd launcher, 10 ms loop)
            stock = self.engine == "bgpd-stock"
            env = {**os.environ, **self.env, **({"BGPD_EXABGP_PLAIN": "1"} if stock else {})}
            log = open(self.workdir / "bgpd.log", "ab")  # noqa: SIM115
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns.name, sys.executable,
                                          "-m", "bgpd", "run", "--config",
                                          str(self.workdir / "bgpd.yaml")],
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
            self.pid = self.proc.pid
            return
        conf = self.workdir / "bird.conf"
        binary = "bird" if self.engine == "bird2" else f"{BIRD1}/bird"
        pidfile = self.workdir / "pid"
        pidfile.unlink(missing_ok=True)  # a killed BIRD leaves its own behind
        self.ns.run(binary, "-c", str(conf), "-s", str(self.workdir / "bird.ctl"),
                    "-P", str(pidfile))
        # the daemonised BIRD writes it
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10,
                 f"BIRD's pid file in {self.workdir}", interval=0.01)
        self.pid = int(pidfile.read_text())

    def pids(self) -> list[int]:
        return process_tree(self.pid) if self.pid else []

    def established(self) -> int:
        """Established BGP connections in the DUT's namespace, counted by the kernel (the
        same for every engine, and cheap while the engine is busy)."""
        out = self.ns.run("ss", "-Htn", "state", "established",
                          "( sport = :179 or dport = :179 )")
        return len(out.splitlines())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
            self.proc = None
        elif self.pid:
            os.kill(self.pid, sig)
            with contextlib.suppress(WaitTimeout):  # still there: the lab's cleanup kills it
                wait_for(lambda: not Path(f"/proc/{self.pid}").exists(), 30, "BIRD to exit")
        self.pid = None
