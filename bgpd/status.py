"""What the daemon reports about itself: JSON-able views for the control socket and CLI.

``status`` is ``calicoctl node status`` plus counters; ``routes`` is the Loc-RIB with, for each
prefix, why its best path won and whether (and how) it is in the kernel.
"""

from __future__ import annotations

import time
from ipaddress import ip_network
from typing import Any

from bgpd.bfd.service import View
from bgpd.kernel_sync import KernelSync
from bgpd.router import Router
from bgpd.speaker.core import SessionState
from bgpd.speaker.supervisor import Speaker
from ribs.rib import PeerState
from ribs.types import address_key, bgp_key, prefix_bits


def peer_type(kind: str) -> str:
    names = {"mesh": "node-to-node mesh", "global": "global", "node": "node specific",
             "local_workload": "local workload"}
    return names.get(kind, kind)


def status(router: Router, speaker: Speaker, kernel: KernelSync) -> dict[str, Any]:
    config = router.config
    rib = router.rib
    peers = []
    bfd = {v.peer: v for v in router.bfd.service.snapshot()}
    for address, st in sorted(speaker.peers.items(), key=lambda kv: address_key(kv[0])):
        key = bgp_key(address)
        rib_peer = rib.peers.get(key) if rib else None
        rejected = sum(1 for r in (rib.rejected if rib else {}) if r[1] == key)
        state = st.state.value
        if rib_peer is not None and rib_peer.state is PeerState.STALE:
            state = "Idle (graceful restart: routes kept)"
        peers.append({
            "name": st.neighbor.name, "address": str(address), "port": st.neighbor.port,
            "family": f"ipv{address.version}",
            "type": peer_type(router.peer_kind(address)), "peer_as": st.neighbor.peer_as,
            "state": state, "established": st.state is SessionState.ESTABLISHED,
            "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.since)),
            "info": "Established" if st.state is SessionState.ESTABLISHED
            else (st.last_error or st.state.value),
            "routes_received": len(rib.received.get(key, {})) if rib else 0,
            "routes_accepted": rib.table.count(key) if rib else 0,
            "routes_rejected": rejected,
            "routes_advertised": st.advertised,
            "stale_routes": rib.table.stale_count(key) if rib else 0,
            "flaps": st.flaps,
            "graceful_restart": bool(st.open and st.open.graceful_restart),
            "update_errors": {f"{action}: {reason}": count for (peer, action, reason), count
                              in router.stats.update_errors.items() if peer == str(address)},
            "bfd": bfd[address].state if address in bfd else None,
            # seconds since the configuration stopped wanting it (held for a topology change)
            "held_for_handover": round(time.monotonic() - router.held[address].since, 1)
            if address in router.held else None,
        })
    last = kernel.stats.last_sync_monotonic
    return {
        "node": config.node if config else router.settings.node_name,
        "as": config.local_as if config else None,
        "router_id": str(config.router_id) if config and config.router_id else None,
        "peers": peers,
        "kernel": {"owned_routes": kernel.stats.owned_routes,
                   "owned_by_family": {f"ipv{v}": n for v, n in kernel.owned_by_version().items()},
                   "writes": kernel.stats.writes,
                   "write_failures": kernel.stats.write_failures,
                   "drift_repairs": kernel.stats.drift_repairs,
                   "foreign_conflicts": kernel.stats.foreign_conflicts,
                   "last_sync_seconds_ago": round(time.monotonic() - last, 1) if last else None,
                   "errors": {str(p): str(e) for p, e in kernel.errors.items()}},
        "rib": {"prefixes": len(rib.table) if rib else 0,
                "prefixes_by_family": {f"ipv{v}": n for v, n in (
                    rib.table.count_by_version() if rib else {4: 0, 6: 0}).items()},
                "restarting": bool(rib and rib.restarting),
                "retained_routes": len(rib.retained) if rib else 0,
                "memory_releases": router.stats.memory_releases},
        "speaker": {"exabgp_pid": speaker.pid, "healthy": speaker.healthy,
                    "restarts": speaker.restarts, "malformed_lines": speaker.malformed,
                    "commands_refused": speaker.stats.refused_commands,
                    "configuration_refused": speaker.refusal or None,
                    "last_failure": speaker.last_failure or None,
                    # the launcher's units that ExaBGP runs without, with why
                    "engine_units_left_out": dict(speaker.engine_left_out)},
        "bfd": bfd_status(router, list(bfd.values())),
        "errors": [e.as_dict() for e in router.errors],
        "notices": [e.as_dict() for e in config.notices] if config else [],
        "cluster_routes": cluster_routes(router),
    }


