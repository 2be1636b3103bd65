"""BFD failure detection: how long from a failure to BFD Down, and to the routes out.

    python -m benchmarks.bfd [--trials 50] [--route-trials 10] [--sessions 100 --seconds 60]
                             [--only detect|routes|cost] --json

``detect``: bgpd's BFD service (:mod:`integration_tests.bfd_probe`) and a BIRD 2 peer in two
namespaces over a veth, 100 ms x 3 on both sides, IPv4.  Each trial fails the path one way and
times the probe's Up -> Down (it reaches the probe's event loop; both clocks are the
machine's monotonic clock) from the moment the failure was made:

* ``kill``: BIRD killed (SIGKILL), started again after the trial;
* ``link``: the peer's end of the veth set down;
* ``drop``: nftables on our side drops UDP 3784 (the peer's packets never arrive).

Goal: every trial within the detection time + 50 ms (350 ms).

``routes``: the whole daemon (one node) and a BIRD 2 ToR with BFD and graceful restart; the
ToR killed; the time until its route leaves the node's kernel (``ip monitor``; goal 500 ms,
where graceful restart alone keeps it 120 s).

``cost`` (``--only cost``, on its own): 100 sessions at 100 ms x 3 with one BIRD 2: the CPU
of bgpd's engine and of the daemon's side, against BIRD's in the same run (goal: at most 5 %
of a core), and the floor under both: the system calls alone for the same packets
(:mod:`benchmarks.bfd_floor`), measured after them in the same run.

``soak`` (``--only soak``, on its own; ``--sessions`` 100, ``--seconds`` — 600 for the ten
minutes of the goal —, ``--routes`` 20000): the whole daemon with that many BGPPeers asking
for BFD (100 ms x 3), each a BGP session with one BIRD 2 (an address each, on the node's
subnet, BFD on) — while BIRD announces ``--routes`` routes over the first session and
withdraws them, every 30 s in turn, and the node's resources are reloaded (SIGHUP; a BGPPeer
added or removed) every 20 s. Counted: BFD sessions that went Down on either side, BGP
sessions that flapped (goal: none), and the routes the kernel held at the peaks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.bfd_floor import run_seconds
from benchmarks.common import report
from integration_tests.cluster import NODE_AS, Cluster
from integration_tests.monitor import RouteMonitor
from integration_tests.netns import Namespace, NetLab
from integration_tests.test_bfd import (
    A4,
    B4,
    TOR_ROUTE,
    Probe,
    bfd_cluster,
    drop_bfd,
    pair,
    start_bird,
)
from integration_tests.waiting import wait_for

DETECTION = 0.3


def _down_after(probe: Probe, start: float) -> float:
    """Seconds from ``start`` to the session's next Up -> Down (the state change: BGP may
    not be told, while damping holds a flapping session's Up back)."""
    assert probe.proc.stdout is not None
    while line := probe.proc.stdout.readline():
        event = json.loads(line)
        if event.get("type") == "Transition" and (event["before"], event["after"]) == (
                "Up", "Down"):
            return float(event["at"]) - start
    raise EOFError("the probe ended")


def _wait_up(probe: Probe) -> None:
    wait_for(lambda: probe.states().get(B4) == "Up", 30, "BFD Up")


