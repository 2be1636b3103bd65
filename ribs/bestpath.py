"""Best-path selection: the RFC 4271 §9.1.2.2 decision process as a chain of named steps.

Theory of operation: the candidates for a prefix go through the steps in order; each step
keeps only the routes that are best by its own criterion (an *elimination*, as the RFC words
it, not a pairwise sort — MED is compared only between routes from the same neighbouring AS,
which no sort can express consistently).  The step that leaves a single route is the reason
that route won.  Because every step works on the whole set and the last steps are total
orders, the winner never depends on the order in which routes arrived.

ECMP: the routes still standing after a chosen step (by default the eBGP-over-iBGP step, i.e.
equal in everything but identifiers) form the multipath set.

Step (e) of the RFC, the interior cost to the next hop, is absent: the daemon runs no IGP, so
every next hop costs the same.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ribs.types import Route, SourceKind, address_key

_PREFERENCE = {SourceKind.LOCAL: 200, SourceKind.STATIC: 150, SourceKind.BGP: 100,
               SourceKind.RETAINED: 50}
_NO_ID = 1 << 32


class Step(enum.Enum):
    """A step of the decision process; the value is how `bgpd routes` explains a win."""

    ONLY_ROUTE = "only route"
    PREFERENCE = "source preference (local > static > BGP > retained; RFC 4271 §9.1.1)"
    LOCAL_PREF = "highest LOCAL_PREF (RFC 4271 §9.1.1)"
    AS_PATH = "shortest AS_PATH (RFC 4271 §9.1.2.2 a)"
    ORIGIN = "lowest ORIGIN (RFC 4271 §9.1.2.2 b)"
    MED = "lowest MED from the same neighbour AS (RFC 4271 §9.1.2.2 c)"
    EBGP = "eBGP over iBGP (RFC 4271 §9.1.2.2 d)"
    CLUSTER_LIST = "shortest CLUSTER_LIST (RFC 4456 §9)"
    ROUTER_ID = "lowest BGP identifier or ORIGINATOR_ID (RFC 4271 §9.1.2.2 f, RFC 4456 §9)"
    PEER_ADDRESS = "lowest peer address (RFC 4271 §9.1.2.2 g)"
    PATH_ID = "lowest add-path identifier"


def neighbor_as(route: Route) -> int | None:
    """The neighbouring AS for MED comparison; a route with an empty AS_PATH learned over
    iBGP comes from our own AS."""
    asn = route.attrs.as_path.neighbor_as
    if asn is None and not route.attrs.as_path.segments and route.source.kind is SourceKind.BGP:
        return route.source.local_as
    return asn


#: the steps in order; :func:`_rank` gives each route one key per step, in this order
STEP_ORDER = (Step.PREFERENCE, Step.LOCAL_PREF, Step.AS_PATH, Step.ORIGIN, Step.MED, Step.EBGP,
              Step.CLUSTER_LIST, Step.ROUTER_ID, Step.PEER_ADDRESS, Step.PATH_ID)
_MED = STEP_ORDER.index(Step.MED)


def _rank(r: Route) -> tuple[int | None, tuple[object, ...]]:
    """(neighbouring AS, the route's key for every step of :data:`STEP_ORDER`: lower is
    better), computed once per route.  Every criterion of the decision process is written
    here and only here."""
    cached = r.rank
    if cached is None:
        attrs, source = r.attrs, r.source
        rid = attrs.originator_id if attrs.originator_id is not None else source.router_id
        addr = source.address
        cached = (neighbor_as(r), (
            -_PREFERENCE[source.kind],
            -r.local_pref,
            attrs.as_path.length,
            int(attrs.origin),
            attrs.med or 0,  # a missing MED is the lowest (RFC 4271 §9.1.2.2 c)
            0 if source.ebgp else 1,
            len(attrs.cluster_list),
            _NO_ID if rid is None else int(rid),
            (0, 0) if addr is None else address_key(addr),
            (r.path_id, source.key),
        ))
        object.__setattr__(r, "rank", cached)
    return cached  # type: ignore[return-value]


def _keep_min(routes: Sequence[Route], index: int) -> list[Route]:
    """The routes whose key for step ``index`` is the lowest."""
    keys = [_rank(r)[1][index] for r in routes]
    best = min(keys)  # type: ignore[type-var]
    return [r for r, k in zip(routes, keys, strict=True) if k == best]


def _med(routes: Sequence[Route]) -> list[Route]:
    """MED compared only between routes from the same neighbouring AS: no plain key."""
    lowest: dict[int, int] = {}
    for r in routes:
        asn, key = _rank(r)
        med: int = key[_MED]  # type: ignore[assignment]
        if asn is not None:
            lowest[asn] = min(med, lowest.get(asn, med))
    return [r for r in routes if (asn := _rank(r)[0]) is None or _rank(r)[1][_MED] == lowest[asn]]


def _step(index: int) -> Callable[[Sequence[Route]], list[Route]]:
    if index == _MED:
        return _med
    return lambda routes: _keep_min(routes, index)


STEPS: tuple[tuple[Step, Callable[[Sequence[Route]], list[Route]]], ...] = tuple(
    (step, _step(i)) for i, step in enumerate(STEP_ORDER))


@dataclass(frozen=True, slots=True)
class Best:
    """The winner for a prefix, why it won, and the ECMP set (the winner first)."""

    route: Route
    reason: Step
    multipath: tuple[Route, ...]


def select(candidates: Sequence[Route], *, multipath_after: Step | None = Step.EBGP) -> Best:
    """Run the decision process over ``candidates`` (non-empty)."""
    if len(candidates) == 1:
        only = candidates[0]
        return Best(only, Step.ONLY_ROUTE, (only,))
    keys = _composite_keys(candidates)
    if keys is not None:
        return _select_by_keys(candidates, keys, multipath_after)
    return _select_by_elimination(candidates, multipath_after)


def _select_by_elimination(candidates: Sequence[Route], multipath_after: Step | None) -> Best:
    survivors: Sequence[Route] = candidates
    ecmp: Sequence[Route] | None = None
    reason = Step.PATH_ID
    for step, eliminate in STEPS:
        if len(survivors) > 1:
            survivors = eliminate(survivors)
            if len(survivors) == 1:
                reason = step
        if step is multipath_after:
            ecmp = survivors
        if len(survivors) == 1 and (ecmp is not None or multipath_after is None):
            break
    winner = survivors[0]
    return _best(winner, reason, ecmp)


def _best(winner: Route, reason: Step, ecmp: Sequence[Route] | None) -> Best:
    if ecmp is None or len(ecmp) == 1:
        return Best(winner, reason, (winner,))
    others = sorted((r for r in ecmp if r is not winner), key=_total_order)
    return Best(winner, reason, (winner, *others))


# The same process when every step is a key (the usual case: all candidates share one
# neighbouring AS, so MED is an ordinary key).  Each step keeps the minimum of its key
# among the survivors, and the winner — the lexicographic minimum of the whole key — always
# survives; so after step i the survivors are exactly the candidates whose keys equal the
# winner's up to i, and the step that decided is the last one at which some other candidate
# still tied with the winner, plus one.
def _composite_keys(candidates: Sequence[Route]) -> list[tuple[object, ...]] | None:
    ranks = [_rank(r) for r in candidates]
    neighbour = ranks[0][0]
    if neighbour is None or any(asn != neighbour for asn, _ in ranks):
        return None  # MED is not a plain key here: eliminate step by step
    return [key for _, key in ranks]


def _select_by_keys(
    candidates: Sequence[Route], keys: list[tuple[object, ...]], multipath_after: Step | None
) -> Best:
    win = min(range(len(keys)), key=keys.__getitem__)
    wkey = keys[win]
    decided = 0
    ecmp_depth = STEP_ORDER.index(multipath_after) if multipath_after is not None else -1
    ecmp: list[Route] = []
    for i, key in enumerate(keys):
        if i == win:
            continue
        depth = 0
        while key[depth] == wkey[depth]:
            depth += 1
        decided = max(decided, depth)
        if depth > ecmp_depth >= 0:
            ecmp.append(candidates[i])
    winner = candidates[win]
    return _best(winner, STEP_ORDER[decided], [winner, *ecmp] if ecmp_depth >= 0 else None)


def _total_order(r: Route) -> tuple[int, int, int, tuple[str, str]]:
    a = r.source.address
    return (a.version if a else 0, int(a) if a else 0, r.path_id, r.source.key)
