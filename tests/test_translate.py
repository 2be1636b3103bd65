"""The translation DesiredConfig → speaker neighbours (pure): nothing raises, every peer is
applied or reported on its resource, every rendered file is one ExaBGP accepts, and each
neighbour ExaBGP reads from it is the neighbour written out in full."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_address
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgpd.speaker.config import SpeakerConfig, _statements, problems, render
from bgpd.translate import translate
from node_controller.desired import (
    RANK_GLOBAL,
    RANK_MESH,
    RANK_NODE,
    RANK_REVERSE,
    DesiredConfig,
    PeerConfig,
)
from ribs.types import prefix

NODE = IPv4Interface("198.51.100.1/24")
NODE6 = IPv6Interface("2001:db8::1/64")
BRIDGE = [sys.executable, "/nonexistent/bridge.py", "/tmp/x.sock"]


def config(*peers: PeerConfig, v6: bool = True, announce: tuple[str, ...] = ()) -> DesiredConfig:
    return DesiredConfig(node="node-0", router_id=NODE.ip, node_address=NODE,
                         node_address_v6=NODE6 if v6 else None, peers=peers,
                         announce=tuple(prefix(p) for p in announce))


def peer(address: str, *, kind: str = "global", port: int = 179, origin: str = "tor",
         **kw: object) -> PeerConfig:
    name = {"mesh": "Mesh", "global": "Global", "node": "Node"}[kind] + "_" + address
    name += f"_port_{port}" if port != 179 else ""
    source = ("BGPConfiguration", "default") if kind == "mesh" else ("BGPPeer", origin)
    rank = {"global": RANK_GLOBAL, "node": RANK_NODE, "mesh": RANK_MESH}[kind]
    return PeerConfig(name=name, address=ip_address(address), port=port, peer_as=64512,
                      local_as=64512, type=kind, origin=source, rank=rank,
                      source_address=NODE.ip, **kw)  # type: ignore[arg-type]


def test_a_bgppeer_on_a_mesh_node_at_another_port_is_an_error_not_an_exit() -> None:
    mesh = peer("192.0.2.2", kind="mesh")
    alt = peer("192.0.2.2", port=1790, origin="tor-alt-port")
    t = translate(config(mesh, alt), running={mesh.address: mesh.name})
    assert [n.name for n in t.neighbors] == [mesh.name]  # the running session stays
    (error,) = t.errors
    assert (error.kind, error.name, error.field) == ("BGPPeer", "tor-alt-port", "spec.peerIP")
    assert "Mesh_192.0.2.2 (from BGPConfiguration/default) already has the session" in (
        error.message)
    # nothing running yet: the explicit peer wins, as confd ranks peers for one address
    t = translate(config(mesh, alt))
    assert [n.port for n in t.neighbors] == [1790]
    assert t.errors[0].kind == "BGPConfiguration"


def test_one_precedence_decides_between_the_ports_of_one_address() -> None:
    """The rank the configuration gave each peering decides here too: a BGPPeer scoped to
    this node wins over the reverse side of another node's BGPPeer, whatever their ports
    (both are node peerings: their kind alone would have let the lower port win)."""
    scoped = replace(peer("192.0.2.7", kind="node", port=1790, origin="scoped"),
                     rank=RANK_NODE)
    reverse = replace(peer("192.0.2.7", kind="node", origin="theirs"), rank=RANK_REVERSE)
    t = translate(config(reverse, scoped))
    assert [(n.name, n.port) for n in t.neighbors] == [(scoped.name, 1790)]
    (error,) = t.errors
    assert (error.kind, error.name) == ("BGPPeer", "theirs")


def test_bad_passwords_families_and_timers_are_errors_on_their_resource() -> None:
    t = translate(config(
        peer("192.0.2.3", password=""),
        peer("192.0.2.4", password="é" * 41),  # 82 bytes
        peer("2001:db8::9", origin="v6"),
        peer("192.0.2.5", keepalive_time=30000.0),
        peer("192.0.2.6", kind="mesh", restart_time=5000.0),
        peer("192.0.2.7", password="x" * 80, ttl_security=1, keepalive_time=1.0),
        peer("198.51.100.1", origin="myself"),
        v6=False, announce=("172.17.0.0/24", "fd00::/64")))
    assert [n.name for n in t.neighbors] == ["Global_192.0.2.7"]
    assert t.neighbors[0].hold_time == 3 and t.neighbors[0].password == b"x" * 80
    fields = {(e.name, e.field) for e in t.errors}
    assert ("tor", "spec.password.secretKeyRef") in fields
    assert ("v6", "spec.peerIP") in fields
    assert ("tor", "spec.keepaliveTime") in fields
    assert ("default", "spec.nodeMeshMaxRestartTime") in fields
    assert ("myself", "spec.peerIP") in fields
    assert ("node-0", "metadata.annotations.projectcalico.org/IPv6Address") in fields
    assert t.announce == (prefix("172.17.0.0/24"),)
    assert any("this one 82" in e.message for e in t.errors)


def test_errors_say_the_value_given_and_blame_the_node_at_our_address() -> None:
    clone = PeerConfig(name="Mesh_198_51_100_1", address=NODE.ip, port=179, peer_as=64512,
                       local_as=64512, type="mesh", calico_node="node-0-clone",
                       source_address=NODE.ip)
    t = translate(config(clone, peer("192.0.2.8", keepalive_time=3_600_000_000.0),
                         peer("192.0.2.9", restart_time=3_600_000_000.0)))
    assert not t.neighbors
    said = {(e.kind, e.name, e.field): e.message for e in t.errors}
    assert said[("Node", "node-0-clone", "metadata.annotations.projectcalico.org/IPv4Address")] \
        == ("198.51.100.1 is node 'node-0''s own address: no session from it to "
            "'node-0-clone' (Mesh_198_51_100_1, from BGPConfiguration/default): left out")
    assert said[("BGPPeer", "tor", "spec.keepaliveTime")] == (
        "peer Global_192.0.2.8: a keepalive time of 3600000000 s makes a hold time (three "
        "keepalives) of 10800000000 s; at most 65535 s: left out")
    assert said[("BGPPeer", "tor", "spec.maxRestartTime")] == (
        "peer Global_192.0.2.9: 3600000000 s is outside 0..4095 s (graceful restart's 12-bit "
        "field): left out")


addresses = st.sampled_from(["192.0.2.2", "192.0.2.3", "198.51.100.1", "2001:db8::2",
                             "2001:db8::1", "0.0.0.0", "224.0.0.5"])
passwords = st.none() | st.text(max_size=50)
seconds = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 100)
peers = st.builds(
    lambda address, kind, port, asn, pw, ttl, keep, restart, passive, source: PeerConfig(
        name=f"{kind}_{address}_{port}", address=ip_address(address), port=port, peer_as=asn,
        local_as=64512, type=kind, passive=passive, password=pw, ttl_security=ttl,
        keepalive_time=keep, restart_time=restart,
        source_address=ip_address("198.51.100.1") if source else None,
        origin=("BGPPeer", f"p-{address}-{port}")),
    addresses, st.sampled_from(["mesh", "global", "node"]),
    st.sampled_from([179, 1790, 0, 70000]), st.integers(0, 2**32), passwords,
    st.none() | st.integers(0, 300), st.none() | seconds, seconds, st.booleans(),
    st.booleans())
configs = st.builds(
    lambda ps, v6: DesiredConfig(node="n", router_id=NODE.ip, node_address=NODE,
                                 node_address_v6=NODE6 if v6 else None, peers=tuple(ps)),
    st.lists(peers, max_size=8), st.booleans())


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs, st.dictionaries(addresses.map(ip_address), st.text(max_size=5), max_size=3))
def test_every_peer_is_applied_or_reported(desired: DesiredConfig,
                                           running: dict[object, str]) -> None:
    t = translate(desired, running=running)  # type: ignore[arg-type]
    applied = {p.name for p in t.peers}
    reported = " ".join(e.message for e in t.errors)
    for p in desired.peers:
        assert p.name in applied or f"peer {p.name}:" in reported
    assert len({n.address for n in t.neighbors}) == len(t.neighbors)  # one per address
    assert all(not problems(n) for n in t.neighbors)
    render(SpeakerConfig(router_id=IPv4Address("198.51.100.1"), neighbors=t.neighbors),
           bridge=BRIDGE)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_exabgp_validates_every_rendered_configuration(desired: DesiredConfig) -> None:
    t = translate(desired)
    text = render(SpeakerConfig(router_id=IPv4Address("198.51.100.1"), neighbors=t.neighbors),
                  bridge=BRIDGE)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "exabgp.conf"
        path.write_text(text)
        proc = subprocess.run([sys.executable, "-c",
                               "from exabgp.application.main import main; main()",
                               "validate", str(path)], capture_output=True, text=True,
                              timeout=60)
    assert proc.returncode == 0, text + proc.stdout + proc.stderr


def written_out(config: SpeakerConfig) -> str:
    """``config``'s file with every neighbour written out in full, no template."""
    head = render(SpeakerConfig(router_id=config.router_id), bridge=BRIDGE)
    return head + "".join(
        f"\nneighbor {n.address} {{\n" + "".join(f"    {s}\n" for group in statements
                                                  for s in group) + "}\n"
        for n in config.neighbors
        for statements in [_statements(n, router_id=config.router_id, process="bgpd")])


def exabgp_neighbors(text: str, folder: Path) -> dict[str, tuple[str, object, dict[str, str]]]:
    from exabgp.configuration.configuration import Configuration
    from exabgp.environment import getenv
    from exabgp.logger import log

    log.init(getenv())
    path = folder / f"exabgp-{len(list(folder.iterdir()))}.conf"
    path.write_text(text)
    configuration = Configuration([str(path)])
    assert configuration.reload(), configuration.error
    return {key: (str(n), n.api, {k: str(v) for k, v in n.items()})
            for key, n in configuration.neighbors.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_a_neighbour_that_inherits_its_template_is_the_neighbour_written_out(
        desired: DesiredConfig) -> None:
    t = translate(desired)
    speaker = SpeakerConfig(router_id=IPv4Address("198.51.100.1"), neighbors=t.neighbors)
    text = render(speaker, bridge=BRIDGE)
    assert text.count("\nneighbor ") == len(t.neighbors)
    with tempfile.TemporaryDirectory() as folder:
        inherited = exabgp_neighbors(text, Path(folder))
        full = exabgp_neighbors(written_out(speaker), Path(folder))
    assert len(inherited) == len(t.neighbors)
    assert inherited == full
