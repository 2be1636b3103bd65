"""Malformed messages from an eBGP peer, case by case: what each is, what bgpd does with it
and what BIRD 2 (2.0.12) does in the same harness (:mod:`integration_tests.test_malformed`
checks both on the wire; ``python -m integration_tests.malformed_cases`` writes the table
into ``docs/malformed.md``).

Every case is one message sent on a fresh session after a valid UPDATE announced the
prefixes ``p`` and ``w`` (AS_PATH ``65100``).  The case's message re-announces ``p`` with the
AS_PATH ``65100 65100`` and, where it is an UPDATE, withdraws ``w``.  Outcomes, as seen from
outside:

* ``accepted``: ``p`` now has the new AS_PATH (an attribute the RFCs discard is dropped);
* ``treat-as-withdraw``: ``p`` is gone, the session stands (RFC 7606 2);
* ``refused (reason)``: bgpd's import policy refused the route, so ``p`` is gone, and
  ``bgpd routes`` says why;
* ``ignored``: ``p`` kept its old AS_PATH — the UPDATE was lost (never right);
* ``reset C/S``: the session ended with NOTIFICATION C/S, and every route of it with it.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from integration_tests.raw_speaker import (
    MARKER,
    as_path,
    attr,
    message,
    next_hop,
    origin,
    prefix4,
    update,
)

RAW_AS = 65100
NEW_PATH = (RAW_AS, RAW_AS)


@dataclass(frozen=True)
class Ctx:
    peer: str  # the raw speaker's address
    own: str  # the subject's address
    p: str  # announced before, re-announced by the case
    w: str  # announced before, withdrawn by the case (an UPDATE's)


@dataclass(frozen=True)
class Case:
    name: str
    what: str  # the defect, for the table
    build: Callable[[Ctx], bytes]
    bgpd: str
    bird: str  # BIRD 2.0.12's outcome, seen on the wire in the same harness
    rfc: str = ""  # the rule
    why: str = ""  # where bgpd and BIRD differ: why bgpd does what it does
    withdraws: bool = True  # an UPDATE withdrawing ``w``


def path(*asns: int) -> bytes:
    return as_path(list(asns or NEW_PATH))


def u(ctx: Ctx, attrs: bytes, nlri: bool = True) -> bytes:
    """The case's UPDATE: withdraws ``w``, announces ``p`` (unless ``nlri`` is False)."""
    return update(withdrawn=(ctx.w,), attrs=attrs, nlri=(ctx.p,) if nlri else ())


def good(ctx: Ctx) -> bytes:
    return origin() + path() + next_hop(ctx.peer)


def mp_reach4(hop: bytes, *prefixes: bytes) -> bytes:
    return attr(0x80, 14, struct.pack("!HBB", 1, 1, len(hop)) + hop + b"\x00"
                + b"".join(prefixes))


def mp_unreach4(*prefixes: str) -> bytes:
    return attr(0x80, 15, struct.pack("!HB", 1, 1) + b"".join(prefix4(p) for p in prefixes))


def segment(kind: int, *asns: int) -> bytes:
    return bytes([kind, len(asns)]) + b"".join(struct.pack("!I", a) for a in asns)


