"""The Kubernetes API side: list, then watch, each resource the daemon reads (IO).

Theory of operation, one :class:`Watcher` per resource type (kopf's layering, small):

* **list** (paged with ``limit``/``continue``) into the store with
  :meth:`~node_controller.store.Store.replace_kind` — objects that vanished meanwhile are
  dropped — and remember the list's ``resourceVersion``;
* **watch** from that version with bookmarks; every event goes to the store, every bookmark
  moves the version on; a stream the server ends is reopened from the last version seen;
* ``410 Gone`` (history compacted) → list again; any other failure (API down, timeouts,
  HTTP errors) → keep the store as it is and retry with capped exponential backoff and
  jitter.  A watcher never exits on its own.
* watch streams are read in chunks and split into lines of any size (no line limit of the
  HTTP library); one line larger than :data:`MAX_EVENT` bytes, or one that is not JSON, is
  skipped with an error and the stream goes on.
* a watch is *up* while it streams and has seen an event or a bookmark within
  ``stale_after`` seconds: a frozen API server keeps the connection open but sends nothing.

Secrets are read only by name, in the daemon's namespace, for the names the other resources
reference (:class:`SecretWatchers` starts and stops one watcher per name, each a task of the
controller's TaskGroup and listed with the other watchers).  Responses are read raw (no
client-model conversion: a 600-node list stays cheap).
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from node_controller.models import BGPConfiguration, BGPPeer
from node_controller.store import Store

log = structlog.get_logger("bgpd.kube")

CALICO_GROUP, CALICO_VERSION = "crd.projectcalico.org", "v1"
WATCH_SECONDS = 300
PAGE = 500
MAX_EVENT = 64 << 20  # one watch event (the API server's own request limit is 3 MiB)
STALE_AFTER = 90.0  # the API server sends a bookmark about once a minute


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    plural: str
    group: str = ""  # core
    namespace: str | None = None
    name: str | None = None  # watch just this object (Secrets)

    def __str__(self) -> str:
        return self.plural + (f"/{self.name}" if self.name else "")


RESOURCES = (
    Resource("Node", "nodes"),
    Resource("BGPConfiguration", "bgpconfigurations", CALICO_GROUP),
    Resource("BGPPeer", "bgppeers", CALICO_GROUP),
    Resource("BGPFilter", "bgpfilters", CALICO_GROUP),
    Resource("IPPool", "ippools", CALICO_GROUP),
    Resource("BlockAffinity", "blockaffinities", CALICO_GROUP),
)


class Gone(Exception):
    """The resourceVersion asked for is older than the server keeps: list again."""


class WatchState(enum.Enum):
    STARTING = "starting"
    LISTING = "listing"
    WATCHING = "watching"
    RETRYING = "retrying"


class KubeconfigError(ValueError):
    """No usable credentials for the API: the message says which file or what is missing."""


async def api_client(*, kubeconfig: str | None = None) -> client.ApiClient:
    """An API client from a kubeconfig file, else the in-cluster service account."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            if not Path(kubeconfig).is_file():
                raise KubeconfigError(f"kubeconfig {kubeconfig}: no such file")
            await config.load_kube_config(config_file=kubeconfig,
                                          client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster service account"
        raise KubeconfigError(f"{where}: {exc}") from None
    return client.ApiClient(configuration)


class Watcher:
    """List+watch of one resource into the store; calls ``on_change`` after real changes."""

    def __init__(self, api: client.ApiClient, resource: Resource, store: Store,
                 on_change: Callable[[], None], *, backoff_max: float = 30.0,
                 stale_after: float = STALE_AFTER) -> None:
        self.api = api
        self.resource = resource
        self.store = store
        self.on_change = on_change
        self.backoff_max = backoff_max
        self.stale_after = stale_after
        self.state = WatchState.STARTING
        self.last_event: float | None = None  # monotonic time of the last event or bookmark
        self.listed = False  # a first list has completed
        self.errors = 0
        self.skipped = 0  # events skipped: too large or not JSON
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    def up(self, now: float) -> bool:
        """Streaming, and heard from within ``stale_after`` seconds."""
        return (self.state is WatchState.WATCHING and self.last_event is not None
                and now - self.last_event <= self.stale_after)

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                self.state = WatchState.LISTING
                version = await self.relist()
                delay = 0.5
                while True:
                    self.state = WatchState.WATCHING
                    version = await self.watch(version)
            except Gone:
                log.info("watch_expired", resource=str(self.resource))
                continue
            except (ApiException, aiohttp.ClientError, TimeoutError, OSError,
                    json.JSONDecodeError) as exc:
                self.errors += 1
                self.state = WatchState.RETRYING
                wait = delay * random.uniform(0.5, 1.0)
                log.warning("watch_failed", resource=str(self.resource),
                            error=_describe(exc), retry_in=round(wait, 2))
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.backoff_max)

    async def _call(self, **params: Any) -> aiohttp.ClientResponse:
        r = self.resource
        params["_preload_content"] = False
        if r.name is not None:
            params["field_selector"] = f"metadata.name={r.name}"
        if r.group:
            response = await self._custom.list_cluster_custom_object(
                r.group, CALICO_VERSION, r.plural, **params)
        elif r.plural == "nodes":
            response = await self._core.list_node(**params)
        else:
            response = await self._core.list_namespaced_secret(r.namespace or "default",
                                                               **params)
        return response

    async def relist(self) -> str:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE, "_request_timeout": 60}
            if token:
                params["_continue"] = token
            response = await self._call(**params)
            async with response:
                body = json.loads(await response.read())
            items += [_with_kind(item, self.resource) for item in body.get("items") or []]
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                version = str(meta.get("resourceVersion", ""))
                break
        if self.resource.name is None:
            changed = self.store.replace_kind(self.resource.kind, items)
        else:
            changed = self._replace_one(items)
        self.last_event = time.monotonic()
        first, self.listed = not self.listed, True
        if changed or first:
            self.on_change()
        return version

    def _replace_one(self, items: list[dict[str, Any]]) -> bool:
        assert self.resource.name is not None
        if items:
            return any([self.store.apply(item) for item in items])
        return self.store.delete(self.resource.kind, self.resource.name)

    async def watch(self, version: str) -> str:
        """Follow changes from ``version`` until the server ends the stream; the version
        reached is returned for the next watch."""
        response = await self._call(
            watch=True, resource_version=version, allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS, _request_timeout=(10, WATCH_SECONDS + 30))
        async with response:
            async for line in _lines(response):
                event = self._decode(line)
                if event is not None:
                    version = self._handle(event, version)
        return version

    def _decode(self, line: bytes | None) -> dict[str, Any] | None:
        problem = f"larger than {MAX_EVENT >> 20} MiB" if line is None else None
        if line is not None:
            try:
                event = json.loads(line)
            except ValueError as exc:
                problem = f"not JSON ({exc})"
            else:
                if isinstance(event, dict):
                    return event
                problem = "not an object"
        self.skipped += 1
        self.errors += 1
        log.error("watch_event_skipped", resource=str(self.resource), problem=problem,
                  size=len(line) if line is not None else None)
        return None

    def _handle(self, event: dict[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        self.last_event = time.monotonic()
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", ""))
            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return version
        obj = _with_kind(obj, self.resource)
        if kind == "DELETED":
            changed = self.store.delete(self.resource.kind, obj["metadata"]["name"])
        else:
            changed = self.store.apply(obj)
        if changed:
            self.on_change()
        return version


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes | None]:
    """The stream's lines, whatever their size; None for a line over ``MAX_EVENT`` (skipped
    up to its end)."""
    buffer = bytearray()
    oversized = False
    async for chunk in response.content.iter_any():
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if oversized:
                yield None
            else:
                buffer += chunk[start:end]
                if buffer.strip():
                    yield bytes(buffer)
            buffer.clear()
            oversized = False
            start = end + 1
        if not oversized:
            buffer += chunk[start:]
            if len(buffer) > MAX_EVENT:
                buffer.clear()
                oversized = True
    if buffer.strip() and not oversized:
        yield bytes(buffer)


def _with_kind(obj: dict[str, Any], resource: Resource) -> dict[str, Any]:
    """List items come without kind and apiVersion; the parsers want them."""
    if "kind" not in obj or "apiVersion" not in obj:
        obj = {**obj, "kind": resource.kind,
               "apiVersion": f"{resource.group}/{CALICO_VERSION}" if resource.group else "v1"}
    return obj


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def referenced_secrets(store: Store) -> set[str]:
    names = set()
    for peer in store.all(BGPPeer):
        if peer.password is not None:
            names.add(peer.password.name)
    default = store.get(BGPConfiguration, "default")
    if default is not None and default.mesh_password is not None:
        names.add(default.mesh_password.name)
    return names


class SecretWatchers:
    """One watcher per Secret name the resources reference, in one namespace: each a task of
    ``group`` and a member of ``watchers`` (the controller's list, shown in metrics)."""

    def __init__(self, api: client.ApiClient, namespace: str, store: Store,
                 on_change: Callable[[], None], group: asyncio.TaskGroup,
                 watchers: list[Watcher], *, stale_after: float = STALE_AFTER) -> None:
        self.api, self.namespace, self.store, self.on_change = api, namespace, store, on_change
        self.group, self.watchers, self.stale_after = group, watchers, stale_after
        self.tasks: dict[str, tuple[Watcher, asyncio.Task[None]]] = {}

    def sync(self) -> None:
        wanted = referenced_secrets(self.store)
        for name in [n for n in self.tasks if n not in wanted]:
            watcher, task = self.tasks.pop(name)
            task.cancel()
            self.watchers.remove(watcher)
            if self.store.delete("Secret", name):
                self.on_change()
        for name in sorted(wanted - set(self.tasks)):
            watcher = Watcher(self.api, Resource("Secret", "secrets", namespace=self.namespace,
                                                 name=name), self.store, self.on_change,
                              stale_after=self.stale_after)
            self.watchers.append(watcher)
            task = self.group.create_task(watcher.run(), name=f"watch-secret-{name}")
            self.tasks[name] = (watcher, task)


async def load_cluster(*, kubeconfig: str | None, namespace: str) -> Store:
    """One-shot read of everything (for ``bgpd config --kubeconfig``)."""
    api = await api_client(kubeconfig=kubeconfig)
    store = Store()
    try:
        for resource in RESOURCES:
            await Watcher(api, resource, store, lambda: None).relist()
        for name in sorted(referenced_secrets(store)):
            secret = Resource("Secret", "secrets", namespace=namespace, name=name)
            await Watcher(api, secret, store, lambda: None).relist()
    finally:
        await api.close()
    return store
