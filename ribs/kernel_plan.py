"""Kernel route values and the planner that turns desired routes into netlink operations.

Theory of operation: the daemon owns every route of one protocol number in one table.  The
kernel adapter reads those routes (``actual``); the RIB produces the routes it wants
(``desired``).  :func:`plan` compares the two per prefix and returns the fewest operations that
make the kernel match, in an order that never leaves traffic without a route:

* a wanted route identical to an owned one (or one the kernel completed: the device of a
  ``via NH`` hop, :meth:`KernelRoute.satisfied_by`): nothing;
* an owned route at the same prefix and metric that differs: ``REPLACE`` (in place, no gap);
* no owned route at that prefix and metric: ``ADD`` (exclusive create: if a route of another
  protocol sits at the same key the kernel refuses and the adapter reports a foreign conflict,
  it never overwrites it);
* owned routes nobody wants, or extra owned copies of a wanted prefix: ``DELETE`` — after every
  add and replace, so a prefix changing its metric is made before it is broken.

Routes are values: next hops are kept sorted and default metrics made implicit, so equality
does not depend on how the kernel or the RIB spelled a route.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from operator import attrgetter

Prefix = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

#: The kernel's metric for a route added without one: 0 for IPv4, IP6_RT_PRIO_USER for IPv6.
DEFAULT_METRIC = {4: 0, 6: 1024}


class RouteKind(enum.Enum):
    """What the kernel does with matching packets (the rtm_type of a route)."""

    UNICAST = "unicast"
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"
    PROHIBIT = "prohibit"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class NextHop:
    """One way out: a gateway on a device, ``onlink`` to skip the kernel's reachability check."""

    gateway: Address | None
    ifname: str | None
    onlink: bool = False
    sort_key: tuple[int, int, str, bool] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        gw = self.gateway
        key = (gw.version if gw else 0, int(gw) if gw else 0, self.ifname or "", self.onlink)
        object.__setattr__(self, "sort_key", key)

    def __str__(self) -> str:
        parts = []
        if self.gateway is not None:
            parts.append(f"via {self.gateway}")
        if self.ifname is not None:
            parts.append(f"dev {self.ifname}")
        if self.onlink:
            parts.append("onlink")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """A route as the daemon writes it and reads it back: prefix, kind, next hops, metric.

    Values are normalised so that equality means "the kernel forwards identically": next hops
    sorted, and a metric equal to the family's default (:data:`DEFAULT_METRIC`) stored as None.
    """

    prefix: Prefix
    kind: RouteKind = RouteKind.UNICAST
    nexthops: tuple[NextHop, ...] = ()
    metric: int | None = None

    def __post_init__(self) -> None:
        if len(self.nexthops) > 1:
            object.__setattr__(self, "nexthops", tuple(sorted(self.nexthops, key=_hop_order)))
        if self.metric is not None and self.metric == DEFAULT_METRIC[self.prefix.version]:
            object.__setattr__(self, "metric", None)

    @classmethod
    def blackhole(cls, prefix: Prefix, *, metric: int | None = None) -> KernelRoute:
        return cls(prefix=prefix, kind=RouteKind.BLACKHOLE, metric=metric)

    @classmethod
    def via(
        cls,
        prefix: Prefix,
        gateway: Address,
        ifname: str,
        *,
        onlink: bool = False,
        metric: int | None = None,
    ) -> KernelRoute:
        return cls(prefix=prefix, nexthops=(NextHop(gateway, ifname, onlink),), metric=metric)

    def satisfied_by(self, actual: KernelRoute) -> bool:
        """Whether the kernel's ``actual`` is this wanted route: equal, except that a next
        hop wanted without a device (``via NH``: the kernel finds it) takes any device."""
        if self == actual:
            return True
        if (self.prefix, self.kind, self.metric, len(self.nexthops)) != (
                actual.prefix, actual.kind, actual.metric, len(actual.nexthops)):
            return False
        return all(w.gateway == h.gateway and w.onlink == h.onlink
                   and (w.ifname is None or w.ifname == h.ifname)
                   for w, h in zip(self.nexthops, actual.nexthops, strict=True))

    @property
    def effective_metric(self) -> int:
        return DEFAULT_METRIC[self.prefix.version] if self.metric is None else self.metric

    def __str__(self) -> str:
        if self.kind is RouteKind.UNICAST:
            if len(self.nexthops) == 1:
                body = f"{self.prefix} {self.nexthops[0]}"
            else:
                body = f"{self.prefix} " + " ".join(f"nexthop {h}" for h in self.nexthops)
        else:
            body = f"{self.kind.value} {self.prefix}"
        return body if self.metric is None else f"{body} metric {self.metric}"


