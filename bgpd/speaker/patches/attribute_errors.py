"""Path attribute errors ExaBGP 5.0.15 lets through or answers too hard, handled as RFC 7606
says (the ``attribute_errors`` unit).

Found by sending each case of ``integration_tests/malformed_cases.py`` on the wire, beside
BIRD 2 in bgpd's place:

* an ORIGIN longer than one octet is read from its first octet and the route kept; RFC 7606
  7.1 makes it malformed: treat-as-withdraw;
* an UPDATE with no AS_PATH is kept, and neither ExaBGP's parsed attributes nor its JSON
  tell that from an empty one (valid from an iBGP peer), so the attribute headers are read:
  RFC 7606 3(d), treat-as-withdraw;
* an AS_CONFED_SEQUENCE or AS_CONFED_SET from an eBGP peer is kept — and printed as an
  AS_SEQUENCE, so the confederation's ASes would pass for path members: RFC 5065 5 and RFC
  7606 7.2, treat-as-withdraw;
* an ORIGINATOR_ID or CLUSTER_LIST of a bad length resets the session (3/5): RFC 7606 7.9
  and 7.10 ask treat-as-withdraw, and both attributes discarded when an eBGP peer sends them;
* an OPEN on an established session is dropped without a word: RFC 4271 8.2.2 ends the
  session with an FSM error, 5/3 "Receive Unexpected Message in Established State" (RFC 6608);
* an AS4_PATH or AS4_AGGREGATOR that cannot be read resets the session (3/11), even from a
  speaker that negotiated 4-octet ASes and so must not send them: RFC 6793 4.1 has such a
  speaker's discarded unread, and section 6 discards a malformed one (BIRD does both).

Each change is made where ExaBGP decides (the attribute's decoder, the attribute set's parse,
the message reader); bgpd's codec then sees ExaBGP's own treat-as-withdraw mark.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bgpd.speaker.patches import Unit


def _ebgp(negotiated: Any) -> bool:
    return negotiated is not None and negotiated.local_as != negotiated.peer_as


def carries(data: bytes, wanted: int) -> bool:
    """Whether an UPDATE's attribute section holds an attribute of type ``wanted``, even an
    empty one (read from the headers alone)."""
    at = 0
    while at + 3 <= len(data):
        wide = data[at] & 0x10  # Extended Length: two octets of length
        if wide and at + 4 > len(data):
            return False
        if data[at + 1] == wanted:
            return True
        length = int.from_bytes(data[at + 2:at + 4], "big") if wide else data[at + 2]
        at += (4 if wide else 3) + length
    return False


def _apply() -> None:
    from exabgp.bgp.message import Open
    from exabgp.bgp.message.notification import Notify
    from exabgp.bgp.message.update.attribute.aggregator import Aggregator4
    from exabgp.bgp.message.update.attribute.aspath import CONFED_SEQUENCE, CONFED_SET, AS4Path
    from exabgp.bgp.message.update.attribute.attribute import Attribute, TreatAsWithdraw
    from exabgp.bgp.message.update.attribute.attributes import Attributes
    from exabgp.bgp.message.update.attribute.clusterlist import ClusterList
    from exabgp.bgp.message.update.attribute.origin import Origin
    from exabgp.bgp.message.update.attribute.originatorid import OriginatorID
    from exabgp.reactor.peer import FSM
    from exabgp.reactor.protocol import Protocol

    code = Attribute.CODE
    origin_unpack = Origin.unpack

    def unpack_origin(cls: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
        if len(data) != 1:  # ORIGIN is in TREAT_AS_WITHDRAW: the Notify becomes that
            raise Notify(3, 5, f"ORIGIN of {len(data)} octets")
        return origin_unpack(data, direction, negotiated)

    Origin.unpack = classmethod(unpack_origin)

    # AS4_PATH, AS4_AGGREGATOR: None is ExaBGP's "no attribute" (Attributes.add skips it)
    def four_octet(original: Any) -> Any:
        def unpack(cls: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
            if negotiated is not None and negotiated.asn4:
                return None  # a NEW speaker's: discarded unread
            try:
                return original(data, direction, negotiated)
            except Notify:
                return None  # malformed: discarded
        return classmethod(unpack)

    AS4Path.unpack = four_octet(AS4Path.unpack)
    Aggregator4.unpack = four_octet(Aggregator4.unpack)

    # from an eBGP peer, discarded (the Notify turns into Discard: both are in DISCARD);
    # from an iBGP peer, a bad length withdraws the routes
    def reflection(original: Any, aid: int) -> Any:
        def unpack(cls: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
            if _ebgp(negotiated):
                raise Notify(3, 5, f"{code(aid)!r} from an external neighbor: discarded")
            try:
                return original(data, direction, negotiated)
            except Notify:
                return TreatAsWithdraw(aid)
        return classmethod(unpack)

    OriginatorID.unpack = reflection(OriginatorID.unpack, code.ORIGINATOR_ID)
    ClusterList.unpack = reflection(ClusterList.unpack, code.CLUSTER_LIST)
    Attributes.DISCARD = (*Attributes.DISCARD, code.ORIGINATOR_ID, code.CLUSTER_LIST)

    parse = Attributes.parse

    def parse_checked(self: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
        parse(self, data, direction, negotiated)
        if not data or code.INTERNAL_TREAT_AS_WITHDRAW in self:
            return self
        if set(self) <= {code.MP_UNREACH_NLRI}:  # withdrawals only: no route to carry a path
            return self
        path = self.get(code.AS_PATH)  # None for an empty one too: ExaBGP stores none
        confederation = (CONFED_SEQUENCE, CONFED_SET)
        if not carries(data, code.AS_PATH) or (
                path is not None and _ebgp(negotiated)
                and any(isinstance(segment, confederation) for segment in path.aspath)):
            self.add(TreatAsWithdraw(code.AS_PATH))
        return self

    Attributes.parse = parse_checked

    read_message = Protocol.read_message

    def read_checked(self: Any) -> Iterator[Any]:
        for message in read_message(self):
            if message.TYPE == Open.TYPE and self.peer.fsm == FSM.ESTABLISHED:
                raise Notify(5, 3, "OPEN received on an established session")
            yield message

    Protocol.read_message = read_checked


def _check() -> list[str]:
    """What the declarations cannot say: the attributes this unit turns into treat-as-withdraw
    through ExaBGP's own rule must be under that rule."""
    from exabgp.bgp.message.update.attribute.attribute import Attribute
    from exabgp.bgp.message.update.attribute.attributes import Attributes

    if Attribute.CODE.ORIGIN not in Attributes.TREAT_AS_WITHDRAW:
        return ["exabgp...Attributes.TREAT_AS_WITHDRAW no longer holds ORIGIN"]
    return []


