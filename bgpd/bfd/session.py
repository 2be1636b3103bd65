"""One BFD session (RFC 5880 asynchronous mode), sans-IO.

Theory of operation: a :class:`Session` is fed received Control packets
(:meth:`Session.receive`) and the passing of time (:meth:`Session.tick`); each call returns a
:class:`Step` — the packets to send now and, when it changed, what the session tells its
client (BGP).  :meth:`Session.next_deadline` says when ``tick`` is next due.  No clock is read
and no socket is touched: the service (:mod:`bgpd.bfd.service`) owns both.

* **States** move by one table, :data:`TRANSITIONS` (§6.8.6): (local state, received state)
  → next state.  The detection timer expiring takes Init or Up to Down with diagnostic 1.
* **Timers** (§6.8.2 to 6.8.4): the transmit interval is the larger of our Desired Min TX
  and the peer's Required Min RX, less 0 to 25 % jitter (10 to 25 % with a multiplier of
  1; the top of the range lowered by ``slack``, how late the caller may run ``tick``);
  while the session is not Up, Desired Min TX is at least one second (§6.8.3).  The
  detection time is the peer's multiplier times the larger of our Required Min RX and the
  peer's Desired Min TX.
* **Poll sequence** (§6.5, §6.8.3): a change of our advertised timers while Up sends Poll
  until the peer answers Final; until then a larger transmit interval and a smaller receive
  interval are not used.  A received Poll is answered at once with Final.
* **What BGP is told** (:class:`Signal`): UP once the session is Up (and not held by
  damping), DOWN when it leaves Up — with ``admin`` set when the peer said AdminDown, which
  RFC 5882 §3.2 says is not a path failure.  **Damping**: a session that fails
  ``DAMP_AFTER`` times within ``DAMP_WINDOW`` seconds is held: its next UP is told only after
  a hold that doubles with each further failure, up to ``DAMP_MAX``.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from bgpd.bfd.packet import Control, Diag, State
from ribs.types import Address

MICRO = 1_000_000
IDLE_MIN = 1.0  # §6.8.3: Desired Min TX while not Up
DAMP_AFTER = 3  # failures within DAMP_WINDOW before a session is held
DAMP_WINDOW = 60.0
DAMP_FIRST = 5.0  # the first hold; doubles with each further failure in the window
DAMP_MAX = 300.0

# (local state, state the peer sent) -> next local state; absent: no change (§6.8.6)
TRANSITIONS: dict[tuple[State, State], State] = {
    (State.DOWN, State.DOWN): State.INIT,
    (State.DOWN, State.INIT): State.UP,
    (State.INIT, State.INIT): State.UP,
    (State.INIT, State.UP): State.UP,
    (State.INIT, State.ADMIN_DOWN): State.DOWN,
    (State.UP, State.DOWN): State.DOWN,
    (State.UP, State.ADMIN_DOWN): State.DOWN,
}


@dataclass(frozen=True, slots=True)
class Timers:
    """A session's configured timers, in seconds (BFDConfiguration's interface entry)."""
    min_tx: float = 0.1
    min_rx: float = 0.01
    idle_tx: float = 60.0
    multiplier: int = 5


class SignalKind(enum.Enum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Signal:
    """What the session tells BGP: forwarding to the peer works (UP) or failed (DOWN)."""
    peer: Address
    kind: SignalKind
    diag: Diag = Diag.NONE
    admin: bool = False  # the peer said AdminDown: not a failure (RFC 5882 §3.2)


class Step(NamedTuple):  # (made for every packet and tick: a tuple is the cheapest value)
    send: tuple[Control, ...] = ()
    signal: Signal | None = None
    transition: tuple[State, State, Diag] | None = None  # (from, to, diagnostic)


NOTHING = Step()


@dataclass
class Counters:
    received: int = 0
    sent: int = 0
    transitions: int = 0
    detections: int = 0  # detection time expired
    failures: int = 0  # left Up other than by AdminDown
    damped: int = 0  # times an UP was held back
    latest: float = 0.0  # the most a periodic packet went out after its time (seconds)


@dataclass
class Session:
    peer: Address
    local: Address
    discriminator: int
    timers: Timers
    now: float
    jitter: Callable[[], float] = random.random
    slack: float = 0.0  # how late (seconds) the caller may run ``tick``: taken off the interval
    state: State = State.DOWN
    diag: Diag = Diag.NONE
    remote_state: State = State.DOWN
    remote_discriminator: int = 0
    remote_min_rx: int = 1  # µs (§6.8.1: initialised to 1)
    remote_min_tx: int = 0  # µs, the peer's Desired Min TX
    remote_mult: int = 0
    remote_cpi: bool = False  # the peer's C bit
    remote_demand: bool = False
    since: float = 0.0  # when ``state`` was entered (the ``now`` of the call)
    counters: Counters = field(default_factory=Counters)
    polling: bool = False
    _tx_used: int = 0  # Desired Min TX in effect (µs): differs from advertised during a poll
    _rx_used: int = 0  # Required Min RX in effect (µs)
    _next_tx: float = 0.0
    _detect_at: float | None = None
    _failures: list[float] = field(default_factory=list)
    _held_until: float = 0.0
    _told_up: bool = False
    _up_pending: bool = False
    _last_key: tuple[object, ...] = ()
    _last: Control | None = None

    def __post_init__(self) -> None:
        self._tx_used, self._rx_used = self.advertised_tx(), self.advertised_rx()
        self._next_tx = self.now  # the first packet goes out at once
        self.since = self.now

    # --- what we advertise ------------------------------------------------------------------
    def advertised_tx(self) -> int:
        if self.state is State.UP:
            return round(self.timers.min_tx * MICRO)
        return round(max(self.timers.idle_tx, IDLE_MIN) * MICRO)

    def advertised_rx(self) -> int:
        return round(self.timers.min_rx * MICRO)

    def tx_interval(self) -> float:
        """The agreed transmit interval, before jitter (seconds)."""
        return max(self._tx_used, self.remote_min_rx) / MICRO

    def detection_time(self) -> float:
        return self.remote_mult * max(self._rx_used, self.remote_min_tx) / MICRO

    def held_for(self, now: float) -> float:
        return max(0.0, self._held_until - now)

    def packet(self, *, final: bool = False) -> Control:
        """The packet to send now (the same value as the last while nothing it says
        changed: a periodic packet is made once per change, not once per period)."""
        key = (self.state, self.diag, self.remote_discriminator, self.polling, self.timers)
        if not final and key == self._last_key and self._last is not None:
            return self._last
        pkt = Control(state=self.state, diag=self.diag, my_discriminator=self.discriminator,
                      your_discriminator=self.remote_discriminator,
                      desired_min_tx=self.advertised_tx(), required_min_rx=self.advertised_rx(),
                      detect_mult=self.timers.multiplier,
                      poll=self.polling and not final, final=final)
        if not final:
            self._last_key, self._last = key, pkt
        return pkt

    # --- inputs -----------------------------------------------------------------------------
    def receive(self, pkt: Control, now: float) -> Step:
        """A packet already matched to this session (the service checked TTL, source and
        discriminators)."""
        self.counters.received += 1
        interval = self.tx_interval()
        self.remote_discriminator = pkt.my_discriminator
        self.remote_state = pkt.state
        self.remote_demand = pkt.demand
        self.remote_min_rx = pkt.required_min_rx
        self.remote_min_tx = pkt.desired_min_tx
        self.remote_mult = pkt.detect_mult
        self.remote_cpi = pkt.control_plane_independent
        if pkt.final and self.polling:
            self.polling = False
            self._tx_used, self._rx_used = self.advertised_tx(), self.advertised_rx()
            self._poll_if_changed()
        self._detect_at = now + self.detection_time()
        if self.tx_interval() < interval:  # the peer now takes packets sooner (FRR's Init
            self._next_tx = min(self._next_tx, now + self.tx_interval())  # asks for 1 s)
        if self.state is State.ADMIN_DOWN:
            return NOTHING
        step = NOTHING
        after = TRANSITIONS.get((self.state, pkt.state))
        if after is not None and after is not self.state:
            diag = Diag.NEIGHBOR_DOWN if after is State.DOWN else Diag.NONE
            step = self._move(after, diag, now, admin=pkt.state is State.ADMIN_DOWN)
        if pkt.poll:
            step = Step(send=(*step.send, self.packet(final=True)), signal=step.signal,
                        transition=step.transition)
            self.counters.sent += 1
        return step

    def heard(self, now: float) -> None:
        """A packet received the same, byte for byte, as the last one :meth:`receive` took,
        which said Up with neither Poll nor Final, while the session is Up: all that
        :meth:`receive` would do with it is count it and restart the detection timer, so
        that is all this does (the caller's fast path for the steady state)."""
        self.counters.received += 1
        self._detect_at = now + self.detection_time()

    def tick(self, now: float) -> Step:
        step = NOTHING
        if self._detect_at is not None and now >= self._detect_at:
            self._detect_at = None
            self.remote_discriminator = 0  # §6.8.1
            if self.state in (State.INIT, State.UP):
                self.counters.detections += 1
                step = self._move(State.DOWN, Diag.DETECTION_TIME_EXPIRED, now)
        if self._up_pending and now >= self._held_until and self.state is State.UP:
            step = Step(send=step.send, signal=self._tell_up(), transition=step.transition)
        if now >= self._next_tx and not step.send:
            if self._periodic():
                self.counters.sent += 1
                self.counters.latest = max(self.counters.latest, now - self._next_tx)
                step = Step(send=(self.packet(),), signal=step.signal,
                            transition=step.transition)
            self._schedule(now)
        return step

    def reconfigure(self, timers: Timers) -> None:
        """New timers from the configuration: a poll sequence carries them while Up."""
        if timers != self.timers:
            self.timers = timers
            self._poll_if_changed()
            if self.state is not State.UP:
                self._tx_used, self._rx_used = self.advertised_tx(), self.advertised_rx()

    def admin_down(self, now: float) -> Control:
        """The session is being removed or the daemon stops: the packet that says so, so the
        peer does not take it for a failure (RFC 5882 §3.2)."""
        self.state, self.diag, self.since = State.ADMIN_DOWN, Diag.ADMIN_DOWN, now
        self.polling = False
        return self.packet()

    def next_deadline(self) -> float:
        deadline = self._next_tx
        if self._detect_at is not None and self._detect_at < deadline:
            deadline = self._detect_at
        if self._up_pending and self._held_until < deadline:
            deadline = self._held_until
        return deadline

    # --- internals ----------------------------------------------------------------------------
    def _periodic(self) -> bool:
        if self.state is State.ADMIN_DOWN or self.remote_min_rx == 0:
            return False  # §6.8.7: never periodically while the peer asks for none
        return not (self.remote_demand and self.state is State.UP
                    and self.remote_state is State.UP)

    def _schedule(self, now: float) -> None:
        # the interval less 0-25 % (§6.8.7), and less ``slack`` from the top so that a tick
        # run late still sends within the interval
        interval = self.tx_interval()
        top = (0.9 if self.timers.multiplier == 1 else 1.0) - self.slack / interval
        self._next_tx = now + interval * (0.75 + max(0.0, top - 0.75) * self.jitter())

    def _poll_if_changed(self) -> None:
        if (self.state is State.UP and not self.polling
                and (self._tx_used, self._rx_used) != (self.advertised_tx(),
                                                       self.advertised_rx())):
            self.polling = True
            new_tx, new_rx = self.advertised_tx(), self.advertised_rx()
            # until Final: a slower transmit and a faster receive are not yet in force
            self._tx_used, self._rx_used = min(self._tx_used, new_tx), max(self._rx_used, new_rx)

    def _move(self, after: State, diag: Diag, now: float, *, admin: bool = False) -> Step:
        before = self.state
        self.state, self.diag, self.since = after, diag, now
        self.counters.transitions += 1
        signal = None
        if after is State.UP:
            self._poll_if_changed()
            if now < self._held_until:
                self._up_pending = True
                self.counters.damped += 1
            else:
                signal = self._tell_up()
        elif before is State.UP or self._told_up or self._up_pending:
            if before is State.UP and not admin:
                self.counters.failures += 1
                self._damp(now)
            self.polling = False
            self._up_pending = False
            if self._told_up:
                self._told_up = False
                signal = Signal(self.peer, SignalKind.DOWN, diag=diag, admin=admin)
        if after is State.DOWN:
            self._tx_used, self._rx_used = self.advertised_tx(), self.advertised_rx()
        self.counters.sent += 1
        self._schedule(now)  # a state change is sent at once, the next one a period later
        return Step(send=(self.packet(),), signal=signal, transition=(before, after, diag))

    def _tell_up(self) -> Signal:
        self._up_pending, self._told_up = False, True
        return Signal(self.peer, SignalKind.UP)

    def _damp(self, now: float) -> None:
        self._failures = [t for t in self._failures if now - t < DAMP_WINDOW] + [now]
        extra = len(self._failures) - DAMP_AFTER
        if extra >= 0:
            self._held_until = now + min(DAMP_FIRST * 2 ** extra, DAMP_MAX)
