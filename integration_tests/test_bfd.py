"""BFD against real peers: BIRD 2's ``protocol bfd`` and FRR's standalone ``bfdd``.

The service alone (:mod:`integration_tests.bfd_probe`, in a namespace of its own) comes up
with both, over IPv4 and IPv6 at 100 ms x 3, goes Down when the peer's BFD packets are
dropped by nftables and Up again when they pass, and leaves the peer's sessions Down when it
stops.  Then the whole daemon with a BIRD 2 ToR: BFD couples to BGP — a ToR killed has its
routes out at once (its graceful restart would keep them 120 s), and a path whose BFD packets
are dropped has BGP held down until BFD is back.  Detection times are measured in
``benchmarks.bfd``, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration_tests.cluster import TOR_AS, TOR_IP, Cluster, Node
from integration_tests.netns import Namespace, NetLab
from integration_tests.peers import Bird2, available
from integration_tests.waiting import wait_for as until

A4, B4, A6, B6 = "192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"
TOR_ROUTE = "172.17.100.0/24"


class Probe:
    """bgpd's BFD service in ``ns``, with sessions to ``peers`` from ``locals_``."""

    def __init__(self, ns: Namespace, peers: list[tuple[str, str]], *,
                 interface: str | None = None, multihop: bool = False,
                 min_ttl: int | None = None) -> None:
        argv = [sys.executable, "-m", "integration_tests.bfd_probe",
                *(["--interface", interface] if interface else []),
                *(["--multihop"] if multihop else []),
                *(["--min-ttl", str(min_ttl)] if min_ttl else [])]
        for peer, local in peers:
            argv += ["--peer", peer, "--local", local]
        self.proc = ns.popen(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             cwd=str(Path(__file__).resolve().parent.parent))

    def views(self) -> dict[str, dict[str, Any]]:
        return {v["peer"]: v for v in self.ask("views", "views")["views"]}

    def ask(self, command: str, key: str) -> dict[str, Any]:
        """Send ``command``; the first line back that has ``key``."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            line = json.loads(self.proc.stdout.readline())
            if key in line:
                return dict(line)

    def states(self) -> dict[str, str]:
        return {peer: v["state"] for peer, v in self.views().items()}

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def drop_bfd(ns: Namespace, on: bool, port: int = 3784) -> None:
    """nftables in ``ns``: drop every BFD control packet coming in (or stop dropping)."""
    if on:
        ns.run("nft", "add table inet bfdtest; add chain inet bfdtest in { type filter hook "
                      f"input priority 0; }}; add rule inet bfdtest in udp dport {port} drop")
    else:
        ns.run("nft", "delete table inet bfdtest")


def pair(lab: NetLab) -> tuple[Namespace, Namespace]:
    a, b = lab.namespace("bfd-a"), lab.namespace("bfd-b")
    lab.veth(a, "eth0", b, "eth0")
    for ns, v4, v6 in ((a, A4, A6), (b, B4, B6)):
        lab.address(ns, "eth0", f"{v4}/24")
        lab.address(ns, "eth0", f"{v6}/64")
    return a, b


def start_bird(ns: Namespace, workdir: Path,
               multihop: tuple[tuple[str, str], ...] = ()) -> str:
    """BIRD 2's BFD towards A4 and A6 on eth0, or multihop to each (peer, local) given."""
    workdir.mkdir(parents=True, exist_ok=True)
    timers = "min rx interval 100 ms; min tx interval 100 ms; multiplier 3;"
    body = (f"multihop {{ {timers} }}; " + "".join(
        f"neighbor {peer} local {local} multihop yes; " for peer, local in multihop)
        if multihop else f'interface "eth0" {{ {timers} }}; neighbor {A4}; neighbor {A6}; ')
    (workdir / "bird.conf").write_text(
        f"router id {B4};\nprotocol device {{}}\nprotocol bfd {{ {body}}}\n")
    ns.run("bird", "-c", str(workdir / "bird.conf"), "-s", str(workdir / "bird.ctl"),
           "-P", str(workdir / "pid"))
    return str(workdir / "bird.ctl")


