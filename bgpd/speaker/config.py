"""ExaBGP configuration rendering (pure): the speaker's neighbours in, a configuration file
and an environment out.

A :class:`Neighbor` is the speaker's own value: everything ExaBGP is told about one session,
already checked (:mod:`bgpd.translate` builds them from the node's DesiredConfig and leaves
out, with an error, whatever ExaBGP or the kernel would refuse).  Rendering therefore never
fails; :func:`problems` lists what a neighbour breaks, for the translation and the tests.

What each rendered neighbor gets, and why:

* ``router-id``, ``local-as``/``peer-as`` (both mandatory in ExaBGP), ``local-address``
  (the node address, as Calico's ``sourceAddress: UseNodeIP``), ``passive`` per peer (the mesh
  string rule), ``connect PORT`` for a peer on another port;
* ``hold-time``: three keepalives (BGPPeer ``keepaliveTime``), else 240 s as BIRD;
* ``md5-password``; GTSM for ``ttlSecurity: N`` as ``outgoing-ttl 255`` and
  ``incoming-ttl 256-N`` (ExaBGP has no ``ttl-security`` keyword);
* ``capability``: graceful restart with the peer's restart time, route refresh, add-path;
  ``family``: the peer's address family; ``manual-eor`` (we send End-of-RIB after our routes,
  not ExaBGP before them); ``adj-rib-in false`` (the daemon keeps its own);
* one API process (the bridge to the daemon's socket) named in every neighbor's ``api``.

The environment turns off what bites (privilege drop, CLI pipes), makes ExaBGP listen
(``tcp.bind``/``tcp.port``: it does not by default), acknowledges commands and logs to
stderr.  Passwords are written only to the file (mode 0600), never to the environment.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ribs.types import Address

DEFAULT_HOLD = 240
MD5_MAX = 80  # TCP_MD5SIG_MAXKEYLEN
HOLD_MAX = 65535  # a 16-bit field of OPEN; 0 or at least 3 (RFC 4271 4.2)
RESTART_MAX = 4095  # graceful restart time: 12 bits (RFC 4724 3)
AS_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Neighbor:
    """One BGP session as ExaBGP is told it."""

    name: str  # BIRD's protocol name, shown as the neighbour's description
    address: Address
    peer_as: int
    local_as: int
    port: int = 179
    passive: bool = False
    local_address: Address | None = None
    password: bytes | None = field(default=None, repr=False)
    ttl_security: int | None = None
    hold_time: int = DEFAULT_HOLD
    restart_time: int = 120

    @property
    def family(self) -> str:
        return "ipv4 unicast" if self.address.version == 4 else "ipv6 unicast"


def problems(n: Neighbor) -> list[tuple[str, str]]:
    """(what, why) for each value of ``n`` that ExaBGP or the kernel would refuse."""
    out = []
    if n.address.is_unspecified or n.address.is_multicast:
        out.append(("address", f"{n.address} cannot be a BGP peer"))
    for what, asn in (("peer AS", n.peer_as), ("local AS", n.local_as)):
        if not 1 <= asn <= AS_MAX:
            out.append((what, f"AS number {asn} is outside 1..{AS_MAX}"))
    if not 1 <= n.port <= 65535:
        out.append(("port", f"port {n.port} is outside 1..65535"))
    if n.password is not None and not 1 <= len(n.password) <= MD5_MAX:
        out.append(("password", f"a TCP MD5 password has 1 to {MD5_MAX} bytes, "
                                f"this one {len(n.password)}"))
    if n.ttl_security is not None and not 1 <= n.ttl_security <= 255:
        out.append(("ttl security", f"{n.ttl_security} hops is outside 1..255"))
    if not (n.hold_time == 0 or 3 <= n.hold_time <= HOLD_MAX):
        out.append(("hold time", f"{n.hold_time} s: the hold time (three keepalives) is 0 "
                                 f"or 3..{HOLD_MAX} s"))
    if not 0 <= n.restart_time <= RESTART_MAX:
        out.append(("restart time", f"{n.restart_time} s is outside 0..{RESTART_MAX} s "
                                    "(graceful restart's 12-bit field)"))
    if n.local_address is not None and n.local_address.version != n.address.version:
        out.append(("local address", f"{n.local_address} is not of the peer's family"))
    return out


@dataclass(frozen=True, slots=True)
class SpeakerConfig:
    router_id: IPv4Address
    neighbors: tuple[Neighbor, ...] = ()
    listen_port: int = 179
    bind_addresses: tuple[Address, ...] = ()  # empty: every address
    log_level: str = "WARNING"
    reactor_speed: float = 5.0
    extra_env: tuple[tuple[str, str], ...] = field(default=())


def _quote(text: str) -> str:
    return json.dumps(text)  # ExaBGP accepts double-quoted strings with backslash escapes


def _statements(n: Neighbor, *, router_id: IPv4Address,
                process: str) -> tuple[list[str], list[str]]:
    """``n``'s statements: (its own — description, password —, those peers can share)."""
    own = [f"description {_quote(n.name)};"]
    if n.password is not None:
        # base64 keeps any byte of a password out of ExaBGP's tokeniser
        own += [f"md5-password {base64.b64encode(n.password).decode()};", "md5-base64 true;"]
    shared = [
        f"router-id {router_id};",
        f"local-as {n.local_as};",
        f"peer-as {n.peer_as};",
        f"hold-time {n.hold_time};",
        "manual-eor true;",
        "adj-rib-in false;",
        "group-updates true;",
    ]
    if n.local_address is not None:
        shared.append(f"local-address {n.local_address};")
    if n.passive:
        shared.append("passive true;")
    if n.port != 179:
        shared.append(f"connect {n.port};")
    if n.ttl_security:
        shared += ["outgoing-ttl 255;", f"incoming-ttl {256 - n.ttl_security};"]
    shared += [
        f"family {{ {n.family}; }}",
        f"capability {{ graceful-restart {n.restart_time}; route-refresh enable;"
        " add-path send/receive; }",
        f"api {{ processes [ {process} ]; neighbor-changes;"
        " receive { parsed; update; notification; open; refresh; } }",
    ]
    return own, shared


