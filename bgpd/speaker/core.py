"""The speaker's core (sans-IO): session states, the command channel and its bookkeeping.

Theory of operation (as h11 keeps a protocol's state apart from its sockets): the supervisor
(:mod:`bgpd.speaker.supervisor`) runs the ExaBGP process and moves bytes; everything it
knows about ExaBGP lives here, owned by one object and changed by a few calls —

* **sessions**: each configured neighbour's state (Idle → Connect → Established and back),
  since when, the last error, its OPEN, its flaps.  Transitions are one table
  (:data:`TRANSITIONS`); an ExaBGP state this table does not allow is counted and ignored.
  The daemon learns sessions from the core's events (:class:`SessionUp`,
  :class:`SessionDown`) and keeps no copy.
* **the channel**: :meth:`SpeakerCore.next_command` says what to send next — a reload of a
  new configuration first, then control commands (teardown, liveness), then route batches
  from the :class:`~bgpd.speaker.pacing.Pacer`; :meth:`SpeakerCore.acknowledged` settles
  the oldest command in flight.  A reload or a control command is alone in flight (ExaBGP
  answers those at once, ahead of queued work); route commands are pipelined, up to
  ``window`` of them: ExaBGP queues each and answers them in the order they came, so the
  next one is on its way while ExaBGP applies the last — a command per round trip through
  the bridge was the reflector's limit.  Should a pipelined command be refused, every route
  command then in flight is treated as refused (retried), as the answer's owner cannot be
  told apart with certainty.
* **the rule for a refusal**: a refused route command changed nothing in ExaBGP — its
  changes go back to the pacer and are retried after ``retry`` seconds (never recorded as on
  the wire); a refused configuration is not applied — ExaBGP keeps the one it runs, the
  core records the refusal (it shows in ``bgpd status``) and does not send the same text
  again, and a restarted ExaBGP is started on the last configuration it accepted.
  Refusals are counted.
* **engine restart**: :meth:`SpeakerCore.engine_lost` reports every session that was up as
  down and makes the pacer forget what ExaBGP held; :meth:`SpeakerCore.engine_started` takes
  the configuration the new process loaded.

Time comes in as ``now`` (monotonic) or ``wall`` (for the ``since`` shown to people).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from bgpd.speaker import codec
from bgpd.speaker.config import Neighbor, SpeakerConfig
from bgpd.speaker.pacing import COOLDOWN, Batch, Pacer
from ribs.types import Address, Attributes, Prefix


class SessionState(enum.Enum):
    IDLE = "Idle"
    CONNECT = "Connect"  # TCP up, OPEN exchange
    ESTABLISHED = "Established"


# ExaBGP's neighbour-changes → the next state, from each state (absent: not allowed)
TRANSITIONS: dict[tuple[SessionState, str], SessionState] = {
    (SessionState.IDLE, "connected"): SessionState.CONNECT,
    (SessionState.IDLE, "up"): SessionState.ESTABLISHED,  # a fast OPEN exchange
    (SessionState.IDLE, "down"): SessionState.IDLE,
    (SessionState.CONNECT, "connected"): SessionState.CONNECT,
    (SessionState.CONNECT, "up"): SessionState.ESTABLISHED,
    (SessionState.CONNECT, "down"): SessionState.IDLE,
    (SessionState.ESTABLISHED, "down"): SessionState.IDLE,
}


@dataclass
class PeerSession:
    neighbor: Neighbor
    state: SessionState = SessionState.IDLE
    since: float = 0.0  # wall clock
    last_error: str = ""
    open: codec.Open | None = None
    flaps: int = 0
    notified: bool = False  # a NOTIFICATION went either way: the session is ending by it


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as status, metrics and the BIRD socket see it: a copy, frozen (the
    core's :class:`PeerSession` changes under them)."""

    neighbor: Neighbor
    state: SessionState
    since: float
    last_error: str
    open: codec.Open | None
    flaps: int
    advertised: int  # the routes ExaBGP holds for the peer


@dataclass(frozen=True, slots=True)
class SessionUp:
    peer: Address
    open: codec.Open | None


@dataclass(frozen=True, slots=True)
class SessionDown:
    peer: Address
    reason: str
    # ended by a NOTIFICATION (sent or received): RFC 4724 keeps no routes then (without the
    # N bit of RFC 8538, which ExaBGP neither sends nor reads)
    notification: bool = False


SpeakerEvent = SessionUp | SessionDown | codec.Update | codec.EndOfRib


class CommandKind(enum.Enum):
    RELOAD = "reload"
    CONTROL = "control"
    ROUTES = "routes"


@dataclass(frozen=True, slots=True)
class Command:
    kind: CommandKind
    text: str
    config: str | None = None  # RELOAD: the configuration file to write first
    batch: Batch | None = None  # ROUTES: what it changes


@dataclass
class CoreStats:
    refused_commands: int = 0
    refused_reloads: int = 0
    unexpected_states: int = 0
    stray_acks: int = 0
    malformed: int = 0
    refreshes_received: int = 0  # ROUTE-REFRESH from peers (ExaBGP answers them)