def bird_states(ns: Namespace, sock: str) -> dict[str, str]:
    """BIRD's ``show bfd sessions``: address -> state, from its rows (six columns, the
    first an address)."""
    out = ns.run("birdc", "-s", sock, "show", "bfd", "sessions")
    rows = [line.split() for line in out.splitlines()]
    return {row[0]: row[2] for row in rows if len(row) == 6 and _is_address(row[0])}


def _is_address(text: str) -> bool:
    from ipaddress import ip_address
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def start_frr(ns: Namespace, workdir: Path,
              multihop: tuple[tuple[str, str], ...] = ()) -> str:
    """FRR's bfdd, standalone, towards A4 and A6, or multihop to each (peer, local) given; it
    drops to the frr user, so its directory is one that user can reach (not under pytest's
    root-only tmp)."""
    import shutil
    peers = "".join(f" peer {peer}{' multihop' if multihop else ''} local-address {local}\n"
                    "  receive-interval 100\n  transmit-interval 100\n"
                    "  detect-multiplier 3\n !\n"
                    for peer, local in (multihop or ((A4, B4), (A6, B6))))
    (workdir / "bfdd.conf").write_text(f"bfd\n{peers}!\n")
    workdir.chmod(0o755)
    if subprocess.run(["id", "frr"], capture_output=True).returncode == 0:
        shutil.chown(workdir, "frr", "frr")
    ns.run("/usr/lib/frr/bfdd", "-d", "-f", str(workdir / "bfdd.conf"), "-i",
           str(workdir / "bfdd.pid"), "--vty_socket", str(workdir), "-P", "0")
    return str(workdir)


def frr_states(ns: Namespace, vty: str) -> dict[str, str]:
    out = ns.run("vtysh", "--vty_socket", vty, "-d", "bfdd", "-c", "show bfd peers brief")
    return {line.split()[2]: line.split()[3] for line in out.splitlines()
            if len(line.split()) == 4 and line.split()[0].isdigit()}


@pytest.fixture(params=["bird2", "frr"])
def peer(request: pytest.FixtureRequest, lab: NetLab, tmp_path: Path) -> Iterator[
        tuple[Namespace, Namespace, Any]]:
    kind = str(request.param)
    why = available(kind)
    if why:
        pytest.skip(why)
    a, b = pair(lab)
    if kind == "bird2":
        sock = start_bird(b, tmp_path / "bird")
        yield a, b, lambda: bird_states(b, sock)
    else:
        import shutil
        import tempfile
        workdir = Path(tempfile.mkdtemp(prefix="bgpd-bfdd-"))
        try:
            vty = start_frr(b, workdir)
            yield a, b, lambda: {k: {"up": "Up", "down": "Down", "init": "Init"}.get(v, v)
                                 for k, v in frr_states(b, vty).items()}
        finally:
            lab.close()  # bfdd first, then its directory
            shutil.rmtree(workdir, ignore_errors=True)


def test_sessions_come_up_with_the_peer_on_both_families_and_follow_its_packets(
        peer: tuple[Namespace, Namespace, Any]) -> None:
    a, b, their_states = peer
    probe = Probe(a, [(B4, A4), (B6, A6)])
    try:
        until(lambda: probe.states() == {B4: "Up", B6: "Up"}, 20, "our sessions Up")
        until(lambda: their_states() == {A4: "Up", A6: "Up"}, 10, "the peer's sessions Up")
        until(lambda: {(v["tx_interval"], v["detection_time"]) for v in
                       probe.views().values()} == {(0.1, 0.3)}, 5, "the fast timers agreed")
        views = probe.views()
        until(lambda: probe.views()[B4]["received"] > views[B4]["received"] + 5, 5,
              "packets still coming")

        drop_bfd(b, True)  # the peer hears nothing: it detects, then tells us Down
        until(lambda: set(probe.states().values()) <= {"Down", "Init"}, 5, "our sessions Down")
        assert {v["failures"] for v in probe.views().values()} == {1}
        drop_bfd(b, False)
        until(lambda: probe.states() == {B4: "Up", B6: "Up"}, 20, "our sessions Up again")
    finally:
        probe.close()
    # a stop sends AdminDown: the peer's sessions leave Up at once, not after detection
    until(lambda: "Up" not in their_states().values(), 5, "the peer's sessions down")


