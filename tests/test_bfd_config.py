"""BFD's configuration: Calico Enterprise's BGPPeer field and BFDConfiguration resource, and
which peers get a session (:class:`bgpd.bfd.link.BfdLink`)."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import ip_address
from typing import Any

import pytest

from bgpd.bfd.link import BfdLink, Verdict
from bgpd.bfd.packet import Diag
from bgpd.bfd.service import Spec, Transition
from bgpd.bfd.session import Signal, SignalKind, Timers
from node_controller.errors import Invalid
from node_controller.models import BFDInterface, parse
from tests.test_desired import build, calico, node

TOR = {"peerIP": "10.0.0.1", "asNumber": 65001,
       "failureDetectionMode": "BFDIfDirectlyConnected"}


def bfd_config(name: str = "default", **spec: Any) -> dict[str, Any]:
    return calico("BFDConfiguration", name, **spec)


@pytest.mark.parametrize(("entry", "field", "words"), [
    ({"matchPattern": "eth0", "minimumSendInterval": "0ms"}, "minimumSendInterval",
     "whole number of milliseconds"),
    ({"matchPattern": "eth0", "minimumRecvInterval": "1500us"}, "minimumRecvInterval",
     "whole number of milliseconds"),
    ({"matchPattern": "eth0", "idleSendInterval": "soon"}, "idleSendInterval", "duration"),
    ({"matchPattern": "eth0", "multiplier": 0}, "multiplier", "outside 1..255"),
    ({"matchPattern": "e*th"}, "matchPattern", "prefix ending in *"),
    ({}, "matchPattern", "interface name"),
])
def test_a_bad_interface_entry_names_its_field(entry: dict[str, Any], field: str,
                                               words: str) -> None:
    with pytest.raises(Invalid) as err:
        parse(bfd_config(interfaces=[{"matchPattern": "*"}, entry]))
    assert err.value.field == f"spec.interfaces[1].{field}"
    assert words in err.value.message


def test_calico_enterprise_defaults_and_patterns() -> None:
    model = parse(bfd_config(nodeSelector="all()", interfaces=[
        {"matchPattern": "eth*"}, {"matchPattern": "bond0", "minimumSendInterval": "50ms",
                                   "multiplier": 3}]))
    eth, bond = model.interfaces  # type: ignore[union-attr]
    assert (eth.min_rx, eth.min_tx, eth.idle_tx, eth.multiplier) == (0.01, 0.1, 60.0, 5)
    assert (bond.min_tx, bond.multiplier) == (0.05, 3)
    assert eth.matches("eth1") and not eth.matches("bond0")
    assert bond.matches("bond0") and not bond.matches("bond01")
    assert BFDInterface("*").matches("anything")


def test_failure_detection_mode_is_validated() -> None:
    with pytest.raises(Invalid) as err:
        parse(calico("BGPPeer", "tor", **{**TOR, "failureDetectionMode": "BFD"}))
    assert err.value.field == "spec.failureDetectionMode"


def test_the_first_bfd_configuration_by_name_selecting_the_node_applies() -> None:
    cfg = build(node("n9", "10.0.0.9/24", labels={"rack": "a"}),
                calico("BGPPeer", "tor", **TOR),
                bfd_config("b-rack", nodeSelector="rack == 'a'",
                           interfaces=[{"matchPattern": "*", "multiplier": 7}]),
                bfd_config("c-all", interfaces=[{"matchPattern": "*"}]),
                bfd_config("a-other", nodeSelector="rack == 'b'",
                           interfaces=[{"matchPattern": "*"}]))
    assert cfg.bfd_configuration == "b-rack"
    assert [i.multiplier for i in cfg.bfd_interfaces] == [7]
    assert [(n.kind, n.name) for n in cfg.notices if n.kind == "BFDConfiguration"] == [
        ("BFDConfiguration", "c-all")]
    assert [p.failure_detection for p in cfg.peers] == ["BFDIfDirectlyConnected"]


class Recorder:
    """Stands in for the BFD service's door: records what the link asks for."""

    def __init__(self) -> None:
        self.configured: list[list[Spec]] = []
        self.dropped: dict[str, int] = {}

    def configure(self, specs: Iterable[Spec]) -> None:
        self.configured.append(list(specs))

    def stop(self) -> None:
        pass


