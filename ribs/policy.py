"""Import and export policy: pure functions from a route to a verdict (the route or None, and
a reason).

Import, in order:

1. loop checks, always: our AS (the session's) in the AS_PATH more often than the peer allows
   (``numAllowedLocalASNumbers``), ORIGINATOR_ID equal to our router id, our cluster id in the
   CLUSTER_LIST (RFC 4271 §9.1.2, RFC 4456 §8);
2. martians, always: default-free special space that can never be a pod route — loopback,
   link-local, multicast, unspecified;
3. the peer's BGPFilter rules (Calico semantics: filters in the peer's order, rules in order,
   first match wins; ``Reject`` refuses, ``Accept`` accepts — after its ``operations``, in
   order — and skips step 4: an explicit accept is the administrator's decision);
4. the default guard (unless turned off): the default route, any prefix overlapping the
   node's own networks (its subnets, its own blocks), anything not inside an enabled IP
   pool nor inside an advertised service CIDR (those are never programmed into the kernel:
   other nodes' Service addresses are only reflected), and — from a peer that is not a Calico
   node — anything more specific than a block another node holds (a /25 or a /32 inside
   another node's /24 would take that node's pods' traffic) or than the blocks of its pool
   (``blockSize``: the same hijack, of a block whose affinity this node does not watch or
   that IPAM has not given out yet) are refused.  Calico nodes
   announce /32s of addresses they borrowed from another node's block (confd exports every
   route inside an enabled pool; only the node's own blocks are aggregated), so those are
   accepted from mesh and reflector sessions; a BGPPeer may allow them too
   (``node_routes``).  Calico itself accepts all of it.

A peer whose BGPFilter is missing or invalid has a *closed* policy: it imports nothing and is
sent nothing until the filter is valid (a filter that fails must not mean "no filter").

Export: a route leaves only if the peer's export rules accept it (their operations then
apply to what that peer is sent), or — no rule matching — it lies in an enabled pool that
allows BGP export, or in an advertised service CIDR and is the node's own or goes to an iBGP
peer (another node's service address is never sent on to an eBGP peer).

Rules match as confd's BIRD functions do (Calico v3.33): ``peerType`` iBGP/eBGP against the
session (the peer's AS equal to ours, ``localASNumber`` counted); ``communities`` one standard
or large community the route carries; ``asPathPrefix`` the first ASes of the AS_PATH (before
ours is prepended, on export); ``priority`` the route's priority, which Calico carries in
LOCAL_PREF as ``2147483647 - priority`` (:func:`priority_of`).  Operations: ``addCommunity``,
``prependASPath`` (the listed ASes first, in order) and ``setPriority`` (LOCAL_PREF
``2147483647 - value``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network

from ribs.context import NodeContext, PrefixSet
from ribs.types import Address, AsPath, Attributes, Prefix, Route, SegmentType, SourceKind


class Reason(enum.Enum):
    ACCEPTED = "accepted"
    FILTER_ACCEPT = "accepted by filter"
    AS_PATH_LOOP = "as_path_loop"
    ORIGINATOR_LOOP = "originator_id_is_ours"
    CLUSTER_LOOP = "cluster_list_loop"
    MARTIAN = "martian"
    INVALID_NEXT_HOP = "invalid_next_hop"
    FILTER_REJECT = "filter_reject"
    DEFAULT_ROUTE = "default_route"
    OWN_NETWORK = "overlaps_own_network"
    OUTSIDE_POOLS = "outside_pools"
    OTHER_NODE_BLOCK = "more_specific_of_another_nodes_block"
    INSIDE_A_BLOCK = "more_specific_than_the_pools_blocks"
    FILTER_UNAVAILABLE = "filter_missing_or_invalid"
    MAX_PREFIX = "max_prefix"
    NOT_EXPORTABLE = "not_exportable"

    @property
    def accepted(self) -> bool:
        return self in (Reason.ACCEPTED, Reason.FILTER_ACCEPT)


#: What each verdict means (``bgpd routes`` and ``bgpd_bgp_routes_rejected{reason}`` name it;
#: the reference page is made from this).
MEANINGS: dict[Reason, str] = {
    Reason.ACCEPTED: "passed the default import guard",
    Reason.FILTER_ACCEPT: "accepted by a rule of the peer's BGPFilter",
    Reason.AS_PATH_LOOP: "our AS is in its AS path (more often than numAllowedLocalASNumbers): "
                         "our own route coming back, as a ToR echoes it — routine",
    Reason.ORIGINATOR_LOOP: "its ORIGINATOR_ID is our router id: our route reflected back",
    Reason.CLUSTER_LOOP: "our cluster id is in its CLUSTER_LIST: reflected around the cluster",
    Reason.MARTIAN: "loopback, link-local, multicast or another address no route may carry",
    Reason.INVALID_NEXT_HOP: "its next hop is no address to forward to (0.0.0.0/8, loopback, "
                             "multicast, broadcast or class E, IPv6 unspecified or multicast) "
                             "or is this node's own (RFC 4271 6.3), or, from an eBGP peer on "
                             "the node's own subnet, lies off that subnet (RFC 4271 5.1.3): "
                             "treated as withdrawn",
    Reason.FILTER_REJECT: "rejected by a rule of the peer's BGPFilter",
    Reason.DEFAULT_ROUTE: "the default route, never taken from a peer without a BGPFilter "
                          "that accepts it",
    Reason.OWN_NETWORK: "overlaps this node's subnet or one of its own blocks",
    Reason.OUTSIDE_POOLS: "outside every IP pool and service range, from a peer that is not "
                          "a Calico node (a BGPFilter can accept it)",
    Reason.OTHER_NODE_BLOCK: "more specific than a block another node holds, from a peer that "
                             "is not a Calico node (it would take that node's pods' traffic; "
                             "annotation bgpd/accept-node-block-routes)",
    Reason.INSIDE_A_BLOCK: "more specific than its pool's blocks (blockSize), from a peer that "
                           "is not a Calico node",
    Reason.FILTER_UNAVAILABLE: "the peer names a BGPFilter that is missing or invalid: it "
                               "imports nothing until the filter is valid (fail closed)",
    Reason.MAX_PREFIX: "beyond the peer's prefix limit",
    Reason.NOT_EXPORTABLE: "not sent to a peer: Calico's export rules leave it out",
}


class Action(enum.Enum):
    ACCEPT = "Accept"
    REJECT = "Reject"


class MatchOperator(enum.Enum):
    EQUAL = "Equal"
    NOT_EQUAL = "NotEqual"
    IN = "In"
    NOT_IN = "NotIn"


@dataclass(frozen=True, slots=True)
class Operation:
    """One BGPFilter operation of an accepting rule: exactly one of the three is set."""

    add_community: tuple[int, ...] | None = None  # 2 parts: standard, 3: large
    prepend_as_path: tuple[int, ...] = ()
    set_priority: int | None = None

    def apply(self, attrs: Attributes) -> Attributes:
        if self.add_community is not None:
            value = self.add_community
            if len(value) == 2:
                if value in attrs.communities:
                    return attrs
                return replace(attrs, communities=(*attrs.communities, (value[0], value[1])))
            if value in attrs.large_communities:
                return attrs
            return replace(attrs, large_communities=(
                *attrs.large_communities, (value[0], value[1], value[2])))
        if self.prepend_as_path:
            path = attrs.as_path
            for asn in reversed(self.prepend_as_path):
                path = path.prepend(asn)
            return replace(attrs, as_path=path)
        if self.set_priority is not None:
            return replace(attrs, local_pref=BIRD_INT_MAX - self.set_priority)
        return attrs


#: Calico's conversion between a route priority (a kernel metric, lower wins) and LOCAL_PREF
#: (higher wins): ``local_pref = 2147483647 - priority``
BIRD_INT_MAX = 2147483647
GRACEFUL_SHUTDOWN = (65535, 0)  # RFC 8326: the path is going away; prefer any other
LLGR_STALE = (65535, 6)  # RFC 9494 4.6: a peer's long-lived stale route: least preferred
NO_LLGR = (65535, 7)  # RFC 9494 4.7: never kept past graceful restart (nor retained here)
#: the priority Calico gives a route with none (BGPConfiguration ipv4/ipv6NormalRoutePriority)
NORMAL_PRIORITY = 1024


def priority_of(route: Route, normal: int | None) -> int | None:
    """A route's priority as confd's filters see it: from LOCAL_PREF when the route has one;
    else ``normal`` (on export: every route has one there) or None (on import: no match)."""
    local_pref = route.attrs.local_pref
    if local_pref is not None:
        return BIRD_INT_MAX - local_pref
    return normal


def _path_starts_with(path: AsPath, asns: tuple[int, ...]) -> bool:
    flat: list[int] = []
    for seg in path.segments:
        if seg.kind is not SegmentType.SEQUENCE:
            break  # a set or confederation segment: nothing after it is "the path's start"
        flat.extend(seg.asns)
        if len(flat) >= len(asns):
            break
    return tuple(flat[:len(asns)]) == asns


@dataclass(frozen=True, slots=True)
class FilterRule:
    """One BGPFilter rule; unset criteria match everything."""

    action: Action
    cidr: Prefix | None = None
    match_operator: MatchOperator | None = None
    min_length: int | None = None
    max_length: int | None = None
    remote_peers_only: bool = False  # source: RemotePeers
    interface: str | None = None
    ebgp: bool | None = None  # peerType: eBGP (True) or iBGP (False); None: any peer
    community: tuple[int, ...] | None = None  # communities.values[0]
    as_path_prefix: tuple[int, ...] = ()
    priority: int | None = None
    operations: tuple[Operation, ...] = ()

    def matches(self, route: Route, *, ebgp: bool = False,
                normal_priority: int | None = None) -> bool:
        """Whether the rule matches ``route`` on a session that is ``ebgp`` or not;
        ``normal_priority``: the priority of a route without LOCAL_PREF (None on import)."""
        if self.ebgp is not None and self.ebgp != ebgp:
            return False
        prefix = route.prefix
        if self.cidr is not None and self.match_operator is not None:
            if self.cidr.version != prefix.version:
                return False
            inside = prefix.prefixlen >= self.cidr.prefixlen and prefix.subnet_of(self.cidr)  # type: ignore[arg-type]
            hit = {
                MatchOperator.EQUAL: prefix == self.cidr,
                MatchOperator.NOT_EQUAL: prefix != self.cidr,
                MatchOperator.IN: inside,
                MatchOperator.NOT_IN: not inside,
            }[self.match_operator]
            if not hit:
                return False
        if self.min_length is not None and prefix.prefixlen < self.min_length:
            return False
        if self.max_length is not None and prefix.prefixlen > self.max_length:
            return False
        if self.remote_peers_only and route.source.kind is not SourceKind.BGP:
            return False
        # interface rules match routes learned from a device; BGP and local routes have none
        if self.interface is not None:
            return False
        attrs = route.attrs
        if self.community is not None:
            held = attrs.communities if len(self.community) == 2 else attrs.large_communities
            if self.community not in held:
                return False
        if self.as_path_prefix and not _path_starts_with(attrs.as_path, self.as_path_prefix):
            return False
        return self.priority is None or priority_of(route, normal_priority) == self.priority


def operate(attrs: Attributes, operations: Sequence[Operation]) -> Attributes:
    """``attrs`` after an accepting rule's operations, in order."""
    for operation in operations:
        attrs = operation.apply(attrs)
    return attrs


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """What policy knows of one peer: its filter rules (per family) and import limits."""

    import_v4: tuple[FilterRule, ...] = ()
    import_v6: tuple[FilterRule, ...] = ()
    export_v4: tuple[FilterRule, ...] = ()
    export_v6: tuple[FilterRule, ...] = ()
    allowed_local_as: int = 0  # numAllowedLocalASNumbers
    max_prefixes: int | None = None
    teardown_at_limit: bool = False  # past max_prefixes: close the session (else refuse)
    node_routes: bool = False  # a Calico node: more-specifics of others' blocks are fine
    closed: bool = False  # a filter it names is missing or invalid: nothing in or out

    def import_rules(self, prefix: Prefix) -> tuple[FilterRule, ...]:
        return self.import_v4 if prefix.version == 4 else self.import_v6

    def export_rules(self, prefix: Prefix) -> tuple[FilterRule, ...]:
        return self.export_v4 if prefix.version == 4 else self.export_v6


