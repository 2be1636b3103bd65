"""BFD's packet codec and session core (RFC 5880), driven with time passed in."""

from __future__ import annotations

import copy
import struct
from dataclasses import replace
from ipaddress import ip_address

import pytest

from bgpd.bfd.packet import Control, Diag, Malformed, State, decode, encode
from bgpd.bfd.session import DAMP_AFTER, DAMP_FIRST, Session, SignalKind, Step, Timers

FAST = Timers(min_tx=0.1, min_rx=0.1, idle_tx=1.0, multiplier=3)
A, B = ip_address("192.0.2.1"), ip_address("192.0.2.2")


def up_packet(**changes: object) -> Control:
    base = Control(state=State.UP, my_discriminator=7, your_discriminator=1,
                   desired_min_tx=100_000, required_min_rx=100_000, detect_mult=3)
    return base._replace(**changes)  # type: ignore[arg-type]


def test_a_packet_survives_the_wire() -> None:
    pkt = up_packet(diag=Diag.NEIGHBOR_DOWN, poll=True, control_plane_independent=True)
    assert decode(encode(pkt)) == pkt
    assert len(encode(pkt)) == 24


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda b: b[:20], "short"),
    (lambda b: bytes([0x40]) + b[1:], "version"),  # version 2
    (lambda b: b[:1] + bytes([b[1] | 0x04]) + b[2:], "authentication"),
    (lambda b: b[:3] + bytes([30]) + b[4:], "length"),  # longer than the datagram
    (lambda b: b[:3] + bytes([20]) + b[4:], "length"),
    (lambda b: b[:2] + bytes([0]) + b[3:], "detect_mult"),
    (lambda b: b[:1] + bytes([b[1] | 0x01]) + b[2:], "multipoint"),
    (lambda b: b[:1] + bytes([b[1] | 0x30]) + b[2:], "poll_and_final"),
    (lambda b: b[:4] + struct.pack("!I", 0) + b[8:], "my_discriminator"),
    (lambda b: b[:8] + struct.pack("!I", 0) + b[12:], "your_discriminator"),  # Up needs it
])
def test_every_malformed_packet_names_its_fault(mutate, reason) -> None:
    with pytest.raises(Malformed, match=f"^{reason}$"):
        decode(mutate(encode(up_packet())))


def test_down_with_no_discriminator_yet_is_valid() -> None:
    pkt = decode(encode(up_packet(state=State.DOWN, your_discriminator=0)))
    assert pkt.state is State.DOWN


def pair(timers: Timers = FAST) -> tuple[Session, Session]:
    return (Session(peer=B, local=A, discriminator=1, timers=timers, now=0.0,
                    jitter=lambda: 1.0),
            Session(peer=A, local=B, discriminator=2, timers=timers, now=0.0,
                    jitter=lambda: 1.0))


def run(a: Session, b: Session, *, until: float, start: float = 0.0,
        cut: float | None = None) -> list[tuple[float, str, Step]]:
    """Both sessions ticking and exchanging packets (through the codec) from ``start`` to
    ``until``; from ``cut`` on nothing reaches ``a``.  Every step, by whose it is."""
    seen: list[tuple[float, str, Step]] = []
    names = {id(a): "a", id(b): "b"}

    def carry(step: Step, to: Session, back: Session, now: float) -> None:
        if cut is not None and now >= cut and to is a:
            return
        for pkt in step.send:
            reply = to.receive(decode(encode(pkt)), now)
            seen.append((now, names[id(to)], reply))
            carry(reply, back, to, now)

    while (now := min(a.next_deadline(), b.next_deadline(), until + 1)) <= until:
        for me, other in ((a, b), (b, a)):
            if me.next_deadline() <= now:
                step = me.tick(now)
                seen.append((now, names[id(me)], step))
                carry(step, other, me, now)
    return seen


def signals(seen: list[tuple[float, str, Step]], who: str) -> list[tuple[float, SignalKind]]:
    return [(t, s.signal.kind) for t, name, s in seen if name == who and s.signal]


def test_two_sessions_come_up_and_tell_bgp_once() -> None:
    a, b = pair()
    seen = run(a, b, until=3.0)
    assert a.state is b.state is State.UP
    assert [k for _, k in signals(seen, "a")] == [SignalKind.UP]
    assert a.tx_interval() == pytest.approx(0.1)
    assert a.detection_time() == pytest.approx(0.3)
    assert not a.polling and not b.polling  # the poll for the fast timers was answered


def test_silence_is_detected_within_the_detection_time() -> None:
    a, b = pair()
    run(a, b, until=2.5)
    seen = run(a, b, start=2.5, until=4.0, cut=2.5)
    downs = [(t, s) for t, name, s in seen if name == "a" and s.signal
             and s.signal.kind is SignalKind.DOWN]
    assert downs, "no DOWN after the peer went silent"
    at, step = downs[0]
    assert step.signal is not None and step.signal.diag is Diag.DETECTION_TIME_EXPIRED
    assert 2.5 < at <= 2.5 + a.detection_time() + 1e-9  # heard last at 2.5 at the latest
    assert a.counters.detections == 1 and a.counters.failures == 1
    assert a.remote_discriminator == 0  # §6.8.1


def test_admin_down_from_the_peer_is_not_a_failure() -> None:
    a, b = pair()
    run(a, b, until=2.0)
    step = a.receive(b.admin_down(2.0), 2.0)
    assert a.state is State.DOWN and a.diag is Diag.NEIGHBOR_DOWN
    assert step.signal is not None and step.signal.admin
    assert a.counters.failures == 0


