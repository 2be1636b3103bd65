"""The node controller: resources in, this node's DesiredConfig out, only when it changes.

Theory of operation: one task owns the :class:`~node_controller.store.Store`.  Its source —
the Kubernetes API (a :class:`~node_controller.kube.Watcher` per resource type, plus the
Secrets referenced) or a static folder — feeds it; every real change schedules a
recomputation shortly after (a burst such as an initial list is computed once), and a result
equal to the last one published is dropped, so a change that does not alter this node's
configuration (another node's heartbeat, an unrelated object) causes no BGP work at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from node_controller.desired import DesiredConfig, desired_config
from node_controller.static import load_folder
from node_controller.store import Store

if TYPE_CHECKING:  # the Kubernetes client is imported only by a node that uses the API
    from node_controller.kube import Watcher

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


class Controller:
    def __init__(self, node: str, *, debounce: float = 0.05) -> None:
        self.node = node
        self.store = Store()
        self.desired = Latest()
        self.debounce = debounce
        self.watchers: list[Watcher] = []
        self.recomputes = 0
        self.last_compute_s = 0.0
        self._dirty = asyncio.Event()
        self._on_store_change: Callable[[], None] = self._dirty.set

    def changed(self) -> None:
        self._on_store_change()

    async def _publisher(self) -> None:
        """Recompute after a change: an isolated change at once (once the events read with
        it are in, ``SETTLE``), a burst — a relist, 600 nodes starting — at most once per
        ``debounce``."""
        loop = asyncio.get_running_loop()
        last = -self.debounce
        while True:
            await self._dirty.wait()
            await asyncio.sleep(max(SETTLE, last + self.debounce - loop.time()))
            self._dirty.clear()
            last = loop.time()
            await self.recompute()

    async def recompute(self) -> None:
        start = time.perf_counter()
        config = desired_config(self.store, self.node)
        self.last_compute_s = time.perf_counter() - start
        self.recomputes += 1
        if config != self.desired.value:
            previous = self.desired.value
            for error in set(config.errors) - set(previous.errors if previous else ()):
                log.error("resource_invalid", kind=error.kind, name=error.name,
                          field=error.field, problem=error.message)
            await self.desired.publish(config)
            log.info("desired_config", node=self.node, peers=len(config.peers),
                     announce=[str(p) for p in config.announce])

    async def run_static(self, folder: Path, *, loaded: Store | None = None) -> None:
        """Load ``folder`` once (or take it ``loaded`` already) and publish; a reload is
        another call (SIGHUP)."""
        self.store = loaded if loaded is not None else load_folder(folder)
        await self.recompute()

    async def run_kubernetes(self, *, kubeconfig: str | None, namespace: str) -> None:
        from node_controller.kube import RESOURCES, SecretWatchers, Watcher, api_client

        api = await api_client(kubeconfig=kubeconfig)
        secrets = SecretWatchers(api, namespace, self.store, self.changed)

        def on_change() -> None:
            secrets.sync()  # references may have changed
            self._dirty.set()

        self._on_store_change = on_change
        self.watchers = [Watcher(api, r, self.store, self.changed) for r in RESOURCES]
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._publisher(), name="desired-publisher")
                for watcher in self.watchers:
                    tasks.create_task(watcher.run(), name=f"watch-{watcher.resource}")
        finally:
            secrets.close()
            await api.close()
