"""Bulk ingestion: a peer sends 20,000 prefixes to one node (a route reflector's view of a
large cluster); how long until all are in the node's kernel, and all gone after withdrawal.

    python -m benchmarks.ingest --routes 20000 --engine bgpd|bird|bird2 [--compare] [--profile]

The node under test (198.18.0.1) peers over iBGP with a BIRD 2 router (198.18.0.2, a
``BGPPeer`` for bgpd, a ``Global_`` protocol for BIRD as confd writes it) that originates
``--routes`` ``/27`` prefixes inside the IP pool 172.16.0.0/12.  Once the session is up and
idle, the router's configuration gains every prefix at once (``birdc configure``): the clock
runs from that command to the last route in the node's kernel (``ingest_s``), then from the
reconfiguration without them to the last route gone (``withdraw_s``), and the RSS 2 s after
that (memory given back, ``rss_mb_after_withdrawal``; bgpd hands freed memory back once it
has been quiet for a second after a withdrawal of 1,000 routes or more: the run waits for
it to say so in ``bgpd status`` first, ``memory_released``).  Also: CPU seconds of each of
the node's processes in each phase (``cpu_s_ingest_withdraw_by_process``; the withdrawal's
includes the release of memory), the peak RSS of all of them (sampled every 0.1 s), and
with ``--profile`` (py-spy) the functions where bgpd's processes spent the
ingestion and the withdrawal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from benchmarks.common import report
from benchmarks.dut import (
    Dut,
    bird_node_config,
    cpu_seconds,
    owned_routes,
    role_of,
    rounded,
    rss_mb,
)
from bgpd.observability import request
from bgpd.router import RELEASE_AFTER
from integration_tests.netns import NetLab, tunl0
from integration_tests.peers import Bird2, Neighbor
from integration_tests.waiting import WaitTimeout, wait_for

DUT_IP, FEEDER_IP = "198.18.0.1", "198.18.0.2"
POOL = IPv4Network("172.16.0.0/12")
DUT_BLOCK = "172.31.255.0/26"


def prefixes(count: int) -> list[str]:
    base = int(POOL.network_address)
    room = POOL.num_addresses - 65536  # 172.31.0.0/16 is the node's own
    if count * 32 > room:
        raise SystemExit(f"--routes {count}: at most {room // 32} /27s fit in the pool")
    return [f"{IPv4Address(base + 32 * i)}/27" for i in range(count)]


def docs() -> list[dict[str, Any]]:
    def calico(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "crd.projectcalico.org/v1", "kind": kind,
                "metadata": {"name": name}, "spec": spec}

    return [
        calico("BGPConfiguration", "default", {"asNumber": 64512,
                                               "nodeToNodeMeshEnabled": False}),
        calico("IPPool", "pool", {"cidr": str(POOL), "blockSize": 26, "ipipMode": "Always"}),
        {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": "dut", "annotations": {"projectcalico.org/IPv4Address": f"{DUT_IP}/24"}}},
        calico("BlockAffinity", "dut", {"node": "dut", "cidr": DUT_BLOCK, "state": "confirmed",
                                        "deleted": "false"}),
        {**calico("BGPPeer", "rr", {"peerIP": FEEDER_IP, "asNumber": 64512}),
         # a peer that is no Calico node has a prefix limit by default, and routes more
         # specific than the pool's blocks are refused from it: not from this feeder (it
         # stands for a reflector of the cluster's nodes)
         "metadata": {"name": "rr", "annotations": {"bgpd/max-prefixes": "10000000",
                                                    "bgpd/accept-node-block-routes": "true"}}},
    ]


def bird_config(version: int) -> str:
    """The node as confd configures BIRD with one global peer."""
    return bird_node_config(version, DUT_IP, DUT_BLOCK,
                            [("Global_" + FEEDER_IP.replace(".", "_"), FEEDER_IP, False)])


def wait(check: Any, timeout: float, what: str, dut: Dut, peak: list[float]) -> float:
    """Wait for ``check``, sampling the peak RSS of the node's processes meanwhile."""
    def sampled() -> Any:
        peak[0] = max(peak[0], rss_mb(dut.pids()))
        return check()
    return wait_for(sampled, timeout, what, interval=0.1)