DEFAULT_POLICY = PeerPolicy()

MARTIANS = PrefixSet([
    IPv4Network("0.0.0.0/8"), IPv4Network("127.0.0.0/8"), IPv4Network("169.254.0.0/16"),
    IPv4Network("224.0.0.0/4"), IPv4Network("240.0.0.0/4"),
    IPv6Network("::/128"), IPv6Network("::1/128"), IPv6Network("fe80::/10"),
    IPv6Network("ff00::/8"),
])


# next hops a route may not have (RFC 4271 5.1.3 and 6.3; link-local IPv6 ones are fine)
BAD_NEXT_HOPS = PrefixSet([
    IPv4Network("0.0.0.0/8"), IPv4Network("127.0.0.0/8"), IPv4Network("224.0.0.0/4"),
    IPv4Network("240.0.0.0/4"), IPv6Network("::/128"), IPv6Network("::1/128"),
    IPv6Network("ff00::/8"),
])


def bad_next_hop(route: Route, ctx: NodeContext) -> bool:
    """Judged once per next hop (and peer) and context (a flood is thousands of routes over
    a few hops, and a host network made for each costs more than the rest of the import).

    An eBGP peer on the node's own subnet is a directly connected, single-hop one: its next
    hop must be an address on that subnet too, itself or a third party's (RFC 4271 5.1.3), as
    BIRD requires of a direct session.  A peer elsewhere is multihop; its next hop is taken as
    it comes."""
    hop = route.attrs.next_hop
    if hop is None:
        return False
    source = route.source
    key = ("bad next hop", hop.version, int(hop), source.address if source.ebgp else None)
    bad = ctx.scratch.get(key)
    if bad is None:
        bad = ctx.scratch[key] = hop in ctx.node_addresses or BAD_NEXT_HOPS.overlaps(
            IPv4Network(hop) if hop.version == 4 else IPv6Network(hop)) or (
            source.ebgp and _off_link(hop, source.address, ctx))
    return bool(bad)