def detect(trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bgpd-bench-bfd-") as tmp, NetLab() as lab:
        a, b = pair(lab)
        workdir = Path(tmp)
        start_bird(b, workdir)
        probe = Probe(a, [(B4, A4)])
        try:
            _wait_up(probe)
            for mode in ("kill", "link", "drop"):
                times = []
                for _ in range(trials):
                    _settle(probe)
                    start = _fail(mode, a, b, workdir)
                    times.append(_down_after(probe, start))
                    _heal(mode, a, b, workdir)
                    _wait_up(probe)
                out[mode] = _summary(times, DETECTION + 0.05)
        finally:
            probe.close()
    return out


def _settle(probe: Probe) -> None:
    """Up for a second (both sides at the fast timers); the events so far read past."""
    time.sleep(1.0)
    probe.views()


def _fail(mode: str, a: Namespace, b: Namespace, workdir: Path) -> float:
    if mode == "kill":
        pid = int((workdir / "pid").read_text())
        start = time.monotonic()
        os.kill(pid, signal.SIGKILL)
    elif mode == "link":
        start = time.monotonic()
        b.ip("link", "set", "eth0", "down")
    else:
        start = time.monotonic()
        drop_bfd(a, True)
    return start


def _heal(mode: str, a: Namespace, b: Namespace, workdir: Path) -> None:
    if mode == "kill":
        start_bird(b, workdir)
    elif mode == "link":
        b.ip("link", "set", "eth0", "up")
    else:
        drop_bfd(a, False)


def _summary(times: list[float], goal: float) -> dict[str, Any]:
    ms = sorted(round(t * 1000, 1) for t in times)
    return {"trials": len(ms), "min_ms": ms[0], "median_ms": round(statistics.median(ms), 1),
            "max_ms": ms[-1], "goal_ms": round(goal * 1000), "within_goal": sum(
                1 for t in times if t <= goal)}


def routes(trials: int) -> dict[str, Any]:
    times = []
    with tempfile.TemporaryDirectory(prefix="bgpd-bench-bfd-") as tmp, NetLab() as lab:
        c = bfd_cluster(lab, Path(tmp))
        node, tor = c.nodes[0], c.tor
        assert tor is not None
        c.start_all()
        try:
            for _ in range(trials):
                c.wait(lambda: any(r.startswith(TOR_ROUTE) for r in node.routes()), 60,
                       "the ToR's route")
                time.sleep(1.0)
                monitor = RouteMonitor(node.ns.name)
                time.sleep(0.2)
                start = time.time()
                tor.kill()
                event = monitor.wait_for(lambda line: line.startswith(f"Deleted {TOR_ROUTE}"),
                                         10)
                monitor.proc.terminate()
                assert event is not None, "the route stayed"
                times.append(event[0] - start)
                tor.start()
        finally:
            c.stop_all()
    return _summary(times, 0.5)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, kernel) CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cost(sessions: int, seconds: float) -> dict[str, Any]:
    """``sessions`` BFD sessions at 100 ms x 3 between the probe and one BIRD 2 (an address
    per session on each side, one subnet): the CPU of the engine process, of the daemon's
    side (the probe's process, reading the engine's copies), and of BIRD, over ``seconds``
    once every session is Up."""
    with tempfile.TemporaryDirectory(prefix="bgpd-bench-bfd-") as tmp, NetLab() as lab:
        a, b = lab.namespace("bfd-a"), lab.namespace("bfd-b")
        lab.veth(a, "eth0", b, "eth0")
        pairs = [(f"10.1.1.{i}", f"10.1.0.{i}") for i in range(1, sessions + 1)]
        for theirs, ours in pairs:
            lab.address(a, "eth0", f"{ours}/16")
            lab.address(b, "eth0", f"{theirs}/16")
        workdir = Path(tmp)
        neighbors = "".join(f"neighbor {ours} local {theirs}; " for theirs, ours in pairs)
        (workdir / "bird.conf").write_text(
            "router id 10.1.1.1;\nprotocol device {}\n"
            'protocol bfd { interface "eth0" { min rx interval 100 ms; min tx interval 100 ms; '
            f"idle tx interval 1 s; multiplier 3; }}; {neighbors}}}\n")
        b.run("bird", "-c", str(workdir / "bird.conf"), "-s", str(workdir / "bird.ctl"),
              "-P", str(workdir / "pid"))
        probe = Probe(a, pairs)
        try:
            wait_for(lambda: set(probe.states().values()) == {"Up"}
                     and len(probe.states()) == sessions, 60, "every session Up")
            time.sleep(2.0)  # the fast timers agreed everywhere
            engine = int(probe.ask("engine", "engine")["engine"])
            bird = int((workdir / "pid").read_text())
            pids = {"engine": engine, "daemon_side": probe.proc.pid, "bird": bird}
            before = {k: _cpu_seconds(p) for k, p in pids.items()}
            ran = {k: run_seconds(p) for k, p in pids.items()}
            time.sleep(seconds)
            used = {k: [b - a for a, b in zip(before[k], _cpu_seconds(p), strict=True)]
                    for k, p in pids.items()}
            ran = {k: run_seconds(p) - ran[k] for k, p in pids.items()}
            views = probe.views()
        finally:
            probe.close()
        floor = _floor(lab, sessions, seconds)
    share = {k: round(100 * v / seconds, 2) for k, v in ran.items()}  # (the scheduler's)
    # the kernel's part: sending on a veth delivers into the peer's socket in the sender's
    # time, so much of each side's share is the network stack's, not the program's
    kernel = {k: round(100 * v[1] / seconds, 2) for k, v in used.items()}
    return {"sessions": sessions, "seconds": seconds,
            "cpu_percent_of_a_core": share,
            "syscall_floor": floor, "of_which_kernel": kernel,
            "bgpd_vs_bird": round((share["engine"] + share["daemon_side"])
                                  / max(share["bird"], 0.01), 2),
            "all_up_at_end": all(v["state"] == "Up" for v in views.values()),
            "failures": sum(v["failures"] for v in views.values())}


