"""DesiredConfig → what the speaker and the RIB are given (pure): validated, or left out.

Theory of operation: the node controller's :class:`~node_controller.desired.DesiredConfig`
speaks Calico (peers made from BGPPeers and the mesh); the speaker speaks ExaBGP
(:class:`~bgpd.speaker.config.Neighbor`).  :func:`translate` turns each peer into a
neighbour and checks it completely — against everything ExaBGP or the kernel would refuse
(:func:`bgpd.speaker.config.problems`), one session per address (ExaBGP keys neighbours by
address), a family the node has an address of — *before* any part of the daemon changes.
A peer that fails is left out of both the speaker and the RIB and becomes a
:class:`~node_controller.errors.ResourceError` naming the resource that made it, the field
and the reason; every other peer is applied.  So no resource, however it is written, can
make the RIB task raise.

Several peers for one address (say the mesh session to a node and a BGPPeer towards the
same node on another port, which BIRD would run side by side): the one already running
keeps its session — adding a resource never resets a working session — else the first of
an explicit global peer, a node-scoped one, the mesh, then the lower port.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from bgpd.speaker import codec
from bgpd.speaker.config import (
    DEFAULT_HOLD,
    HOLD_MAX,
    RESTART_MAX,
    Neighbor,
    SpeakerConfig,
    problems,
)
from node_controller.desired import ADDRESS_ANNOTATION, DesiredConfig, PeerConfig
from node_controller.errors import ResourceError
from ribs.context import ClusterRoutes, NodeContext, Pool, PrefixSet
from ribs.export import ExportPeer, NextHopMode
from ribs.policy import PeerPolicy
from ribs.rib import Session
from ribs.types import Address, Prefix, Source, bgp_key

# the resource field each neighbour value comes from, by the kind of resource
_FIELDS = {
    "BGPPeer": {"address": "spec.peerIP", "port": "spec.peerIP", "peer AS": "spec.asNumber",
                "local AS": "spec.asNumber", "password": "spec.password.secretKeyRef",
                "ttl security": "spec.ttlSecurity", "hold time": "spec.keepaliveTime",
                "restart time": "spec.maxRestartTime", "local address": "spec.sourceAddress",
                "family": "spec.peerIP"},
    "BGPConfiguration": {"password": "spec.nodeMeshPassword",
                         "address": "spec.nodeToNodeMeshEnabled",
                         "family": "spec.nodeToNodeMeshEnabled",
                         "restart time": "spec.nodeMeshMaxRestartTime",
                         "port": "spec.listenPort", "peer AS": "spec.asNumber",
                         "local AS": "spec.asNumber"},
}


@dataclass(frozen=True, slots=True)
class Translation:
    peers: tuple[PeerConfig, ...] = ()  # the peers applied (RIB and speaker)
    neighbors: tuple[Neighbor, ...] = ()  # the same, as ExaBGP is told them
    announce: tuple[Prefix, ...] = ()
    errors: tuple[ResourceError, ...] = ()


def _error(peer: PeerConfig, what: str, why: str) -> ResourceError:
    kind, name = peer.origin
    field = _FIELDS.get(kind, {}).get(what, what)
    return ResourceError(kind, name, field, f"peer {peer.name}: {why}: left out")


def neighbor_of(peer: PeerConfig, config: DesiredConfig) -> Neighbor | ResourceError:
    """The speaker's value for ``peer``, or the first reason it cannot be configured."""
    own = {4: config.node_address.ip if config.node_address else None,
           6: config.node_address_v6.ip if config.node_address_v6 else None}
    if own[peer.address.version] is None:
        return _error(peer, "family", f"this node has no IPv{peer.address.version} address "
                                      "to speak that family from")
    if peer.address in (own[4], own[6]):
        if peer.calico_node is not None and peer.calico_node != config.node:
            field = ADDRESS_ANNOTATION[peer.address.version]
            return ResourceError("Node", peer.calico_node, field, (
                f"{peer.address} is node {config.node!r}'s own address: no session from it to "
                f"{peer.calico_node!r} ({peer.name}, from {'/'.join(peer.origin)}): left out"))
        return _error(peer, "address", f"{peer.address} is this node's own address")
    if peer.keepalive_time and peer.keepalive_time * 3 > HOLD_MAX:
        return _error(peer, "hold time", (
            f"a keepalive time of {peer.keepalive_time:.0f} s makes a hold time (three "
            f"keepalives) of {peer.keepalive_time * 3:.0f} s; at most {HOLD_MAX} s"))
    if peer.restart_time > RESTART_MAX:
        return _error(peer, "restart time", (
            f"{peer.restart_time:.0f} s is outside 0..{RESTART_MAX} s (graceful restart's "
            "12-bit field)"))
    local = own[peer.address.version] if peer.source_address is not None else None
    password = peer.password.encode() if peer.password is not None else None
    hold = max(3, _seconds(peer.keepalive_time * 3)) if peer.keepalive_time else DEFAULT_HOLD
    neighbor = Neighbor(
        name=peer.name, address=peer.address, peer_as=peer.peer_as, local_as=peer.local_as,
        port=peer.port, passive=peer.passive, local_address=local, password=password,
        ttl_security=peer.ttl_security or None, hold_time=hold,
        restart_time=_seconds(peer.restart_time),
    )
    found = problems(neighbor)
    if found:
        return _error(peer, *found[0])
    return neighbor