def _off_link(hop: Address, peer: Address | None, ctx: NodeContext) -> bool:
    own = ctx.node_v4 if hop.version == 4 else ctx.node_v6
    return (own is not None and peer is not None and peer.version == hop.version
            and peer in own.network and hop not in own.network)


def first_match(rules: Sequence[FilterRule], route: Route, *, ebgp: bool = False,
                normal_priority: int | None = None) -> FilterRule | None:
    for rule in rules:
        if rule.matches(route, ebgp=ebgp, normal_priority=normal_priority):
            return rule
    return None


def _loop(route: Route, ctx: NodeContext, policy: PeerPolicy) -> Reason | None:
    attrs = route.attrs
    local_as = route.source.local_as or ctx.local_as  # the session's (localASNumber)
    if attrs.as_path.segments and attrs.as_path.count(local_as) > policy.allowed_local_as:
        return Reason.AS_PATH_LOOP
    if attrs.originator_id is not None and attrs.originator_id == ctx.router_id:
        return Reason.ORIGINATOR_LOOP
    if ctx.cluster_id is not None and ctx.cluster_id in attrs.cluster_list:
        return Reason.CLUSTER_LOOP
    return None


def guard(prefix: Prefix, ctx: NodeContext, policy: PeerPolicy = DEFAULT_POLICY) -> Reason:
    """The default import guard alone (what a prefix needs to be accepted without a filter)."""
    if prefix.prefixlen == 0:
        return Reason.DEFAULT_ROUTE
    if ctx.node_networks.overlaps(prefix) or ctx.own_blocks.overlaps(prefix):
        return Reason.OWN_NETWORK
    if not ctx.pool_cidrs.contains(prefix) and not ctx.service_cidrs.contains(prefix):
        return Reason.OUTSIDE_POOLS
    if not policy.node_routes:
        block = ctx.other_blocks.covering(prefix)
        if block is not None and block.prefixlen < prefix.prefixlen:
            return Reason.OTHER_NODE_BLOCK
        pool = ctx.pool_for(prefix)
        if pool is not None and pool.block_size is not None and (
                prefix.prefixlen > pool.block_size):
            return Reason.INSIDE_A_BLOCK
    return Reason.ACCEPTED


