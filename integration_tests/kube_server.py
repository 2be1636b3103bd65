"""A Kubernetes API test server: the real HTTP API for the few resources the daemon reads.

No kube-apiserver can run on these machines (see README), so tests talk to this instead —
through the real client library and a real ``kubectl``.  It serves:

* discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/crd.projectcalico.org/v1``
  and ``/openapi/v3`` (built from the CRD schemas, for kubectl's client-side validation);
* ``nodes``, ``secrets`` and ``services`` (``/api/v1``), ``endpointslices``
  (``discovery.k8s.io/v1``) and the Calico CRDs of ``config/crds/``;
* list with ``resourceVersion`` (``0`` and ``resourceVersionMatch=NotOlderThan``: from the
  "watch cache", counted apart from the quorum reads without one), ``limit`` / ``continue``;
  watch streams (``?watch=true``) from a resourceVersion, with bookmarks, and ``410 Gone``
  for one that was compacted away;
* field selectors on ``metadata.name`` (``=``, ``==``, ``!=``) and label selectors (``k=v``,
  ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``);
* metadata-only answers when ``Accept`` asks for them (``as=PartialObjectMetadataList`` for a
  list, ``as=PartialObjectMetadata`` for a watch, ``g=meta.k8s.io;v=v1``), unless
  ``serve_metadata`` is off (a server that does not: the next media type, whole objects);
* gzip for lists over 128 KiB when the client accepts it, as the API server compresses;
* per client address: requests and the bytes sent (:attr:`KubeServer.traffic`);
* create, get, replace, patch (JSON merge, strategic merge treated as merge, JSON patch) and
  delete; objects are validated against the CRD's OpenAPI schema (422 with the field).

Test hooks: :meth:`KubeServer.compact` forgets history (the next watch from before gets
410), :meth:`KubeServer.stop` / :meth:`KubeServer.start` restart it on the same port with its
data kept.  It runs in its own thread with its own event loop, so synchronous tests and
asyncio tests can both drive it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import gzip
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

CRD_DIR = Path(__file__).resolve().parent.parent / "config" / "crds"
CALICO = "crd.projectcalico.org"
DISCOVERY = "discovery.k8s.io"


@dataclass
class Kind:
    kind: str
    plural: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    schema: dict[str, Any] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def resource(self) -> dict[str, Any]:
        return {"name": self.plural, "singularName": self.kind.lower(),
                "namespaced": self.namespaced, "kind": self.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}


def load_kinds() -> list[Kind]:
    kinds = [Kind("Node", "nodes", "", "v1", False), Kind("Secret", "secrets", "", "v1", True),
             Kind("Service", "services", "", "v1", True),
             Kind("EndpointSlice", "endpointslices", DISCOVERY, "v1", True)]
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        version = spec["versions"][0]
        kinds.append(Kind(spec["names"]["kind"], spec["names"]["plural"], spec["group"],
                          version["name"], spec["scope"] == "Namespaced",
                          version["schema"]["openAPIV3Schema"]))
    return kinds


class SchemaError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def validate(value: object, schema: dict[str, Any], path: str = "") -> None:
    """The subset of OpenAPI v3 the CRDs use: type, properties, required, items, enum,
    minimum, maximum, pattern; unknown fields are refused (structural schemas prune them,
    we report them, which a test can see) unless ``x-kubernetes-preserve-unknown-fields``."""
    import re

    kind = schema.get("type")
    if kind and not _TYPES[kind](value):
        raise SchemaError(path or ".", f"expected {kind}, got {type(value).__name__}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(path, f"{value!r} is not one of {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(path, f"{value} is less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(path, f"{value} is greater than {schema['maximum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        raise SchemaError(path, f"{value!r} does not match {schema['pattern']}")
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        for key in schema.get("required", []):
            if key not in value:
                raise SchemaError(f"{path}.{key}".lstrip("."), "required")
        for key, item in value.items():
            if key not in props:
                if path != "metadata" and not schema.get("x-kubernetes-preserve-unknown-fields"):
                    raise SchemaError(f"{path}.{key}".lstrip("."), "unknown field")
                continue
            validate(item, props[key], f"{path}.{key}".lstrip("."))
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{path}[{i}]")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902: add, replace, remove, test."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        elif op["op"] == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op["value"]:
                raise SchemaError(op["path"], "test failed")
    return doc


@dataclass
class _Event:
    rv: int
    kind: str  # ADDED | MODIFIED | DELETED
    obj: dict[str, Any]
    prev: dict[str, Any] | None = None  # MODIFIED: the object before


@dataclass
class _Collection:
    info: Kind
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[_Event] = field(default_factory=list)
    compacted_to: int = 0  # watches from before this resourceVersion get 410
    wakeup: asyncio.Event | None = None  # set (and replaced) at every change


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class KubeServer:
    """Serve on 127.0.0.1:``port`` (0: a free one) from a background thread."""

    def __init__(self, port: int = 0, *, bookmark_interval: float = 1.0,
                 extra_listen: tuple[tuple[str, str, int], ...] = (),
                 absent: tuple[str, ...] = ()) -> None:
        self.port = port
        #: (netns, address, port): also listen inside a network namespace (the lab's nodes
        #: reach the server there while kubectl uses loopback)
        self.extra_listen = extra_listen
        self.bookmark_interval = bookmark_interval
        #: resource types (plurals) not served, as a cluster without their CRD: 404
        self.kinds = {k.plural: k for k in load_kinds() if k.plural not in absent}
        self.rv = 1
        self.requests: list[str] = []
        #: by client address: [requests, bytes sent (compressed where sent so), bytes before
        #: compression]
        self.traffic: dict[str, list[int]] = {}
        self.quorum_lists = 0  # lists without a resourceVersion (read from etcd, really)
        self.cache_lists = 0  # resourceVersion=0 or NotOlderThan: the watch cache
        self.serve_metadata = True
        self._collections = {p: _Collection(k) for p, k in self.kinds.items()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._watch_tasks: set[asyncio.Task[Any]] = set()
        self._gates: dict[str, asyncio.Event] = {}
        #: a frozen server (as under SIGSTOP) keeps its connections and sends nothing
        self.frozen = False

    # --- lifecycle (called from the test's thread) ---------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> KubeServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True,
                                        name="kube-test-server")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test API server did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        for coll in self._collections.values():
            coll.wakeup = None  # events belong to one loop
        loop.run_until_complete(self._start_site())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
        loop.close()

    async def _start_site(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        for netns, address, port in self.extra_listen:
            from pyroute2.netns import create_socket

            sock = create_socket(netns, family=socket.AF_INET, socket_type=socket.SOCK_STREAM,
                                 flags=0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        """Stop serving (open watches are cut); the data stays for :meth:`start`."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            for task in list(self._watch_tasks):
                task.cancel()
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (mutations from tests)."""
        if self._loop is None:
            return fn()

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # --- data access for tests -----------------------------------------------------------
    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object (no validation: tests may store anything)."""
        plural = self._plural_of(obj["kind"])
        return self.call(lambda: self._store(plural, copy.deepcopy(obj), validate_it=False))

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
        """A copy of an object as stored (KeyError if there is none)."""
        coll = self._coll(self._plural_of(kind))
        return self.call(lambda: copy.deepcopy(coll.objects[(namespace, name)]))

    def remove(self, kind: str, name: str, namespace: str = "") -> None:
        plural = self._plural_of(kind)
        self.call(lambda: self._delete(plural, namespace, name))

    def compact(self) -> None:
        """Forget all history: a watch or continue from an older resourceVersion gets 410."""
        def run() -> None:
            for coll in self._collections.values():
                coll.events.clear()
                coll.compacted_to = self.rv
        self.call(run)

    def hold(self, plural: str) -> None:
        """Lists of ``plural`` wait until :meth:`release` (a slow first list)."""
        self.call(lambda: self._gates.setdefault(plural, asyncio.Event()))

    def release(self, plural: str) -> None:
        self.call(lambda: self._gates.pop(plural).set())

    def _plural_of(self, kind: str) -> str:
        return next(p for p, k in self.kinds.items() if k.kind == kind)

    # --- storage -------------------------------------------------------------------------
    def _coll(self, plural: str) -> _Collection:
        coll = self._collections[plural]
        if coll.wakeup is None:
            coll.wakeup = asyncio.Event()
        return coll

    def _store(self, plural: str, obj: dict[str, Any], *, validate_it: bool = True,
               expect_new: bool | None = None) -> dict[str, Any]:
        coll = self._coll(plural)
        info = coll.info
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", "default") if info.namespaced else "", meta["name"])
        if info.namespaced:
            meta["namespace"] = key[0]
        old = coll.objects.get(key)
        if expect_new is True and old is not None:
            raise web.HTTPConflict(text=json.dumps(status(
                409, "AlreadyExists", f'{plural} "{key[1]}" already exists')),
                content_type="application/json")
        if expect_new is False and old is None:
            raise _not_found(plural, key[1])
        obj["apiVersion"], obj["kind"] = info.api_version, info.kind
        if validate_it and info.schema is not None:
            try:
                validate(obj, info.schema)
            except SchemaError as exc:
                raise web.HTTPUnprocessableEntity(text=json.dumps(status(
                    422, "Invalid", f'{info.kind} "{key[1]}" is invalid: {exc}')),
                    content_type="application/json") from None
        if obj.get("kind") == "Secret":
            for k, v in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        coll.objects[key] = obj
        self._emit(coll, "MODIFIED" if old else "ADDED", obj, prev=old)
        return obj

    def _delete(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        coll = self._coll(plural)
        key = (namespace if coll.info.namespaced else "", name)
        obj = coll.objects.pop(key, None)
        if obj is None:
            raise _not_found(plural, name)
        self.rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(coll, "DELETED", gone)
        return gone

    def _emit(self, coll: _Collection, kind: str, obj: dict[str, Any], *,
              prev: dict[str, Any] | None = None) -> None:
        coll.events.append(_Event(self.rv, kind, copy.deepcopy(obj), copy.deepcopy(prev)))
        if coll.wakeup is not None:
            coll.wakeup.set()
            coll.wakeup = asyncio.Event()

    # --- HTTP ----------------------------------------------------------------------------
    def _count(self, request: web.Request, sent: int, *, new_request: bool = False,
               raw: int | None = None) -> None:
        entry = self.traffic.setdefault(request.remote or "?", [0, 0, 0])
        entry[0] += new_request
        entry[1] += sent
        entry[2] += sent if raw is None else raw

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        self._count(request, 0, new_request=True)
        try:
            return await self._route(request)
        except web.HTTPException as exc:
            if exc.text and exc.content_type == "application/json":
                raise
            return web.json_response(status(exc.status, exc.reason, exc.text or exc.reason),
                                     status=exc.status)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["version"]:
            return web.json_response({"major": "1", "minor": "30", "gitVersion": "v1.30.0",
                                      "platform": "linux/amd64"})
        if parts == ["api"]:
            return web.json_response({"kind": "APIVersions", "versions": ["v1"],
                                      "serverAddressByClientCIDRs": []})
        if parts == ["apis"]:
            groups = []
            for api_group in (CALICO, DISCOVERY):
                version = {"groupVersion": f"{api_group}/v1", "version": "v1"}
                groups.append({"name": api_group, "versions": [version],
                               "preferredVersion": version})
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1",
                                      "groups": groups})
        if parts in (["api", "v1"], ["apis", CALICO, "v1"], ["apis", DISCOVERY, "v1"]):
            group = "" if parts[0] == "api" else parts[1]
            return web.json_response({
                "kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "v1" if not group else f"{group}/v1",
                "resources": [k.resource() for k in self.kinds.values() if k.group == group]})
        if parts == ["openapi", "v3"]:
            return web.json_response({"paths": {
                "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=1"},
                f"apis/{CALICO}/v1": {"serverRelativeURL": f"/openapi/v3/apis/{CALICO}/v1?hash=1"},
                f"apis/{DISCOVERY}/v1": {
                    "serverRelativeURL": f"/openapi/v3/apis/{DISCOVERY}/v1?hash=1"},
            }})
        if parts[:2] == ["openapi", "v3"]:
            group = "" if parts[2] == "api" else parts[3]
            return web.json_response(self._openapi_v3(group))
        if parts[:2] == ["openapi", "v2"]:
            raise web.HTTPNotFound(text="only /openapi/v3 is served")
        rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
        namespace = ""
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if not rest or rest[0] not in self.kinds:
            raise web.HTTPNotFound(text=f"no resource at {request.path}")
        plural, name = rest[0], rest[1] if len(rest) > 1 else None
        if name is None:
            if request.method == "GET":
                if _flag(request, "watch"):
                    return await self._watch(request, plural, namespace)
                gate = self._gates.get(plural)
                if gate is not None:
                    await gate.wait()
                body = json.dumps(self._list(request, plural, namespace)).encode()
                headers = {"Content-Type": "application/json"}
                raw = len(body)
                if raw > 128 << 10 and "gzip" in request.headers.get("Accept-Encoding", ""):
                    body, headers["Content-Encoding"] = gzip.compress(body, 1), "gzip"
                self._count(request, len(body), raw=raw)
                return web.Response(body=body, headers=headers)
            if request.method == "POST":
                body = await request.json()
                if namespace:
                    body.setdefault("metadata", {})["namespace"] = namespace
                return web.json_response(self._store(plural, body, expect_new=True), status=201)
        else:
            key_ns = namespace or "default"
            return await self._item(request, plural, key_ns, name)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])

    async def _item(self, request: web.Request, plural: str, namespace: str,
                    name: str) -> web.StreamResponse:
        coll = self._coll(plural)
        key = (namespace if coll.info.namespaced else "", name)
        if request.method == "GET":
            obj = coll.objects.get(key)
            if obj is None:
                raise _not_found(plural, name)
            return web.json_response(obj)
        if request.method == "DELETE":
            return web.json_response(self._delete(plural, key[0], name))
        if request.method == "PUT":
            body = await request.json()
            return web.json_response(self._store(plural, body, expect_new=False))
        if request.method == "PATCH":
            current = coll.objects.get(key)
            if current is None:
                raise _not_found(plural, name)
            ctype = request.content_type
            body = await request.text()
            if ctype == "application/json-patch+json":
                patched = json_patch(current, json.loads(body))
            elif ctype == "application/apply-patch+yaml":
                patched = merge_patch(current, yaml.safe_load(body))
            else:  # merge-patch+json, strategic-merge-patch+json
                patched = merge_patch(current, json.loads(body))
            patched.setdefault("metadata", {}).pop("resourceVersion", None)
            return web.json_response(self._store(plural, patched, expect_new=False))
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT", "PATCH", "DELETE"])

    def _list(self, request: web.Request, plural: str, namespace: str) -> dict[str, Any]:
        coll = self._coll(plural)
        selected = _selector(request, namespace)
        items = sorted((o for o in coll.objects.values() if selected(o)),
                       key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        limit = int(request.query.get("limit", "0") or 0)
        token = request.query.get("continue")
        version = request.query.get("resourceVersion")
        if token and version is not None:
            raise web.HTTPBadRequest(text="specifying resource version is not allowed when "
                                          "using continue")
        if not token:
            if version == "0" or (version and request.query.get("resourceVersionMatch")
                                  == "NotOlderThan"):
                self.cache_lists += 1
            else:
                self.quorum_lists += 1
        list_rv = self.rv
        if token:
            state = json.loads(base64.b64decode(token))
            if state["rv"] < coll.compacted_to:
                raise web.HTTPGone(text=json.dumps(status(
                    410, "Expired", "the continue token has expired")),
                    content_type="application/json")
            list_rv = state["rv"]
            items = [o for o in items if o["metadata"]["name"] > state["after"]]
        meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit and len(items) > limit:
            items = items[:limit]
            meta["continue"] = base64.b64encode(json.dumps(
                {"rv": list_rv, "after": items[-1]["metadata"]["name"]}).encode()).decode()
            meta["remainingItemCount"] = len(coll.objects) - limit
        if self._metadata_only(request, "PartialObjectMetadataList"):
            return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta, "items": [_partial(o) for o in items]}
        return {"kind": f"{coll.info.kind}List", "apiVersion": coll.info.api_version,
                "metadata": meta, "items": items}

    def _metadata_only(self, request: web.Request, as_kind: str) -> bool:
        """Whether the first media type of ``Accept`` the server serves is ``as_kind``."""
        for media in request.headers.get("Accept", "").split(","):
            params = dict(p.strip().partition("=")[::2] for p in media.split(";")[1:])
            if "as" not in params:
                return False  # plain JSON comes first
            if (self.serve_metadata and params.get("as") == as_kind
                    and params.get("g") == "meta.k8s.io" and params.get("v") == "v1"):
                return True
        return False

    async def _watch(self, request: web.Request, plural: str,
                     namespace: str) -> web.StreamResponse:
        coll = self._coll(plural)
        selected = _selector(request, namespace)
        partial = self._metadata_only(request, "PartialObjectMetadata")

        since = int(request.query.get("resourceVersion") or self.rv)
        bookmarks = _flag(request, "allowWatchBookmarks")
        timeout = float(request.query.get("timeoutSeconds", "300"))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._watch_tasks.add(task)
        try:
            if since < coll.compacted_to:
                await _send(response, {"type": "ERROR", "object": status(
                    410, "Expired", f"too old resource version: {since} ({coll.compacted_to})")})
                return response
            deadline = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            while time.monotonic() < deadline:
                if self.frozen:
                    await asyncio.sleep(0.05)
                    continue
                wakeup = coll.wakeup
                assert wakeup is not None
                for event in [e for e in coll.events if e.rv > since]:
                    seen = _as_watched(event, selected)
                    if seen is not None:
                        kind, obj = seen
                        obj = _partial(obj) if partial else obj
                        self._count(request, await _send(response, {"type": kind,
                                                                    "object": obj}))
                    since = event.rv
                if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval:
                    self._count(request, await _send(response, {"type": "BOOKMARK", "object": {
                        "kind": coll.info.kind, "apiVersion": coll.info.api_version,
                        "metadata": {"resourceVersion": str(self.rv)}}}))
                    since = max(since, self.rv)
                    last_bookmark = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self.bookmark_interval)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watch_tasks.discard(task)
        return response

    def _openapi_v3(self, group: str) -> dict[str, Any]:
        """An OpenAPI v3 document of one group, enough for kubectl's client-side validation."""
        schemas: dict[str, Any] = {}
        paths: dict[str, Any] = {}
        for k in self.kinds.values():
            if k.group != group:
                continue
            gvk = {"group": k.group, "version": k.version, "kind": k.kind}
            schema = copy.deepcopy(k.schema) if k.schema is not None else {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}
            schema["x-kubernetes-group-version-kind"] = [gvk]
            schemas[f"{k.group or 'core'}.{k.version}.{k.kind}"] = schema
            # kubectl reads the PATCH operation's parameters to learn that this server
            # validates fields itself (fieldValidation), and then needs no client schema
            base = f"/apis/{k.group}/{k.version}" if k.group else "/api/v1"
            ns = "/namespaces/{namespace}" if k.namespaced else ""
            operation = {"x-kubernetes-group-version-kind": gvk, "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}]}
            paths[f"{base}{ns}/{k.plural}/{{name}}"] = {"patch": operation, "put": operation}
            paths[f"{base}{ns}/{k.plural}"] = {"post": operation}
        return {"openapi": "3.0.0", "info": {"title": "bgpd test API", "version": "v1"},
                "paths": paths, "components": {"schemas": schemas}}


def _flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter, read as Go's strconv.ParseBool reads it."""
    return request.query.get(name, "") in ("1", "t", "T", "true", "TRUE", "True")


def _as_watched(event: _Event, selected: Callable[[dict[str, Any]], bool],
                ) -> tuple[str, dict[str, Any]] | None:
    """An event as a watch with a selector sees it, as the API server's watch cache says it:
    an object modified into the selection is ADDED, one modified out of it DELETED (with
    its previous content and the event's resourceVersion)."""
    now = selected(event.obj)
    if event.kind != "MODIFIED" or event.prev is None:
        return (event.kind, event.obj) if now else None
    before = selected(event.prev)
    if now:
        return ("MODIFIED" if before else "ADDED"), event.obj
    if not before:
        return None
    prev = copy.deepcopy(event.prev)
    prev["metadata"]["resourceVersion"] = event.obj["metadata"]["resourceVersion"]
    return "DELETED", prev


_FIELD_TERM = re.compile(r"\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*")


def _selector(request: web.Request,
              namespace: str) -> Callable[[dict[str, Any]], bool]:
    """The objects a request selects: its namespace, ``fieldSelector`` on ``metadata.name``
    and ``labelSelector``."""
    names: list[tuple[bool, str]] = []  # (equal, name)
    for term in filter(None, (request.query.get("fieldSelector") or "").split(",")):
        m = _FIELD_TERM.fullmatch(term)
        if m is None or m.group(1) != "metadata.name":
            raise web.HTTPBadRequest(text=f"unsupported field selector {term!r}")
        names.append((m.group(2) != "!=", m.group(3)))
    labels = _label_terms(request.query.get("labelSelector") or "")

    def selected(obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        have = meta.get("labels") or {}
        return ((namespace == "" or meta.get("namespace") == namespace)
                and all((meta["name"] == name) == equal for equal, name in names)
                and all(test(have) for test in labels))

    return selected


def _label_terms(text: str) -> list[Callable[[dict[str, str]], bool]]:
    """A label selector's terms as tests of an object's labels."""
    terms: list[tuple[str, str, frozenset[str]]] = []  # (key, operator, values)
    # commas inside "in (a,b)" are not separators
    for raw in re.findall(r"[^,(]+(?:\([^)]*\))?", text):
        term = raw.strip()
        if not term:
            continue
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            values = frozenset(v.strip() for v in m.group(3).split(","))
            terms.append((m.group(1), m.group(2), values))
        elif m := re.fullmatch(r"(\S+?)\s*(==|=|!=)\s*(\S*)", term):
            op = "notin" if m.group(2) == "!=" else "in"
            terms.append((m.group(1), op, frozenset([m.group(3)])))
        elif m := re.fullmatch(r"!\s*(\S+)", term):
            terms.append((m.group(1), "absent", frozenset()))
        elif re.fullmatch(r"[\w./-]+", term):
            terms.append((term, "present", frozenset()))
        else:
            raise web.HTTPBadRequest(text=f"unable to parse label selector term {term!r}")

    def test(key: str, op: str, values: frozenset[str]) -> Callable[[dict[str, str]], bool]:
        def check(have: dict[str, str]) -> bool:
            if op == "present":
                return key in have
            if op == "absent":
                return key not in have
            return (have.get(key) in values) == (op == "in")
        return check

    return [test(*t) for t in terms]


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as PartialObjectMetadata: its metadata alone."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"]}


