"""Kernel route programming: bgpd's kernel sync against `ip -batch`, in one namespace.

    python -m benchmarks.kernel_routes --routes 20000 --json

Both sides work in the same namespace (lo, eth0, tunl0 stand-in) holding the same 50,000
foreign routes (proto static), and write the same routes (``via GW dev tunl0 onlink proto
bird``).  bgpd goes through its real path — snapshot, plan, encode, apply — and iproute2
through ``ip -batch`` / ``ip route show proto bird`` / ``ip route flush proto bird``; each
figure is the best of ``--repeat`` runs.  Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from ipaddress import IPv4Network, ip_address

from benchmarks.common import report
from bgpd.kernel import Kernel
from bgpd.kernel_sync import KernelSync
from integration_tests.netns import Namespace, NetLab, tunl0
from ribs.kernel_plan import KernelRoute

GATEWAY = "198.18.0.1"


def owned_prefixes(count: int) -> list[IPv4Network]:
    base = int(ip_address("172.16.0.0"))
    return [IPv4Network((base + 4 * i, 30)) for i in range(count)]


def ip_batch(ns: Namespace, lines: list[str]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        start = time.perf_counter()
        subprocess.run(["ip", "-n", ns.name, "-batch", f.name], check=True)
        return time.perf_counter() - start


def ip_timed(ns: Namespace, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(["ip", "-n", ns.name, *args], check=True, stdout=subprocess.PIPE)
    return time.perf_counter() - start


def owned_count(ns: Namespace) -> int:
    out = subprocess.run(["ip", "-n", ns.name, "route", "show", "proto", "bird"],
                         check=True, capture_output=True, text=True).stdout
    return len(out.splitlines())


async def bgpd_round(ns: Namespace, routes: list[KernelRoute]) -> dict[str, float]:
    kernel = Kernel(netns=ns.name)
    sync = KernelSync(kernel)
    out = {}
    sync.set_desired(routes)
    start = time.perf_counter()
    report_ = await sync.sync()
    out["install"] = time.perf_counter() - start
    assert not report_.errors, report_.errors
    start = time.perf_counter()
    snapshot = await kernel.snapshot()
    out["snapshot"] = time.perf_counter() - start  # first read of these routes: nothing cached
    assert len(snapshot) == len(routes)
    start = time.perf_counter()
    await kernel.snapshot()
    out["snapshot_warm"] = time.perf_counter() - start  # the same table read again
    sync.set_desired([])
    start = time.perf_counter()
    await sync.sync()
    out["delete"] = time.perf_counter() - start
    kernel.close()
    return out


def run(count: int, foreign: int, repeat: int) -> dict[str, float | int | str]:
    prefixes = owned_prefixes(count)
    routes = [KernelRoute.via(p, ip_address(GATEWAY), "tunl0", onlink=True) for p in prefixes]
    add_lines = [f"route add {p} via {GATEWAY} dev tunl0 onlink proto bird" for p in prefixes]
    with NetLab() as lab:
        ns = lab.namespace("bench")
        kind = tunl0(ns)
        ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
        ns.ip("link", "set", "eth0", "up")
        base = int(ip_address("100.64.0.0"))
        ip_batch(ns, [f"route add {IPv4Network((base + i, 32))} dev eth0 proto static"
                      for i in range(foreign)])
        best: dict[str, float] = {}
        for _ in range(repeat):
            for key, value in asyncio.run(bgpd_round(ns, routes)).items():
                best[f"bgpd_{key}_s"] = min(value, best.get(f"bgpd_{key}_s", value))
            assert owned_count(ns) == 0
            figures = {
                "ip_batch_install_s": ip_batch(ns, add_lines),
                "ip_show_s": ip_timed(ns, "route", "show", "proto", "bird"),
                "ip_flush_s": ip_timed(ns, "route", "flush", "proto", "bird"),
            }
            for key, value in figures.items():
                best[key] = min(value, best.get(key, value))
            assert owned_count(ns) == 0
    result: dict[str, float | int | str] = {"routes": count, "foreign_routes": foreign,
                                            "tunl0": kind}
    result.update({k: round(v, 4) for k, v in sorted(best.items())})
    result["install_vs_ip_batch"] = round(best["bgpd_install_s"] / best["ip_batch_install_s"], 2)
    result["snapshot_vs_ip_show"] = round(best["bgpd_snapshot_s"] / best["ip_show_s"], 2)
    result["delete_vs_ip_flush"] = round(best["bgpd_delete_s"] / best["ip_flush_s"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--routes", type=int, default=20_000)
    parser.add_argument("--foreign", type=int, default=50_000,
                        help="routes of another protocol in the same table (default 50000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    report("kernel_routes", run(args.routes, args.foreign, args.repeat), save=not args.no_save)


if __name__ == "__main__":
    main()
