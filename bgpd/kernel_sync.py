"""Kernel sync: keeps the owned routes of the kernel equal to the RIB's desired set.

Theory of operation (BIRD's ``krt`` scan, driven by events instead of a fixed 2 s timer):
one task owns the desired set (a latest-value slot filled by :meth:`KernelSync.set_desired`)
and runs *passes*: snapshot the owned routes, :func:`ribs.kernel_plan.plan`, apply, record
what failed.  A pass for nothing but a new desired set plans against what the last pass left
(the owned routes it read, changed by what it wrote) instead of reading them again, and
only for the prefixes whose wanted route changed, as long as that pass had no error: every
other change of the kernel's routes is an event, and an event that is not the echo of a
write makes the next pass read the kernel (a flood of withdrawals is then one dump, and
each pass costs what changed, not the whole table).  A pass runs when

* the desired set changes (an unchanged set wakes nothing, so re-applying writes nothing);
* a kernel event shows drift: an owned route deleted or altered by someone else, a foreign
  route leaving a prefix we were refused, a device appearing or vanishing (IPv4 drops routes
  on link down without telling anyone), or lost events;
* a failed route's retry is due (capped exponential backoff), or the periodic check is due.

Our own writes echo back as events; the sync records what it is about to install *before*
applying, so the echoes match and do not count as drift.  Until the first desired set
arrives nothing is written or removed: routes left by a previous run are adopted (read by
:meth:`adopt`) and the RIB decides, through graceful restart, when the stale ones go.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from bgpd.errors import ForeignRouteConflict, KernelError
from bgpd.kernel import Event, Kernel, Monitor, RouteEvent
from ribs.kernel_plan import Address, KernelRoute, OpKind, Prefix, plan

log = structlog.get_logger("bgpd.kernel")


class Cause(enum.Enum):
    DESIRED = "desired_changed"
    DRIFT = "drift"
    RETRY = "retry"
    PERIODIC = "periodic"


@dataclass
class SyncStats:
    passes: int = 0
    writes: int = 0
    write_failures: int = 0
    drift_repairs: int = 0
    foreign_conflicts: int = 0
    snapshots: int = 0  # passes that read the owned routes from the kernel
    owned_routes: int = 0
    last_sync_monotonic: float | None = None


@dataclass(frozen=True)
class PassReport:
    cause: Cause
    writes: int
    errors: dict[Prefix, str] = field(default_factory=dict)


class KernelSync:
    """The task that owns the kernel's ``proto bird`` routes."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        resync_interval: float = 30.0,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        debounce: float = 0.005,
    ) -> None:
        self.kernel = kernel
        self.stats = SyncStats()
        self.errors: dict[Prefix, KernelError | str] = {}  # per prefix, for `bgpd routes`
        self._desired: tuple[KernelRoute, ...] | None = None
        self._installed: dict[Prefix, KernelRoute] = {}
        self._mirrors = False  # _installed is the kernel's owned routes (last pass: no error)
        self._planned: dict[Prefix, KernelRoute] = {}  # the wanted routes of the last pass
        self._wake = asyncio.Event()
        self._causes: set[Cause] = set()
        self._resync_interval = resync_interval
        self._retry_min, self._retry_max = retry_min, retry_max
        self._retry_delay = retry_min
        self._retry_at: float | None = None
        self._debounce = debounce
        self.synced = asyncio.Event()  # set after each pass that left no error

    async def interface_of(self, address: Address) -> str | None:
        """The device that holds ``address`` in the namespace this syncs (None if none)."""
        return await self.kernel.interface_of(address)

    def owned_by_version(self) -> dict[int, int]:
        """The owned routes installed now, by IP version (4 and 6 always present)."""
        counts = {4: 0, 6: 0}
        for prefix in self._installed:
            counts[prefix.version] += 1
        return counts

    async def adopt(self) -> list[KernelRoute]:
        """The owned routes already in the kernel (left by a previous run), untouched."""
        routes = await self.kernel.snapshot()
        self._installed = {r.prefix: r for r in routes}
        self.stats.owned_routes = len(routes)
        return routes

    def set_desired(self, routes: Iterable[KernelRoute]) -> None:
        desired = tuple(routes)
        if desired == self._desired:
            return
        self._desired = desired
        self._trigger(Cause.DESIRED)

    def _trigger(self, cause: Cause) -> None:
        self._causes.add(cause)
        self.synced.clear()
        self._wake.set()

    async def run(self) -> None:
        monitor = self.kernel.monitor()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._watch(monitor), name="kernel-events")
                tasks.create_task(self._passes(), name="kernel-sync")
        finally:
            monitor.close()

    async def _passes(self) -> None:
        loop = asyncio.get_running_loop()
        periodic_at = loop.time() + self._resync_interval
        while True:
            deadline = periodic_at if self._retry_at is None else min(periodic_at, self._retry_at)
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that arrives as the event is set, and this loop would never end
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await self._wake.wait()
                await asyncio.sleep(self._debounce)  # coalesce a burst of changes into one pass
            except TimeoutError:
                now = loop.time()
                if self._retry_at is not None and now >= self._retry_at:
                    self._causes.add(Cause.RETRY)
                if now >= periodic_at:
                    self._causes.add(Cause.PERIODIC)
            self._wake.clear()
            causes, self._causes = self._causes, set()
            if self._desired is None or not causes:
                continue
            cause = min(causes, key=lambda c: list(Cause).index(c))
            await self.sync(cause, read=causes != {Cause.DESIRED})
            periodic_at = loop.time() + self._resync_interval

    async def sync(self, cause: Cause = Cause.DESIRED, *, read: bool = True) -> PassReport:
        """One pass: snapshot, plan, apply.  Usable directly (tests, one-shot tools).
        ``read=False``: plan against what the last pass left, if it had no error."""
        desired = self._desired or ()
        wanted = {r.prefix: r for r in desired}
        if read or not self._mirrors or len(wanted) != len(desired):
            actual = await self.kernel.snapshot()
            self.stats.snapshots += 1
            the_plan = plan(desired, actual)
            expected = {r.prefix: r for r in actual}
        else:
            # only the prefixes whose wanted route is not the very one the last pass had
            # (the RIB keeps a route's object until it changes): a pass costs what changed
            last = self._planned
            changed = [p for p, r in wanted.items() if last.get(p) is not r]
            changed += [p for p in last if p not in wanted]
            installed = self._installed
            the_plan = plan([wanted[p] for p in changed if p in wanted],
                            [installed[p] for p in changed if p in installed])
            expected = dict(installed)
        for op in the_plan.ops:
            if op.kind is OpKind.DELETE:
                if expected.get(op.route.prefix) == op.route:
                    del expected[op.route.prefix]
            else:
                expected[op.route.prefix] = op.route
        self._installed = expected
        results = await self.kernel.apply(the_plan.ops)

        errors: dict[Prefix, KernelError | str] = {
            e.route.prefix: e.message for e in the_plan.errors
        }
        for result in results:
            if result.error is None:
                continue
            prefix = result.op.route.prefix
            errors[prefix] = result.error
            if result.op.kind is not OpKind.DELETE:
                self._installed.pop(prefix, None)
            if isinstance(result.error, ForeignRouteConflict):
                if not isinstance(self.errors.get(prefix), ForeignRouteConflict):
                    self.stats.foreign_conflicts += 1
                    log.warning("foreign_route_kept", prefix=str(prefix),
                                wanted=str(result.op.route))
            else:
                log.error("route_write_failed", prefix=str(prefix), op=result.op.kind.value,
                          route=str(result.op.route), error=str(result.error),
                          reason=result.error.reason)
        for plan_error in the_plan.errors:
            if self.errors.get(plan_error.route.prefix) != plan_error.message:
                log.error("route_rejected", route=str(plan_error.route),
                          error=plan_error.message)
        self.errors = errors
        failures = sum(1 for r in results if r.error is not None)
        writes = len(results) - failures
        self.stats.passes += 1
        self.stats.writes += writes
        self.stats.write_failures += failures
        if cause is Cause.DRIFT or cause is Cause.PERIODIC:
            self.stats.drift_repairs += writes
            if writes:
                log.warning("kernel_drift_repaired", routes=writes, cause=cause.value)
        self.stats.owned_routes = len(self._installed)
        self.stats.last_sync_monotonic = time.monotonic()
        self._schedule_retry(bool(errors))
        self._mirrors = not errors
        self._planned = wanted
        if not errors:
            self.synced.set()
        return PassReport(cause=cause, writes=writes,
                          errors={p: str(e) for p, e in errors.items()})

    def _schedule_retry(self, failed: bool) -> None:
        if not failed:
            self._retry_at, self._retry_delay = None, self._retry_min
            return
        self._retry_at = asyncio.get_running_loop().time() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self._retry_max)

    async def _watch(self, monitor: Monitor) -> None:
        while True:  # no event held while waiting: the last of a flood would keep its route
            if any(self._is_drift(event) for event in await monitor.next_batch()):
                self._trigger(Cause.DRIFT)

    def _is_drift(self, event: Event) -> bool:
        if not isinstance(event, RouteEvent):
            return True  # a device came or went, or events were lost
        mine = self._installed.get(event.route.prefix)
        if not event.owned:
            # a foreign route leaving a prefix we were refused: try again now
            return event.deleted and event.route.prefix in self.errors
        if event.deleted:
            return mine is not None and mine.satisfied_by(event.route)
        return mine is None or not mine.satisfied_by(event.route)
