"""Which Service addresses this node announces, one /32 (/128) each, and why (pure).

Theory of operation — the rules of confd's route generator (Calico's
``confd/pkg/backends/calico/routes.go``), evaluated afresh from the store each time, so a
Service is advertised exactly while its Service and EndpointSlices justify it:

* nothing while the default BGPConfiguration lists no service ranges, and nothing from a
  node labelled ``node.kubernetes.io/exclude-from-external-load-balancers=true`` (which
  announces no service range either);
* only ClusterIP, NodePort and LoadBalancer Services with a cluster IP (not headless, not
  ExternalName);
* ``externalTrafficPolicy: Cluster`` with a load-balancer address inside a single-address
  ``serviceLoadBalancerIPs`` entry, or an external IP inside a single-address
  ``serviceExternalIPs`` entry: from every node (such an entry is not announced as a range);
* otherwise a Service that is not ``Local`` only with ``serviceLoadBalancerAggregation:
  Disabled``, and then when it has a ready endpoint anywhere; a ``Local`` one when one of its
  ready endpoints is on this node.  Only EndpointSlices of one of the Service's IP families
  count, all of the Service's slices together (one slice losing its endpoint does not
  withdraw what another still justifies); an endpoint without ``ready: false`` is ready;
* the addresses announced: its cluster IPs when ``serviceClusterIPs`` is set, its external
  IPs and load-balancer ingress addresses — each only inside a range of its kind (confd takes
  every cluster IP once any cluster range is set; bgpd keeps to the ranges there too, so a
  dual-stack Service does not announce an IPv6 address no range covers).

The same address justified by two Services (Kubernetes allows it) is announced once and
withdrawn when neither justifies it.

What is left out for a reason the operator may not expect is a notice (not an error: it is
as the ranges say): an address outside every configured range of its kind — an IPv6 address
where only IPv4 ranges are set, say — and ready endpoints on a node the cluster does not
have.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from node_controller.errors import ResourceError
from node_controller.models import BGPConfiguration, EndpointSlice, Node, Service
from node_controller.store import Store
from ribs.types import Address, Prefix, prefix

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
LOCAL_ENDPOINT = "local endpoint (externalTrafficPolicy Local)"
ANY_ENDPOINT = "ready endpoint (serviceLoadBalancerAggregation Disabled)"
SINGLE_LB = "single-address serviceLoadBalancerIPs entry (externalTrafficPolicy Cluster)"
SINGLE_EXTERNAL = "single-address serviceExternalIPs entry (externalTrafficPolicy Cluster)"


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    prefix: Prefix
    service: str  # namespace/name
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"prefix": str(self.prefix), "service": self.service, "reason": self.reason}


def excluded(node: Node) -> bool:
    """This node announces no service address (Kubernetes' label for nodes left out of
    external load balancers)."""
    return node.label_map.get(EXCLUDE_LABEL) == "true"


def _inside(address: Address, ranges: tuple[Prefix, ...]) -> bool:
    return any(address.version == r.version and address in r for r in ranges)


def _single(address: Address | None, ranges: tuple[Prefix, ...]) -> bool:
    return address is not None and any(
        r.prefixlen == r.max_prefixlen and address.version == r.version and address in r
        for r in ranges)


def _reason(svc: Service, slices: list[EndpointSlice], node: str,
            default: BGPConfiguration) -> str | None:
    """Why ``svc`` is advertised from ``node`` (None: it is not)."""
    if svc.type == "ExternalName" or not svc.cluster_ips:
        return None
    if svc.external_policy == "Cluster":
        lbs = (svc.lb_spec_ip, *svc.lb_ips)
        if svc.type == "LoadBalancer" and any(
                _single(a, default.service_loadbalancer_ips) for a in lbs):
            return SINGLE_LB
        if any(_single(a, default.service_external_ips) for a in svc.external_ips):
            return SINGLE_EXTERNAL
    local = svc.external_policy == "Local"
    if not local and default.lb_aggregation:
        return None  # the ranges cover it, from every node
    for piece in slices:
        if piece.family not in svc.families:
            continue
        if local and node in piece.ready_nodes:
            return LOCAL_ENDPOINT
        if not local and piece.ready_nodes:
            return ANY_ENDPOINT
    return None


def _kinds(svc: Service, default: BGPConfiguration
           ) -> list[tuple[str, str, tuple[Address, ...], tuple[Prefix, ...]]]:
    """Each kind of address of ``svc``: (field, range setting, addresses, ranges)."""
    return [("spec.clusterIPs", "serviceClusterIPs", svc.cluster_ips,
             default.service_cluster_ips),
            ("spec.externalIPs", "serviceExternalIPs", svc.external_ips,
             default.service_external_ips),
            ("status.loadBalancer.ingress", "serviceLoadBalancerIPs", svc.lb_ips,
             default.service_loadbalancer_ips)]


def _addresses(svc: Service, default: BGPConfiguration) -> list[Address]:
    return [a for _, _, addresses, ranges in _kinds(svc, default)
            for a in addresses if _inside(a, ranges)]


def _outside(svc: Service, default: BGPConfiguration) -> list[ResourceError]:
    """A notice for each address of a kind with ranges set that none of them covers."""
    out = []
    for field, setting, addresses, ranges in _kinds(svc, default):
        for a in addresses if ranges else ():
            if not _inside(a, ranges):
                family = "" if any(r.version == a.version for r in ranges) else (
                    f" (it has no IPv{a.version} range)")
                out.append(ResourceError("Service", svc.name, field, (
                    f"{a} is outside every {setting} range of BGPConfiguration "
                    f"'default'{family}: not announced")))
    return out


def service_routes(store: Store, node: Node, default: BGPConfiguration
                   ) -> tuple[tuple[ServiceRoute, ...], tuple[ResourceError, ...]]:
    """Every (address, Service) this node announces, with its reason, sorted, and the
    notices.  A Service whose own object, EndpointSlices and configuration are the very
    objects of the last computation keeps its result (``store.memo``): under endpoint churn
    one Service in a thousand changes at a time."""
    if not default.service_cidrs or excluded(node):
        return (), ()
    slices: dict[str, list[EndpointSlice]] = defaultdict(list)
    nodes = {n.name for n in store.all(Node)}
    notices = []
    for piece in store.all(EndpointSlice):
        if piece.service is not None:
            slices[piece.service].append(piece)
        unknown = sorted(piece.ready_nodes - nodes - {""})
        if unknown:
            notices.append(ResourceError("EndpointSlice", piece.name, "endpoints.nodeName", (
                f"ready endpoints on {', '.join(repr(n) for n in unknown[:5])}"
                f"{' and more' if len(unknown) > 5 else ''}, not nodes of the cluster: no node "
                "announces the Service for them")))
    memo: dict[str, _Entry] = store.memo.setdefault("services", {})
    fresh: dict[str, _Entry] = {}
    for svc in store.all(Service):
        mine = slices.get(svc.name, [])
        entry = memo.get(svc.name)
        if entry is None or not entry.holds(svc, mine, node.name, default):
            entry = _Entry(svc, mine, node.name, default)
        fresh[svc.name] = entry
    store.memo["services"] = fresh
    keyed = sorted(item for entry in fresh.values() for item in entry.routes)
    notices += [n for entry in fresh.values() for n in entry.notices]
    return tuple(route for *_, route in keyed), tuple(notices)


class _Entry:
    """One Service's routes, with the inputs they were computed from."""

    __slots__ = ("default", "node", "notices", "routes", "slices", "svc")

    def __init__(self, svc: Service, slices: list[EndpointSlice], node: str,
                 default: BGPConfiguration) -> None:
        self.svc, self.slices, self.node, self.default = svc, slices, node, default
        reason = _reason(svc, slices, node, default)
        routes = []
        if reason is not None:
            for a in dict.fromkeys(_addresses(svc, default)):
                # sorted by family, address, then Service: integers and text compare fast
                routes.append((a.version, int(a), svc.name, ServiceRoute(
                    prefix(f"{a}/{a.max_prefixlen}"), svc.name, reason)))
        self.routes = routes
        self.notices = _outside(svc, default)

    def holds(self, svc: Service, slices: list[EndpointSlice], node: str,
              default: BGPConfiguration) -> bool:
        return (svc is self.svc and default is self.default and node == self.node
                and len(slices) == len(self.slices)
                and all(a is b for a, b in zip(slices, self.slices, strict=True)))
