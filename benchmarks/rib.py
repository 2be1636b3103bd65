"""Routing core throughput: announcements and withdrawals through policy, table, export and
the FIB plan.

    python -m benchmarks.rib --routes 100000 --peers 4 --json

``--routes`` distinct prefixes (``/32``s inside the pool), each announced by ``--candidates``
of the ``--peers`` iBGP peers (default: all of them, so every prefix has that many equal
paths and becomes an ECMP route), then withdrawn: 2 * routes * candidates updates.  The
process tunes its garbage collector as the daemon does.  Reports updates per second, peak RSS
and the memory held per stored route (RSS growth over the baseline of the same process).
"""

from __future__ import annotations

import argparse
import resource
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from benchmarks.common import report
from bgpd.runtime import tune_gc
from ribs.context import EncapMode, NodeContext, Pool, PrefixSet
from ribs.export import ExportPeer
from ribs.rib import Rib, Session
from ribs.types import Attributes, Route, Source, prefix


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run(routes: int, peers: int, candidates: int) -> dict[str, float | int]:
    ctx = NodeContext(
        local_as=64512, router_id=IPv4Address("10.10.0.5"),
        node_v4=IPv4Interface("10.10.0.5/16"),
        own_blocks=PrefixSet([IPv4Network("172.17.5.0/24")]),
        pools=(Pool(IPv4Network("172.16.0.0/12"), ipip=EncapMode.ALWAYS),), interface="eth0",
    )
    rib = Rib(ctx)
    sources = [Source.bgp(IPv4Address(f"10.10.1.{i + 1}"), peer_as=64512, local_as=64512,
                          router_id=IPv4Address(f"10.10.1.{i + 1}")) for i in range(peers)]
    rib.set_peers([ExportPeer(s.key, s.address, 64512, 64512, router_id=s.router_id)  # type: ignore[arg-type]
                   for s in sources])
    for s in sources:
        rib.peer_up(Session(s, graceful_restart=True), now=0.0)
    base = int(IPv4Address("172.18.0.0"))
    prefixes = [prefix((base + i, 32), version=4) for i in range(routes)]
    attrs = [Attributes(next_hop=s.address, local_pref=100) for s in sources]
    # prefix i comes from `candidates` peers, starting at peer i mod peers
    feeds = [(sources[(i + j) % peers], attrs[(i + j) % peers], p)
             for j in range(candidates) for i, p in enumerate(prefixes)]
    tune_gc()  # as the daemon does at start
    before = rss_mb()

    start = time.perf_counter()
    for s, a, p in feeds:
        rib.receive(Route(p, s, a))
    announced = time.perf_counter() - start
    fib = len(rib.fib_routes())
    held = rss_mb() - before
    peak = rss_mb()
    start = time.perf_counter()
    for s, _, p in feeds:
        rib.withdraw(p, s.key)
    withdrawn = time.perf_counter() - start
    assert fib == routes and not rib.fib_routes() and len(rib.table) == 0

    stored = routes * candidates
    updates = 2 * stored
    seconds = announced + withdrawn
    return {
        "updates": updates,
        "seconds": round(seconds, 3),
        "updates_per_s": round(updates / seconds),
        "announce_per_s": round(stored / announced),
        "withdraw_per_s": round(stored / withdrawn),
        "routes": routes,
        "peers": peers,
        "candidates_per_prefix": candidates,
        "peak_rss_mb": round(peak, 1),
        "bytes_per_route": round(held * 2**20 / stored),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--routes", type=int, default=100_000)
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=None,
                        help="peers announcing each prefix (default: all of them, so every "
                             "prefix has --peers paths and a --peers-way ECMP route)")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    candidates = args.peers if args.candidates is None else args.candidates
    if not 1 <= candidates <= args.peers:
        parser.error("--candidates must be between 1 and --peers")
    report("rib", run(args.routes, args.peers, candidates), save=not args.no_save)


if __name__ == "__main__":
    main()
