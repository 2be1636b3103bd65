"""Small constructors for routing-core tests."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, ip_address, ip_network

from ribs.context import EncapMode, NodeContext, Pool, PrefixSet
from ribs.export import ExportPeer, NextHopMode
from ribs.policy import DEFAULT_POLICY, PeerPolicy
from ribs.rib import Session
from ribs.types import AsPath, Attributes, Origin, Route, Source

LOCAL_AS = 64512
POOL = ip_network("172.17.0.0/12", strict=False)


def peer(addr: str, *, asn: int = LOCAL_AS, rid: str | None = None, rr_client: bool = False,
         ) -> Source:
    address = ip_address(addr)
    router_id = IPv4Address(rid) if rid else (address if address.version == 4 else None)
    return Source.bgp(address, peer_as=asn, local_as=LOCAL_AS, router_id=router_id,  # type: ignore[arg-type]
                      rr_client=rr_client)


def route(prefix: str, src: Source, *, nh: str | None = None, path: tuple[int, ...] = (),
          lp: int | None = None, med: int | None = None, origin: Origin = Origin.IGP,
          originator: str | None = None, clusters: tuple[str, ...] = (), path_id: int = 0,
          ) -> Route:
    hop = ip_address(nh) if nh else src.address
    attrs = Attributes(
        origin=origin, as_path=AsPath.of(*path), next_hop=hop, med=med, local_pref=lp,
        originator_id=IPv4Address(originator) if originator else None,
        cluster_list=tuple(IPv4Address(c) for c in clusters),
    )
    return Route(ip_network(prefix), src, attrs, path_id)


def context(*, node: str = "10.10.1.5/24", blocks: tuple[str, ...] = ("172.17.5.0/24",),
            ipip: EncapMode = EncapMode.ALWAYS, cluster_id: str | None = None,
            services: tuple[str, ...] = (), guard: bool = True, extra_pools: tuple[Pool, ...] = (),
            ) -> NodeContext:
    iface = IPv4Interface(node)
    return NodeContext(
        local_as=LOCAL_AS, router_id=iface.ip, node_v4=iface,
        cluster_id=IPv4Address(cluster_id) if cluster_id else None,
        own_blocks=PrefixSet(ip_network(b) for b in blocks),
        pools=(Pool(POOL, ipip=ipip), *extra_pools),
        service_cidrs=PrefixSet(ip_network(s) for s in services),
        import_guard=guard, interface="eth0",
    )


def export_peer(src: Source, *, rr_client: bool = False, cluster_id: str | None = None,
                mode: NextHopMode = NextHopMode.AUTO, policy: PeerPolicy = DEFAULT_POLICY,
                ) -> ExportPeer:
    assert src.address is not None
    return ExportPeer(key=src.key, address=src.address, peer_as=src.peer_as, local_as=LOCAL_AS,
                      rr_client=rr_client, router_id=src.router_id,
                      cluster_id=IPv4Address(cluster_id) if cluster_id else None,
                      next_hop_mode=mode, policy=policy)


def session(src: Source, *, gr: bool = True, restart_time: float = 120.0,
            restarting: bool = False, forwarding: bool = True) -> Session:
    return Session(src, graceful_restart=gr, restart_time=restart_time,
                   peer_restarting=restarting, forwarding_preserved=forwarding)
