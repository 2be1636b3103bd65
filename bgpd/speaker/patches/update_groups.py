"""Update groups: one encoding of an UPDATE for every session alike (the ``update_groups``
unit)."""

from __future__ import annotations

from typing import Any

from bgpd.speaker.patches import Unit

ENCODED_KEEP = 8192  # UPDATE encodings kept for the peers that send the same one next


def session_group(negotiated: Any) -> tuple[Any, ...]:
    """Everything of a session that an UPDATE's encoding depends on (ASNs and their size,
    families, extended next hops, ADD-PATH, message size, AIGP): sessions alike in all of
    these are one update group — the same routes make the same bytes for each of them.
    Computed once a session is established (a new session has a new ``Negotiated``)."""
    group = negotiated.__dict__.get("_bgpd_group")
    if group is None:
        group = negotiated._bgpd_group = (
            int(negotiated.local_as), int(negotiated.peer_as), bool(negotiated.asn4),
            tuple(negotiated.families), tuple(negotiated.nexthop),
            tuple(sorted(negotiated.addpath._send.items())), int(negotiated.msg_size),
            bool(negotiated.aigp))
    return group


def update_groups(protocol_cls: Any) -> None:
    """Update groups: one encoding of an UPDATE for every session of one group, and one
    socket write per turn, not one per message.

    ExaBGP encodes every UPDATE anew for every peer and writes each message with its own
    ``send`` (after a ``poll`` for writability): for a reflector that is (routes times clients)
    encodings and system calls, 40 % of its time at 300 clients in the ``send`` alone.  Here
    a peer's turn encodes its outgoing RIB's updates, taking the bytes of an update already
    encoded for a session of the same group (:func:`session_group`) when the update is made
    of the same route objects — which, with :func:`shared_changes`, every neighbour a command
    names holds — and writes them as one buffer.  A route with ``next-hop self`` (its bytes
    differ per session) is encoded on its own, as ExaBGP does, and a neighbour whose API
    wants each sent UPDATE reported keeps ExaBGP's own path."""
    from exabgp.bgp.message.update import Update as update_cls
    from exabgp.reactor.protocol import _NOP, _UPDATE

    original_new_update = protocol_cls.new_update
    encoded: dict[tuple[Any, ...], tuple[Any, list[Any], list[bytes]]] = {}

    def messages(update: Any, group: tuple[Any, ...], negotiated: Any,
                 include_withdraw: bool) -> list[bytes]:
        if not isinstance(update, update_cls):  # the outgoing RIB's answer to a peer's
            # enhanced route refresh (RFC 7313) brackets the routes with ROUTE-REFRESH
            # messages (BoRR, EoRR): encoded as they are
            return list(update.messages(negotiated, include_withdraw))
        attributes, nlris = update.attributes, update.nlris
        hop = attributes.get(NEXT_HOP) if hasattr(attributes, "get") else None
        if len(nlris) == 1:  # a reflector's: one client's block per UPDATE
            nlri = nlris[0]
            own = getattr(getattr(nlri, "nexthop", None), "SELF", False)
            made_of: Any = (id(nlri), nlri.action)
        else:
            own = any(getattr(getattr(n, "nexthop", None), "SELF", False) for n in nlris)
            made_of = tuple((id(n), n.action) for n in nlris)
        if own or getattr(hop, "SELF", False):
            return list(update.messages(negotiated, include_withdraw))
        key = (group, include_withdraw, id(attributes), made_of)
        hit = encoded.get(key)
        # the entry holds the objects it was made of: their ids cannot be reused meanwhile
        if hit is not None and hit[0] is attributes and all(
                a is b for a, b in zip(hit[1], nlris, strict=True)):
            return hit[2]
        made = list(update.messages(negotiated, include_withdraw))
        encoded[key] = (attributes, list(nlris), made)
        while len(encoded) > ENCODED_KEEP:
            del encoded[next(iter(encoded))]
        return made

    def new_update(self: Any, include_withdraw: bool) -> Any:
        if self.neighbor.api.get("send-update", False):
            yield from original_new_update(self, include_withdraw)
            return
        negotiated = self.negotiated
        group = session_group(negotiated)
        out: list[bytes] = []
        for update in self.neighbor.rib.outgoing.updates(self.neighbor["group-updates"]):
            out += messages(update, group, negotiated, include_withdraw)
        if out:
            self.peer.stats["send-update"] += len(out)
            for _ in self.connection.writer(b"".join(out)):
                yield _NOP  # the socket took part of it: the rest in a later turn
        yield _UPDATE

    from exabgp.bgp.message.update.attribute import Attribute

    NEXT_HOP = Attribute.CODE.NEXT_HOP
    protocol_cls.new_update = new_update


def _apply() -> None:
    from exabgp.reactor.protocol import Protocol

    update_groups(Protocol)


UNIT = Unit(
    name="update_groups",
    contract=(
        ("exabgp.reactor.protocol", "Protocol.new_update", ("self", "include_withdraw")),
        ("exabgp.reactor.protocol", "_NOP", None),
        ("exabgp.reactor.protocol", "_UPDATE", None),
        ("exabgp.reactor.network.connection", "Connection.writer", ("self", "data")),
        ("exabgp.rib.outgoing", "OutgoingRIB.updates", ("self", "grouped")),
        ("exabgp.bgp.message.update", "Update.messages",
         ("self", "negotiated", "include_withdraw")),
        ("exabgp.bgp.message.refresh", "RouteRefresh.messages",
         ("self", "negotiated", "include_withdraw")),
        ("exabgp.bgp.message.update.attribute", "Attribute.CODE.NEXT_HOP", None),
    ),
    attributes=(
        ("exabgp.reactor.protocol", "Protocol", ("neighbor", "connection", "peer", "negotiated")),
        ("exabgp.bgp.message.open.capability.negotiated", "Negotiated",
         ("local_as", "peer_as", "asn4", "families", "nexthop", "addpath", "msg_size", "aigp")),
        ("exabgp.bgp.message.open.capability.negotiated", "RequirePath", ("_send",)),
        ("exabgp.bgp.message.update", "Update", ("nlris", "attributes")),
        ("exabgp.bgp.neighbor", "Neighbor", ("api", "rib")),
        ("exabgp.reactor.peer", "Peer", ("stats",)),
    ),
    apply=_apply,
)
