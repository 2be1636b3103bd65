"""The daemon's Prometheus metrics, read from the live objects at scrape time.

A module of its own: prometheus-client (and the HTTP and e-mail modules it imports) is
loaded only by a daemon that serves metrics, when it starts serving them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from bgpd import __version__
from bgpd.speaker.core import SessionState
from ribs.types import bgp_key

if TYPE_CHECKING:
    from bgpd.observability import Parts


FAMILIES = {4: "ipv4", 6: "ipv6"}


def scrape(parts: Parts) -> Callable[[], bytes]:
    """The exposition text of every metric of ``parts``, computed at each call."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(parts))
    return lambda: generate_latest(registry)


class DaemonCollector(Collector):
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Any]:
        p = self.parts
        rib = p.router.rib
        up = GaugeMetricFamily("bgpd_bgp_session_up", "1 when the BGP session is Established",
                               labels=["peer", "name", "type", "family"])
        flaps = CounterMetricFamily("bgpd_bgp_session_flaps", "Established sessions lost",
                                    labels=["peer", "name"])
        received = GaugeMetricFamily("bgpd_bgp_routes_received", "Routes held from the peer",
                                     labels=["peer"])
        accepted = GaugeMetricFamily("bgpd_bgp_routes_accepted",
                                     "Routes from the peer that passed import policy",
                                     labels=["peer"])
        advertised = GaugeMetricFamily("bgpd_bgp_routes_advertised", "Routes sent to the peer",
                                       labels=["peer"])
        for address, st in p.speaker.peers.items():
            key = bgp_key(address)
            peer = str(address)
            up.add_metric([peer, st.neighbor.name, p.router.peer_kind(address),
                           FAMILIES[address.version]],
                          float(st.state is SessionState.ESTABLISHED))
            flaps.add_metric([peer, st.neighbor.name], st.flaps)
            received.add_metric([peer], len(rib.received.get(key, {})) if rib else 0)
            accepted.add_metric([peer], rib.table.count(key) if rib else 0)
            advertised.add_metric([peer], st.advertised)
        yield from (up, flaps, received, accepted, advertised)
        rejected = CounterMetricFamily("bgpd_bgp_routes_rejected",
                                       "Routes refused by import policy",
                                       labels=["peer", "reason"])
        for (peer, reason), count in (rib.rejections.items() if rib else []):
            rejected.add_metric([peer, reason], count)
        yield rejected
        k = p.kernel.stats
        owned = GaugeMetricFamily("bgpd_kernel_routes_owned", "Kernel routes bgpd owns",
                                  labels=["family"])
        for version, count in p.kernel.owned_by_version().items():
            owned.add_metric([FAMILIES[version]], count)
        yield owned
        yield CounterMetricFamily("bgpd_kernel_writes", "Route writes applied", value=k.writes)
        yield CounterMetricFamily("bgpd_kernel_write_failures", "Route writes refused",
                                  value=k.write_failures)
        yield CounterMetricFamily("bgpd_kernel_drift_repairs",
                                  "Owned routes restored after someone else changed them",
                                  value=k.drift_repairs)
        yield CounterMetricFamily("bgpd_kernel_foreign_conflicts",
                                  "Prefixes held by another protocol's route",
                                  value=k.foreign_conflicts)
        prefixes = GaugeMetricFamily("bgpd_rib_prefixes", "Prefixes in the Loc-RIB",
                                     labels=["family"])
        for version, count in (rib.table.count_by_version() if rib else {4: 0, 6: 0}).items():
            prefixes.add_metric([FAMILIES[version]], count)
        yield prefixes
        yield GaugeMetricFamily("bgpd_rib_stale_routes", "Routes kept by graceful restart",
                                value=rib.table.stale_count() if rib else 0)
        yield GaugeMetricFamily("bgpd_rib_retained_routes",
                                "Other nodes' blocks kept past their peers' graceful restart "
                                "on the datastore's word", value=len(rib.retained) if rib else 0)
        yield CounterMetricFamily("bgpd_exabgp_restarts", "BGP engine restarts",
                                  value=p.speaker.restarts)
        core = p.speaker.stats
        yield CounterMetricFamily("bgpd_exabgp_commands_refused",
                                  "Route commands the BGP engine refused (retried)",
                                  value=core.refused_commands)
        yield CounterMetricFamily("bgpd_exabgp_reloads_refused",
                                  "Configurations the BGP engine refused (it kept the previous)",
                                  value=core.refused_reloads)
        errors = GaugeMetricFamily("bgpd_config_errors",
                                   "1 for each resource field that is in error now",
                                   labels=["kind", "name", "field"])
        for e in p.router.errors:
            errors.add_metric([e.kind, e.name, e.field], 1.0)
        yield errors
        notices = GaugeMetricFamily("bgpd_config_notices",
                                    "1 for each resource field taken as it is that changes "
                                    "nothing (why: bgpd status)", labels=["kind", "name", "field"])
        for e in p.router.config.notices if p.router.config else ():
            notices.add_metric([e.kind, e.name, e.field], 1.0)
        yield notices
        services = GaugeMetricFamily(
            "bgpd_service_advertised", "1 for each Service address this node announces",
            labels=["service", "prefix", "reason"])
        for route in p.router.config.services if p.router.config else ():
            services.add_metric([route.service, str(route.prefix), route.reason], 1.0)
        yield services
        yield GaugeMetricFamily("bgpd_draining",
                                "1 while this node drains: its routes carry GRACEFUL_SHUTDOWN "
                                "(cordoned, or bgpd drain)", value=float(bool(
                                    p.router.draining())))
        yield GaugeMetricFamily("bgpd_degraded",
                                "1 while a resource is in error or no block is announced",
                                value=float(bool(p.degraded())))
        r = p.router.stats
        malformed = CounterMetricFamily(
            "bgpd_update_errors", "Malformed UPDATEs received, by the action taken (RFC 7606)",
            labels=["peer", "action", "reason"])
        for (peer, action, reason), count in sorted(r.update_errors.items()):
            malformed.add_metric([peer, action, reason], count)
        yield malformed
        yield CounterMetricFamily("bgpd_bgp_updates_received", "Routes announced to us",
                                  value=r.updates_received)
        yield CounterMetricFamily("bgpd_bgp_withdrawals_received", "Routes withdrawn from us",
                                  value=r.withdrawals_received)
        yield CounterMetricFamily("bgpd_bgp_adverts_sent",
                                  "Adj-RIB-Out changes handed to the BGP engine",
                                  value=r.adverts_sent)
        yield CounterMetricFamily("bgpd_config_changes",
                                  "Desired configurations applied", value=r.config_changes)
        yield CounterMetricFamily("bgpd_graceful_restart_expiries",
                                  "Peers' graceful restarts that timed out (their stale routes "
                                  "removed)", value=r.restart_expiries)
        yield GaugeMetricFamily("bgpd_peers_held_for_handover",
                                "Sessions to other nodes the configuration no longer wants, "
                                "held until another session brings their routes",
                                value=len(p.router.held))
        yield CounterMetricFamily("bgpd_handovers_expired",
                                  "Held sessions ended at handover_seconds with their routes "
                                  "not yet brought by another session",
                                  value=r.handovers_expired)
        yield CounterMetricFamily("bgpd_graceful_restart_expired_routes",
                                  "Stale routes removed when a peer's restart time ran out",
                                  value=r.expired_routes)
        yield CounterMetricFamily("bgpd_memory_releases",
                                  "Freed memory handed back after a large withdrawal",
                                  value=r.memory_releases)
        yield GaugeMetricFamily("bgpd_exabgp_up", "1 while the BGP engine answers",
                                value=float(p.speaker.healthy))
        left_out = GaugeMetricFamily(
            "bgpd_exabgp_unit_left_out",
            "1 for each launcher unit ExaBGP runs without (its own code: correct, slower); "
            "why: bgpd status", labels=["unit"])
        for unit in sorted(p.speaker.engine_left_out):
            left_out.add_metric([unit], 1.0)
        yield left_out
        watch = GaugeMetricFamily("bgpd_datastore_watch_up", "1 while the resource is watched",
                                  labels=["resource"])
        age = GaugeMetricFamily("bgpd_datastore_last_event_age_seconds",
                                "Seconds since the last event or bookmark", labels=["resource"])
        now = time.monotonic()
        for w in p.controller.watchers:
            watch.add_metric([str(w.resource)], float(w.up(now)))
            if w.last_event is not None:
                age.add_metric([str(w.resource)], now - w.last_event)
        yield from (watch, age)
        lag = p.loop_lag
        yield GaugeMetricFamily("bgpd_event_loop_lag_seconds",
                                "How late the event loop ran a timer: the worst of the last "
                                "minute or so", value=lag.recent)
        yield GaugeMetricFamily("bgpd_event_loop_lag_max_seconds",
                                "How late the event loop ran a timer: the worst since the start",
                                value=lag.worst)
        yield from bfd_metrics(p)
        info = InfoMetricFamily("bgpd_build", "Build information")
        info.add_metric([], {"version": __version__})
        yield info


