"""Render the stored results (``benchmarks/results/*.json``) into plots and a Markdown table.

    python -m benchmarks.report [--readme README.md]

Writes ``benchmarks/results/mesh.png`` (convergence time, idle CPU and RSS against the number
of peers, bgpd next to BIRD) and ``benchmarks/results/report.md`` (tables of the latest result
of every benchmark, with the machine and the date they were measured on) and prints the
Markdown.  ``--readme``: also replaces the part of that file between ``<!-- benchmarks:begin
-->`` and ``<!-- benchmarks:end -->`` with it.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS

BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"
ROLES = ("passive", "active", "mesh")
NA = "n/a"
ENGINE_NAMES = {"bgpd": "bgpd", "bgpd-stock": "bgpd, ExaBGP's stock reactor",
                "bgpd-deepcopy": "bgpd, ExaBGP copying each route per client",
                "bgpd-plain": "bgpd, no update groups in ExaBGP",
                "frr": "FRR 8.4", "gobgp": "GoBGP 3",
                "bird": "BIRD 1.6", "bird2": "BIRD 2", "bird-gr": "BIRD 2, graceful restart",
                "bird-nogr": "BIRD 2, no graceful restart"}


def records(folder: Path = RESULTS) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """benchmark -> [(machine, result)], oldest first; multi-run results flattened."""
    out: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            name, machine, result = data["benchmark"], data["machine"], data["result"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for one in result.get("runs", [result]):
            out.setdefault(name, []).append((machine, one))
    return out


def newest(found: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]], part: str,
           name: str) -> Any:
    """``part`` of the newest result that has it, of a whole run of ``name`` or of one with
    ``--only part`` (saved as ``name-part``); None if none has it."""
    have = [(machine.get("date", ""), result[part])
            for key in (name, f"{name}-{part}") for machine, result in found.get(key, [])
            if part in result]
    return max(have, key=lambda pair: pair[0])[1] if have else None


def latest(rows: Iterable[tuple[dict[str, Any], dict[str, Any]]], *keys: str,
           having: str | None = None,
           longest: str | None = None) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The latest result for each value of ``keys`` (those with the field ``having``; with
    ``longest``, the latest of those where that field is largest: the longest idle period)."""
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for _, result in rows:
        if having is not None and result.get(having) is None:
            continue
        key = tuple(result.get(k) for k in keys)
        if longest is not None and key in found and (
                (found[key].get(longest) or 0) > (result.get(longest) or 0)):
            continue
        found[key] = result
    return found


def fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return NA
    if isinstance(value, float):
        value = f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
    return f"{value}{unit}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def mesh_section(rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    runs = latest(rows, "engine", "role", "peers")
    steady = latest(rows, "engine", "role", "peers", longest="idle_s")
    storms = latest(rows, "engine", "role", "peers", having="storm_converged_s")
    sizes = sorted({k[2] for k in runs if k[1] in ROLES})
    body = []
    for peers in sizes:
        for engine in ("bgpd", "bgpd-stock", "bird", "bird2"):
            r = steady.get((engine, "passive", peers))
            if r is None:
                continue
            body.append([str(peers), ENGINE_NAMES[engine], fmt(r["established_s"], " s"),
                         fmt(r["converged_s"], " s"), fmt(r["cpu_s"], " s"),
                         fmt(r["rss_mb"], " MB", 0),
                         f"{fmt(r['idle_cpu_pct'], ' %')} ({fmt(r.get('idle_s'), ' s', 0)})",
                         str(r.get("flaps", NA))])
    passive = table(["peers", "engine", "established", "converged", "CPU to converge", "RSS",
                     "idle CPU (over)", "flaps"], body)
    body = []
    for peers in sizes:
        for engine in ("bgpd", "bird"):
            cells = [str(peers), ENGINE_NAMES[engine]]
            for role in ROLES:
                r = runs.get((engine, role, peers))
                cells.append(fmt(r["converged_s"], " s") if r else NA)
            storm = [s for role in ROLES if (s := storms.get((engine, role, peers)))]
            cells.append(fmt(storm[-1]["storm_converged_s"], " s") if storm else NA)
            body.append(cells)
    roles = table(["peers", "engine", "converged, node passive", "node active",
                   "mesh rule", "reconnect storm"], body)
    return (f"{passive}\n\nConvergence by role (who connects), and after a reconnect storm "
            f"(`--storm`):\n\n{roles}")


