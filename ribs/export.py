"""Export: which best routes each peer is sent, with which attributes.

Theory of operation: :func:`advert_for` is a pure function of (best route, peer, node
context).  The rules, in order:

* only to a peer of the route's address family: each session carries one family, its
  address's (bgpd configures no other; an IPv4 prefix on an IPv6 session would be read as
  IPv6 bytes, and ExaBGP refuses a whole command naming a family the session lacks);
* never back to the session the route came from, nor to the peer that originated it;
* iBGP split horizon (RFC 4271 §9.2): a route learned over iBGP goes to no iBGP peer — except
  on a route-reflector node (RFC 4456 §6): a client's route goes to every client and
  non-client, a non-client's route to clients only, and never to a peer whose cluster id is
  already in the route's CLUSTER_LIST;
* the export filter (:func:`ribs.policy.export_rule`): only pool and service prefixes unless
  the peer's BGPFilter says otherwise (an accepting rule's operations apply first, so a
  prepended AS comes after ours); the node's own ``/32`` pod routes never enter the RIB,
  so only block aggregates can leave;
* attributes: to eBGP our AS is prepended (the engine sends the AS_PATH verbatim), LOCAL_PREF,
  ORIGINATOR_ID and CLUSTER_LIST are dropped, a MED is kept only on our own routes; to iBGP
  LOCAL_PREF is set (default 100; with Calico v3.33's priorities ``2147483647 - normal
  priority``) and a reflected route gets ORIGINATOR_ID (if absent) and our
  cluster id prepended to its CLUSTER_LIST; communities of ``prefixAdvertisements`` are added;
* a draining node (RFC 8326 graceful shutdown) adds GRACEFUL_SHUTDOWN (65535:0) to every
  route it sends, and sends LOCAL_PREF 0 to iBGP peers: they move to other paths while this
  node still forwards;
* next hop (``None`` meaning "self"): our own routes always self; otherwise ``Self`` forces
  self, ``Keep`` keeps the received one, ``Auto`` keeps it towards iBGP and sets self towards
  eBGP.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from ribs.bestpath import Best
from ribs.context import NodeContext
from ribs.policy import (
    BIRD_INT_MAX,
    DEFAULT_POLICY,
    GRACEFUL_SHUTDOWN,
    PeerPolicy,
    export_rule,
    operate,
)
from ribs.types import DEFAULT_LOCAL_PREF, Address, Attributes, Prefix, Route, SourceKey, SourceKind


class NextHopMode(enum.Enum):
    AUTO = "Auto"
    SELF = "Self"
    KEEP = "Keep"


@dataclass(frozen=True, slots=True)
class ExportPeer:
    """A peer as export sees it."""

    key: SourceKey
    address: Address
    peer_as: int
    local_as: int
    rr_client: bool = False
    router_id: IPv4Address | None = None
    cluster_id: IPv4Address | None = None  # a Calico route-reflector peer's cluster id
    next_hop_mode: NextHopMode = NextHopMode.AUTO
    policy: PeerPolicy = DEFAULT_POLICY

    @property
    def ebgp(self) -> bool:
        return self.peer_as != self.local_as


@dataclass(frozen=True, slots=True)
class Advert:
    """What one peer is told about one prefix.  ``attrs.next_hop`` None means next-hop self."""

    prefix: Prefix
    attrs: Attributes


def split_horizon(learned_over_ibgp: bool, ctx: NodeContext) -> bool:
    """iBGP split horizon (RFC 4271 §9.2): on a node that reflects nothing, what was learned
    over iBGP goes to no iBGP peer.  The rule's one statement (the RIB skips iBGP peers by
    it); a reflector's exceptions are :func:`_reflect_allowed`'s."""
    return learned_over_ibgp and ctx.cluster_id is None


def _reflect_allowed(route: Route, peer: ExportPeer, ctx: NodeContext) -> bool:
    """iBGP → iBGP through a route reflector (RFC 4456 §6)."""
    if peer.cluster_id is not None and peer.cluster_id in route.attrs.cluster_list:
        return False
    return route.source.rr_client or peer.rr_client


def attributes_class(peer: ExportPeer) -> tuple[object, ...]:
    """What of a peer the attributes it is sent depend on: peers alike in it are sent the
    same attributes for the same route (one update group)."""
    return (peer.ebgp, peer.local_as if peer.ebgp else None, peer.next_hop_mode)


def advert_for(best: Best, peer: ExportPeer, ctx: NodeContext,
               shared: dict[tuple[object, ...], Advert] | None = None) -> Advert | None:
    """What ``peer`` is sent of ``best`` (None: nothing).  With ``shared`` (the adverts
    already made of this best route, by :func:`attributes_class`) an equal advert is reused,
    not made again."""
    route = best.route
    if route.prefix.version != peer.address.version:
        return None
    source = route.source
    if source.key == peer.key or source.kind is SourceKind.RETAINED:
        return None
    originator = route.attrs.originator_id or source.router_id
    if peer.router_id is not None and originator == peer.router_id:
        return None
    if source.kind is SourceKind.BGP and source.ibgp and not peer.ebgp and (
        split_horizon(True, ctx) or not _reflect_allowed(route, peer, ctx)
    ):
        return None
    accepted, operations = export_rule(route, ctx, peer.policy, ebgp=peer.ebgp)
    if not accepted:
        return None
    if operations:  # the rule's operations first, as BIRD runs the filter before its own
        route = replace(route, attrs=operate(route.attrs, operations))
    if shared is None:
        return Advert(route.prefix, _attributes(route, peer, ctx))
    key = attributes_class(peer) if not operations else (*attributes_class(peer), operations)
    advert = shared.get(key)
    if advert is None:
        advert = shared[key] = Advert(route.prefix, _attributes(route, peer, ctx))
    return advert


def _attributes(route: Route, peer: ExportPeer, ctx: NodeContext) -> Attributes:
    attrs = route.attrs
    own = route.source.kind is not SourceKind.BGP
    next_hop = attrs.next_hop
    if own or peer.next_hop_mode is NextHopMode.SELF or (
        peer.next_hop_mode is NextHopMode.AUTO and peer.ebgp
    ):
        next_hop = None
    communities = attrs.communities
    large = attrs.large_communities
    for adv in ctx.advertisements:
        if adv.cidr.version == route.prefix.version and route.prefix.subnet_of(adv.cidr):  # type: ignore[arg-type]
            communities += tuple(c for c in adv.communities if c not in communities)
            large += tuple(c for c in adv.large_communities if c not in large)
    if ctx.draining and GRACEFUL_SHUTDOWN not in communities:
        communities += (GRACEFUL_SHUTDOWN,)
    if peer.ebgp:
        return replace(
            attrs, as_path=attrs.as_path.prepend(peer.local_as), next_hop=next_hop,
            local_pref=None, med=attrs.med if own else None, originator_id=None,
            cluster_list=(), communities=communities, large_communities=large,
        )
    originator_id = attrs.originator_id
    cluster_list = attrs.cluster_list
    if route.source.kind is SourceKind.BGP and route.source.ibgp and ctx.cluster_id is not None:
        originator_id = originator_id or route.source.router_id
        cluster_list = (ctx.cluster_id, *cluster_list)
    local_pref = attrs.local_pref
    if local_pref is None:
        local_pref = (BIRD_INT_MAX - ctx.normal_priority(route.prefix.version)
                      if ctx.priorities else DEFAULT_LOCAL_PREF)
    if ctx.draining:
        local_pref = 0
    return replace(
        attrs, next_hop=next_hop, local_pref=local_pref,
        originator_id=originator_id, cluster_list=cluster_list, communities=communities,
        large_communities=large,
    )