def _seconds(value: float) -> int:
    """Whole seconds; anything not finite becomes a value every range check refuses."""
    return round(min(value, 1e9)) if math.isfinite(value) else 10**9


def _choose(candidates: list[PeerConfig], running: str | None) -> PeerConfig:
    for peer in candidates:
        if peer.name == running:
            return peer
    return min(candidates, key=lambda p: (p.rank, p.port, p.name))


def translate(config: DesiredConfig, *, running: Mapping[Address, str] | None = None
              ) -> Translation:
    """Every peer of ``config`` either applied or reported; ``running``: the name of the
    neighbour each address has now (it keeps its session in a clash)."""
    running = running or {}
    errors: list[ResourceError] = []
    valid: dict[Address, list[tuple[PeerConfig, Neighbor]]] = {}
    for peer in config.peers:
        result = neighbor_of(peer, config)
        if isinstance(result, ResourceError):
            errors.append(result)
        else:
            valid.setdefault(peer.address, []).append((peer, result))
    peers, neighbors = [], []
    for address, pairs in valid.items():
        chosen = _choose([p for p, _ in pairs], running.get(address))
        for peer, neighbor in pairs:
            if peer is chosen:
                peers.append(peer)
                neighbors.append(neighbor)
            else:
                errors.append(_error(peer, "address", (
                    f"{chosen.name} (from {'/'.join(chosen.origin)}) already has the session "
                    f"to {address}; one session per address")))
    announce = []
    for prefix in config.announce:
        if prefix.version == 6 and config.node_address_v6 is None:
            errors.append(ResourceError(
                "Node", config.node, "metadata.annotations.projectcalico.org/IPv6Address",
                f"{prefix} is not announced: this node has no IPv6 address for its next hop"))
        else:
            announce.append(prefix)
    return Translation(peers=tuple(peers), neighbors=tuple(neighbors),
                       announce=tuple(announce), errors=tuple(sorted(set(errors))))


