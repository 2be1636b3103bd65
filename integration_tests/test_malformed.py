"""Malformed messages from a peer that is not a Calico node, on the wire (RFC 7606).

bgpd nodes, real ExaBGP and kernel; their BGPPeer is the tests' raw speaker
(:mod:`integration_tests.raw_speaker`), which sends messages byte for byte.  The cases of
:mod:`integration_tests.malformed_cases` run against bgpd and against BIRD 2 in bgpd's place,
each checking the outcome, the withdrawals, the kernel and what the mesh peer holds.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
from ipaddress import IPv4Network, ip_network
from pathlib import Path
from typing import Any

import pytest

from bgpd.observability import request
from integration_tests.cluster import NODE_AS, TOR_IP, Cluster, Node
from integration_tests.malformed_cases import CASES, RAW_AS, Case, Ctx, action, as_careful
from integration_tests.netns import NetLab
from integration_tests.peers import Bird2, Neighbor, available
from integration_tests.raw_speaker import (
    MARKER,
    RawSession,
    RawSpeaker,
    as_path,
    attr,
    message,
    next_hop,
    origin,
    parse_update,
    update,
)
from integration_tests.waiting import WaitTimeout, wait_for

BIRD_IP = "198.51.100.40"
CASE_ROUTES = IPv4Network("172.20.0.0/14")  # p, w and the sentinel of every case


def _case_routes(lines: Any) -> set[str]:
    """The case routes among ``ip route`` lines (the first word a prefix; the node's own
    blocks' lines start with "blackhole")."""
    return {line.split()[0] for line in lines if line.startswith("172.2")
            and IPv4Network(line.split()[0]).subnet_of(CASE_ROUTES)}


class BgpdSubject:
    """A bgpd node as the raw speaker's peer: what it holds of the case routes (prefix ->
    AS_PATH, or the reason it refused one), its kernel, and its mesh peer's view."""

    name = "bgpd"

    def __init__(self, node: Node, mesh: Node) -> None:
        self.node, self.mesh, self.address = node, mesh, node.ip

    @staticmethod
    def rows(node: Node) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = asyncio.run(request(
            node.socket, {"command": "routes", "prefix": str(CASE_ROUTES)}))
        return rows

    def view(self) -> dict[str, str]:
        # a refused route's kernel column: "not installed: rejected by policy (REASON)"
        return {r["prefix"]: r["as_path"] if r["why"] is not None else
                "refused " + r["kernel"].rsplit(" ", 1)[-1] for r in self.rows(self.node)}

    def errors(self) -> int | None:
        """The RFC 7606 decisions counted for the raw speaker (``update_errors``)."""
        status = asyncio.run(request(self.node.socket, {"command": "status"}))
        peer = next((p for p in status["peers"] if p["address"] == TOR_IP), None)
        return sum(peer["update_errors"].values()) if peer else 0

    def consistent(self, view: dict[str, str]) -> bool:
        """The kernel holds what was accepted, and so does the mesh peer (and nothing else)."""
        accepted = {p: v for p, v in view.items() if not v.startswith("refused")}
        return (_case_routes(self.node.routes()) == set(accepted)
                and {r["prefix"]: r["as_path"] for r in self.rows(self.mesh)} == accepted
                and _case_routes(self.mesh.routes()) == set(accepted))


class BirdSubject:
    name = "BIRD"

    def __init__(self, bird: Bird2) -> None:
        self.bird, self.address = bird, BIRD_IP

    def view(self) -> dict[str, str]:
        return {p: r.attrs.get("BGP.as_path", "") for p, r in self.bird.routes_from(TOR_IP).items()
                if IPv4Network(p).subnet_of(CASE_ROUTES)}

    def errors(self) -> int | None:
        return None  # (BIRD logs its decisions; it counts none)

    def consistent(self, view: dict[str, str]) -> bool:
        return True


def run_case(i: int, case: Case, subject: BgpdSubject | BirdSubject,
             session: RawSession) -> tuple[str, list[str]]:
    """One case on a fresh session: its outcome, and what went wrong besides."""
    p, w, sentinel = f"172.20.{i}.0/24", f"172.21.{i}.0/24", f"172.22.{i}.0/24"
    problems: list[str] = []
    good = origin() + as_path([RAW_AS]) + next_hop(TOR_IP)
    session.connect()
    session.send(update(attrs=good, nlri=(p, w)))
    wait_for(lambda: {p, w} <= subject.view().keys(), 10, f"{subject.name}: {p} and {w}")
    counted = subject.errors()
    session.send(case.build(Ctx(TOR_IP, subject.address, p, w)))
    session.send(update(attrs=good, nlri=(sentinel,)))
    wait_for(lambda: sentinel in subject.view() or session.state() != "up", 10,
             f"{subject.name}: the sentinel {sentinel} or the session's end")
    state = session.state()
    if state != "up":
        outcome = f"reset {state[0]}/{state[1]}" if isinstance(state, tuple) else "reset"
    else:
        view = subject.view()
        if case.withdraws and w in view:
            problems.append(f"{w} withdrawn but kept")
        if p not in view:
            outcome = "treat-as-withdraw"
        elif view[p].startswith("refused"):
            outcome = view[p]
        else:
            outcome = "accepted" if view[p] != str(RAW_AS) else "ignored"
        if outcome == "treat-as-withdraw" and counted is not None:
            try:
                wait_for(lambda: (subject.errors() or 0) > counted, 5,
                         f"{subject.name}: the decision counted")
            except WaitTimeout as exc:
                problems.append(str(exc).splitlines()[0])
        try:
            wait_for(lambda: subject.consistent(subject.view()), 10,
                     f"{subject.name}: the kernel and the mesh peer in step")
        except WaitTimeout as exc:
            problems.append(str(exc).splitlines()[0])
    session.disconnect()
    try:
        wait_for(lambda: not subject.view() and subject.consistent({}), 10,
                 f"{subject.name}: the session's routes gone")
    except WaitTimeout as exc:
        problems.append(str(exc).splitlines()[0])
    return outcome, problems


@pytest.mark.slow
def test_each_malformed_message_as_bgpd_and_bird_answer_it(lab: NetLab, tmp_path: Path) -> None:
    """Every case of :mod:`integration_tests.malformed_cases`, against a bgpd node (its
    kernel and its mesh peer checked too) and against BIRD 2 in its place: each outcome is
    the table's, bgpd's is at least as conservative as BIRD's (a difference has its reason in
    the table), no withdrawn route stays anywhere and the daemon never restarts."""
    why = available("bird2")
    if why:
        pytest.skip(why)
    c = Cluster(lab, tmp_path, nodes=2, tor=False)
    node, mesh = c.nodes
    raw = c._attach("raw", f"{TOR_IP}/24", "br0")
    bird_ns = c._attach("bird", f"{BIRD_IP}/24", "br0")
    c.write_resources([c.calico("BGPPeer", "raw", {"peerIP": TOR_IP, "asNumber": RAW_AS,
                                                   "node": node.name})])
    bird = Bird2(bird_ns, tmp_path / "bird", router_id=BIRD_IP, asn=NODE_AS,
                 neighbors=[Neighbor(TOR_IP, RAW_AS, passive=True, graceful_restart=False)])
    subjects: tuple[BgpdSubject | BirdSubject, ...] = (BgpdSubject(node, mesh),
                                                       BirdSubject(bird))
    sessions = [RawSession(raw.name, TOR_IP, s.address, asn=RAW_AS, workdir=tmp_path / s.name)
                for s in subjects]
    bird.start()
    c.start_all()
    try:
        c.wait(lambda: any(p["established"] for p in c.status(mesh)["peers"]), 30, "the mesh")
        pid = node.proc.pid if node.proc else None
        found: dict[str, tuple[str, str]] = {}
        problems: list[str] = []
        for i, case in enumerate(CASES):
            outcomes = []
            for subject, session in zip(subjects, sessions, strict=True):
                outcome, trouble = run_case(i, case, subject, session)
                outcomes.append(outcome)
                problems += [f"{case.name} ({subject.name}): {t}" for t in trouble]
            found[case.name] = (outcomes[0], outcomes[1])
        for name, (ours, birds) in found.items():
            print(f"{name:28} bgpd: {ours:30} BIRD: {birds}")
        for case in CASES:
            ours, birds = found[case.name]
            if (ours, birds) != (case.bgpd, case.bird):
                problems.append(f"{case.name}: bgpd {ours}, BIRD {birds}; the table says "
                                f"{case.bgpd}, {case.bird}")
            if not as_careful(ours, birds) or (action(ours) != action(birds) and not case.why):
                problems.append(f"{case.name}: bgpd {ours} against BIRD's {birds}")
        assert problems == [], "\n".join(problems)
        assert node.proc is not None and node.proc.poll() is None and node.proc.pid == pid
        status = c.status(node)
        assert status["speaker"]["restarts"] == 0
        mesh_peer = next(p for p in status["peers"] if p["address"] == mesh.ip)
        assert mesh_peer["established"] and mesh_peer["flaps"] == 0
    finally:
        for session in sessions:
            session.close()
        bird.stop()
        c.stop_all()


def test_a_malformed_update_withdraws_its_routes_and_keeps_its_withdrawals(
        lab: NetLab, tmp_path: Path) -> None:
    c = Cluster(lab, tmp_path, nodes=1, tor=False)
    node = c.nodes[0]
    ns = c._attach("raw", f"{TOR_IP}/24", "br0")
    c.write_resources([c.calico("BGPPeer", "raw", {"peerIP": TOR_IP, "asNumber": RAW_AS})])
    raw = RawSpeaker(ns.name, TOR_IP, asn=RAW_AS, workdir=tmp_path)
    c.start_all()
    try:
        def peer() -> dict[str, object]:
            return next(p for p in c.status(node)["peers"] if p["address"] == TOR_IP)

        def installed(prefix: str) -> bool:
            return any(r.startswith(prefix) for r in node.routes())

        c.wait(lambda: peer()["established"], 30, "the raw speaker's session")
        good = origin() + as_path([RAW_AS]) + next_hop(TOR_IP)
        raw.send(update(attrs=good, nlri=("172.20.1.0/24", "172.20.2.0/24")))
        c.wait(lambda: installed("172.20.1.0/24") and installed("172.20.2.0/24"), 10,
               "both routes in the kernel")
        # ORIGIN 5 on 172.20.1.0/24, in the UPDATE that withdraws 172.20.2.0/24: both go
        raw.send(update(withdrawn=("172.20.2.0/24",),
                        attrs=origin(5) + as_path([RAW_AS]) + next_hop(TOR_IP),
                        nlri=("172.20.1.0/24",)))
        c.wait(lambda: not installed("172.20.1.0/24") and not installed("172.20.2.0/24"), 10,
               "the malformed route treated as withdrawn, the withdrawal applied")
        assert peer()["update_errors"] == {"treat-as-withdraw: ORIGIN 'invalid'": 1}
        code, metrics = c.http(node, "/metrics")
        assert code == 200
        assert ('bgpd_update_errors_total{action="treat-as-withdraw",peer="198.51.100.1",'
                "reason=\"ORIGIN 'invalid'\"} 1.0") in metrics
        # a next hop of 0.0.0.0 is no next hop: refused; the valid route beside it is taken
        raw.send(update(attrs=origin() + as_path([RAW_AS]) + next_hop("0.0.0.0"),
                        nlri=("172.20.3.0/24",)))
        raw.send(update(attrs=good, nlri=("172.20.4.0/24",)))
        c.wait(lambda: installed("172.20.4.0/24"), 10, "the valid route")
        assert not installed("172.20.3.0/24")
        assert "rejected by policy (invalid_next_hop)" in c.bgpd(
            node, "routes", "--prefix", "172.20.3.0/24")
        assert peer()["established"] and peer()["flaps"] == 0
    finally:
        raw.close()
        c.stop_all()


FUZZ_SEED = int(os.environ.get("BGPD_FUZZ_SEED", "7606"))
FUZZ_MESSAGES = int(os.environ.get("BGPD_FUZZ_MESSAGES", "150"))


def random_update(rng: random.Random) -> bytes:
    """An UPDATE whose header is valid and whose body is not to be trusted: random bytes, a
    valid UPDATE with a few octets changed, or one cut short or run on."""
    kind = rng.randrange(3)
    if kind == 0:
        return message(2, rng.randbytes(rng.randrange(0, 120)))
    prefixes = tuple(f"172.20.{rng.randrange(256)}.0/24" for _ in range(rng.randrange(1, 4)))
    extra = rng.choice([b"", attr(0xC0, 8, rng.randbytes(4 * rng.randrange(1, 3))),
                        attr(0x80, 4, rng.randbytes(4)), attr(0xC0, 32, rng.randbytes(12))])
    valid = update(withdrawn=(f"172.21.{rng.randrange(256)}.0/24",),
                   attrs=origin(rng.randrange(3)) + as_path([RAW_AS]) + next_hop(TOR_IP) + extra,
                   nlri=prefixes)
    body = bytearray(valid[19:])
    if kind == 1:
        for _ in range(rng.randrange(1, 5)):
            body[rng.randrange(len(body))] = rng.randrange(256)
    elif rng.random() < 0.5:
        del body[rng.randrange(len(body)):]
    else:
        body += rng.randbytes(rng.randrange(1, 40))
    return message(2, bytes(body))


def announced(data: bytes) -> set[str]:
    """Every IPv4 prefix a message could announce, read as leniently as possible (its NLRI
    field and an MP_REACH_NLRI's, each cut where it runs out): the most any rule lets a peer
    install from it."""
    found: set[str] = set()

    def prefixes(raw: bytes) -> None:
        at = 0
        while at < len(raw) and raw[at] <= 32:
            bits, octets = raw[at], (raw[at] + 7) // 8
            address = bytes(raw[at + 1:at + 1 + octets]).ljust(4, b"\0")
            found.add(str(ip_network((address, bits), strict=False)))
            at += 1 + octets

    body = data[19:]
    withdrawn = int.from_bytes(body[:2], "big")
    size = int.from_bytes(body[2 + withdrawn:4 + withdrawn], "big")
    prefixes(body[4 + withdrawn + size:])
    try:
        reach = parse_update(data)[0].get(14, (0, b""))[1]
    except (IndexError, ValueError):
        reach = b""
    if len(reach) > 4:
        prefixes(reach[5 + reach[3]:])
    return found


def test_random_bytes_after_a_valid_header_change_nothing_but_by_the_rules(
        lab: NetLab, tmp_path: Path) -> None:
    """Property test on the wire: UPDATEs with a valid header and a random, mutated or cut
    body (``BGPD_FUZZ_MESSAGES`` of them from ``BGPD_FUZZ_SEED``; another seed explores
    more), each followed by a valid one announcing a sentinel.  After each: the session either
    took the sentinel or ended with a NOTIFICATION (never a silent reset); the routes bgpd
    holds from the peer are only sentinels or prefixes a message of that session carried; the
    kernel and the mesh peer agree with it.  Throughout: the daemon and its ExaBGP never
    restart and the mesh session never flaps; at the end every route of the peer is gone."""
    rng = random.Random(FUZZ_SEED)
    c = Cluster(lab, tmp_path, nodes=2, tor=False)
    node, mesh = c.nodes
    raw = c._attach("raw", f"{TOR_IP}/24", "br0")
    c.write_resources([c.calico("BGPPeer", "raw", {"peerIP": TOR_IP, "asNumber": RAW_AS,
                                                   "node": node.name})])
    subject = BgpdSubject(node, mesh)
    session = RawSession(raw.name, TOR_IP, node.ip, asn=RAW_AS, workdir=tmp_path / "raw")
    good = origin() + as_path([RAW_AS]) + next_hop(TOR_IP)
    c.start_all()
    try:
        c.wait(c.blocks_everywhere, 30, "the mesh: each node's block at the other")
        pid = node.proc.pid if node.proc else None
        allowed: set[str] = set()
        resets: dict[tuple[int, int], int] = {}
        session.connect()
        for i in range(FUZZ_MESSAGES):
            data = random_update(rng)
            sentinel = f"172.22.{i % 256}.0/24"
            where = f"seed {FUZZ_SEED}, message {i} ({data.hex()})"
            allowed |= announced(data) | {sentinel}
            session.send(data)
            session.send(update(attrs=good, nlri=(sentinel,)))
            def settled(s: str = sentinel) -> bool:
                return s in subject.view() or session.state() != "up"

            wait_for(settled, 10, f"the sentinel or the session's end after {where}")
            state = session.state()
            if state != "up":
                assert isinstance(state, tuple), f"a reset without a NOTIFICATION after {where}"
                resets[state] = resets.get(state, 0) + 1
                wait_for(lambda: not subject.view() and subject.consistent({}), 10,
                         f"the reset session's routes gone after {where}")
                allowed = set()
                session.connect()
                continue
            view = subject.view()
            taken = {p for p, v in view.items() if not v.startswith("refused")}
            assert taken <= allowed, f"{sorted(taken - allowed)} installed after {where}"
            wait_for(lambda: subject.consistent(subject.view()), 10,
                     f"the kernel and the mesh peer in step after {where}")
        print(f"seed {FUZZ_SEED}: {FUZZ_MESSAGES} messages, resets {resets}")
        session.disconnect()
        c.wait(lambda: not subject.view() and subject.consistent({}), 10,
               "every route of the peer gone")
        assert node.proc is not None and node.proc.poll() is None and node.proc.pid == pid
        status = c.status(node)
        assert status["speaker"]["restarts"] == 0
        mesh_peer = next(p for p in status["peers"] if p["address"] == mesh.ip)
        assert mesh_peer["established"] and mesh_peer["flaps"] == 0
        assert c.blocks_everywhere()
    finally:
        session.close()
        c.stop_all()


def test_a_route_refresh_is_answered_and_the_session_stands(lab: NetLab, tmp_path: Path) -> None:
    """RFC 7313: a peer that negotiated enhanced route refresh asks for the routes again;
    they come back between a Beginning-of-RIB-Refresh and an End-of-RIB-Refresh, and the
    session goes on (ExaBGP's answer, bracketed by ROUTE-REFRESH messages, once broke the
    session in bgpd's update-groups unit)."""
    c = Cluster(lab, tmp_path, nodes=1, tor=False)
    node = c.nodes[0]
    raw = c._attach("raw", f"{TOR_IP}/24", "br0")
    c.write_resources([c.calico("BGPPeer", "raw", {"peerIP": TOR_IP, "asNumber": RAW_AS})])
    session = RawSession(raw.name, TOR_IP, node.ip, asn=RAW_AS, workdir=tmp_path / "raw",
                         refresh=True)
    c.start_all()
    try:
        session.connect()
        c.wait(lambda: any("172.17.1.0/24" in nlri for _, nlri in session.updates()),
               30, "node-0's block at the peer")
        before = len(session.received())
        session.send(message(5, struct.pack("!HBB", 1, 0, 1)))  # a request, IPv4 unicast
        c.wait(lambda: (5, 2) in session.received()[before:], 10, "the End-of-RIB-Refresh")
        answer = session.received()[before:]
        assert answer[0] == (5, 1) and answer[-1] == (5, 2) and (2, 0) in answer, answer
        assert session.state() == "up"
        assert c.status(node)["speaker"]["restarts"] == 0
        assert "exabgp_line_malformed" not in (node.workdir / "bgpd.log").read_text()
    finally:
        session.close()
        c.stop_all()


def cluster_with_raw_peer(lab: NetLab, tmp_path: Path) -> tuple[Cluster, RawSpeaker]:
    c = Cluster(lab, tmp_path, nodes=1, tor=False)
    ns = c._attach("raw", f"{TOR_IP}/24", "br0")
    c.write_resources([c.calico("BGPPeer", "raw", {"peerIP": TOR_IP, "asNumber": RAW_AS})])
    return c, RawSpeaker(ns.name, TOR_IP, asn=RAW_AS, workdir=tmp_path)


@pytest.mark.parametrize(("what", "data", "notification"), [
    ("a bad marker", b"\x00" * 16 + message(4, b"")[16:], (1, 1)),
    ("a length over 4096", MARKER + (5000).to_bytes(2, "big") + bytes([2]) + b"\x00" * 200,
     (1, 2)),
], ids=["marker", "length"])
def test_a_message_that_cannot_be_read_gets_its_notification(
        lab: NetLab, tmp_path: Path, what: str, data: bytes,
        notification: tuple[int, int]) -> None:
    """RFC 4271 6.1: the session ends with NOTIFICATION 1/1 (Connection Not Synchronized)
    or 1/2 (Bad Message Length) — not a reset; the other sessions and routes stay."""
    c, raw = cluster_with_raw_peer(lab, tmp_path)
    node = c.nodes[0]
    c.start_all()
    try:
        c.wait(lambda: any(p["established"] for p in c.status(node)["peers"]), 30,
               "the raw speaker's session")
        pid = node.proc.pid if node.proc else None
        raw.send(data)
        c.wait(lambda: raw.notifications() == [notification], 10,
               f"NOTIFICATION {notification} for {what}")
        assert node.proc is not None and node.proc.poll() is None and node.proc.pid == pid
        assert c.status(node)["speaker"]["restarts"] == 0
    finally:
        raw.close()
        c.stop_all()


def test_unknown_optional_transitive_attributes_are_passed_on_with_the_partial_bit(
        lab: NetLab, tmp_path: Path) -> None:
    """RFC 4271 §5 and §9, as BIRD and FRR do: an optional transitive attribute bgpd does not
    know goes on to the next peer as received, with the Partial bit set; an unknown
    optional non-transitive one is dropped."""
    c = Cluster(lab, tmp_path, nodes=1, tor=False)
    node = c.nodes[0]
    first = c._attach("raw", f"{TOR_IP}/24", "br0")
    other_ip = "198.51.100.2"
    second = c._attach("raw2", f"{other_ip}/24", "br0")
    c.write_resources([c.calico("BGPPeer", "raw", {"peerIP": TOR_IP, "asNumber": RAW_AS}),
                       c.calico("BGPPeer", "raw2", {"peerIP": other_ip, "asNumber": 65200})])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sender = RawSpeaker(first.name, TOR_IP, asn=RAW_AS, workdir=tmp_path / "a")
    receiver = RawSpeaker(second.name, other_ip, asn=65200, workdir=tmp_path / "b")
    c.start_all()
    try:
        c.wait(lambda: all(p["established"] for p in c.status(node)["peers"])
               and len(c.status(node)["peers"]) == 2, 30, "both raw sessions")
        transitive = attr(0xC0, 99, b"\x01\x02\x03")
        non_transitive = attr(0x80, 100, b"\x04")
        sender.send(update(attrs=origin() + as_path([RAW_AS]) + next_hop(TOR_IP)
                           + transitive + non_transitive, nlri=("172.20.1.0/24",)))

        def passed_on() -> dict[int, tuple[int, bytes]] | None:
            return next((attrs for attrs, nlri in receiver.updates()
                         if "172.20.1.0/24" in nlri), None)

        c.wait(lambda: passed_on() is not None, 15, "the route at the other peer")
        attrs = passed_on()
        assert attrs is not None
        assert attrs[99] == (0xE0, b"\x01\x02\x03")  # optional, transitive, Partial
        assert 100 not in attrs
    finally:
        sender.close()
        receiver.close()
        c.stop_all()
