"""The Kubernetes API side: list, then watch, each resource the daemon reads (IO).

Theory of operation, one :class:`Watcher` per resource type (kopf's layering, small):

* **list** (paged with ``limit``/``continue``) into the store with
  :meth:`~node_controller.store.Store.replace_kind` — objects that vanished meanwhile are
  dropped — and remember the list's ``resourceVersion``.  Lists are served from the API
  server's watch cache, not read from etcd: the first with ``resourceVersion=0``, a later one
  with ``resourceVersionMatch=NotOlderThan`` the last version seen;
* **watch** from that version with bookmarks; every event goes to the store, every bookmark
  moves the version on; a stream the server ends is reopened from the last version seen;
* any failure (API down, a reset connection, timeouts, HTTP errors) → keep the store as it
  is and, after a capped exponential backoff with jitter, **resume the watch** from the last
  version seen; only ``410 Gone`` (history compacted) lists again, after a random delay of
  up to ``relist_jitter`` seconds so that a cluster's nodes do not list at the same moment.
  A watcher never exits on its own.
* BlockAffinities: only this node's, by the ``projectcalico.org/hostname-hash`` label Calico
  ≥ 3.31 puts on every affinity (each node labels its own as it upgrades) — while any
  affinity of the cluster has no such label (its node's Calico is older, and this node's may
  be among them) all of them, as before.  Checked at every list and, when only this node's
  are watched, before every watch stream (a list of the unlabelled ones from the watch
  cache, normally empty); a change of scope lists again.  A labelled watch says DELETED
  for an object whose label was taken away too (an older Calico rewrote it): such an event
  is checked with a GET of the object, and one that still exists widens the watch instead
  of taking the node's block away;
* the other nodes are watched **metadata-only** (``PartialObjectMetadata``: labels and
  annotations are all the daemon reads of them) and this node in full, by name; a server that
  does not serve metadata-only answers with whole objects, which work the same (logged once).
* watch streams are read in chunks and split into lines of any size (no line limit of the
  HTTP library); one line larger than :data:`MAX_EVENT` bytes, or one that is not JSON, is
  skipped with an error and the stream goes on.
* a watch is *up* while it streams and has seen an event or a bookmark within
  ``stale_after`` seconds: a frozen API server keeps the connection open but sends nothing.

Secrets are read only by name, in the daemon's namespace, for the names the other resources
reference; Services and EndpointSlices only while the default BGPConfiguration advertises
service addresses (:class:`DependentWatchers` starts and stops one watcher per resource,
each a task of the controller's TaskGroup and listed with the other watchers).  Responses
are read raw (no client-model conversion: a 600-node list stays cheap).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from node_controller.kube_client import ApiClient, ApiException, Configuration, config
from node_controller.models import BGPConfiguration, BGPPeer
from node_controller.source import Source
from node_controller.store import Store, object_name

log = structlog.get_logger("bgpd.kube")

CALICO_GROUP, CALICO_VERSION = "crd.projectcalico.org", "v1"
WATCH_SECONDS = 300
PAGE = 500
MAX_EVENT = 64 << 20  # one watch event (the API server's own request limit is 3 MiB)
STALE_AFTER = 90.0  # the API server sends a bookmark about once a minute
RELIST_JITTER = 10.0  # seconds: relists after 410 spread over a cluster's nodes
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_ONE = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
HOSTNAME_HASH = "projectcalico.org/hostname-hash"
SCOPE_RECHECK = 60.0  # seconds: a labelled watch checks its labels again before a new stream
ABSENT_RECHECK = 300.0  # seconds: an optional resource type not served is listed again


def hostname_hash(node: str) -> str:
    """The value of Calico's ``projectcalico.org/hostname-hash`` label for ``node``: SHA3-256
    of the name, base32 (standard alphabet) without padding — a label value holds at most 63
    characters, a node name more."""
    digest = hashlib.sha3_256(node.encode()).digest()
    return base64.b32encode(digest).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    plural: str
    group: str = ""  # core
    namespace: str | None = None
    name: str | None = None  # watch just this object (Secrets, this node)
    exclude: str | None = None  # watch every object but this one (the other nodes)
    metadata_only: bool = False  # ask for PartialObjectMetadata
    # watch only objects with this label and value, unless some object lacks the label
    labelled: tuple[str, str] | None = None
    # a type the cluster may not have (Calico Enterprise's): absent is empty, checked again
    optional: bool = False

    def __str__(self) -> str:
        if self.name:
            return f"{self.plural}/{self.name}"
        if self.labelled:
            return f"{self.plural} ({self.labelled[0]}={self.labelled[1]})"
        return self.plural + (f" (metadata, not {self.exclude})" if self.metadata_only
                              else f" (not {self.exclude})" if self.exclude else "")

    @property
    def path(self) -> str:
        if self.group:
            return f"/apis/{self.group}/{CALICO_VERSION}/{self.plural}"
        if self.namespace:
            return f"/api/v1/namespaces/{self.namespace}/{self.plural}"
        return f"/api/v1/{self.plural}"

    @property
    def field_selector(self) -> str | None:
        if self.name is not None:
            return f"metadata.name={self.name}"
        return f"metadata.name!={self.exclude}" if self.exclude is not None else None

    def covers(self, name: str) -> bool:
        """Whether an object of this name is one this resource lists."""
        return ((self.name is None or name == self.name)
                and (self.exclude is None or name != self.exclude))


CALICO_RESOURCES = (
    Resource("BGPConfiguration", "bgpconfigurations", CALICO_GROUP),
    Resource("BGPPeer", "bgppeers", CALICO_GROUP),
    Resource("BGPFilter", "bgpfilters", CALICO_GROUP),
    Resource("IPPool", "ippools", CALICO_GROUP),
    Resource("ClusterInformation", "clusterinformations", CALICO_GROUP, name="default"),
    Resource("BFDConfiguration", "bfdconfigurations", CALICO_GROUP, optional=True),
)


# watched while the default BGPConfiguration advertises service addresses, as confd starts
# its route generator then: a /32 (/128) per Service from the nodes its endpoints justify
SERVICE_RESOURCES = (
    Resource("Service", "services"),
    Resource("EndpointSlice", "endpointslices", "discovery.k8s.io"),
)


def resources(node: str, *, node_objects: str = "metadata",
              block_affinities: str = "own") -> tuple[Resource, ...]:
    """What a node's daemon watches: its own Node in full, the other nodes metadata-only
    (``node_objects="full"``: in full, for clusters whose blocks are the nodes' pod CIDRs),
    the Calico resources and this node's BlockAffinities (``block_affinities="all"``: every
    node's, for retention on the datastore's word and the import guard's other blocks)."""
    mine = (HOSTNAME_HASH, hostname_hash(node)) if block_affinities == "own" else None
    return (Resource("Node", "nodes", name=node),
            Resource("Node", "nodes", exclude=node, metadata_only=node_objects != "full"),
            *CALICO_RESOURCES,
            Resource("BlockAffinity", "blockaffinities", CALICO_GROUP, labelled=mine),
            # Felix's half of the cluster-route split, as Felix reads it
            *(Resource("FelixConfiguration", "felixconfigurations", CALICO_GROUP, name=name)
              for name in ("default", f"node.{node}")))


class Rescope(Exception):
    """The objects a labelled watch should cover changed (see :class:`Resource`): list again."""


class Gone(Exception):
    """The resourceVersion asked for is older than the server keeps: list again."""


class WatchState(enum.Enum):
    STARTING = "starting"
    LISTING = "listing"
    WATCHING = "watching"
    RETRYING = "retrying"
    ABSENT = "absent"  # an optional resource type the API server does not serve


class KubeconfigError(ValueError):
    """No usable credentials for the API: the message says which file or what is missing."""


async def api_client(*, kubeconfig: str | None = None) -> ApiClient:
    """An API client from a kubeconfig file, else the in-cluster service account."""
    configuration = Configuration()
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
    return ApiClient(configuration)


class WatchError(Exception):
    """Reading the API failed — an HTTP status (``status``), a connection or a timeout, or an
    answer that is not what the API sends: retried with backoff."""

    def __init__(self, problem: str, status: int | None = None) -> None:
        super().__init__(problem)
        self.status = status


# --- the layers of a watch, from the wire up ------------------------------------------------
class Reader:
    """HTTP: GET requests of one resource (its field selector, and ``selector``, the label
    selector in force), every failure raised as :class:`Gone` or :class:`WatchError`."""

    def __init__(self, api: ApiClient, resource: Resource) -> None:
        self.api, self.resource = api, resource
        self.selector: str | None = None

    async def get(self, query: list[tuple[str, Any]], *, name: str | None = None,
                  watch: bool = False, timeout: Any = 60) -> aiohttp.ClientResponse:
        """The response of a 2xx answer (the caller reads and closes it)."""
        r = self.resource
        accept = "application/json"
        if name is None:
            if r.field_selector is not None:
                query.append(("fieldSelector", r.field_selector))
            if self.selector is not None and not any(k == "labelSelector" for k, _ in query):
                query.append(("labelSelector", self.selector))
            if r.metadata_only:
                accept = f"{METADATA_ONE if watch else METADATA_LIST}, application/json"
        try:
            response: aiohttp.ClientResponse = await self.api.call_api(
                r.path if name is None else f"{r.path}/{name}", "GET", query_params=query,
                header_params={"Accept": accept}, auth_settings=["BearerToken"],
                _preload_content=False, _request_timeout=timeout)
        except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise WatchError(_describe(exc), getattr(exc, "status", None)) from None
        if 200 <= response.status < 300:
            return response
        async with response:  # a Status object says why
            body = await response.read()
        try:
            message = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            message = body[:200].decode(errors="replace")
        if response.status == 410:  # a continue token or a version too old
            raise Gone(message)
        raise WatchError(f"HTTP {response.status} {message or response.reason}",
                         response.status)

    async def body(self, query: list[tuple[str, Any]]) -> dict[str, Any]:
        """A list answer: a JSON object."""
        response = await self.get(query)
        async with response:
            try:
                data = json.loads(await response.read())
            except (ValueError, RecursionError) as exc:
                raise WatchError(f"not JSON ({exc})") from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise WatchError(_describe(exc)) from None
        if not isinstance(data, dict):
            raise WatchError(f"not a JSON object: {type(data).__name__}")
        return data

    async def exists(self, name: str) -> bool:
        try:
            response = await self.get([], name=name)
        except WatchError as exc:
            if exc.status == 404:
                return False
            raise
        async with response:
            await response.read()
        return True


async def pages(reader: Reader, version: str | None) -> AsyncIterator[dict[str, Any]]:
    """A list, page by page (``PAGE`` objects each, by continue tokens): from the watch cache
    at first (``version`` None), else not older than ``version``."""
    token: str | None = None
    while True:
        query: list[tuple[str, Any]] = [("limit", PAGE)]
        if token:
            query.append(("continue", token))
        elif version is None:
            query.append(("resourceVersion", "0"))
        else:
            query += [("resourceVersion", version), ("resourceVersionMatch", "NotOlderThan")]
        body = await reader.body(query)
        yield body
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return


async def stream(reader: Reader, version: str) -> AsyncGenerator[bytes | None, None]:
    """A watch from ``version``: its lines, until the server ends it (None: a line over
    ``MAX_EVENT``, skipped)."""
    response = await reader.get(
        [("watch", "true"), ("resourceVersion", version), ("allowWatchBookmarks", "true"),
         ("timeoutSeconds", WATCH_SECONDS)], watch=True, timeout=(10, WATCH_SECONDS + 30))
    async with response:
        try:
            async for line in _lines(response):
                yield line
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise WatchError(_describe(exc)) from None


def decode(line: bytes | None) -> dict[str, Any] | str:
    """A watch event, or why the line is none."""
    if line is None:
        return f"larger than {MAX_EVENT >> 20} MiB"
    try:
        event = json.loads(line)
    except (ValueError, RecursionError) as exc:  # (nesting deeper than it goes)
        return f"not JSON ({exc})"
    return event if isinstance(event, dict) else "not an object"


class Watcher:
    """List+watch of one resource into the store; calls ``on_change`` after real changes.
    The wire is :class:`Reader`'s, lists :func:`pages`, streams :func:`stream` and
    :func:`decode`; this class keeps the state, writes the store and retries."""

    def __init__(self, api: ApiClient, resource: Resource, store: Store,
                 on_change: Callable[[], None], *, backoff_max: float = 30.0,
                 stale_after: float = STALE_AFTER, relist_jitter: float = RELIST_JITTER) -> None:
        self.reader = Reader(api, resource)
        self.resource = resource
        self.store = store
        self.on_change = on_change
        self.backoff_max = backoff_max
        self.stale_after = stale_after
        self.relist_jitter = relist_jitter
        self.state = WatchState.STARTING
        self.last_event: float | None = None  # monotonic time of the last event or bookmark
        self.listed = False  # a first list has completed
        self.errors = 0
        self.skipped = 0  # events skipped: too large or not JSON
        self.lists = 0
        self.version: str | None = None  # the last resourceVersion seen
        self._full_objects_logged = False
        self._scoped_at = float("-inf")  # monotonic time of the last check of the labels

    @property
    def selector(self) -> str | None:
        """The label selector in force: a labelled resource's, or None while objects lack
        it."""
        return self.reader.selector

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kind it lists whole (none for a watch of one object by name)."""
        return (self.resource.kind,) if self.resource.name is None else ()

    def up(self, now: float) -> bool:
        """Streaming, and heard from within ``stale_after`` seconds (or an optional type the
        server does not have)."""
        if self.state is WatchState.ABSENT:
            return True
        return (self.state is WatchState.WATCHING and self.last_event is not None
                and now - self.last_event <= self.stale_after)

    async def run(self) -> None:
        delay = 0.5
        must_list = True
        while True:
            try:
                if must_list:
                    self.state = WatchState.LISTING
                    await self.relist()
                    must_list = False
                self.state = WatchState.WATCHING
                assert self.version is not None
                await self.watch(self.version)
                delay = 0.5
            except Rescope:
                must_list = True
            except Gone:
                must_list = True
                wait = random.uniform(0, self.relist_jitter)
                log.info("watch_expired", resource=str(self.resource), relist_in=round(wait, 2))
                self.state = WatchState.RETRYING
                await asyncio.sleep(wait)
            except WatchError as exc:
                if self.resource.optional and exc.status == 404:
                    must_list = True
                    await self._absent()
                    continue
                self.errors += 1
                self.state = WatchState.RETRYING
                wait = delay * random.uniform(0.5, 1.0)
                log.warning("watch_failed", resource=str(self.resource), error=str(exc),
                            retry_in=round(wait, 2),
                            resume_from=None if must_list else self.version)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.backoff_max)

    async def _absent(self) -> None:
        """An optional resource type the server does not serve: none of its objects, and a
        look again in a while (its CRD may be installed later)."""
        if self.state is not WatchState.ABSENT:
            log.info("resource_type_absent", resource=str(self.resource),
                     recheck_in=ABSENT_RECHECK)
        self.state = WatchState.ABSENT
        changed = self.store.replace_kind(self.resource.kind, [], scope=self.resource.covers)
        first, self.listed = not self.listed, True
        self.last_event = time.monotonic()
        if changed or first:
            self.on_change()
        await asyncio.sleep(ABSENT_RECHECK)

    async def _scope(self) -> str | None:
        """The label selector a labelled resource is to be watched with now: its own, or
        None (every object) while some object has no such label."""
        assert self.resource.labelled is not None
        key, value = self.resource.labelled
        self._scoped_at = time.monotonic()
        body = await self.reader.body([("labelSelector", f"!{key}"), ("limit", 1),
                                       ("resourceVersion", "0")])
        unlabelled = [(item.get("metadata") or {}).get("name") for item in
                      body.get("items") or [] if isinstance(item, dict)]
        if not unlabelled:
            return f"{key}={value}"
        log.info("labels_missing", resource=str(self.resource), example=unlabelled[0],
                 problem=f"some objects have no {key} label (Calico < 3.31 on their node): "
                         "every one is watched")
        return None

    async def relist(self) -> str:
        if self.resource.labelled is not None:
            self.reader.selector = await self._scope()
        items: list[dict[str, Any]] = []
        version = ""
        async for body in pages(self.reader, self.version):
            self._note_kind(str(body.get("kind", "")))
            items += [_with_kind(item, self.resource) for item in body.get("items") or []
                      if self._covers(item)]
            version = str((body.get("metadata") or {}).get("resourceVersion", ""))
        changed = self.store.replace_kind(self.resource.kind, items,
                                          scope=self.resource.covers)
        self.lists += 1
        self.version = version
        self.last_event = time.monotonic()
        first, self.listed = not self.listed, True
        if changed or first:
            self.on_change()
        return version

    def _covers(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata")
        return not isinstance(meta, dict) or self.resource.covers(str(meta.get("name")))

    def _note_kind(self, kind: str) -> None:
        if (self.resource.metadata_only and kind != "PartialObjectMetadataList"
                and not self._full_objects_logged):
            self._full_objects_logged = True
            log.info("metadata_only_not_served", resource=str(self.resource), kind=kind,
                     problem="the API server sends whole objects: they are read the same")

    async def watch(self, version: str) -> str:
        """Follow changes from ``version`` until the server ends the stream; the version
        reached is returned for the next watch (and kept in ``version``)."""
        if (self.selector is not None and time.monotonic() - self._scoped_at >= SCOPE_RECHECK
                and await self._scope() != self.selector):
            raise Rescope(str(self.resource))
        # (closed as this returns or raises: the response with it, not when collected)
        async with contextlib.aclosing(stream(self.reader, version)) as lines:
            async for line in lines:
                version = await self._take(line, version)
        return version

    async def _take(self, line: bytes | None, version: str) -> str:
        """One line of the stream into the store; the version reached."""
        event = decode(line)
        if isinstance(event, str):
            self._skipped(event, line)
            return version
        if (self.selector is not None and event.get("type") == "DELETED"
                and await self._still_there(event.get("object"))):
            # not deleted: its labels were taken away (an older Calico wrote it)
            raise Rescope(str(self.resource))
        self.version = version = self._handle(event, version)
        return version

    async def _still_there(self, obj: Any) -> bool:
        """Whether the object of a DELETED event of a labelled watch still exists (a watch
        with a label selector says DELETED for an object that no longer matches it)."""
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        return isinstance(name, str) and bool(name) and await self.reader.exists(name)

    def _skipped(self, problem: str, line: bytes | None) -> None:
        self.skipped += 1
        self.errors += 1
        log.error("watch_event_skipped", resource=str(self.resource), problem=problem,
                  size=len(line) if line is not None else None)

    def _handle(self, event: dict[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        self.last_event = time.monotonic()
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", ""))
            raise WatchError(f"HTTP {obj.get('code')} {obj.get('message')}", obj.get("code"))
        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return version
        if not self._covers(obj):  # a server that ignored the field selector: not ours
            return version
        obj = _with_kind(obj, self.resource)
        if kind == "DELETED":
            changed = self.store.delete(self.resource.kind, object_name(obj))
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
    """List items come without kind and apiVersion, metadata-only ones as
    PartialObjectMetadata; the parsers want the resource's own."""
    if obj.get("kind") != resource.kind or "apiVersion" not in obj:
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


def advertises_services(store: Store) -> bool:
    default = store.get(BGPConfiguration, "default")
    return default is not None and bool(default.service_cidrs)


def dependent_resources(store: Store, namespace: str) -> set[Resource]:
    """The resources the others make the daemon read: each Secret referenced (by name, in
    the daemon's namespace), and Services and EndpointSlices while service addresses are
    advertised."""
    wanted = {Resource("Secret", "secrets", namespace=namespace, name=name)
              for name in referenced_secrets(store)}
    return wanted | set(SERVICE_RESOURCES) if advertises_services(store) else wanted


class DependentWatchers:
    """One watcher per resource :func:`dependent_resources` names, started and stopped as
    that set changes: each a task of ``group`` and a member of ``watchers`` (the
    controller's list, shown in metrics); a resource no longer read leaves the store."""

    def __init__(self, api: ApiClient, namespace: str, store: Store,
                 on_change: Callable[[], None], group: asyncio.TaskGroup,
                 watchers: list[Source], *, stale_after: float = STALE_AFTER) -> None:
        self.api, self.namespace, self.store, self.on_change = api, namespace, store, on_change
        self.group, self.watchers, self.stale_after = group, watchers, stale_after
        self.tasks: dict[Resource, tuple[Watcher, asyncio.Task[None]]] = {}

    def sync(self) -> None:
        wanted = dependent_resources(self.store, self.namespace)
        for resource in sorted(wanted - set(self.tasks), key=str):
            watcher = Watcher(self.api, resource, self.store, self.on_change,
                              stale_after=self.stale_after)
            self.watchers.append(watcher)
            task = self.group.create_task(watcher.run(), name=f"watch-{resource}")
            self.tasks[resource] = (watcher, task)
        changed = False
        for resource in [r for r in self.tasks if r not in wanted]:
            watcher, task = self.tasks.pop(resource)
            task.cancel()
            self.watchers.remove(watcher)
            changed |= self.store.replace_kind(resource.kind, [], scope=resource.covers)
        if changed:  # last: ``on_change`` may call this again
            self.on_change()