# multihop: a and b on two subnets with a router between
MA4, MB4, MA6, MB6 = "198.51.100.1", "203.0.113.2", "2001:db8:a::1", "2001:db8:b::2"


def routed(lab: NetLab) -> tuple[Namespace, Namespace]:
    """``a`` and ``b`` one router apart (a packet sent with TTL 255 arrives with 254)."""
    a, r, b = lab.namespace("bfd-a"), lab.namespace("bfd-r"), lab.namespace("bfd-b")
    lab.veth(a, "eth0", r, "eth0")
    lab.veth(r, "eth1", b, "eth0")
    for ns, ifname, v4, v6 in ((a, "eth0", MA4, MA6), (r, "eth0", "198.51.100.254",
                                "2001:db8:a::fe"), (r, "eth1", "203.0.113.254",
                                "2001:db8:b::fe"), (b, "eth0", MB4, MB6)):
        lab.address(ns, ifname, f"{v4}/24")
        lab.address(ns, ifname, f"{v6}/64")
    r.run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
    for ns, v4, v6 in ((a, "198.51.100.254", "2001:db8:a::fe"),
                       (b, "203.0.113.254", "2001:db8:b::fe")):
        ns.run("ip", "route", "add", "default", "via", v4)
        ns.run("ip", "-6", "route", "add", "default", "via", v6)
    return a, b


@pytest.mark.parametrize("kind", ["bird2", "frr"])
def test_multihop_sessions_through_a_router_on_both_families(
        kind: str, lab: NetLab, tmp_path: Path) -> None:
    """RFC 5883 against BIRD 2 (``multihop yes``) and FRR's bfdd (``peer … multihop``), a
    router between: Up on both families at 100 ms x 3, Down when the peer's UDP 4784 is
    dropped, Up again, AdminDown at the stop; then a session that takes only TTL 255 (as
    ``ttlSecurity: 1`` asks) hears nothing from one hop away and counts why."""
    why = available(kind)
    if why:
        pytest.skip(why)
    import shutil
    import tempfile
    a, b = routed(lab)
    pairs = ((MA4, MB4), (MA6, MB6))
    workdir = Path(tempfile.mkdtemp(prefix="bgpd-bfdd-"))
    try:
        if kind == "bird2":
            sock = start_bird(b, tmp_path / "bird", multihop=pairs)

            def theirs() -> dict[str, str]:
                return bird_states(b, sock)
        else:
            vty = start_frr(b, workdir, multihop=pairs)

            def theirs() -> dict[str, str]:
                return {k: v.capitalize() for k, v in frr_states(b, vty).items()}
        probe = Probe(a, [(MB4, MA4), (MB6, MA6)], multihop=True)
        try:
            until(lambda: probe.states() == {MB4: "Up", MB6: "Up"}, 20, "our sessions Up")
            until(lambda: theirs() == {MA4: "Up", MA6: "Up"}, 10, "the peer's sessions Up")
            until(lambda: {(v["tx_interval"], v["detection_time"], v["multihop"]) for v in
                           probe.views().values()} == {(0.1, 0.3, True)}, 5, "fast timers")
            drop_bfd(b, True, port=4784)
            until(lambda: set(probe.states().values()) <= {"Down", "Init"}, 5, "ours Down")
            drop_bfd(b, False)
            until(lambda: probe.states() == {MB4: "Up", MB6: "Up"}, 20, "ours Up again")
        finally:
            probe.close()
        until(lambda: "Up" not in theirs().values(), 5, "the peer's sessions down")

        strict = Probe(a, [(MB4, MA4)], multihop=True, min_ttl=255)
        try:
            until(lambda: strict.ask("views", "views")["dropped"].get("ttl", 0) >= 2, 10,
                  "the peer's packets dropped for their TTL")
            assert strict.states()[MB4] != "Up"
        finally:
            strict.close()
    finally:
        lab.close()  # the peer first, then its directory
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def bird2() -> None:
    why = available("bird2")
    if why:
        pytest.skip(why)


