"""A one-node demonstration of what bgpd does to a node's routing table, on this machine.

    python -m integration_tests.demo [--nodes 600] [--keep]

It builds a node namespace the way a Calico node looks (eth0 on the node network, tunl0, a
pod behind a ``cali`` veth with Felix's ``/32`` route), then lets bgpd's kernel sync install
what the seed cluster's node would learn — one ``/24`` per other node via tunl0 onlink, and a
blackhole for its own block — and shows: the routes in Calico's exact shape, Felix's route
untouched, an administrator's deletion repaired, and everything owned removed on request.
Nothing leaves the namespaces it creates; they are removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from ipaddress import IPv4Network

from bgpd.kernel import Kernel
from bgpd.kernel_sync import KernelSync
from integration_tests.netns import Namespace, NetLab, tunl0
from ribs.kernel_plan import KernelRoute

# Calico's seed-cluster pool is written 172.17.0.0/12; as a network that is 172.16.0.0/12.
POOL = IPv4Network("172.17.0.0/12", strict=False)
FIRST_BLOCK = int(IPv4Network("172.17.0.0/24").network_address)
NODE_NET = IPv4Network("198.18.0.0/22")  # benchmark range: no real network is addressed


def seed_cluster_routes(nodes: int, me: int) -> list[KernelRoute]:
    """What node ``me`` of an ``nodes``-node IPIP mesh installs: other blocks, own blackhole."""
    blocks = [IPv4Network((FIRST_BLOCK + 256 * n, 24)) for n in range(nodes)]
    assert all(block.subnet_of(POOL) for block in blocks)
    routes = []
    for n in range(nodes):
        if n == me:
            routes.append(KernelRoute.blackhole(blocks[n]))
        else:
            gateway = NODE_NET.network_address + 1 + n
            routes.append(KernelRoute.via(blocks[n], gateway, "tunl0", onlink=True))
    return routes


def show(ns: Namespace, title: str, lines: list[str], limit: int = 8) -> None:
    print(f"\n$ ip -n {ns} route   # {title}")
    for line in lines[:limit]:
        print("  " + line)
    if len(lines) > limit:
        print(f"  ... ({len(lines)} routes in all)")


async def demo(ns: Namespace, nodes: int) -> None:
    kernel = Kernel(netns=ns.name)
    sync = KernelSync(kernel)
    adopted = await sync.adopt()
    print(f"adopted {len(adopted)} owned routes left by an earlier run (none on a new node)")
    task = asyncio.create_task(sync.run(), name="kernel-sync")
    start = time.perf_counter()
    sync.set_desired(seed_cluster_routes(nodes, me=4))
    await asyncio.wait_for(sync.synced.wait(), 30)
    took = time.perf_counter() - start
    lines = ns.routes()
    show(ns, f"{nodes - 1} learned blocks + own blackhole installed in {took:.3f}s", lines)
    print("  Felix's pod route is still there:",
          next(line for line in lines if "cali" in line))

    victim = "172.17.1.0/24"
    print(f"\n$ ip -n {ns} route del {victim}   # an administrator removes one of ours")
    ns.ip("route", "del", victim)
    start = time.perf_counter()
    while not ns.routes(victim):
        if time.perf_counter() - start > 5:
            raise SystemExit("the route was not restored within 5 s")
        await asyncio.sleep(0.005)
    print(f"  restored in {time.perf_counter() - start:.3f}s: {ns.routes(victim)[0]}")

    sync.set_desired([])
    await asyncio.wait_for(sync.synced.wait(), 30)
    show(ns, "all owned routes removed; Felix's and the kernel's stay", ns.routes())
    print(f"\nkernel sync counters: {sync.stats}")
    task.cancel()
    kernel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=600, help="cluster size (default 600)")
    parser.add_argument("--keep", action="store_true", help="leave the namespaces in place")
    args = parser.parse_args()
    lab = NetLab()
    try:
        node = lab.namespace("node")
        pod = lab.namespace("pod")
        lab.veth(node, "eth0", node, "eth0-fabric")
        lab.address(node, "eth0", f"{NODE_NET.network_address + 5}/{NODE_NET.prefixlen}")
        kind = tunl0(node)
        print(f"node namespace {node}: eth0 {NODE_NET.network_address + 5}, tunl0 ({kind})")
        lab.veth(node, "cali1a2b3c4d5e6", pod, "eth0")
        lab.address(pod, "eth0", "172.17.4.10/32")
        node.ip("route", "add", "172.17.4.10/32", "dev", "cali1a2b3c4d5e6", "proto", "boot",
                "scope", "link")
        asyncio.run(demo(node, args.nodes))
        if args.keep:
            print(f"\nkept: {', '.join(ns.name for ns in lab.namespaces)}")
            lab.namespaces.clear()
    finally:
        lab.close()


if __name__ == "__main__":
    main()