def cluster_routes(router: Router) -> dict[str, Any] | None:
    """Who programs the routes to other nodes' blocks, per kind of pool (Calico's
    programClusterRoutes split), and Felix's half where a FelixConfiguration sets it."""
    config, rib = router.config, router.rib
    if config is None or rib is None:
        return None
    ours = rib.ctx.cluster_routes
    return {"ipip": "bgpd" if ours.ipip else "Felix",
            "no_encap": "bgpd" if ours.no_encap else "Felix",
            "felix": config.felix_cluster_routes,
            "felix_configuration": config.felix_configuration}


def routes(router: Router, kernel: KernelSync, *, prefix: str | None = None,
           peer: str | None = None) -> list[dict[str, Any]]:
    rib = router.rib
    if rib is None:
        return []
    wanted = ip_network(prefix, strict=False) if prefix else None
    installed = {r.prefix: r for r in rib.fib_routes()}
    services: dict[Any, list[dict[str, str]]] = {}
    for service in router.config.services if router.config else ():
        services.setdefault(service.prefix, []).append(
            {"service": service.service, "reason": service.reason})
    rows: list[dict[str, Any]] = []

    def selected(p: Any) -> bool:
        return wanted is None or (p.version == wanted.version and p.subnet_of(wanted))

    for best in rib.table.bests():
        route = best.route
        if not selected(route.prefix):
            continue
        if peer and str(route.source.address) != peer and route.source.name != peer:
            continue
        kernel_route = installed.get(route.prefix)
        error = kernel.errors.get(route.prefix)
        if error is not None:
            state = f"not installed: {error}"
        elif kernel_route is None:
            state = "not installed: nothing to install (announced only)"
        else:
            state = f"installed: {kernel_route}"
        rows.append({
            "prefix": str(route.prefix),
            "next_hop": str(route.attrs.next_hop) if route.attrs.next_hop else "self",
            "from": str(route.source), "why": best.reason.value,
            "paths": len(best.multipath), "stale": rib.table.is_stale(route),
            "kernel": state, "as_path": str(route.attrs.as_path),
            "local_pref": route.attrs.local_pref,
            "communities": [":".join(map(str, c)) for c in
                            (*route.attrs.communities, *route.attrs.large_communities)],
            "services": services.get(route.prefix, []),  # why this node announces it
        })
    for (p, key, _path_id), reason in rib.rejected.items():
        if selected(p) and (not peer or key[1] == peer):
            rows.append({"prefix": str(p), "next_hop": None, "from": key[1], "why": None,
                         "paths": 0, "stale": False, "as_path": None, "local_pref": None,
                         "communities": [], "services": [],
                         "kernel": f"not installed: rejected by policy ({reason.value})"})
    rows.sort(key=lambda r: (prefix_bits(ip_network(r["prefix"])), r["from"]))
    return rows


def bfd_status(router: Router, views: list[View]) -> dict[str, Any]:
    """BFD's sessions, the peers whose BGP session it holds down, the peers asking for BFD
    that have none (why), and the packets it dropped (by reason)."""
    link = router.bfd
    return {
        "sessions": [{
            "peer": str(v.peer), "local": str(v.local), "interface": v.interface,
            "multihop": v.multihop, "state": v.state, "remote_state": v.remote_state,
            "diagnostic": v.diag,
            "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.since)),
            "interval": round(v.tx_interval, 3), "detection_time": round(v.detection_time, 3),
            "multiplier": v.multiplier, "remote_multiplier": v.remote_multiplier,
            "local_discriminator": v.local_discriminator,
            "remote_discriminator": v.remote_discriminator,
            "remote_control_plane_independent": v.remote_cpi, "held_for": v.held_for,
            "packets_received": v.received, "packets_sent": v.sent,
            "detections": v.detections, "failures": v.failures, "damped": v.damped,
        } for v in views],
        "bgp_held_down": sorted(str(a) for a in link.failed),
        "not_run": {str(a): why for a, why in sorted(link.left_out.items(),
                                                    key=lambda kv: address_key(kv[0]))},
        "packets_dropped": dict(link.service.dropped),
    }
