"""Network-namespace test harness: uniquely named namespaces, links, addresses, cleanup.

Theory of operation: a :class:`NetLab` creates everything it needs inside namespaces named
``bgpdt-<pid>-<n>-<role>`` and remembers them; leaving it (or its pytest fixture) deletes
them, which also removes every device and route inside.  Namespaces of a process that no
longer exists (a run killed with SIGKILL) are swept by :func:`sweep_leftovers` at the next
start.  Devices are created directly in their namespaces, so nothing ever touches the host's
own network.

``tunl0``: the kernel's ``ipip`` device where the kernel has IPIP; where it does not (these
machines, see README) a stand-in *named* ``tunl0`` — a veth whose peer stays in the same
namespace, so the device has carrier and routes on it read exactly as on a real tunnel
(``via GW dev tunl0 proto bird onlink``).  :func:`tunl0` says which one it made.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration_tests.waiting import wait_for

PREFIX = "bgpdt"
_counter = itertools.count(1)
_NAME = re.compile(rf"^{PREFIX}-(\d+)-\d+-")


class HarnessError(RuntimeError):
    pass


def sh(*argv: str, check: bool = True, timeout: float = 60) -> str:
    """Run a command, return its stdout; a failure raises with the command's stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def list_namespaces() -> list[str]:
    out = sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers() -> list[str]:
    """Delete test namespaces whose creating process is gone; returns their names."""
    removed = []
    for name in list_namespaces():
        match = _NAME.match(name)
        if match and not _alive(int(match.group(1))):
            _kill_processes_in(name)
            sh("ip", "netns", "del", name, check=False)
            removed.append(name)
    return removed


def _kill_processes_in(name: str) -> None:
    pids = sh("ip", "netns", "pids", name, check=False).split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


@dataclass
class Namespace:
    name: str

    def ip(self, *args: str, check: bool = True) -> str:
        return sh("ip", "-n", self.name, *args, check=check)

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
        return sh("ip", "netns", "exec", self.name, *argv, check=check, timeout=timeout)

    def popen(self, *argv: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv], **kwargs
        )
        return proc

    def routes(self, *selectors: str, family: int = 4) -> list[str]:
        """``ip route show`` lines (multipath next-hop lines folded into their route)."""
        out = self.ip(f"-{family}", "route", "show", *selectors)
        lines: list[str] = []
        for line in out.splitlines():
            if line.startswith(("\t", " ")) and lines:
                lines[-1] += " " + line.strip()
            elif line.strip():
                lines.append(line.strip())
        return lines

    def __str__(self) -> str:
        return self.name


@dataclass
class NetLab:
    """Everything one test builds; ``close()`` (or leaving the ``with``) removes it all."""

    namespaces: list[Namespace] = field(default_factory=list)
    #: a fixed name prefix (``bgpdlab``) for a lab that outlives this process; tests use
    #: the default, unique per process and swept when that process is gone
    stable_prefix: str | None = None

    def namespace(self, role: str = "ns") -> Namespace:
        if self.stable_prefix is not None:
            name = f"{self.stable_prefix}-{role}"
        else:
            name = f"{PREFIX}-{os.getpid()}-{next(_counter)}-{role}"
        sh("ip", "netns", "add", name)
        ns = Namespace(name)
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")  # onlink routes fail until lo is up
        return ns

    def veth(self, a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
        sh("ip", "link", "add", a_if, "netns", a.name, "type", "veth",
           "peer", "name", b_if, "netns", b.name)
        a.ip("link", "set", a_if, "up")
        b.ip("link", "set", b_if, "up")

    def bridge(self, ns: Namespace, name: str) -> None:
        ns.ip("link", "add", name, "type", "bridge")
        ns.ip("link", "set", name, "up")

    def attach(self, ns: Namespace, ifname: str, bridge: str) -> None:
        ns.ip("link", "set", ifname, "master", bridge)

    def address(self, ns: Namespace, ifname: str, cidr: str) -> None:
        family = "-6" if ":" in cidr else "-4"
        extra = ["nodad"] if family == "-6" else []
        ns.ip(family, "addr", "add", cidr, "dev", ifname, *extra)

    def close(self) -> None:
        errors = []
        for ns in reversed(self.namespaces):
            _kill_processes_in(ns.name)
            try:
                sh("ip", "netns", "del", ns.name)
            except HarnessError as exc:
                errors.append(str(exc))
        self.namespaces.clear()
        if errors:
            raise HarnessError("; ".join(errors))

    def __enter__(self) -> NetLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ipip_supported() -> bool:
    """Whether this kernel can make a real ``ipip`` tunl0 (probed in a scratch namespace)."""
    with NetLab() as lab:
        ns = lab.namespace("probe")
        sh("ip", "-n", ns.name, "link", "add", "name", "tunl0", "type", "ipip", check=False)
        return "tunl0" in ns.ip("-o", "link", "show", check=False)


def tunl0(ns: Namespace, *, local: str | None = None, workdir: Path | None = None) -> str:
    """Give ``ns`` a tunl0 device, up, its MTU 20 bytes below ``eth0``'s (as Calico sets it);
    returns what it is:

    * ``"ipip"``: Linux's IPIP device, where the kernel has the module;
    * ``"userspace-ipip"`` (with ``local``, the node's address): a TUN device carried by
      :mod:`integration_tests.ipip` — real IP-in-IP packets on the fabric;
    * ``"veth-stand-in"``: a device of that name that routes install on and that carries
      nothing (for tests of routes alone).
    """
    mtu = _mtu(ns, "eth0") - 20 if "eth0" in ns.ip("-o", "link", "show") else 1480
    if "tunl0" not in ns.ip("-o", "link", "show"):
        sh("ip", "-n", ns.name, "link", "add", "name", "tunl0", "type", "ipip", check=False)
    if "tunl0" in ns.ip("-o", "link", "show") and "ipip" in ns.ip("-d", "link", "show", "tunl0"):
        ns.ip("link", "set", "tunl0", "mtu", str(mtu), "up")
        return "ipip"
    if local is not None:
        ns.ip("tuntap", "add", "dev", "tunl0", "mode", "tun")
        ns.ip("link", "set", "tunl0", "mtu", str(mtu), "up")
        stats = (workdir or Path(tempfile.mkdtemp())) / "ipip.json"
        log = open(stats.with_suffix(".log"), "ab")  # noqa: SIM115
        ns.popen(sys.executable, "-m", "integration_tests.ipip", "--local", local,
                 "--stats", str(stats), stdout=log, stderr=subprocess.STDOUT,
                 cwd=str(Path(__file__).resolve().parent.parent))
        wait_for(lambda: "NO-CARRIER" not in ns.ip("link", "show", "tunl0") and stats.exists(),
                 15, f"the IPIP encapsulator of {ns} (its log: {log.name})")
        return "userspace-ipip"
    ns.ip("link", "add", "tunl0", "type", "veth", "peer", "name", "tunl0-peer")
    ns.ip("link", "set", "tunl0-peer", "up")
    ns.ip("link", "set", "tunl0", "up")
    return "veth-stand-in"


def ipip_stats(ns_workdir: Path) -> dict[str, int]:
    """The counters of a node's userspace encapsulator (empty where there is none)."""
    try:
        data: dict[str, int] = json.loads((ns_workdir / "ipip.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def _mtu(ns: Namespace, device: str) -> int:
    return int(json.loads(ns.ip("-j", "link", "show", device))[0]["mtu"])


def require_root() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    try:
        sh("ip", "netns", "list")
    except (HarnessError, FileNotFoundError) as exc:
        return f"iproute2 unusable: {exc}"
    return None

