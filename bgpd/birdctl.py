"""BIRD's control socket, as what reads it on a Calico node expects it.

bgpd takes BIRD's place, and what read BIRD's sockets keeps working: ``calicoctl node
status``, calico-node's liveness and readiness probes (``show status``, ``show protocols``)
and calico-node's node-status reporter, which fills CalicoNodeStatus objects from ``show
status``, ``show protocols``, ``show protocols all <name>`` and ``show route`` — it runs in
calico-node whatever its networking backend, so it goes on filling them from bgpd's answers.
``show bfd sessions`` answers as BIRD 2 does.

BIRD runs one daemon per family: ``bird.ctl`` answers for IPv4, ``bird6.ctl`` (beside it)
for IPv6 — sessions with peers of that family, routes of that family.  Replies follow BIRD
1.6's (the version Calico ships), read off a real BIRD 1.6: numbered lines (``0001`` hello,
``2002`` table header, ``1002`` protocol rows, ``1006`` protocol details, ``1007`` routes,
``1000``/``1011``/``0013`` status, ``0024`` graceful restart in progress), a leading space
for the continuation of a block, ``0000`` at the end, ``9001``/``9002`` for errors.  Session
names are BIRD's (``Mesh_…``, ``Node_…``, ``Global_…``); the node's own routes come from
``static1``, as from confd's unnamed static protocol.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bgpd import __version__
from bgpd.observability import Parts, serve_unix
from bgpd.speaker.core import SessionState
from ribs.types import Origin, Route, SourceKind, prefix_bits

# as calico-node's BIRD says "v0.3.3+birdv1.6.8" (its node-status reporter reads "BIRD v...")
VERSION = f"v{__version__}+bgpd"
STATIC = "static1"  # confd's static protocol has no name: BIRD calls it static1


def _names(parts: Parts) -> dict[Any, str]:
    return {address: st.neighbor.name.replace(".", "_").replace(":", "_")
            for address, st in parts.speaker.peers.items()}


def _clock(stamp: float) -> str:
    """BIRD's short time: the time of day today, else the date."""
    day = time.strftime("%Y-%m-%d", time.localtime(stamp))
    if day == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", time.localtime(stamp))
    return day


def _state(state: SessionState) -> str:
    if state is SessionState.ESTABLISHED:
        return "Established"
    return "Connect" if state is SessionState.CONNECT else "Active"


def _sessions(parts: Parts, version: int) -> list[tuple[str, Any]]:
    names = _names(parts)
    return [(names[address], st) for address, st in sorted(
        parts.speaker.peers.items(), key=lambda kv: int(kv[0])) if address.version == version]


def _error(st: Any) -> str:
    """A session's last error on one line (BIRD's replies are line by line)."""
    return " ".join(str(st.last_error).split())[:120]


def _row(name: str, st: Any) -> str:
    up = st.state is SessionState.ESTABLISHED
    info = _state(st.state)
    if not up and _error(st):
        info += f"        {_error(st)}"
    return f"{name:<20} BGP        ---        {'up' if up else 'start':<6} " \
           f"{_clock(st.since):<12}  {info}"


def protocols(parts: Parts, version: int = 4, name: str | None = None,
              details: bool = False) -> list[str]:
    """``show protocols [all] [name]``."""
    sessions = _sessions(parts, version)
    if name is not None:
        sessions = [(n, st) for n, st in sessions if n == name]
        if not sessions:
            return [f"9002 {name} is not a protocol"]
    lines = ["2002-name     proto    table    state  since       info"]
    for i, (session, st) in enumerate(sessions):
        lines.append(("1002-" if i == 0 or details else " ") + _row(session, st))
        if details:
            block = _details(parts, st)
            lines += ["1006-" + block[0], *(" " + line for line in block[1:]), " "]
    return [*lines, "0000 "]


def _details(parts: Parts, st: Any) -> list[str]:
    n = st.neighbor
    rib = parts.router.rib
    imported = exported = preferred = 0
    if rib is not None:
        key = ("bgp", str(n.address))
        imported = rib.table.count(key)
        preferred = sum(1 for best in rib.table.bests() if best.route.source.key == key)
        exported = len(rib.out.get(key, {}))
    lines = ["  Preference:     100", "  Input filter:   ACCEPT", "  Output filter:  (unnamed)",
             f"  Routes:         {imported} imported, {exported} exported, "
             f"{preferred} preferred",
             f"  BGP state:          {_state(st.state)}",
             f"    Neighbor address: {n.address}",
             f"    Neighbor AS:      {n.peer_as}"]
    if st.state is SessionState.ESTABLISHED and st.open is not None:
        lines += [f"    Neighbor ID:      {st.open.router_id}",
                  f"    Session:          {'internal' if n.peer_as == n.local_as else 'external'}"
                  " AS4"]
        if n.local_address is not None:
            lines.append(f"    Source address:   {n.local_address}")
        lines.append(f"    Hold timer:       {st.open.hold_time}")
    elif _error(st):
        lines.append(f"    Last error:       {_error(st)}")
    return lines


