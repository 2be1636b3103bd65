"""ExaBGP configuration rendering (pure): the peer list in, a configuration file and an
environment out.

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

from node_controller.desired import PeerConfig
from ribs.types import Address

DEFAULT_HOLD = 240
MD5_MAX = 80  # TCP_MD5SIG_MAXKEYLEN


class ConfigError(ValueError):
    """A peer list that cannot be rendered (named in the message)."""


@dataclass(frozen=True, slots=True)
class SpeakerConfig:
    router_id: IPv4Address
    peers: tuple[PeerConfig, ...] = ()
    listen_port: int = 179
    bind_addresses: tuple[Address, ...] = ()  # empty: every address
    log_level: str = "WARNING"
    reactor_speed: float = 5.0
    extra_env: tuple[tuple[str, str], ...] = field(default=())


def _quote(text: str) -> str:
    return json.dumps(text)  # ExaBGP accepts double-quoted strings with backslash escapes


def hold_time(peer: PeerConfig) -> int:
    if peer.keepalive_time:
        return max(3, round(peer.keepalive_time * 3))
    return DEFAULT_HOLD


def render_neighbor(peer: PeerConfig, *, router_id: IPv4Address, process: str) -> str:
    family = "ipv4 unicast" if peer.address.version == 4 else "ipv6 unicast"
    lines = [
        f"neighbor {peer.address} {{",
        f"    description {_quote(peer.name)};",
        f"    router-id {router_id};",
        f"    local-as {peer.local_as};",
        f"    peer-as {peer.peer_as};",
        f"    hold-time {hold_time(peer)};",
        "    manual-eor true;",
        "    adj-rib-in false;",
        "    group-updates true;",
    ]
    if peer.source_address is not None and peer.source_address.version == peer.address.version:
        lines.append(f"    local-address {peer.source_address};")
    if peer.passive:
        lines.append("    passive true;")
    if peer.port != 179:
        lines.append(f"    connect {peer.port};")
    if peer.password is not None:
        # base64 keeps any character of a password out of ExaBGP's tokeniser
        encoded = base64.b64encode(peer.password.encode()).decode()
        lines.append(f"    md5-password {encoded};")
        lines.append("    md5-base64 true;")
    if peer.ttl_security:
        lines.append("    outgoing-ttl 255;")
        lines.append(f"    incoming-ttl {256 - peer.ttl_security};")
    lines += [
        f"    family {{ {family}; }}",
        "    capability {",
        f"        graceful-restart {int(peer.restart_time)};",
        "        route-refresh enable;",
        "        add-path send/receive;",
        "    }",
        f"    api {{ processes [ {process} ]; neighbor-changes;"
        " receive { parsed; update; notification; open; refresh; } }",
        "}",
    ]
    return "\n".join(lines)


def render(config: SpeakerConfig, *, bridge: Sequence[str], process: str = "bgpd") -> str:
    """The configuration file's text; ``bridge`` is the API process's command line."""
    seen: dict[Address, str] = {}
    for peer in config.peers:
        if peer.password is not None and not 0 < len(peer.password.encode()) <= MD5_MAX:
            raise ConfigError(f"peer {peer.name}: a TCP MD5 password has 1 to {MD5_MAX} bytes")
        if peer.address in seen:
            raise ConfigError(f"peers {seen[peer.address]} and {peer.name} share address "
                              f"{peer.address}: one session per address")
        seen[peer.address] = peer.name
    blocks = [
        f"process {process} {{\n    run {' '.join(shlex.quote(a) for a in bridge)};\n"
        "    encoder json;\n}",
        *(render_neighbor(p, router_id=config.router_id, process=process) for p in config.peers),
    ]
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