_hop_order = attrgetter("sort_key")


class OpKind(enum.Enum):
    ADD = "add"  # exclusive create: refuses to overwrite any route at the same key
    REPLACE = "replace"  # in place, over a route we own
    DELETE = "delete"  # of a route we own, matched by protocol, prefix and metric


@dataclass(frozen=True, slots=True)
class Op:
    kind: OpKind
    route: KernelRoute


@dataclass(frozen=True, slots=True)
class PlanError:
    """A desired route that cannot be planned (the rest of the plan is unaffected)."""

    route: KernelRoute
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    ops: tuple[Op, ...]
    errors: tuple[PlanError, ...] = ()


def validate(route: KernelRoute) -> str | None:
    """Why a desired route cannot be written, or None when it can."""
    if route.kind is RouteKind.UNICAST:
        if not route.nexthops:
            return "unicast route without a next hop"
        for hop in route.nexthops:
            if hop.gateway is None and hop.ifname is None:
                return "next hop has neither a gateway nor a device"
            if hop.gateway is not None and hop.gateway.version != route.prefix.version:
                return f"next hop {hop.gateway} is not of the prefix's address family"
            if hop.onlink and hop.ifname is None:
                return f"onlink next hop {hop.gateway} needs a device"
        if len(set(route.nexthops)) != len(route.nexthops):
            return "duplicate next hop in a multipath route"
    elif route.nexthops:
        return f"{route.kind.value} route cannot have next hops"
    if route.kind is RouteKind.OTHER:
        return "route kind 'other' cannot be written"
    return None


def plan(desired: Iterable[KernelRoute], actual: Iterable[KernelRoute]) -> Plan:
    """The operations that turn the owned routes ``actual`` into ``desired``.

    A prefix listed twice in ``desired`` is an error for that prefix (neither copy is planned,
    whatever is installed there stays), as is an invalid route; everything else is planned.
    """
    wanted: dict[Prefix, KernelRoute] = {}
    errors: list[PlanError] = []
    duplicated: set[Prefix] = set()
    for route in desired:
        problem = validate(route)
        if problem is not None:
            errors.append(PlanError(route, problem))
            duplicated.add(route.prefix)  # leave whatever is there alone
        elif route.prefix in wanted:
            errors.append(PlanError(route, f"prefix {route.prefix} is desired more than once"))
            duplicated.add(route.prefix)
        else:
            wanted[route.prefix] = route
    for prefix in duplicated:
        wanted.pop(prefix, None)

    have: dict[Prefix, list[KernelRoute]] = {}
    for route in actual:
        have.setdefault(route.prefix, []).append(route)

    writes: list[Op] = []
    deletes: list[Op] = []
    for prefix, route in wanted.items():
        present = have.pop(prefix, [])
        keep = next((r for r in present if route.satisfied_by(r)), None)
        if keep is None:
            same_key = next(
                (r for r in present if r.effective_metric == route.effective_metric), None
            )
            writes.append(Op(OpKind.ADD if same_key is None else OpKind.REPLACE, route))
            keep = same_key
        deletes.extend(Op(OpKind.DELETE, r) for r in present if r is not keep)
    for prefix, present in have.items():
        if prefix not in duplicated:
            deletes.extend(Op(OpKind.DELETE, r) for r in present)
    return Plan(ops=tuple(writes + deletes), errors=tuple(errors))
