"""A userspace ``tunl0``: IP-in-IP (IP protocol 4) for kernels without the ``ipip`` module.

    ip netns exec NODE python -m integration_tests.ipip --local 198.51.100.10 [--stats FILE]

The lab's and the tests' substitute for Linux's IPIP device where the kernel has none (see
README): ``tunl0`` is a TUN device (made by :func:`integration_tests.netns.tunl0`) and this
process, one per node namespace, moves its packets:

* out: an IPv4 packet the kernel routes into ``tunl0`` is sent to the gateway of the
  ``onlink`` route of ``tunl0`` that covers its destination (longest prefix) and that a
  cluster-route owner put there — ``proto bird`` (bgpd, BIRD) or Felix's protocol — read from
  the kernel's table, never from bgpd, as a real IP packet of protocol 4 from the node's
  address (``tcpdump -n proto 4`` shows them; a Linux ``ipip`` tunl0 would accept them).  A
  packet no such route covers is dropped: the encapsulator is no open relay;
* in: an IP packet of protocol 4 addressed to the node loses its outer header and the inner
  packet is handed to ``tunl0``, for the kernel to route.

The routes are read again at every change of the kernel's IPv4 routes.  Counters go to
``--stats`` (JSON, rewritten at most every 0.1 s while they change).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import selectors
import socket
import struct
import time
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
RTNH_F_ONLINK = 4
# the owners of cluster routes on tunl0: BIRD or bgpd, and Felix (deviceRouteProtocol: 3 by
# default, 80 where set so) — since Calico v3.33 Felix programs the IPIP ones by default
OWNERS = frozenset({12, 3, 80})
IPPROTO_IPIP = 4


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Routes:
    """The onlink routes of one device that a cluster-route owner installed: (network, mask,
    gateway), longest prefix first."""

    def __init__(self, ipr: IPRoute, device: str) -> None:
        self.ipr, self.device = ipr, device
        self.table: list[tuple[int, int, bytes]] = []

    def load(self) -> None:
        index = self.ipr.link_lookup(ifname=self.device)
        found: list[tuple[int, int, int, bytes]] = []
        for route in self.ipr.get_routes(family=socket.AF_INET, table=254) if index else []:
            if route["proto"] not in OWNERS:
                continue
            for oif, gateway, flags in _hops(route):
                if oif == index[0] and gateway and flags & RTNH_F_ONLINK:
                    length = route["dst_len"]
                    dst = route.get_attr("RTA_DST") or "0.0.0.0"
                    mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
                    net = int.from_bytes(socket.inet_aton(dst), "big") & mask
                    found.append((length, net, mask, socket.inet_aton(gateway)))
                    break  # the first hop of a multipath route is enough here
        self.table = [(net, mask, gw) for _, net, mask, gw in sorted(found, reverse=True)]

    def gateway(self, destination: bytes) -> bytes | None:
        value = int.from_bytes(destination, "big")
        for net, mask, gw in self.table:
            if value & mask == net:
                return gw
        return None


def _hops(route: object) -> list[tuple[int | None, str | None, int]]:
    get = route.get_attr  # type: ignore[attr-defined]
    multipath = get("RTA_MULTIPATH")
    if multipath:
        return [(h["oif"], h.get_attr("RTA_GATEWAY"), h["flags"]) for h in multipath]
    return [(get("RTA_OIF"), get("RTA_GATEWAY"), route["flags"])]  # type: ignore[index]


class Encapsulator:
    def __init__(self, local: str, device: str, stats: Path | None) -> None:
        self.local = socket.inet_aton(local)
        self.tun = open_tun(device)
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
        self.raw.bind((local, 0))
        self.raw.setblocking(False)
        self.ipr = IPRoute()
        self.events = IPRoute()
        self.events.bind(groups=RTMGRP_IPV4_ROUTE)
        self.routes = Routes(self.ipr, device)
        self.routes.load()
        self.stats_path = stats  # the route count changes it too: written once at start
        self.counts = {"encapsulated": 0, "decapsulated": 0, "dropped_no_route": 0,
                       "dropped_not_ipv4": 0, "dropped_not_for_us": 0}
        self._written = 0.0
        self._dirty = True

    def count(self, what: str) -> None:
        self.counts[what] += 1
        self._dirty = True

    def out(self) -> None:
        while True:
            try:
                packet = os.read(self.tun, 65535)
            except BlockingIOError:
                return
            if len(packet) < 20 or packet[0] >> 4 != 4:
                self.count("dropped_not_ipv4")
                continue
            gateway = self.routes.gateway(packet[16:20])
            if gateway is None:
                self.count("dropped_no_route")
                continue
            self.raw.sendto(packet, (socket.inet_ntoa(gateway), 0))
            self.count("encapsulated")

    def into(self) -> None:
        while True:
            try:
                packet = self.raw.recv(65535)
            except BlockingIOError:
                return
            header = (packet[0] & 0x0F) * 4
            if packet[16:20] != self.local or len(packet) <= header:
                self.count("dropped_not_for_us")
                continue
            os.write(self.tun, packet[header:])
            self.count("decapsulated")

    def reload(self) -> None:
        self.events.get()  # drain: the table is read whole
        self.routes.load()
        self._dirty = True

    def write_stats(self) -> None:
        now = time.monotonic()
        if self.stats_path is None or not self._dirty or now - self._written < 0.1:
            return
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.counts, "routes": len(self.routes.table)}))
        tmp.replace(self.stats_path)
        self._written, self._dirty = now, False

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.tun, selectors.EVENT_READ, self.out)
        selector.register(self.raw, selectors.EVENT_READ, self.into)
        selector.register(self.events.fileno(), selectors.EVENT_READ, self.reload)
        while True:
            for key, _ in selector.select(timeout=0.1):
                key.data()
            self.write_stats()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--local", required=True, help="this node's address")
    parser.add_argument("--device", default="tunl0")
    parser.add_argument("--stats", type=Path, help="write the counters here (JSON)")
    args = parser.parse_args()
    Encapsulator(args.local, args.device, args.stats).run()


if __name__ == "__main__":
    main()
