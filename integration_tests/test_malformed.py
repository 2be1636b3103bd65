"""Malformed UPDATEs from a peer that is not a Calico node, on the wire (RFC 7606).

One bgpd node, real ExaBGP and kernel; its BGPPeer is the tests' raw speaker
(:mod:`integration_tests.raw_speaker`), which sends UPDATEs byte for byte.  Each case checks
the kernel, the session (it stays up), the counter and the peer's status.
"""

from __future__ import annotations

from pathlib import Path

from integration_tests.cluster import TOR_IP, Cluster
from integration_tests.netns import NetLab
from integration_tests.raw_speaker import RawSpeaker, as_path, next_hop, origin, update

RAW_AS = 65100


def test_a_malformed_update_withdraws_its_routes_and_keeps_its_withdrawals(
        lab: NetLab, tmp_path: Path) -> None:
    c = Cluster(lab, tmp_path, nodes=1, tor=False)
    node = c.nodes[0]
    ns = c._attach("raw", f"{TOR_IP}/24", "br0")
    c.write_resources([c.calico("BGPPeer", "raw", {"peerIP": TOR_IP, "asNumber": RAW_AS})])
    raw = RawSpeaker(ns.name, TOR_IP, asn=RAW_AS)
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
        assert code == 200 and ('bgpd_update_errors_total{action="treat-as-withdraw",peer="198.51.100.1",'
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
