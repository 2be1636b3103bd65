"""A newer change to a prefix replaces the one queued for it (the ``queued_changes`` unit).

ExaBGP 5.0's outgoing RIB queues a neighbour's changes by their attributes
(``_new_attr_af_nlri``: attributes → family → prefix → change) and, at the peer's turn,
writes the queue one attribute bucket after another, in the order the buckets were first
made.  A change to a prefix already queued under other attributes goes into its own bucket
and leaves the older one queued: both are written, the older bucket's first.  So announce X,
announce Y, announce X again before the peer's turn ends with Y on the peer, while ExaBGP's
cache (and ``show adj-rib out``) says X.  ExaBGP takes the older change out of its bucket for
a withdrawal only (``OutgoingRIB.del_from_rib``).

Here every change does: ``OutgoingRIB._update_rib``, the one place ExaBGP's changes enter the
queue, first takes the prefix's queued change out of its bucket (:func:`replace_queued`,
which the ``shared_changes`` unit calls too where it fills the queue itself).  The queue then
holds at most one change per prefix, the newest, whatever the timing — a session that is
down for minutes, a peer's turn put off by a burst of commands, a loaded machine.  With this
unit applied the daemon's pacer sends a prefix's next change as soon as it has one
(:meth:`bgpd.speaker.core.SpeakerCore.engine_units`); without it, the pacer waits its
cooldown after ExaBGP took the last one, longer than the launcher puts a peer's turn off.
"""

from __future__ import annotations

from typing import Any

from bgpd.speaker.patches import Unit


def replace_queued(rib: Any, change_index: Any, attr_index: Any) -> None:
    """Take the change queued in ``rib`` for ``change_index`` out of its attribute bucket,
    unless it is in the bucket of ``attr_index`` (where the new change takes its place)."""
    previous = rib._new_nlri.get(change_index)
    if previous is None:
        return
    previous_attr = previous.attributes.index()
    if previous_attr != attr_index:
        family = previous.nlri.family().afi_safi()
        rib._new_attr_af_nlri.get(previous_attr, {}).get(family, {}).pop(change_index, None)


def queued_changes(outgoing_cls: Any) -> None:
    original = outgoing_cls._update_rib

    def _update_rib(self: Any, change: Any) -> Any:
        replace_queued(self, change.index(), change.attributes.index())
        return original(self, change)

    outgoing_cls._update_rib = _update_rib


def _apply() -> None:
    from exabgp.rib.outgoing import OutgoingRIB

    queued_changes(OutgoingRIB)


UNIT = Unit(
    name="queued_changes",
    contract=(
        ("exabgp.rib.outgoing", "OutgoingRIB._update_rib", ("self", "change")),
        ("exabgp.rib.outgoing", "OutgoingRIB.updates", ("self", "grouped")),
        ("exabgp.rib.change", "Change.index", ("self",)),
        ("exabgp.bgp.message.update.attribute.attributes", "Attributes.index", ("self",)),
        ("exabgp.protocol.family", "Family.family", ("self",)),
        ("exabgp.protocol.family", "Family.afi_safi", ("self",)),
    ),
    attributes=(
        ("exabgp.rib.outgoing", "OutgoingRIB", ("_new_nlri", "_new_attr_af_nlri")),
        ("exabgp.rib.change", "Change", ("nlri", "attributes")),
    ),
    apply=_apply,
)
