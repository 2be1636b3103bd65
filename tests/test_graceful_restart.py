"""Graceful restart (RFC 4724), helper and restarting-speaker sides."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from ribs.kernel_plan import KernelRoute
from ribs.rib import PeerState, Rib
from tests.ribs_helpers import context, export_peer, peer, route, session

CTX = context()
A, B, C = peer("10.10.1.7"), peer("10.10.1.8"), peer("10.10.1.9")


def rib_with(*peers, now: float = 0.0, gr: bool = True) -> Rib:  # type: ignore[no-untyped-def]
    rib = Rib(CTX)
    rib.set_peers([export_peer(p) for p in peers])
    for p in peers:
        rib.peer_up(session(p, gr=gr, restart_time=60), now=now)
    return rib


def prefixes(rib: Rib) -> set[str]:
    return {str(b.route.prefix) for b in rib.table.bests()}


def test_helper_keeps_routes_then_sweeps_what_was_not_resent_at_eor() -> None:
    rib = rib_with(A)
    for i in (1, 2, 3):
        rib.receive(route(f"172.17.{i}.0/24", A))
    fib_before = rib.fib_routes()
    assert rib.peer_down(A.key, now=10).changes == []
    assert rib.peers[A.key].state is PeerState.STALE
    assert rib.table.stale_count(A.key) == 3 and rib.fib_routes() == fib_before
    rib.peer_up(session(A, restart_time=60), now=20)
    rib.receive(route("172.17.1.0/24", A))
    rib.receive(route("172.17.2.0/24", A))
    delta = rib.end_of_rib(A.key, now=21)
    assert [str(c.prefix) for c in delta.changes] == ["172.17.3.0/24"]
    assert delta.fib_changed and prefixes(rib) == {"172.17.1.0/24", "172.17.2.0/24"}
    assert rib.table.stale_count() == 0 and rib.peers[A.key].state is PeerState.UP


def test_restart_time_expiry_drops_stale_routes() -> None:
    rib = rib_with(A)
    rib.receive(route("172.17.1.0/24", A))
    rib.peer_down(A.key, now=100)
    assert rib.next_deadline() == 160
    assert rib.tick(159.9).changes == []
    expired = rib.tick(160)
    assert [str(c.prefix) for c in expired.changes] == ["172.17.1.0/24"]
    assert expired.expired == [(A.key, 1)]
    assert rib.next_deadline() is None and rib.peers[A.key].state is PeerState.DOWN


def test_peer_without_graceful_restart_loses_routes_at_once() -> None:
    rib = rib_with(A, gr=False)
    rib.receive(route("172.17.1.0/24", A))
    delta = rib.peer_down(A.key, now=5)
    assert [str(c.prefix) for c in delta.changes] == ["172.17.1.0/24"] and delta.fib_changed


def test_a_session_ended_by_a_notification_loses_its_routes_at_once() -> None:
    """RFC 4724 4: graceful restart is for a session that went without a NOTIFICATION (a
    peer shut down on purpose, a Cease, takes its routes with it — as BIRD and FRR do)."""
    rib = rib_with(A)
    rib.receive(route("172.17.1.0/24", A))
    delta = rib.peer_down(A.key, now=5, graceful=False)
    assert [str(c.prefix) for c in delta.changes] == ["172.17.1.0/24"] and delta.fib_changed
    assert rib.peers[A.key].state is PeerState.DOWN and rib.next_deadline() is None


def test_a_failed_path_takes_routes_out_up_or_stale() -> None:
    """BFD said the path failed (RFC 5882): the routes go at once, whether the session is up
    or already down and kept stale by graceful restart."""
    rib = rib_with(A, B)
    rib.receive(route("172.17.1.0/24", A))
    rib.receive(route("172.17.2.0/24", B))
    delta = rib.path_failed(A.key)
    assert [str(c.prefix) for c in delta.changes] == ["172.17.1.0/24"] and delta.fib_changed
    rib.peer_down(B.key, now=5)
    assert rib.peers[B.key].state is PeerState.STALE
    delta = rib.path_failed(B.key)
    assert [str(c.prefix) for c in delta.changes] == ["172.17.2.0/24"]
    assert prefixes(rib) == set() and rib.next_deadline() is None
    assert rib.path_failed(B.key).changes == []  # already down: nothing more


def test_back_without_preserved_forwarding_drops_stale_at_once() -> None:
    rib = rib_with(A)
    rib.receive(route("172.17.1.0/24", A))
    rib.peer_down(A.key, now=5)
    delta = rib.peer_up(session(A, forwarding=False), now=6)
    assert [str(c.prefix) for c in delta.changes] == ["172.17.1.0/24"]


def test_no_eor_after_return_sweeps_at_stale_time() -> None:
    rib = rib_with(A)
    rib.receive(route("172.17.1.0/24", A))
    rib.peer_down(A.key, now=0)
    rib.peer_up(session(A), now=10)
    assert rib.next_deadline() == 10 + rib.stale_time
    assert [str(c.prefix) for c in rib.tick(10 + rib.stale_time).changes] == ["172.17.1.0/24"]
    assert rib.peers[A.key].state is PeerState.UP


def test_flap_before_eor_never_extends_the_deadline() -> None:
    rib = rib_with(A)
    rib.receive(route("172.17.1.0/24", A))
    rib.peer_down(A.key, now=0)
    rib.peer_up(session(A, restart_time=60), now=30)  # waiting for End-of-RIB until 150
    rib.peer_down(A.key, now=40)  # down again: 40 + restart time, if sooner
    assert rib.next_deadline() == 100
    assert prefixes(rib) == {"172.17.1.0/24"}
    assert rib.tick(100).changes


ADOPTED = [KernelRoute.via(ip_network(f"172.17.{i}.0/24"), ip_address(f"10.10.1.{i}"), "tunl0",
                           onlink=True) for i in (7, 8, 9)]


def restarting_rib(now: float = 0.0) -> Rib:
    rib = Rib(CTX)
    rib.set_peers([export_peer(p) for p in (A, B, C)])
    rib.begin_restart(ADOPTED, expected=[A.key, B.key, C.key], now=now, establish_grace=10,
                      deadline=120)
    return rib


def test_restart_holds_adopted_routes_until_every_peer_sent_eor() -> None:
    """And our End-of-RIB to each peer waits for that moment (RFC 4724 4.1): a peer that
    swept our stale routes at an earlier one would lose what we had not heard yet."""
    rib = restarting_rib()
    assert rib.fib_routes() == ADOPTED
    for p in (A, B, C):
        assert rib.peer_up(session(p), now=1).synced_peers == []
    rib.receive(route("172.17.7.0/24", A))
    rib.end_of_rib(A.key, now=2)
    rib.end_of_rib(B.key, now=2)
    assert rib.restarting and len(rib.fib_routes()) == 3
    delta = rib.end_of_rib(C.key, now=3)
    assert delta.fib_changed and not rib.restarting
    assert delta.synced_peers == sorted([A.key, B.key, C.key])
    assert rib.peer_up(session(A), now=4).synced_peers == [A.key]  # after: at once
    assert [str(r) for r in rib.fib_routes()] == ["172.17.7.0/24 via 10.10.1.7 dev tunl0 onlink"]


def test_a_peer_that_never_comes_up_does_not_hold_the_sweep_past_the_grace() -> None:
    rib = restarting_rib()
    rib.peer_up(session(A), now=1)
    rib.end_of_rib(A.key, now=2)
    rib.peer_up(session(B), now=1)
    rib.end_of_rib(B.key, now=2)
    assert rib.restarting and rib.next_deadline() == 10
    rib.tick(10)
    assert not rib.restarting  # C is down: not waited for


def test_a_restarting_peer_holds_the_sweep_only_briefly() -> None:
    rib = restarting_rib()  # peer_grace defaults to 5 s
    rib.peer_up(session(A), now=1)
    rib.peer_up(session(B), now=1)
    rib.peer_up(session(C, restarting=True), now=1)  # may wait for its own peers first
    rib.end_of_rib(A.key, now=2)
    rib.end_of_rib(B.key, now=2)
    assert rib.restarting and rib.next_deadline() == 6
    rib.tick(6)
    assert not rib.restarting


def test_a_restarting_peer_that_answers_quickly_is_waited_for() -> None:
    rib = restarting_rib()
    for p in (A, B):
        rib.peer_up(session(p), now=1)
        rib.end_of_rib(p.key, now=2)
    rib.peer_up(session(C, restarting=True), now=1)
    assert rib.restarting  # its routes are not swept before they arrive
    rib.receive(route("172.17.9.0/24", C))
    rib.end_of_rib(C.key, now=3)
    assert not rib.restarting
    assert [str(r) for r in rib.fib_routes()] == ["172.17.9.0/24 via 10.10.1.9 dev tunl0 onlink"]


def test_nothing_holds_the_sweep_past_the_deadline() -> None:
    rib = restarting_rib()
    for p in (A, B, C):
        rib.peer_up(session(p), now=1)  # up, but no End-of-RIB ever
    rib.tick(60)
    assert rib.restarting
    rib.tick(120)
    assert not rib.restarting and rib.fib_routes() == []


events = st.lists(st.tuples(st.sampled_from(["down", "up", "eor", "announce", "tick"]),
                            st.integers(0, 3), st.floats(0, 50)), max_size=30)


@settings(max_examples=200)
@given(events)
def test_stale_routes_never_outlive_their_deadline(script) -> None:  # type: ignore[no-untyped-def]
    rib = rib_with(A)
    rib.receive(route("172.17.1.0/24", A))
    now = 0.0
    bound = max(60.0, rib.stale_time)
    for action, i, step in script:
        deadline = rib.next_deadline()
        now += step
        if deadline is not None and now > deadline:
            now = deadline  # the caller arms a timer for the deadline it was given
        if action == "down":
            rib.peer_down(A.key, now=now)
        elif action == "up" and rib.peers[A.key].state in (PeerState.STALE, PeerState.DOWN):
            rib.peer_up(session(A, restart_time=60), now=now)
        elif action == "eor":
            rib.end_of_rib(A.key, now=now)
        elif action == "announce":
            rib.receive(route(f"172.17.{i}.0/24", A))
        rib.tick(now)
        if rib.table.stale_count(A.key):
            deadline = rib.next_deadline()
            assert deadline is not None and now < deadline <= now + bound
    final = rib.next_deadline()
    if final is not None:
        rib.tick(final)
    assert rib.table.stale_count(A.key) == 0


def test_another_nodes_block_outlives_its_peers_restart_on_the_datastores_word() -> None:
    """Reflectors gone longer than their restart time: a block's route stays — in the same
    kernel shape, never sent on, below any BGP route — while the datastore says its node
    holds it at that address; it goes when a peer sends it again, when the datastore says
    otherwise, or after stale_retention."""
    from dataclasses import replace

    from ribs.types import SourceKind

    owners = ((ip_network("172.17.9.0/24"), frozenset({ip_address("10.10.1.9")})),)
    ctx = replace(CTX, block_owners=owners, stale_retention=3600.0)
    rib = Rib(ctx)
    rib.set_peers([export_peer(A), export_peer(B)])
    rib.peer_up(session(A, restart_time=60), now=0)
    rib.receive(route("172.17.9.0/24", A, nh="10.10.1.9"))  # the node's own address
    rib.receive(route("172.17.8.0/24", A, nh="10.10.1.7"))  # via the reflector: not kept
    kernel = rib.fib_routes()
    rib.peer_down(A.key, now=10)
    delta = rib.tick(70)
    assert delta.retained == [ip_network("172.17.9.0/24")]
    assert {str(r.prefix) for r in rib.fib_routes()} == {"172.17.9.0/24"}
    assert [r for r in rib.fib_routes() if str(r.prefix) == "172.17.9.0/24"] == [
        r for r in kernel if str(r.prefix) == "172.17.9.0/24"]  # the same kernel route
    best = rib.table.best(ip_network("172.17.9.0/24"))
    assert best is not None and best.route.source.kind is SourceKind.RETAINED
    rib.peer_up(session(B), now=80)
    assert not rib.out.get(B.key)  # never sent on
    assert rib.next_deadline() == 70 + 3600
    # the datastore moves the block: let go
    moved = replace(ctx, block_owners=((ip_network("172.17.9.0/24"),
                                        frozenset({ip_address("10.10.1.20")})),))
    gone = rib.set_context(moved)
    assert gone.unretained == [(ip_network("172.17.9.0/24"),
                                "the datastore no longer has its node there")]
    assert rib.table.best(ip_network("172.17.9.0/24")) is None
    # kept again, then a peer sends the block: the BGP route replaces it
    rib2 = Rib(ctx)
    rib2.set_peers([export_peer(A), export_peer(B)])
    rib2.peer_up(session(A, restart_time=60), now=0)
    rib2.receive(route("172.17.9.0/24", A, nh="10.10.1.9"))
    rib2.peer_down(A.key, now=10)
    rib2.tick(70)
    rib2.peer_up(session(B), now=80)
    rib2.receive(route("172.17.9.0/24", B, nh="10.10.1.9"))
    assert not rib2.retained
    assert rib2.tick(70 + 3600).unretained == []
    # and one that runs out
    rib3 = Rib(ctx)
    rib3.set_peers([export_peer(A)])
    rib3.peer_up(session(A, restart_time=60), now=0)
    rib3.receive(route("172.17.9.0/24", A, nh="10.10.1.9"))
    rib3.peer_down(A.key, now=10)
    rib3.tick(70)
    ended = rib3.tick(70 + 3600)
    assert ended.unretained == [(ip_network("172.17.9.0/24"), "stale_retention ran out")]
    assert rib3.table.best(ip_network("172.17.9.0/24")) is None


def test_a_route_tagged_no_llgr_is_not_retained() -> None:
    """RFC 9494 4.7: NO_LLGR (65535:7) says the route must not be kept past graceful restart;
    the datastore's word does not keep it either."""
    from dataclasses import replace

    owners = ((ip_network("172.17.9.0/24"), frozenset({ip_address("10.10.1.9")})),)
    rib = Rib(replace(CTX, block_owners=owners, stale_retention=3600.0))
    rib.set_peers([export_peer(A)])
    rib.peer_up(session(A, restart_time=60), now=0)
    tagged = route("172.17.9.0/24", A, nh="10.10.1.9")
    rib.receive(replace(tagged, attrs=replace(tagged.attrs, communities=((65535, 7),))))
    rib.peer_down(A.key, now=10)
    delta = rib.tick(70)
    assert delta.retained == [] and rib.fib_routes() == []
