"""bgpd's speaker (real ExaBGP) against real BIRD 1.6, BIRD 2, FRR and GoBGP peers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import re
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest

from bgpd.speaker.core import SessionDown, SessionUp, SessionView
from bgpd.speaker.pacing import COOLDOWN
from integration_tests.netns import NetLab
from integration_tests.peers import Bird2, available
from integration_tests.speaker_lab import NODE_V4, NODE_V6, SpeakerLab, peer_v4, peer_v6, until

KINDS = ["bird1", "bird2", "frr", "gobgp"]


def needs(kind: str) -> None:
    why = available(kind)
    if why:
        pytest.skip(why)


def run(lab: NetLab, tmp_path: Path, scenario: Callable[[SpeakerLab], Awaitable[None]]) -> None:
    async def main() -> None:
        slab = SpeakerLab(lab, tmp_path)
        await scenario_setup(slab)
        speaker = asyncio.create_task(slab.speaker.run(), name="speaker")
        pump = asyncio.create_task(slab.pump(), name="pump")
        try:
            await scenario(slab)
        finally:
            speaker.cancel()
            pump.cancel()
            await asyncio.gather(speaker, pump, return_exceptions=True)
            for router in slab.routers:
                router.kill()

    async def scenario_setup(slab: SpeakerLab) -> None:
        pass

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("speaker_passive", [True, False],
                         ids=["speaker-passive", "speaker-active"])
def test_session_routes_both_ways_withdraw_and_change(lab: NetLab, tmp_path: Path, kind: str,
                                                      speaker_passive: bool) -> None:
    needs(kind)
    v6 = kind != "bird1"

    async def scenario(s: SpeakerLab) -> None:
        router = s.add_router(kind, passive=not speaker_passive,
                              originate=["172.17.2.0/24"] + (["fd00:17:2::/64"] if v6 else []))
        peers = [s.peer_config(0, passive=speaker_passive)]
        if v6:
            peers.append(s.peer_config(0, v6=True, passive=speaker_passive))
        s.configure(peers)
        await until(lambda: router.established(NODE_V4), 30, f"{kind} session up")
        # routes from the peer reach the speaker's events
        await until(lambda: "172.17.2.0/24" in s.received.get(peer_v4(0), {}), 15,
                    "peer's route received")
        # ours reach the peer
        s.announce(peer_v4(0), ["172.17.1.0/24", "172.17.11.0/24"], local_pref=100)
        await until(lambda: {"172.17.1.0/24", "172.17.11.0/24"} <= set(router.routes_from(NODE_V4)),
                    15, "our routes at the peer")
        assert router.routes_from(NODE_V4)["172.17.1.0/24"].next_hop == NODE_V4
        # attribute change: re-announce with another MED, no withdraw in between
        s.announce(peer_v4(0), ["172.17.1.0/24"], local_pref=100, med=7)
        await until(lambda: _med(router.routes_from(NODE_V4)["172.17.1.0/24"].attrs) == 7, 15,
                    "changed attributes at the peer")
        s.withdraw(peer_v4(0), ["172.17.11.0/24"])
        await until(lambda: "172.17.11.0/24" not in router.routes_from(NODE_V4), 15,
                    "withdrawn at the peer")
        if v6:
            await until(lambda: router.established(NODE_V6), 30, "IPv6 session up")
            s.announce(peer_v6(0), ["fd00:17:1::/64"], local_pref=100)
            await until(lambda: "fd00:17:1::/64" in router.routes_from(NODE_V6), 15,
                        "IPv6 route at the peer")
            await until(lambda: "fd00:17:2::/64" in s.received.get(peer_v6(0), {}), 15,
                        "peer's IPv6 route received")
        # the peer withdraws: the speaker reports it
        router.set_originate([])
        await until(lambda: "172.17.2.0/24" not in s.received.get(peer_v4(0), {}), 15,
                    "peer's withdrawal received")

    run(lab, tmp_path, scenario)


@pytest.mark.parametrize("kind", ["bird2", "frr"])
def test_md5(lab: NetLab, tmp_path: Path, kind: str) -> None:
    needs(kind)

    password = "s3cret pw" if kind == "bird2" else "s3cret_pw"  # FRR's CLI splits on spaces

    async def scenario(s: SpeakerLab) -> None:
        good = s.add_router(kind, password=password)
        bad = s.add_router(kind, password="other")
        s.configure([s.peer_config(0, password=password), s.peer_config(1, password="wrong")])
        await until(lambda: good.established(NODE_V4), 30, "session with the right password")
        def status() -> SessionView:  # (a frozen copy: read again each time)
            return s.speaker.peers[s.peer_config(1).address]

        # the kernel drops the other's segments; the status says so
        await until(lambda: status().last_error.startswith("TCP MD5"), 20, "the MD5 hint")
        assert "check that both sides have the same password" in status().last_error
        assert not bad.established(NODE_V4) and status().state.value != "Established"
        assert not s.speaker.peers[s.peer_config(0).address].last_error

    run(lab, tmp_path, scenario)


def test_exabgp_killed_peer_keeps_our_routes_and_nothing_is_withdrawn(lab: NetLab,
                                                                      tmp_path: Path) -> None:
    needs("bird2")

    async def scenario(s: SpeakerLab) -> None:
        router = s.add_router("bird2")
        s.configure([s.peer_config(0)])
        await until(lambda: router.established(NODE_V4), 30, "session up")
        s.announce(peer_v4(0), ["172.17.1.0/24"], local_pref=100)
        await until(lambda: "172.17.1.0/24" in router.routes_from(NODE_V4), 15, "route at peer")
        assert isinstance(router, Bird2)
        watcher = _withdraw_watcher(router)
        pid = s.speaker.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await until(lambda: not router.established(NODE_V4), 15, "peer saw the session drop")
        assert "172.17.1.0/24" in router.routes_from(NODE_V4)  # kept as stale (GR)
        await until(lambda: router.established(NODE_V4), 30, "session back")
        await until(lambda: s.speaker.restarts == 1, 5, "restart counted")
        await asyncio.sleep(1)
        assert "172.17.1.0/24" in router.routes_from(NODE_V4)
        assert watcher() == 0, "the peer withdrew our route at some point"
        assert any(isinstance(e, SessionDown) for e in s.seen)

    run(lab, tmp_path, scenario)


def test_peer_graceful_restart_is_reported_for_the_rib(lab: NetLab, tmp_path: Path) -> None:
    """BIRD restarts gracefully: the events say so (down, up with R and F set, routes again,
    End-of-RIB), which is what the RIB needs to keep that peer's routes meanwhile."""
    needs("bird2")
    from bgpd.speaker import codec

    async def scenario(s: SpeakerLab) -> None:
        # IPv4 only: a restarting BIRD waits for every session it has before it sends anything
        router = s.add_router("bird2", originate=["172.17.2.0/24"], v6=False)
        s.configure([s.peer_config(0)])
        await until(lambda: "172.17.2.0/24" in s.received.get(peer_v4(0), {}), 30, "routes")
        await until(lambda: any(isinstance(e, codec.EndOfRib) for e in s.seen), 30,
                    "the first session's End-of-RIB")
        before = len(s.seen)
        router.kill()
        assert isinstance(router, Bird2)
        router.start(graceful=True)
        def restarted_and_resynced() -> bool:
            kinds = [type(e).__name__ for e in s.seen[before:]]
            return "SessionUp" in kinds and "EndOfRib" in kinds[kinds.index("SessionUp"):]

        await until(restarted_and_resynced, 30, "End-of-RIB after the peer's restart")
        events = s.seen[before:]
        kinds = [type(e).__name__ for e in events]
        assert kinds.index("SessionDown") < kinds.index("SessionUp") < kinds.index("EndOfRib")
        up = next(e for e in events if isinstance(e, SessionUp))
        assert up.open is not None and up.open.graceful_restart is not None
        assert up.open.graceful_restart.restarting  # R: it restarted
        assert "ipv4/unicast" in up.open.graceful_restart.forwarding  # F: it kept forwarding

    run(lab, tmp_path, scenario)


