"""The RIB: policy, table, graceful restart, export and FIB plan joined — one owner, values out.

Theory of operation: the daemon's RIB task owns one :class:`Rib` and feeds it events (peer up
or down, routes received or withdrawn, End-of-RIB, the node's own prefixes, configuration
changes, the passage of time).  Every call returns a :class:`Delta` of values: Loc-RIB
changes, per-peer Adj-RIB-Out changes, rejections, alarms, and whether the kernel's desired
routes changed (read them with :meth:`Rib.fib_routes`).  Time comes in as ``now``;
:meth:`Rib.next_deadline` says when to call :meth:`Rib.tick` next.

Received routes are kept before policy too (per source), so a configuration change — a pool
added, a filter edited — re-evaluates them without asking the peer to send them again.

Graceful restart (RFC 4724), helper side: a peer that negotiated it goes down → its routes
are marked stale and keep forwarding; when it is back its End-of-RIB sweeps what it did not
send again; if its restart time runs out first, or it comes back without preserved
forwarding state, its stale routes go at once.  A peer without graceful restart loses its
routes immediately.

Restarting side (our own restart): the routes found in the kernel at start are *adopted* and
stay installed until every expected peer has sent End-of-RIB — but a peer that is not up
within ``establish_grace`` does not hold the sweep, a peer that is itself restarting (its
OPEN's R bit: it may wait for all of its own peers, some perhaps down, before it sends its
End-of-RIB) holds it for ``peer_grace`` at most, and nothing holds it past ``deadline``.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

from ribs.bestpath import Best, Step
from ribs.context import NodeContext
from ribs.export import Advert, ExportPeer, advert_for, split_horizon
from ribs.fib import kernel_route
from ribs.kernel_plan import KernelRoute
from ribs.policy import NO_LLGR, Reason, exportable, import_route
from ribs.table import Change, Table
from ribs.types import (
    LOCAL,
    RETAINED,
    Address,
    Attributes,
    Prefix,
    Route,
    Source,
    SourceKey,
    prefix_bits,
)

RouteId = tuple[Prefix, SourceKey, int]


class PeerState(enum.Enum):
    DOWN = "down"
    UP = "up"
    STALE = "stale"  # down, its routes kept for graceful restart
    UP_STALE = "up_stale"  # back, waiting for its End-of-RIB


@dataclass(frozen=True, slots=True)
class Session:
    """What a session negotiated, as the RIB needs it (from the OPEN messages)."""

    source: Source
    graceful_restart: bool = False  # both sides announced the capability
    restart_time: float = 120.0  # the peer's advertised restart time
    peer_restarting: bool = False  # the peer's R bit
    forwarding_preserved: bool = True  # the peer's F bit for the family


@dataclass(frozen=True, slots=True)
class AdvertChange:
    peer: SourceKey
    prefix: Prefix
    advert: Advert | None  # None: withdraw
    address: Address  # the peer's


@dataclass
class Delta:
    changes: list[Change] = field(default_factory=list)
    adverts: list[AdvertChange] = field(default_factory=list)
    rejected: list[tuple[Route, Reason]] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    synced_peers: list[SourceKey] = field(default_factory=list)  # full table sent: send EOR
    teardowns: list[SourceKey] = field(default_factory=list)  # over their limit: close
    # graceful restart timed out: (peer, how many stale routes it removed)
    expired: list[tuple[SourceKey, int]] = field(default_factory=list)
    retained: list[Prefix] = field(default_factory=list)  # kept on the datastore's word
    unretained: list[tuple[Prefix, str]] = field(default_factory=list)  # and let go: why
    fib_changed: bool = False

    def merge(self, other: Delta) -> Delta:
        """Add ``other`` to this delta (the caller batching several calls into one)."""
        self.changes += other.changes
        self.adverts += other.adverts
        self.rejected += other.rejected
        self.alarms += other.alarms
        self.synced_peers += other.synced_peers
        self.teardowns += other.teardowns
        self.expired += other.expired
        self.retained += other.retained
        self.unretained += other.unretained
        self.fib_changed |= other.fib_changed
        return self


@dataclass
class _Peer:
    config: ExportPeer
    state: PeerState = PeerState.DOWN
    session: Session | None = None
    deadline: float | None = None  # when its stale routes go
    refused: int = 0  # routes refused by its max-prefix limit
    synced: bool = False  # its End-of-RIB received since its session came up


@dataclass
class _Restart:
    """Our own restart: adopted kernel routes held until the peers have resynced."""

    adopted: dict[Prefix, KernelRoute]
    waiting: set[SourceKey]
    grace_until: float
    deadline: float
    peer_grace: float  # how long a peer that is itself restarting is waited for
    restarting_until: dict[SourceKey, float] = field(default_factory=dict)
    # peers up again whose End-of-RIB waits for the end of our restart (RFC 4724 4.1: the
    # restarting speaker selects routes, sends them, then End-of-RIB — a peer sweeping our
    # stale routes at an early End-of-RIB would delete what we had not heard yet)
    eor_pending: set[SourceKey] = field(default_factory=set)


class Rib:
    def __init__(
        self, ctx: NodeContext, *, multipath_after: Step | None = Step.EBGP,
        stale_time: float = 120.0,
    ) -> None:
        self.ctx = ctx
        self.table = Table(multipath_after=multipath_after)
        self.stale_time = stale_time
        self.peers: dict[SourceKey, _Peer] = {}
        self.received: dict[SourceKey, dict[tuple[Prefix, int], Route]] = {}
        self.rejected: dict[RouteId, Reason] = {}
        self.rejections: Counter[tuple[str, str]] = Counter()
        self.out: dict[SourceKey, dict[Prefix, Advert]] = {}
        self._fib: dict[Prefix, KernelRoute] = {}
        self._local: set[Prefix] = set()
        self._restart: _Restart | None = None
        # another node's block past its peer's graceful restart: when the retention ends,
        # and the node address it goes to
        self.retained: dict[Prefix, tuple[float, Address]] = {}
        # the peers with a session up, kept as their states change: (iBGP, eBGP)
        self._up: tuple[dict[SourceKey, ExportPeer], dict[SourceKey, ExportPeer]] = ({}, {})
        # per prefix, its best route and the adverts made of it, one per class of peers
        # (update groups: every client of a reflector holds the same Advert object)
        self._shared: dict[Prefix, tuple[Best, dict[tuple[object, ...], Advert]]] = {}

    # Public methods each return one Delta; the private ones add to the Delta they are given.

    # --- configuration -------------------------------------------------------------------
    def set_peers(self, peers: Iterable[ExportPeer]) -> Delta:
        """The configured peers; removed ones lose their routes, changed ones are re-evaluated."""
        wanted = {p.key: p for p in peers}
        delta = Delta()
        for key in [k for k in self.peers if k not in wanted]:
            self._forget_peer(key, delta)
        for key, config in wanted.items():
            peer = self.peers.get(key)
            if peer is None:
                self.peers[key] = _Peer(config)
            elif peer.config != config:
                peer.config = config
                self._track(peer)
                self._reimport(key, delta)
                if peer.state in (PeerState.UP, PeerState.UP_STALE):
                    self._readvertise_peer(key, delta)
        return delta

    def set_context(self, ctx: NodeContext) -> Delta:
        """A new node context: every received route is re-evaluated, every export redone."""
        delta = Delta()
        if ctx == self.ctx:
            return delta
        self.ctx = ctx
        self._shared = {}
        self._check_retained(delta)
        for key in list(self.received):
            self._reimport(key, delta)
        self._fib = {}
        for best in self.table.bests():
            self._set_fib(best.route.prefix, best)
        delta.fib_changed = True
        for key, peer in self.peers.items():
            if peer.state in (PeerState.UP, PeerState.UP_STALE):
                self._readvertise_peer(key, delta)
        return delta

    def set_local(self, prefixes: Iterable[Prefix]) -> Delta:
        """The node's own prefixes to announce (blocks, service CIDRs)."""
        wanted = set(prefixes)
        delta = Delta()
        for prefix in sorted(self._local - wanted, key=prefix_bits):
            self._apply(self.table.withdraw(prefix, LOCAL.key), delta)
        for prefix in sorted(wanted - self._local, key=prefix_bits):
            self._apply(self.table.update(Route(prefix, LOCAL, Attributes())), delta)
        self._local = wanted
        return delta

    def exportable_local(self) -> set[Prefix]:
        """The node's own prefixes that Calico's export filter lets out (rules aside)."""
        return {p for p in self._local if exportable(Route(p, LOCAL, Attributes()), self.ctx)}

    # --- sessions ------------------------------------------------------------------------
    def peer_up(self, session: Session, *, now: float) -> Delta:
        key = session.source.key
        peer = self.peers.get(key)
        if peer is None:
            raise KeyError(f"peer {session.source} is not configured")
        delta = Delta()
        stale = peer.state is PeerState.STALE
        if stale and not (session.graceful_restart and session.forwarding_preserved):
            self._apply_all(self.table.refresh_end(key), delta)  # RFC 4724 §4.2
            self._forget_received(key)
            stale = False
        peer.session = session
        peer.synced = False
        self._set_state(peer, PeerState.UP_STALE if stale else PeerState.UP)
        peer.deadline = now + self.stale_time if stale else None
        if self._restart is not None and session.peer_restarting:
            self._restart.restarting_until[key] = now + self._restart.peer_grace
        self._readvertise_peer(key, delta, full=True)
        if self._restart is not None:
            self._restart.eor_pending.add(key)
        else:
            delta.synced_peers.append(key)
        self._check_restart(now, delta)
        return delta

    def peer_down(self, key: SourceKey, *, now: float, graceful: bool = True) -> Delta:
        """The session with ``key`` is gone: its routes are kept as stale for the peer's
        restart time when graceful restart was negotiated and ``graceful`` (the session did
        not end by a NOTIFICATION: RFC 4724 4), else dropped."""
        delta = Delta()
        peer = self.peers.get(key)
        if peer is None or peer.state in (PeerState.DOWN, PeerState.STALE):
            return delta
        self.out.pop(key, None)
        session = peer.session
        if session is not None and session.graceful_restart and graceful:
            self.table.refresh_begin(key)
            previous = peer.deadline
            peer.deadline = now + session.restart_time
            if previous is not None:  # a flap while stale never extends the deadline
                peer.deadline = min(peer.deadline, previous)
            self._set_state(peer, PeerState.STALE)
            return delta
        return self._drop_peer(peer, key, delta)

    def path_failed(self, key: SourceKey) -> Delta:
        """The forwarding path to the peer failed (BFD, RFC 5882 §4.3.1): its routes go now,
        stale ones of a graceful restart in progress too."""
        peer = self.peers.get(key)
        if peer is None or peer.state is PeerState.DOWN:
            return Delta()
        self.out.pop(key, None)
        return self._drop_peer(peer, key, Delta())

    def _drop_peer(self, peer: _Peer, key: SourceKey, delta: Delta) -> Delta:
        self._set_state(peer, PeerState.DOWN)
        peer.deadline = None
        self._forget_received(key)
        self._apply_all(self.table.drop_source(key), delta)
        return delta

    def end_of_rib(self, key: SourceKey, *, now: float) -> Delta:
        peer = self.peers.get(key)
        delta = Delta()
        if peer is not None and peer.state in (PeerState.UP, PeerState.UP_STALE):
            peer.synced = True
        if peer is not None and peer.state is PeerState.UP_STALE:
            self._apply_all(self.table.refresh_end(key), delta)
            self._sweep_received(key)
            self._set_state(peer, PeerState.UP)
            peer.deadline = None
        if self._restart is not None:
            self._restart.waiting.discard(key)
        self._check_restart(now, delta)
        return delta

    def covered_elsewhere(self, key: SourceKey, *,
                          excluding: Collection[SourceKey] = ()) -> bool:
        """Whether every route ``key`` brought is offered too by another peer whose session
        is up and has sent its End-of-RIB (none of ``excluding``): ``key``'s session can
        end without a route lost (make-before-break)."""
        ready = {k for k, p in self.peers.items()
                 if p.state is PeerState.UP and p.synced and k != key and k not in excluding}
        return all(any(other.source.key in ready for other in self.table.candidates(r.prefix))
                   for r in self.table.routes_of(key))

    # --- routes --------------------------------------------------------------------------
    def receive(self, route: Route) -> Delta:
        delta = Delta()
        key = route.source.key
        peer = self.peers.get(key)
        if peer is None or peer.state not in (PeerState.UP, PeerState.UP_STALE):
            return delta
        if route.source.ebgp and route.attrs.local_pref is not None:
            route = replace(route, attrs=replace(route.attrs, local_pref=None))  # RFC 4271 §5.1.5
        if route.prefix in self.retained:  # BGP knows the block again: no more guessing
            self._unretain(route.prefix, "a peer sends it again", delta)
        received = self.received.get(key)
        if received is None:
            received = self.received[key] = {}
        received[(route.prefix, route.path_id)] = route
        self._import(route, peer, delta)
        return delta

    def withdraw(self, prefix: Prefix, key: SourceKey, path_id: int = 0) -> Delta:
        delta = Delta()
        received = self.received.get(key)
        if received is not None:
            received.pop((prefix, path_id), None)
        peer = self.peers.get(key)
        if (self.rejected and self.rejected.pop((prefix, key, path_id), None) is Reason.MAX_PREFIX
                and peer is not None):
            peer.refused -= 1
        self._apply(self.table.withdraw(prefix, key, path_id), delta)
        if peer is not None and peer.refused and delta.changes:
            self._retry_refused(peer, delta)  # room freed under the limit
        return delta

    def _import(self, route: Route, peer: _Peer, delta: Delta) -> None:
        key = route.source.key
        policy = peer.config.policy
        verdict, accepted = import_route(route, self.ctx, policy)
        limit = policy.max_prefixes
        if (verdict.accepted and limit is not None
                and not self.table.has(route.prefix, key, route.path_id)
                and self.table.count(key) >= limit):
            verdict = Reason.MAX_PREFIX
        if self.rejected and self.rejected.pop(route.key, None) is Reason.MAX_PREFIX:
            peer.refused -= 1
        if verdict.accepted:
            self._apply(self.table.update(accepted), delta)
            return
        self.rejected[route.key] = verdict
        self.rejections[(str(route.source), verdict.value)] += 1
        delta.rejected.append((route, verdict))
        if verdict is Reason.MAX_PREFIX:
            if not peer.refused:
                delta.alarms.append(
                    f"peer {peer.config.address} reached its limit of {limit} prefixes: "
                    + ("the session is closed" if policy.teardown_at_limit
                       else "further routes are refused"))
                if policy.teardown_at_limit:
                    delta.teardowns.append(key)
            peer.refused += 1
        self._apply(self.table.withdraw(route.prefix, key, route.path_id), delta)

    def _retry_refused(self, peer: _Peer, delta: Delta) -> None:
        for route in list(self.received.get(peer.config.key, {}).values()):
            if not peer.refused:
                break
            if self.rejected.get(route.key) is Reason.MAX_PREFIX:
                self._import(route, peer, delta)
                if self.rejected.get(route.key) is Reason.MAX_PREFIX:
                    break  # still full

    def _reimport(self, key: SourceKey, delta: Delta) -> None:
        peer = self.peers.get(key)
        if peer is not None:
            for route in list(self.received.get(key, {}).values()):
                self._import(route, peer, delta)

    # --- time ----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times = [p.deadline for p in self.peers.values() if p.deadline is not None]
        if self.retained:
            times.append(min(until for until, _ in self.retained.values()))
        restart = self._restart
        if restart is not None:
            times.append(restart.deadline)
            if restart.grace_until > 0:
                times.append(restart.grace_until)
            times += [t for k, t in restart.restarting_until.items() if k in restart.waiting]
        return min(times) if times else None

    def tick(self, now: float) -> Delta:
        delta = Delta()
        for key, peer in self.peers.items():
            if peer.deadline is not None and now >= peer.deadline:
                delta.expired.append((key, self.table.stale_count(key)))
                if peer.state is PeerState.STALE:  # its session is gone, not just slow
                    self._retain(key, now, delta)
                self._apply_all(self.table.refresh_end(key), delta)
                self._sweep_received(key)
                peer.deadline = None
                up = peer.state is PeerState.UP_STALE
                self._set_state(peer, PeerState.UP if up else PeerState.DOWN)
                if not up:
                    self._forget_received(key)
        for prefix in [p for p, (until, _) in self.retained.items() if now >= until]:
            self._unretain(prefix, "stale_retention ran out", delta)
        self._check_restart(now, delta)
        return delta

    # --- datastore-backed retention ------------------------------------------------------
    def _retain(self, key: SourceKey, now: float, delta: Delta) -> None:
        """The stale routes of ``key`` for another node's block, via that node's address:
        kept as RETAINED routes (below every BGP route, never sent on) while the node
        context — the datastore — says the node holds the block at that address, for
        ``stale_retention`` at most."""
        if self.ctx.stale_retention <= 0:
            return
        owners = self.ctx.owners
        for route in self.table.routes_of(key):
            hop = route.attrs.next_hop
            if (route.prefix in self.retained or not self.table.is_stale(route)
                    or hop is None or hop not in owners.get(route.prefix, ())
                    or NO_LLGR in route.attrs.communities):  # (RFC 9494 4.7: never kept)
                continue
            # the same attributes: the same kernel route, metric included (no flap)
            self._apply(self.table.update(Route(route.prefix, RETAINED, route.attrs)), delta)
            self.retained[route.prefix] = (now + self.ctx.stale_retention, hop)
            delta.retained.append(route.prefix)

    def _unretain(self, prefix: Prefix, why: str, delta: Delta) -> None:
        if self.retained.pop(prefix, None) is not None:
            self._apply(self.table.withdraw(prefix, RETAINED.key), delta)
            delta.unretained.append((prefix, why))

    def _check_retained(self, delta: Delta) -> None:
        """Let go of what the datastore no longer says (a new node context)."""
        for prefix, (_, hop) in list(self.retained.items()):
            if hop not in self.ctx.owners.get(prefix, ()):
                self._unretain(prefix, "the datastore no longer has its node there", delta)

    def _sweep_received(self, key: SourceKey) -> None:
        """Forget received routes the table no longer holds or rejected (after a sweep)."""
        received = self.received.get(key)
        if received is None:
            return
        for entry in [e for e in received
                      if not self.table.has(e[0], key, e[1])
                      and (e[0], key, e[1]) not in self.rejected]:
            del received[entry]

    # --- our own restart -----------------------------------------------------------------
    def begin_restart(
        self, adopted: Iterable[KernelRoute], *, expected: Iterable[SourceKey], now: float,
        establish_grace: float = 10.0, deadline: float = 120.0, peer_grace: float = 5.0,
    ) -> Delta:
        """Hold the kernel routes a previous run left until the peers have resynced."""
        self._restart = _Restart(
            adopted={r.prefix: r for r in adopted}, waiting=set(expected),
            grace_until=now + establish_grace, deadline=now + deadline, peer_grace=peer_grace,
        )
        delta = Delta(fib_changed=True)
        self._check_restart(now, delta)
        return delta

    @property
    def restarting(self) -> bool:
        return self._restart is not None

    def _check_restart(self, now: float, delta: Delta) -> None:
        restart = self._restart
        if restart is None:
            return
        if now >= restart.grace_until:
            restart.grace_until = 0.0  # past: peers not up by now are not waited for
            restart.waiting = {k for k in restart.waiting
                               if self.peers.get(k) is not None
                               and self.peers[k].state is not PeerState.DOWN}
        # a peer restarting too may wait for all of its own peers before it sends its
        # End-of-RIB: wait for it only briefly
        if restart.restarting_until:
            restart.waiting = {k for k in restart.waiting
                               if now < restart.restarting_until.get(k, float("inf"))}
        if restart.waiting and now < restart.deadline:
            return
        self._restart = None
        delta.fib_changed |= bool(restart.adopted)
        delta.synced_peers += sorted(
            k for k in restart.eor_pending
            if k in self.peers and self.peers[k].state in (PeerState.UP, PeerState.UP_STALE))

    # --- outputs -------------------------------------------------------------------------
    def compact(self) -> None:
        """Rebuild the tables at their present size, after many routes left (a dict keeps the
        room of the most entries it ever held)."""
        self.table.compact()
        self.received = {key: dict(routes) for key, routes in self.received.items()}
        self.out = {key: dict(adverts) for key, adverts in self.out.items()}
        self.rejected = dict(self.rejected)
        self._fib = dict(self._fib)
        self._shared = dict(self._shared)

    def fib_routes(self) -> list[KernelRoute]:
        """The kernel routes wanted now: Loc-RIB routes, plus adopted ones not yet swept."""
        routes = list(self._fib.values())
        if self._restart is not None:
            routes += [r for p, r in self._restart.adopted.items() if p not in self._fib]
        return routes

    def adj_out(self, key: SourceKey) -> dict[Prefix, Advert]:
        return dict(self.out.get(key, {}))

    # --- internals -----------------------------------------------------------------------
    def _set_state(self, peer: _Peer, state: PeerState) -> None:
        peer.state = state
        self._track(peer)

    def _track(self, peer: _Peer) -> None:
        key = peer.config.key
        for up in self._up:
            up.pop(key, None)
        if peer.state in (PeerState.UP, PeerState.UP_STALE):
            self._up[1 if peer.config.ebgp else 0][key] = peer.config

    def _sessions(self) -> tuple[Collection[ExportPeer], Collection[ExportPeer]]:
        """The peers with a session up, as (iBGP, eBGP)."""
        return self._up[0].values(), self._up[1].values()

    def _apply(self, change: Change | None, delta: Delta) -> None:
        if change is None:
            return
        delta.changes.append(change)
        prefix = change.prefix
        if self._set_fib(prefix, change.new):
            delta.fib_changed = True
        ibgp, ebgp = self._sessions()
        # a prefix whose best path was and is learned over iBGP is not, and was not, sent to
        # any iBGP peer on a node that reflects nothing: skip them all
        if split_horizon(_ibgp_learned(change.old) and _ibgp_learned(change.new), self.ctx):
            ibgp = ()
        for peers in (ibgp, ebgp):
            for peer in peers:
                self._advertise(peer, prefix, change.new, delta)

    def _apply_all(self, changes: Iterable[Change], delta: Delta) -> None:
        for change in changes:
            self._apply(change, delta)

    def _set_fib(self, prefix: Prefix, best: Best | None) -> bool:
        new = kernel_route(best, self.ctx) if best is not None else None
        old = self._fib.get(prefix)
        if new == old:
            return False
        if new is None:
            del self._fib[prefix]
        else:
            self._fib[prefix] = new
        return True

    def _advertise(self, peer: ExportPeer, prefix: Prefix, best: Best | None,
                   delta: Delta) -> None:
        out = self.out.get(peer.key)
        if out is None:
            out = self.out[peer.key] = {}
        if best is None:
            self._shared.pop(prefix, None)
            new = None
        else:
            entry = self._shared.get(prefix)
            if entry is None or entry[0] is not best:
                entry = self._shared[prefix] = (best, {})
            new = advert_for(best, peer, self.ctx, entry[1])
        old = out.get(prefix)
        if new == old:
            return
        if new is None:
            del out[prefix]
        else:
            out[prefix] = new
        delta.adverts.append(AdvertChange(peer.key, prefix, new, peer.address))

    def _readvertise_peer(self, key: SourceKey, delta: Delta, *, full: bool = False) -> None:
        """Recompute a peer's Adj-RIB-Out; ``full`` re-sends everything (session start)."""
        config = self.peers[key].config
        if full:
            self.out[key] = {}
        current = set(self.out.get(key, {}))
        bests: Iterable[Best] = self.table.bests()
        if not config.ebgp and split_horizon(True, self.ctx):  # no iBGP-learned route
            bests = [b for b in bests if not b.route.source.ibgp]
        for best in sorted(bests, key=lambda b: prefix_bits(b.route.prefix)):
            self._advertise(config, best.route.prefix, best, delta)
            current.discard(best.route.prefix)
        for prefix in current:
            self._advertise(config, prefix, None, delta)

    def _forget_received(self, key: SourceKey) -> None:
        self.received.pop(key, None)
        for route_id in [r for r in self.rejected if r[1] == key]:
            del self.rejected[route_id]
        peer = self.peers.get(key)
        if peer is not None:
            peer.refused = 0

    def _forget_peer(self, key: SourceKey, delta: Delta) -> None:
        self._forget_received(key)
        self.peers.pop(key, None)
        for up in self._up:
            up.pop(key, None)
        self.out.pop(key, None)
        if self._restart is not None:
            self._restart.waiting.discard(key)
        self._apply_all(self.table.drop_source(key), delta)


def _ibgp_learned(best: Best | None) -> bool:
    return best is None or best.route.source.ibgp
