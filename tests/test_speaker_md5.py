"""Reading the kernel's TCP MD5 drop counters and turning their growth into a peer's hint."""

from __future__ import annotations

from ipaddress import ip_address

from bgpd.speaker.config import Neighbor
from bgpd.speaker.core import PeerSession
from bgpd.speaker.md5 import md5_drops, md5_hint

NETSTAT = (
    "TcpExt: SyncookiesSent TW TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPAckCompressed\n"
    "TcpExt: 0 677 2 0 5 9\n"
    "IpExt: InNoRoutes InTruncatedPkts\n"
    "IpExt: 0 0\n"
)


def peer(password: str | None) -> PeerSession:
    return PeerSession(Neighbor(name="Global_198_51_100_1", address=ip_address("198.51.100.1"),
                                peer_as=65000, local_as=64512,
                                password=password.encode() if password else None))


def test_counters_read_by_name() -> None:
    assert md5_drops(NETSTAT) == {"TCPMD5NotFound": 2, "TCPMD5Unexpected": 0,
                                  "TCPMD5Failure": 5}


def test_missing_counters_read_as_zero() -> None:
    assert md5_drops("IpExt: A\nIpExt: 1\n") == dict.fromkeys(
        ("TCPMD5NotFound", "TCPMD5Unexpected", "TCPMD5Failure"), 0)
    assert md5_drops("TcpExt: TW\nTcpExt: 3\n")["TCPMD5Failure"] == 0


def test_hints() -> None:
    wrong = md5_hint(peer("secret"), {"TCPMD5Failure": 3})
    assert wrong is not None and "same password" in wrong and "TCPMD5Failure +3" in wrong
    assert md5_hint(peer("secret"), {"TCPMD5NotFound": 1}) is not None
    # signed segments for a peer without a password: the other side has one
    unexpected = md5_hint(peer(None), {"TCPMD5Unexpected": 4})
    assert unexpected is not None and "the peer has a password set" in unexpected
    # counters that say nothing about this peer
    assert md5_hint(peer(None), {"TCPMD5Failure": 3}) is None
    assert md5_hint(peer("secret"), {"TCPMD5Unexpected": 3}) is None
