"""ExaBGP's API lines ↔ typed values (pure).

Inbound, :func:`decode` turns one line from ExaBGP into one value:

* ``Ack`` for ``done`` / ``error`` (plain text even with the JSON encoder);
* ``PeerState`` (connected / up / down with the reason), ``Open`` (the peer's OPEN: its
  identifier, hold time, graceful-restart capability), ``Update`` (announced routes with
  all their attributes and add-path ids, withdrawn ones), ``EndOfRib``, ``Notification``;
* ``Text`` for anything else ExaBGP prints in answer to a command;
* ``Malformed`` for a line that claims to be JSON and is not what ExaBGP sends — counted
  and logged by the caller, never fatal.

ExaBGP 5.0.15 swaps two labels in the graceful-restart capability's JSON: the per-family
list holds ``"restart"`` when the family's **forwarding** bit (F) is set, and
``restart-flags`` holds ``"forwarding"`` when the **restart** bit (R) is set.  The JSON
header says ``5.0.0`` for every 5.0.x, so the caller says which labelling the installed
release uses (:class:`Dialect`, from the package's version: :func:`dialect_for`); a release
not known here is read as labelled, and :func:`dialect_for` says so.

Outbound, the ``*_command`` functions build the few commands the daemon sends.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from ribs.types import (
    Address,
    AsPath,
    Attributes,
    Origin,
    Prefix,
    Segment,
    SegmentType,
    prefix,
)


@dataclass(frozen=True, slots=True)
class Ack:
    ok: bool


@dataclass(frozen=True, slots=True)
class Text:
    line: str


@dataclass(frozen=True, slots=True)
class Malformed:
    line: str
    problem: str


@dataclass(frozen=True, slots=True)
class PeerState:
    peer: Address
    state: str  # connected | up | down
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GracefulRestart:
    restart_time: int
    restarting: bool  # R: the peer has restarted (it will not wait for our End-of-RIB)
    forwarding: frozenset[str]  # families whose forwarding state was kept (F), "ipv4/unicast"


@dataclass(frozen=True, slots=True)
class Open:
    peer: Address
    asn: int
    hold_time: int
    router_id: IPv4Address
    graceful_restart: GracefulRestart | None
    add_path: frozenset[str]
    families: frozenset[str]


@dataclass(frozen=True, slots=True)
class Announce:
    prefix: Prefix
    path_id: int
    attrs: Attributes


@dataclass(frozen=True, slots=True)
class Withdraw:
    prefix: Prefix
    path_id: int


@dataclass(frozen=True, slots=True)
class Update:
    peer: Address
    announce: tuple[Announce, ...]
    withdraw: tuple[Withdraw, ...]
    # RFC 7606 decisions taken on this UPDATE: (action, reason), e.g. ("treat-as-withdraw",
    # "ORIGIN missing"); its routes are then among the withdrawals
    errors: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class EndOfRib:
    peer: Address
    family: str  # "ipv4 unicast"


@dataclass(frozen=True, slots=True)
class Notification:
    peer: Address | None
    text: str


@dataclass(frozen=True, slots=True)
class Refresh:
    """A ROUTE-REFRESH from the peer (RFC 2918; RFC 7313's subtypes): ExaBGP answers it from
    what it has sent."""

    peer: Address
    family: str  # "ipv4 unicast"
    subtype: str  # as ExaBGP names RFC 7313's: a request, or the start or end of a refresh


Event = (Ack | Text | Malformed | PeerState | Open | Update | EndOfRib | Notification
         | Refresh)


@dataclass(frozen=True, slots=True)
class Dialect:
    """How the installed ExaBGP release writes what its JSON header does not tell apart."""

    release: str
    gr_labels_swapped: bool  # R and F labelled the other way round (5.0.15)


SWAPPED_GR_LABELS = frozenset({"5.0.15"})  # read in their source: Graceful.json()
KNOWN_RELEASES = SWAPPED_GR_LABELS
EXABGP_5_0_15 = Dialect("5.0.15", gr_labels_swapped=True)


def dialect_for(release: str) -> tuple[Dialect, str | None]:
    """The dialect of ``release`` and, for a release not checked here, a warning."""
    dialect = Dialect(release, gr_labels_swapped=release in SWAPPED_GR_LABELS)
    if release in KNOWN_RELEASES:
        return dialect, None
    return dialect, (f"ExaBGP {release}: its graceful-restart flags are read as labelled "
                     f"(checked only for {', '.join(sorted(KNOWN_RELEASES))})")


def decode(line: str, dialect: Dialect = EXABGP_5_0_15) -> Event:
    stripped = line.strip()
    if stripped in ("done", "error"):
        return Ack(stripped == "done")
    if not stripped.startswith("{"):
        return Text(stripped)
    try:
        message = json.loads(stripped)
    except json.JSONDecodeError as exc:
        return Malformed(stripped, f"not JSON: {exc.msg}")
    if not isinstance(message, dict) or "exabgp" not in message:
        return Text(stripped)
    try:
        return _decode_message(message, dialect)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return Malformed(stripped, f"{type(exc).__name__}: {exc}")


# the same few addresses (peers, next hops, router IDs) in every event: each parsed once
_address = functools.lru_cache(maxsize=4096)(ip_address)
_ipv4 = functools.lru_cache(maxsize=4096)(IPv4Address)


def _peer(message: dict[str, Any]) -> Address:
    return _address(message["neighbor"]["address"]["peer"])


def _decode_message(message: dict[str, Any], dialect: Dialect) -> Event:
    kind = message.get("type")
    if kind == "state":
        neighbor = message["neighbor"]
        return PeerState(_peer(message), str(neighbor["state"]), str(neighbor.get("reason", "")))
    if kind == "open":
        return _open(message, dialect)
    if kind == "update":
        body = message["neighbor"]["message"]
        if "eor" in body:
            eor = body["eor"]
            return EndOfRib(_peer(message), f"{eor['afi']} {eor['safi']}")
        return _update(_peer(message), body["update"])
    if kind == "notification":
        peer = _peer(message) if "neighbor" in message else None
        text = message.get("notification")
        if isinstance(text, dict):
            text = " ".join(f"{k}={v}" for k, v in text.items())
        if text is None and "neighbor" in message:
            text = json.dumps(message["neighbor"].get("message", {}))
        return Notification(peer, str(text))
    if kind == "refresh":
        refresh = message["neighbor"]["route-refresh"]
        return Refresh(_peer(message), f"{refresh['afi']} {refresh['safi']}",
                       str(refresh.get("subtype", "")))
    raise ValueError(f"unexpected message type {kind!r}")


def _open(message: dict[str, Any], dialect: Dialect) -> Open:
    opened = message["neighbor"]["open"]
    caps = opened.get("capabilities") or {}
    gr = None
    if "64" in caps:
        cap = caps["64"]
        families = cap.get("address-family-flags") or {}
        r_label, f_label = ("forwarding", "restart") if dialect.gr_labels_swapped else (
            "restart", "forwarding")
        gr = GracefulRestart(
            restart_time=int(cap.get("time", 0)),
            restarting=r_label in (cap.get("restart-flags") or []),
            forwarding=frozenset(f for f, flags in families.items() if f_label in flags),
        )
    add_path = caps.get("69") or {}
    multiprotocol = caps.get("1") or {}
    return Open(
        peer=_peer(message), asn=int(opened["asn"]), hold_time=int(opened["hold_time"]),
        router_id=_ipv4(opened["router_id"]), graceful_restart=gr,
        add_path=frozenset(k for k, v in add_path.items() if k != "name" and "send" in str(v)),
        families=frozenset(multiprotocol.get("families") or ()),
    )


def _as_path(value: Any) -> AsPath:
    if isinstance(value, list):  # older encoders: a flat AS_SEQUENCE
        return AsPath.of(*(int(a) for a in value))
    segments = []
    for _, seg in sorted(value.items(), key=lambda kv: int(kv[0])):
        element = str(seg["element"]).replace("as-", "").replace("confed-", "confed-")
        kind = {"sequence": SegmentType.SEQUENCE, "set": SegmentType.SET,
                "confed-sequence": SegmentType.CONFED_SEQUENCE,
                "confed-set": SegmentType.CONFED_SET}[element]
        segments.append(Segment(kind, tuple(int(a) for a in seg["value"])))
    return AsPath(tuple(segments))


def attributes(raw: dict[str, Any], next_hop: Address | None) -> Attributes:
    return Attributes(
        origin=ORIGINS[str(raw.get("origin", "igp")).lower()],
        as_path=_as_path(raw["as-path"]) if "as-path" in raw else AsPath(),
        next_hop=next_hop,
        med=int(raw["med"]) if "med" in raw else None,
        local_pref=int(raw["local-preference"]) if "local-preference" in raw else None,
        communities=tuple((int(a), int(b)) for a, b in raw.get("community", [])),
        large_communities=tuple((int(a), int(b), int(c))
                                for a, b, c in raw.get("large-community", [])),
        originator_id=_ipv4(raw["originator-id"]) if "originator-id" in raw else None,
        cluster_list=tuple(_ipv4(c) for c in raw.get("cluster-list", [])),
        unknown=_unknown(raw),
    )


_UNKNOWN = re.compile(r"attribute-0x([0-9A-Fa-f]{2})-0x([0-9A-Fa-f]{2})")
OPTIONAL, TRANSITIVE, PARTIAL, EXTENDED = 0x80, 0x40, 0x20, 0x10


def _unknown(raw: dict[str, Any]) -> tuple[tuple[int, int, bytes], ...]:
    """The optional transitive attributes ExaBGP does not know (``attribute-0xCC-0xFF``: its
    name for them), with the Partial bit set: passed on (RFC 4271 §9). Unknown optional
    non-transitive ones are dropped, as §9 says."""
    out = []
    for key, value in raw.items():
        match = _UNKNOWN.fullmatch(key)
        if match is None or not isinstance(value, str):
            continue
        code, flags = int(match.group(1), 16), int(match.group(2), 16)
        if flags & (OPTIONAL | TRANSITIVE) == OPTIONAL | TRANSITIVE:
            out.append((code, (flags | PARTIAL) & ~EXTENDED, bytes.fromhex(value[2:])))
    return tuple(sorted(out))


def _path_id(entry: Any) -> int:
    if isinstance(entry, dict) and "path-information" in entry:
        return int(IPv4Address(entry["path-information"]))
    return 0


def _nlri(entry: Any) -> Prefix:
    """A prefix from ExaBGP's text, parsed once (a flood is thousands per message); host
    bits, which ExaBGP does not send, are cleared."""
    text = entry["nlri"] if isinstance(entry, dict) else entry
    try:
        return prefix(text)
    except ValueError:
        address, slash, length_text = text.partition("/")
        host = IPv6Address(address) if ":" in address else IPv4Address(address)
        width = host.max_prefixlen
        length = int(length_text) if slash else width
        if not 0 <= length <= width:
            raise ValueError(f"{text!r}: prefix length outside 0..{width}") from None
        value = int(host) >> (width - length) << (width - length)
        return prefix((value, length), version=host.version)


ORIGINS = {"igp": Origin.IGP, "egp": Origin.EGP, "incomplete": Origin.INCOMPLETE}
TREAT_AS_WITHDRAW = "treat-as-withdraw"
_UNKNOWN_ATTRIBUTE = re.compile(r"attribute-0x([0-9a-fA-F]{2})-0x([0-9a-fA-F]{2})$")


def attribute_problem(raw: dict[str, Any]) -> str | None:
    """Why an UPDATE's path attributes, as ExaBGP parsed them, make its routes withdrawn
    (RFC 7606), or None.  ExaBGP marks what it found malformed (``"error":
    "treat-as-withdraw"``); what it hands on as read is checked here: ORIGIN missing or not
    one of its three values, an AS_PATH segment of no AS, a well-known attribute it does not
    know (RFC 4271 would reset the session; BIRD and RFC 7606's spirit withdraw)."""
    error = str(raw.get("error", ""))
    if error.startswith(TREAT_AS_WITHDRAW):  # "treat-as-withdraw[ due to <attribute>]"
        return f"malformed attribute (ExaBGP: {error})"
    if "origin" not in raw:
        return "ORIGIN missing"
    if str(raw["origin"]).lower() not in ORIGINS:
        return f"ORIGIN {raw['origin']!r}"
    path = raw.get("as-path")
    if isinstance(path, dict) and any(not seg.get("value") for seg in path.values()
                                      if isinstance(seg, dict)):
        return "AS_PATH segment of no AS"
    for key in raw:
        unknown = _UNKNOWN_ATTRIBUTE.match(str(key))
        if unknown and not int(unknown.group(2), 16) & 0x80:  # not optional: well-known
            return f"unrecognized well-known attribute {int(unknown.group(1), 16)}"
    return None


def _update(peer: Address, update: dict[str, Any]) -> Update:
    """An UPDATE's routes, each part read on its own: a part that cannot be read is an error
    on that part, the rest applies.  Withdrawals always apply; when the attributes are in
    error (:func:`attribute_problem`), or cannot be read, every route the UPDATE announces is
    withdrawn instead (RFC 7606 treat-as-withdraw).  An IPv6 next hop field with a global and
    a link-local address reaches us as the same routes under each (ExaBGP reads the routes
    once per next hop): the global one is kept, as BIRD6 does; a link-local one only when it
    is the only one."""
    raw = update.get("attribute") or {}
    errors: list[tuple[str, str]] = []
    withdrawn: list[Withdraw] = []
    for family, entries in (update.get("withdraw") or {}).items():
        if family.endswith("unicast"):
            withdrawn += _readable(entries, lambda e: Withdraw(_nlri(e), _path_id(e)), errors)
    announce = {family: by_hop for family, by_hop in (update.get("announce") or {}).items()
                if family.endswith("unicast")}
    # ExaBGP's own treat-as-withdraw has already moved the routes among the withdrawals:
    # the decision is still counted
    marked = str(raw.get("error", "")).startswith(TREAT_AS_WITHDRAW)
    problem = attribute_problem(raw) if announce or marked else None
    by_hop_attrs: dict[str, Attributes] = {}
    if problem is None:
        try:
            by_hop_attrs = {hop_text: _attributes_at(raw, hop_text, family)
                            for family, by_hop in announce.items() for hop_text in by_hop}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problem = f"unreadable attribute ({type(exc).__name__}: {exc})"
    announced: dict[tuple[Prefix, int], Announce] = {}
    for by_hop in announce.values():
        for hop_text, entries in by_hop.items():
            attrs = by_hop_attrs.get(hop_text) if problem is None else None
            hop = attrs.next_hop if attrs is not None else None
            second = hop is not None and hop.version == 6 and hop.is_link_local
            for e in entries:
                try:
                    key = (_nlri(e), _path_id(e))
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    errors.append(("ignored", f"unreadable NLRI ({exc})"))
                    continue
                if attrs is None:
                    withdrawn.append(Withdraw(*key))
                elif not (second and key in announced):
                    announced[key] = Announce(key[0], key[1], attrs)
    if problem is not None:
        errors.append((TREAT_AS_WITHDRAW, problem))
    return Update(peer, tuple(announced.values()), tuple(withdrawn), tuple(errors))


def _attributes_at(raw: dict[str, Any], hop_text: str, family: str) -> Attributes:
    if hop_text == "no-nexthop" and family.startswith("ipv4"):
        raise ValueError("NEXT_HOP missing")
    if hop_text in ("null", "", "no-nexthop"):
        return attributes(raw, None)
    return attributes(raw, _address(hop_text))


def _readable(entries: Any, read: Any, errors: list[tuple[str, str]]) -> list[Any]:
    out = []
    for e in entries:
        try:
            out.append(read(e))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            errors.append(("ignored", f"unreadable NLRI ({exc})"))
    return out


# --- commands ----------------------------------------------------------------------------
def _selector(peers: Sequence[Address]) -> str:
    """``neighbor A , neighbor B ...``: each peer's phrase made once (a reflector's command
    names every client, and an address's text is computed in Python)."""
    phrases = []
    for peer in peers:
        phrase = _PHRASES.get(peer)
        if phrase is None:
            if len(_PHRASES) > 65536:
                _PHRASES.clear()
            phrase = _PHRASES[peer] = f"neighbor {peer}"
        phrases.append(phrase)
    return " , ".join(phrases)


_PHRASES: dict[Address, str] = {}


def attribute_text(attrs: Attributes) -> str:
    """The attribute part of an announce command; a None next hop is ``self``."""
    parts = [f"next-hop {attrs.next_hop if attrs.next_hop is not None else 'self'}",
             f"origin {attrs.origin.name.lower()}"]
    if attrs.as_path.segments:
        asns = [a for seg in attrs.as_path.segments for a in seg.asns]
        parts.append(f"as-path [ {' '.join(map(str, asns))} ]")
    if attrs.local_pref is not None:
        parts.append(f"local-preference {attrs.local_pref}")
    if attrs.med is not None:
        parts.append(f"med {attrs.med}")
    if attrs.communities:
        parts.append("community [ " + " ".join(f"{a}:{b}" for a, b in attrs.communities) + " ]")
    if attrs.large_communities:
        parts.append("large-community [ "
                     + " ".join(f"{a}:{b}:{c}" for a, b, c in attrs.large_communities) + " ]")
    if attrs.originator_id is not None:
        parts.append(f"originator-id {attrs.originator_id}")
    if attrs.cluster_list:
        parts.append("cluster-list [ " + " ".join(map(str, attrs.cluster_list)) + " ]")
    for code, flags, value in attrs.unknown:
        parts.append(f"attribute [ 0x{code:02x} 0x{flags:02x} 0x{value.hex()} ]")
    return " ".join(parts)


def announce_command(peers: Sequence[Address], attrs: Attributes,
                     prefixes: Iterable[Prefix]) -> str:
    nlri = " ".join(map(str, prefixes))
    return f"{_selector(peers)} announce attributes {attribute_text(attrs)} nlri {nlri}"


def withdraw_command(peers: Sequence[Address], attrs: Attributes,
                     prefixes: Iterable[Prefix]) -> str:
    nlri = " ".join(map(str, prefixes))
    return f"{_selector(peers)} withdraw attributes {attribute_text(attrs)} nlri {nlri}"


def eor_command(peers: Sequence[Address]) -> str:
    """End-of-RIB to ``peers``, all of one address family."""
    family = "ipv4 unicast" if peers[0].version == 4 else "ipv6 unicast"
    return f"{_selector(peers)} announce eor {family}"


def teardown_command(peer: Address, code: int = 2) -> str:
    return f"neighbor {peer} teardown {code}"


def refresh_command(peer: Address) -> str:
    family = "ipv4 unicast" if peer.version == 4 else "ipv6 unicast"
    return f"neighbor {peer} announce route-refresh {family}"