def import_route(route: Route, ctx: NodeContext,
                 policy: PeerPolicy = DEFAULT_POLICY) -> tuple[Reason, Route]:
    """Why ``route`` from a peer is accepted or refused (max-prefix is the RIB's: it counts),
    and the route as accepted (an accepting rule's operations applied; a route tagged
    GRACEFUL_SHUTDOWN ranked below every other, LOCAL_PREF 0: RFC 8326 4; one tagged
    LLGR_STALE, a stale route another speaker keeps by long-lived graceful restart, the same:
    RFC 9494 4.6 has it least preferred)."""
    reason, accepted = _import_verdict(route, ctx, policy)
    communities = accepted.attrs.communities
    if reason.accepted and (GRACEFUL_SHUTDOWN in communities or LLGR_STALE in communities):
        accepted = replace(accepted, attrs=replace(accepted.attrs, local_pref=0))
    return reason, accepted


def _import_verdict(route: Route, ctx: NodeContext,
                    policy: PeerPolicy) -> tuple[Reason, Route]:
    if policy.closed:
        return Reason.FILTER_UNAVAILABLE, route
    if bad_next_hop(route, ctx):
        return Reason.INVALID_NEXT_HOP, route
    loop = _loop(route, ctx, policy)
    if loop is not None:
        return loop, route
    if MARTIANS.overlaps(route.prefix) and route.prefix.prefixlen > 0:
        return Reason.MARTIAN, route
    rule = first_match(policy.import_rules(route.prefix), route, ebgp=route.source.ebgp)
    if rule is not None:
        if rule.action is Action.REJECT:
            return Reason.FILTER_REJECT, route
        if rule.operations:
            route = replace(route, attrs=operate(route.attrs, rule.operations))
        return Reason.FILTER_ACCEPT, route
    if not ctx.import_guard:
        return Reason.ACCEPTED, route
    return guard(route.prefix, ctx, policy), route


