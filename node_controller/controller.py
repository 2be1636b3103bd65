"""The node controller: resources in, this node's DesiredConfig out, only when it changes.

Theory of operation: one task owns the :class:`~node_controller.store.Store`.  Its source —
the Kubernetes API (a :class:`~node_controller.kube.Watcher` per resource type, plus the
Secrets referenced) or a static folder — feeds it; every real change schedules a
recomputation shortly after (a burst such as an initial list is computed once), and a result
equal to the last one published is dropped, so a change that does not alter this node's
configuration (another node's heartbeat, an unrelated object) causes no BGP work at all.

Nothing is published before every watcher — the Secret watchers of the referenced Secrets
included, and the Services' and EndpointSlices' when service addresses are advertised — has
completed its first list: a configuration computed from half a cluster
("no such node", a mesh of ten nodes out of 600) would reach the RIB as real.  Every watcher
runs in the controller's TaskGroup.  After each publication the last valid resources are
saved (:mod:`node_controller.durable`) and read back at the next start.  A static folder
that cannot be read (a file that is not YAML) keeps the configuration running and becomes
an error naming the file and line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from node_controller import durable
from node_controller.desired import DesiredConfig, desired_config
from node_controller.endpoints import EndpointFolder
from node_controller.errors import ResourceError
from node_controller.static import ResourceFolderError, load_folder
from node_controller.store import Store
from ribs.types import Prefix, prefix_bits

if TYPE_CHECKING:
    from node_controller.source import Source
    from node_controller.typha import TyphaConfig

log = structlog.get_logger("bgpd.controller")


class Latest:
    """A latest-value slot: readers wait for a value newer than the one they have."""

    def __init__(self) -> None:
        self.value: DesiredConfig | None = None
        self.version = 0
        self._changed = asyncio.Condition()

    async def publish(self, value: DesiredConfig) -> None:
        async with self._changed:
            self.value, self.version = value, self.version + 1
            self._changed.notify_all()

    async def next(self, after: int) -> tuple[int, DesiredConfig]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > after)
            assert self.value is not None
            return self.version, self.value


SETTLE = 0.002


def _some(prefixes: set[Prefix], limit: int = 20) -> list[str]:
    """Up to ``limit`` prefixes for a log line, in order, and how many more there are."""
    ordered = sorted(prefixes, key=prefix_bits)
    return [str(p) for p in ordered[:limit]] + (
        [f"... {len(ordered) - limit} more"] if len(ordered) > limit else [])


class Controller:
    def __init__(self, node: str, *, debounce: float = 0.05, data_dir: Path | None = None,
                 stale_after: float = 90.0, sync_timeout: float = 60.0,
                 relist_jitter: float = 10.0) -> None:
        self.node = node
        self.stale_after = stale_after
        self.relist_jitter = relist_jitter
        self.sync_timeout = sync_timeout
        self.data_dir = data_dir
        self.fallback = durable.load(data_dir) if data_dir is not None else {}
        self.store = Store(fallback=self.fallback)
        self.desired = Latest()
        self.debounce = debounce
        self.watchers: list[Source] = []  # watchers, and Typha when it is used
        self.recomputes = 0
        self.last_compute_s = 0.0
        self.source_errors: tuple[ResourceError, ...] = ()  # the source itself (a file)
        self.initial_sync_s: float | None = None  # start → first publication
        self._waited = False  # the first lists took longer than sync_timeout
        self._saved = -1
        self._dirty = asyncio.Event()
        self._on_store_change: Callable[[], None] = self._dirty.set
        self._publishing = False  # the API's publisher runs (else: static, recompute at once)
        self.endpoints: EndpointFolder | None = None  # Felix's endpoint status files

    def synced(self) -> bool:
        """Every watcher has listed once (always, for a static folder)."""
        return all(w.listed for w in self.watchers)

    def _unlisted_errors(self) -> list[ResourceError]:
        return [ResourceError("Watch", str(w.resource), "list", (
            f"not listed within {self.sync_timeout:g} s of the start: its objects are the "
            "last valid ones saved")) for w in self.watchers if not w.listed]

    def _stop_waiting(self) -> None:
        """The first lists took too long: publish with what is known, the kinds still
        unlisted taken from the last valid resources saved."""
        self._waited = True
        for watcher in self.watchers:
            if not watcher.listed:
                for (kind, _), obj in self.fallback.items():
                    if kind in watcher.kinds:
                        self.store.apply(obj)
        log.error("initial_sync_incomplete", waited=self.sync_timeout,
                  unlisted=[str(w.resource) for w in self.watchers if not w.listed])

    def changed(self) -> None:
        self._on_store_change()

    async def _publisher(self) -> None:
        """Recompute after a change: an isolated change at once (once the events read with
        it are in, ``SETTLE``), a burst — a relist, 600 nodes starting — at most once per
        ``debounce``."""
        loop = asyncio.get_running_loop()
        last = -self.debounce
        started = loop.time()
        barrier = True  # until every watcher has listed once (or sync_timeout)
        while True:
            timeout = max(0.0, started + self.sync_timeout - loop.time()) if barrier else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._dirty.wait()
            await asyncio.sleep(max(SETTLE, last + self.debounce - loop.time()))
            self._dirty.clear()
            if barrier:
                if not self.synced() and loop.time() < started + self.sync_timeout:
                    continue  # the last first list sets it again
                if not self.synced():
                    self._stop_waiting()
                barrier = False
                self.initial_sync_s = loop.time() - started
            last = loop.time()
            await self.recompute()

    async def recompute(self) -> None:
        start = time.perf_counter()
        endpoints = self.endpoints
        config = desired_config(self.store, self.node,
                                endpoints.workloads if endpoints is not None else ())
        extra = [*self.source_errors, *(self._unlisted_errors() if self._waited else ()),
                 *(endpoints.errors if endpoints is not None else ())]
        if extra:
            config = replace(config, errors=tuple(sorted({*config.errors, *extra})))
        self.last_compute_s = time.perf_counter() - start
        self.recomputes += 1
        if config != self.desired.value:
            previous = self.desired.value
            for error in set(config.errors) - set(previous.errors if previous else ()):
                log.error("resource_invalid", kind=error.kind, name=error.name,
                          field=error.field, problem=error.message)
            for notice in set(config.notices) - set(previous.notices if previous else ()):
                log.info("resource_changes_nothing", kind=notice.kind, name=notice.name,
                         field=notice.field, why=notice.message)
            await self.desired.publish(config)
            before = set(previous.announce) if previous else set()
            now = set(config.announce)
            log.info("desired_config", node=self.node, peers=len(config.peers),
                     announce=len(now), added=_some(now - before),
                     withdrawn=_some(before - now))
        self._save()

    def _save(self) -> None:
        generation = self.store.valid_generation
        if self.data_dir is not None and generation != self._saved and durable.save(
                self.data_dir, self.store.valid):
            self._saved = generation

    async def watch_endpoints(self, folder: Path, *, interval: float = 1.0) -> None:
        """Rescan Felix's endpoint status files every ``interval`` (the first scan at once);
        a change recomputes the configuration."""
        self.endpoints = endpoints = EndpointFolder(folder)
        while True:
            if endpoints.scan():
                log.info("local_workloads", folder=str(folder),
                         peers=[f"{w.bgp_peer}:{w.name}" for w in endpoints.workloads])
                if self._publishing:
                    self._dirty.set()
                elif self.recomputes:  # static: once the folder is loaded
                    await self.recompute()
            await asyncio.sleep(interval)

    async def run_static(self, folder: Path) -> None:
        """Load ``folder`` and publish; a reload is another call (SIGHUP).  A folder that
        cannot be read keeps what runs (at start: the last valid resources saved).

        Each load builds a new store, in a worker thread (a large file never stalls the
        loop); an object invalid in it takes its version in the store that runs — the last
        valid one, as an edit in place through the API keeps it — and, at start, the
        version saved before the restart."""
        if self.recomputes:
            fresh = Store(fallback=self.store.valid, fallback_note="")
        else:
            fresh = Store(fallback=self.fallback)
        try:
            self.store = await asyncio.to_thread(load_folder, folder, fresh)
            self._saved = -1  # a new store counts its generations from 0
            self.source_errors = ()
        except ResourceFolderError as exc:
            self.source_errors = (ResourceError(
                "File", str(folder), "", f"{exc}: the folder is not read; the configuration "
                "running (at start: the last valid resources saved) stays"),)
            log.error("resources_unreadable", folder=str(folder), problem=str(exc))
            if self.recomputes == 0:
                self.store = Store(fallback=self.fallback)
                for obj in self.fallback.values():
                    self.store.apply(obj)
        await self.recompute()

    async def run_kubernetes(self, *, kubeconfig: str | None, namespace: str,
                             node_objects: str = "metadata", block_affinities: str = "own",
                             typha: TyphaConfig | None = None) -> None:
        """Watch the API; with ``typha`` (configured), the Calico resources of the "bgp"
        syncer come from Typha instead, the ClusterInformation, Secrets and Services still
        from the API (as confd reads them), and the IPPools too (Typha's have no block
        size)."""
        from node_controller.kube import DependentWatchers, Watcher, api_client, resources

        api = await api_client(kubeconfig=kubeconfig)
        watched = resources(self.node, node_objects=node_objects,
                            block_affinities=block_affinities)
        sources: list[Source] = []
        if typha is not None and typha.enabled:
            from node_controller import typha as typha_client

            config = typha
            sources.append(typha_client.TyphaSource(
                config, self.node, self.store, self.changed, stale_after=self.stale_after,
                discover=lambda: typha_client.discover(api, config, self.node)))
            watched = tuple(r for r in watched if r.kind not in typha_client.KINDS)
        self.watchers = [*(Watcher(api, r, self.store, self.changed,
                                   stale_after=self.stale_after,
                                   relist_jitter=self.relist_jitter) for r in watched), *sources]
        try:
            async with asyncio.TaskGroup() as tasks:
                dependents = DependentWatchers(api, namespace, self.store, self.changed, tasks,
                                               self.watchers, stale_after=self.stale_after)

                def on_change() -> None:
                    if all(w.listed for w in self.watchers):
                        dependents.sync()  # references may have changed
                    self._dirty.set()

                self._on_store_change = on_change
                self._publishing = True
                tasks.create_task(self._publisher(), name="desired-publisher")
                for watcher in list(self.watchers):
                    tasks.create_task(watcher.run(), name=f"watch-{watcher.resource}")
        finally:
            await api.close()
