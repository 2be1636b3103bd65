"""The decision process, one table row per step (RFC 4271 §9.1.2.2, RFC 4456 §9)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ribs.bestpath import Step, _select_by_elimination, select
from ribs.types import LOCAL, Attributes, Origin, Route
from tests.ribs_helpers import peer, route

A, B = peer("10.0.0.1"), peer("10.0.0.2")
EA, EB = peer("10.0.0.3", asn=65001), peer("10.0.0.4", asn=65002)
P = "172.17.9.0/24"

CASES = [
    # (name, winner, loser, expected step)
    ("local beats BGP", Route(route(P, A).prefix, LOCAL, Attributes()), route(P, A),
     Step.PREFERENCE),
    ("higher local-pref", route(P, B, lp=200), route(P, A, lp=100), Step.LOCAL_PREF),
    ("missing local-pref counts as 100", route(P, B, lp=101), route(P, A), Step.LOCAL_PREF),
    ("shorter AS path", route(P, B, path=(65001,)), route(P, A, path=(65001, 65002)),
     Step.AS_PATH),
    ("lower origin", route(P, B, origin=Origin.IGP), route(P, A, origin=Origin.INCOMPLETE),
     Step.ORIGIN),
    ("lower MED, same neighbour AS", route(P, EB, path=(65001,), med=5),
     route(P, EA, path=(65001,), med=10), Step.MED),
    ("missing MED is lowest", route(P, EB, path=(65001,)), route(P, EA, path=(65001,), med=1),
     Step.MED),
    ("eBGP over iBGP", route(P, EB, path=(65002,)), route(P, A, path=(65001,)), Step.EBGP),
    ("shorter cluster list", route(P, B, clusters=("1.1.1.1",)),
     route(P, A, clusters=("1.1.1.1", "2.2.2.2")), Step.CLUSTER_LIST),
    ("lower router id", route(P, A), route(P, B), Step.ROUTER_ID),
    ("originator id stands in for router id", route(P, B, originator="1.1.1.1"),
     route(P, A, originator="9.9.9.9"), Step.ROUTER_ID),
    ("lower peer address", route(P, peer("10.0.0.1", rid="5.5.5.5")),
     route(P, peer("10.0.0.9", rid="5.5.5.5")), Step.PEER_ADDRESS),
    ("lower path id", route(P, A, path_id=1), route(P, A, path_id=2), Step.PATH_ID),
]


@pytest.mark.parametrize(("name", "winner", "loser", "step"), CASES, ids=[c[0] for c in CASES])
def test_step(name: str, winner: Route, loser: Route, step: Step) -> None:
    for order in ([winner, loser], [loser, winner]):
        best = select(order, multipath_after=None)
        assert best.route == winner
        assert best.reason is step


def test_med_only_compared_within_a_neighbour_as() -> None:
    # MED 100 from AS 65001 is not beaten by MED 1 from AS 65002: neither is eliminated there
    x = route(P, EA, path=(65001,), med=100)
    y = route(P, EB, path=(65002,), med=1)
    best = select([x, y], multipath_after=None)
    assert best.reason is Step.ROUTER_ID and best.route == x


def test_med_elimination_is_order_independent() -> None:
    # the classic non-transitive triple: only elimination gives one answer for every order
    r1 = route(P, peer("10.0.0.1", asn=65001), path=(65001,), med=10)
    r2 = route(P, peer("10.0.0.2", asn=65002), path=(65002,), med=5)
    r3 = route(P, peer("10.0.0.3", asn=65001), path=(65001,), med=1)
    winners = {select(list(p)).route for p in itertools.permutations([r1, r2, r3])}
    assert len(winners) == 1


def test_only_route() -> None:
    r = route(P, A)
    assert select([r]).reason is Step.ONLY_ROUTE


def test_ecmp_set_stops_at_the_chosen_step() -> None:
    x, y, z = route(P, A), route(P, B), route(P, peer("10.0.0.9"), lp=50)
    best = select([z, y, x])
    assert best.route == x and set(best.multipath) == {x, y}
    assert select([x, y], multipath_after=None).multipath == (x,)
    assert select([x, y], multipath_after=Step.LOCAL_PREF).multipath == (x, y)


routes_st = st.lists(
    st.builds(
        lambda i, lp, plen, med, origin: route(
            P, peer(f"10.0.0.{i}", asn=64512 if i % 2 else 65000 + i % 3), lp=lp,
            path=tuple(range(65000, 65000 + plen)), med=med, origin=origin),
        st.integers(1, 30), st.sampled_from([None, 50, 200]), st.integers(0, 3),
        st.sampled_from([None, 0, 10]), st.sampled_from(list(Origin))),
    min_size=1, max_size=6, unique_by=lambda r: r.source.key)


@given(routes_st, st.randoms())
def test_winner_does_not_depend_on_order(routes: list[Route], rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(routes)
    rnd.shuffle(shuffled)
    assert select(routes) == select(shuffled)


@given(routes_st, st.sampled_from([None, Step.EBGP, Step.LOCAL_PREF, Step.ROUTER_ID]))
def test_key_shortcut_agrees_with_step_by_step_elimination(routes: list[Route], after) -> None:  # type: ignore[no-untyped-def]
    if len(routes) > 1:
        assert select(routes, multipath_after=after) == _select_by_elimination(routes, after)