def link() -> tuple[BfdLink, Recorder]:
    recorder = Recorder()
    return BfdLink(service=lambda _: recorder), recorder  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(("peer_ip", "interface", "pattern", "why"), [
    ("10.0.0.1", "eth0", "eth*", ""),
    ("10.9.0.1", "eth0", "eth*", "not directly connected (outside 10.0.0.0/24); the "
     'annotation bgpd/bfd-multihop: "true" gives it a multihop session'),
    ("10.0.0.1", "bond0", "eth*", "BFDConfiguration 'default': no interface entry matches "
     "bond0"),
    ("10.0.0.1", None, "eth*", "the interface of the node's address is not known"),
])
def test_which_peers_get_a_session(peer_ip: str, interface: str | None, pattern: str,
                                   why: str) -> None:
    cfg = build(node("n9", "10.0.0.9/24"), calico("BGPPeer", "tor", **{**TOR, "peerIP": peer_ip}),
                calico("BGPPeer", "plain", peerIP="10.0.0.2", asNumber=65001),
                bfd_config(interfaces=[{"matchPattern": pattern, "minimumRecvInterval": "100ms",
                                        "multiplier": 3}]))
    bfd, recorder = link()
    bfd.plan(cfg, cfg.peers, interface)
    if why:
        assert bfd.left_out == {ip_address(peer_ip): why}
        assert not recorder.configured
    else:
        assert recorder.configured == [[Spec(
            peer=ip_address(peer_ip), local=ip_address("10.0.0.9"), interface=interface,
            timers=Timers(min_tx=0.1, min_rx=0.1, idle_tx=60.0, multiplier=3))]]


@pytest.mark.parametrize(("peer_ip", "ttl_security", "spec"), [
    ("10.9.0.1", None, {"multihop": True, "min_ttl": 1, "interface": None}),
    ("10.9.0.1", 3, {"multihop": True, "min_ttl": 253, "interface": None}),
    ("10.0.0.1", 3, {"interface": "eth0"}),  # directly connected: single hop all the same
])
def test_the_multihop_annotation_gives_a_peer_elsewhere_a_multihop_session(
        peer_ip: str, ttl_security: int | None, spec: dict[str, Any]) -> None:
    peer = calico("BGPPeer", "far", **{**TOR, "peerIP": peer_ip},
                  **({"ttlSecurity": ttl_security} if ttl_security else {}))
    peer["metadata"]["annotations"] = {"bgpd/bfd-multihop": "true"}
    cfg = build(node("n9", "10.0.0.9/24"), peer, bfd_config(interfaces=[
        {"matchPattern": "eth*", "minimumRecvInterval": "100ms", "multiplier": 3}]))
    bfd, recorder = link()
    bfd.plan(cfg, cfg.peers, "eth0")
    assert not bfd.left_out
    assert recorder.configured == [[Spec(
        peer=ip_address(peer_ip), local=ip_address("10.0.0.9"),
        timers=Timers(min_tx=0.1, min_rx=0.1, idle_tx=60.0, multiplier=3), **spec)]]


def test_a_bad_multihop_annotation_names_it() -> None:
    obj = calico("BGPPeer", "far", **TOR)
    obj["metadata"]["annotations"] = {"bgpd/bfd-multihop": "yes"}
    with pytest.raises(Invalid, match='expected "true" or "false"') as caught:
        parse(obj)
    assert caught.value.field == "metadata.annotations.bgpd/bfd-multihop"


def test_a_failure_holds_bgp_down_until_up_and_admin_down_is_no_failure() -> None:
    cfg = build(node("n9", "10.0.0.9/24"), calico("BGPPeer", "tor", **TOR),
                bfd_config(interfaces=[{"matchPattern": "*"}]))
    bfd, _ = link()
    bfd.plan(cfg, cfg.peers, "eth0")
    tor = ip_address("10.0.0.1")
    assert bfd.on_event(Signal(tor, SignalKind.UP)) is None  # first Up: BGP was not held
    assert bfd.on_event(Signal(tor, SignalKind.DOWN, Diag.NEIGHBOR_DOWN, admin=True)) is None
    assert bfd.on_event(Signal(tor, SignalKind.DOWN, Diag.DETECTION_TIME_EXPIRED)) \
        is Verdict.DOWN
    assert bfd.failed == {tor} and bfd.failures[str(tor)] == 1
    assert bfd.on_event(Transition(tor, "Down", "Init", "none", False)) is None
    assert bfd.on_event(Signal(tor, SignalKind.UP)) is Verdict.UP
    assert bfd.failed == set()
    assert bfd.transitions[(str(tor), "Init")] == 1