async def _send(response: web.StreamResponse, event: dict[str, Any]) -> int:
    line = json.dumps(event).encode() + b"\n"
    await response.write(line)
    return len(line)


def _not_found(plural: str, name: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps(status(404, "NotFound",
                                                   f'{plural} "{name}" not found')),
                            content_type="application/json")


def kubeconfig(server: KubeServer, path: Path) -> Path:
    """Write a kubeconfig for ``server`` (plain HTTP, no credentials)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": server.url}}],
        "users": [{"name": "lab", "user": {}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab",
                                                 "namespace": "calico-system"}}],
    }))
    return path


def main() -> None:
    """``python -m integration_tests.kube_server --port P --load FILE...``: serve until
    SIGTERM (the lab runs it in the background); writes the port to ``--port-file``."""
    import argparse
    import signal as signals

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--load", nargs="*", default=[], help="manifests to create at start")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--netns-listen", nargs=3, metavar=("NETNS", "ADDRESS", "PORT"),
                        help="also listen on ADDRESS:PORT inside network namespace NETNS")
    args = parser.parse_args()
    extra = ((args.netns_listen[0], args.netns_listen[1], int(args.netns_listen[2])),) \
        if args.netns_listen else ()
    server = KubeServer(args.port, extra_listen=extra).start()
    for path in args.load:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if doc:
                server.put(doc)
    if args.port_file:
        Path(args.port_file).write_text(str(server.port))
    stop = threading.Event()
    signals.signal(signals.SIGTERM, lambda *_: stop.set())
    signals.signal(signals.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
