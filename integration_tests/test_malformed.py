"""Malformed UPDATEs from a peer that is not a Calico node, on the wire (RFC 7606).

One bgpd node, real ExaBGP and kernel; its BGPPeer is the tests' raw speaker
(:mod:`integration_tests.raw_speaker`), which sends UPDATEs byte for byte.  Each case checks
the kernel, the session (it stays up), the counter and the peer's status.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from integration_tests.cluster import TOR_IP, Cluster
from integration_tests.netns import NetLab
from integration_tests.raw_speaker import (
    MARKER,
    RawSpeaker,
    as_path,
    message,
    next_hop,
    origin,
    update,
)

RAW_AS = 65100


def test_a_malformed_update_withdraws_its_routes_and_keeps_its_withdrawals(
        lab: NetLab, tmp_path: Path) -> None:
    c = Cluster(lab, tmp_path, nodes=1, tor=False)
    node = c.nodes[0]
    ns = c._attach("raw", f"{TOR_IP}/24", "br0")
    c.write_resources([c.calico("BGPPeer", "raw", {"peerIP": TOR_IP, "asNumber": RAW_AS})])
    raw = RawSpeaker(ns.name, TOR_IP, asn=RAW_AS, workdir=tmp_path)
    c.start_all()
    try:
        def peer() -> dict[str, object]:
            return next(p for p in c.status(node)["peers"] if p["address"] == TOR_IP)

        def installed(prefix: str) -> bool:
            return any(r.startswith(prefix) for r in node.routes())

        c.wait(lambda: peer()["established"], 30, "the raw speaker's session")
        good = origin() + as_path([RAW_AS]) + next_hop(TOR_IP)
        raw.send(update(attrs=good, nlri=("172.20.1.0/24", "172.20.2.0/24")))
        c.wait(lambda: installed("172.20.1.0/24") and installed("172.20.2.0/24"), 10,
               "both routes in the kernel")
        # ORIGIN 5 on 172.20.1.0/24, in the UPDATE that withdraws 172.20.2.0/24: both go
        raw.send(update(withdrawn=("172.20.2.0/24",),
                        attrs=origin(5) + as_path([RAW_AS]) + next_hop(TOR_IP),
                        nlri=("172.20.1.0/24",)))
        c.wait(lambda: not installed("172.20.1.0/24") and not installed("172.20.2.0/24"), 10,
               "the malformed route treated as withdrawn, the withdrawal applied")
        assert peer()["update_errors"] == {"treat-as-withdraw: ORIGIN 'invalid'": 1}
        code, metrics = c.http(node, "/metrics")
        assert code == 200
        assert ('bgpd_update_errors_total{action="treat-as-withdraw",peer="198.51.100.1",'
                "reason=\"ORIGIN 'invalid'\"} 1.0") in metrics
        # a next hop of 0.0.0.0 is no next hop: refused; the valid route beside it is taken
        raw.send(update(attrs=origin() + as_path([RAW_AS]) + next_hop("0.0.0.0"),
                        nlri=("172.20.3.0/24",)))
        raw.send(update(attrs=good, nlri=("172.20.4.0/24",)))
        c.wait(lambda: installed("172.20.4.0/24"), 10, "the valid route")
        assert not installed("172.20.3.0/24")
        assert "rejected by policy (invalid_next_hop)" in c.bgpd(
            node, "routes", "--prefix", "172.20.3.0/24")
        assert peer()["established"] and peer()["flaps"] == 0
    finally:
        raw.close()
        c.stop_all()


def cluster_with_raw_peer(lab: NetLab, tmp_path: Path) -> tuple[Cluster, RawSpeaker]:
    c = Cluster(lab, tmp_path, nodes=1, tor=False)
    ns = c._attach("raw", f"{TOR_IP}/24", "br0")
    c.write_resources([c.calico("BGPPeer", "raw", {"peerIP": TOR_IP, "asNumber": RAW_AS})])
    return c, RawSpeaker(ns.name, TOR_IP, asn=RAW_AS, workdir=tmp_path)


@pytest.mark.parametrize(("what", "data", "notification"), [
    ("a bad marker", b"\x00" * 16 + message(4, b"")[16:], (1, 1)),
    ("a length over 4096", MARKER + (5000).to_bytes(2, "big") + bytes([2]) + b"\x00" * 200,
     (1, 2)),
], ids=["marker", "length"])
def test_a_message_that_cannot_be_read_gets_its_notification(
        lab: NetLab, tmp_path: Path, what: str, data: bytes,
        notification: tuple[int, int]) -> None:
    """RFC 4271 6.1: the session ends with NOTIFICATION 1/1 (Connection Not Synchronized)
    or 1/2 (Bad Message Length) — not a reset; the other sessions and routes stay."""
    c, raw = cluster_with_raw_peer(lab, tmp_path)
    node = c.nodes[0]
    c.start_all()
    try:
        c.wait(lambda: any(p["established"] for p in c.status(node)["peers"]), 30,
               "the raw speaker's session")
        pid = node.proc.pid if node.proc else None
        raw.send(data)
        c.wait(lambda: raw.notifications() == [notification], 10,
               f"NOTIFICATION {notification} for {what}")
        assert node.proc is not None and node.proc.poll() is None and node.proc.pid == pid
        assert c.status(node)["speaker"]["restarts"] == 0
    finally:
        raw.close()
        c.stop_all()


def test_unknown_optional_transitive_attributes_are_passed_on_with_the_partial_bit(
        lab: NetLab, tmp_path: Path) -> None:
    """RFC 4271 §5 and §9, as BIRD and FRR do: an optional transitive attribute bgpd does not
    know goes on to the next peer as received, with the Partial bit set; an unknown
    optional non-transitive one is dropped."""
    from integration_tests.raw_speaker import attr

    c = Cluster(lab, tmp_path, nodes=1, tor=False)
    node = c.nodes[0]
    first = c._attach("raw", f"{TOR_IP}/24", "br0")
    other_ip = "198.51.100.2"
    second = c._attach("raw2", f"{other_ip}/24", "br0")
    c.write_resources([c.calico("BGPPeer", "raw", {"peerIP": TOR_IP, "asNumber": RAW_AS}),
                       c.calico("BGPPeer", "raw2", {"peerIP": other_ip, "asNumber": 65200})])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sender = RawSpeaker(first.name, TOR_IP, asn=RAW_AS, workdir=tmp_path / "a")
    receiver = RawSpeaker(second.name, other_ip, asn=65200, workdir=tmp_path / "b")
    c.start_all()
    try:
        c.wait(lambda: all(p["established"] for p in c.status(node)["peers"])
               and len(c.status(node)["peers"]) == 2, 30, "both raw sessions")
        transitive = attr(0xC0, 99, b"\x01\x02\x03")
        non_transitive = attr(0x80, 100, b"\x04")
        sender.send(update(attrs=origin() + as_path([RAW_AS]) + next_hop(TOR_IP)
                           + transitive + non_transitive, nlri=("172.20.1.0/24",)))

        def passed_on() -> dict[int, tuple[int, bytes]] | None:
            return next((attrs for attrs, nlri in receiver.updates()
                         if "172.20.1.0/24" in nlri), None)

        c.wait(lambda: passed_on() is not None, 15, "the route at the other peer")
        attrs = passed_on()
        assert attrs is not None
        assert attrs[99] == (0xE0, b"\x01\x02\x03")  # optional, transitive, Partial
        assert 100 not in attrs
    finally:
        sender.close()
        receiver.close()
        c.stop_all()