def _withdraw_watcher(router: Bird2) -> Callable[[], int]:
    """How many times the peer's route-change counters recorded a withdrawal from us."""
    def count() -> int:
        out = router.cli("show", "protocols", "all", router._protocol(NODE_V4))
        for line in out.splitlines():
            if "Import withdraws:" in line:
                return int(line.split()[-1]) - start
        return 0
    start = 0
    start = count()
    return count


def test_reload_adds_and_removes_peers_without_resetting_others(lab: NetLab,
                                                                tmp_path: Path) -> None:
    needs("bird2")

    async def scenario(s: SpeakerLab) -> None:
        routers = [s.add_router("bird2") for _ in range(4)]
        s.configure([s.peer_config(0), s.peer_config(1), s.peer_config(2)])
        for router in routers[:3]:
            await until(partial(router.established, NODE_V4), 30, f"{router.ns} up")
        since = [routers[0].since(NODE_V4), routers[1].since(NODE_V4)]

        def ups_seen() -> int:
            return sum(isinstance(e, SessionUp) for e in s.seen)

        # BIRD may say Established before the speaker's events for it are read
        await until(lambda: ups_seen() == 3, 30, "the speaker saw the three sessions up")
        ups = ups_seen()
        s.configure([s.peer_config(0), s.peer_config(1), s.peer_config(3)])  # -2, +3
        await until(lambda: routers[3].established(NODE_V4), 30, "added peer up")
        await until(lambda: not routers[2].established(NODE_V4), 15, "removed peer down")
        assert all(r.same_session(was, r.since(NODE_V4))
                   for r, was in zip(routers[:2], since, strict=True))
        assert sum(isinstance(e, SessionUp) for e in s.seen) == ups + 1
        assert not any(isinstance(e, SessionDown) and str(e.peer) in (peer_v4(0), peer_v4(1))
                       for e in s.seen)

    run(lab, tmp_path, scenario)


