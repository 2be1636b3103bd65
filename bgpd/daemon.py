"""The daemon: every part as a named task in one TaskGroup, and its lifecycle.

Start: read the owned kernel routes a previous run left (they are adopted, not flushed),
then start the resource source (Kubernetes or a static folder), the RIB owner, the speaker
(ExaBGP), the kernel sync and the observability servers.  READY=1 goes to systemd once the
first configuration is applied, the restart's stale routes are settled and the kernel is
in sync — or after ``ready_timeout``, whichever comes first.

If any task fails the group stops and the daemon exits non-zero with the reason (systemd
restarts it).  SIGTERM/SIGINT stop it *without withdrawing anything*: kernel routes stay,
ExaBGP is killed without a NOTIFICATION so peers that negotiated graceful restart keep our
routes, and the next start adopts everything — a restart loses no traffic.  With
``withdraw_on_exit`` (``bgpd run --withdraw-on-exit``) it tears the sessions down (peers
drop our routes) and removes every route it owns, for a real decommission.  SIGHUP reloads
the static resource folder; a folder that cannot be read then (or at start) keeps the
configuration running (at start: the last valid resources saved in ``data_dir``) and is
reported, file and line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from bgpd import birdctl
from bgpd.kernel import Kernel
from bgpd.kernel_sync import KernelSync
from bgpd.observability import Parts, serve_control, serve_http
from bgpd.router import Router
from bgpd.runtime import tune_gc
from bgpd.settings import Settings
from bgpd.speaker.config import SpeakerConfig
from bgpd.speaker.supervisor import Speaker
from bgpd.systemd import Notifier
from node_controller.controller import Controller

log = structlog.get_logger("bgpd.daemon")


def _dump_tasks() -> None:
    """SIGUSR2: log where every task is waiting (for a daemon that seems stuck)."""
    import io

    for task in asyncio.all_tasks():
        out = io.StringIO()
        task.print_stack(limit=8, file=out)
        log.warning("task_stack", task=task.get_name(), stack=out.getvalue())


class _Stop(Exception):
    """Raised inside the task group to end it on a signal."""


class Daemon:
    def __init__(self, settings: Settings, *, notifier: Notifier | None = None,
                 listen_sockets: Sequence[socket.socket] = (),
                 engine: asyncio.subprocess.Process | None = None) -> None:
        self.settings = settings
        self.listen_sockets = listen_sockets
        self.engine = engine  # ExaBGP's launcher, started early (bgpd.speaker.prestart)
        self.notifier = notifier or Notifier()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self.withdraw_on_exit = settings.withdraw_on_exit

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        s = self.settings
        Path(s.state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        kernel = Kernel(protocol=s.kernel_protocol, table=s.kernel_table)
        sync = KernelSync(kernel)
        adopted = await sync.adopt()
        controller = Controller(s.node_name, data_dir=Path(s.data_dir),
                                stale_after=s.watch_stale_after)
        speaker = Speaker(workdir=Path(s.state_dir) / "exabgp",
                          listen_sockets=self.listen_sockets, prestarted=self.engine)
        router = Router(settings=s, speaker=speaker, kernel=sync, desired=controller.desired,
                        adopted=adopted)
        parts = Parts(router, speaker, sync, controller)
        parts.grace = s.ready_timeout
        self.parts = parts
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
        tune_gc()
        log.info("starting", node=s.node_name, datastore=s.datastore, adopted_routes=len(adopted),
                 settings=s.source)
        self.notifier.status(f"starting: {len(adopted)} routes adopted from the kernel")
        try:
            async with asyncio.TaskGroup() as tasks:
                if s.endpoint_status_dir:
                    tasks.create_task(controller.watch_endpoints(Path(s.endpoint_status_dir)),
                                      name="endpoint-status")
                tasks.create_task(self._source(controller), name="resource-source")
                tasks.create_task(router.run(), name="rib")
                tasks.create_task(speaker.run(), name="speaker")
                tasks.create_task(sync.run(), name="kernel-sync")
                tasks.create_task(serve_control(parts, Path(s.control_socket)), name="control")
                if s.bird_socket and Path(s.bird_socket).parent.is_dir():
                    v4 = Path(s.bird_socket)  # and BIRD6's beside it: bird.ctl, bird6.ctl
                    v6 = v4.with_name(f"{v4.stem}6{v4.suffix}")
                    tasks.create_task(birdctl.serve(parts, v4, 4), name="bird-socket")
                    tasks.create_task(birdctl.serve(parts, v6, 6), name="bird6-socket")
                if s.metrics_address:
                    tasks.create_task(serve_http(parts, s.metrics_address,
                                                 live=lambda: speaker.healthy), name="metrics")
                tasks.create_task(self._readiness(parts), name="readiness")
                tasks.create_task(parts.loop_lag.run(), name="loop-lag")
                tasks.create_task(self._stopper(parts), name="stopper")
        except* _Stop:
            pass
        finally:
            router.bfd.close()  # AdminDown on every BFD session: a stop, not a failure
            kernel.close()
        log.info("stopped", withdrew=self.withdraw_on_exit)

    async def _source(self, controller: Controller) -> None:
        s = self.settings
        if s.datastore == "kubernetes":
            typha = None
            if any(k.endswith(("TYPHAADDR", "TYPHAK8SSERVICENAME")) for k in os.environ):
                from node_controller.typha import TyphaConfig

                typha = TyphaConfig.from_environ(os.environ)
            await controller.run_kubernetes(kubeconfig=s.kubeconfig, namespace=s.namespace,
                                            node_objects=s.node_objects,
                                            block_affinities=s.block_affinities, typha=typha)
            return
        while True:
            await controller.run_static(Path(s.resources))
            await self._reload.wait()
            self._reload.clear()
            self.parts.last_reconfigure = time.time()
            log.info("reloading", resources=s.resources)

    async def _readiness(self, parts: Parts) -> None:
        start = time.monotonic()
        router, sync, speaker = parts.router, parts.kernel, parts.speaker
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.ready_timeout):
                await router.converged.wait()
                await sync.synced.wait()
        parts.ready = True
        text = (f"ready in {time.monotonic() - start:.1f}s: {len(speaker.established())}/"
                f"{len(speaker.peers)} sessions up, {sync.stats.owned_routes} kernel routes")
        log.info("ready", seconds=round(time.monotonic() - start, 2),
                 sessions_up=len(speaker.established()), peers=len(speaker.peers),
                 kernel_routes=sync.stats.owned_routes)
        self.notifier.ready(text)
        interval = self.notifier.watchdog_interval
        while True:
            await asyncio.sleep(interval / 2 if interval else 5.0)
            up = len(speaker.established())
            self.notifier.status(f"{up}/{len(speaker.peers)} sessions up, "
                                 f"{sync.stats.owned_routes} kernel routes")
            if interval and speaker.healthy:
                self.notifier.watchdog()

    async def _stopper(self, parts: Parts) -> None:
        await self._stop.wait()
        self.notifier.stopping()
        if self.withdraw_on_exit:
            await self._withdraw_everything(parts)
        raise _Stop()

    async def _withdraw_everything(self, parts: Parts) -> None:
        """Decommission: our routes withdrawn from every peer, then the sessions torn down
        (a plain close would let graceful-restart peers keep them), owned routes removed."""
        speaker, sync = parts.speaker, parts.kernel
        drain = self.settings.drain_seconds
        if drain > 0:  # RFC 8326: peers move their traffic away while this node still forwards
            parts.router.request_drain(True, f"stopping (drain_seconds {drain:g})")
            await asyncio.sleep(drain)
        log.info("withdrawing", peers=len(speaker.peers))
        speaker.withdraw_everything()
        await speaker.wait_idle(10)
        await asyncio.sleep(0.5)  # ExaBGP flushes the withdrawals to the wire
        config = parts.router.config
        if config is not None and config.router_id is not None:
            speaker.configure(SpeakerConfig(router_id=config.router_id))
            await speaker.wait_applied(10)
            await asyncio.sleep(1.0)  # the NOTIFICATIONs leave before ExaBGP is killed
        sync.set_desired([])
        await sync.sync()