def node_context(config: DesiredConfig, *, import_guard: bool = True,
                 interface: str | None = None, tunnel: str = "tunl0",
                 cluster_routes: str | None = None, draining: bool = False,
                 stale_retention: float = 0.0) -> NodeContext:
    """What the RIB's policy and FIB plan know of this node (the import guard's inputs:
    its networks and blocks, other nodes' blocks, the pools with their block sizes, the
    service ranges); the rest from bgpd's settings (``cluster_routes``: its default)."""
    assert config.router_id is not None
    return NodeContext(
        local_as=config.local_as, router_id=config.router_id,
        node_v4=config.node_address, node_v6=config.node_address_v6,
        cluster_id=config.route_reflector_cluster_id,
        own_blocks=PrefixSet(config.blackholes),
        other_blocks=PrefixSet(config.other_blocks),
        pools=tuple(Pool(p.cidr, ipip=p.ipip_mode, vxlan=p.vxlan_mode, disabled=p.disabled,
                         disable_bgp_export=p.disable_bgp_export, block_size=p.block_size)
                    for p in config.pools),
        service_cidrs=PrefixSet(config.service_cidrs),
        advertisements=config.advertisements,
        import_guard=import_guard, interface=interface, tunnel=tunnel,
        cluster_routes=ClusterRoutes.named(config.program_cluster_routes(cluster_routes)).without(
            ClusterRoutes.named(config.felix_cluster_routes or "Disabled")),
        priorities=config.calico_v3_33, normal_priority_v4=config.normal_priority_v4,
        normal_priority_v6=config.normal_priority_v6,
        draining=draining or config.draining is not None,
        block_owners=tuple((block, frozenset(addresses))
                           for block, addresses in config.block_owners),
        stale_retention=stale_retention,
    )


def export_peer(config: DesiredConfig, peer: PeerConfig, *, max_prefixes_per_peer: int | None,
                max_prefixes_external: int | None) -> ExportPeer:
    """What the RIB knows of a peer: its import and export policy (its BGPFilters, a limit
    of prefixes — the BGPPeer's, else the settings' — and whether it may send node blocks)
    and how it is exported to.  A BGPFilter missing or invalid closes the peer."""
    filters = {f.name: f for f in config.filters}
    chosen = [filters[name] for name in peer.filters if name in filters]
    external = peer.calico_node is None
    limit = peer.max_prefixes or max_prefixes_per_peer or (
        max_prefixes_external if external else None)
    policy = PeerPolicy(
        import_v4=tuple(r for f in chosen for r in f.import_v4),
        import_v6=tuple(r for f in chosen for r in f.import_v6),
        export_v4=tuple(r for f in chosen for r in f.export_v4),
        export_v6=tuple(r for f in chosen for r in f.export_v6),
        allowed_local_as=peer.num_allowed_local_as,
        max_prefixes=limit,
        teardown_at_limit=peer.max_prefixes_action == "teardown",
        node_routes=not external or peer.accept_node_block_routes,
        closed=len(chosen) < len(peer.filters),  # a filter missing or invalid: fail closed
    )
    return ExportPeer(
        key=bgp_key(peer.address), address=peer.address, peer_as=peer.peer_as,
        local_as=peer.local_as, rr_client=peer.rr_client, cluster_id=peer.cluster_id,
        next_hop_mode=NextHopMode(peer.next_hop_mode), policy=policy,
    )


def speaker_config(config: DesiredConfig, translation: Translation, *,
                   held_down: Collection[Address], reactor_speed: float
                   ) -> SpeakerConfig:
    """What ExaBGP runs: the translated neighbours but those ``held_down`` (BFD says they
    are unreachable), on the node's port and addresses."""
    assert config.router_id is not None
    neighbors = tuple(n for n in translation.neighbors if n.address not in held_down)
    return SpeakerConfig(router_id=config.router_id, neighbors=neighbors,
                         listen_port=config.listen_port, bind_addresses=config.bind_addresses,
                         reactor_speed=reactor_speed)


def session(peer: PeerConfig, opened: codec.Open | None) -> Session:
    """An established session as the RIB takes it: the peer, and what its OPEN said of
    graceful restart for the peer's family."""
    gr = opened.graceful_restart if opened else None
    family = "ipv4/unicast" if peer.address.version == 4 else "ipv6/unicast"
    source = Source.bgp(peer.address, peer_as=peer.peer_as, local_as=peer.local_as,
                        router_id=opened.router_id if opened else None,
                        rr_client=peer.rr_client, name=peer.name)
    return Session(
        source=source,
        graceful_restart=gr is not None,
        restart_time=float(gr.restart_time) if gr else 0.0,
        peer_restarting=bool(gr and gr.restarting),
        forwarding_preserved=bool(gr and family in gr.forwarding),
    )
