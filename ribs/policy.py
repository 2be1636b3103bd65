"""Import and export policy: pure functions from a route to a verdict (the route or None, and
a reason).

Import, in order:

1. loop checks, always: our AS in the AS_PATH more often than the peer allows
   (``numAllowedLocalASNumbers``), ORIGINATOR_ID equal to our router id, our cluster id in the
   CLUSTER_LIST (RFC 4271 §9.1.2, RFC 4456 §8);
2. martians, always: default-free special space that can never be a pod route — loopback,
   link-local, multicast, unspecified;
3. the peer's BGPFilter rules (Calico semantics: filters in the peer's order, rules in order,
   first match wins; ``Reject`` refuses, ``Accept`` accepts and skips step 4 — an explicit
   accept is the administrator's decision);
4. the default guard (unless turned off): the default route, any prefix overlapping the
   node's own networks (its subnets, its own blocks), anything not inside an enabled IP
   pool nor equal to an advertised service CIDR, and — from a peer that is not a Calico
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

Export: a route leaves only if the peer's export rules accept it, or — no rule matching — it
lies in an enabled pool that allows BGP export or is an advertised service CIDR.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from ribs.context import NodeContext, PrefixSet
from ribs.types import Prefix, Route, SourceKind


class Reason(enum.Enum):
    ACCEPTED = "accepted"
    FILTER_ACCEPT = "accepted by filter"
    AS_PATH_LOOP = "as_path_loop"
    ORIGINATOR_LOOP = "originator_id_is_ours"
    CLUSTER_LOOP = "cluster_list_loop"
    MARTIAN = "martian"
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


class Action(enum.Enum):
    ACCEPT = "Accept"
    REJECT = "Reject"


class MatchOperator(enum.Enum):
    EQUAL = "Equal"
    NOT_EQUAL = "NotEqual"
    IN = "In"
    NOT_IN = "NotIn"


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

    def matches(self, route: Route) -> bool:
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
        return self.interface is None


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


def first_match(rules: Sequence[FilterRule], route: Route) -> Action | None:
    for rule in rules:
        if rule.matches(route):
            return rule.action
    return None


def _loop(route: Route, ctx: NodeContext, policy: PeerPolicy) -> Reason | None:
    attrs = route.attrs
    if attrs.as_path.segments and attrs.as_path.count(ctx.local_as) > policy.allowed_local_as:
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
    if not ctx.enabled_pools.contains(prefix) and prefix not in ctx.service_cidrs:
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


def import_verdict(route: Route, ctx: NodeContext, policy: PeerPolicy = DEFAULT_POLICY) -> Reason:
    """Why ``route`` from a peer is accepted or refused (max-prefix is the RIB's: it counts)."""
    if policy.closed:
        return Reason.FILTER_UNAVAILABLE
    loop = _loop(route, ctx, policy)
    if loop is not None:
        return loop
    if MARTIANS.overlaps(route.prefix) and route.prefix.prefixlen > 0:
        return Reason.MARTIAN
    action = first_match(policy.import_rules(route.prefix), route)
    if action is Action.REJECT:
        return Reason.FILTER_REJECT
    if action is Action.ACCEPT:
        return Reason.FILTER_ACCEPT
    if not ctx.import_guard:
        return Reason.ACCEPTED
    return guard(route.prefix, ctx, policy)


def exportable(route: Route, ctx: NodeContext, policy: PeerPolicy = DEFAULT_POLICY) -> bool:
    """Calico's export filter, after the peer's own export rules."""
    if policy.closed:
        return False
    action = first_match(policy.export_rules(route.prefix), route)
    if action is not None:
        return action is Action.ACCEPT
    prefix = route.prefix
    return ctx.exported_pools.contains(prefix) or ctx.service_cidrs.contains(prefix)