def bfd_metrics(p: Parts) -> Iterator[Any]:
    link = p.router.bfd
    up = GaugeMetricFamily("bgpd_bfd_session_up", "1 while the BFD session is Up",
                           labels=["peer", "interface"])
    detection = GaugeMetricFamily("bgpd_bfd_detection_time_seconds",
                                  "The BFD session's detection time now", labels=["peer"])
    detections = CounterMetricFamily("bgpd_bfd_detections",
                                     "BFD sessions taken Down by their detection time expiring",
                                     labels=["peer"])
    damped = CounterMetricFamily("bgpd_bfd_damped",
                                 "Times a flapping BFD session's Up was held back",
                                 labels=["peer"])
    for v in link.service.snapshot():
        up.add_metric([str(v.peer), v.interface or ""], float(v.state == "Up"))
        detection.add_metric([str(v.peer)], v.detection_time)
        detections.add_metric([str(v.peer)], v.detections)
        damped.add_metric([str(v.peer)], v.damped)
    yield from (up, detection, detections, damped)
    transitions = CounterMetricFamily("bgpd_bfd_transitions", "BFD session state changes",
                                      labels=["peer", "state"])
    for (peer, state), count in sorted(link.transitions.items()):
        transitions.add_metric([peer, state], count)
    failures = CounterMetricFamily("bgpd_bfd_failures",
                                   "BFD sessions that left Up for a failure (BGP taken down)",
                                   labels=["peer"])
    for peer, count in sorted(link.failures.items()):
        failures.add_metric([peer], count)
    dropped = CounterMetricFamily("bgpd_bfd_packets_dropped",
                                  "BFD packets dropped, by reason", labels=["reason"])
    for reason, count in sorted(link.service.dropped.items()):
        dropped.add_metric([reason], count)
    yield from (transitions, failures, dropped)
    yield GaugeMetricFamily("bgpd_bfd_bgp_held_down",
                            "Peers whose BGP session BFD holds down", value=len(link.failed))
    yield CounterMetricFamily("bgpd_bfd_routes_removed",
                              "Routes taken out at once because BFD said their path failed",
                              value=p.router.stats.bfd_routes_removed)
