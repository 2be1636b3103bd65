"""BFD's link to BGP: which peers get a session, and what a session's news does to BGP.

Theory of operation: :meth:`BfdLink.plan` turns the applied peers into the sessions wanted
(Calico Enterprise's rules: a BGPPeer with ``failureDetectionMode: BFDIfDirectlyConnected``
whose address is in the subnet of the node's address, timers from the first interface entry
of the node's BFDConfiguration that matches the interface; with bgpd's annotation
``bgpd/bfd-multihop: "true"`` a peer outside that subnet gets a multihop session (RFC 5883)
with the same timers; a peer left out says why).
:meth:`BfdLink.on_event` takes the service's events on the event loop: each state change is
logged and counted; a session that leaves Up for a failure puts its peer in :attr:`failed`,
which the router answers by taking the peer's routes out at once (no graceful restart) and
its BGP session down until BFD is Up again.  The peer saying AdminDown is no failure
(RFC 5882 §3.2).  A planned stop sends AdminDown on every session (:meth:`close`).
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import Callable, Iterable
from ipaddress import IPv4Interface, IPv6Interface

import structlog

from bgpd.bfd.service import BfdService, Event, Spec, Transition
from bgpd.bfd.session import Signal, SignalKind, Timers
from node_controller.desired import DesiredConfig, PeerConfig
from ribs.types import Address

log = structlog.get_logger("bgpd.bfd")

MODE = "BFDIfDirectlyConnected"


class Verdict(enum.Enum):
    DOWN = "down"  # BGP to the peer must go down now
    UP = "up"  # BGP to the peer may come back


class BfdLink:
    def __init__(self, *, service: Callable[[Callable[[Event], None]], BfdService] | None = None
                 ) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        make = service or (lambda on_event: BfdService(on_event=on_event))
        self.service = make(self.events.put_nowait)
        self.failed: set[Address] = set()  # BFD said forwarding to them failed
        self.left_out: dict[Address, str] = {}  # peers asking for BFD that have none, why
        self.transitions: Counter[tuple[str, str]] = Counter()  # (peer, new state)
        self.failures: Counter[str] = Counter()  # by peer
        self.wanted: dict[Address, Spec] = {}

    def plan(self, config: DesiredConfig, peers: Iterable[PeerConfig],
             interface: str | None) -> None:
        wanted: dict[Address, Spec] = {}
        left_out: dict[Address, str] = {}
        for peer in peers:
            if peer.failure_detection != MODE:
                continue
            why, spec = self._spec(config, peer, interface)
            if spec is None:
                left_out[peer.address] = why
            else:
                wanted[peer.address] = spec
        for address in set(left_out) - set(self.left_out):
            log.warning("bfd_not_run", peer=str(address), problem=left_out[address])
        self.left_out = left_out
        self.failed &= set(wanted)
        if wanted != self.wanted:
            self.wanted = wanted
            self.service.configure(wanted.values())

    @staticmethod
    def _spec(config: DesiredConfig, peer: PeerConfig,
              interface: str | None) -> tuple[str, Spec | None]:
        own: IPv4Interface | IPv6Interface | None = (
            config.node_address if peer.address.version == 4 else config.node_address_v6)
        if own is None:
            return f"this node has no IPv{peer.address.version} address", None
        direct = peer.address in own.network or peer.address.is_link_local
        if not direct and not peer.bfd_multihop:
            return (f"not directly connected (outside {own.network}); the annotation "
                    f"bgpd/bfd-multihop: \"true\" gives it a multihop session"), None
        if interface is None:
            return "the interface of the node's address is not known", None
        entry = next((i for i in config.bfd_interfaces if i.matches(interface)), None)
        if entry is None:
            where = (f"BFDConfiguration {config.bfd_configuration!r}"
                     if config.bfd_configuration else "no BFDConfiguration selects this node")
            return f"{where}: no interface entry matches {interface}", None
        timers = Timers(min_tx=entry.min_tx, min_rx=entry.min_rx, idle_tx=entry.idle_tx,
                        multiplier=entry.multiplier)
        if direct:
            return "", Spec(peer=peer.address, local=own.ip, interface=interface, timers=timers)
        # RFC 5883: any path, so no interface; ttlSecurity (GTSM's hop count, as for BGP)
        # sets the lowest TTL taken, else any
        hops = peer.ttl_security
        return "", Spec(peer=peer.address, local=own.ip, interface=None, timers=timers,
                        multihop=True, min_ttl=256 - hops if hops else 1)

    def on_event(self, event: Event) -> Verdict | None:
        if isinstance(event, Transition):
            self._log(event)
            return None
        assert isinstance(event, Signal)
        if event.peer not in self.wanted:
            return None  # a session just removed
        if event.kind is SignalKind.UP:
            if event.peer in self.failed:
                self.failed.discard(event.peer)
                return Verdict.UP
            return None
        if event.admin:
            return None  # RFC 5882 §3.2: the peer's own choice, not a path failure
        self.failures[str(event.peer)] += 1
        self.failed.add(event.peer)
        return Verdict.DOWN

    def _log(self, event: Transition) -> None:
        peer = str(event.peer)
        self.transitions[(peer, event.after)] += 1
        if event.after == "Up":
            log.info("bfd_up", peer=peer, was=event.before)
        elif event.before == "-":
            log.error("bfd_session_failed", peer=peer, problem=event.diag)
        elif event.before == "Up":
            log.warning("bfd_down", peer=peer, diagnostic=event.diag,
                        peer_control_plane_independent=event.remote_cpi)
        else:
            log.debug("bfd_state", peer=peer, was=event.before, now=event.after,
                      diagnostic=event.diag)

    def close(self) -> None:
        self.service.stop()