def routes(parts: Parts, version: int = 4) -> list[str]:
    """``show route``: every path of the Loc-RIB of that family, the best marked ``*``."""
    rib = parts.router.rib
    lines: list[str] = []
    if rib is not None:
        names = _names(parts)
        sessions = parts.speaker.peers
        interface = parts.router.settings.interface or parts.router.interface or "eth0"
        for best in sorted(rib.table.bests(), key=lambda b: prefix_bits(b.route.prefix)):
            prefix = best.route.prefix
            if prefix.version != version:
                continue
            chosen = set(map(id, best.multipath)) | {id(best.route)}
            paths = sorted(rib.table.candidates(prefix), key=lambda r: id(r) not in chosen)
            for i, route in enumerate(paths):  # as BIRD lists them: the best first
                dest = f"{str(prefix) if i == 0 else '':<18}"
                lines.append(dest + " " + _path(route, names, sessions, interface,
                                                 parts.started, id(route) in chosen))
    if not lines:
        return ["0000 "]
    return ["1007-" + lines[0], *(" " + line for line in lines[1:]), "0000 "]


def _path(route: Route, names: dict[Any, str], sessions: Any, interface: str,
          started: float, best: bool) -> str:
    mark = " *" if best else ""
    if route.source.kind is not SourceKind.BGP:
        return f"blackhole [{STATIC} {_clock(started)}]{mark} (200)"
    address = route.source.address
    st = sessions.get(address)
    name = names.get(address, str(address))
    since = _clock(st.since if st is not None else started)
    attrs = route.attrs
    origin = {Origin.IGP: "i", Origin.EGP: "e"}.get(attrs.origin, "?")
    asns = [asn for segment in attrs.as_path.segments for asn in segment.asns]
    tail = f"[AS{asns[-1]}{origin}]" if asns else f"[{origin}]"
    return (f"via {attrs.next_hop} on {interface} [{name} {since}]{mark} (100) {tail}")


def status(parts: Parts) -> list[str]:
    """``show status``."""
    config = parts.router.config
    rid = str(config.router_id) if config and config.router_id else "0.0.0.0"
    fmt = "%Y-%m-%d %H:%M:%S"
    lines = [f"1000-BIRD {VERSION}", f"1011-Router ID is {rid}",
             f" Current server time is {time.strftime(fmt)}",
             f" Last reboot on {time.strftime(fmt, time.localtime(parts.started))}",
             " Last reconfiguration on "
             + time.strftime(fmt, time.localtime(parts.last_reconfigure))]
    draining = parts.router.draining()
    if draining is not None:  # (BIRD has no such line; a continuation, no code of its own)
        lines.append(f" Graceful shutdown (RFC 8326) of every route sent: {draining}")
    rib = parts.router.rib
    if rib is not None and rib.restarting:
        # calico-node's readiness probe reads a 0024 line as "graceful restart in progress"
        lines += ["0024-Graceful restart recovery in progress",
                  " Waiting for the peers' End-of-RIB before the sweep of kept routes"]
    return [*lines, "0013 Daemon is up and running"]


def bfd_sessions(parts: Parts, version: int = 4) -> list[str]:
    """``show bfd sessions``, as BIRD 2's ``bfd1`` protocol lists them (read off BIRD
    2.0.12): the time of day a session entered its state with milliseconds, the transmit
    interval and the detection time in seconds; ``---`` for a session on no interface (a
    multihop one), as BIRD's ``bfd_show_session`` prints it."""
    rows = [f"{v.peer!s:<25} {v.interface or '---':<10} {v.state:<10} "
            + time.strftime("%H:%M:%S", time.localtime(v.since))
            + f".{int(v.since * 1000) % 1000:03d}  {v.tx_interval:7.3f}  "
            + f"{v.detection_time if v.state in ('Init', 'Up') else 0.0:7.3f}"
            for v in sorted(parts.router.bfd.service.snapshot(), key=lambda v: int(v.peer))
            if v.peer.version == version]
    header = f"{'IP address':<25} {'Interface':<10} {'State':<10} {'Since':<12}  " \
             f"{'Interval':>8} {'Timeout':>8}"
    return ["1020-bfd1:", " " + header, *(" " + row for row in rows), "0000 "]


SUPPORTED = "show status, show protocols [all] [name], show route, show bfd sessions"


def answer(parts: Parts, command: str, version: int = 4) -> list[str] | None:
    """The reply lines to one command line; None to end the conversation."""
    words = command.split()
    lowered = [w.lower() for w in words]
    if lowered in (["quit"], ["exit"]):
        return None
    if lowered[:2] in (["show", "protocols"], ["show", "protocol"]):
        rest = words[2:]
        details = bool(rest) and rest[0].lower() == "all"
        rest = rest[1:] if details else rest
        if len(rest) <= 1:
            return protocols(parts, version, rest[0] if rest else None, details)
    elif lowered == ["show", "status"]:
        return status(parts)
    elif lowered == ["show", "route"]:
        return routes(parts, version)
    elif lowered == ["show", "bfd", "sessions"]:
        return bfd_sessions(parts, version)
    if not words:
        return ["9001 syntax error"]
    return [f"9001 Command not supported by bgpd ({SUPPORTED})"]


async def serve(parts: Parts, path: Path, version: int = 4) -> None:
    """Answer on ``path`` as BIRD (``version`` 4) or BIRD6 (6) does."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"0001 BIRD {VERSION} ready.\n".encode())
        try:
            while line := await reader.readline():
                out = answer(parts, line.decode(errors="replace"), version)
                if out is None:
                    break
                writer.write(("\n".join(out) + "\n").encode())
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    await serve_unix(handle, path)
