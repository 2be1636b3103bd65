"""Route values: prefixes, path attributes, sources and routes — frozen and hashable.

A route is keyed by (prefix, source, add-path id).  A :class:`Source` says where a route came
from: a BGP session (with what the decision process needs to know about it: eBGP or iBGP,
route-reflector client, the peer's BGP identifier), the node itself (its blocks, service
CIDRs) or static configuration.  Sources compare by everything they carry, so a peer whose
session comes back with another identity is a new source; :attr:`Source.key` is the stable
part (kind and address) the tables are indexed by.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

Prefix = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


class IPv4Prefix(IPv4Network):
    """An IPv4Network that remembers its hash and its integer form.

    The RIB indexes every prefix in several tables per update, and ``ipaddress`` recomputes
    a network's hash in Python each time; these subclasses compute it once, in slots (a
    plain network keeps what it is given in a dictionary of its own: ~230 bytes more per
    prefix, and a node holds one or two prefix objects per route).  They compare and hash
    equal to plain networks, which work everywhere too (only slower).
    """

    __slots__ = ("_bits", "_hash")

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            self._hash: int = IPv4Network.__hash__(self)
            return self._hash


class IPv6Prefix(IPv6Network):
    """The IPv6 counterpart of :class:`IPv4Prefix`."""

    __slots__ = ("_bits", "_hash")

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            self._hash: int = IPv6Network.__hash__(self)
            return self._hash


def prefix(value: str | tuple[int, int], *, version: int | None = None) -> Prefix:
    """A prefix from text (``"172.17.9.0/24"``, host bits must be clear) or an
    (address as int, length) pair with ``version``."""
    if isinstance(value, str):
        return IPv6Prefix(value) if ":" in value else IPv4Prefix(value)
    return IPv4Prefix(value) if version == 4 else IPv6Prefix(value)


class IPv4Host(IPv4Address):
    """An IPv4Address that remembers its hash: a peer's address keys the pacer's and the
    RIB's per-peer tables, once per (peer, prefix) change.  Equal, and hashing equal, to a
    plain address."""

    __slots__ = ("_hash",)

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            self._hash: int = IPv4Address.__hash__(self)
            return self._hash


class IPv6Host(IPv6Address):
    """The IPv6 counterpart of :class:`IPv4Host`."""

    __slots__ = ("_hash",)

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            self._hash: int = IPv6Address.__hash__(self)
            return self._hash


def host(value: str) -> Address:
    """An address from text, remembering its hash (:class:`IPv4Host`)."""
    return IPv6Host(value) if ":" in value else IPv4Host(value)


def address_key(address: Address) -> tuple[int, int]:
    """The order of addresses everywhere: IPv4 before IPv6, then by value (an address of
    each family compares with the other's only through this)."""
    return (address.version, int(address))


def prefix_bits(net: Prefix) -> tuple[int, int, int]:
    """(version, network address as int, length), remembered on the prefix (a plain
    network keeps it in its dictionary)."""
    try:
        bits: tuple[int, int, int] = net._bits  # type: ignore[union-attr]
    except AttributeError:
        bits = net._bits = (net.version, int(net.network_address), net.prefixlen)  # type: ignore[union-attr]
    return bits

DEFAULT_LOCAL_PREF = 100


class Origin(enum.IntEnum):
    """ORIGIN (RFC 4271 §5.1.1): lower is preferred."""

    IGP = 0
    EGP = 1
    INCOMPLETE = 2


class SegmentType(enum.Enum):
    SEQUENCE = "sequence"
    SET = "set"
    CONFED_SEQUENCE = "confed-sequence"
    CONFED_SET = "confed-set"


@dataclass(frozen=True, slots=True)
class Segment:
    kind: SegmentType
    asns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AsPath:
    """AS_PATH as segments; ``AsPath.of(65001, 65002)`` is one AS_SEQUENCE."""

    segments: tuple[Segment, ...] = ()

    @classmethod
    def of(cls, *asns: int) -> AsPath:
        return cls((Segment(SegmentType.SEQUENCE, asns),) if asns else ())

    @property
    def length(self) -> int:
        """Path length for best-path selection (RFC 4271 §9.1.2.2 a): a SET counts as one,
        confederation segments not at all (RFC 5065 §5.3)."""
        total = 0
        for seg in self.segments:
            if seg.kind is SegmentType.SEQUENCE:
                total += len(seg.asns)
            elif seg.kind is SegmentType.SET:
                total += 1
        return total

    @property
    def neighbor_as(self) -> int | None:
        """The AS the route was learned from (first AS of a leading AS_SEQUENCE), for MED."""
        for seg in self.segments:
            if seg.kind is SegmentType.SEQUENCE and seg.asns:
                return seg.asns[0]
            if seg.kind in (SegmentType.SET, SegmentType.SEQUENCE):
                return None
        return None

    def count(self, asn: int) -> int:
        return sum(seg.asns.count(asn) for seg in self.segments)

    def prepend(self, asn: int) -> AsPath:
        if self.segments and self.segments[0].kind is SegmentType.SEQUENCE:
            first = self.segments[0]
            if len(first.asns) < 255:
                head = Segment(SegmentType.SEQUENCE, (asn, *first.asns))
                return AsPath((head, *self.segments[1:]))
        return AsPath((Segment(SegmentType.SEQUENCE, (asn,)), *self.segments))

    def __str__(self) -> str:
        parts = []
        for seg in self.segments:
            text = " ".join(map(str, seg.asns))
            parts.append(text if seg.kind is SegmentType.SEQUENCE else "{" + text + "}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Attributes:
    """The path attributes the daemon reads or writes."""

    origin: Origin = Origin.IGP
    as_path: AsPath = AsPath()
    next_hop: Address | None = None
    med: int | None = None
    local_pref: int | None = None
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    originator_id: IPv4Address | None = None
    cluster_list: tuple[IPv4Address, ...] = ()
    # optional transitive attributes the daemon does not know, passed on as received with the
    # Partial bit set (RFC 4271 §5, §9): (type code, flags, value)
    unknown: tuple[tuple[int, int, bytes], ...] = ()
    # its hash, once asked: the pacer groups every (peer, prefix) change by attributes, and
    # a dataclass hashes every field each time (addresses in Python)
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        value = self._hash
        if not value:
            value = hash((self.origin, self.as_path, self.next_hop, self.med, self.local_pref,
                          self.communities, self.large_communities, self.originator_id,
                          self.cluster_list, self.unknown))
            object.__setattr__(self, "_hash", value)
        return value


class SourceKind(enum.Enum):
    BGP = "bgp"
    LOCAL = "local"  # the node's own blocks and advertised service CIDRs
    STATIC = "static"
    # another node's block kept past its peer's graceful restart while the datastore still
    # says that node holds it at that address (ranked below every BGP route, never sent on)
    RETAINED = "retained"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a route came from.  For BGP: the session's peer and what it negotiated."""

    kind: SourceKind
    name: str = ""
    address: Address | None = None
    peer_as: int = 0
    local_as: int = 0
    router_id: IPv4Address | None = None  # the peer's BGP identifier (from its OPEN)
    rr_client: bool = False
    #: Stable identity across sessions (kind and address): the tables index routes by it.
    key: tuple[str, str] = field(init=False, compare=False, repr=False)
    ebgp: bool = field(init=False, compare=False, repr=False)
    ibgp: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        ident = str(self.address) if self.address is not None else self.name
        bgp = self.kind is SourceKind.BGP
        object.__setattr__(self, "key", (self.kind.value, ident))
        object.__setattr__(self, "ebgp", bgp and self.peer_as != self.local_as)
        object.__setattr__(self, "ibgp", bgp and self.peer_as == self.local_as)

    @classmethod
    def bgp(
        cls,
        address: Address,
        *,
        peer_as: int,
        local_as: int,
        router_id: IPv4Address | None = None,
        rr_client: bool = False,
        name: str = "",
    ) -> Source:
        return cls(SourceKind.BGP, name or str(address), address, peer_as, local_as,
                   router_id, rr_client)

    @classmethod
    def local(cls) -> Source:
        return LOCAL

    def __str__(self) -> str:
        return self.name or self.kind.value


LOCAL = Source(SourceKind.LOCAL, name="local")
RETAINED = Source(SourceKind.RETAINED, name="retained (datastore)")
SourceKey = tuple[str, str]


def bgp_key(address: Address) -> SourceKey:
    """The key of the BGP session with ``address``: the one :class:`Source` gets."""
    return ("bgp", str(address))


@dataclass(frozen=True, slots=True)
class Route:
    prefix: Prefix
    source: Source
    attrs: Attributes = Attributes()
    path_id: int = 0
    #: The decision process's memo of this route's rank (see ribs.bestpath): a pure function
    #: of the value, so storing it on the frozen instance changes nothing observable.
    rank: object = field(default=None, init=False, compare=False, repr=False)

    @property
    def key(self) -> tuple[Prefix, SourceKey, int]:
        return (self.prefix, self.source.key, self.path_id)

    @property
    def local_pref(self) -> int:
        value = self.attrs.local_pref
        return DEFAULT_LOCAL_PREF if value is None else value

    def __str__(self) -> str:
        hop = f" via {self.attrs.next_hop}" if self.attrs.next_hop is not None else ""
        pid = f" path-id {self.path_id}" if self.path_id else ""
        return f"{self.prefix}{hop} from {self.source}{pid}"
