"""Why a peer with no session may be failing: TCP MD5 (RFC 2385).

A signature mismatch is invisible to ExaBGP (the kernel drops the segments; connections just
time out).  The kernel counts those drops per network namespace (``/proc/<pid>/net/netstat``
of any process in it): when they grow, the peers with no session are given a hint saying
which side's password is wrong or missing.  Pure functions; the shell reads the file.
"""

from __future__ import annotations

from bgpd.speaker.core import PeerSession

MD5_COUNTERS = ("TCPMD5NotFound", "TCPMD5Unexpected", "TCPMD5Failure")


def md5_drops(netstat: str) -> dict[str, int]:
    """TCP segments the kernel dropped for their MD5 signature (RFC 2385), by reason, from
    ``/proc/net/netstat``: expected and missing, unexpected, or wrong."""
    lines = netstat.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return {k: int(table.get(k, 0)) for k in MD5_COUNTERS}
    return dict.fromkeys(MD5_COUNTERS, 0)


def md5_hint(session: PeerSession, grew: dict[str, int]) -> str | None:
    """Why a peer with no session may be failing, from the growth of the MD5 counters."""
    counts = ", ".join(f"{k} +{v}" for k, v in grew.items())
    password = session.neighbor.password
    if password is not None and (grew.get("TCPMD5Failure") or grew.get("TCPMD5NotFound")):
        return (f"TCP MD5: this node's kernel dropped segments with a wrong or missing "
                f"signature ({counts}); check that both sides have the same password")
    if password is None and grew.get("TCPMD5Unexpected"):
        return (f"TCP MD5: this node's kernel dropped signed segments from a peer it has no "
                f"password for ({counts}); the peer has a password set")
    return None


def grown(before: dict[str, int] | None, now: dict[str, int]) -> dict[str, int]:
    """The counters that grew since ``before`` (none on the first reading)."""
    return {k: now[k] - before[k] for k in now if before and now[k] > before[k]}