def mesh_plot(rows: list[tuple[dict[str, Any], dict[str, Any]]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    runs = latest(rows, "engine", "role", "peers")
    steady = latest(rows, "engine", "role", "peers", longest="idle_s")
    storms = latest(rows, "engine", "role", "peers", having="storm_converged_s")
    if not any(k[1] in ROLES for k in runs):
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = {"bgpd": "tab:blue", "bgpd-stock": "tab:cyan", "bird": "tab:red",
               "bird2": "tab:orange"}
    styles = {"passive": "-", "active": "--", "mesh": ":"}

    def series(engine: str, role: str, key: str,
               source: dict[tuple[Any, ...], dict[str, Any]]) -> tuple[list[int], list[float]]:
        points = sorted((k[2], r[key]) for k, r in source.items()
                        if k[0] == engine and k[1] == role and r.get(key) is not None)
        return [p for p, _ in points], [v for _, v in points]

    ax = axes[0]
    for engine in ("bgpd", "bird"):
        for role in ROLES:
            x, y = series(engine, role, "converged_s", runs)
            if x:
                ax.plot(x, y, styles[role], marker="o", color=colours[engine],
                        label=f"{ENGINE_NAMES[engine]}, {role}")
        x, y = series(engine, "passive", "storm_converged_s", storms)
        if x:
            ax.plot(x, y, "-.", marker="x", color=colours[engine],
                    label=f"{ENGINE_NAMES[engine]}, storm")
    ax.set(title="Convergence (start → every block in the kernel)", xlabel="peers",
           ylabel="seconds", ylim=(0, None))
    ax.legend(fontsize=7)
    for ax, key, title, unit in ((axes[1], "idle_cpu_pct", "Idle CPU", "% of a core"),
                                 (axes[2], "rss_mb", "Resident memory", "MB")):
        for engine in ("bgpd", "bgpd-stock", "bird"):
            x, y = series(engine, "passive", key, steady)
            if x:
                ax.plot(x, y, marker="o", color=colours[engine], label=ENGINE_NAMES[engine])
        ax.set(title=title, xlabel="peers", ylabel=unit, yscale="log")
        ax.legend(fontsize=7)
    fig.suptitle("One node of a full mesh (benchmarks.mesh)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def other_sections(found: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]) -> str:
    parts = []
    if "reflector" in found:
        rows = [[str(r["clients"]), ENGINE_NAMES.get(r["engine"], r["engine"]),
                 fmt(r["full_s"], " s"), fmt(r["cpu_s"], " s"), fmt(r["rss_mb"], " MB", 0),
                 ", ".join(f"{k} {fmt(v, ' s')}" for k, v in r["cpu_s_by_process"].items())]
                for r in sorted(latest(found["reflector"], "clients", "engine").values(),
                                key=lambda r: (r["clients"], r["engine"]))]
        parts.append("**Route reflector** (`python -m benchmarks.reflector --clients "
                     "300,599 --compare`): start until every client holds every block; the "
                     "latest run of each engine and size.\n\n"
                     + table(["clients", "engine", "every client full", "CPU", "RSS",
                              "CPU by process"], rows))
    if "datastore" in found:
        rows = []
        for r in sorted(latest(found["datastore"], "nodes", "node_objects").values(),
                        key=lambda r: (r["nodes"], r["node_objects"] != "metadata")):
            i, reset = r["initial"], r["reset"]
            beat = next((x for x in r["steady"] if x["updates_per_s"] == 2), r["steady"][0])
            how = (f"Typha's snappy stream and {i['requests']} API requests"
                   if i.get("typha_bytes")
                   else f"{i['bytes_uncompressed'] / 1e6:.2f} MB before gzip, "
                        f"{i['requests']} requests")
            rows.append([str(r["nodes"]), r["node_objects"],
                         f"{i['bytes'] / 1e6:.2f} MB ({how})",
                         fmt(i["desired_s"], " s"), fmt(i["rss_mb"], " MB", 0),
                         f"{beat['bytes_per_event']:,} B",
                         fmt(beat["cluster_egress_mb_per_s"], " MB/s"),
                         f"{reset['bytes']:,} B, {reset['lists']} lists"])
        parts.append("**Datastore** (`python -m benchmarks.datastore --nodes 600 --compare`): "
                     "one node's controller against the API test server holding realistic "
                     "Nodes (~10.7 KB each); `full` is the baseline of whole objects; "
                     "`typha`: the Calico resources through the Typha stand-in (`--typha`)."
                     "\n\n"
                     + table(["nodes", "other nodes", "initial sync", "to DesiredConfig",
                              "RSS", "per Node status update", "cluster egress at 2 "
                              "updates/s", "after every connection is cut"], rows))
    if "propagation" in found:
        rows = [[{"bird": "BIRD 2"}.get(r["engine"], r["engine"]), str(r["samples"]),
                 fmt(r["p50_ms"], " ms", 1), fmt(r["p99_ms"], " ms", 1),
                 fmt(r["max_ms"], " ms", 1)]
                for r in latest(found["propagation"], "engine").values()]
        parts.append("**Propagation** (`python -m benchmarks.propagation --compare`): a new "
                     "block on node A until its route is in node C's kernel (BIRD: from "
                     "`birdc configure` on node A).\n\n"
                     + table(["engine", "samples", "p50", "p99", "max"], rows))
    if "services" in found:
        rows = [[f"{r['services']:,} / {r['endpoints']:,} / {r['nodes']}",
                 f"{fmt(r['rate_per_s'], '/s', 0)} for {fmt(r['seconds'], ' s', 0)}",
                 fmt(r["propagation_p50_ms"], " ms", 1), fmt(r["propagation_p99_ms"], " ms", 1),
                 fmt(r["transition_p99_ms"], " ms", 1),
                 "yes" if r["exact_after_churn"] else "no",
                 f"{fmt(r['daemon_cpu_churn_pct_per_node'], ' %')} (idle "
                 f"{fmt(r['daemon_cpu_idle_pct_per_node'], ' %')})"]
                for r in latest(found["services"], "services", "rate_per_s").values()]
        parts.append("**Service advertisement** (`python -m benchmarks.services`): Local "
                     "Services' endpoints moving between nodes, until the ToR's kernel holds "
                     "exactly the new next hops; CPU of each node's daemon, ExaBGP and bridge "
                     "as a share of one core.\n\n"
                     + table(["services / endpoints / nodes", "endpoint moves", "p50", "p99",
                              "between states p99", "exact after churn", "CPU per node"],
                             rows))
    if "ingest" in found:
        rows = [[ENGINE_NAMES.get(r["engine"], r["engine"]), str(r["routes"]),
                 fmt(r["ingest_s"], " s"), fmt(r["withdraw_s"], " s"),
                 fmt(r["peak_rss_mb"], " MB", 0)]
                for r in latest(found["ingest"], "engine", "routes").values()]
        parts.append("**Bulk ingestion** (`python -m benchmarks.ingest --routes 20000 "
                     "--compare`): a peer sends the routes at once.\n\n"
                     + table(["engine", "routes", "all in the kernel", "all withdrawn",
                              "peak RSS"], rows))
    if "restart" in found:
        rows = []
        for r in latest(found["restart"], "engine").values():
            cells = [ENGINE_NAMES.get(r["engine"], r["engine"])]
            for kind in ("graceful", "crash"):
                k = r.get(kind, {})
                cells += [f"{k.get('lost', NA)} / {k.get('sent', NA)}",
                          str(k.get("owned_routes_deleted", NA))]
            rows.append(cells)
        parts.append("**Restart loss** (`python -m benchmarks.restart --compare`): pod-to-pod "
                     "ping at 100/s while one node's engine restarts.\n\n"
                     + table(["engine", "SIGTERM + start: lost / sent", "routes deleted",
                              "SIGKILL + start: lost / sent", "routes deleted"], rows))
    if "drain" in found:
        runs = [r for _, r in found["drain"]]  # each run a row (the newest last)
        rows = []
        for tor in ("bird2", "frr"):
            for engine, stop, what in (("bgpd", "term", "bgpd: cordon, drain, SIGTERM"),
                                       ("bgpd", "kill", "bgpd: cordon, drain, SIGKILL"),
                                       ("bird", "term", "BIRD 2 (Calico today): SIGTERM"),
                                       ("bird", "kill", "BIRD 2 (Calico today): SIGKILL")):
                mine = [x for x in runs if (x.get("tor", "bird2"), x["engine"], x["stop"])
                        == (tor, engine, stop)][-5:]
                if mine:
                    rows.append([ENGINE_NAMES.get(tor, tor), what,
                                 ", ".join(str(x["lost"]) for x in mine),
                                 ", ".join(str(x["to_dead_node_s"]) for x in mine)])
        parts.append("**Drain loss** (`python -m benchmarks.drain --runs 5 [--tor frr]`): a "
                     f"ToR pings a Service on two nodes at {runs[-1]['packets_per_s']}/s while "
                     "one is taken down (its link down right after the engine stops). Where the "
                     "ToR goes on sending to the node gone, it does so until the graceful-"
                     "restart time (120 s) and the count is a lower bound: ping sends less "
                     "while its probes go unanswered.\n\n"
                     + table(["ToR", "node taken down", "packets lost, each run",
                              "ToR still sending to the node gone (s)"], rows))
    if "outage" in found:
        full = [x for _, x in found["outage"] if x["outage_s"] >= 600]  # not a smoke run
        o = full[-1] if full else found["outage"][-1][1]
        held = o["other_blocks_held_at_end"]
        rows = [[kind, f"{v['lost']} / {v['sent']}"] for kind, v in o["lost"].items()]
        parts.append(f"**Reflector outage** (`python -m benchmarks.outage`): both BIRD 2 "
                     f"reflectors of four nodes (node-0, node-1 BIRD 2; node-2, node-3 bgpd) "
                     f"killed for {o['outage_s']:.0f} s, their graceful-restart time "
                     f"{o['restart_time_s']} s; every pod pings every other pod at 50/s. "
                     "Other nodes' blocks each node still routes at the end: "
                     + ", ".join(f"{k} {v} of 3" for k, v in held.items())
                     + f". node-3 deleted from the datastore then: its block gone from "
                     f"node-2 {o['deleted_node_route_gone_s']} s later.\n\n"
                     + table(["pairs", "lost / sent"], rows))
    if "topology" in found:
        t = found["topology"][-1][1]
        trips, starts = t["round_trips"], t["cold_starts"]
        rows = [[f"mesh -> reflectors -> mesh, {i + 1}",
                 "yes" if x["every_session_on_reflectors"] and x["every_session_back"] else "NO",
                 f"{x['lost']} / {x['sent']}", str(sum(map(len, x["routes_deleted"].values()))),
                 f"{x['seconds']} s"] for i, x in enumerate(trips)]
        rows += [[f"every bgpd stopped and started at once, {i + 1}", "yes",
                  f"{x['lost']} / {x['sent']}", str(sum(map(len, x["routes_deleted"].values()))),
                  f"{x['seconds_back']} s"] for i, x in enumerate(starts)]
        parts.append(f"**Larger cluster** (`python -m benchmarks.topology`): {t['nodes']} bgpd "
                     f"nodes, {t['reflectors']} reflectors; each pod pings the next node's pod "
                     "at 50/s, every node's `proto bird` routes watched.\n\n"
                     + table(["operation", "every session back", "pings lost / sent",
                              "routes deleted", "took"], rows))
    detect, routes = newest(found, "detect", "bfd"), newest(found, "routes", "bfd")
    if detect and routes:
        rows = [[what, f"{k['min_ms']} / {k['median_ms']} / {k['max_ms']} ms",
                 f"{k['within_goal']} of {k['trials']} within {k['goal_ms']} ms"]
                for what, k in (("BIRD killed: BFD Down", detect["kill"]),
                                ("link down: BFD Down", detect["link"]),
                                ("BFD packets dropped: BFD Down", detect["drop"]),
                                ("ToR killed: its route out of the kernel", routes))]
        parts.append("**Failure detection** (`python -m benchmarks.bfd --trials 50 "
                     "--route-trials 10`): BFD at 100 ms x 3 with a BIRD 2 peer.\n\n"
                     + table(["failure", "min / median / max", "goal"], rows))
    if "bfd-cost" in found:
        runs = [r["cost"] for _, r in found["bfd-cost"] if "cost" in r][-3:]
        rows = [[f"{c['sessions']} sessions, {c['seconds']:.0f} s",
                 f"{c['cpu_percent_of_a_core']['engine']} % (kernel "
                 f"{c['of_which_kernel']['engine']} %) + "
                 f"{c['cpu_percent_of_a_core']['daemon_side']} %",
                 f"{c['cpu_percent_of_a_core']['bird']} % (kernel "
                 f"{c['of_which_kernel']['bird']} %)", f"{c['bgpd_vs_bird']}x",
                 " / ".join(f"{f} %" for f in c.get("syscall_floor", ())) or "—",
                 str(c["failures"])] for c in runs]
        parts.append("**BFD's cost** (`python -m benchmarks.bfd --only cost --sessions 100 "
                     "--seconds 60`, the last runs): CPU of a core at 100 ms x 3, bgpd's "
                     "engine + the daemon's side against BIRD 2 with the same sessions; the "
                     "system calls alone for the same packets, each side of a veth "
                     "(`benchmarks/bfd_floor.py`), in the same run.\n\n"
                     + table(["run", "bgpd", "BIRD 2", "ratio", "system calls alone",
                              "failures"], rows))
    if "failover" in found:
        runs = [r for _, r in found["failover"]][-15:]  # each run a row (the newest last)
        names = {"bgpd-bfd": "bgpd, BFD 100 ms x 3", "bird-bfd": "BIRD 2, BFD 100 ms x 3",
                 "bgpd": "no BFD (Calico's open-source edition today)"}
        rows = []
        for engine, name in names.items():
            mine = [r for r in runs if r["engine"] == engine]
            if mine:
                rows.append([name, ", ".join(f"{r['lost']:,}" for r in mine),
                             ", ".join(str(r["tor_moved_s"]) for r in mine)])
        parts.append("**Failover loss** (`python -m benchmarks.failover --runs 5`): a ToR "
                     f"(BIRD 2, ECMP) pings a Service on three nodes at "
                     f"{runs[-1]['packets_per_s']}/s in 8 flows; one node fails hard "
                     "(every packet dropped).\n\n"
                     + table(["nodes", "packets lost, each run", "ToR moved after (s)"], rows))
    if "bfd-soak" in found:
        runs = [r["soak"] for _, r in found["bfd-soak"] if "soak" in r][-3:]
        rows = [[f"{x['sessions']} sessions, {x['seconds']:.0f} s",
                 f"{x['routes']:,} routes x {x['route_toggles']}, {x['reloads']} reloads",
                 f"{x['bfd_down_ours']} / {x['sessions'] - x['bfd_up_at_end_bird']}",
                 str(x["bgp_flaps"])] for x in runs]
        parts.append("**BFD under load** (`python -m benchmarks.bfd --only soak --seconds "
                     "600`): the whole daemon with BGPPeers asking for BFD at 100 ms x 3 "
                     "(one BIRD 2 at the other end of each) while BIRD announces and withdraws "
                     "routes every 30 s and the resources are reloaded every 20 s.\n\n"
                     + table(["run", "load", "BFD Down (ours) / not Up at the end (BIRD)",
                              "BGP flaps"], rows))
    rows = []
    if "kernel_routes" in found:
        r = list(latest(found["kernel_routes"], "routes").values())[-1]
        rows.append([f"kernel routes, {r['routes']:,} (`benchmarks.kernel_routes`)",
                     f"install {fmt(r['bgpd_install_s'], ' s', 3)} "
                     f"({fmt(r['install_vs_ip_batch'], 'x')} `ip -batch`); read back "
                     f"{fmt(r['bgpd_snapshot_s'], ' s', 3)} ({fmt(r['snapshot_vs_ip_show'], 'x')}"
                     f" `ip route show`, {fmt(r['bgpd_snapshot_warm_s'], ' s', 3)} when read "
                     f"again); delete {fmt(r['bgpd_delete_s'], ' s', 3)} "
                     f"({fmt(r['delete_vs_ip_flush'], 'x')} `ip route flush`)"])
    for r in latest(found.get("rib", []), "candidates_per_prefix").values():
        rows.append([f"routing core, {r['routes']:,} routes x {r['peers']} peers, "
                     f"{r['candidates_per_prefix']} candidate(s) per prefix (`benchmarks.rib`)",
                     f"{r['updates_per_s']:,} updates/s, {r['bytes_per_route']:,} bytes/route"])
    if "desired" in found:
        r = list(latest(found["desired"], "nodes").values())[-1]
        rows.append([f"configuration of one node of {r['nodes']} (`benchmarks.desired`)",
                     f"recompute p50 {fmt(r['recompute_ms_p50'], ' ms')}, p99 "
                     f"{fmt(r['recompute_ms_p99'], ' ms')}; node heartbeats: "
                     f"{r['heartbeat_recomputes']} recomputations"])
    if rows:
        parts.append(table(["parts", "result"], rows))
    return "\n\n".join(parts)


def render(folder: Path = RESULTS, *, page: Path | None = None) -> str:
    """The report's Markdown; ``page``: the file it goes into (the plot is linked from
    there; by default from ``folder``, where ``report.md`` is)."""
    found = records(folder)
    parts = []
    # each benchmark's latest run names its machine: tables may come from different ones
    by_machine: dict[tuple[str, int, str], list[tuple[str, str]]] = {}
    for name, rows in found.items():
        m = rows[-1][0]
        by_machine.setdefault((m["cpu"], m["cores"], m["python"]), []).append(
            (name, m["date"][:10]))
    if by_machine:
        parts.append("Measured on " + "; ".join(
            f"{cpu}, {cores} cores, Python {python}: "
            + ", ".join(f"{name} ({date})" for name, date in sorted(runs))
            for (cpu, cores, python), runs in sorted(by_machine.items())) + ".")
    if "mesh" in found:
        parts.append("**One node of a full mesh** (`python -m benchmarks.mesh --peers "
                     "100,300,599 --compare`, node passive):\n\n" + mesh_section(found["mesh"]))
        if mesh_plot(found["mesh"], folder / "mesh.png"):
            where = os.path.relpath(folder / "mesh.png", (page or folder / "x").parent)
            parts.append(f"![mesh benchmark]({where})")
    others = other_sections(found)
    if others:
        parts.append(others)
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readme", type=Path, help="replace the marked section of this file")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    text = render(args.results)
    (args.results / "report.md").write_text(text)
    if args.readme is not None:
        text = render(args.results, page=args.readme)
        readme = args.readme.read_text()
        if BEGIN not in readme or END not in readme:
            raise SystemExit(f"{args.readme}: no {BEGIN} … {END} section to replace")
        head, _, rest = readme.partition(BEGIN)
        _, _, tail = rest.partition(END)
        args.readme.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    print(text)


if __name__ == "__main__":
    main()