def render(config: SpeakerConfig, *, bridge: Sequence[str], process: str = "bgpd") -> str:
    """The configuration file's text; ``bridge`` is the API process's command line.  The
    neighbours are the translation's: checked, one per address.

    Neighbours alike but for address, description and password (a mesh: all of them) share
    a template, and each is one line that inherits it: ExaBGP parses a file character by
    character, and 599 peers written out in full took 0.26 s of its start, with templates
    0.07 s.  The template holds none of a neighbour's own keys (ExaBGP's ``inherit`` would
    overwrite them), so each neighbour is what it would be written out in full."""
    templates: dict[tuple[str, ...], str] = {}
    lines = []
    for n in config.neighbors:
        own, shared = _statements(n, router_id=config.router_id, process=process)
        name = templates.setdefault(tuple(shared), f"peers{len(templates) + 1}")
        lines.append(f"neighbor {n.address} {{ inherit {name}; {' '.join(own)} }}")
    blocks = [f"process {process} {{\n    run {' '.join(shlex.quote(a) for a in bridge)};\n"
              "    encoder json;\n}"]
    if templates:
        blocks.append("template {\n" + "".join(
            f"    neighbor {name} {{\n" + "".join(f"        {s}\n" for s in shared) + "    }\n"
            for shared, name in templates.items()) + "}")
    if lines:
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def environment(config: SpeakerConfig) -> dict[str, str]:
    binds = " ".join(str(a) for a in config.bind_addresses) or "0.0.0.0 ::"
    env = {
        "exabgp_api_ack": "true",
        "exabgp_api_cli": "false",
        "exabgp_api_encoder": "json",
        "exabgp_api_respawn": "true",
        "exabgp_daemon_drop": "false",
        "exabgp_daemon_daemonize": "false",
        "exabgp_daemon_user": "root",
        "exabgp_tcp_bind": binds,
        "exabgp_tcp_port": str(config.listen_port),
        "exabgp_log_destination": "stderr",
        "exabgp_log_level": config.log_level,
        "exabgp_log_short": "true",
        "exabgp_reactor_speed": str(config.reactor_speed),
        "exabgp_bgp_passive": "false",
    }
    env.update(dict(config.extra_env))
    return env
