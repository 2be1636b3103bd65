"""Runs bgpd's BFD service alone, inside a test's namespace: ``python -m
integration_tests.bfd_probe --peer ADDR --local ADDR [--tx S --rx S --mult N] [--multihop
[--min-ttl N]]``; every event
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
    parser.add_argument("--multihop", action="store_true", help="RFC 5883 sessions")
    parser.add_argument("--min-ttl", type=int, help="multihop: the lowest TTL taken")
    args = parser.parse_args()

    def on_event(event: Event) -> None:
        _line({"at": time.monotonic(), "type": type(event).__name__,
               **{k: (v.value if hasattr(v, "value") else v) for k, v in
                  asdict(event).items()}})

    service = BfdService(on_event=on_event)
    timers = Timers(min_tx=args.tx, min_rx=args.rx, idle_tx=args.idle, multiplier=args.mult)
    min_ttl = args.min_ttl or (1 if args.multihop else 255)
    service.configure(Spec(peer=ip_address(p), local=ip_address(lo), interface=args.interface,
                           timers=timers, multihop=args.multihop, min_ttl=min_ttl)
                      for p, lo in zip(args.peer, args.local, strict=True))
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        words = line.split()
        if words[:1] == [b"busy"]:  # the event loop busy in Python for N seconds
            end = time.monotonic() + float(words[1])
            while time.monotonic() < end:
                sum(range(1000))
            _line({"busy": float(words[1])})
        elif words[:1] == [b"parse"]:  # one json.loads of N MB (C code, holding the GIL)
            doc = json.dumps([{"name": f"node-{i}", "labels": {"a": "b" * 40}}
                              for i in range(int(float(words[1]) * 14_000))])
            start = time.monotonic()
            json.loads(doc)
            _line({"parse_s": round(time.monotonic() - start, 3), "mb": len(doc) >> 20})
        elif line.strip() == b"engine":  # the engine process's pid, and its restarts
            process = service._process
            _line({"engine": process.pid if process else None, "restarts": service.restarts})
        elif line.strip() == b"views":
            views = await service.fresh_snapshot()
            _line({"views": [asdict(v) for v in views], "dropped": dict(service.dropped)})
    service.stop()
    await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main())