def import_verdict(route: Route, ctx: NodeContext, policy: PeerPolicy = DEFAULT_POLICY) -> Reason:
    """Why ``route`` from a peer is accepted or refused."""
    return import_route(route, ctx, policy)[0]


def export_rule(route: Route, ctx: NodeContext, policy: PeerPolicy = DEFAULT_POLICY, *,
                ebgp: bool = False) -> tuple[bool, tuple[Operation, ...]]:
    """Calico's export filter after the peer's own export rules: whether ``route`` goes to a
    peer (``ebgp``: an eBGP session) and the operations of the rule that accepted it."""
    if policy.closed:
        return False, ()
    rules = policy.export_rules(route.prefix)
    if rules:
        rule = first_match(rules, route, ebgp=ebgp,
                           normal_priority=ctx.normal_priority(route.prefix.version))
        if rule is not None:
            return rule.action is Action.ACCEPT, rule.operations
    prefix = route.prefix
    if ctx.exported_pools.contains(prefix):
        return True, ()
    # a service address reaches an eBGP peer only from a node that announces it itself: sent
    # on for another node (next hop self), a Local Service's traffic would come to a node
    # without its endpoint, and a node excluded from load balancers would announce it still
    return ctx.service_cidrs.contains(prefix) and not (
        ebgp and route.source.kind is SourceKind.BGP), ()


def exportable(route: Route, ctx: NodeContext, policy: PeerPolicy = DEFAULT_POLICY, *,
               ebgp: bool = False) -> bool:
    return export_rule(route, ctx, policy, ebgp=ebgp)[0]
