"""The ``bgpd`` command line.

``bgpd --version``; ``bgpd kernel show`` lists the routes the daemon owns in a namespace's
routing table, read the way the daemon reads them (protocol-filtered netlink dump).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from bgpd import __version__
from bgpd.errors import BgpdError
from bgpd.kernel import PROTO_BIRD, TABLE_MAIN, Kernel


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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except BgpdError as exc:
        print(f"bgpd: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"bgpd: {exc} (netlink needs CAP_NET_ADMIN: run as root)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
