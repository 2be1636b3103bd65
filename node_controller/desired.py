"""From the store and this node's name to the node's desired BGP configuration (pure).

Theory of operation: :func:`desired_config` reads a :class:`~node_controller.store.Store`
and builds one immutable :class:`DesiredConfig`, the way confd renders BIRD's configuration
for a Calico node — so that neighbouring BIRD nodes see exactly the sessions they expect:

* local AS: the node's ``ASNumber`` annotation, else the ``default`` BGPConfiguration's,
  else 64512; router id: the node's IPv4 address (for BIRD6 too: a router id is four
  octets), on a node without one the hash of its name (calico-node's
  ``CALICO_ROUTER_ID=hash``, which Calico documents for IPv6-only clusters); listen port, log
  level and prefix advertisements: ``node.<name>`` BGPConfiguration over ``default`` (only
  those three);
* each address family as confd renders it for BIRD (IPv4) and BIRD6 (IPv6) — the same
  rules between the nodes' addresses of that family (``bgp_processor.go``): a node has the
  sessions of a family when it has an address of it;
* node-to-node mesh (unless disabled, or this node is a route reflector): every other node
  with an address of the family that is not a route reflector; this node is **passive
  towards a peer whose address is greater than its own compared as strings**;
* BGPPeers that select this node (unscoped: every node; ``node``; ``nodeSelector``), towards
  ``peerIP``, each node of ``peerSelector`` or each of this node's workloads that Felix says
  ``localWorkloadSelector`` picks (passive, ``Local_Workload_<ip>``); and the reverse of
  peerings that select this node as their peer (not with ``reversePeering: Manual``).  For
  one address and port, an unscoped BGPPeer wins over a scoped one, an explicit one over an
  implied reverse one, any of them over the mesh;
* towards an iBGP peer whose cluster id differs from ours, a route-reflector node is its
  reflector (``rr_client``);
* a peer whose password Secret (or key) is missing is left out with an error — never
  configured without the password it was given;
* announced: this node's blocks, the service ranges, and the Service addresses its
  endpoints justify (:mod:`node_controller.services`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from typing import Any

from node_controller.errors import ResourceError
from node_controller.models import (
    BGPD_ANNOTATION,
    DEFAULT_AS,
    BFDConfiguration,
    BFDInterface,
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    ClusterInformation,
    FelixConfiguration,
    IPPool,
    LocalWorkload,
    Node,
    Secret,
    SecretRef,
    parse_community,
)
from node_controller.services import ServiceRoute, excluded, service_routes
from node_controller.store import Store
from ribs.context import Advertisement, ClusterRoutes
from ribs.policy import NORMAL_PRIORITY
from ribs.types import Address, Prefix, address_key, prefix_bits

DEFAULT_PORT = 179
#: programClusterRoutes: what BGP programs when Felix programs the key (Calico's supported
#: pairs, design/cluster-route-programming/DESIGN.md §1; tigera-operator's
#: felixProgramClusterRoutesValue / birdProgramClusterRoutesValue)
FELIX_COMPLEMENT = {"Enabled": "Disabled", "Disabled": "Enabled",
                    "EnabledIPIPOnly": "EnabledNoEncapOnly",
                    "EnabledNoEncapOnly": "EnabledIPIPOnly"}
DEFAULT_RESTART_TIME = 120.0


# confd's order among the peerings that make the same session: an explicit BGPPeer for
# every node, one scoped to nodes, the reverse side of another node's BGPPeer, the mesh
RANK_GLOBAL, RANK_NODE, RANK_REVERSE, RANK_MESH = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class PeerConfig:
    name: str
    address: Address
    port: int
    peer_as: int
    local_as: int
    type: str  # mesh | global | node
    passive: bool = False
    rr_client: bool = False
    password: str | None = field(default=None, repr=False)
    ttl_security: int | None = None
    restart_time: float = DEFAULT_RESTART_TIME
    keepalive_time: float | None = None
    next_hop_mode: str = "Auto"
    source_address: Address | None = None
    num_allowed_local_as: int = 0
    filters: tuple[str, ...] = ()
    calico_node: str | None = None  # the Calico node at that address, if any
    cluster_id: IPv4Address | None = None  # that node's route-reflector cluster id
    reachable_by: Address | None = None
    origin: tuple[str, str] = ("BGPConfiguration", "default")  # the resource that made it
    accept_node_block_routes: bool = False
    max_prefixes: int | None = None
    max_prefixes_action: str = "refuse"
    failure_detection: str = "None"  # BGPPeer failureDetectionMode
    bfd_multihop: bool = False  # bgpd/bfd-multihop: BFD also where not directly connected
    # which wins where two peerings make one session (one address: ExaBGP keys neighbours by
    # it), the lower first: RANK_GLOBAL, RANK_NODE, RANK_REVERSE, RANK_MESH
    rank: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "address": str(self.address), "port": self.port,
            "peer_as": self.peer_as, "local_as": self.local_as, "type": self.type,
            "passive": self.passive, "rr_client": self.rr_client,
            "password": self.password is not None, "ttl_security": self.ttl_security,
            "restart_time": self.restart_time, "keepalive_time": self.keepalive_time,
            "next_hop_mode": self.next_hop_mode,
            "source_address": str(self.source_address) if self.source_address else None,
            "num_allowed_local_as": self.num_allowed_local_as, "filters": list(self.filters),
            "calico_node": self.calico_node,
            "reachable_by": str(self.reachable_by) if self.reachable_by else None,
            "origin": "/".join(self.origin),
            "accept_node_block_routes": self.accept_node_block_routes,
            "max_prefixes": self.max_prefixes, "max_prefixes_action": self.max_prefixes_action,
            "failure_detection": self.failure_detection, "bfd_multihop": self.bfd_multihop,
        }


@dataclass(frozen=True, slots=True)
class DesiredConfig:
    node: str
    local_as: int = DEFAULT_AS
    router_id: IPv4Address | None = None
    listen_port: int = DEFAULT_PORT
    bind_addresses: tuple[Address, ...] = ()  # bindMode NodeIP: the node's addresses
    node_address: IPv4Interface | None = None
    node_address_v6: IPv6Interface | None = None
    route_reflector_cluster_id: IPv4Address | None = None
    announce: tuple[Prefix, ...] = ()
    blackholes: tuple[Prefix, ...] = ()
    other_blocks: tuple[Prefix, ...] = ()  # the blocks other nodes hold
    # ... with their nodes' addresses (datastore-backed retention of their routes)
    block_owners: tuple[tuple[Prefix, tuple[Address, ...]], ...] = ()
    service_cidrs: tuple[Prefix, ...] = ()
    # the Service addresses announced (also in ``announce``), each with its Service and why
    services: tuple[ServiceRoute, ...] = ()
    pools: tuple[IPPool, ...] = ()
    advertisements: tuple[Advertisement, ...] = ()
    filters: tuple[BGPFilter, ...] = ()
    peers: tuple[PeerConfig, ...] = ()
    log_severity: str = "Info"
    cluster_routes: str | None = None  # programClusterRoutes of the default BGPConfiguration
    # Felix's programClusterRoutes for this node (FelixConfiguration node.<name>, else
    # default), where one sets it, and the object that does
    felix_cluster_routes: str | None = None
    felix_configuration: str | None = None
    # the cluster is on Calico v3.33 or later (ClusterInformation): its route priorities, and
    # its programClusterRoutes default (EnabledNoEncapOnly)
    calico_v3_33: bool = False
    normal_priority_v4: int = NORMAL_PRIORITY  # the default BGPConfiguration's
    normal_priority_v6: int = NORMAL_PRIORITY
    errors: tuple[ResourceError, ...] = ()
    # inputs taken as they are but that change nothing, each with why (not errors: the node
    # runs as its resources say)
    notices: tuple[ResourceError, ...] = ()
    # why the node drains (RFC 8326 graceful shutdown of every route it sends), if it does;
    # and the node's taints' keys (the daemon's drain_taints setting drains it on those)
    draining: str | None = None
    taints: tuple[str, ...] = ()
    # every node's address, with the node's name (a session to a node that is still there,
    # at that address, can be held while the topology changes: make-before-break)
    nodes_by_address: tuple[tuple[Address, str], ...] = ()
    # the BFDConfiguration selecting this node (the first by name) and its interface entries
    bfd_configuration: str | None = None
    bfd_interfaces: tuple[BFDInterface, ...] = ()

    def program_cluster_routes(self, setting: str | None = None) -> str:
        """Which pools' cluster routes BGP programs: the BGPConfiguration's
        ``programClusterRoutes``, else ``setting`` (bgpd's ``cluster_routes``), else what
        Felix's leaves (the pair complementary, as tigera-operator writes it), else Calico's
        default for the cluster's version.  The pools Felix programs are left to it even so
        (see :func:`bgpd.translate.node_context`)."""
        return (self.cluster_routes or setting
                or FELIX_COMPLEMENT.get(self.felix_cluster_routes or "")
                or ("EnabledNoEncapOnly" if self.calico_v3_33 else "Enabled"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node, "local_as": self.local_as,
            "router_id": str(self.router_id) if self.router_id else None,
            "listen_port": self.listen_port,
            "bind_addresses": [str(a) for a in self.bind_addresses],
            "cluster_routes": self.cluster_routes,
            "felix_cluster_routes": self.felix_cluster_routes,
            "felix_configuration": self.felix_configuration,
            "calico_v3_33": self.calico_v3_33,
            "normal_priority": {"v4": self.normal_priority_v4, "v6": self.normal_priority_v6},
            "node_address": str(self.node_address) if self.node_address else None,
            "node_address_v6": str(self.node_address_v6) if self.node_address_v6 else None,
            "route_reflector_cluster_id": (str(self.route_reflector_cluster_id)
                                           if self.route_reflector_cluster_id else None),
            "announce": [str(p) for p in self.announce],
            "blackholes": [str(p) for p in self.blackholes],
            "other_blocks": [str(p) for p in self.other_blocks],
            "service_cidrs": [str(p) for p in self.service_cidrs],
            "advertisements": [{"cidr": str(a.cidr),
                                "communities": [f"{x}:{y}" for x, y in a.communities],
                                "large_communities": [f"{x}:{y}:{z}"
                                                      for x, y, z in a.large_communities]}
                               for a in self.advertisements],
            "filters": [{"name": f.name, "rules": {
                "importV4": len(f.import_v4), "exportV4": len(f.export_v4),
                "importV6": len(f.import_v6), "exportV6": len(f.export_v6)}}
                for f in self.filters],
            "services": [r.as_dict() for r in self.services],
            "pools": [{"name": p.name, "cidr": str(p.cidr), "block_size": p.block_size,
                       "ipip_mode": p.ipip_mode.value,
                       "vxlan_mode": p.vxlan_mode.value,
                       "disable_bgp_export": p.disable_bgp_export, "disabled": p.disabled,
                       "node_selector": str(p.node_selector) if p.node_selector else None}
                      for p in self.pools],
            "peers": [p.as_dict() for p in self.peers],
            "log_severity": self.log_severity,
            "errors": [e.as_dict() for e in self.errors],
            "notices": [e.as_dict() for e in self.notices],
            "draining": self.draining,
            "taints": list(self.taints),
            "bfd_configuration": self.bfd_configuration,
            "bfd_interfaces": [{"match_pattern": i.match_pattern, "min_rx": i.min_rx,
                                "min_tx": i.min_tx, "idle_tx": i.idle_tx,
                                "multiplier": i.multiplier} for i in self.bfd_interfaces],
        }


ADDRESS_ANNOTATION = {4: "metadata.annotations.projectcalico.org/IPv4Address",
                      6: "metadata.annotations.projectcalico.org/IPv6Address"}


def address_of(node: Node, version: int) -> Address | None:
    """``node``'s address of one family, if it has one."""
    interface = node.ipv4 if version == 4 else node.ipv6
    return interface.ip if interface is not None else None


def hashed_router_id(name: str) -> IPv4Address:
    """calico-node's router id with ``CALICO_ROUTER_ID=hash``: the first four bytes of the
    SHA-256 of the node name, a first byte over 223 less 32 (``HashToIPv4``)."""
    first, *rest = hashlib.sha256(name.encode()).digest()[:4]
    return IPv4Address(bytes([first - 32 if first > 223 else first, *rest]))


def peer_name(kind: str, address: Address, port: int | None = None) -> str:
    """BIRD's protocol names as confd writes them: Mesh_10_10_1_8, Global_10_0_0_1_port_1179."""
    text = str(address).replace(".", "_").replace(":", "_")
    return f"{kind}_{text}" + (f"_port_{port}" if port is not None else "")


class _Builder:
    """One computation of a DesiredConfig (holds the lookups it needs)."""

    def __init__(self, store: Store, node_name: str,
                 workloads: Iterable[LocalWorkload] = ()) -> None:
        self.store = store
        self.workloads = tuple(workloads)
        self.node_name = node_name
        self.errors: list[ResourceError] = []
        self.notices: list[ResourceError] = []
        self.default = store.get(BGPConfiguration, "default") or BGPConfiguration("default")
        self.own_config = store.get(BGPConfiguration, f"node.{node_name}")
        self.nodes = store.all(Node)
        self.by_address: dict[Address, Node] = {
            i.ip: n for n in self.nodes for i in (n.ipv4, n.ipv6) if i is not None}
        self.global_as = self.default.as_number or DEFAULT_AS
        self.me = store.get(Node, node_name)

    def node_as(self, node: Node) -> int:
        return node.as_number or self.global_as

    def node_port(self, node: Node) -> int:
        own = self.store.get(BGPConfiguration, f"node.{node.name}")
        if own is not None and own.listen_port is not None:
            return own.listen_port
        return self.default.listen_port or DEFAULT_PORT

    def secret(self, ref: SecretRef | None, *, kind: str, name: str, field_: str
               ) -> tuple[bool, str | None]:
        """(usable, password): unusable when a referenced Secret or key is missing."""
        if ref is None:
            return True, None
        secret = self.store.get(Secret, ref.name)
        value = secret.get(ref.key) if secret is not None else None
        if value is None:
            what = (f"Secret {ref.name!r}" if secret is None
                    else f"key {ref.key!r} of Secret {ref.name!r}")
            self.errors.append(ResourceError(
                kind, name, field_, f"{what} not found: the peer is left out until it exists"))
            return False, None
        return True, value

    def node_peers(self, me: Node, others: Iterable[Node], *, kind: str, prefix: str,
                   versions: Iterable[int] = (4, 6), use_node_ip: bool = False,
                   **options: Any) -> list[PeerConfig]:
        """The sessions with ``others`` in each of ``versions`` that both ends have an
        address of (confd's ``nodeAsBGPPeers``, and the mesh); ``use_node_ip``: from this
        node's address of the family."""
        out = []
        for version in versions:
            own = address_of(me, version)
            if own is None:
                continue
            for other in others:
                address = address_of(other, version)
                if other.name == me.name or address is None:
                    continue
                out.append(PeerConfig(
                    name=peer_name(prefix, address), address=address,
                    port=self.node_port(other), peer_as=self.node_as(other),
                    local_as=self.node_as(me), type=kind, passive=str(address) > str(own),
                    calico_node=other.name, cluster_id=other.rr_cluster_id,
                    source_address=own if use_node_ip else None, **options))
        return out

    # --- the parts of the configuration -----------------------------------------------
    def mesh(self, me: Node) -> list[PeerConfig]:
        if self.default.node_to_node_mesh is False or me.rr_cluster_id is not None:
            return []
        if me.ipv4 is None and me.ipv6 is None:
            return []
        usable, password = self.secret(self.default.mesh_password, kind="BGPConfiguration",
                                       name="default", field_="spec.nodeMeshPassword")
        if not usable:
            return []
        restart = self.default.mesh_restart_time or DEFAULT_RESTART_TIME
        return self.node_peers(
            me, [n for n in self.nodes if n.rr_cluster_id is None], kind="mesh",
            prefix="Mesh", password=password, restart_time=restart, use_node_ip=True,
            rank=RANK_MESH)

    def selects_local(self, peer: BGPPeer, node: Node) -> bool:
        if peer.node is not None:
            return peer.node == node.name
        if peer.node_selector is not None:
            return peer.node_selector.matches(node.label_map)
        return True

    def explicit(self, me: Node, peer: BGPPeer) -> list[PeerConfig]:
        """Peerings of ``peer`` that this node makes as a selected local node."""
        kind = "node" if peer.scoped else "global"
        prefix = "Node" if peer.scoped else "Global"
        options = self.peer_options(me, peer)
        if options is None:
            return []
        options["rank"] = RANK_NODE if peer.scoped else RANK_GLOBAL
        if peer.local_workloads is not None:
            return self.local_workloads(me, peer, options)
        if peer.peer_ip is not None:
            target = self.by_address.get(peer.peer_ip)
            if target is not None and target.name == me.name:
                return []
            port = peer.peer_port or (self.node_port(target) if target else DEFAULT_PORT)
            assert peer.as_number is not None
            own = address_of(me, peer.peer_ip.version)
            use_node_ip = options.pop("use_node_ip")
            return [PeerConfig(
                name=peer_name(prefix, peer.peer_ip, peer.peer_port), address=peer.peer_ip,
                port=port, peer_as=peer.as_number,
                local_as=peer.local_as_number or self.node_as(me), type=kind,
                passive=target is not None and own is not None and str(peer.peer_ip) > str(own),
                calico_node=target.name if target else None,
                cluster_id=target.rr_cluster_id if target else None,
                source_address=own if use_node_ip else None, **options,
            )]
        assert peer.peer_selector is not None
        selector = peer.peer_selector
        return self.node_peers(me, [n for n in self.nodes if selector.matches(n.label_map)],
                               kind=kind, prefix=prefix, **options)

    def local_workloads(self, me: Node, peer: BGPPeer, options: dict[str, Any]
                        ) -> list[PeerConfig]:
        """Sessions with this node's workloads Felix found ``peer`` selects: passive, no
        source address, one per family the workload has an address of (confd's
        ``localBGPPeerDataAsBGPPeers``)."""
        assert peer.as_number is not None
        options = {k: v for k, v in options.items() if k != "use_node_ip"}
        return [
            PeerConfig(name=peer_name("Local_Workload", address), address=address,
                       port=DEFAULT_PORT, peer_as=peer.as_number,
                       local_as=peer.local_as_number or self.node_as(me), type="local_workload",
                       passive=True, **options)
            for w in self.workloads if w.bgp_peer == peer.name
            for address in (w.ipv4, w.ipv6) if address is not None
        ]

    def reverse(self, me: Node, peer: BGPPeer) -> list[PeerConfig]:
        """Peerings implied by ``peer`` selecting this node as the remote side (unless its
        ``reversePeering`` is Manual: then the other side needs a BGPPeer of its own)."""
        if not peer.reverse_peering or peer.local_workloads is not None:
            return []
        # a peerSelector reverses in both families, a peerIP in its own (confd)
        if peer.peer_selector is not None and peer.peer_selector.matches(me.label_map):
            versions: tuple[int, ...] = (4, 6)
        elif peer.peer_ip is not None and peer.peer_ip == address_of(me, peer.peer_ip.version):
            versions = (peer.peer_ip.version,)
        else:
            return []
        options = self.peer_options(me, peer)
        if options is None:
            return []
        return self.node_peers(me, [n for n in self.nodes if self.selects_local(peer, n)],
                               kind="node", prefix="Node", versions=versions,
                               rank=RANK_REVERSE, **options)

    def peer_options(self, me: Node, peer: BGPPeer) -> dict[str, Any] | None:
        usable, password = self.secret(peer.password, kind="BGPPeer", name=peer.name,
                                       field_="spec.password.secretKeyRef")
        if not usable:
            return None
        for f in peer.filters:
            if self.store.get(BGPFilter, f) is None:
                invalid = self.store.errors.get(("BGPFilter", f))
                what = (f"BGPFilter {f!r} is invalid ({invalid.field}: {invalid.message})"
                        if invalid else f"BGPFilter {f!r} not found")
                self.errors.append(ResourceError(
                    "BGPPeer", peer.name, "spec.filters",
                    f"{what}: the peer imports and exports nothing until it is valid"))
        if peer.keepalive_time == 0:
            self.notices.append(ResourceError(
                "BGPPeer", peer.name, "spec.keepaliveTime",
                "0s is BIRD's default, as Calico passes it on: hold time 240 s, keepalives "
                "every 80 s"))
        mode = peer.next_hop_mode or ("Keep" if peer.keep_original_next_hop else "Auto")
        return {
            "password": password, "ttl_security": peer.ttl_security,
            "restart_time": peer.max_restart_time or DEFAULT_RESTART_TIME,
            "keepalive_time": peer.keepalive_time, "next_hop_mode": mode,
            "use_node_ip": peer.source_address == "UseNodeIP",
            "num_allowed_local_as": peer.num_allowed_local_as or 0,
            "filters": peer.filters,  # all of them: one that is missing closes the peer
            "reachable_by": peer.reachable_by, "origin": ("BGPPeer", peer.name),
            "accept_node_block_routes": peer.accept_node_block_routes,
            "max_prefixes": peer.max_prefixes, "max_prefixes_action": peer.max_prefixes_action,
            "failure_detection": peer.failure_detection, "bfd_multihop": peer.bfd_multihop,
        }

    def peers(self, me: Node) -> list[PeerConfig]:
        # the lower rank wins for one (address, port); translate picks by it again among the
        # ports of one address
        ranked: dict[tuple[Address, int], PeerConfig] = {}

        def offer(configs: Iterable[PeerConfig]) -> None:
            for config in configs:
                key = (config.address, config.port)
                first = ranked.get(key)
                if first is None or config.rank < first.rank:
                    ranked[key] = config
                elif config.rank == first.rank and (config.origin, config.calico_node) != (
                        first.origin, first.calico_node):
                    self.duplicate(config, first)

        bgp_peers = self.store.all(BGPPeer)
        offer(self.mesh(me))
        for peer in bgp_peers:
            offer(self.reverse(me, peer))
        for peer in bgp_peers:
            if self.selects_local(peer, me):
                offer(self.explicit(me, peer))
        configs = list(ranked.values())
        my_cluster = me.rr_cluster_id
        if my_cluster is not None:
            configs = [
                replace(c, rr_client=c.peer_as == c.local_as and c.cluster_id != my_cluster)
                for c in configs
            ]
        return sorted(configs, key=lambda c: (address_key(c.address), c.port))

    def duplicate(self, later: PeerConfig, first: PeerConfig) -> None:
        """Two BGPPeers of one rank, or two nodes at one address, make the same session: the
        first (by name) applies."""
        if later.calico_node is not None and later.calico_node != first.calico_node:
            self.errors.append(ResourceError(
                "Node", later.calico_node, ADDRESS_ANNOTATION[later.address.version], (
                    f"{later.address} is node {first.calico_node!r}'s address too: the one "
                    f"session to it ({first.name}) is {first.calico_node!r}'s")))
            return
        kind, name = later.origin
        peer = self.store.get(BGPPeer, name) if kind == "BGPPeer" else None
        where = "spec.peerSelector" if peer is not None and peer.peer_selector else "spec.peerIP"
        self.errors.append(ResourceError(kind, name, where, (
            f"peer {later.name}: {'/'.join(first.origin)} already makes this session "
            f"({later.address} port {later.port}): left out")))

    def pool_problems(self, me: Node) -> None:
        """Overlapping pools (Calico's API refuses them; here a route inside both follows
        the more specific), and a pool over this node's own subnet."""
        pools = self.store.all(IPPool)
        for i, pool in enumerate(pools):
            for other in pools[:i]:
                if pool.cidr.version == other.cidr.version and pool.cidr.overlaps(other.cidr):
                    self.errors.append(ResourceError("IPPool", pool.name, "spec.cidr", (
                        f"{pool.cidr} overlaps IPPool {other.name!r} ({other.cidr}), which "
                        "Calico refuses: a route inside both follows the more specific pool")))
            for own in (me.ipv4, me.ipv6):
                if own is not None and own.version == pool.cidr.version and (
                        pool.cidr.overlaps(own.network)):
                    self.notices.append(ResourceError("IPPool", pool.name, "spec.cidr", (
                        f"{pool.cidr} overlaps this node's subnet {own.network}: no route "
                        "into the subnet is taken from a peer, whatever the pool")))

    def cluster_route_split(self, bgp: str, felix: FelixConfiguration) -> None:
        """Both halves of the split set by hand: a class both claim is left to Felix (a
        notice), a class neither claims is an error (its pods are unreachable from other
        nodes), bgpd following its BGPConfiguration as BIRD would."""
        ours, theirs = ClusterRoutes.named(bgp), ClusterRoutes.named(
            felix.program_cluster_routes or "")
        where = (f"FelixConfiguration {felix.name!r} spec.programClusterRoutes is "
                 f"{felix.program_cluster_routes}")
        kinds = (("IPIP", ours.ipip, theirs.ipip),
                 ("unencapsulated", ours.no_encap, theirs.no_encap))
        both = [name for name, a, b in kinds if a and b]
        neither = [name for name, a, b in kinds if not a and not b]
        if both:
            self.notices.append(ResourceError("BGPConfiguration", "default",
                                              "spec.programClusterRoutes", (
                f"{bgp}, but {where}: the cluster routes of {' and '.join(both)} pools are "
                "left to Felix (both programming them would fight)")))
        if neither:
            self.errors.append(ResourceError("BGPConfiguration", "default",
                                             "spec.programClusterRoutes", (
                f"{bgp}, and {where}: the cluster routes of {' and '.join(neither)} pools "
                "are programmed by neither, so their pods are unreachable from other nodes "
                "(make the two complementary)")))

    def advertisements(self) -> tuple[Advertisement, ...]:
        source = (self.own_config if self.own_config and self.own_config.prefix_advertisements
                  else self.default)
        names = {c.name: c.value for c in self.default.communities}
        if self.own_config is not None:
            names.update({c.name: c.value for c in self.own_config.communities})
        out = []
        for advert in source.prefix_advertisements:
            values = [names.get(ref) or parse_community(ref, "communities")
                      for ref in advert.communities]
            out.append(Advertisement(
                advert.cidr,
                communities=tuple((v[0], v[1]) for v in values if len(v) == 2),
                large_communities=tuple((v[0], v[1], v[2]) for v in values if len(v) == 3),
            ))
        return tuple(out)

    def blocks(self, me: Node) -> tuple[Prefix, ...]:
        affinities = [a.cidr for a in self.store.all(BlockAffinity)
                      if a.node == me.name and a.active]
        return tuple(sorted(set(affinities or me.pod_cidrs), key=prefix_bits))

    def bfd_configuration(self, me: Node) -> BFDConfiguration | None:
        """The BFDConfiguration whose nodeSelector selects this node (no selector: every
        node); of several, the first by name, the others noticed."""
        chosen = [c for c in sorted(self.store.all(BFDConfiguration), key=lambda c: c.name)
                  if c.node_selector is None or c.node_selector.matches(me.label_map)]
        for other in chosen[1:]:
            self.notices.append(ResourceError(
                "BFDConfiguration", other.name, "spec.nodeSelector",
                f"also selects this node; BFDConfiguration {chosen[0].name!r} applies "
                "(the first by name)"))
        return chosen[0] if chosen else None

    def held(self, me: Node) -> dict[str, set[Prefix]]:
        """Blocks other nodes hold, by node: their affinities, else their pod CIDRs."""
        held: dict[str, set[Prefix]] = {}
        for a in self.store.all(BlockAffinity):
            if a.node != me.name and a.active:
                held.setdefault(a.node, set()).add(a.cidr)
        for node in self.nodes:
            if node.name != me.name and node.name not in held:
                held[node.name] = set(node.pod_cidrs)
        return held

    def block_owners(self, held: dict[str, set[Prefix]]
                     ) -> tuple[tuple[Prefix, tuple[Address, ...]], ...]:
        """Each block another node holds, with that node's addresses."""
        out = []
        for node in self.nodes:
            addresses = tuple(i.ip for i in (node.ipv4, node.ipv6) if i is not None)
            out += [(block, addresses) for block in held.get(node.name, ()) if addresses]
        return tuple(sorted(out, key=lambda pair: prefix_bits(pair[0])))


def desired_config(store: Store, node_name: str,
                   workloads: Iterable[LocalWorkload] = ()) -> DesiredConfig:
    """The DesiredConfig of ``node_name`` (``workloads``: its endpoints selected for local
    BGP peering); problems found go into its ``errors``."""
    b = _Builder(store, node_name, workloads)
    me = b.me
    resource_errors = store.error_list()
    if me is None:
        missing = ResourceError("Node", node_name, "metadata.name",
                                "no such node: nothing is announced and no peer configured")
        return DesiredConfig(node=node_name, local_as=b.global_as,
                             errors=(*resource_errors, missing))
    if me.ipv4 is None and me.ipv6 is None:
        b.errors.append(ResourceError(
            "Node", node_name, "metadata.annotations.projectcalico.org/IPv4Address",
            "this node has no IPv4 or IPv6 address: no router id, no session"))
    own = b.own_config
    listen_port = (own.listen_port if own and own.listen_port else None) \
        or b.default.listen_port or DEFAULT_PORT
    log = (own.log_severity if own and own.log_severity else None) \
        or b.default.log_severity or "Info"
    blocks = b.blocks(me)
    default = b.default
    services = tuple(sorted(set(default.service_cidrs), key=prefix_bits))
    # announced from every node: the cluster IP ranges, the external and load-balancer ranges
    # but not single addresses in them (those are per service, from the nodes serving it),
    # and the load-balancer ranges only with serviceLoadBalancerAggregation Enabled
    ranges = [*default.service_external_ips,
              *(default.service_loadbalancer_ips if default.lb_aggregation else ())]
    aggregates = {*default.service_cluster_ips,
                  *(p for p in ranges if p.prefixlen < p.max_prefixlen)}
    if excluded(me):  # left out of load balancers: no service address at all
        aggregates = set()
    per_service, service_notices = service_routes(store, me, default)
    peers = b.peers(me)
    b.pool_problems(me)
    held = b.held(me)
    info = store.get(ClusterInformation, "default")
    bfd = b.bfd_configuration(me)
    felix = next((f for f in (store.get(FelixConfiguration, f"node.{node_name}"),
                              store.get(FelixConfiguration, "default"))
                  if f is not None and f.program_cluster_routes), None)
    if felix is not None and default.program_cluster_routes:
        b.cluster_route_split(default.program_cluster_routes, felix)
    return DesiredConfig(
        node=node_name,
        local_as=b.node_as(me),
        router_id=me.ipv4.ip if me.ipv4 else (hashed_router_id(node_name) if me.ipv6 else None),
        listen_port=listen_port,
        bind_addresses=tuple(i.ip for i in (me.ipv4, me.ipv6) if i is not None)
        if b.default.bind_mode == "NodeIP" else (),
        node_address=me.ipv4,
        node_address_v6=me.ipv6,
        route_reflector_cluster_id=me.rr_cluster_id,
        announce=tuple(sorted(set(blocks) | aggregates | {r.prefix for r in per_service},
                              key=prefix_bits)),
        blackholes=blocks,
        other_blocks=tuple(sorted(set().union(*held.values()), key=prefix_bits)),
        block_owners=b.block_owners(held),
        service_cidrs=services,
        services=per_service,
        pools=tuple(sorted(store.all(IPPool), key=lambda p: prefix_bits(p.cidr))),
        advertisements=b.advertisements(),
        filters=tuple(store.all(BGPFilter)),
        peers=tuple(peers),
        log_severity=log,
        cluster_routes=default.program_cluster_routes,
        felix_cluster_routes=felix.program_cluster_routes if felix else None,
        felix_configuration=felix.name if felix else None,
        calico_v3_33=info is not None and info.v3_33,
        normal_priority_v4=default.normal_priority_v4 or NORMAL_PRIORITY,
        normal_priority_v6=default.normal_priority_v6 or NORMAL_PRIORITY,
        errors=tuple(sorted({*resource_errors, *b.errors})),
        notices=tuple(sorted({*b.notices, *service_notices})),
        draining=("cordoned (spec.unschedulable)" if me.unschedulable else
                  f"annotated {BGPD_ANNOTATION}drain" if me.drain else None),
        taints=me.taints,
        nodes_by_address=tuple(sorted(((a, n.name) for a, n in b.by_address.items()),
                                      key=lambda item: address_key(item[0]))),
        bfd_configuration=bfd.name if bfd else None,
        bfd_interfaces=bfd.interfaces if bfd else (),
    )
