"""The daemon's faces: the control socket, a BIRD-compatible socket, metrics and health.

* **Control socket** (Unix, mode 0600): one JSON request line (``{"command": "status"}``,
  ``{"command": "routes", "prefix": ..., "peer": ...}``), one JSON answer line.
* **BIRD socket**: :mod:`bgpd.birdctl`.
* **Metrics** (Prometheus text, prometheus-client's exposition) and ``/livez`` / ``/readyz``
  on one small HTTP server; values are read from the live objects at scrape time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from bgpd import __version__
from bgpd.kernel_sync import KernelSync
from bgpd.router import Router, source_key
from bgpd.speaker.supervisor import SessionState, Speaker
from bgpd.status import routes, status
from node_controller.controller import Controller

log = structlog.get_logger("bgpd.observability")


class Parts:
    """The live objects the faces read (filled in by the daemon as it starts them)."""

    def __init__(self, router: Router, speaker: Speaker, kernel: KernelSync,
                 controller: Controller) -> None:
        self.router, self.speaker, self.kernel, self.controller = (
            router, speaker, kernel, controller)
        self.ready = False  # start-up done (READY=1 sent)
        self.started = time.time()
        self.last_reconfigure = time.time()
        self.grace = 60.0  # after start, not-yet-Established peers do not count

    def degraded(self) -> list[str]:
        """Why this node runs on less than its resources say: a resource in error (its last
        valid version applies, or it is left out), none of its blocks announced, or a watch
        that has gone silent."""
        reasons = [str(e) for e in self.router.errors]
        if self.router.blocks_unannounced():
            reasons.append("none of this node's blocks is announced")
        now = time.monotonic()
        reasons += [f"watch {w.resource}: no event or bookmark for {w.stale_after:g} s or more"
                    " (the API server may be down or frozen: the last state applies)"
                    for w in self.controller.watchers if w.listed and not w.up(now)]
        return reasons

    def not_ready(self) -> list[str]:
        """Why the node is not ready (empty: ready): starting, degraded, or after the grace
        a configured peer not Established."""
        reasons = ([] if self.ready else ["starting"]) + self.degraded()
        if self.ready and time.time() - self.started >= self.grace:
            reasons += [f"peer {st.neighbor.name} not Established"
                        for st in self.speaker.peers.values()
                        if st.state is not SessionState.ESTABLISHED]
        return reasons

    def is_ready(self) -> bool:
        return not self.not_ready()


# --- control socket ----------------------------------------------------------------------
async def serve_control(parts: Parts, path: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = json.loads(line or b"{}")
            command = request.get("command")
            if command == "status":
                answer: Any = status(parts.router, parts.speaker, parts.kernel)
                answer["degraded"] = parts.degraded()
                answer["ready"] = parts.is_ready()
            elif command == "routes":
                answer = routes(parts.router, parts.kernel, prefix=request.get("prefix"),
                                peer=request.get("peer"))
            else:
                answer = {"error": f"unknown command {command!r} (status, routes)"}
        except (json.JSONDecodeError, TimeoutError, ValueError) as exc:
            answer = {"error": f"bad request: {exc}"}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    await serve_unix(handle, path)


async def serve_unix(handler: Callable[..., Any], path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(handler, path=str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    try:
        async with server:
            await server.serve_forever()
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def request(path: Path, payload: dict[str, Any], timeout: float = 10) -> Any:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    writer.write(json.dumps(payload).encode() + b"\n")
    await writer.drain()
    body = await asyncio.wait_for(reader.read(), timeout)  # the answer, whatever its size
    writer.close()
    return json.loads(body)


# --- metrics and health ------------------------------------------------------------------
class DaemonCollector(Collector):
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Any]:
        p = self.parts
        rib = p.router.rib
        up = GaugeMetricFamily("bgpd_bgp_session_up", "1 when the BGP session is Established",
                               labels=["peer", "name", "type"])
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
            key = source_key(address)
            peer = str(address)
            up.add_metric([peer, st.neighbor.name, p.router.peer_kind(address)],
                          float(st.state is SessionState.ESTABLISHED))
            flaps.add_metric([peer, st.neighbor.name], st.flaps)
            received.add_metric([peer], len(rib.received.get(key, {})) if rib else 0)
            accepted.add_metric([peer], rib.table.count(key) if rib else 0)
            advertised.add_metric([peer], p.speaker.pacer.advertised(address))
        yield from (up, flaps, received, accepted, advertised)
        rejected = CounterMetricFamily("bgpd_bgp_routes_rejected",
                                       "Routes refused by import policy",
                                       labels=["peer", "reason"])
        for (peer, reason), count in (rib.rejections.items() if rib else []):
            rejected.add_metric([peer, reason], count)
        yield rejected
        k = p.kernel.stats
        yield GaugeMetricFamily("bgpd_kernel_routes_owned", "Kernel routes bgpd owns",
                                value=k.owned_routes)
        yield CounterMetricFamily("bgpd_kernel_writes", "Route writes applied", value=k.writes)
        yield CounterMetricFamily("bgpd_kernel_write_failures", "Route writes refused",
                                  value=k.write_failures)
        yield CounterMetricFamily("bgpd_kernel_drift_repairs",
                                  "Owned routes restored after someone else changed them",
                                  value=k.drift_repairs)
        yield CounterMetricFamily("bgpd_kernel_foreign_conflicts",
                                  "Prefixes held by another protocol's route",
                                  value=k.foreign_conflicts)
        yield GaugeMetricFamily("bgpd_rib_prefixes", "Prefixes in the Loc-RIB",
                                value=len(rib.table) if rib else 0)
        yield GaugeMetricFamily("bgpd_rib_stale_routes", "Routes kept by graceful restart",
                                value=rib.table.stale_count() if rib else 0)
        yield CounterMetricFamily("bgpd_exabgp_restarts", "BGP engine restarts",
                                  value=p.speaker.restarts)
        core = p.speaker.core.stats
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
        services = GaugeMetricFamily(
            "bgpd_service_advertised", "1 for each Service address this node announces",
            labels=["service", "prefix", "reason"])
        for route in p.router.config.services if p.router.config else ():
            services.add_metric([route.service, str(route.prefix), route.reason], 1.0)
        yield services
        yield GaugeMetricFamily("bgpd_degraded",
                                "1 while a resource is in error or no block is announced",
                                value=float(bool(p.degraded())))
        r = p.router.stats
        yield CounterMetricFamily("bgpd_bgp_updates_received", "Routes announced to us",
                                  value=r.updates_received)
        yield CounterMetricFamily("bgpd_bgp_withdrawals_received", "Routes withdrawn from us",
                                  value=r.withdrawals_received)
        yield CounterMetricFamily("bgpd_bgp_adverts_sent",
                                  "Adj-RIB-Out changes handed to the BGP engine",
                                  value=r.adverts_sent)
        yield CounterMetricFamily("bgpd_config_changes",
                                  "Desired configurations applied", value=r.config_changes)
        yield CounterMetricFamily("bgpd_memory_releases",
                                  "Freed memory handed back after a large withdrawal",
                                  value=r.memory_releases)
        yield GaugeMetricFamily("bgpd_exabgp_up", "1 while the BGP engine answers",
                                value=float(p.speaker.healthy))
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
        info = InfoMetricFamily("bgpd_build", "Build information")
        info.add_metric([], {"version": __version__})
        yield info


async def serve_http(parts: Parts, address: str, *, live: Callable[[], bool]) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(parts))
    host, _, port = address.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        target = head.split(b" ", 2)[1].decode(errors="replace") if b" " in head else "/"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            code, body, ctype = 200, generate_latest(registry), "text/plain; version=0.0.4"
        elif path == "/livez":
            ok = live()
            code, body = (200, b"ok\n") if ok else (503, b"not live\n")
            ctype = "text/plain"
        elif path == "/readyz":
            why = parts.not_ready()
            code = 503 if why else 200
            body = ("not ready:\n" + "".join(f"- {w}\n" for w in why) if why
                    else "ready\n").encode()
            ctype = "text/plain"
        else:
            code, body, ctype = 404, b"not found\n", "text/plain"
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[code]
        writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host.strip("[]"), int(port))
    log.info("metrics_listening", address=address)
    async with server:
        await server.serve_forever()
