"""The ``bgpd`` command line.

``bgpd --version``; ``bgpd kernel show`` lists the routes the daemon owns in a namespace's
routing table, read the way the daemon reads them (protocol-filtered netlink dump);
``bgpd config`` prints the configuration a node derives from Calico's resources.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bgpd import __version__
from bgpd.errors import BgpdError
from bgpd.rtnl import PROTO_BIRD, TABLE_MAIN
from node_controller.static import ResourceFolderError

if TYPE_CHECKING:
    from node_controller.desired import DesiredConfig


def _kernel_show(args: argparse.Namespace) -> int:
    async def read() -> list[str]:
        from bgpd.kernel import Kernel

        kernel = Kernel(netns=args.netns, protocol=args.protocol, table=args.table)
        try:
            return sorted(map(str, await kernel.snapshot()))
        finally:
            kernel.close()

    routes = asyncio.run(read())
    if args.output == "json":
        print(json.dumps({"protocol": args.protocol, "table": args.table, "routes": routes}))
    else:
        print("\n".join(routes) if routes else "(no owned routes)")
    return 0


def _config_source(args: argparse.Namespace) -> tuple[str | None, str, dict[str, Any]]:
    """The node, and where ``bgpd config`` reads: ``"static", {folder}`` or
    ``"kubernetes", {...}``, from the flags or, with ``--config``, from the settings file
    (and its node name) as the daemon reads it
    (Typha, as the daemon selects it, from ``FELIX_TYPHA…``/``CONFD_TYPHA…``/
    ``CALICO_TYPHA…``, or ``--typha``)."""
    from node_controller.typha import TyphaConfig

    typha = TyphaConfig.from_environ(os.environ)
    if args.typha:
        from dataclasses import replace

        typha = replace(typha, addr=args.typha)
    if args.config:
        from bgpd.settings import SettingsError, load

        try:
            settings = load(Path(args.config))
        except SettingsError as exc:
            raise BgpdError(f"settings: {exc}") from None
        node = args.node or settings.node_name
        if settings.datastore == "static" and not args.typha:
            return node, "static", {"folder": Path(settings.resources)}
        return node, "kubernetes", {
            "kubeconfig": settings.kubeconfig, "namespace": settings.namespace,
            "node_objects": settings.node_objects,
            "block_affinities": settings.block_affinities, "typha": typha}
    if args.resources is not None:
        if args.typha:
            raise BgpdError("--typha reads Calico's resources from Typha: it goes with "
                            "--kubeconfig or --config, not --resources")
        return args.node, "static", {"folder": Path(args.resources)}
    return args.node, "kubernetes", {"kubeconfig": args.kubeconfig,
                                     "namespace": args.namespace,
                                     "node_objects": "metadata", "typha": typha}


async def _read_config(node: str, kind: str, where: dict[str, Any],
                       timeout: float) -> DesiredConfig:
    """The DesiredConfig the daemon's controller publishes first, read the daemon's way
    (every watch listed once, Typha in sync)."""
    from node_controller.controller import Controller
    from node_controller.desired import desired_config
    from node_controller.static import load_folder

    if kind == "static":  # a folder that cannot be read is an error of the command
        return desired_config(load_folder(where["folder"]), node)
    controller = Controller(node, sync_timeout=timeout)
    run = asyncio.create_task(controller.run_kubernetes(**where))
    first = asyncio.create_task(controller.desired.next(0))
    try:
        done, _ = await asyncio.wait((run, first), return_when=asyncio.FIRST_COMPLETED)
        if first in done:
            return first.result()[1]
        run.result()  # raised: its error is the answer
        raise BgpdError("the controller stopped before it had a configuration")
    finally:
        for task in (run, first):
            task.cancel()
        await asyncio.gather(run, first, return_exceptions=True)


def _config(args: argparse.Namespace) -> int:
    from bgpd import log as logging_setup
    from bgpd.translate import translate

    node, kind, where = _config_source(args)
    if not node:
        raise BgpdError("config: --node is required (or node_name in the --config file)")
    import structlog

    before = structlog.get_config()
    logging_setup.configure("warning", cache=False)  # the reading's problems, on stderr
    try:
        config = asyncio.run(_read_config(node, kind, where, args.timeout))
    finally:
        structlog.configure(**before)
    translation = translate(config)  # what the daemon would leave out, and why
    data = config.as_dict()
    applied = {p.name for p in translation.peers}
    data["peers"] = [p for p in data["peers"] if p["name"] in applied]
    data["announce"] = [str(p) for p in translation.announce]
    data["errors"] = [e.as_dict() for e in sorted({*config.errors, *translation.errors})]
    if args.output == "json":
        print(json.dumps(data, indent=2))
    elif args.output == "yaml":
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        print(_config_text(data))
    return 0


def _some(items: list[str], limit: int = 8) -> str:
    """Up to ``limit`` of ``items``, and how many there are in all."""
    if len(items) > limit:
        return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"
    return ", ".join(items) or "-"


def _config_text(data: dict[str, Any]) -> str:
    def pool(p: dict[str, Any]) -> str:
        states = [s for s, on in (("disabled", p["disabled"]),
                                  ("no BGP export", p["disable_bgp_export"])) if on]
        return (f"{p['cidr']} /{p['block_size']} blocks (ipip {p['ipip_mode']}, vxlan "
                f"{p['vxlan_mode']}{''.join(', ' + s for s in states)})")

    lines = [
        f"node {data['node']}: AS {data['local_as']}, router id {data['router_id']}, "
        f"listen port {data['listen_port']}, address {data['node_address']}"
        + (f", IPv6 {data['node_address_v6']}" if data["node_address_v6"] else "")
        + (f", route reflector (cluster {data['route_reflector_cluster_id']})"
           if data["route_reflector_cluster_id"] else ""),
        "announce:   " + (", ".join(data["announce"]) or "-"),
        "blackholes: " + (", ".join(data["blackholes"]) or "-"),
        "pools:      " + (", ".join(pool(p) for p in data["pools"]) or "-"),
        "import guard (routes from peers that are not Calico nodes, unless a BGPFilter "
        "accepts them):",
        "  inside:     " + (", ".join([*(f"{p['cidr']} (pool)" for p in data["pools"]),
                                       *(f"{c} (services)" for c in data["service_cidrs"])])
                            or "-"),
        "  never:      default route" + "".join(
            f", {n}" for n in ([data["node_address"]] if data["node_address"] else [])
            + data["blackholes"]) + " (this node's subnet and blocks)",
        "  no longer than the blocks: " + (", ".join(f"/{p['block_size']} in {p['cidr']}"
                                                     for p in data["pools"]) or "-")
        + "; of other nodes: " + _some(data["other_blocks"]),
    ]
    if data["services"]:
        lines.append(f"services ({len(data['services'])}):")
        lines += [f"  {s['prefix']:<20} {s['service']}: {s['reason']}"
                  for s in data["services"]]
    lines.append(f"peers ({len(data['peers'])}):")
    for p in data["peers"]:
        flags = [f for f, on in (("passive", p["passive"]), ("rr-client", p["rr_client"]),
                                 ("md5", p["password"])) if on]
        lines.append(f"  {p['name']:<28} {p['address']}:{p['port']:<6} AS {p['peer_as']:<10} "
                     f"{p['type']:<6} {' '.join(flags)}")
    for what in ("errors", "notices"):
        lines.append(f"{what} ({len(data[what])}):")
        lines += [f"  {e['kind']} {e['name']!r}: {e['field']}: {e['message']}"
                  for e in data[what]]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    import signal

    # a reload asked for while the daemon starts (systemd's ExecReload, a script) must not
    # end it, as SIGHUP's default does: the first load, once the daemon handles the signal,
    # reads the resources as they are then
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from bgpd import log as logging_setup
    from bgpd.settings import SettingsError, load
    from bgpd.speaker import listen, prestart

    if args.node:
        os.environ["NODENAME"] = args.node
    overrides = {"resources": args.resources, "datastore": "static" if args.resources else None}
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"BGPD_{key.upper()}"] = value
    try:
        settings = load(Path(args.config) if args.config else None)
    except SettingsError as exc:
        print(f"bgpd: settings: {exc}", file=sys.stderr)
        return 2
    if args.withdraw_on_exit:
        from dataclasses import replace

        settings = replace(settings, withdraw_on_exit=True)
    # BGP's port first: peers connecting while the rest starts wait in its backlog
    sockets, problems = listen.bind()
    logging_setup.configure(settings.log_level)
    if problems:
        import structlog

        structlog.get_logger("bgpd").warning("early_listen_failed", problems=problems)

    async def run() -> None:
        # ExaBGP imports its code while the daemon imports its own (bgpd.speaker.prestart)
        engine = await prestart.prestart(sockets)
        from bgpd.daemon import Daemon

        try:
            await Daemon(settings, listen_sockets=sockets, engine=engine).run()
        finally:  # still waiting if the daemon stopped before it started ExaBGP
            if engine is not None and engine.returncode is None:
                engine.kill()
                await engine.wait()

    try:
        asyncio.run(run())
    except Exception as exc:  # a failed task ends the daemon: say which and why
        for leaf in _leaves(exc):
            print(f"bgpd: stopped: {type(leaf).__name__}: {leaf}", file=sys.stderr)
        return 1
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _ask(args: argparse.Namespace, payload: dict[str, Any]) -> Any:
    from bgpd.observability import request

    try:
        return asyncio.run(request(Path(args.socket), payload))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise BgpdError(f"no bgpd answers on {args.socket} ({exc.strerror}): is it running?"
                        ) from None


def _status(args: argparse.Namespace) -> int:
    data = _ask(args, {"command": "status"})
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    print(f"bgpd on node {data['node']}: AS {data['as']}, router id {data['router_id']}, "
          f"{data['kernel']['owned_routes']} kernel routes owned, last kernel sync "
          f"{data['kernel']['last_sync_seconds_ago']}s ago"
          + (", restarting (stale routes held)" if data["rib"]["restarting"] else ""))
    header = ("PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO", "RECV", "ACCEPT", "ADV")
    rows = [(p["address"], p["type"], p["state"].split(" ")[0].lower() if p["established"]
             else p["state"], p["since"], p["info"], str(p["routes_received"]),
             str(p["routes_accepted"]), str(p["routes_advertised"])) for p in data["peers"]]
    print(_table(header, rows))
    if data.get("draining"):
        print(f"DRAINING ({data['draining']}): every route sent carries GRACEFUL_SHUTDOWN")
    if data.get("degraded"):
        print(f"DEGRADED ({len(data['degraded'])}):")
        print("\n".join(f"  {reason}" for reason in data["degraded"]))
    for unit, why in (data["speaker"].get("engine_units_left_out") or {}).items():
        print(f"NOTE: ExaBGP runs its own code for {unit} (correct, slower): {why}")
    if data.get("notices"):
        print(f"NOTICES: inputs that change nothing ({len(data['notices'])}):")
        print("\n".join(f"  {n['kind']} {n['name']!r}: {n['field']}: {n['message']}"
                        for n in data["notices"]))
    return 0


def _drain(args: argparse.Namespace) -> int:
    data = _ask(args, {"command": args.command_name})
    if args.output == "json":
        print(json.dumps(data, indent=2))
    elif data.get("draining"):
        print(f"draining ({data.get('reason')}): every route this node sends carries "
              "GRACEFUL_SHUTDOWN; `bgpd undrain` ends it")
    else:
        print("not draining")
    return 0


def _routes(args: argparse.Namespace) -> int:
    data = _ask(args, {"command": "routes", "prefix": args.prefix, "peer": args.peer})
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    header = ("PREFIX", "NEXT HOP", "FROM", "WHY", "KERNEL")
    rows = [(r["prefix"], r["next_hop"] or "-", r["from"],
             (r["why"] or "-") + (" [stale]" if r["stale"] else "")
             + "".join(f"; service {s['service']}: {s['reason']}" for s in r["services"]),
             r["kernel"]) for r in data]
    print(_table(header, rows))
    return 0


def _table(header: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
           line]
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in rows]
    out.append(line)
    return "\n".join(out)


def _takeover(args: argparse.Namespace) -> int:
    from bgpd.takeover import TakeoverError, take_over

    v4 = Path(args.bird_socket)
    try:
        for line in take_over([v4, v4.with_name(f"{v4.stem}6{v4.suffix}")], force=args.force):
            print(line)
    except TakeoverError as exc:
        print(f"bgpd takeover: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a socket that stops answering, /proc unreadable, no permission
        print(f"bgpd takeover: {type(exc).__name__}: {exc} (nothing more was done; BIRD may "
              "still run: check it before starting bgpd)", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bgpd",
        description="Per-node BGP route distribution for Calico clusters (replaces BIRD + confd).",
    )
    parser.add_argument("--version", action="version", version=f"bgpd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    kernel = commands.add_parser("kernel", help="inspect the kernel routes bgpd owns")
    kernel_commands = kernel.add_subparsers(dest="kernel_command", metavar="ACTION", required=True)
    show = kernel_commands.add_parser(
        "show", help="list the owned routes (one protocol, one table) of a network namespace"
    )
    show.add_argument("--netns", help="network namespace name (default: this process's)")
    show.add_argument("--protocol", type=int, default=PROTO_BIRD,
                      help=f"route protocol number owned (default {PROTO_BIRD}, 'bird')")
    show.add_argument("--table", type=int, default=TABLE_MAIN,
                      help=f"routing table (default {TABLE_MAIN}, 'main')")
    show.add_argument("--output", choices=["text", "json"], default="text")
    show.set_defaults(func=_kernel_show)

    config = commands.add_parser(
        "config", help="print a node's desired BGP configuration and the resource errors found",
        description="Translate Calico resources (a folder of manifests, or a cluster) into "
                    "one node's desired BGP configuration, as the daemon would run it.")
    config.add_argument("--node", help="the node's name (as in Kubernetes; with --config, "
                                       "default: as the daemon names it)")
    source = config.add_mutually_exclusive_group(required=True)
    source.add_argument("--resources", metavar="DIR",
                        help="a folder of Calico/Kubernetes manifests (YAML or JSON)")
    source.add_argument("--kubeconfig", metavar="FILE",
                        help="read the resources from the cluster of this kubeconfig")
    source.add_argument("--config", metavar="FILE",
                        help="read them where this settings file's datastore says, as the "
                             "daemon does (with Typha where FELIX_TYPHAADDR or "
                             "FELIX_TYPHAK8SSERVICENAME, or their CONFD_/CALICO_ forms, say)")
    config.add_argument("--typha", metavar="HOST:PORT",
                        help="with --kubeconfig or --config: the Calico resources from this "
                             "Typha (TLS from FELIX_TYPHACAFILE, ...CERTFILE, ...KEYFILE, "
                             "...CN or ...URISAN), the rest from the API, as the daemon does")
    config.add_argument("--namespace", default="calico-system",
                        help="namespace of the Secrets holding BGP passwords "
                             "(default calico-system)")
    config.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="wait this long for every watch to list (default 30); then "
                             "what is read so far, with an error per watch not listed")
    config.add_argument("--output", choices=["text", "json", "yaml"], default="text")
    config.set_defaults(func=_config)

    run = commands.add_parser(
        "run", help="run the daemon",
        description="Run bgpd: watch Calico resources, speak BGP through ExaBGP, program the "
                    "kernel's routes (proto bird). Settings come from --config (YAML, see "
                    "config/bgpd.yaml for every key), overridden by BGPD_<KEY> environment "
                    "variables; the node name from --node, NODENAME, the node_name setting "
                    "or the hostname. SIGTERM stops without withdrawing anything (kernel "
                    "routes stay, peers keep ours by graceful restart); SIGHUP reloads the "
                    "static resource folder.")
    run.add_argument("--config", metavar="FILE", help="settings file (YAML)")
    run.add_argument("--node", help="this node's name (default: NODENAME, then the hostname)")
    run.add_argument("--resources", metavar="DIR",
                     help="static mode: read Calico resources from this folder instead of "
                          "the Kubernetes API")
    run.add_argument("--withdraw-on-exit", action="store_true",
                     help="on SIGTERM, tear sessions down and remove every owned route "
                          "(decommission) instead of keeping them for a restart")
    run.set_defaults(func=_run)

    takeover = commands.add_parser(
        "takeover", help="make BIRD leave this node without a Cease, before bgpd starts",
        description="Switching a node from BIRD to bgpd: BIRD stopped by SIGTERM tells its "
                    "peers Cease, and they drop the node's routes at once. This makes each "
                    "BIRD on the control sockets leave without a NOTIFICATION (BIRD 2: its "
                    "'graceful restart' command; BIRD 1: SIGKILL), so its peers keep its "
                    "routes until bgpd, started next, sends them again. Refuses when BIRD's "
                    "sessions lack graceful restart, or when BIRD comes back (calico-node's "
                    "runit: run 'sv once bird bird6' in calico-node first).")
    takeover.add_argument("--bird-socket", default="/var/run/calico/bird.ctl",
                          help="BIRD's control socket; bird6.ctl beside it too (default "
                               "/var/run/calico/bird.ctl)")
    takeover.add_argument("--force", action="store_true",
                          help="go on even when some BIRD session lacks graceful restart")
    takeover.set_defaults(func=_takeover)

    for name, func, text in (("status", _status, "sessions and counters of a running bgpd"),
                             ("routes", _routes, "the Loc-RIB: best paths, why, and kernel state"),
                             ("drain", _drain, "move traffic away before a reboot: every route "
                              "this node sends carries GRACEFUL_SHUTDOWN (RFC 8326), LOCAL_PREF "
                              "0 to iBGP peers, until `bgpd undrain` (a cordon does the same)"),
                             ("undrain", _drain, "end `bgpd drain`")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--socket", default="/run/bgpd/bgpd.sock",
                         help="the daemon's control socket (default /run/bgpd/bgpd.sock)")
        sub.add_argument("--output", choices=["text", "json"], default="text")
        sub.set_defaults(command_name=name)
        if name == "routes":
            sub.add_argument("--prefix", help="only prefixes inside this CIDR")
            sub.add_argument("--peer", help="only routes from this peer (address or name)")
        sub.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (BgpdError, ResourceFolderError) as exc:
        print(f"bgpd: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"bgpd: {exc} (netlink needs CAP_NET_ADMIN: run as root)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
