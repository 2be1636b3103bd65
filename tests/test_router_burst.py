"""The router's burst of speaker events (one delta per slice of work, the rest left queued),
and why it drains."""

from __future__ import annotations

import asyncio
import time
import types
from typing import Any

from bgpd import router
from ribs.rib import Delta


def test_a_burst_is_cut_into_slices_of_work_and_nothing_is_lost_or_reordered() -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()
    node: Any = router.Router(settings=None, speaker=types.SimpleNamespace(events=events),  # type: ignore[arg-type]
                              kernel=None, desired=None, adopted=[])  # type: ignore[arg-type]
    handled: list[int] = []

    def on_event(event: int) -> Delta:
        time.sleep(router.BURST_SLICE / 4)  # a quarter of a slice of work per event
        handled.append(event)
        return Delta(alarms=[f"event {event}"])

    node.on_event = on_event
    for event in range(1, 12):
        events.put_nowait(event)
    slices = []
    first = 0
    while True:
        delta = node.burst(first)
        slices.append([int(a.split()[1]) for a in delta.alarms])
        if events.empty():
            break
        first = events.get_nowait()
    assert handled == list(range(12)) == [e for s in slices for e in s]
    assert len(slices) >= 3  # 12 events of a quarter slice each do not fit one slice
    assert all(len(s) <= 4 for s in slices)  # each stops once its slice is spent


def test_the_node_drains_on_a_taint_the_settings_name() -> None:
    from bgpd.settings import Settings
    from node_controller.desired import DesiredConfig

    node: Any = router.Router(settings=Settings(), speaker=None, kernel=None,  # type: ignore[arg-type]
                              desired=None, adopted=[])  # type: ignore[arg-type]
    tainted = DesiredConfig(node="n", local_as=64512,
                            taints=("dedicated", "karpenter.sh/disrupted"))
    assert node.why_drain(tainted) == "tainted karpenter.sh/disrupted"
    assert node.why_drain(DesiredConfig(node="n", local_as=64512, taints=("dedicated",))) is None
    node.settings = Settings(drain_taints="dedicated")
    assert node.why_drain(tainted) == "tainted dedicated"
    cordoned = DesiredConfig(node="n", local_as=64512, draining="cordoned (spec.unschedulable)",
                             taints=("dedicated",))
    assert node.why_drain(cordoned) == "cordoned (spec.unschedulable)"
    node.request_drain(True)
    assert node.why_drain(cordoned) == "bgpd drain"


def test_an_empty_delta_before_any_configuration_changes_nothing() -> None:
    """The router's loop publishes after every wake-up — a ``bgpd drain`` or a BFD event
    before the first configuration arrives (the API down at start) included: no RIB yet,
    nothing to tell, and no exception to end the task."""
    told: list[Any] = []
    speaker = types.SimpleNamespace(advertise=told.append, end_of_rib=told.append,
                                    teardown=told.append)
    node: Any = router.Router(settings=None, speaker=speaker, kernel=None,  # type: ignore[arg-type]
                              desired=None, adopted=[])  # type: ignore[arg-type]
    assert node.rib is None
    node.publish(Delta())
    assert told == [] and node.stats.adverts_sent == 0


def test_a_peer_removed_in_the_delta_that_synced_it_gets_no_end_of_rib() -> None:
    """One delta merges a turn's events: a peer can send its whole table (End-of-RIB due)
    and be removed by the configuration (a handover done) in the same turn.  Its session
    ends; publishing tells it nothing and does not end the router's task."""
    told: list[Any] = []
    speaker = types.SimpleNamespace(advertise=told.append, end_of_rib=told.append,
                                    teardown=lambda peer, code: told.append(peer))
    node: Any = router.Router(settings=None, speaker=speaker, kernel=None,  # type: ignore[arg-type]
                              desired=None, adopted=[])  # type: ignore[arg-type]
    node.rib = types.SimpleNamespace(peers={})  # (the peer already removed)
    gone = ("bgp", "198.51.100.12")
    node.publish(Delta(synced_peers=[gone], teardowns=[gone]))
    assert told == []
