"""Calico's datastore through Typha, as confd reads it (IO).

Theory of operation: selected the way calico-node's confd selects Typha — the first of
``CONFD_``, ``FELIX_``, ``CALICO_`` that sets each of ``TYPHAADDR``, ``TYPHAK8SSERVICENAME``,
``TYPHAK8SNAMESPACE`` (default ``kube-system``), ``TYPHACAFILE``, ``TYPHACERTFILE``,
``TYPHAKEYFILE``, ``TYPHACN``, ``TYPHAURISAN``, ``TYPHAREADTIMEOUT`` and
``TYPHAWRITETIMEOUT`` (seconds; ``none`` counts as unset), as in ``FELIX_TYPHAADDR``.  An
address is used as given; a service name is looked up among the ready endpoints of its
EndpointSlices (port ``calico-typha``), this node's first.  Any TLS setting asks for all three
files and a CN or URI SAN: the client presents its certificate, checks Typha's against the CA
file and then its CN or URI SAN itself (no host-name check), as Typha's own client does.

One connection (TCP 5473) at a time, its protocol in the sans-IO
:class:`~node_controller.typha_session.Session` (hello, KVs, sync status, ping/pong, decoder
restart); this shell reads and writes and applies what it says to the store.  A
connection's KVs are the whole state: what a previous connection held and this one has not
sent again by its InSync is deleted then — so a Typha restart mid-stream changes nothing
that did not change.  Every failure (refused, a bad certificate, Typha gone, silent for
longer than the read timeout) is logged and retried with capped backoff; the source never
ends on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import structlog

from node_controller.store import Store
from node_controller.syncproto import ProtocolError
from node_controller.typha_model import Change
from node_controller.typha_session import (
    Event,
    Greeted,
    InSync,
    Restarted,
    Session,
    Unreadable,
    Update,
)

log = structlog.get_logger("bgpd.typha")

PREFIXES = ("CONFD_", "FELIX_", "CALICO_")
# IPPools are not among them: Typha sends them without their block size (typha_model)
KINDS = ("Node", "BGPConfiguration", "BGPPeer", "BGPFilter", "BlockAffinity")
PORT_NAME = "calico-typha"
VERSION = "bgpd"


class TyphaError(Exception):
    """A connection Typha refused or closed, or a certificate this client refuses."""


# what ends a connection attempt, to be retried (the same failures a watcher retries)
FAILURES = (OSError, ssl.SSLError, TimeoutError, TyphaError, ProtocolError, ValueError)


@dataclass(frozen=True, slots=True)
class TyphaConfig:
    addr: str | None = None
    k8s_service_name: str | None = None
    k8s_namespace: str = "kube-system"
    read_timeout: float = 30.0  # Typha's client default; Typha pings every 10 s
    write_timeout: float = 10.0
    key_file: str | None = None
    cert_file: str | None = None
    ca_file: str | None = None
    cn: str | None = None
    uri_san: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TyphaConfig:
        values: dict[str, Any] = {}
        for f in fields(cls):
            suffix = "TYPHA" + f.name.replace("_", "").upper()
            for prefix in PREFIXES:
                value = environ.get(prefix + suffix, "")
                if value and value != "none":
                    values[f.name] = float(value) if f.type == "float" else value
                    break
        return cls(**values)

    @property
    def enabled(self) -> bool:
        return bool(self.addr or self.k8s_service_name)

    @property
    def tls(self) -> bool:
        return any((self.key_file, self.cert_file, self.ca_file, self.cn, self.uri_san))

    def problems(self) -> list[str]:
        """What keeps this configuration from working (as confd validates it)."""
        if not self.tls:
            return []
        missing = [f"TYPHA{name}" for name, value in (
            ("KEYFILE", self.key_file), ("CERTFILE", self.cert_file),
            ("CAFILE", self.ca_file)) if not value]
        if not (self.cn or self.uri_san):
            missing.append("TYPHACN or TYPHAURISAN")
        return [f"TLS to Typha needs {', '.join(missing)} (FELIX_, CONFD_ or CALICO_)"
                ] if missing else []


class _Scope:
    """What the controller's lists show of this source (a watcher's ``resource``)."""

    kind, name = "Typha", "typha"

    def __init__(self, where: str) -> None:
        self.where = where

    def __str__(self) -> str:
        return f"typha ({self.where})"


class TyphaSource:
    """The Calico resources of the "bgp" syncer but IP pools, from Typha into ``store``.
    Seen by the controller as one more watcher (``listed`` once in sync, ``up``)."""

    kinds = KINDS

    def __init__(self, config: TyphaConfig, node: str, store: Store,
                 on_change: Callable[[], None], *,
                 discover: Callable[[], Awaitable[list[str]]] | None = None,
                 backoff_max: float = 30.0, stale_after: float = 90.0) -> None:
        self.config, self.node, self.store, self.on_change = config, node, store, on_change
        self.discover = discover
        self.backoff_max, self.stale_after = backoff_max, stale_after
        self.resource = _Scope(config.addr or f"{config.k8s_namespace}/"
                                              f"{config.k8s_service_name}")
        self.listed = False
        self.in_sync = False
        self.last_event: float | None = None
        self.errors = 0
        self.connections = 0
        self.bytes_received = 0  # read from Typha (after TLS, before snappy)
        self.last_error: str | None = None
        self.server: str | None = None
        self._held: dict[str, tuple[str, str]] = {}  # key -> (kind, name) in the store

    def up(self, now: float) -> bool:
        return self.in_sync and self.last_event is not None and (
            now - self.last_event <= self.stale_after)

    async def run(self) -> None:
        delay = 0.5
        while True:
            addresses: list[str] = []
            try:
                addresses = await self._addresses()
            except FAILURES as exc:
                self._failed(exc)
            for address in addresses:  # each in turn, as Typha's client does
                started = time.monotonic()
                try:
                    await self._session(address)
                except FAILURES as exc:
                    self._failed(exc)
                if time.monotonic() - started > 60:
                    delay = 0.5  # it ran a while: not a failing loop
            wait = delay * random.uniform(0.5, 1.0)
            log.warning("typha_failed", typha=str(self.resource), error=self.last_error,
                        retry_in=round(wait, 2))
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.backoff_max)

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.in_sync = False
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    async def _addresses(self) -> list[str]:
        problems = self.config.problems()
        if problems:
            raise TyphaError("; ".join(problems))
        if self.config.addr:
            return [self.config.addr]
        if self.discover is None:
            raise TyphaError("no TYPHAADDR and no API client to look the service up")
        found = await self.discover()
        if not found:
            raise TyphaError(f"no ready endpoint of service {self.config.k8s_namespace}/"
                             f"{self.config.k8s_service_name} (port {PORT_NAME})")
        return found

    def _context(self) -> ssl.SSLContext | None:
        c = self.config
        if not c.tls:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False  # Typha's client checks CN / URI SAN instead
        context.verify_mode = ssl.CERT_REQUIRED
        assert c.ca_file and c.cert_file and c.key_file
        context.load_verify_locations(c.ca_file)
        context.load_cert_chain(c.cert_file, c.key_file)
        return context

    def _check_server(self, cert: Any) -> None:
        c = self.config
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"),
                  None)
        uris = [v for k, v in cert.get("subjectAltName", ()) if k == "URI"]
        if (c.cn and cn == c.cn) or (c.uri_san and c.uri_san in uris):
            return
        want = " or ".join(x for x in (f"CN {c.cn!r}" if c.cn else "",
                                       f"URI SAN {c.uri_san!r}" if c.uri_san else "") if x)
        raise TyphaError(f"Typha's certificate has CN {cn!r} and URI SANs {uris}, not {want}")

    async def _session(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        context = self._context()
        self.server = address
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            host.strip("[]"), int(port), ssl=context,
            server_hostname="" if context else None), 10)
        try:
            if context is not None:
                self._check_server(writer.get_extra_info("peercert") or {})
            self.connections += 1
            session = Session(self.node, info=f"bgpd pid {os.getpid()}", version=VERSION,
                              connection_id=random.getrandbits(63))
            heard = self.last_event
            try:
                await self._send(writer, session.hello())
                log.info("typha_connected", typha=address, tls=context is not None)
                await self._read(reader, writer, session)
            except (ConnectionError, asyncio.IncompleteReadError, TyphaError) as exc:
                if context is None or self.last_event != heard:
                    raise
                # TLS 1.3: a server that refuses our certificate says so after the client's
                # side of the handshake is done — an alert, or only the connection closed
                raise TyphaError(
                    f"SSL: Typha closed the connection after the TLS handshake, before any "
                    f"message ({type(exc).__name__}): most likely it refuses this node's "
                    "certificate (FELIX_TYPHACERTFILE: signed by the CA Typha trusts?)") from exc
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), self.config.write_timeout)

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    session: Session) -> None:
        seen: set[str] = set()
        while True:
            data = await asyncio.wait_for(reader.read(1 << 16), self.config.read_timeout)
            if not data:
                raise TyphaError("Typha closed the connection")
            self.bytes_received += len(data)
            self.last_event = time.monotonic()
            answer, events = session.receive(data, time.time())
            if answer:
                await self._send(writer, answer)
            self._handle(events, seen)

    def _handle(self, events: list[Event], seen: set[str]) -> None:
        """Apply what the server said to the store (``seen``: the keys of this connection)."""
        changed = False
        for event in events:
            if isinstance(event, Update):
                seen.add(event.key)
                changed |= self._store(event.key, event.change)
            elif isinstance(event, Unreadable):
                self.errors += 1
                log.error("typha_value_unreadable", key=event.key, field=event.field,
                          problem=event.problem)
            elif isinstance(event, InSync):
                self._synced(seen)
                changed = False  # _synced announced it
            elif isinstance(event, Greeted):
                log.info("typha_hello", typha=self.server, version=event.version,
                         server_connection=event.server_connection)
            elif isinstance(event, Restarted):
                log.info("typha_decoder_restarted", typha=self.server,
                         compression=event.compression or "none")
        if changed and self.listed:
            self.on_change()

    def _store(self, key: str, change: Change) -> bool:
        if change.manifest is None:
            self._held.pop(key, None)
            return self.store.delete(change.kind, change.name)
        self._held[key] = (change.kind, change.name)
        return self.store.apply(change.manifest)

    def _synced(self, seen: set[str]) -> None:
        """InSync: whatever this connection did not send again is gone."""
        for key in [k for k in self._held if k not in seen]:
            self.store.delete(*self._held.pop(key))
        first = not self.listed
        self.listed = self.in_sync = True
        log.info("typha_in_sync", typha=self.server, objects=len(self._held), first=first)
        self.on_change()


async def discover(api: Any, config: TyphaConfig, node: str) -> list[str]:
    """Typha's addresses from its service's EndpointSlices: ready endpoints, port
    ``calico-typha``, this node's first (then shuffled, as Typha's discovery does)."""
    import aiohttp

    from node_controller.kube_client import ApiException

    path = f"/apis/discovery.k8s.io/v1/namespaces/{config.k8s_namespace}/endpointslices"
    where = f"listing the EndpointSlices of {config.k8s_namespace}/{config.k8s_service_name}"
    try:
        response = await api.call_api(
            path, "GET", query_params=[
                ("labelSelector", f"kubernetes.io/service-name={config.k8s_service_name}")],
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
            _preload_content=False, _request_timeout=30)
        async with response:
            text = await response.read()
    except (aiohttp.ClientError, ApiException) as exc:
        raise TyphaError(f"{where}: {exc}") from None
    if response.status != 200:
        raise TyphaError(f"{where}: HTTP {response.status}")
    body = json.loads(text)
    if not isinstance(body, dict):
        raise TyphaError(f"{where}: not a list")
    local: list[str] = []
    remote: list[str] = []
    for piece in body.get("items") or []:
        port = next((p.get("port") for p in piece.get("ports") or []
                     if p.get("name") == PORT_NAME), None)
        if not port:
            continue
        for endpoint in piece.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                text = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
                (local if endpoint.get("nodeName") == node else remote).append(text)
    random.shuffle(local)
    random.shuffle(remote)
    return local + remote
