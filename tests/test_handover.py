"""Make-before-break: which sessions are held after the configuration stopped wanting them
(:mod:`bgpd.handover`), and the RIB's word on whether another session brings their routes."""

from __future__ import annotations

from ipaddress import ip_address

from bgpd.handover import Held, hold
from bgpd.speaker.config import Neighbor
from node_controller.desired import PeerConfig
from ribs.rib import Rib
from ribs.types import Address
from tests.ribs_helpers import context, export_peer, peer, route, session

A, B, TOR = ip_address("10.10.1.7"), ip_address("10.10.1.8"), ip_address("10.10.1.1")


def applied(*addresses: Address, node: bool = True) -> dict[Address, tuple[PeerConfig, Neighbor]]:
    return {a: (PeerConfig(name=f"Mesh_{a}", address=a, port=179, peer_as=64512, local_as=64512,
                           type="mesh",
                           calico_node=f"n{str(a)[-1]}" if node else None),
                Neighbor(name=f"Mesh_{a}", address=a, peer_as=64512, local_as=64512))
            for a in addresses}


NODES = {A: "n7", B: "n8"}


def test_a_node_session_left_out_is_held_until_its_routes_come_from_elsewhere() -> None:
    before = applied(A, B)
    held, released = hold(applied=before, wanted={B}, nodes=NODES, held={},
                          covered=lambda a: False, now=10.0, limit=60.0)
    assert list(held) == [A] and held[A].since == 10.0 and released == []
    # later, still not covered: held since the first time
    held, released = hold(applied=before, wanted={B}, nodes=NODES, held=held,
                          covered=lambda a: False, now=40.0, limit=60.0)
    assert held[A].since == 10.0 and released == []
    # its routes come from another complete session: let go
    held2, released = hold(applied=before, wanted={B}, nodes=NODES, held=held,
                           covered=lambda a: True, now=41.0, limit=60.0)
    assert held2 == {} and released == [(before[A][0], "replaced")]
    # or its time is up
    held3, released = hold(applied=before, wanted={B}, nodes=NODES, held=held,
                           covered=lambda a: False, now=70.0, limit=60.0)
    assert held3 == {} and released == [(before[A][0], "expired")]


def test_no_holding_for_a_node_gone_or_moved_an_external_peer_or_a_zero_limit() -> None:
    def kept(**kw: object) -> dict[Address, Held]:
        args: dict[str, object] = {"applied": applied(A), "wanted": set(), "nodes": NODES,
                                   "held": {}, "covered": lambda a: False, "now": 0.0,
                                   "limit": 60.0, **kw}
        return hold(**args)[0]  # type: ignore[arg-type]

    assert list(kept()) == [A]
    assert kept(nodes={}) == {}  # the node deleted
    assert kept(nodes={B: "n7"}) == {}  # the node at another address now
    assert kept(applied=applied(A, node=False)) == {}  # not a node's session (a ToR)
    assert kept(limit=0.0) == {}  # handover_seconds: 0
    assert kept(wanted={A}) == {}  # wanted again: it simply goes on
    assert kept(covered=lambda a: True) == {}  # nothing to lose: ended at once, silently


def test_a_route_is_covered_by_another_session_only_once_it_is_up_and_complete() -> None:
    rib = Rib(context())
    mesh, reflector = peer("10.10.1.7"), peer("10.10.1.20")
    rib.set_peers([export_peer(mesh), export_peer(reflector)])
    rib.peer_up(session(mesh), now=0)
    rib.receive(route("172.17.7.0/24", mesh, nh="10.10.1.7"))
    assert not rib.covered_elsewhere(mesh.key)  # nobody else brings it
    rib.peer_up(session(reflector), now=1)
    rib.receive(route("172.17.7.0/24", reflector, nh="10.10.1.7"))
    assert not rib.covered_elsewhere(mesh.key)  # the reflector has not sent End-of-RIB
    rib.end_of_rib(reflector.key, now=2)
    assert rib.covered_elsewhere(mesh.key)
    assert not rib.covered_elsewhere(mesh.key, excluding=[reflector.key])  # leaving too
    rib.receive(route("172.17.8.0/24", mesh, nh="10.10.1.7"))
    assert not rib.covered_elsewhere(mesh.key)  # a route only the mesh session brings
    rib.peer_down(reflector.key, now=3, graceful=False)
    rib.peer_up(session(reflector), now=4)
    assert not rib.covered_elsewhere(mesh.key)  # a new session: complete once its EoR comes