def bfd_cluster(lab: NetLab, tmp_path: Path) -> Cluster:
    """One bgpd node and a BIRD 2 ToR with graceful restart, BFD on both sides (100 ms x 3),
    the BGPPeer asking for BFD as Calico Enterprise's does."""
    c = Cluster(lab, tmp_path, nodes=1, tor_originate=(TOR_ROUTE,), tor_peer=False)
    assert isinstance(c.tor, Bird2)
    c.tor.bfd = (100, 100, 3)
    c.write_resources([
        c.calico("BGPPeer", "tor", {"peerIP": TOR_IP, "asNumber": TOR_AS,
                                    "failureDetectionMode": "BFDIfDirectlyConnected"}),
        c.calico("BFDConfiguration", "default", {"interfaces": [
            # idle 1 s (Calico Enterprise's default is a minute: a healed path would wait it)
            {"matchPattern": "eth*", "minimumRecvInterval": "100ms",
             "minimumSendInterval": "100ms", "idleSendInterval": "1s", "multiplier": 3}]}),
    ])
    return c


def test_bfd_takes_a_dead_or_unreachable_tor_out(
        lab: NetLab, tmp_path: Path, bird2: None) -> None:
    c = bfd_cluster(lab, tmp_path)
    node = c.nodes[0]
    c.start_all()
    try:
        tor = c.tor
        assert isinstance(tor, Bird2)

        def installed() -> bool:
            return any(r.startswith(TOR_ROUTE) for r in node.routes())

        def bfd() -> dict[str, Any]:
            return dict(c.status(node)["bfd"])

        def ours_at_tor() -> bool:
            return any(r.prefix == node.block for r in tor.routes_from(node.ip).values())

        c.wait(installed, 30, "the ToR's route in the kernel")
        c.wait(lambda: [s["state"] for s in bfd()["sessions"]] == ["Up"], 20, "BFD Up")
        session = bfd()["sessions"][0]
        assert (session["peer"], session["interface"]) == (TOR_IP, "eth0")
        assert (session["interval"], session["detection_time"]) == (0.1, 0.3)
        assert "Up" in tor.cli("show", "bfd", "sessions")
        c.wait(ours_at_tor, 30, "our block at the ToR")

        # the ToR killed: graceful restart would keep its route for 120 s; BFD takes it out
        tor.kill()
        c.wait(lambda: not installed(), 5, "the ToR's route out by BFD")
        assert bfd()["sessions"][0]["detections"] == 1
        assert bfd()["bgp_held_down"] == [TOR_IP]
        log = (node.workdir / "bgpd.log").read_text()
        assert '"event": "bfd_session_down_bgp"' in log
        tor.start()
        c.wait(installed, 30, "the route back with BFD and BGP")
        assert bfd()["bgp_held_down"] == []

        # BFD's packets dropped at the ToR, TCP untouched: BGP is held down all the same
        drop_bfd(tor.ns, True)
        c.wait(lambda: not installed(), 5, "the route out: BFD says the path failed")
        c.wait(lambda: not any(p["established"] for p in c.status(node)["peers"]), 10,
               "the BGP session down")
        assert c.status(node)["bfd"]["bgp_held_down"] == [TOR_IP]
        drop_bfd(tor.ns, False)
        c.wait(installed, 30, "the route back once BFD is Up")

    finally:
        c.stop_all()


