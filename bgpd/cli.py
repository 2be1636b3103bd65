"""The ``bgpd`` command line.

``bgpd --version``; ``bgpd kernel show`` lists the routes the daemon owns in a namespace's
routing table, read the way the daemon reads them (protocol-filtered netlink dump);
``bgpd config`` prints the configuration a node derives from Calico's resources.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bgpd import __version__
from bgpd.errors import BgpdError
from bgpd.kernel import PROTO_BIRD, TABLE_MAIN, Kernel
from node_controller.static import ResourceFolderError


def _kernel_show(args: argparse.Namespace) -> int:
    async def read() -> list[str]:
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


def _config(args: argparse.Namespace) -> int:
    from node_controller.desired import desired_config
    from node_controller.static import load_folder

    if args.resources is not None:
        store = load_folder(Path(args.resources))
    else:
        from node_controller.kube import load_cluster

        store = asyncio.run(load_cluster(kubeconfig=args.kubeconfig, namespace=args.namespace))
    config = desired_config(store, args.node)
    data = config.as_dict()
    if args.output == "json":
        print(json.dumps(data, indent=2))
    elif args.output == "yaml":
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        print(_config_text(data))
    return 0


def _config_text(data: dict[str, Any]) -> str:
    lines = [
        f"node {data['node']}: AS {data['local_as']}, router id {data['router_id']}, "
        f"listen port {data['listen_port']}, address {data['node_address']}"
        + (f", route reflector (cluster {data['route_reflector_cluster_id']})"
           if data["route_reflector_cluster_id"] else ""),
        "announce:   " + (", ".join(data["announce"]) or "-"),
        "blackholes: " + (", ".join(data["blackholes"]) or "-"),
        "pools:      " + (", ".join(f"{p['cidr']} (ipip {p['ipip_mode']}, vxlan "
                                    f"{p['vxlan_mode']})" for p in data["pools"]) or "-"),
        f"peers ({len(data['peers'])}):",
    ]
    for p in data["peers"]:
        flags = [f for f, on in (("passive", p["passive"]), ("rr-client", p["rr_client"]),
                                 ("md5", p["password"])) if on]
        lines.append(f"  {p['name']:<28} {p['address']}:{p['port']:<6} AS {p['peer_as']:<10} "
                     f"{p['type']:<6} {' '.join(flags)}")
    lines.append(f"errors ({len(data['errors'])}):")
    lines += [f"  {e['kind']} {e['name']!r}: {e['field']}: {e['message']}"
              for e in data["errors"]]
    return "\n".join(lines)


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
    config.add_argument("--node", required=True, help="the node's name (as in Kubernetes)")
    source = config.add_mutually_exclusive_group(required=True)
    source.add_argument("--resources", metavar="DIR",
                        help="a folder of Calico/Kubernetes manifests (YAML or JSON)")
    source.add_argument("--kubeconfig", metavar="FILE",
                        help="read the resources from the cluster of this kubeconfig")
    config.add_argument("--namespace", default="calico-system",
                        help="namespace of the Secrets holding BGP passwords "
                             "(default calico-system)")
    config.add_argument("--output", choices=["text", "json", "yaml"], default="text")
    config.set_defaults(func=_config)
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
