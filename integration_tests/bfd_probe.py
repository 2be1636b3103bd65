"""Runs bgpd's BFD service alone, inside a test's namespace: ``python -m
integration_tests.bfd_probe --peer ADDR --local ADDR [--tx S --rx S --mult N]``; every event
is a JSON line on stdout with the monotonic time it reached the event loop; a line on stdin
("views") prints the sessions as status sees them; end of stdin stops it (AdminDown sent)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from ipaddress import ip_address

from bgpd.bfd.service import BfdService, Event, Spec, Timers


def _line(value: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer", action="append", required=True)
    parser.add_argument("--local", action="append", required=True)
    parser.add_argument("--interface")
    parser.add_argument("--tx", type=float, default=0.1)
    parser.add_argument("--rx", type=float, default=0.1)
    parser.add_argument("--idle", type=float, default=1.0)
    parser.add_argument("--mult", type=int, default=3)
    args = parser.parse_args()

    def on_event(event: Event) -> None:
        _line({"at": time.monotonic(), "type": type(event).__name__,
               **{k: (v.value if hasattr(v, "value") else v) for k, v in
                  asdict(event).items()}})

    service = BfdService(on_event=on_event)
    timers = Timers(min_tx=args.tx, min_rx=args.rx, idle_tx=args.idle, multiplier=args.mult)
    service.configure(Spec(peer=ip_address(p), local=ip_address(lo), interface=args.interface,
                           timers=timers) for p, lo in zip(args.peer, args.local, strict=True))
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"views":
            _line({"views": [asdict(v) for v in service.snapshot()],
                   "dropped": dict(service.dropped)})
    service.stop()
    await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main())