def test_multihop_bfd_takes_a_tor_behind_a_router_out(
        lab: NetLab, tmp_path: Path, bird2: None) -> None:
    """node-1 one router away from a BIRD 2 ToR (eBGP multihop on both sides), its BGPPeer
    with ``bgpd/bfd-multihop``: a multihop session (no interface) beside node-0's single-hop
    one, coupled to BGP the same way — the ToR's BFD packets dropped, BGP is held down and
    the ToR's routes leave the RIB; back once BFD is Up (the status's count of the routes
    received from the ToR is watched)."""
    c = Cluster(lab, tmp_path, nodes=2, mode="CrossSubnet", tor_originate=(TOR_ROUTE,),
                tor_peer=False)
    assert isinstance(c.tor, Bird2)
    c.tor.bfd = (100, 100, 3)
    peer = c.calico("BGPPeer", "tor", {"peerIP": TOR_IP, "asNumber": TOR_AS,
                                       "failureDetectionMode": "BFDIfDirectlyConnected"})
    peer["metadata"]["annotations"] = {"bgpd/bfd-multihop": "true"}
    c.write_resources([peer, c.calico("BFDConfiguration", "default", {"interfaces": [
        {"matchPattern": "eth*", "minimumRecvInterval": "100ms", "minimumSendInterval": "100ms",
         "idleSendInterval": "1s", "multiplier": 3}]})])
    near, far = c.nodes
    c.start_all()
    try:
        tor = c.tor

        def session(node: Node) -> dict[str, Any]:
            (only,) = c.status(node)["bfd"]["sessions"]
            return dict(only)

        def learned(node: Node) -> int:  # (its own route and the other node's block; none
            # while BFD holds BGP down: the peer is then out of the speaker's configuration)
            return sum(int(p["routes_received"]) for p in c.status(node)["peers"]
                       if p["address"] == TOR_IP)

        for node in (near, far):
            c.wait(lambda n=node: session(n)["state"] == "Up", 30, f"{node.name}: BFD Up")
            c.wait(lambda n=node: learned(n) > 0, 30, f"{node.name}: the ToR's routes")
        assert (session(near)["multihop"], session(near)["interface"]) == (False, "eth0")
        assert (session(far)["multihop"], session(far)["interface"]) == (True, None)
        assert (session(far)["interval"], session(far)["detection_time"]) == (0.1, 0.3)

        drop_bfd(tor.ns, True, port=4784)  # the multihop session's packets only
        c.wait(lambda: c.status(far)["bfd"]["bgp_held_down"] == [TOR_IP], 5,
               "far: BGP held down by BFD")
        c.wait(lambda: learned(far) == 0, 5, "far: the ToR's routes out")
        assert session(near)["state"] == "Up" and learned(near) > 0  # single hop untouched
        assert '"event": "bfd_session_down_bgp"' in (far.workdir / "bgpd.log").read_text()
        drop_bfd(tor.ns, False)
        c.wait(lambda: learned(far) > 0, 30, "far: the routes back once BFD is Up")
        assert c.status(far)["bfd"]["bgp_held_down"] == []
    finally:
        c.stop_all()


@pytest.fixture
def with_bird(lab: NetLab, tmp_path: Path, bird2: None) -> Iterator[
        tuple[Namespace, Namespace, Probe]]:
    """The probe in one namespace, BIRD 2 in the other, the IPv4 session Up."""
    a, b = pair(lab)
    start_bird(b, tmp_path / "bird")
    probe = Probe(a, [(B4, A4)])
    try:
        until(lambda: probe.states() == {B4: "Up"}, 20, "our session Up")
        yield a, b, probe
    finally:
        probe.close()


HOSTILE = r"""
import socket, struct, sys
target, mine = sys.argv[1], int(sys.argv[2])
def packet(state=3, mult=3, mine=mine, yours=0, flags=0, length=24, version=1):
    return struct.pack("!BBBBIIIII", version << 5, (state << 6) | flags, mult, length, mine,
                       yours, 100000, 100000, 0)
cases = {
    (255, 3784): [b"\x00" * 3, packet(version=2), packet(flags=0x04), packet(length=40),
                  packet(mult=0), packet(flags=0x01), packet(flags=0x30), packet(mine=0),
                  packet(state=3, yours=0),  # Up without a discriminator
                  packet(yours=0x7FFFFFFF)],  # a discriminator no session has
    (64, 3784): [packet(state=1)],  # a well-formed Down, but not from a neighbour (TTL 64)
    (255, 4784): [packet(state=1)],  # the single-hop session's peer, on the multihop port
}
for (ttl, port), packets in cases.items():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    for _ in range(int(sys.argv[3])):
        for p in packets:
            s.sendto(p, (target, port))
"""


