"""The speaker's sans-IO core: session transitions, the command channel, the refusal rule."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

from bgpd.speaker import codec
from bgpd.speaker.config import Neighbor, SpeakerConfig
from bgpd.speaker.core import (
    TRANSITIONS,
    CommandKind,
    SessionDown,
    SessionState,
    SessionUp,
    SpeakerCore,
)
from ribs.types import Attributes, prefix

N1, N2 = ip_address("198.51.100.2"), ip_address("198.51.100.3")
P1 = prefix("172.17.1.0/24")
A = Attributes(local_pref=100)


def configured(*addresses: object) -> SpeakerCore:
    core = SpeakerCore(retry=5.0)
    neighbors = tuple(Neighbor(name=f"Node_{a}", address=a, peer_as=64512, local_as=64512)
                      for a in addresses)  # type: ignore[arg-type]
    core.configure(SpeakerConfig(IPv4Address("198.51.100.1"), neighbors), "conf-1", wall=0.0)
    return core


def state(core: SpeakerCore, peer: object, what: str, reason: str = "") -> list[object]:
    return list(core.receive(codec.PeerState(peer, what, reason), wall=1.0))  # type: ignore[arg-type]


def test_every_transition_comes_from_the_table() -> None:
    core = configured(N1)
    assert state(core, N1, "connected") == []
    assert core.peers[N1].state is SessionState.CONNECT
    assert state(core, N1, "up") == [SessionUp(N1, None)]
    assert state(core, N1, "up") == []  # not a transition of the table: counted, ignored
    assert state(core, N1, "connected") == []
    assert core.peers[N1].state is SessionState.ESTABLISHED
    assert core.stats.unexpected_states == 2
    assert state(core, N1, "down", "hold timer") == [SessionDown(N1, "hold timer")]
    assert core.peers[N1].flaps == 1 and core.peers[N1].last_error == "hold timer"
    assert state(core, N2, "up") == []  # not configured: nothing
    for (before, _), after in TRANSITIONS.items():
        assert isinstance(before, SessionState) and isinstance(after, SessionState)


def test_a_session_that_ends_by_a_notification_says_so() -> None:
    core = configured(N1)
    state(core, N1, "up")
    core.receive(codec.Notification(N1, "code=6 subcode=2"), wall=1.0)
    assert state(core, N1, "down", "peer reset") == [
        SessionDown(N1, "peer reset", notification=True)]
    state(core, N1, "up")  # the next session starts clean
    assert state(core, N1, "down", "hold timer") == [SessionDown(N1, "hold timer")]


def test_updates_only_from_established_sessions() -> None:
    core = configured(N1)
    eor = codec.EndOfRib(N1, "ipv4 unicast")
    assert core.receive(eor, wall=0.0) == []
    state(core, N1, "up")
    assert core.receive(eor, wall=0.0) == [eor]


def test_one_command_in_flight_reload_first() -> None:
    core = configured(N1)
    core.advertise(N1, P1, A)
    first = core.next_command(0.0)
    assert first is not None and first.kind is CommandKind.RELOAD and first.config == "conf-1"
    assert core.next_command(0.0) is None  # the reload is in flight
    assert core.acknowledged(True, 0.0) is None and core.applied == "conf-1"
    routes = core.next_command(0.0)
    assert routes is not None and routes.kind is CommandKind.ROUTES
    core.acknowledged(True, 0.0)
    assert not core.busy() and core.pacer.advertised(N1) == 1
    assert core.acknowledged(True, 0.0) is None and core.stats.stray_acks == 1


def test_a_refused_route_command_is_not_on_the_wire_and_is_retried() -> None:
    core = configured(N1)
    core.next_command(0.0)
    core.acknowledged(True, 0.0)
    core.advertise(N1, P1, A)
    command = core.next_command(1.0)
    assert command is not None
    assert core.acknowledged(False, 1.0) is command
    assert core.pacer.advertised(N1) == 0 and core.stats.refused_commands == 1
    assert core.next_command(2.0) is None and core.wake_at() == 6.0
    again = core.next_command(6.0)
    assert again is not None and again.text == command.text
    core.acknowledged(True, 6.0)
    assert core.pacer.advertised(N1) == 1


def test_route_commands_are_pipelined_control_and_reload_go_alone() -> None:
    core = configured(N1, N2)
    core.window = 2
    assert core.next_command(0.0) is not None  # the reload
    core.acknowledged(True, 0.0)
    for i in range(4):
        core.advertise(N1 if i % 2 else N2, prefix(f"172.17.{i}.0/24"),
                       Attributes(local_pref=100 + i))  # four commands: attributes differ
    first, second = core.next_command(0.0), core.next_command(0.0)
    assert first is not None and second is not None and first.text != second.text
    assert core.next_command(0.0) is None  # the window is full
    core.control("neighbor 198.51.100.2 teardown 2")
    assert core.acknowledged(True, 0.0) is None
    assert core.next_command(0.0) is None  # control waits until nothing is in flight
    core.acknowledged(True, 0.0)
    control = core.next_command(0.0)
    assert control is not None and control.kind is CommandKind.CONTROL
    assert core.next_command(0.0) is None  # nothing after a control command until answered
    core.acknowledged(True, 0.0)
    third, fourth = core.next_command(0.0), core.next_command(0.0)
    assert third is not None and fourth is not None
    # a refusal: its owner cannot be told with certainty, every command in flight is retried
    assert core.acknowledged(False, 1.0) is third
    assert core.acknowledged(True, 1.0) is None and core.stats.stray_acks == 0
    assert core.pacer.advertised(N1) + core.pacer.advertised(N2) == 2
    assert core.next_command(2.0) is None and core.wake_at() == 6.0
    retried = [core.next_command(6.0), core.next_command(6.0)]
    assert {c.text for c in retried if c} == {third.text, fourth.text}


def test_a_refused_configuration_is_kept_out_and_not_sent_again() -> None:
    core = configured(N1)
    core.next_command(0.0)
    core.acknowledged(True, 0.0)
    core.configure(SpeakerConfig(IPv4Address("198.51.100.1")), "conf-2", wall=0.0)
    reload = core.next_command(0.0)
    assert reload is not None and reload.config == "conf-2"
    assert core.acknowledged(False, 0.0) is reload
    assert core.applied == "conf-1" and core.refusal and core.stats.refused_reloads == 1
    assert core.next_command(0.0) is None and core.configured()
    assert core.engine_started() == "conf-1"  # a restarted ExaBGP runs what it accepted
    core.configure(SpeakerConfig(IPv4Address("198.51.100.1")), "conf-3", wall=0.0)
    assert core.engine_started() == "conf-3"


def test_engine_lost_reports_sessions_down_and_forgets_the_wire() -> None:
    core = configured(N1, N2)
    core.next_command(0.0)
    core.acknowledged(True, 0.0)
    state(core, N1, "up")
    core.advertise(N1, P1, A)
    core.next_command(0.0)
    core.acknowledged(True, 0.0)
    assert core.engine_lost("BGP engine restart", wall=2.0) == [
        SessionDown(N1, "BGP engine restart")]
    assert not core.in_flight and core.pacer.advertised(N1) == 0
    assert core.pacer.pending[N1] == {P1: A}  # sent again to the next ExaBGP


def test_decommission_withdraws_then_ends_the_rib_of_every_session_up() -> None:
    """Withdrawals alone leave a graceful-restart peer the routes of our previous session
    (it sweeps them at our End-of-RIB): a decommission sends one after the withdrawals."""
    core = configured(N1, N2)
    core.next_command(0.0)
    core.acknowledged(True, 0.0)
    state(core, N1, "up")
    core.advertise(N1, P1, A)
    assert core.next_command(0.0) is not None  # the announcement
    core.acknowledged(True, 0.0)
    core.withdraw_everything()
    texts = []
    while (command := core.next_command(1.0)) is not None:
        texts.append(command.text)
        core.acknowledged(True, 1.0)
    assert texts[0].startswith(f"neighbor {N1} withdraw") and str(P1) in texts[0]
    assert texts[-1] == f"neighbor {N1} announce eor ipv4 unicast"  # N2 is down: none
    assert core.pacer.advertised(N1) == 0 and not core.busy()


def test_changes_for_a_peer_not_configured_are_dropped() -> None:
    """A change or End-of-RIB for a peer the configuration no longer has (the router's turn
    removed it after the RIB made the change): ExaBGP would refuse a command naming it, and
    the core would retry it for ever."""
    core = configured(N1)
    core.next_command(0.0)
    core.acknowledged(True, 0.0)
    core.advertise(N2, P1, A)
    core.end_of_rib(N2)
    assert core.next_command(1.0) is None and not core.busy()
    core.advertise(N1, P1, A)
    command = core.next_command(1.0)
    assert command is not None and command.text == codec.announce_command([N1], A, [P1])
