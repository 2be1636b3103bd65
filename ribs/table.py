"""The route table: accepted routes per source (Adj-RIB-In after policy) and the Loc-RIB.

Theory of operation (BIRD's ``rt-table``): routes are keyed by (prefix, source, add-path id);
every update or withdrawal re-runs the decision process for its prefix only and returns the
change of best path as a value (or None when the best path, its reason and the ECMP set did
not change).  Mark-and-sweep refresh: :meth:`Table.refresh_begin` marks every route of a
source stale; a route the source sends again is unmarked; :meth:`Table.refresh_end` withdraws
what is still marked.  Stale routes stay in the table and keep forwarding meanwhile — that is
graceful restart's whole point.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ribs.bestpath import Best, Step, select
from ribs.types import Prefix, Route, SourceKey

PathKey = tuple[SourceKey, int]  # (source, add-path id) within a prefix
SourceEntry = tuple[Prefix, int]  # (prefix, add-path id) within a source


@dataclass(frozen=True, slots=True)
class Change:
    prefix: Prefix
    old: Best | None
    new: Best | None


class Table:
    def __init__(self, *, multipath_after: Step | None = Step.EBGP) -> None:
        self.multipath_after = multipath_after
        self._candidates: dict[Prefix, dict[PathKey, Route]] = {}
        self._by_source: dict[SourceKey, dict[SourceEntry, Route]] = {}
        self._best: dict[Prefix, Best] = {}
        self._stale: dict[SourceKey, set[SourceEntry]] = {}

    # --- queries -------------------------------------------------------------------------
    def best(self, prefix: Prefix) -> Best | None:
        return self._best.get(prefix)

    def bests(self) -> Iterator[Best]:
        return iter(self._best.values())

    def candidates(self, prefix: Prefix) -> list[Route]:
        return list(self._candidates.get(prefix, {}).values())

    def routes_of(self, source: SourceKey) -> list[Route]:
        return list(self._by_source.get(source, {}).values())

    def count(self, source: SourceKey) -> int:
        return len(self._by_source.get(source, ()))

    def has(self, prefix: Prefix, source: SourceKey, path_id: int = 0) -> bool:
        return (prefix, path_id) in self._by_source.get(source, ())

    def is_stale(self, route: Route) -> bool:
        return (route.prefix, route.path_id) in self._stale.get(route.source.key, ())

    def stale_count(self, source: SourceKey | None = None) -> int:
        if source is not None:
            return len(self._stale.get(source, ()))
        return sum(map(len, self._stale.values()))

    def sources(self) -> list[SourceKey]:
        return list(self._by_source)

    def __len__(self) -> int:
        return len(self._best)

    def count_by_version(self) -> dict[int, int]:
        """Prefixes with a best path, by IP version (4 and 6 always present)."""
        counts = {4: 0, 6: 0}
        for prefix in self._best:
            counts[prefix.version] += 1
        return counts

    def compact(self) -> None:
        """Rebuild the indexes at their present size (a dict keeps the table of the most
        entries it ever held)."""
        self._candidates = dict(self._candidates)
        self._by_source = {source: dict(routes) for source, routes in self._by_source.items()}
        self._best = dict(self._best)

    # --- changes -------------------------------------------------------------------------
    def update(self, route: Route) -> Change | None:
        source = route.source.key
        entry = (route.prefix, route.path_id)
        stale = self._stale.get(source)
        if stale:
            stale.discard(entry)
        per_prefix = self._candidates.setdefault(route.prefix, {})
        if per_prefix.get((source, route.path_id)) == route:
            return None
        per_prefix[(source, route.path_id)] = route
        self._by_source.setdefault(source, {})[entry] = route
        return self._reselect(route.prefix, per_prefix)

    def withdraw(self, prefix: Prefix, source: SourceKey, path_id: int = 0) -> Change | None:
        per_source = self._by_source.get(source)
        if per_source is None or per_source.pop((prefix, path_id), None) is None:
            return None
        if not per_source:
            del self._by_source[source]
        stale = self._stale.get(source)
        if stale is not None:
            stale.discard((prefix, path_id))
        per_prefix = self._candidates[prefix]
        del per_prefix[(source, path_id)]
        return self._reselect(prefix, per_prefix)

    def _reselect(self, prefix: Prefix, per_prefix: dict[PathKey, Route]) -> Change | None:
        old = self._best.get(prefix)
        if per_prefix:
            new: Best | None = select(list(per_prefix.values()),
                                      multipath_after=self.multipath_after)
            self._best[prefix] = new  # type: ignore[assignment]
        else:
            new = None
            del self._candidates[prefix]
            self._best.pop(prefix, None)
        return None if _same(new, old) else Change(prefix, old, new)

    def drop_source(self, source: SourceKey) -> list[Change]:
        changes = []
        for prefix, path_id in list(self._by_source.get(source, ())):
            change = self.withdraw(prefix, source, path_id)
            if change is not None:
                changes.append(change)
        self._stale.pop(source, None)
        return changes

    # --- mark and sweep ------------------------------------------------------------------
    def refresh_begin(self, source: SourceKey) -> int:
        """Mark every route of ``source`` stale; returns how many."""
        marked = set(self._by_source.get(source, ()))
        self._stale[source] = self._stale.get(source, set()) | marked
        return len(marked)

    def refresh_end(self, source: SourceKey) -> list[Change]:
        """Withdraw the routes of ``source`` still stale."""
        changes = []
        for prefix, path_id in list(self._stale.pop(source, ())):
            change = self.withdraw(prefix, source, path_id)
            if change is not None:
                changes.append(change)
        return changes

    def refreshing(self, source: SourceKey) -> bool:
        return source in self._stale


def _same(a: Best | None, b: Best | None) -> bool:
    """Equal bests, by identity of the stored routes (cheaper than comparing their values:
    an equal route sent again never reaches the selection, so equal means the same object)."""
    if a is None or b is None:
        return a is b
    return (a.route is b.route and a.reason is b.reason and len(a.multipath) == len(b.multipath)
            and all(x is y for x, y in zip(a.multipath, b.multipath, strict=True)))