def test_malformed_spoofed_and_flooded_packets_are_counted_never_a_flap(
        with_bird: tuple[Namespace, Namespace, Probe]) -> None:
    """From the peer's namespace: every kind of bad packet, 2,000 times each, as fast as
    Python sends them — each dropped and counted by its reason, the session Up throughout."""
    _, b, probe = with_bird
    before = probe.views()[B4]
    b.run(sys.executable, "-c", HOSTILE, A4, "1", "2000", timeout=120)
    reasons = {"short", "version", "authentication", "length", "detect_mult", "multipoint",
               "poll_and_final", "my_discriminator", "your_discriminator",
               "unknown_discriminator", "ttl", "wrong_port"}
    events: list[dict[str, Any]] = []

    def read() -> dict[str, Any]:  # the engine may still be reading the flood
        assert probe.proc.stdin is not None and probe.proc.stdout is not None
        probe.proc.stdin.write(b"views\n")
        probe.proc.stdin.flush()
        while "views" not in (line := json.loads(probe.proc.stdout.readline())):
            events.append(line)
        return line

    until(lambda: reasons <= set(read()["dropped"]), 10, "every bad packet counted",
          context=lambda: f"dropped: {read()['dropped']}")
    last = read()
    after = {v["peer"]: v for v in last["views"]}[B4]
    assert [e for e in events if e.get("type") == "Transition"] == []
    assert after["state"] == "Up" and after["failures"] == before["failures"] == 0
    dropped = dict(last["dropped"])
    assert dropped.pop("unknown_peer", 0) < 100  # BIRD's IPv6 session: the probe has none
    # (the kernel may drop some of a flood before the socket: at most 2,000 each)
    assert set(dropped) == reasons
    assert all(0 < n <= 2000 for n in dropped.values()), dropped


def test_an_engine_that_dies_is_started_again_and_its_sessions_come_back(
        with_bird: tuple[Namespace, Namespace, Probe]) -> None:
    """The engine process killed: the daemon's side logs it, starts it again with the
    sessions wanted, and they come Up again with the peer."""
    import os
    import signal

    probe = with_bird[2]
    first = probe.ask("engine", "engine")
    os.kill(first["engine"], signal.SIGKILL)
    until(lambda: probe.ask("engine", "engine")["restarts"] == 1, 10, "a new engine")
    assert probe.ask("engine", "engine")["engine"] != first["engine"]
    until(lambda: probe.states() == {B4: "Up"}, 20, "the session Up again")


def test_a_busy_event_loop_never_fails_a_session(
        with_bird: tuple[Namespace, Namespace, Probe]) -> None:
    """The daemon's event loop held for seconds — Python busy for 2 s, then one json.loads
    of 22 MB (C code that never lets go of the interpreter lock; a thread of the daemon
    missed three packets through it and the peer declared the session dead) — and the
    session stays Up: the engine is a process of its own."""
    probe = with_bird[2]
    until(lambda: probe.views()[B4]["detection_time"] == 0.3, 5, "the fast timers")
    assert probe.proc.stdin is not None and probe.proc.stdout is not None
    probe.proc.stdin.write(b"busy 2\nparse 20\nviews\n")
    probe.proc.stdin.flush()
    lines: list[dict[str, Any]] = []
    while not lines or "views" not in lines[-1]:
        lines.append(json.loads(probe.proc.stdout.readline()))
    assert [line for line in lines if line.get("type") == "Transition"] == []
    assert next(line for line in lines if "parse_s" in line)["parse_s"] > 0
    assert lines[-1]["views"][0]["state"] == "Up"
    assert lines[-1]["views"][0]["failures"] == 0


def test_a_session_that_cannot_be_made_is_reported_and_the_engine_runs(lab: NetLab) -> None:
    """Sessions over an interface the node does not have (the ``interface`` setting
    mistyped): each is reported as failed, with why; the engine keeps running."""
    a, _ = pair(lab)
    probe = Probe(a, [("fe80::9", "fe80::1"), (B4, A4)], interface="nosuch0")
    try:
        assert probe.proc.stdout is not None
        failed = json.loads(probe.proc.stdout.readline())
        assert (failed["type"], failed["peer"], failed["before"]) == ("Transition", "fe80::9",
                                                                     "-")
        assert "cannot send" in failed["diag"]
        assert json.loads(probe.proc.stdout.readline())["peer"] == B4  # reported too
        assert probe.views() == {}
        assert probe.ask("engine", "engine")["restarts"] == 0
    finally:
        probe.close()
