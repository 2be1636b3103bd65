"""What the routing core knows about this node and its cluster: one immutable value.

:class:`NodeContext` gathers the facts that import policy, export and the FIB plan read — AS,
router id, route-reflector cluster id, the node's own networks and blocks, the IP pools and
advertised service CIDRs — so that a configuration change is one new value handed to the RIB.
:class:`PrefixSet` answers the containment questions policy asks many times a second with
integer arithmetic instead of building address objects.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

from ribs.types import Address, Prefix, prefix_bits


class EncapMode(enum.Enum):
    NEVER = "Never"
    ALWAYS = "Always"
    CROSS_SUBNET = "CrossSubnet"


@dataclass(frozen=True, slots=True)
class ClusterRoutes:
    """Which pools' routes to other nodes' blocks BGP programs into the kernel (Calico's
    programClusterRoutes); Felix programs the others, and VXLAN pools always."""

    ipip: bool = True  # pools with ipipMode Always or CrossSubnet
    no_encap: bool = True  # pools with ipipMode and vxlanMode Never

    @classmethod
    def named(cls, value: str) -> ClusterRoutes:
        """From the field's value: Enabled, Disabled, EnabledIPIPOnly, EnabledNoEncapOnly."""
        return cls(ipip=value in ("Enabled", "EnabledIPIPOnly"),
                   no_encap=value in ("Enabled", "EnabledNoEncapOnly"))

    def without(self, other: ClusterRoutes) -> ClusterRoutes:
        """These, less the pools ``other`` programs (Felix's: never both)."""
        return ClusterRoutes(ipip=self.ipip and not other.ipip,
                             no_encap=self.no_encap and not other.no_encap)


@dataclass(frozen=True, slots=True)
class Pool:
    cidr: Prefix
    ipip: EncapMode = EncapMode.NEVER
    vxlan: EncapMode = EncapMode.NEVER
    disabled: bool = False
    disable_bgp_export: bool = False
    block_size: int | None = None  # the length of the blocks IPAM cuts it into


_bits = prefix_bits


def _mask(version: int, length: int) -> int:
    width = 32 if version == 4 else 128
    return ((1 << width) - 1) ^ ((1 << (width - length)) - 1)


class PrefixSet:
    """A set of prefixes asked: is this prefix inside one, overlapping one, equal to one?"""

    __slots__ = ("_by_length", "_entries", "prefixes")

    def __init__(self, prefixes: Iterable[Prefix] = ()) -> None:
        self.prefixes: tuple[Prefix, ...] = tuple(sorted(set(prefixes), key=_bits))
        self._entries = [(v, net, length, _mask(v, length))
                         for v, net, length in map(_bits, self.prefixes)]
        # per version, each member length (longest first) with its networks: a covering
        # member is one hash look-up per distinct length, not a walk over every member
        by_length: dict[int, dict[int, dict[int, int]]] = {}
        for i, (v, net, length, _) in enumerate(self._entries):
            by_length.setdefault(v, {}).setdefault(length, {})[net] = i
        self._by_length = {v: sorted(((length, _mask(v, length), nets)
                                      for length, nets in lengths.items()), reverse=True)
                           for v, lengths in by_length.items()}

    def covering(self, prefix: Prefix) -> Prefix | None:
        """The longest member that contains ``prefix`` (equal or shorter), if any."""
        index = self.covering_index(prefix)
        return None if index is None else self.prefixes[index]

    def covering_index(self, prefix: Prefix) -> int | None:
        """Like :meth:`covering`, as an index into :attr:`prefixes`."""
        v, net, length = _bits(prefix)
        for elen, emask, nets in self._by_length.get(v, ()):
            if elen <= length:
                found = nets.get(net & emask)
                if found is not None:
                    return found
        return None

    def contains(self, prefix: Prefix) -> bool:
        return self.covering(prefix) is not None

    def overlaps(self, prefix: Prefix) -> bool:
        """True when ``prefix`` and some member share an address (either contains the other)."""
        v, net, length = _bits(prefix)
        mask = _mask(v, length)
        for ev, enet, elen, emask in self._entries:
            if ev == v and (net & emask == enet if elen <= length else enet & mask == net):
                return True
        return False

    def __contains__(self, prefix: object) -> bool:
        return prefix in self.prefixes

    def __bool__(self) -> bool:
        return bool(self.prefixes)

    def __iter__(self) -> Iterator[Prefix]:
        return iter(self.prefixes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrefixSet) and other.prefixes == self.prefixes

    def __hash__(self) -> int:
        return hash(self.prefixes)

    def __repr__(self) -> str:
        return f"PrefixSet({[str(p) for p in self.prefixes]})"