class Profile:
    """py-spy sampling every process of bgpd while it runs; top functions per process."""

    def __init__(self, pid: int) -> None:
        exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy")
        if exe is None:
            raise SystemExit("--profile needs py-spy (pip install '.[bench]')")
        self.out = Path(tempfile.mkdtemp()) / "profile.txt"
        self.proc = subprocess.Popen([exe, "record", "-p", str(pid), "--subprocesses",
                                      "--nonblocking", "-r", "250", "-f", "raw", "-o",
                                      str(self.out)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches

    def stop(self, top: int = 10) -> dict[str, Any]:
        """Per process: the functions most often running (self) and the calls they were
        made in (inclusive; the frames common to almost every sample left out)."""
        self.proc.send_signal(2)
        self.proc.wait(30)
        return summarize(self.out.read_text(), top)


def summarize(raw: str, top: int = 10) -> dict[str, Any]:
    """:meth:`Profile.stop`'s summary of py-spy's raw output (one ``frames count`` per line)."""
    totals: Counter[str] = Counter()
    inclusive: dict[str, Counter[str]] = {}
    own: dict[str, Counter[str]] = {}
    samples = []
    roles: dict[str, str] = {}
    for line in raw.splitlines():
        stack, _, text = line.rpartition(" ")
        frames, count = stack.split(";"), int(text)
        # py-spy nests a child's stack under its parent's "process ..." frame, named by the
        # command line it saw first: a child caught between fork and exec carries its
        # parent's, so a process is told by what it runs
        owner = ([f for f in frames if f.startswith("process ")][-1:] or [""])[0]
        pid = owner.split(":", 1)[0]
        samples.append((pid, frames, count))
        for name, running, role in (("speaker.engine", "main (bgpd/speaker/engine.py:", "exabgp"),
                                    ("bridge.py", "(bgpd/speaker/bridge.py:", "bridge")):
            if name in owner or any(running in f for f in frames):
                roles[pid] = role
    for pid, frames, count in samples:
        process = roles.get(pid, "daemon")
        totals[process] += count
        own.setdefault(process, Counter())[frames[-1]] += count
        seen = inclusive.setdefault(process, Counter())
        for frame in set(frames[1:]):
            seen[frame] += count

    def pct(counter: Counter[str], total: int) -> dict[str, float]:
        return {f: round(100 * n / total, 1) for f, n in counter.most_common(top)}

    return {p: {"samples": totals[p], "self_pct": pct(own[p], totals[p]),
                "inclusive_pct": pct(Counter({f: n for f, n in inclusive[p].items()
                                              if n < 0.8 * totals[p]}), totals[p])}
            for p in totals}


def _releases(dut: Dut) -> int:
    status = asyncio.run(request(dut.workdir / "bgpd.sock", {"command": "status"}))
    return int(status["rib"]["memory_releases"])


def _released(dut: Dut, before: int, timeout: float) -> bool:
    """Whether bgpd hands memory back (``bgpd status``) within ``timeout`` seconds."""
    try:
        wait_for(lambda: _releases(dut) > before, timeout, "memory released", interval=0.1)
    except WaitTimeout:
        return False
    return True


def run(routes: int, engine: str, workdir: Path, *, profile: bool = False) -> dict[str, Any]:
    wanted = prefixes(routes)
    with NetLab() as lab:
        dut_ns, feed_ns = lab.namespace("dut"), lab.namespace("feed")
        lab.veth(dut_ns, "eth0", feed_ns, "eth0")
        lab.address(dut_ns, "eth0", f"{DUT_IP}/24")
        lab.address(feed_ns, "eth0", f"{FEEDER_IP}/24")
        tunl0(dut_ns)
        feeder = Bird2(feed_ns, workdir / "feeder", router_id=FEEDER_IP, asn=64512,
                       neighbors=[Neighbor(DUT_IP, 64512)])
        feeder.start()
        dut = Dut(engine, dut_ns, workdir / "dut", docs=docs(), bird_config=bird_config)
        dut.start()
        peak = [0.0]
        try:
            wait(lambda: feeder.established(DUT_IP), 60, "the session", dut, peak)
            time.sleep(1.0)  # let the start settle: the clock is for the routes alone
            pids = dut.pids()
            cpu_before = {pid: cpu_seconds([pid]) for pid in pids}
            rss_before = rss_mb(pids)
            rss_by = {role_of(pid): [round(rss_mb([pid]), 1)] for pid in pids}
            profiler = Profile(pids[0]) if profile and engine == "bgpd" else None
            feeder.set_originate(wanted)
            ingest_s = wait(lambda: owned_routes(dut_ns) >= routes, 600, "every route", dut,
                            peak)
            profiled = profiler.stop() if profiler else None
            cpu_full = {pid: cpu_seconds([pid]) for pid in pids}
            rss_full = rss_mb(dut.pids())
            for pid in pids:
                rss_by[role_of(pid)].append(round(rss_mb([pid]), 1))
            releases = _releases(dut) if engine == "bgpd" else 0
            profiler = Profile(pids[0]) if profile and engine == "bgpd" else None
            feeder.set_originate([])
            withdraw_s = wait(lambda: owned_routes(dut_ns) == 0, 600, "every withdrawal", dut,
                              peak)
            profiled_withdrawal = profiler.stop() if profiler else None
            # bgpd hands the memory back once quiet for a second after a large withdrawal
            released = engine == "bgpd" and routes >= RELEASE_AFTER and _released(
                dut, releases, 15)
            time.sleep(2.0)  # the withdrawals' garbage collected, ExaBGP's RIB emptied
            rss_after = rss_mb(dut.pids())
            for pid in pids:
                rss_by[role_of(pid)].append(round(rss_mb([pid]), 1))
            cpu = {role_of(pid): [round(cpu_full[pid] - before, 2),
                                  round(cpu_seconds([pid]) - cpu_full[pid], 2)]
                   for pid, before in cpu_before.items()}
        finally:
            dut.stop()
            feeder.kill()
    return {"routes": routes, "engine": engine, "ingest_s": rounded(ingest_s),
            "routes_per_s": round(routes / ingest_s) if ingest_s else None,
            "withdraw_s": rounded(withdraw_s),
            "cpu_s_ingest_withdraw_by_process": cpu,
            "rss_mb_idle": round(rss_before, 1), "rss_mb_full": round(rss_full, 1),
            "rss_mb_after_withdrawal": round(rss_after, 1),
            "rss_mb_idle_full_after_by_process": rss_by,
            "peak_rss_mb": round(peak[0], 1), "memory_released": released,
            **({"profile": {"ingest": profiled, "withdraw": profiled_withdrawal}}
               if profiled else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--routes", type=int, default=20000)
    parser.add_argument("--engine", choices=["bgpd", "bird", "bird2"], default="bgpd")
    parser.add_argument("--compare", action="store_true",
                        help="run bgpd and BIRD 1.6 and report bgpd_vs_bird ratios")
    parser.add_argument("--profile", action="store_true",
                        help="bgpd: sample its processes with py-spy during the ingestion "
                        "and the withdrawal")
    parser.add_argument("--workdir", default="/tmp/bgpd-bench-ingest")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    runs = []
    for engine in (["bgpd", "bird"] if args.compare else [args.engine]):
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
        runs.append(run(args.routes, engine, workdir, profile=args.profile))
        print(json.dumps(runs[-1]), flush=True)
    if len(runs) == 1:
        report("ingest", runs[0], save=not args.no_save)
        return
    ours, theirs = runs
    ratios = {key: round(ours[key] / theirs[key], 2)
              for key in ("ingest_s", "withdraw_s", "peak_rss_mb") if ours[key] and theirs[key]}
    report("ingest", {"runs": runs, "bgpd_vs_bird": ratios}, save=not args.no_save)


if __name__ == "__main__":
    main()