def test_short_hold_time_keeps_the_session_up_while_idle(lab: NetLab, tmp_path: Path) -> None:
    """ExaBGP runs under bgpd's launcher, which gives an idle session a turn only when its
    socket is readable or its timers are due: with a 3 s hold time, keepalives must still go
    out in time and the peer's be read, or one side drops the session within 3 s."""
    needs("bird2")

    async def scenario(s: SpeakerLab) -> None:
        router = s.add_router("bird2")
        assert isinstance(router, Bird2)
        s.configure([dataclasses.replace(s.peer_config(0), hold_time=3)])  # keepalives every 1 s
        await until(lambda: router.established(NODE_V4), 30, "session up")
        since = router.since(NODE_V4)
        hold = re.search(r"Hold timer:\s+[\d.]+/(\d+)", router.cli("show", "protocols", "all",
                                                                    "n0"))
        assert hold is not None and hold.group(1) == "3", "negotiated hold time"
        # a duration, not an event: the session must survive five hold times untouched
        end = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < end:
            assert router.same_session(since, router.since(NODE_V4)), "the session was reset"
            await asyncio.sleep(0.5)
        assert not any(isinstance(e, SessionDown) for e in s.seen)

    run(lab, tmp_path, scenario)


@pytest.mark.parametrize(("kind", "unit"), [("bird2", True), ("gobgp", True), ("bird2", False)])
def test_churn_ends_in_the_intended_state(lab: NetLab, tmp_path: Path, kind: str, unit: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 announcements and withdrawals of 200 prefixes in bursts: the peer ends with
    exactly the last of each.  A prefix's next change goes to ExaBGP as soon as there is one
    (the pacer's cooldown is off): what keeps the order is the launcher's ``queued_changes``
    unit.  (Without the unit and with the cooldown still off, this failed in 2 of 3 runs.)
    With the unit left out, the pacer's cooldown is back on and keeps the order."""
    needs(kind)
    if not unit:
        monkeypatch.setenv("BGPD_EXABGP_SKIP", "queued_changes")

    async def scenario(s: SpeakerLab) -> None:
        router = s.add_router(kind)
        s.configure([s.peer_config(0)])
        await until(lambda: router.established(NODE_V4), 30, "session up")
        assert s.speaker.core.pacer.cooldown == (0.0 if unit else COOLDOWN)  # (the report)
        rnd = random.Random(7)
        prefixes = [f"172.17.{i}.0/24" for i in range(200)]
        final: dict[str, int | None] = {}
        for op in range(2000):
            p = rnd.choice(prefixes)
            if rnd.random() < 0.35:
                s.withdraw(peer_v4(0), [p])
                final[p] = None
            else:
                med = rnd.randrange(3)
                s.announce(peer_v4(0), [p], local_pref=100, med=med)
                final[p] = med
            if op % 50 == 0:
                await asyncio.sleep(0.01)  # let batches go out between bursts
        wanted = {p: m for p, m in final.items() if m is not None}

        def matches() -> bool:
            got = router.routes_from(NODE_V4)
            if set(got) != set(wanted):
                return False
            return all(_med(got[p].attrs) == wanted[p] for p in wanted)

        await until(matches, 60, "the peer's table equal to the final state")

    run(lab, tmp_path, scenario)


def _med(attrs: dict[str, str]) -> int:
    for key in ("BGP.med", "med"):
        if key in attrs and attrs[key] not in ("", "None"):
            return int(attrs[key])
    return 0


def test_each_family_reaches_only_its_sessions(lab: NetLab, tmp_path: Path) -> None:
    """A node with blocks in both families, the same attributes on each: a BIRD 2 peer's
    IPv4 session receives the IPv4 block and its IPv6 session the IPv6 block — no command
    mixes them (ExaBGP refused such a command whole, and the IPv4 block never left)."""
    needs("bird2")

    async def scenario(s: SpeakerLab) -> None:
        router = s.add_router("bird2", originate=[])
        s.configure([s.peer_config(0), s.peer_config(0, v6=True)])
        await until(lambda: router.established(NODE_V4) and router.established(NODE_V6), 30,
                    "both sessions up")
        both = ["172.17.1.0/24", "fd00:17:1::/64"]
        s.announce(peer_v4(0), both, local_pref=100)
        s.announce(peer_v6(0), both, local_pref=100)
        await until(lambda: "172.17.1.0/24" in router.routes_from(NODE_V4)
                    and "fd00:17:1::/64" in router.routes_from(NODE_V6), 15,
                    "each block on its family's session")
        assert set(router.routes_from(NODE_V4)) == {"172.17.1.0/24"}
        assert set(router.routes_from(NODE_V6)) == {"fd00:17:1::/64"}
        assert s.speaker.core.stats.refused_commands == 0
        s.withdraw(peer_v4(0), both)
        await until(lambda: not router.routes_from(NODE_V4), 15, "the IPv4 block withdrawn")
        assert set(router.routes_from(NODE_V6)) == {"fd00:17:1::/64"}

    run(lab, tmp_path, scenario)
