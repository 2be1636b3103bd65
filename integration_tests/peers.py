"""Real BGP peers for tests: BIRD 2, BIRD 1.6, FRR and GoBGP, each in a namespace.

Every router implements the same small surface — start, stop, kill -9, the routes it
received from a neighbor, whether a session is up and since when, routes to originate —
so one test can run against all four.  Configurations are written from scratch here, with
short connect timers so tests do not wait on defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration_tests.netns import HarnessError, Namespace
from integration_tests.waiting import WaitTimeout, wait_for

BIRD1 = "/opt/bird1/usr/sbin"
FRR_BGPD = "/usr/lib/frr/bgpd"


@dataclass(frozen=True)
class Neighbor:
    address: str
    asn: int
    passive: bool = False
    password: str | None = None
    graceful_restart: bool = True
    port: int = 179
    multihop: bool = False  # an eBGP neighbor that is not on a shared subnet


@dataclass
class Route:
    prefix: str
    next_hop: str | None
    attrs: dict[str, str] = field(default_factory=dict)


class Router:
    kind = "router"

    def __init__(self, ns: Namespace, workdir: Path, *, router_id: str, asn: int,
                 neighbors: Sequence[Neighbor], originate: Sequence[str] = ()) -> None:
        self.ns, self.workdir = ns, workdir
        self.router_id, self.asn = router_id, asn
        self.neighbors = list(neighbors)
        self.originate = list(originate)
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    # subclasses: start(), routes_from(), established(), since(), set_originate()
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _pid(self) -> int | None:
        path = self.workdir / "pid"
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return self.proc.pid if self.proc else None

    def _signal(self, sig: int) -> None:
        pid = self._pid()
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        def gone() -> bool:
            if self.proc is not None:
                self.proc.poll()  # reap our child
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        with contextlib.suppress(WaitTimeout):  # a process that lingers is killed by the lab
            wait_for(gone, 10, f"{self.kind} to exit", interval=0.02)
        (self.workdir / "pid").unlink(missing_ok=True)

    def routes_from(self, neighbor: str) -> dict[str, Route]:
        raise NotImplementedError

    def established(self, neighbor: str) -> bool:
        raise NotImplementedError

    def since(self, neighbor: str) -> str:
        """Something that changes whenever that session is reset."""
        raise NotImplementedError

    def same_session(self, before: str, after: str) -> bool:
        """Whether two readings of since() are of one session, not reset in between."""
        return before == after

    def set_originate(self, prefixes: Sequence[str]) -> None:
        raise NotImplementedError


# --- BIRD (2 and 1.6) --------------------------------------------------------------------
class Bird2(Router):
    kind = "bird2"
    bird, birdc = "bird", "birdc"
    #: BFD on every session (``protocol bfd`` on eth0, ``bfd on`` in each BGP protocol), with
    #: these timers in ms: (min rx, min tx, multiplier)
    bfd: tuple[int, int, int] | None = None

    @property
    def sock(self) -> str:
        return str(self.workdir / "bird.ctl")

    def config(self) -> str:
        v4 = [p for p in self.originate if ":" not in p]
        v6 = [p for p in self.originate if ":" in p]
        lines = [f"router id {self.router_id};", "protocol device {}",
                 "protocol static s4 { ipv4; " + "".join(f"route {p} blackhole; " for p in v4)
                 + "}",
                 "protocol static s6 { ipv6; " + "".join(f"route {p} blackhole; " for p in v6)
                 + "}"]
        if self.bfd is not None:  # (a multihop BGP session asks for a multihop BFD one)
            rx, tx, multiplier = self.bfd
            timers = f"min rx interval {rx} ms; min tx interval {tx} ms; multiplier {multiplier};"
            lines.append(f'protocol bfd {{ interface "eth0" {{ {timers} }}; '
                         + (f"multihop {{ {timers} }}; " if any(
                             n.multihop for n in self.neighbors) else "") + "}")
        for i, n in enumerate(self.neighbors):
            family = "ipv6" if ":" in n.address else "ipv4"
            local = self._local_for(n)
            lines.append(
                f"protocol bgp n{i} {{ local {local} as {self.asn}; "
                f"neighbor {n.address} port {n.port} as {n.asn}; "
                + ("passive on; " if n.passive else "")
                + ("multihop; " if n.multihop else "")
                + (f'password "{n.password}"; ' if n.password else "")
                + ("graceful restart on; " if n.graceful_restart else "graceful restart off; ")
                + ("bfd on; " if self.bfd is not None else "")
                + "connect retry time 1; connect delay time 1; error wait time 1, 4; "
                + f"{family} {{ import all; export all; add paths on; }}; }}")
        return "\n".join(lines) + "\n"

    def _local_for(self, n: Neighbor) -> str:
        out = self.ns.ip("-j", "addr", "show")
        for link in json.loads(out):
            for info in link.get("addr_info", []):
                if (":" in info["local"]) == (":" in n.address) and info.get("scope") == "global":
                    return str(info["local"])
        raise HarnessError(f"no address in {self.ns} for a session to {n.address}")

    def start(self, *, graceful: bool = False) -> None:
        """Start BIRD; ``graceful``: as a restarting speaker (``bird -R``)."""
        (self.workdir / "bird.conf").write_text(self.config())
        self.ns.run(self.bird, "-c", str(self.workdir / "bird.conf"), "-s", self.sock,
                    "-P", str(self.workdir / "pid"), *(["-R"] if graceful else []))

    def cli(self, *command: str) -> str:
        return self.ns.run(self.birdc, "-s", self.sock, *command)

    def _protocol(self, neighbor: str) -> str:
        index = next(i for i, n in enumerate(self.neighbors) if n.address == neighbor)
        return f"n{index}"

    def _protocol_line(self, neighbor: str) -> list[str]:
        name = self._protocol(neighbor)
        for line in self.cli("show", "protocols", name).splitlines():
            if line.split()[:1] == [name]:
                return line.split()
        return []

    def established(self, neighbor: str) -> bool:
        return "Established" in self._protocol_line(neighbor)

    def since(self, neighbor: str) -> str:
        fields = self._protocol_line(neighbor)
        return " ".join(fields[3:5]) if len(fields) > 4 else ""

    def same_session(self, before: str, after: str) -> bool:
        # BIRD prints the wall-clock time of a monotonic stamp, converted anew on every
        # `show protocols`: one session's "since" moves by a millisecond between readings.
        # A reset takes a new connection and OPEN exchange, so its "since" lies later.
        def parse(value: str) -> tuple[str, float] | None:
            m = re.fullmatch(r"(\S+) (?:\S+ )?(\d+):(\d+):([\d.]+)", value)
            if m is None:
                return None
            return m.group(1), int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
        a, b = parse(before), parse(after)
        if a is None or b is None:
            return before == after
        return a[0] == b[0] and abs(a[1] - b[1]) < 0.05

    def routes_from(self, neighbor: str) -> dict[str, Route]:
        out = self.cli("show", "route", "protocol", self._protocol(neighbor), "all")
        routes: dict[str, Route] = {}
        current: Route | None = None
        for line in out.splitlines():
            if not line.strip() or line.startswith(("BIRD", "Table", "Access")):
                continue
            first = line.split()[0]
            if not line.startswith((" ", "\t")) and ("/" in first):
                current = Route(first, None)
                routes[first] = current
            elif current is not None and ":" in line:
                key, _, value = line.strip().partition(":")
                current.attrs[key.strip()] = value.strip()
                if key.strip() == "BGP.next_hop":
                    current.next_hop = value.split()[0] if value.split() else None
        return routes

    def set_originate(self, prefixes: Sequence[str]) -> None:
        self.originate = list(prefixes)
        self.reconfigure()

    def reconfigure(self) -> None:
        """Write ``config()`` again and have the running BIRD load it."""
        (self.workdir / "bird.conf").write_text(self.config())
        self.cli("configure")


class Bird1(Bird2):
    """BIRD 1.6 (what Calico runs); IPv4 only here (bird6 is another process)."""

    kind = "bird1"
    bird, birdc = f"{BIRD1}/bird", f"{BIRD1}/birdc"

    def config(self) -> str:
        lines = [f"router id {self.router_id};", "protocol device {}",
                 "protocol static s4 { " + "".join(f"route {p} blackhole; "
                                                    for p in self.originate) + "}"]
        for i, n in enumerate(self.neighbors):
            lines.append(
                f"protocol bgp n{i} {{ local as {self.asn}; "
                f"neighbor {n.address} port {n.port} as {n.asn}; "
                f"source address {self._local_for(n)}; "
                + ("passive on; " if n.passive else "")
                + (f'password "{n.password}"; ' if n.password else "")
                + ("graceful restart on; " if n.graceful_restart else "graceful restart off; ")
                + ("bfd on; " if self.bfd is not None else "")
                + "connect retry time 1; connect delay time 1; error wait time 1, 4; "
                "import all; export all; add paths on; }")
        return "\n".join(lines) + "\n"

    def routes_from(self, neighbor: str) -> dict[str, Route]:
        routes = super().routes_from(neighbor)
        for route in routes.values():  # 1.6 prints "via X on dev" for reachable next hops
            if route.next_hop is None and "BGP.next_hop" in route.attrs:
                route.next_hop = route.attrs["BGP.next_hop"].split()[0]
        return routes


# --- FRR ---------------------------------------------------------------------------------
class Frr(Router):
    kind = "frr"

    def config(self) -> str:
        lines = ["frr defaults traditional", "hostname peer", "log stdout warnings",
                 f"router bgp {self.asn}", f" bgp router-id {self.router_id}",
                 " no bgp ebgp-requires-policy", " no bgp network import-check",
                 " bgp graceful-restart"]
        for n in self.neighbors:
            lines.append(f" neighbor {n.address} remote-as {n.asn}")
            lines.append(f" neighbor {n.address} timers connect 1")
            if n.port != 179:
                lines.append(f" neighbor {n.address} port {n.port}")
            if n.passive:
                lines.append(f" neighbor {n.address} passive")
            if n.multihop:
                lines.append(f" neighbor {n.address} ebgp-multihop 5")
            if n.password:
                lines.append(f" neighbor {n.address} password {n.password}")
        for family, is6 in (("ipv4 unicast", False), ("ipv6 unicast", True)):
            lines.append(f" address-family {family}")
            lines += [f"  network {p}" for p in self.originate if (":" in p) == is6]
            for n in self.neighbors:
                if (":" in n.address) == is6:
                    lines.append(f"  neighbor {n.address} activate")
                    lines.append(f"  neighbor {n.address} addpath-tx-all-paths")
                else:
                    lines.append(f"  no neighbor {n.address} activate")
            lines.append(" exit-address-family")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        conf = self.workdir / "frr.conf"
        conf.write_text(self.config())
        shutil.chown(self.workdir, "frr", "frr") if _user_exists("frr") else None
        self.ns.run(FRR_BGPD, "-d", "-S", "-Z", "-f", str(conf), "-i", str(self.workdir / "pid"),
                    "--vty_socket", str(self.workdir), "-P", "0", "-u", "root", "-g", "root")
        wait_for((self.workdir / "bgpd.vty").exists, 10, "FRR bgpd's vty socket")

    def vtysh(self, *commands: str) -> str:
        argv = ["vtysh", "--vty_socket", str(self.workdir), "-d", "bgpd"]
        for c in commands:
            argv += ["-c", c]
        return self.ns.run(*argv)

    def _neighbor_json(self, neighbor: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.vtysh(f"show bgp neighbors {neighbor} json") or "{}")
        return data.get(neighbor) or {}

    def established(self, neighbor: str) -> bool:
        return self._neighbor_json(neighbor).get("bgpState") == "Established"

    def since(self, neighbor: str) -> str:
        info = self._neighbor_json(neighbor)
        return f"{info.get('connectionsEstablished')}/{info.get('connectionsDropped')}"

    def routes_from(self, neighbor: str) -> dict[str, Route]:
        family = "ipv6" if ":" in neighbor else "ipv4"
        data = json.loads(self.vtysh(f"show bgp {family} unicast json") or "{}")
        routes: dict[str, Route] = {}
        for prefix, paths in (data.get("routes") or {}).items():
            for path in paths:
                if path.get("peerId") != neighbor:
                    continue
                hops = path.get("nexthops") or [{}]
                attrs = {"med": str(path.get("metric", "")), "aspath": str(path.get("path", "")),
                         "locPrf": str(path.get("locPrf", "")),
                         "community": str((path.get("community") or {}).get("string", ""))}
                routes[prefix] = Route(prefix, hops[0].get("ip"), attrs)
        return routes

    def set_originate(self, prefixes: Sequence[str]) -> None:
        added = [p for p in prefixes if p not in self.originate]
        removed = [p for p in self.originate if p not in prefixes]
        commands = ["configure terminal", f"router bgp {self.asn}"]
        for p in added + removed:
            family = "ipv6 unicast" if ":" in p else "ipv4 unicast"
            commands += [f"address-family {family}",
                         ("no " if p in removed else "") + f"network {p}", "exit-address-family"]
        self.vtysh(*commands)
        self.originate = list(prefixes)


def _user_exists(name: str) -> bool:
    try:
        import pwd

        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# --- GoBGP -------------------------------------------------------------------------------
class GoBgp(Router):
    kind = "gobgp"
    api_port = 50051

    def config(self) -> str:
        lines = ["[global.config]", f"  as = {self.asn}", f'  router-id = "{self.router_id}"',
                 "  port = 179"]
        for n in self.neighbors:
            family = "ipv6-unicast" if ":" in n.address else "ipv4-unicast"
            lines += ["[[neighbors]]", "  [neighbors.config]",
                      f'    neighbor-address = "{n.address}"', f"    peer-as = {n.asn}"]
            if n.password:
                lines.append(f'    auth-password = "{n.password}"')
            lines += ["  [neighbors.transport.config]",
                      f"    passive-mode = {str(n.passive).lower()}",
                      f"    remote-port = {n.port}",
                      "  [neighbors.timers.config]", "    connect-retry = 1",
                      "  [neighbors.ebgp-multihop.config]",
                      f"    enabled = {str(n.multihop).lower()}", "    multihop-ttl = 5",
                      "  [neighbors.graceful-restart.config]",
                      f"    enabled = {str(n.graceful_restart).lower()}",
                      "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                      f'      afi-safi-name = "{family}"']
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        conf = self.workdir / "gobgpd.toml"
        conf.write_text(self.config())
        log = open(self.workdir / "gobgpd.log", "wb")  # noqa: SIM115 - lives with the process
        self.proc = self.ns.popen("gobgpd", "-f", str(conf), "--api-hosts",
                                  f"127.0.0.1:{self.api_port}", "--pprof-disable",
                                  stdout=log, stderr=subprocess.STDOUT)
        (self.workdir / "pid").write_text(str(self.proc.pid))
        wait_for(lambda: self.gobgp("global"), 10, "GoBGP's API", interval=0.1)
        for prefix in self.originate:
            self._rib("add", prefix)

    def gobgp(self, *args: str) -> str:
        return self.ns.run("gobgp", "-p", str(self.api_port), *args)

    def _rib(self, action: str, prefix: str) -> None:
        family = ["-a", "ipv6"] if ":" in prefix else []
        self.gobgp("global", "rib", action, prefix, *family)

    def _neighbor(self, neighbor: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.gobgp("neighbor", neighbor, "-j"))
        except (HarnessError, json.JSONDecodeError):
            return {}
        return data

    def established(self, neighbor: str) -> bool:
        state = self._neighbor(neighbor).get("state") or {}
        return state.get("session_state") in (6, "established", "ESTABLISHED")

    def since(self, neighbor: str) -> str:
        timers = (self._neighbor(neighbor).get("timers") or {}).get("state") or {}
        return str(timers.get("uptime", {}))

    def routes_from(self, neighbor: str) -> dict[str, Route]:
        family = ["-a", "ipv6"] if ":" in neighbor else []
        data = json.loads(self.gobgp("neighbor", neighbor, "adj-in", "-j", *family) or "{}")
        routes: dict[str, Route] = {}
        for prefix, paths in (data or {}).items():
            for path in paths:
                hop = None
                attrs: dict[str, str] = {}
                for attr in path.get("attrs", []):
                    if attr.get("type") in (3, 14):  # NEXT_HOP, MP_REACH_NLRI
                        hop = attr.get("nexthop")
                    elif attr.get("type") == 8:
                        attrs["community"] = " ".join(map(str, attr.get("communities", [])))
                    elif attr.get("type") == 4:
                        attrs["med"] = str(attr.get("metric"))
                routes[prefix] = Route(prefix, hop, attrs)
        return routes

    def set_originate(self, prefixes: Sequence[str]) -> None:
        for p in [p for p in prefixes if p not in self.originate]:
            self._rib("add", p)
        for p in [p for p in self.originate if p not in prefixes]:
            self._rib("del", p)
        self.originate = list(prefixes)


ROUTERS: dict[str, type[Router]] = {"bird2": Bird2, "bird1": Bird1, "frr": Frr, "gobgp": GoBgp}


def available(kind: str) -> str | None:
    """Why ``kind`` cannot run here (None when it can)."""
    needs = {"bird2": ["bird", "birdc"], "bird1": [f"{BIRD1}/bird"], "frr": [FRR_BGPD, "vtysh"],
             "gobgp": ["gobgpd", "gobgp"]}[kind]
    missing = [n for n in needs if shutil.which(n) is None and not os.access(n, os.X_OK)]
    return f"{', '.join(missing)} not installed (scripts/install-system-deps)" if missing else None

