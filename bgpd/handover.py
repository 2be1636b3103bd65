"""Make-before-break topology changes (pure): which sessions to other nodes are held after the
configuration stopped wanting them.

Theory of operation: Calico's way from a full mesh to route reflectors (a cluster ID on the
reflectors, a BGPPeer selecting them, the mesh turned off) and back goes through states in
which a node has no session to a node it still exchanges traffic with: confd drops a
reflector's mesh sessions the moment its cluster ID is set, while the BGPPeer that would
replace them comes a step later.  A session that the new configuration leaves out is held
when its peer is a node that is still there at the same address — a change of topology, not
a node gone — until every route it brings is also brought by another session that is up and
has sent its End-of-RIB (then nothing is lost when it ends), or until ``limit`` seconds have
passed.  When the configuration wants a session to that address again (the reflector's
BGPPeer, the mesh back), the held one simply goes on: ExaBGP keys a session by address, AS
and router id, not by its name, so nothing is reset.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from bgpd.speaker.config import Neighbor
from node_controller.desired import PeerConfig
from ribs.types import Address


@dataclass(frozen=True, slots=True)
class Held:
    peer: PeerConfig
    neighbor: Neighbor
    since: float  # when the configuration stopped wanting it


def hold(*, applied: Mapping[Address, tuple[PeerConfig, Neighbor]], wanted: Collection[Address],
         nodes: Mapping[Address, str], held: Mapping[Address, Held],
         covered: Callable[[Address], bool], now: float, limit: float,
         ) -> tuple[dict[Address, Held], list[tuple[PeerConfig, str]]]:
    """The sessions of ``applied`` to hold, given the addresses the configuration wants now
    and the nodes by address; and those let go after being held, each with why ("replaced":
    its routes come from elsewhere, "expired": held ``limit`` seconds).  ``covered(address)``:
    every route of that session is brought by another complete one."""
    keep: dict[Address, Held] = {}
    released: list[tuple[PeerConfig, str]] = []
    if limit <= 0:
        return keep, released
    for address, (peer, neighbor) in applied.items():
        if (address in wanted or peer.calico_node is None
                or nodes.get(address) != peer.calico_node):
            continue  # still wanted, not a node's, or the node gone or moved: no holding
        since = held[address].since if address in held else now
        if covered(address):
            if address in held:
                released.append((peer, "replaced"))
        elif now - since >= limit:
            released.append((peer, "expired"))
        else:
            keep[address] = Held(peer, neighbor, since)
    return keep, released
