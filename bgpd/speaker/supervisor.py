"""The speaker: ExaBGP as a supervised child, seen by the daemon as typed events and calls.

Theory of operation:

* The daemon serves a Unix socket; ExaBGP runs the bridge (:mod:`bgpd.speaker.bridge`) as
  its API process, which connects to it.  A reader task drains the socket without ever
  waiting on anyone (a blocked API pipe would stall every session): JSON lines become events
  on an unbounded queue, acknowledgements go to the writer.
* The writer sends one command at a time and waits for its ``done``/``error``, so
  acknowledgements can never be matched to the wrong command; route changes come from the
  :class:`~bgpd.speaker.pacing.Pacer`.
* Liveness: when ExaBGP has been quiet for ``liveness_interval`` a ``version`` command is
  sent; no answer to any command within ``liveness_timeout`` means ExaBGP is hung.
* A crash, a hang, or the bridge going away → the process group is killed, every session
  that was up is reported down (graceful restart keeps their routes in the RIB), the
  pacer forgets what ExaBGP held, and ExaBGP is started again after a capped backoff.
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
import enum
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from bgpd.speaker import codec, listen
from bgpd.speaker.bridge import die_with_parent
from bgpd.speaker.config import SpeakerConfig, environment, render
from bgpd.speaker.pacing import Pacer
from node_controller.desired import PeerConfig
from ribs.types import Address, Attributes, Prefix

log = structlog.get_logger("bgpd.speaker")

MD5_COUNTERS = ("TCPMD5NotFound", "TCPMD5Unexpected", "TCPMD5Failure")


def md5_drops(netstat: str) -> dict[str, int]:
    """TCP segments the kernel dropped for their MD5 signature (RFC 2385), by reason, from
    ``/proc/net/netstat``: expected and missing, unexpected, or wrong."""
    lines = netstat.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return {k: int(table.get(k, 0)) for k in MD5_COUNTERS}
    return dict.fromkeys(MD5_COUNTERS, 0)


def md5_hint(status: PeerStatus, grew: dict[str, int]) -> str | None:
    """Why a peer with no session may be failing, from the growth of the MD5 counters."""
    counts = ", ".join(f"{k} +{v}" for k, v in grew.items())
    if status.config.password is not None and (grew.get("TCPMD5Failure")
                                               or grew.get("TCPMD5NotFound")):
        return (f"TCP MD5: this node's kernel dropped segments with a wrong or missing "
                f"signature ({counts}); check that both sides have the same password")
    if status.config.password is None and grew.get("TCPMD5Unexpected"):
        return (f"TCP MD5: this node's kernel dropped signed segments from a peer it has no "
                f"password for ({counts}); the peer has a password set")
    return None


class SessionState(enum.Enum):
    IDLE = "Idle"
    CONNECT = "Connect"  # TCP up, OPEN exchange
    ESTABLISHED = "Established"


@dataclass
class PeerStatus:
    config: PeerConfig
    state: SessionState = SessionState.IDLE
    since: float = field(default_factory=time.time)
    last_error: str = ""
    open: codec.Open | None = None
    flaps: int = 0


@dataclass(frozen=True, slots=True)
class SessionUp:
    peer: Address
    open: codec.Open | None


@dataclass(frozen=True, slots=True)
class SessionDown:
    peer: Address
    reason: str


SpeakerEvent = SessionUp | SessionDown | codec.Update | codec.EndOfRib


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
        cooldown: float = 0.1,
        listen_sockets: Sequence[socket.socket] = (),
    ) -> None:
        self.workdir = workdir
        self.netns = netns
        self.exabgp = list(exabgp) if exabgp else [sys.executable, "-m", "bgpd.speaker.engine"]
        self.liveness_interval = liveness_interval
        self.liveness_timeout = liveness_timeout
        self.backoff_max = backoff_max
        self.listen_sockets = list(listen_sockets)  # bound early, handed to every ExaBGP
        self.events: asyncio.Queue[SpeakerEvent] = asyncio.Queue()
        self.pacer = Pacer(cooldown=cooldown)
        self.peers: dict[Address, PeerStatus] = {}
        self.restarts = 0
        self.malformed = 0
        self.healthy = False
        self.pid: int | None = None
        self._config: SpeakerConfig | None = None
        self._rendered: str | None = None
        self._applied: str | None = None  # the text ExaBGP has loaded
        self._wake = asyncio.Event()
        self._control: deque[str] = deque()
        self._acks: asyncio.Queue[bool] = asyncio.Queue()
        self._last_heard = time.monotonic()
        self._connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None
        self._connected = None
        self._configured = asyncio.Event()
        self._sending = False  # commands taken from the pacer are still going out
        self._md5_seen: dict[str, int] | None = None

    # --- the daemon's side ----------------------------------------------------------------
    @property
    def socket_path(self) -> Path:
        return self.workdir / "api.sock"

    @property
    def config_path(self) -> Path:
        return self.workdir / "exabgp.conf"

    def bridge_command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).with_name("bridge.py")), str(self.socket_path)]

    def configure(self, config: SpeakerConfig) -> None:
        """Use ``config`` from now on (reloading ExaBGP when it runs)."""
        text = render(config, bridge=self.bridge_command())
        old = {p.address: p for p in (self._config.peers if self._config else ())}
        new = {p.address: p for p in config.peers}
        for address in old.keys() - new.keys():
            self.pacer.forget(address)
            self.peers.pop(address, None)
        for address, peer in new.items():
            status = self.peers.get(address)
            if status is None:
                self.peers[address] = PeerStatus(peer)
            else:
                if old.get(address) != peer:
                    self.pacer.reset(address)  # ExaBGP rebuilds that neighbor
                status.config = peer
        self._config = config
        if text != self._rendered:
            self._rendered = text
            self._wake.set()
        self._configured.set()

    def advertise(self, peer: Address, prefix: Prefix, attrs: Attributes | None) -> None:
        """What ``peer`` should be told about ``prefix`` (None: nothing, withdraw)."""
        self.pacer.desire(peer, prefix, attrs)
        self._wake.set()

    def end_of_rib(self, peer: Address) -> None:
        self.pacer.request_eor(peer)
        self._wake.set()

    def teardown(self, peer: Address) -> None:
        self._control.append(codec.teardown_command(peer))
        self._wake.set()

    def withdraw_everything(self) -> None:
        """Withdraw every route ExaBGP announces, from every peer (decommission)."""
        for peer, wire in self.pacer.wire.items():
            for prefix in list(wire):
                self.pacer.desire(peer, prefix, None)
        self.pacer.eor_due.clear()
        self._wake.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every wanted change has been sent and acknowledged (True) or timeout."""
        deadline = time.monotonic() + timeout
        while not self.pacer.idle() or self._sending:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def wait_applied(self, timeout: float) -> bool:
        """Wait until ExaBGP has been told the current configuration (True) or timeout."""
        deadline = time.monotonic() + timeout
        while self._rendered != self._applied or self.pid is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def established(self) -> list[Address]:
        return [a for a, s in self.peers.items() if s.state is SessionState.ESTABLISHED]

    # --- supervision ---------------------------------------------------------------------
    async def run(self) -> None:
        """Run ExaBGP until cancelled, restarting it when it fails."""
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = await asyncio.start_unix_server(self._on_connection, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        delay = 1.0
        try:
            await self._configured.wait()
            while True:
                started = time.monotonic()
                try:
                    await self._run_once()
                except EngineFailure as exc:
                    log.error("exabgp_failed", error=str(exc), restart_in=delay)
                self.healthy = False
                self._sessions_lost("BGP engine restart")
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
        assert self._rendered is not None and self._config is not None
        self.config_path.write_text(self._rendered)
        os.chmod(self.config_path, 0o600)  # it may hold MD5 passwords
        self._applied = self._rendered
        env = {**os.environ, **environment(self._config)}
        binds = [str(a) for a in self._config.bind_addresses]
        inherit = listen.usable(self.listen_sockets, self._config.listen_port, binds)
        if env.get("BGPD_EXABGP_PLAIN") == "1":
            inherit = []  # ExaBGP as shipped binds its own
        for sock in set(self.listen_sockets) - set(inherit):  # another port or address:
            sock.close()  # connections must not wait in a backlog nobody serves
        self.listen_sockets = inherit
        env[listen.ENV] = listen.describe(inherit)
        argv = [*self.exabgp, "server", str(self.config_path)]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        return await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent, start_new_session=True,
            pass_fds=[sock.fileno() for sock in inherit],
        )

    async def _run_once(self) -> None:
        self._connected = asyncio.get_running_loop().create_future()
        self.pacer_reset_all()
        process = await self._spawn()
        self.pid = process.pid
        log.info("exabgp_started", pid=process.pid, peers=len(self.peers))
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pump_output(process), name="exabgp-log")
                tasks.create_task(self._watch_process(process), name="exabgp-exit")
                async with asyncio.timeout(30):
                    reader, writer = await self._connected
                self.healthy = True
                self._last_heard = time.monotonic()
                tasks.create_task(self._read(reader), name="exabgp-events")
                tasks.create_task(self._write(writer), name="exabgp-commands")
                tasks.create_task(self._liveness(), name="exabgp-liveness")
        except* EngineFailure as group:
            raise group.exceptions[0] from None
        except* TimeoutError:
            raise EngineFailure("the API process did not connect within 30 s") from None
        finally:
            await self._kill(process)

    def pacer_reset_all(self) -> None:
        for address in list(self.peers):
            self.pacer.reset(address)
        while not self._acks.empty():
            self._acks.get_nowait()

    async def _kill(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        self.pid = None

    async def _watch_process(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        raise EngineFailure(f"ExaBGP exited with status {code}")

    async def _pump_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            if text:
                log.info("exabgp", line=text[:500])

    async def _liveness(self) -> None:
        while True:
            await asyncio.sleep(self.liveness_interval / 2)
            self._check_md5()
            if time.monotonic() - self._last_heard >= self.liveness_interval and not self._control:
                self._control.append("version")
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
                self.malformed += 1
                continue
            self._last_heard = time.monotonic()
            self._dispatch(codec.decode(line.decode(errors="replace")))

    def _dispatch(self, event: codec.Event) -> None:
        if isinstance(event, codec.Ack):
            self._acks.put_nowait(event.ok)
        elif isinstance(event, codec.Malformed):
            self.malformed += 1
            log.warning("exabgp_line_malformed", problem=event.problem, line=event.line[:300])
        elif isinstance(event, codec.PeerState):
            self._on_state(event)
        elif isinstance(event, codec.Open):
            status = self.peers.get(event.peer)
            if status is not None:
                status.open = event
        elif isinstance(event, codec.Update | codec.EndOfRib):
            status = self.peers.get(event.peer)
            if status is None or status.state is not SessionState.ESTABLISHED:
                return
            self.events.put_nowait(event)
        elif isinstance(event, codec.Notification):
            status = self.peers.get(event.peer) if event.peer else None
            if status is not None:
                status.last_error = f"notification: {event.text}"

    def _on_state(self, event: codec.PeerState) -> None:
        status = self.peers.get(event.peer)
        if status is None:
            return
        if event.state == "up":
            status.state, status.since = SessionState.ESTABLISHED, time.time()
            status.last_error = ""
            log.info("peer_up", peer=str(event.peer), name=status.config.name)
            self.events.put_nowait(SessionUp(event.peer, status.open))
        elif event.state == "down":
            was_up = status.state is SessionState.ESTABLISHED
            status.state, status.since = SessionState.IDLE, time.time()
            status.last_error = event.reason
            if was_up:
                status.flaps += 1
                log.warning("peer_down", peer=str(event.peer), name=status.config.name,
                            reason=event.reason)
                self.events.put_nowait(SessionDown(event.peer, event.reason))
        elif event.state == "connected":
            status.state = SessionState.CONNECT

    def _check_md5(self) -> None:
        """ExaBGP's namespace is the sessions' (``/proc/<pid>/net`` is per namespace)."""
        try:
            now = md5_drops(Path(f"/proc/{self.pid}/net/netstat").read_text())
        except OSError:
            return
        before, self._md5_seen = self._md5_seen, now
        grew = {k: now[k] - before[k] for k in now if before and now[k] > before[k]}
        if not grew:
            return
        for status in self.peers.values():
            if status.state is not SessionState.ESTABLISHED:
                hint = md5_hint(status, grew)
                if hint is None:
                    continue
                if not status.last_error.startswith("TCP MD5"):
                    log.warning("peer_md5_drops", peer=str(status.config.address),
                                name=status.config.name, problem=hint)
                status.last_error = hint

    def _sessions_lost(self, reason: str) -> None:
        for address, status in self.peers.items():
            if status.state is SessionState.ESTABLISHED:
                self.events.put_nowait(SessionDown(address, reason))
            status.state, status.last_error = SessionState.IDLE, reason

    async def _write(self, writer: asyncio.StreamWriter) -> None:
        queue: deque[str] = deque()
        retry_at: float | None = None
        while True:
            if not queue and not self._control:
                timeout = None if retry_at is None else max(0.0, retry_at - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):  # (not wait_for: see kernel_sync)
                        await self._wake.wait()
                self._wake.clear()
            if self._rendered != self._applied:
                await self._reload(writer)
            while self._control:
                await self._send(writer, self._control.popleft())
            commands, retry_at = self.pacer.take(time.monotonic())
            queue.extend(commands)
            self._sending = bool(queue)
            while queue:
                await self._send(writer, queue.popleft())
                if self._control or self._rendered != self._applied:
                    break
            self._sending = bool(queue)

    async def _reload(self, writer: asyncio.StreamWriter) -> None:
        assert self._rendered is not None
        self.config_path.write_text(self._rendered)
        self._applied = self._rendered
        await self._send(writer, "reload")
        log.info("exabgp_reloaded", peers=len(self.peers))

    async def _send(self, writer: asyncio.StreamWriter, command: str) -> None:
        log.debug("exabgp_command", command=command[:200])
        writer.write(command.encode() + b"\n")
        await writer.drain()
        try:
            async with asyncio.timeout(self.liveness_timeout):
                ok = await self._acks.get()
        except TimeoutError:
            raise EngineFailure(f"no answer to {command.split(' nlri ')[0][:80]!r} within "
                                f"{self.liveness_timeout} s") from None
        if not ok:
            log.error("exabgp_command_refused", command=command[:300])