@dataclass(frozen=True, slots=True)
class Advertisement:
    """Communities added to exported routes inside ``cidr`` (prefixAdvertisements)."""

    cidr: Prefix
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True)
class NodeContext:
    local_as: int
    router_id: IPv4Address
    node_v4: IPv4Interface | None = None  # the node's address and network (CrossSubnet)
    node_v6: IPv6Interface | None = None
    cluster_id: IPv4Address | None = None  # set on a route-reflector node
    own_blocks: PrefixSet = field(default_factory=PrefixSet)
    other_blocks: PrefixSet = field(default_factory=PrefixSet)  # blocks other nodes hold
    pools: tuple[Pool, ...] = ()
    service_cidrs: PrefixSet = field(default_factory=PrefixSet)
    advertisements: tuple[Advertisement, ...] = ()
    import_guard: bool = True
    interface: str | None = None  # the device holding the node address (no-encap routes)
    tunnel: str = "tunl0"
    metric: int | None = None
    cluster_routes: ClusterRoutes = ClusterRoutes()
    # Calico v3.33's route priorities: a BGP route's kernel metric is its priority
    # (2147483647 - LOCAL_PREF, else the normal priority), and LOCAL_PREF towards iBGP peers
    # is 2147483647 - the normal priority for a route without one (older Calico: 100, and no
    # metric)
    priorities: bool = False
    normal_priority_v4: int = 1024  # BGPConfiguration ipv4NormalRoutePriority
    normal_priority_v6: int = 1024
    # the node is going away (cordoned, drained): every route it sends carries RFC 8326's
    # GRACEFUL_SHUTDOWN community, and LOCAL_PREF 0 to iBGP peers
    draining: bool = False
    # other nodes' blocks with their nodes' addresses (the datastore's word), and how long a
    # block's route outlives its peer's graceful restart on that word (0: not at all)
    block_owners: tuple[tuple[Prefix, frozenset[Address]], ...] = ()
    stale_retention: float = 0.0

    @cached_property
    def owners(self) -> dict[Prefix, frozenset[Address]]:
        return dict(self.block_owners)

    def normal_priority(self, version: int) -> int:
        return self.normal_priority_v4 if version == 4 else self.normal_priority_v6

    # Derived sets, computed once per context (policy asks them for every route).
    @cached_property
    def node_addresses(self) -> frozenset[Address]:
        return frozenset(i.ip for i in (self.node_v4, self.node_v6) if i is not None)

    @cached_property
    def node_networks(self) -> PrefixSet:
        return PrefixSet(i.network for i in (self.node_v4, self.node_v6) if i is not None)

    # A disabled pool routes as an enabled one: ``disabled`` stops IPAM handing out new
    # addresses from it (step 2 of Calico's pool migration), its pods keep theirs, and confd
    # renders no pool statement that reads the field (``processIPPool`` in
    # ``confd/pkg/backends/calico/bgp_processor.go`` checks ``disableBGPExport`` only).
    @cached_property
    def pool_cidrs(self) -> PrefixSet:
        return PrefixSet(p.cidr for p in self.pools)

    @cached_property
    def exported_pools(self) -> PrefixSet:
        return PrefixSet(p.cidr for p in self.pools if not p.disable_bgp_export)

    @cached_property
    def _pools_by_cidr(self) -> tuple[PrefixSet, list[Pool]]:
        cidrs = PrefixSet(p.cidr for p in self.pools)
        by_cidr = {p.cidr: p for p in self.pools}
        return cidrs, [by_cidr[c] for c in cidrs.prefixes]

    @cached_property
    def scratch(self) -> dict[object, object]:
        """Memo space for pure functions of this context (it is immutable, so they hold)."""
        return {}

    def pool_for(self, prefix: Prefix) -> Pool | None:
        """The most specific pool containing ``prefix``."""
        cidrs, pools = self._pools_by_cidr
        index = cidrs.covering_index(prefix)
        return None if index is None else pools[index]
