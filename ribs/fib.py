"""FIB plan: from a best path to the kernel route Calico would install for it.

Shapes (``../shared/CALICO.md``):

* the node's own blocks: ``blackhole <block>``;
* a prefix in a pool with ``ipipMode: Always``: ``via NH dev tunl0 onlink``;
* ``CrossSubnet``: ``via NH dev <interface>`` when NH is inside the node's own network,
  else as Always;
* ``Never``, or outside every pool, or IPv6 (IPIP carries IPv4 only): ``via NH dev
  <interface>`` when NH is on the node's network, else ``via NH`` (the kernel resolves it);
  an IPv6 link-local next hop (a peer that sent no global one) always with the node's
  interface, as BIRD6 installs it (the kernel needs the device of a link-local address);
* a pool with VXLAN: nothing (Felix programs VXLAN routes); nor an IPIP or unencapsulated
  pool that the cluster's ``programClusterRoutes`` leaves to Felix (the route is still
  advertised);
* several best paths (ECMP): one multipath route, each hop in its own shape — tunnelled
  hops included, which Calico cannot do;
* the metric: none (the kernel's default), or with Calico v3.33's priorities the route's
  priority — ``2147483647 - LOCAL_PREF``, else the normal priority (1024) — as v3.33's
  ``calico_kernel_programming`` filter sets ``krt_metric``.

A next hop that is one of the node's own addresses is never installed (the route would
point back at the node itself).
"""

from __future__ import annotations

from ribs.bestpath import Best
from ribs.context import EncapMode, NodeContext
from ribs.kernel_plan import KernelRoute, NextHop
from ribs.policy import priority_of
from ribs.types import Address, Prefix, SourceKind


def _on_node_network(hop: Address, ctx: NodeContext) -> bool:
    iface = ctx.node_v4 if hop.version == 4 else ctx.node_v6
    return iface is not None and hop in iface.network


def _encapsulation(prefix: Prefix, ctx: NodeContext) -> EncapMode | None:
    """The pool's IPIP mode for ``prefix``; None when BGP must not program it (VXLAN, or a
    pool whose cluster routes Felix programs)."""
    pool = ctx.pool_for(prefix)
    if pool is not None:
        if pool.vxlan is not EncapMode.NEVER:
            return None
        programmed = (ctx.cluster_routes.ipip if pool.ipip is not EncapMode.NEVER
                      else ctx.cluster_routes.no_encap)
        if not programmed:
            return None
    return EncapMode.NEVER if (pool is None or prefix.version == 6) else pool.ipip


def _shape(ipip: EncapMode, hop: Address, ctx: NodeContext) -> NextHop | None:
    """The next hop's shape; None for one of the node's own addresses (memoised per context)."""
    cache = ctx.scratch
    key = (ipip, hop.version, int(hop))  # an address hashes slowly; its integer does not
    shape = cache.get(key, _UNSET)
    if shape is _UNSET:
        local = _on_node_network(hop, ctx)
        if hop in ctx.node_addresses:
            shape = None
        elif ipip is EncapMode.ALWAYS or (ipip is EncapMode.CROSS_SUBNET and not local):
            shape = NextHop(hop, ctx.tunnel, onlink=True)
        elif (local or (hop.version == 6 and hop.is_link_local)) and ctx.interface is not None:
            shape = NextHop(hop, ctx.interface)
        else:
            shape = NextHop(hop, None)
        cache[key] = shape
    assert shape is None or isinstance(shape, NextHop)
    return shape


_UNSET = object()
ROUTED = (SourceKind.BGP, SourceKind.RETAINED)  # routes to other nodes, in their shapes


def kernel_route(best: Best, ctx: NodeContext) -> KernelRoute | None:
    """The kernel route for a Loc-RIB entry, or None when none belongs in the kernel."""
    route = best.route
    prefix = route.prefix
    if route.source.kind not in ROUTED:
        if prefix in ctx.own_blocks:
            return KernelRoute.blackhole(prefix, metric=ctx.metric)
        return None  # service CIDRs are announced, not routed here
    if ctx.service_cidrs.contains(prefix):
        return None  # nor routed to another node (Calico's reject CIDRs): kube-proxy's
    ipip = _encapsulation(prefix, ctx)
    if ipip is None:
        return None
    hops: list[NextHop] = []
    for candidate in best.multipath:
        hop = candidate.attrs.next_hop
        if candidate.source.kind not in ROUTED or hop is None:
            continue
        shape = _shape(ipip, hop, ctx)
        if shape is not None and all(shape is not h for h in hops):
            hops.append(shape)  # shapes are memoised: the same hop is the same object
    if not hops:
        return None
    metric = ctx.metric
    if ctx.priorities:
        metric = priority_of(route, ctx.normal_priority(prefix.version))
    return KernelRoute(prefix=prefix, nexthops=tuple(hops), metric=metric)
