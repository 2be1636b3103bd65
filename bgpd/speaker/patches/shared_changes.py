"""One route object shared by every neighbour a command names (the ``shared_changes`` unit)."""

from __future__ import annotations

import copy
from typing import Any

from bgpd.speaker.patches import Unit
from bgpd.speaker.patches.queued_changes import replace_queued


def shared_changes(neighbor_cls: Any, configuration_cls: Any) -> None:
    """Every neighbour a route command names holds the same change object, not a deep copy
    of it: ExaBGP's ``Neighbor.remove_self`` deep-copies each route for each neighbour
    (53 % of a reflector's time, ~4 KB per route per neighbour) although only a route with
    ``next-hop self`` differs between neighbours.  Nothing later changes a stored change in
    place (a withdrawal copies before it marks one), so one object serves them all; a
    ``next-hop self`` route gets its own change, NLRI and attributes, shallow copies, with
    the neighbour's address as next hop — what the original does after its deep copy.  And
    a command's neighbours are looked up in a set, not a list (``inject_change`` asks once
    per configured neighbour)."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update.attribute import Attribute, NextHop
    from exabgp.rib.outgoing import RIBdict

    original_inject = configuration_cls.inject_change
    original_eor = configuration_cls.inject_eor

    def remove_self(self: Any, changes: Any) -> Any:
        if not changes.nlri.nexthop.SELF:
            return changes
        change = copy.copy(changes)
        change.nlri = copy.copy(changes.nlri)
        change.attributes = copy.copy(changes.attributes)
        own = self.ip_self(change.nlri.afi)
        change.nlri.nexthop = own
        if Attribute.CODE.NEXT_HOP in change.attributes:
            change.attributes[Attribute.CODE.NEXT_HOP] = NextHop(str(own), own.pack())
            # the copy's cached text and index named "self": made again from the new hop
            change.attributes._str = change.attributes._idx = change.attributes._json = ""
            change.attributes._dict = {}
        return change

    def inject_change(self: Any, peers: Any, change: Any) -> Any:
        """ExaBGP's, with what is the same for every neighbour worked out once per change
        (its family, indexes and action: ExaBGP recomputes them per neighbour, a third of a
        reflector's time); a neighbour whose change differs (``next-hop self``) or which
        lacks the family goes ExaBGP's own way."""
        peers = set(peers)
        family = change.nlri.family().afi_safi()
        index = change.index()
        attr_index = change.attributes.index()
        hop_index = change.nlri.nexthop.index()
        announce = change.nlri.action == Action.ANNOUNCE
        own = change.nlri.nexthop.SELF  # only then can a neighbour's change differ
        result = False
        for name, neighbor in self.neighbors.items():
            if name not in peers:
                continue
            if family not in neighbor._families or (
                    own and neighbor.remove_self(change) is not change):
                result = original_inject(self, {name}, change) or result
                continue
            rib = neighbor.rib.outgoing
            result = True
            seen = rib._seen if rib.cache else None
            if seen is not None and announce:  # ExaBGP's in_cache: sent already, unchanged
                cached = seen.get(family, {}).get(index)
                if (cached and cached.attributes.index() == attr_index
                        and cached.nlri.nexthop.index() == hop_index):
                    continue
            replace_queued(rib, index, attr_index)  # (as ExaBGP's _update_rib, patched)
            rib._new_attr_af_nlri.setdefault(attr_index, {}).setdefault(
                family, RIBdict({}))[index] = change
            rib._new_nlri[index] = change
            rib._new_attribute[attr_index] = change.attributes
            if seen is not None:  # ExaBGP's update_cache
                if announce:
                    seen.setdefault(family, {})[index] = change
                elif family in seen:
                    seen[family].pop(index, None)
        return result

    def inject_eor(self: Any, peers: Any, family: Any) -> Any:
        return original_eor(self, set(peers), family)

    neighbor_cls.remove_self = remove_self
    configuration_cls.inject_change = inject_change
    configuration_cls.inject_eor = inject_eor


def _apply() -> None:
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.configuration.configuration import _Configuration

    shared_changes(Neighbor, _Configuration)


UNIT = Unit(
    name="shared_changes",
    contract=(
        ("exabgp.bgp.neighbor", "Neighbor.remove_self", ("self", "changes")),
        ("exabgp.bgp.neighbor", "Neighbor.ip_self", ("self", "afi")),
        ("exabgp.configuration.configuration", "_Configuration.inject_change",
         ("self", "peers", "change")),
        ("exabgp.configuration.configuration", "_Configuration.inject_eor",
         ("self", "peers", "family")),
        ("exabgp.bgp.message.update.attribute", "Attribute.CODE.NEXT_HOP", None),
        ("exabgp.bgp.message.update.attribute", "NextHop", None),
        ("exabgp.rib.outgoing", "RIBdict", None),
        ("exabgp.bgp.message", "Action.ANNOUNCE", None),
    ),
    attributes=(
        ("exabgp.configuration.configuration", "_Configuration", ("neighbors",)),
        ("exabgp.bgp.neighbor", "Neighbor", ("rib", "_families")),
        ("exabgp.rib.change", "Change", ("nlri", "attributes")),
        ("exabgp.rib.outgoing", "OutgoingRIB",
         ("_new_nlri", "_new_attr_af_nlri", "_new_attribute")),
        ("exabgp.rib.cache", "Cache", ("cache", "_seen")),
        ("exabgp.bgp.message.update.attribute.attributes", "Attributes",
         ("_str", "_idx", "_json", "_dict")),
    ),
    apply=_apply,
    requires=("queued_changes",),  # (it fills the queue as that unit's _update_rib does)
)