def ip4(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def _nh(address: Callable[[Ctx], str]) -> Callable[[Ctx], bytes]:
    return lambda c: u(c, origin() + path() + next_hop(address(c)))


def _raw_update(withdrawn_len: int, withdrawn: bytes, attrs_len: int,
                attrs: bytes, nlri: bytes) -> bytes:
    return message(2, struct.pack("!H", withdrawn_len) + withdrawn
                   + struct.pack("!H", attrs_len) + attrs + nlri)


TAW, ACCEPTED = "treat-as-withdraw", "accepted"
BAD_NEXT_HOP = "refused (invalid_next_hop)"

CASES: tuple[Case, ...] = (
    # ORIGIN (RFC 7606 7.1)
    Case("origin-value", "ORIGIN 5", lambda c: u(c, origin(5) + path() + next_hop(c.peer)),
         TAW, TAW, "7606 7.1"),
    Case("origin-length", "ORIGIN of 2 octets",
         lambda c: u(c, attr(0x40, 1, b"\x00\x00") + path() + next_hop(c.peer)),
         TAW, TAW, "7606 7.1"),
    Case("origin-missing", "no ORIGIN", lambda c: u(c, path() + next_hop(c.peer)),
         TAW, TAW, "7606 3(d)"),
    Case("origin-flags", "ORIGIN flagged optional",
         lambda c: u(c, attr(0xC0, 1, b"\x00") + path() + next_hop(c.peer)),
         TAW, TAW, "7606 3(c)"),
    # AS_PATH (RFC 7606 7.2)
    Case("as-path-empty-segment", "an AS_SEQUENCE of 0 ASes",
         lambda c: u(c, origin() + attr(0x40, 2, bytes([2, 0])) + next_hop(c.peer)),
         TAW, TAW, "7606 7.2"),
    Case("as-path-segment-type", "a segment of type 7",
         lambda c: u(c, origin() + as_path(list(NEW_PATH), kind=7) + next_hop(c.peer)),
         TAW, TAW, "7606 7.2"),
    Case("as-path-overrun", "a segment claiming 3 ASes, holding 1",
         lambda c: u(c, origin() + attr(0x40, 2, bytes([2, 3]) + struct.pack("!I", RAW_AS))
                     + next_hop(c.peer)),
         TAW, TAW, "7606 7.2"),
    Case("as-path-missing", "no AS_PATH", lambda c: u(c, origin() + next_hop(c.peer)),
         TAW, TAW, "7606 3(d)"),
    Case("as-path-confed-from-ebgp", "an AS_CONFED_SEQUENCE from an eBGP peer",
         lambda c: u(c, origin() + attr(0x40, 2, segment(3, 64999) + segment(2, *NEW_PATH))
                     + next_hop(c.peer)),
         TAW, TAW, "7606 7.2, 5065 5"),
    Case("as-path-first-as", "first AS not the peer's",
         lambda c: u(c, origin() + path(64999, RAW_AS) + next_hop(c.peer)),
         ACCEPTED, ACCEPTED, "4271 6.3 (optional check)"),
    # NEXT_HOP (RFC 7606 7.3, RFC 4271 5.1.3 and 6.3)
    Case("next-hop-length", "NEXT_HOP of 5 octets",
         lambda c: u(c, origin() + path() + attr(0x40, 3, ip4(c.peer) + b"\x00")),
         TAW, TAW, "7606 7.3"),
    Case("next-hop-missing", "no NEXT_HOP", lambda c: u(c, origin() + path()),
         TAW, TAW, "7606 3(d)"),
    Case("next-hop-zero", "NEXT_HOP 0.0.0.0", _nh(lambda c: "0.0.0.0"),
         BAD_NEXT_HOP, TAW, "4271 6.3"),
    Case("next-hop-broadcast", "NEXT_HOP 255.255.255.255", _nh(lambda c: "255.255.255.255"),
         BAD_NEXT_HOP, TAW, "4271 6.3"),
    Case("next-hop-multicast", "NEXT_HOP 224.0.0.5", _nh(lambda c: "224.0.0.5"),
         BAD_NEXT_HOP, TAW, "4271 6.3"),
    Case("next-hop-loopback", "NEXT_HOP 127.0.0.1", _nh(lambda c: "127.0.0.1"),
         BAD_NEXT_HOP, TAW, "4271 6.3"),
    Case("next-hop-own", "NEXT_HOP the receiver's own address", _nh(lambda c: c.own),
         BAD_NEXT_HOP, TAW, "4271 6.3"),
    Case("next-hop-off-link", "NEXT_HOP off the shared subnet (single-hop eBGP)",
         _nh(lambda c: "192.0.2.7"), BAD_NEXT_HOP, TAW, "4271 5.1.3, 6.3"),
    # MED, LOCAL_PREF (RFC 7606 7.4, 7.5)
    Case("med-length", "MED of 3 octets",
         lambda c: u(c, good(c) + attr(0x80, 4, b"\x00\x00\x01")), TAW, TAW, "7606 7.4"),
    Case("local-pref-from-ebgp", "LOCAL_PREF from an eBGP peer",
         lambda c: u(c, good(c) + attr(0x40, 5, struct.pack("!I", 300))),
         ACCEPTED, ACCEPTED, "7606 7.5 (discarded)"),
    Case("local-pref-length-from-ebgp", "LOCAL_PREF of 3 octets from an eBGP peer",
         lambda c: u(c, good(c) + attr(0x40, 5, b"\x00\x00\x01")),
         TAW, ACCEPTED, "7606 7.5 (discarded)",
         why="ExaBGP judges LOCAL_PREF's length before the session type, and marks the whole "
             "UPDATE; bgpd cannot tell that mark from another attribute's and withdraws: the "
             "more careful answer"),
    # ATOMIC_AGGREGATE, AGGREGATOR (RFC 7606 7.6, 7.7: attribute discard)
    Case("atomic-aggregate-length", "ATOMIC_AGGREGATE of 1 octet",
         lambda c: u(c, good(c) + attr(0x40, 6, b"\x01")), ACCEPTED, ACCEPTED, "7606 7.6"),
    Case("aggregator-length", "AGGREGATOR of 5 octets",
         lambda c: u(c, good(c) + attr(0xC0, 7, b"\x00" * 5)), ACCEPTED, ACCEPTED, "7606 7.7"),
    # AS4_PATH and AS4_AGGREGATOR from a speaker that negotiated 4-octet ASes (RFC 6793 4.1:
    # such a speaker never sends them; the receiver discards them)
    Case("as4-path-from-new-speaker", "AS4_PATH from a 4-octet speaker",
         lambda c: u(c, good(c) + attr(0xC0, 17, segment(2, 64999, RAW_AS))),
         ACCEPTED, ACCEPTED, "6793 4.1 (discarded)"),
    Case("as4-path-malformed", "AS4_PATH with a segment overrun, from a 4-octet speaker",
         lambda c: u(c, good(c) + attr(0xC0, 17, bytes([2, 4]) + struct.pack("!I", RAW_AS))),
         ACCEPTED, ACCEPTED, "6793 4.1, 6 (discarded)"),
    Case("as4-aggregator-from-new-speaker", "AS4_AGGREGATOR from a 4-octet speaker",
         lambda c: u(c, good(c) + attr(0xC0, 18, struct.pack("!I", RAW_AS) + ip4(c.peer))),
         ACCEPTED, ACCEPTED, "6793 4.1 (discarded)"),
    # communities (RFC 7606 7.8, 7.14; RFC 8092 11)
    Case("community-length", "COMMUNITIES of 3 octets",
         lambda c: u(c, good(c) + attr(0xC0, 8, b"\x00\x01\x02")), TAW, TAW, "7606 7.8"),
    Case("extended-community-length", "EXTENDED_COMMUNITIES of 7 octets",
         lambda c: u(c, good(c) + attr(0xC0, 16, b"\x00" * 7)), TAW, TAW, "7606 7.14"),
    Case("large-community-length", "LARGE_COMMUNITY of 11 octets",
         lambda c: u(c, good(c) + attr(0xC0, 32, b"\x00" * 11)), TAW, TAW, "8092 11"),
    # route-reflection attributes from an eBGP peer (RFC 7606 7.9, 7.10)
    Case("originator-id-from-ebgp", "ORIGINATOR_ID from an eBGP peer",
         lambda c: u(c, good(c) + attr(0x80, 9, ip4("10.0.0.9"))),
         ACCEPTED, ACCEPTED, "7606 7.9 (discarded)"),
    Case("originator-id-length", "ORIGINATOR_ID of 3 octets from an eBGP peer",
         lambda c: u(c, good(c) + attr(0x80, 9, b"\x00\x01\x02")),
         ACCEPTED, ACCEPTED, "7606 7.9 (discarded)"),
    Case("cluster-list-length", "CLUSTER_LIST of 3 octets from an eBGP peer",
         lambda c: u(c, good(c) + attr(0x80, 10, b"\x00\x01\x02")),
         ACCEPTED, ACCEPTED, "7606 7.10 (discarded)"),
    # unknown and repeated attributes (RFC 4271 5, 6.3; RFC 7606 3(g))
    Case("unknown-well-known", "an unrecognised attribute flagged well-known",
         lambda c: u(c, good(c) + attr(0x40, 200, b"\x01")), TAW, TAW, "4271 6.3"),
    Case("unknown-optional", "an unrecognised optional non-transitive attribute",
         lambda c: u(c, good(c) + attr(0x80, 201, b"\x01")), ACCEPTED, ACCEPTED, "4271 5"),
    Case("unknown-transitive", "an unrecognised optional transitive attribute",
         lambda c: u(c, good(c) + attr(0xC0, 202, b"\x01\x02")), ACCEPTED, ACCEPTED,
         "4271 5 (passed on, Partial)"),
    Case("duplicate-attribute", "MED twice",
         lambda c: u(c, good(c) + attr(0x80, 4, b"\x00\x00\x00\x01")
                     + attr(0x80, 4, b"\x00\x00\x00\x02")), ACCEPTED, ACCEPTED, "7606 3(g)"),
    Case("duplicate-mp-reach", "MP_REACH_NLRI twice",
         lambda c: u(c, origin() + path() + mp_reach4(ip4(c.peer), prefix4(c.p))
                     + mp_reach4(ip4(c.peer), prefix4(c.p)), nlri=False),
         "reset 3/1", "reset 3/1", "7606 3(g)"),
    # MP_REACH_NLRI, MP_UNREACH_NLRI (RFC 4760, RFC 7606 7.11, 5.3)
    Case("mp-reach", "the route in MP_REACH_NLRI (valid)",
         lambda c: u(c, origin() + path() + mp_reach4(ip4(c.peer), prefix4(c.p)), nlri=False),
         ACCEPTED, ACCEPTED, "4760 3"),
    Case("mp-reach-next-hop-length", "MP_REACH_NLRI with a 5-octet next hop",
         lambda c: u(c, origin() + path() + mp_reach4(ip4(c.peer) + b"\x00", prefix4(c.p)),
                     nlri=False),
         "reset 3/9", "reset 3/9", "7606 7.11"),
    Case("mp-reach-prefix-length", "MP_REACH_NLRI with a /40 IPv4 prefix",
         lambda c: u(c, origin() + path() + mp_reach4(ip4(c.peer), bytes([40]) + b"\x0a" * 5),
                     nlri=False),
         "reset 3/10", "reset 3/10", "7606 5.3"),
    Case("mp-unreach-and-bad-origin", "MP_UNREACH_NLRI of w beside ORIGIN 5",
         lambda c: update(attrs=origin(5) + path() + next_hop(c.peer) + mp_unreach4(c.w),
                          nlri=(c.p,)),
         TAW, TAW, "7606 5.2"),
    Case("mp-reach-without-mandatory", "MP_REACH_NLRI without ORIGIN and AS_PATH",
         lambda c: u(c, mp_reach4(ip4(c.peer), prefix4(c.p)), nlri=False),
         TAW, TAW, "7606 3(d)"),
    # the UPDATE's framing (RFC 7606 4, RFC 4271 6.3)
    Case("attribute-overrun", "an attribute's length past the attribute section",
         lambda c: u(c, good(c) + attr(0xC0, 8, b"\x00\x01\x00\x02", length=40)),
         TAW, TAW, "7606 4"),
    Case("attributes-overrun", "the attribute section's length past the message",
         lambda c: _raw_update(0, b"", 200, good(c), prefix4(c.p)),
         "reset 3/1", "reset 3/1", "7606 4"),
    Case("withdrawn-overrun", "the withdrawn routes' length past the message",
         lambda c: _raw_update(200, prefix4(c.w), 0, b"", b""),
         "reset 3/1", "reset 3/1", "4271 6.3"),
    Case("nlri-prefix-length", "an NLRI prefix of /33",
         lambda c: _raw_update(len(prefix4(c.w)), prefix4(c.w), len(good(c)), good(c),
                               bytes([33]) + b"\x0a\x00\x00\x00\x00"),
         "reset 3/10", "reset 3/10", "7606 5.3"),
    # the message's header (RFC 4271 6.1, 6.6)
    Case("marker", "a marker not all ones",
         lambda c: b"\x00" * 16 + message(4, b"")[16:], "reset 1/1", "reset 1/1", "4271 6.1",
         withdraws=False),
    Case("length-long", "a length over 4096",
         lambda c: MARKER + struct.pack("!HB", 5000, 2) + b"\x00" * 200,
         "reset 1/2", "reset 1/2", "4271 6.1", withdraws=False),
    Case("length-short", "a length under 19",
         lambda c: MARKER + struct.pack("!HB", 18, 4), "reset 1/2", "reset 1/2", "4271 6.1",
         withdraws=False),
    Case("update-short", "an UPDATE of 21 octets",
         lambda c: MARKER + struct.pack("!HB", 21, 2) + b"\x00\x00",
         "reset 1/2", "reset 1/2", "4271 6.1", withdraws=False),
    Case("type", "message type 7", lambda c: message(7, b""), "reset 1/3", "reset 1/3",
         "4271 6.1", withdraws=False),
    Case("open-in-established", "an OPEN on an established session",
         lambda c: message(1, bytes([4]) + struct.pack("!HH", 23456, 90) + ip4(c.peer) + b"\x00"),
         "reset 5/3", "reset 5/3", "4271 8.2.2, 6608", withdraws=False),
)

def action(outcome: str) -> str:
    """What an outcome does to the route: "accept", "withdraw" (treat-as-withdraw, or
    refused by bgpd's import policy), "reset" or "ignored"."""
    if outcome == TAW or outcome.startswith("refused"):
        return "withdraw"
    return {ACCEPTED: "accept"}.get(outcome, outcome.split()[0])


def as_careful(ours: str, birds: str) -> bool:
    """Whether bgpd's outcome is BIRD's action or more careful with routes without being
    harder on the session: it withdraws what BIRD takes, or withdraws where BIRD resets (RFC
    7606's aim); it never keeps a route BIRD drops, never resets a session BIRD keeps, never
    loses an UPDATE."""
    mine, theirs = action(ours), action(birds)
    return mine == theirs or (mine == "withdraw" and theirs in ("accept", "reset"))


def table() -> str:
    """The cases as docs/malformed.md shows them."""
    rows = ["| case | the defect | the rule (RFC) | bgpd | BIRD 2.0.12 |",
            "|---|---|---|---|---|"]
    for case in CASES:
        rows.append(f"| `{case.name}` | {case.what} | {case.rfc} | {case.bgpd} | {case.bird} |")
    notes = [f"- `{case.name}`: {case.why}" for case in CASES if case.why]
    return "\n".join(rows) + ("\n\nWhere bgpd differs from BIRD:\n\n" + "\n".join(notes)
                              if notes else "") + "\n"


PAGE = Path(__file__).resolve().parent.parent / "docs" / "malformed.md"
START, END = "<!-- cases: python -m integration_tests.malformed_cases -->\n", "<!-- /cases -->\n"


def page_table() -> str:
    """What docs/malformed.md shows between its markers."""
    text = PAGE.read_text()
    return text[text.index(START) + len(START):text.index(END)]


def write() -> None:
    text = PAGE.read_text()
    PAGE.write_text(text[:text.index(START) + len(START)] + table() + text[text.index(END):])


if __name__ == "__main__":
    write()