@dataclass
class SpeakerCore:
    cooldown: float = COOLDOWN
    retry: float = 10.0
    peers: dict[Address, PeerSession] = field(default_factory=dict)
    config: SpeakerConfig | None = None
    rendered: str | None = None  # the configuration wanted
    applied: str | None = None  # the configuration ExaBGP runs
    refused: str | None = None  # a configuration ExaBGP refused (not sent again)
    refusal: str = ""  # why, for status
    window: int = 32  # route commands in flight at most
    in_flight: deque[Command] = field(default_factory=deque)
    stats: CoreStats = field(default_factory=CoreStats)
    pacer: Pacer = field(init=False)
    _control: deque[str] = field(default_factory=deque)
    _queue: deque[Batch] = field(default_factory=deque)
    _retry_at: float | None = None

    def __post_init__(self) -> None:
        self.pacer = Pacer(cooldown=self.cooldown, retry=self.retry)

    def engine_units(self, left_out: Mapping[str, str]) -> None:
        """The launcher's units left out of the ExaBGP now running (its report): with the
        ``queued_changes`` unit, ExaBGP's outgoing RIB queues one change per prefix, the
        newest, so the pacer sends a prefix's next change as soon as there is one; without
        it (or before a report), the pacer waits ``cooldown`` after ExaBGP took the last —
        longer than the launcher puts a peer's turn to write off."""
        self.pacer.cooldown = self.cooldown if "queued_changes" in left_out else 0.0

    # --- what the daemon wants -------------------------------------------------------------
    def configure(self, config: SpeakerConfig, text: str, *, wall: float) -> None:
        """Use ``config`` (rendered as ``text``) from now on."""
        old = {n.address: n for n in (self.config.neighbors if self.config else ())}
        new = {n.address: n for n in config.neighbors}
        for address in old.keys() - new.keys():
            self.pacer.forget(address)
            self.peers.pop(address, None)
        for address, neighbor in new.items():
            session = self.peers.get(address)
            if session is None:
                self.peers[address] = PeerSession(neighbor, since=wall)
                continue
            if old.get(address) != neighbor:
                self.pacer.reset(address)  # ExaBGP rebuilds that neighbor
            session.neighbor = neighbor
        self.config, self.rendered = config, text

    def advertise(self, peer: Address, prefix: Prefix, attrs: Attributes | None) -> None:
        """A change for ``peer``; none for a peer not configured (removed in the turn that
        made the change: ExaBGP would refuse a command naming it, for ever)."""
        if peer in self.peers:
            self.pacer.desire(peer, prefix, attrs)

    def end_of_rib(self, peer: Address) -> None:
        if peer in self.peers:
            self.pacer.request_eor(peer)

    def control(self, command: str) -> None:
        if command not in self._control:
            self._control.append(command)

    def withdraw_everything(self) -> None:
        """Withdraw what every peer holds of ours, then End-of-RIB to each session up: a
        graceful-restart peer still keeping routes of an earlier session of ours sweeps them
        at that End-of-RIB, not at its stale timer."""
        for peer, wire in self.pacer.wire.items():
            for prefix in list(wire):
                self.pacer.desire(peer, prefix, None)
        self.pacer.eor_due = set(self.established())

    # --- the channel -----------------------------------------------------------------------
    def next_command(self, now: float) -> Command | None:
        """The command to send now (it is then in flight), or None: nothing to do before
        :meth:`wake_at` or a new input."""
        if len(self.in_flight) >= self.window or (
                self.in_flight and self.in_flight[-1].kind is not CommandKind.ROUTES):
            return None
        command = self._next(now, alone=not self.in_flight)
        if command is not None:
            self.in_flight.append(command)
        return command

    def _next(self, now: float, *, alone: bool) -> Command | None:
        if self.rendered is not None and self.rendered not in (self.applied, self.refused):
            return Command(CommandKind.RELOAD, "reload", config=self.rendered) if alone else None
        if self._control:
            return Command(CommandKind.CONTROL, self._control.popleft()) if alone else None
        if not self._queue:
            batches, self._retry_at = self.pacer.take(now)
            self._queue.extend(batches)
        if self._queue:
            batch = self._queue.popleft()
            return Command(CommandKind.ROUTES, batch.text, batch=batch)
        return None

    def reload_failed(self, reason: str) -> None:
        """ExaBGP said, after answering ``done``, that it could not load the configuration
        (it reloads after it answers): counted and shown; the supervisor starts ExaBGP again
        on the wanted configuration, which a fresh start reads whole."""
        self.stats.refused_reloads += 1
        self.refusal = f"ExaBGP could not reload its configuration ({reason}): started again"

    def wake_at(self) -> float | None:
        """When changes held back by the pacer are due (monotonic), if any."""
        return self._retry_at

    def acknowledged(self, ok: bool, now: float) -> Command | None:
        """ExaBGP answered the command in flight; the refused command is returned."""
        if not self.in_flight:
            self.stats.stray_acks += 1
            return None
        command = self.in_flight.popleft()
        if command.kind is CommandKind.RELOAD:
            if ok:
                self.applied, self.refused, self.refusal = command.config, None, ""
            else:
                self.refused = command.config
                self.refusal = "ExaBGP refused the new configuration; it runs the previous one"
                self.stats.refused_reloads += 1
        elif ok:
            if command.batch is not None:
                self.pacer.acknowledged(command.batch, now)
        else:
            self.stats.refused_commands += 1
            for refused in (command, *self.in_flight):
                if refused.batch is not None:
                    self.pacer.refused(refused.batch, now)
                    self._retry_at = min(filter(None, (self._retry_at, now + self.retry)))
            # the others stay in flight, to take their answers, but change nothing any more
            self.in_flight = deque(replace(c, batch=None) for c in self.in_flight)
        return None if ok else command

    def busy(self) -> bool:
        """Route changes wanted or on their way."""
        return not self.pacer.idle() or bool(self._queue) or (
            any(c.kind is CommandKind.ROUTES for c in self.in_flight))

    def configured(self) -> bool:
        """ExaBGP runs the configuration wanted (or refused it)."""
        return self.rendered is not None and self.rendered in (self.applied, self.refused)

    # --- ExaBGP's side ---------------------------------------------------------------------
    def receive(self, event: codec.Event, *, wall: float) -> list[SpeakerEvent]:
        """One decoded line from ExaBGP (not an Ack: the shell settles those)."""
        if isinstance(event, codec.Malformed):
            self.stats.malformed += 1
        elif isinstance(event, codec.PeerState):
            return self._on_state(event, wall)
        elif isinstance(event, codec.Open):
            session = self.peers.get(event.peer)
            if session is not None:
                session.open = event
        elif isinstance(event, codec.Update | codec.EndOfRib):
            session = self.peers.get(event.peer)
            if session is not None and session.state is SessionState.ESTABLISHED:
                return [event]
        elif isinstance(event, codec.Refresh):
            self.stats.refreshes_received += 1
        elif isinstance(event, codec.Notification):
            session = self.peers.get(event.peer) if event.peer else None
            if session is not None:
                session.last_error = f"notification: {event.text}"
                session.notified = True
        return []

    def _on_state(self, event: codec.PeerState, wall: float) -> list[SpeakerEvent]:
        session = self.peers.get(event.peer)
        if session is None:
            return []
        after = TRANSITIONS.get((session.state, event.state))
        if after is None:
            self.stats.unexpected_states += 1
            return []
        before, session.state = session.state, after
        if after is not before:
            session.since = wall
        out: list[SpeakerEvent] = []
        if before is SessionState.ESTABLISHED and after is not SessionState.ESTABLISHED:
            session.flaps += 1
            out.append(SessionDown(event.peer, event.reason or event.state,
                                   notification=session.notified))
        if after is not before:
            session.notified = False  # (a NOTIFICATION belongs to the session it ends)
        if after is SessionState.ESTABLISHED and before is not SessionState.ESTABLISHED:
            session.last_error = ""
            out.append(SessionUp(event.peer, session.open))
        if event.state == "down":
            session.last_error = event.reason
        return out

    def hint(self, peer: Address, why: str) -> bool:
        """Why ``peer`` has no session, from outside ExaBGP (the kernel's MD5 drop
        counters): its last error until the session comes up.  False for a peer that is
        not configured or is established."""
        session = self.peers.get(peer)
        if session is None or session.state is SessionState.ESTABLISHED:
            return False
        session.last_error = why
        return True

    def engine_lost(self, reason: str, *, wall: float) -> list[SpeakerEvent]:
        """ExaBGP is gone: every session is down, nothing it held is on the wire."""
        out: list[SpeakerEvent] = []
        for address, session in self.peers.items():
            if session.state is SessionState.ESTABLISHED:
                out.append(SessionDown(address, reason))
                session.since = wall
            session.state, session.last_error = SessionState.IDLE, reason
        self.in_flight.clear()
        self._queue.clear()
        self._control.clear()
        for address in list(self.peers):
            self.pacer.reset(address)
        return out

    def engine_started(self) -> str:
        """The configuration to start a new ExaBGP with (the wanted one, or the last one
        ExaBGP accepted when it refused the wanted one); it counts as applied."""
        assert self.rendered is not None
        text = self.applied if self.rendered == self.refused and self.applied else self.rendered
        self.applied = text
        return text

    def established(self) -> list[Address]:
        return [a for a, s in self.peers.items() if s.state is SessionState.ESTABLISHED]

    def sessions(self) -> Mapping[Address, SessionView]:
        """Every configured session, frozen as it is now."""
        return MappingProxyType({a: SessionView(s.neighbor, s.state, s.since, s.last_error,
                                                s.open, s.flaps, self.pacer.advertised(a))
                                 for a, s in self.peers.items()})

    def counters(self) -> CoreStats:
        """The counters as they are now (a copy)."""
        return replace(self.stats)