UNIT = Unit(
    name="attribute_errors",
    contract=(
        ("exabgp.bgp.message", "Open.TYPE", None),
        ("exabgp.bgp.message.notification", "Notify", ("code", "subcode", "data")),
        ("exabgp.bgp.message.update.attribute.aspath", "CONFED_SEQUENCE", None),
        ("exabgp.bgp.message.update.attribute.aspath", "CONFED_SET", None),
        ("exabgp.bgp.message.update.attribute.attribute", "TreatAsWithdraw", ("aid",)),
        ("exabgp.bgp.message.update.attribute.attribute", "Attribute.CODE.ORIGINATOR_ID", None),
        ("exabgp.bgp.message.update.attribute.attribute", "Attribute.CODE.CLUSTER_LIST", None),
        ("exabgp.bgp.message.update.attribute.attribute", "Attribute.CODE.AS_PATH", None),
        ("exabgp.bgp.message.update.attribute.attribute", "Attribute.CODE.MP_UNREACH_NLRI",
         None),
        ("exabgp.bgp.message.update.attribute.attribute",
         "Attribute.CODE.INTERNAL_TREAT_AS_WITHDRAW", None),
        ("exabgp.bgp.message.update.attribute.attributes", "Attributes.DISCARD", None),
        ("exabgp.bgp.message.update.attribute.attributes", "Attributes.TREAT_AS_WITHDRAW",
         None),
        ("exabgp.bgp.message.update.attribute.attributes", "Attributes.parse",
         ("self", "data", "direction", "negotiated")),
        ("exabgp.bgp.message.update.attribute.attributes", "Attributes.add",
         ("self", "attribute", "_")),
        ("exabgp.bgp.message.update.attribute.origin", "Origin.unpack",
         ("data", "direction", "negotiated")),
        ("exabgp.bgp.message.update.attribute.originatorid", "OriginatorID.unpack",
         ("data", "direction", "negotiated")),
        ("exabgp.bgp.message.update.attribute.clusterlist", "ClusterList.unpack",
         ("data", "direction", "negotiated")),
        ("exabgp.bgp.message.update.attribute.aspath", "AS4Path.unpack",
         ("data", "direction", "negotiated")),
        ("exabgp.bgp.message.update.attribute.aggregator", "Aggregator4.unpack",
         ("data", "direction", "negotiated")),
        ("exabgp.reactor.peer", "FSM.ESTABLISHED", None),
        ("exabgp.reactor.protocol", "Protocol.read_message", ("self",)),
    ),
    attributes=(("exabgp.bgp.message.update.attribute.aspath", "ASPath", ("aspath",)),
                ("exabgp.reactor.protocol", "Protocol", ("peer",)),
                ("exabgp.bgp.message.open.capability.negotiated", "Negotiated",
                 ("local_as", "peer_as", "asn4"))),
    apply=_apply,
    check=_check,
)

