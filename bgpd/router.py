"""The RIB owner: the one task that holds the routing core and moves values between parts.

Theory of operation: it waits on two inputs — a new :class:`DesiredConfig` from the node
controller, events from the speaker — and on the RIB's next deadline.  Each input becomes
calls on the :class:`~ribs.rib.Rib`; the resulting :class:`~ribs.rib.Delta` goes out as
advertisements to the speaker (End-of-RIB after a session's full table), a new desired set
to the kernel sync, and counters.  Nothing else touches the RIB.

Translation at the edges, before anything changes: :func:`bgpd.translate.translate` checks
every peer of the DesiredConfig and leaves out, as an error on its resource, whatever the
speaker could not run; each peer applied becomes an ``ExportPeer`` (its BGPFilters resolved
into rules) and a speaker neighbour.  A speaker ``SessionUp`` carries the peer's OPEN, from
which the RIB learns whether it may keep that peer's routes over a restart (graceful restart
negotiated, forwarding state kept).  Session states are the speaker's; the RIB keeps only
what its routes need (up, down, stale).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import structlog

from bgpd.bfd.link import BfdLink, Verdict
from bgpd.bfd.service import Event as BfdEvent
from bgpd.handover import Held, hold
from bgpd.kernel_sync import KernelSync
from bgpd.runtime import release_memory, rss_bytes
from bgpd.settings import Settings
from bgpd.speaker import codec
from bgpd.speaker.config import SpeakerConfig
from bgpd.speaker.core import SessionDown, SessionUp, SpeakerEvent
from bgpd.speaker.supervisor import Speaker
from bgpd.translate import (
    Translation,
    export_peer,
    node_context,
    session,
    speaker_config,
    translate,
)
from node_controller.controller import Latest
from node_controller.desired import DesiredConfig, PeerConfig
from node_controller.errors import ResourceError
from ribs.context import NodeContext
from ribs.export import ExportPeer
from ribs.kernel_plan import KernelRoute
from ribs.policy import Reason
from ribs.rib import Delta, Rib
from ribs.types import Address, Route, SourceKey, bgp_key

log = structlog.get_logger("bgpd.router")


# Routes fewer than the most the RIB held since the last release, before memory is handed
# back once the daemon is quiet for RELEASE_QUIET seconds (a flood withdrawn, a peer gone).
RELEASE_AFTER = 1000
RELEASE_QUIET = 1.0
# A burst of speaker events becomes one delta per this many seconds of work, published
# before the next: ExaBGP applies one part's commands while the next part is computed (one
# delta for a reflector's start was seconds in which no command went out and ExaBGP idled)
BURST_SLICE = 0.15


@dataclass
class RouterStats:
    updates_received: int = 0
    withdrawals_received: int = 0
    adverts_sent: int = 0
    config_changes: int = 0
    memory_releases: int = 0
    restart_expiries: int = 0  # peers' graceful restarts that timed out
    expired_routes: int = 0  # the stale routes they removed
    started: float = field(default_factory=time.time)
    # RFC 7606 decisions on received UPDATEs: (peer, action, reason) -> how many
    update_errors: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    bfd_routes_removed: int = 0  # routes taken out at once because BFD said a path failed
    handovers_expired: int = 0  # sessions held for a topology change until handover_seconds


class Router:
    def __init__(self, *, settings: Settings, speaker: Speaker, kernel: KernelSync,
                 desired: Latest, adopted: list[KernelRoute]) -> None:
        self.settings = settings
        self.speaker = speaker
        self.kernel = kernel
        self.desired_slot = desired
        self.adopted = adopted
        self.rib: Rib | None = None
        self.config: DesiredConfig | None = None
        self.interface: str | None = None
        self.stats = RouterStats()
        self.converged = asyncio.Event()  # first config applied and our restart finished
        self.translation = Translation()
        self._peers: dict[Address, PeerConfig] = {}  # the translation's, by address
        self._most_routes = 0  # the RIB's largest size since memory was last released
        self.drain_requested = False  # `bgpd drain` (until `bgpd undrain`)
        self.drain_reason = "bgpd drain"
        self._drain_changed = asyncio.Event()
        self._drained_for: str | None = None  # the reason last applied, for its log line
        self.bfd = BfdLink()  # which peers have BFD, and whose BGP it holds down
        self.held: dict[Address, Held] = {}  # sessions held for a topology change

    def peer_kind(self, address: Address) -> str:
        """mesh, global or node: what made the peer at ``address``."""
        peer = self._peers.get(address)
        return peer.type if peer else "unknown"

    def blocks_unannounced(self) -> bool:
        """The node has blocks and announces none of them (a pool it cannot see, say)."""
        config = self.config
        if config is None or not config.blackholes:
            return False
        return self.rib is None or not set(config.blackholes) & self.rib.exportable_local()

    @property
    def errors(self) -> tuple[ResourceError, ...]:
        """Every problem of the configuration applied: the resources' and the translation's."""
        own = self.config.errors if self.config else ()
        return tuple(sorted({*own, *self.translation.errors}))

    # --- translation -----------------------------------------------------------------------
    def node_context(self, config: DesiredConfig) -> NodeContext:
        return node_context(config, import_guard=self.settings.import_guard,
                            interface=self.settings.interface or self.interface,
                            tunnel=self.settings.tunnel_device,
                            cluster_routes=self.settings.cluster_routes,
                            draining=self.why_drain(config) is not None,
                            stale_retention=self.settings.stale_retention)

    def draining(self) -> str | None:
        """Why this node drains (RFC 8326), if it does: ``bgpd drain``, cordoned, annotated
        ``bgpd/drain``, or tainted with a key of the ``drain_taints`` setting."""
        return self.why_drain(self.config)

    def why_drain(self, config: DesiredConfig | None) -> str | None:
        if self.drain_requested:
            return self.drain_reason
        if config is None:
            return None
        keys = {k.strip() for k in self.settings.drain_taints.split(",") if k.strip()}
        tainted = next((key for key in config.taints if key in keys), None)
        return config.draining or (f"tainted {tainted}" if tainted else None)

    def request_drain(self, on: bool, reason: str = "bgpd drain") -> None:
        """``bgpd drain`` / ``bgpd undrain`` (or a stop that drains first): applied by the
        router's task."""
        self.drain_requested, self.drain_reason = on, reason
        self._drain_changed.set()

    def _log_drain(self) -> None:
        now = self.draining()
        if now != self._drained_for:
            if now is not None:
                log.warning("draining", reason=now, problem="every route this node sends "
                            "carries GRACEFUL_SHUTDOWN (65535:0), LOCAL_PREF 0 to iBGP peers")
            elif self._drained_for is not None:
                log.info("drain_ended", was=self._drained_for)
            self._drained_for = now

    def export_peer(self, config: DesiredConfig, peer: PeerConfig) -> ExportPeer:
        return export_peer(config, peer, max_prefixes_per_peer=self.settings.max_prefixes_per_peer,
                           max_prefixes_external=self.settings.max_prefixes_external)

    def speaker_config(self, config: DesiredConfig, translation: Translation) -> SpeakerConfig:
        # a peer BFD says is unreachable has no BGP session until BFD is Up again
        return speaker_config(config, translation, held_down=self.bfd.failed,
                              reactor_speed=self.settings.exabgp_reactor_speed)

    # --- the task --------------------------------------------------------------------------
    async def run(self) -> None:
        version = 0
        config_wait = asyncio.create_task(self.desired_slot.next(version))
        event_wait = asyncio.create_task(self.speaker.events.get())
        drain_wait = asyncio.create_task(self._drain_changed.wait())
        bfd_wait = asyncio.create_task(self.bfd.events.get())
        try:
            while True:
                deadlines = [d for d in (self.rib.next_deadline() if self.rib else None,
                                         self.handover_deadline()) if d is not None]
                deadline = min(deadlines) if deadlines else None
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                if self._release_due():
                    timeout = RELEASE_QUIET if timeout is None else min(timeout, RELEASE_QUIET)
                done, _ = await asyncio.wait({config_wait, event_wait, drain_wait, bfd_wait},
                                             timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done and self._release_due():
                    self._release_memory()
                delta = Delta()
                if config_wait in done:
                    version, config = config_wait.result()
                    config_wait = asyncio.create_task(self.desired_slot.next(version))
                    delta.merge(await self.apply_config(config))
                if bfd_wait in done:  # first: a path failure outranks what the peer sent
                    delta.merge(self.on_bfd(bfd_wait.result()))
                    while not self.bfd.events.empty():
                        delta.merge(self.on_bfd(self.bfd.events.get_nowait()))
                    bfd_wait = asyncio.create_task(self.bfd.events.get())
                if event_wait in done:
                    delta.merge(self.burst(event_wait.result()))
                    event_wait = asyncio.create_task(self.speaker.events.get())
                if drain_wait in done:
                    self._drain_changed.clear()
                    drain_wait = asyncio.create_task(self._drain_changed.wait())
                    if self.rib is not None and self.config is not None:
                        delta.merge(self.rib.set_context(self.node_context(self.config)))
                self._log_drain()
                if self.rib is not None:
                    delta.merge(self.rib.tick(time.monotonic()))
                if self.held and self.config is not None and self.handover_due(time.monotonic()):
                    delta.merge(await self.apply_config(self.config))
                self.publish(delta)
                if self.rib is not None:
                    self._most_routes = max(self._most_routes, len(self.rib.table))
                # nothing held while waiting: a withdrawn flood's last delta and event hold
                # its routes
                del delta, done
        finally:
            config_wait.cancel()
            event_wait.cancel()
            drain_wait.cancel()
            bfd_wait.cancel()

    def _release_due(self) -> bool:
        return self.rib is not None and self._most_routes - len(self.rib.table) >= RELEASE_AFTER

    def _release_memory(self) -> None:
        assert self.rib is not None
        before = rss_bytes()
        self.rib.compact()
        release_memory()
        self.stats.memory_releases += 1
        log.info("memory_released", routes_now=len(self.rib.table),
                 routes_before=self._most_routes, rss_mb_before=round(before / 2**20, 1),
                 rss_mb_after=round(rss_bytes() / 2**20, 1))
        self._most_routes = len(self.rib.table)

    async def apply_config(self, config: DesiredConfig) -> Delta:
        self.stats.config_changes += 1
        if config.router_id is None:
            log.error("no_router_id", node=config.node,
                      problem="this node has no IPv4 or IPv6 address: BGP stays down")
            self.config = config
            return Delta()
        own = config.node_address or config.node_address_v6
        if self.interface is None and own is not None:
            self.interface = await self.kernel.interface_of(own.ip)
        running = {a: s.neighbor.name for a, s in self.speaker.peers.items()}
        translation = translate(config, running=running)
        self._report(translation)
        translation = self._hold_for_handover(config, translation)
        peers = translation.peers
        ctx = self.node_context(config)
        delta = Delta()
        now = time.monotonic()
        if self.rib is None:
            self.rib = Rib(ctx, stale_time=self.settings.stale_time)
            delta.merge(self.rib.set_peers(self.export_peer(config, p) for p in peers))
            delta.merge(self.rib.begin_restart(
                self.adopted, expected=[bgp_key(p.address) for p in peers], now=now,
                establish_grace=self.settings.restart_establish_grace,
                deadline=self.settings.restart_deadline,
                peer_grace=self.settings.restart_peer_grace))
            if self.adopted:
                log.info("adopted_kernel_routes", routes=len(self.adopted),
                         held_until="peers resynced or deadline")
        else:
            delta.merge(self.rib.set_context(ctx))
            delta.merge(self.rib.set_peers(self.export_peer(config, p) for p in peers))
        delta.merge(self.rib.set_local(translation.announce))
        self._peers = {p.address: p for p in peers}
        self.bfd.plan(config, peers, self.settings.interface or self.interface)
        self.speaker.configure(self.speaker_config(config, translation))
        self.config, self.translation = config, translation
        delta.fib_changed = True
        return delta

    # --- make-before-break -----------------------------------------------------------------
    def _covered(self, address: Address, leaving: set[Address]) -> bool:
        return self.rib is None or self.rib.covered_elsewhere(
            bgp_key(address), excluding=[bgp_key(a) for a in leaving])

    def _hold_for_handover(self, config: DesiredConfig, translation: Translation
                           ) -> Translation:
        """The translation with the sessions held for a topology change added
        (:mod:`bgpd.handover`); logs what starts and ends being held."""
        applied = {p.address: (p, n) for p, n in zip(self.translation.peers,
                                                      self.translation.neighbors, strict=True)}
        moved = self.config is not None and (self.config.node_address, self.config.node_address_v6
                                             ) != (config.node_address, config.node_address_v6)
        wanted = {p.address for p in translation.peers}
        leaving = set(applied) - wanted
        held, released = hold(
            applied={} if moved else applied, wanted=wanted, nodes=dict(config.nodes_by_address),
            held=self.held, covered=lambda a: self._covered(a, leaving), now=time.monotonic(),
            limit=self.settings.handover_seconds)
        for peer, why in released:
            if why == "expired":
                self.stats.handovers_expired += 1
                log.warning("peer_handover_expired", peer=str(peer.address), name=peer.name,
                            seconds=self.settings.handover_seconds,
                            problem="the configuration no longer wants this session and no "
                                    "other session brought its routes in time: it ends now")
            else:
                log.info("peer_handover_done", peer=str(peer.address), name=peer.name)
        for address in held.keys() - self.held.keys():
            log.info("peer_held_for_handover", peer=str(address), name=held[address].peer.name,
                     until="its routes come from another session that is up and complete")
        self.held = held
        if not held:
            return translation
        return replace(translation,
                       peers=translation.peers + tuple(h.peer for h in held.values()),
                       neighbors=translation.neighbors + tuple(h.neighbor for h in held.values()))

    def handover_due(self, now: float) -> bool:
        """A held session can go now: its routes come from elsewhere, or its time is up."""
        return any(now - h.since >= self.settings.handover_seconds
                   or self._covered(address, set(self.held)) for address, h in self.held.items())

    def handover_deadline(self) -> float | None:
        if not self.held:
            return None
        return min(h.since for h in self.held.values()) + self.settings.handover_seconds

    def on_bfd(self, event: BfdEvent) -> Delta:
        """BFD's news: a path failed — the peer's routes out now, graceful restart or not
        (RFC 5882 §4.3.1: BFD saw the forwarding path fail), its BGP session down until BFD
        is Up; or the path is back — the session configured again."""
        verdict = self.bfd.on_event(event)
        if verdict is None or self.rib is None or self.config is None:
            return Delta()
        peer = event.peer
        delta = Delta()
        if verdict is Verdict.DOWN:
            removed = self.rib.table.count(bgp_key(peer))
            delta = self.rib.path_failed(bgp_key(peer))
            self.stats.bfd_routes_removed += removed
            log.warning("bfd_session_down_bgp", peer=str(peer), routes_removed=removed,
                        problem="BFD says the path to the peer failed: its routes are out "
                                "and its BGP session is down until BFD is Up again")
        else:
            log.info("bfd_restores_bgp", peer=str(peer))
        self.speaker.configure(self.speaker_config(self.config, self.translation))
        return delta

    def _report(self, translation: Translation) -> None:
        for error in set(translation.errors) - set(self.translation.errors):
            log.error("peer_not_configured", kind=error.kind, name=error.name,
                      field=error.field, problem=error.message)

    def on_event(self, event: SpeakerEvent) -> Delta:
        rib = self.rib
        if rib is None:
            return Delta()
        now = time.monotonic()
        if isinstance(event, SessionUp):
            peer = self._peers.get(event.peer)
            if peer is None or event.peer in self.bfd.failed:
                return Delta()
            return rib.peer_up(session(peer, event.open), now=now)
        if isinstance(event, SessionDown):
            return rib.peer_down(bgp_key(event.peer), now=now,
                                 graceful=not event.notification)
        if isinstance(event, codec.EndOfRib):
            return rib.end_of_rib(bgp_key(event.peer), now=now)
        assert isinstance(event, codec.Update)
        delta = Delta()
        peer_state = rib.peers.get(bgp_key(event.peer))
        if peer_state is None or peer_state.session is None:
            return delta
        source = peer_state.session.source
        for action, reason in event.errors:
            self._update_error(str(event.peer), action, reason)
        for w in event.withdraw:
            self.stats.withdrawals_received += 1
            delta.merge(rib.withdraw(w.prefix, source.key, w.path_id))
        for a in event.announce:
            self.stats.updates_received += 1
            delta.merge(rib.receive(Route(a.prefix, source, a.attrs, a.path_id)))
        return delta

    def _update_error(self, peer: str, action: str, reason: str) -> None:
        """Count a decision on a malformed UPDATE; the first of each (peer, reason) is logged
        (a peer repeating it is counted, not logged again)."""
        key = (peer, action, reason)
        if not self.stats.update_errors[key]:
            log.warning("update_malformed", peer=peer, action=action, reason=reason)
        self.stats.update_errors[key] += 1

    def burst(self, first: SpeakerEvent) -> Delta:
        """``first`` and the events queued behind it, as one delta, for ``BURST_SLICE``
        seconds of work at most; the rest wait in the queue for the next turn, after this
        delta is published."""
        end = time.monotonic() + BURST_SLICE
        delta = self.on_event(first)
        while not self.speaker.events.empty() and time.monotonic() < end:
            delta.merge(self.on_event(self.speaker.events.get_nowait()))
        return delta

    def _address(self, key: SourceKey) -> Address | None:
        """The address of the peer a RIB delta names (only the RIB's deltas name peers), or
        None for a peer the RIB no longer has: one delta merges the events of a turn, so a
        peer can finish its table and be removed (a handover done) in the same delta — its
        session ends, it needs no End-of-RIB and no teardown."""
        assert self.rib is not None
        peer = self.rib.peers.get(key)
        return None if peer is None else peer.config.address

    def publish(self, delta: Delta) -> None:
        """What ``delta`` says, told to the speaker and the kernel (an empty one before any
        configuration, say after ``bgpd drain``, changes nothing)."""
        for change in delta.adverts:
            self.speaker.advertise(change.address, change.prefix,
                                   change.advert.attrs if change.advert else None)
            self.stats.adverts_sent += 1
        for key in delta.synced_peers:
            if (address := self._address(key)) is not None:
                self.speaker.end_of_rib(address)
        for message in delta.alarms:
            log.error("max_prefix", problem=message)
        if delta.retained:
            log.warning("routes_retained", routes=len(delta.retained),
                        prefixes=[str(p) for p in delta.retained[:20]],
                        problem="their peers' graceful restart ran out; the datastore still "
                                "has their nodes there: kept (stale_retention) until a peer "
                                "sends them or the datastore says otherwise")
        for prefix, why in delta.unretained[:20]:
            log.info("retention_ended", prefix=str(prefix), why=why)
        for key, removed in delta.expired:
            self.stats.restart_expiries += 1
            self.stats.expired_routes += removed
            if removed:
                log.warning("graceful_restart_expired", peer=key[1], routes_removed=removed,
                            problem="the peer did not come back with its routes in its "
                                    "restart time: its stale routes are removed")
        for key in delta.teardowns:
            if (address := self._address(key)) is not None:  # Cease: maximum prefixes reached
                self.speaker.teardown(address, code=1)
        if delta.rejected:
            reasons: dict[str, int] = {}
            for _, reason in delta.rejected:
                reasons[reason.value] = reasons.get(reason.value, 0) + 1
            # our own routes coming back (a ToR echoing them, another reflector's copy) are
            # routine: counted in bgpd_bgp_routes_rejected, logged at debug
            routine = not reasons.keys() - ROUTINE_REJECTIONS
            (log.debug if routine else log.warning)(
                "routes_rejected", count=len(delta.rejected), reasons=reasons)
        if self.rib is not None and delta.fib_changed:  # a best-path change alone may not
            self.kernel.set_desired(self.rib.fib_routes())  # change any kernel route
        if self.rib is not None and self.config is not None and not self.rib.restarting:
            self.converged.set()


ROUTINE_REJECTIONS = frozenset(r.value for r in (
    Reason.AS_PATH_LOOP, Reason.ORIGINATOR_LOOP, Reason.CLUSTER_LOOP))