def _floor(lab: NetLab, sessions: int, seconds: float) -> list[float]:
    """:mod:`benchmarks.bfd_floor` on both sides of a veth of its own, after the others have
    been measured: the CPU (% of a core) of the bare system calls for the same packets."""
    a, b = lab.namespace("floor-a"), lab.namespace("floor-b")
    lab.veth(a, "eth0", b, "eth0")
    lab.address(a, "eth0", "10.2.0.1/24")
    lab.address(b, "eth0", "10.2.0.2/24")
    procs = [ns.popen(sys.executable, "-m", "benchmarks.bfd_floor", ours, theirs,
                      str(sessions), str(seconds), stdout=subprocess.PIPE)
             for ns, ours, theirs in ((a, "10.2.0.1", "10.2.0.2"), (b, "10.2.0.2", "10.2.0.1"))]
    return [json.loads(p.communicate(timeout=seconds + 60)[0])["percent"] for p in procs]


def soak(sessions: int, seconds: float, routes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bgpd-bench-bfd-soak-") as tmp, NetLab() as lab:
        workdir = Path(tmp)
        c = Cluster(lab, workdir, nodes=1, tor=False)
        node = c.nodes[0]
        peers = [f"198.51.100.{100 + i}" for i in range(1, sessions + 1)]
        # a BIRD each (BIRD keeps one BFD session per remote address: one BIRD with many
        # addresses would serve the node's address once)
        spaces = [c._attach(f"peer{i}", f"{a}/24", "br0") for i, a in enumerate(peers)]

        def resources(extra: bool) -> list[dict[str, Any]]:
            docs = [c.calico("BGPPeer", f"p{i}", {
                "peerIP": a, "asNumber": 65000, "failureDetectionMode": "BFDIfDirectlyConnected",
                **({"filters": ["load"]} if i == 0 else {})}) for i, a in enumerate(peers)]
            # the load is outside the pools: taken by a filter, as a ToR's routes would be
            docs.append(c.calico("BGPFilter", "load", {"importV4": [
                {"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In"}]}))
            docs.append(c.calico("BFDConfiguration", "default", {"interfaces": [
                {"matchPattern": "eth*", "minimumRecvInterval": "100ms",
                 "minimumSendInterval": "100ms", "idleSendInterval": "1s", "multiplier": 3}]}))
            if extra:  # a peer that never answers: a reload that adds and removes a session
                docs.append(c.calico("BGPPeer", "extra", {"peerIP": "198.51.100.250",
                                                          "asNumber": 65001}))
            return docs

        load = "".join(f"route 10.{64 + i // 256}.{i % 256}.0/24 blackhole; "
                       for i in range(routes))
        birds = []
        for i, (address, ns) in enumerate(zip(peers, spaces, strict=True)):
            folder = workdir / f"bird{i}"
            folder.mkdir()
            export = 'where proto = "load"' if i == 0 else "none"
            (folder / "bird.conf").write_text("\n".join([
                f"router id {address};", "protocol device {}",
                'protocol bfd { interface "eth0" { min rx interval 100 ms; '
                "min tx interval 100 ms; idle tx interval 1 s; multiplier 3; }; }",
                f"protocol static load {{ ipv4; {load if i == 0 else ''}}}",
                f"protocol bgp p {{ local {address} as 65000; neighbor {node.ip} as {NODE_AS}; "
                "bfd on; graceful restart on; connect retry time 1; "
                f"ipv4 {{ import none; export {export}; }}; }}"]) + "\n")
            ns.run("bird", "-c", str(folder / "bird.conf"), "-s", str(folder / "bird.ctl"),
                   "-P", str(folder / "pid"))
            birds.append((ns, folder))
        first_ns, first = birds[0]
        c.write_resources(resources(False))
        c.start(node, max_prefixes_external=routes * 2)
        try:
            def bfd() -> list[dict[str, Any]]:
                return list(c.status(node)["bfd"]["sessions"])

            def learned() -> int:
                return sum(1 for r in node.ns.routes() if r.startswith("10."))

            def bird_bfd_up() -> int:
                return sum(" Up " in ns.run("birdc", "-s", str(folder / "bird.ctl"), "show",
                                            "bfd", "sessions") for ns, folder in birds)

            def seen() -> str:
                status = c.status(node)
                return json.dumps({"bfd": status["bfd"], "peers": [
                    (p["address"], p["state"], p["info"]) for p in status["peers"]]})[:4000]

            wait_for(lambda: len(bfd()) == sessions and {s["state"] for s in bfd()} == {"Up"}
                     and all(p["established"] for p in c.status(node)["peers"]), 120,
                     "every BFD session Up and every BGP session established", context=seen)
            wait_for(lambda: learned() == routes, 120, "the routes in the kernel")
            time.sleep(2.0)
            before = {s["peer"]: (s["detections"], s["failures"]) for s in bfd()}
            flaps_before = {p["address"]: p["flaps"] for p in c.status(node)["peers"]}
            start, peaks, reloads, toggles = time.monotonic(), [], 0, 0
            announced, next_toggle, next_reload = True, start + 30, start + 20
            while (now := time.monotonic()) < start + seconds:
                if now >= next_toggle:
                    peaks.append(learned())
                    first_ns.run("birdc", "-s", str(first / "bird.ctl"),
                                 "disable" if announced else "enable", "load")
                    announced, toggles, next_toggle = not announced, toggles + 1, now + 30
                if now >= next_reload:
                    reloads += 1
                    c.write_resources(resources(reloads % 2 == 1))
                    assert node.proc is not None
                    node.proc.send_signal(signal.SIGHUP)
                    next_reload = now + 20
                time.sleep(0.5)
            after = bfd()
            status = c.status(node)
            downs = sum(s["detections"] - before[s["peer"]][0] for s in after)
            failures = sum(s["failures"] - before[s["peer"]][1] for s in after)
            flaps = sum(p["flaps"] - flaps_before.get(p["address"], 0)
                        for p in status["peers"] if p["address"] in flaps_before)
            log = (node.workdir / "bgpd.log").read_text()
            # every session that left Up, as logged: by its diagnostic, and those inside the
            # measured window (the rest came before it, while the sessions came up)
            window_start = time.time() - (time.monotonic() - start)
            downs_logged: Counter[str] = Counter()
            for line in log.splitlines():
                if '"event": "bfd_down"' in line:
                    event = json.loads(line)
                    when = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                    inside = when.timestamp() >= window_start
                    downs_logged[f"{event['diagnostic']}{'' if inside else ' (before)'}"] += 1
            return {"sessions": sessions, "seconds": seconds, "routes": routes,
                    "route_toggles": toggles, "reloads": reloads,
                    "kernel_routes_at_toggles": peaks,
                    "bfd_down_ours": downs, "bfd_failures_ours": failures,
                    "bfd_down_logged": log.count('"event": "bfd_down"'),
                    "bfd_down_logged_by_diagnostic": dict(downs_logged),
                    "bfd_up_at_end_ours": sum(s["state"] == "Up" for s in after),
                    "bfd_up_at_end_bird": bird_bfd_up(),
                    "bgp_flaps": flaps}
        finally:
            c.stop_all()
            for _, folder in birds:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int((folder / "pid").read_text()), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--route-trials", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--routes", type=int, default=20000, help="soak: routes announced")
    parser.add_argument("--only", choices=("detect", "routes", "cost", "soak"))
    parser.add_argument("--json", action="store_true", help="(the result is JSON always)")
    args = parser.parse_args()
    parts = {"detect": lambda: detect(args.trials), "routes": lambda: routes(args.route_trials),
             "cost": lambda: cost(args.sessions, args.seconds),
             "soak": lambda: soak(args.sessions, args.seconds, args.routes)}
    chosen = [args.only] if args.only else ["detect", "routes"]  # (cost: on its own)
    report("bfd" if args.only is None else f"bfd-{args.only}",
           {name: parts[name]() for name in chosen})


if __name__ == "__main__":
    main()
