"""The speaker's IO shell: ExaBGP as a supervised child, around the sans-IO core.

What ExaBGP has been told, each session's state and the command in flight are the
:class:`~bgpd.speaker.core.SpeakerCore`'s; this module runs the process, the bridge socket
and the timers, and moves lines between them.

Theory of operation:

* The daemon serves a Unix socket; ExaBGP runs the bridge (:mod:`bgpd.speaker.bridge`) as
  its API process, which connects to it.  A reader task drains the socket without ever
  waiting on anyone (a blocked API pipe would stall every session): JSON lines become events
  on an unbounded queue, acknowledgements go to the writer.
* The writer sends the core's next commands — route commands pipelined, as many as the core
  allows in flight; a reload or a control command alone — and hands each ``done``/``error``
  to the core, which settles the oldest command in flight (ExaBGP answers queued commands
  in order).
* Liveness: when ExaBGP has been quiet for ``liveness_interval`` a ``version`` command is
  sent; no answer to any command within ``liveness_timeout`` means ExaBGP is hung.
* A crash, a hang, or the bridge going away → the process group is killed, every session
  that was up is reported down (graceful restart keeps their routes in the RIB), the
  pacer forgets what ExaBGP held, and ExaBGP is started again after a capped backoff.
* The first start may use a launcher ``bgpd run`` started before the daemon had a
  configuration (:mod:`bgpd.speaker.prestart`): it is handed the arguments and environment a
  new process would get, on its stdin.
* ExaBGP dies with the daemon whatever kills it: it is started with PR_SET_PDEATHSIG
  (SIGKILL), the bridge sets the same towards ExaBGP.
* A new configuration is written and ExaBGP told to ``reload``: unchanged neighbors keep
  their sessions, changed ones re-establish alone, removed ones are torn down.
* A TCP MD5 mismatch is invisible to ExaBGP (the kernel drops the segments; connections just
  time out).  The kernel counts those drops per network namespace: when they grow, the
  peers with no session say so in their ``last_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from bgpd.speaker import bridge, codec, launch, md5, prestart
from bgpd.speaker.config import SpeakerConfig, render
from bgpd.speaker.core import (
    CommandKind,
    CoreStats,
    SessionDown,
    SessionUp,
    SessionView,
    SpeakerCore,
    SpeakerEvent,
)
from bgpd.speaker.pacing import COOLDOWN
from ribs.types import Address, Attributes, Prefix

__all__ = ["EngineFailure", "Speaker"]

log = structlog.get_logger("bgpd.speaker")

RELOAD_FAILED = "could not load/reload configuration"  # ExaBGP's log line (reactor/loop.py)


class EngineRestart(Exception):
    """ExaBGP must start again to apply the configuration (what it listens on is read at
    its start only)."""


class EngineFailure(Exception):
    """ExaBGP crashed, hung or lost its API process."""



class Speaker:
    def __init__(
        self,
        *,
        workdir: Path,
        netns: str | None = None,
        exabgp: Sequence[str] | None = None,
        liveness_interval: float = 5.0,
        liveness_timeout: float = 15.0,
        backoff_max: float = 30.0,
        cooldown: float = COOLDOWN,
        listen_sockets: Sequence[socket.socket] = (),
        prestarted: asyncio.subprocess.Process | None = None,
    ) -> None:
        self.workdir = workdir
        self.files = launch.Files(workdir)
        self.netns = netns
        self.exabgp = list(exabgp) if exabgp else list(prestart.LAUNCHER)
        self.liveness_interval = liveness_interval
        self.liveness_timeout = liveness_timeout
        self.backoff_max = backoff_max
        self.listen_sockets = list(listen_sockets)  # bound early, handed to every ExaBGP
        self.prestarted = prestarted  # waiting for its start (bgpd.speaker.prestart)
        self.events: asyncio.Queue[SpeakerEvent] = asyncio.Queue()
        self.core = SpeakerCore(cooldown=cooldown)
        self.dialect, self._dialect_warning = codec.dialect_for(launch.exabgp_release())
        self.restarts = 0
        self.healthy = False
        self.pid: int | None = None
        self.last_failure = ""
        # the launcher's units left out, with why (bgpd.speaker.engine): ExaBGP runs its own
        # code for those parts
        self.engine_left_out: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._acks: asyncio.Queue[bool] = asyncio.Queue()
        self._last_heard = time.monotonic()
        self._connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None
        self._connected = None
        self._configured = asyncio.Event()
        self._restart = asyncio.Event()  # a setting ExaBGP reads only at its start changed
        self._restart_reason = ""  # why, when it is not that
        self._started_listening: tuple[int, tuple[Address, ...]] | None = None
        self._md5_seen: dict[str, int] | None = None
        self._progress = asyncio.Event()  # set (and replaced) by _moved

    # --- read-only views -------------------------------------------------------------------
    @property
    def peers(self) -> Mapping[Address, SessionView]:
        """Every configured session, frozen as it is now (the core's own change)."""
        return self.core.sessions()

    @property
    def stats(self) -> CoreStats:
        return self.core.counters()

    @property
    def refusal(self) -> str:
        """Why ExaBGP refused the configuration wanted ("" when it did not)."""
        return self.core.refusal

    @property
    def malformed(self) -> int:
        return self.core.stats.malformed

    @property
    def socket_path(self) -> Path:
        return self.files.socket

    def bridge_command(self) -> list[str]:
        return bridge.command(str(self.socket_path))

    def established(self) -> list[Address]:
        return self.core.established()

    # --- the daemon's side ----------------------------------------------------------------
    def configure(self, config: SpeakerConfig) -> None:
        """Use ``config`` from now on (reloading ExaBGP when it runs, or starting it again
        when what it listens on changed)."""
        self.core.configure(config, render(config, bridge=self.bridge_command()),
                            wall=time.time())
        if self._started_listening not in (None, _listening(config)):
            self._restart.set()
        self._wake.set()
        self._configured.set()

    def advertise(self, peer: Address, prefix: Prefix, attrs: Attributes | None) -> None:
        """What ``peer`` should be told about ``prefix`` (None: nothing, withdraw)."""
        self.core.advertise(peer, prefix, attrs)
        self._wake.set()

    def end_of_rib(self, peer: Address) -> None:
        self.core.end_of_rib(peer)
        self._wake.set()

    def teardown(self, peer: Address, code: int = 2) -> None:
        """Close the session with a Cease NOTIFICATION of subcode ``code`` (2: shutdown)."""
        self.core.control(codec.teardown_command(peer, code))
        self._wake.set()

    def withdraw_everything(self) -> None:
        """Withdraw every route ExaBGP announces, from every peer (decommission)."""
        self.core.withdraw_everything()
        self._wake.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every wanted change has been sent and acknowledged (True) or timeout."""
        return await self._until(lambda: not self.core.busy(), timeout)

    async def wait_applied(self, timeout: float) -> bool:
        """Wait until ExaBGP has been told the current configuration (True) or timeout."""
        return await self._until(lambda: self.core.configured() and self.pid is not None,
                                 timeout)

    async def _until(self, check: Callable[[], bool], timeout: float) -> bool:
        """``check()`` is asked again each time the channel moves (:meth:`_moved`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not check():
                    await self._progress.wait()
        return check()

    def _moved(self) -> None:
        """A command went out or was settled, or ExaBGP started or went: wake the waits."""
        self._progress.set()
        self._progress = asyncio.Event()

    # --- supervision ---------------------------------------------------------------------
    async def run(self) -> None:
        """Run ExaBGP until cancelled, restarting it when it fails."""
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = await asyncio.start_unix_server(self._on_connection, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        delay = 1.0
        if self._dialect_warning:
            log.warning("exabgp_release_unchecked", problem=self._dialect_warning)
        try:
            await self._configured.wait()
            while True:
                started = time.monotonic()
                try:
                    await self._run_once()
                except EngineRestart as exc:
                    self.healthy = False
                    log.info("exabgp_restarting", reason=str(exc))
                    for event in self.core.engine_lost(str(exc), wall=time.time()):
                        self.events.put_nowait(event)
                    continue
                except EngineFailure as exc:
                    self.last_failure = str(exc)
                    log.error("exabgp_failed", error=str(exc), restart_in=delay)
                    self._read_report()
                self.healthy = False
                for event in self.core.engine_lost("BGP engine restart", wall=time.time()):
                    self.events.put_nowait(event)
                self._moved()
                self.restarts += 1
                if time.monotonic() - started > 60:
                    delay = 1.0
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        finally:
            server.close()
            self.healthy = False

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connected is not None and not self._connected.done():
            self._connected.set_result((reader, writer))
        else:
            writer.close()  # a stray or late bridge: only one API channel at a time

    async def _spawn(self) -> asyncio.subprocess.Process:
        config = self.core.config
        assert config is not None
        self._started_listening = _listening(config)
        self._restart.clear()
        self._restart_reason = ""
        launch.write_config(self.files.config, self.core.engine_started())
        prestarted, self.prestarted = self.prestarted, None
        process, self.listen_sockets = await launch.start(
            config, self.files, exabgp=self.exabgp, netns=self.netns,
            listen_sockets=self.listen_sockets, prestarted=prestarted)
        return process

    async def _run_once(self) -> None:
        self._connected = asyncio.get_running_loop().create_future()
        while not self._acks.empty():
            self._acks.get_nowait()
        prestarted = self.prestarted
        process = await self._spawn()
        self.pid = process.pid
        self._moved()
        log.info("exabgp_started", pid=process.pid, peers=len(self.core.peers),
                 prestarted=process is prestarted)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pump_output(process), name="exabgp-log")
                tasks.create_task(self._watch_process(process), name="exabgp-exit")
                async with asyncio.timeout(30):
                    reader, writer = await self._connected
                self.healthy = True
                self._read_report()
                self._last_heard = time.monotonic()
                tasks.create_task(self._read(reader), name="exabgp-events")
                tasks.create_task(self._write(writer), name="exabgp-commands")
                tasks.create_task(self._liveness(), name="exabgp-liveness")
                tasks.create_task(self._restart_when_asked(), name="exabgp-restart")
        except* EngineRestart as group:
            raise group.exceptions[0] from None
        except* EngineFailure as group:
            raise group.exceptions[0] from None
        except* TimeoutError:
            raise EngineFailure("the API process did not connect within 30 s") from None
        finally:
            await launch.kill(process)
            self.pid = None

    async def _restart_when_asked(self) -> None:
        await self._restart.wait()
        config = self.core.config
        assert config is not None
        raise EngineRestart(self._restart_reason or (
            f"listening on port {config.listen_port} of "
            f"{' '.join(str(a) for a in config.bind_addresses) or 'every address'}"))

    async def _watch_process(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        raise EngineFailure(f"ExaBGP exited with status {code}")

    def _read_report(self) -> None:
        """What the launcher applied (it writes the report before ExaBGP starts, so the
        report is there once the bridge has connected, or ExaBGP has exited).  Without its
        ``listen`` unit ExaBGP binds BGP's port itself: the daemon's sockets are closed, for
        this start (which could not bind) to be the last that fails on them."""
        left_out = launch.read_report(self.files.report)
        if left_out is None:
            return  # an ExaBGP started some other way writes none
        self.core.engine_units(left_out)
        if "listen" in left_out and self.listen_sockets:
            for sock in self.listen_sockets:
                sock.close()
            self.listen_sockets = []
            log.warning("listen_sockets_released", problem="ExaBGP cannot take the daemon's "
                        "listening sockets: it binds BGP's port itself from its next start")
        if left_out != self.engine_left_out:
            mismatched = {k: v for k, v in left_out.items()
                          if v not in ("BGPD_EXABGP_PLAIN=1", "BGPD_EXABGP_SKIP")}
            if mismatched:
                log.warning("exabgp_units_left_out", units=mismatched,
                            problem="ExaBGP runs its own code for these: correct, slower "
                                    "with many peers")
        self.engine_left_out = left_out

    async def _pump_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            if text:
                log.info("exabgp", line=text[:500])
            # (before the API process has connected, that line is the first load failing:
            # ExaBGP exits, and is started again with backoff — not a reload to retry)
            if RELOAD_FAILED in text and self.healthy:
                self._reload_failed(text)

    def _reload_failed(self, line: str) -> None:
        """ExaBGP keeps running on a configuration it could not reload — and a failed
        reload has left its parser unable to read any later one: count it, say it, and start
        ExaBGP again on the wanted configuration (peers keep our routes by graceful
        restart)."""
        reason = line.split(RELOAD_FAILED, 1)[1].strip(" :") or "see its log"
        self.core.reload_failed(reason)
        log.error("exabgp_reload_failed", problem=self.core.refusal)
        self._restart_reason = "ExaBGP could not reload its configuration"
        self._restart.set()

    async def _liveness(self) -> None:
        while True:
            await asyncio.sleep(self.liveness_interval / 2)
            self._check_md5()
            if time.monotonic() - self._last_heard >= self.liveness_interval:
                self.core.control("version")
                self._wake.set()

    # --- the channel ---------------------------------------------------------------------
    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                raise EngineFailure("the API channel closed") from exc
            except asyncio.LimitOverrunError:
                line = await reader.read(1 << 20)  # an oversized line: skip it whole
                self.core.receive(codec.Malformed(line[:300].decode(errors="replace"),
                                                  "line over the API channel's limit"),
                                  wall=time.time())
                continue
            self._last_heard = time.monotonic()
            self._dispatch(line)

    def _dispatch(self, line: bytes) -> None:
        # a function of its own: the reader holds no event while it waits for the next line
        event = codec.decode(line.decode(errors="replace"), self.dialect)
        if isinstance(event, codec.Ack):
            self._acks.put_nowait(event.ok)
            return
        if isinstance(event, codec.Malformed):
            log.warning("exabgp_line_malformed", problem=event.problem, line=event.line[:300])
        for out in self.core.receive(event, wall=time.time()):
            self._log_session(out)
            self.events.put_nowait(out)

    def _log_session(self, event: SpeakerEvent) -> None:
        if isinstance(event, SessionUp | SessionDown):
            session = self.core.peers.get(event.peer)
            name = session.neighbor.name if session else None
            if isinstance(event, SessionUp):
                log.info("peer_up", peer=str(event.peer), name=name)
            else:
                log.warning("peer_down", peer=str(event.peer), name=name, reason=event.reason,
                            notification=event.notification)

    def _check_md5(self) -> None:
        """ExaBGP's namespace is the sessions' (``/proc/<pid>/net`` is per namespace)."""
        try:
            now = md5.md5_drops(Path(f"/proc/{self.pid}/net/netstat").read_text())
        except OSError:
            return
        grew = md5.grown(self._md5_seen, now)
        self._md5_seen = now
        if not grew:
            return
        for session in list(self.core.peers.values()):
            hint = md5.md5_hint(session, grew)
            first = not session.last_error.startswith("TCP MD5")
            if hint is not None and self.core.hint(session.neighbor.address, hint) and first:
                log.warning("peer_md5_drops", peer=str(session.neighbor.address),
                            name=session.neighbor.name, problem=hint)

    async def _write(self, writer: asyncio.StreamWriter) -> None:
        """Send what the core says, as far as it lets commands be pipelined; settle answers
        as they come."""
        while True:
            command = self.core.next_command(time.monotonic())
            self._moved()
            if command is not None:
                if command.config is not None:
                    launch.write_config(self.files.config, command.config)
                log.debug("exabgp_command", command=command.text[:200])
                writer.write(command.text.encode() + b"\n")
                await writer.drain()
                if command.kind is CommandKind.ROUTES and self._acks.empty():
                    continue  # the next one goes while ExaBGP works on this one
            if self.core.in_flight:
                await self._settle()
                continue
            due = self.core.wake_at()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # (not wait_for: see kernel_sync)
                    await self._wake.wait()
            self._wake.clear()

    async def _settle(self) -> None:
        """Wait for the answer to the oldest command in flight and settle it."""
        command = self.core.in_flight[0]
        try:
            async with asyncio.timeout(self.liveness_timeout):
                ok = await self._acks.get()
        except TimeoutError:
            raise EngineFailure(f"no answer to {command.text.split(' nlri ')[0][:80]!r} within "
                                f"{self.liveness_timeout} s") from None
        refused = self.core.acknowledged(ok, time.monotonic())
        self._moved()
        if command.kind is CommandKind.RELOAD and ok:
            log.info("exabgp_reloaded", peers=len(self.core.peers))
        elif refused is not None and refused.kind is CommandKind.RELOAD:
            log.error("exabgp_reload_refused", problem=self.core.refusal)
        elif refused is not None:
            log.error("exabgp_command_refused", command=refused.text[:300],
                      retry_in=self.core.retry if refused.batch else None)


def _listening(config: SpeakerConfig) -> tuple[int, tuple[Address, ...]]:
    return config.listen_port, config.bind_addresses