def test_a_poll_is_answered_at_once_with_final() -> None:
    a, _ = pair()
    a.receive(up_packet(state=State.DOWN, your_discriminator=0), 0.0)
    a.receive(up_packet(state=State.INIT), 0.01)
    step = a.receive(up_packet(poll=True), 0.02)
    assert [p.final for p in step.send] == [True]
    assert not step.send[0].poll


def test_slower_timers_wait_for_final() -> None:
    a, b = pair()
    run(a, b, until=2.0)
    a.reconfigure(replace(FAST, min_tx=0.5, min_rx=0.05))
    assert a.polling
    assert a.packet().poll and a.packet().desired_min_tx == 500_000
    assert a.tx_interval() == pytest.approx(0.1)  # not slower before the peer agreed
    assert a.detection_time() == pytest.approx(0.3)  # the receive interval not yet shorter
    a.receive(up_packet(your_discriminator=1, final=True), 2.01)
    assert not a.polling
    assert a.tx_interval() == pytest.approx(0.5)


def test_a_peer_lowering_its_receive_interval_is_sent_to_sooner() -> None:
    """FRR's bfdd asks for 1 s while Init and 100 ms once Up: the next packet must not wait
    the second (it did, and FRR declared the session dead every 300 ms)."""
    a, _ = pair()
    a.receive(up_packet(state=State.INIT, required_min_rx=1_000_000), 0.0)
    assert a.state is State.UP
    assert a._next_tx >= 0.75
    a.receive(up_packet(poll=True), 0.01)
    assert a._next_tx <= 0.01 + 0.1


@pytest.mark.parametrize(("multiplier", "jitter", "share"), [
    (3, 0.0, 0.75), (3, 1.0, 1.0), (1, 0.0, 0.75), (1, 1.0, 0.9)])
def test_jitter_keeps_the_interval_between_75_and_100_percent(
        multiplier: int, jitter: float, share: float) -> None:
    """§6.8.7: 0 to 25 % less than the interval; at most 90 % of it with a multiplier of 1."""
    s = Session(peer=B, local=A, discriminator=1, timers=replace(FAST, multiplier=multiplier),
                now=10.0, jitter=lambda: jitter)
    s.receive(up_packet(state=State.DOWN, your_discriminator=0), 10.0)  # to Init, sent now
    assert s._next_tx - 10.0 == pytest.approx(s.tx_interval() * share)


@pytest.mark.parametrize("jitter", [0.0, 1.0])
def test_a_caller_that_ticks_late_still_sends_within_the_interval(jitter: float) -> None:
    """The engine runs ticks up to ``slack`` late (its loop turns once for many packets):
    the interval is drawn that much shorter at the top, never below 75 %."""
    s = Session(peer=B, local=A, discriminator=1, timers=FAST, now=10.0,
                jitter=lambda: jitter, slack=0.005)
    s.receive(up_packet(state=State.DOWN, your_discriminator=0), 10.0)
    interval = s.tx_interval()
    gap = s._next_tx - 10.0
    assert 0.75 * interval - 1e-9 <= gap and gap + s.slack <= interval + 1e-9


def test_a_steady_packet_heard_does_what_receiving_it_does() -> None:
    a, b = pair()
    run(a, b, until=3.0)
    twin = copy.deepcopy(a)
    pkt = b.packet()
    assert pkt.state is State.UP and not (pkt.poll or pkt.final)
    a.receive(pkt, 3.05)  # the packet taken in full once, then the same again
    twin.receive(pkt, 3.05)
    step = a.receive(pkt, 3.1)
    twin.heard(3.1)
    assert step == Step()
    assert (twin.state, twin._detect_at, twin.counters, twin.next_deadline()) == (
        a.state, a._detect_at, a.counters, a.next_deadline())


def test_the_periodic_packet_is_made_again_only_when_what_it_says_changes() -> None:
    a, b = pair()
    run(a, b, until=3.0)
    first = a.packet()
    assert a.packet() is first
    assert a.packet(final=True).final and a.packet() is first  # a Final is never kept
    a.reconfigure(replace(FAST, min_rx=0.05))  # a poll now carries the new receive interval
    changed = a.packet()
    assert changed is not first and changed.poll and changed.required_min_rx == 50_000
    assert decode(encode(changed)) == changed


def test_every_state_and_diagnostic_survives_the_wire() -> None:
    for state in State:
        for diag in Diag:
            pkt = up_packet(state=state, diag=diag)
            assert decode(encode(pkt)) == pkt


def test_a_flapping_session_is_held_before_bgp_hears_up_again() -> None:
    a, b = pair()
    now = 0.0
    told: list[SignalKind] = []
    for _ in range(DAMP_AFTER):
        seen = run(a, b, start=now, until=now + 2.0)
        told += [k for _, k in signals(seen, "a")]
        now += 2.0
        step = a.receive(up_packet(state=State.DOWN, your_discriminator=1), now)
        if step.signal:
            told.append(step.signal.kind)
    assert a.counters.failures == DAMP_AFTER
    assert a.held_for(now) == pytest.approx(DAMP_FIRST)
    seen = run(a, b, start=now, until=now + 2.0)
    assert a.state is State.UP and told[-1] is SignalKind.DOWN
    assert not signals(seen, "a")  # Up, but held
    assert a.counters.damped == 1
    seen = run(a, b, start=now + 2.0, until=now + DAMP_FIRST + 0.5)
    assert [k for _, k in signals(seen, "a")] == [SignalKind.UP]
