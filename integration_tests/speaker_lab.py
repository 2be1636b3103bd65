"""A node running bgpd's speaker (real ExaBGP) facing real peers, in namespaces.

``node`` holds ExaBGP (198.51.100.1, 2001:db8::1); each peer router gets its own namespace
on a bridge in the fabric namespace (198.51.100.2.., 2001:db8::2..).  Tests drive the
:class:`~bgpd.speaker.supervisor.Speaker` directly and read the routers' views.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path
from typing import Any

from bgpd.speaker.config import Neighbor as SpeakerNeighbor
from bgpd.speaker.config import SpeakerConfig
from bgpd.speaker.core import SessionDown, SessionUp, SpeakerEvent
from bgpd.speaker.supervisor import Speaker
from integration_tests import waiting
from integration_tests.netns import Namespace, NetLab
from integration_tests.peers import ROUTERS, Neighbor, Router
from ribs.types import AsPath, Attributes, prefix

NODE_V4, NODE_V6 = "198.51.100.1", "2001:db8::1"
LOCAL_AS = 64512


def peer_v4(i: int) -> str:
    return f"198.51.100.{i + 2}"


def peer_v6(i: int) -> str:
    return f"2001:db8::{i + 2}"


class SpeakerLab:
    def __init__(self, lab: NetLab, workdir: Path) -> None:
        self.lab, self.workdir = lab, workdir
        self.fabric = lab.namespace("fab")
        lab.bridge(self.fabric, "br0")
        self.node = self._host("node", NODE_V4, NODE_V6)
        self.routers: list[Router] = []
        self.speaker = Speaker(workdir=workdir / "speaker", netns=self.node.name,
                               liveness_interval=1.0, liveness_timeout=5.0, backoff_max=2.0)
        self.seen: list[SpeakerEvent] = []
        self.received: dict[str, dict[str, Attributes]] = {}

    def _host(self, role: str, v4: str, v6: str) -> Namespace:
        ns = self.lab.namespace(role)
        port = f"p{len(self.lab.namespaces)}"
        self.lab.veth(ns, "eth0", self.fabric, port)
        self.lab.attach(self.fabric, port, "br0")
        self.lab.address(ns, "eth0", f"{v4}/24")
        self.lab.address(ns, "eth0", f"{v6}/64")
        return ns

    def add_router(self, kind: str, *, asn: int = LOCAL_AS, passive: bool = False,
                   password: str | None = None, originate: Sequence[str] = (),
                   graceful_restart: bool = True, v6: bool = True) -> Router:
        i = len(self.routers)
        ns = self._host(f"{kind}{i}", peer_v4(i), peer_v6(i))
        neighbors = [Neighbor(NODE_V4, LOCAL_AS, passive=passive, password=password,
                              graceful_restart=graceful_restart)]
        if v6 and kind != "bird1":
            neighbors.append(Neighbor(NODE_V6, LOCAL_AS, passive=passive, password=password,
                                      graceful_restart=graceful_restart))
        router = ROUTERS[kind](ns, self.workdir / f"{kind}{i}", router_id=peer_v4(i), asn=asn,
                               neighbors=neighbors, originate=originate)
        router.start()
        self.routers.append(router)
        return router

    def peer_config(self, i: int, *, v6: bool = False, asn: int = LOCAL_AS,
                    passive: bool = False, password: str | None = None) -> SpeakerNeighbor:
        address = ip_address(peer_v6(i) if v6 else peer_v4(i))
        source = ip_address(NODE_V6 if v6 else NODE_V4)
        return SpeakerNeighbor(name=f"Node_{address}", address=address, peer_as=asn,
                               local_as=LOCAL_AS, passive=passive, local_address=source,
                               password=password.encode() if password else None)

    def configure(self, peers: Sequence[SpeakerNeighbor]) -> None:
        self.speaker.configure(SpeakerConfig(router_id=IPv4Address(NODE_V4),
                                             neighbors=tuple(peers)))

    async def pump(self) -> None:
        """Consume speaker events: remember received routes, answer with End-of-RIB."""
        from bgpd.speaker import codec

        while True:
            event = await self.speaker.events.get()
            self.seen.append(event)
            if isinstance(event, SessionUp):
                self.received[str(event.peer)] = {}
                self.speaker.end_of_rib(event.peer)
            elif isinstance(event, codec.Update):
                table = self.received.setdefault(str(event.peer), {})
                for a in event.announce:
                    table[str(a.prefix)] = a.attrs
                for w in event.withdraw:
                    table.pop(str(w.prefix), None)
            elif isinstance(event, SessionDown):
                pass

    def announce(self, peer: str, prefixes: Sequence[str], **attrs: Any) -> None:
        for p in prefixes:
            self.speaker.advertise(ip_address(peer), prefix(str(ip_network(p))),
                                   Attributes(**attrs))

    def withdraw(self, peer: str, prefixes: Sequence[str]) -> None:
        for p in prefixes:
            self.speaker.advertise(ip_address(peer), prefix(str(ip_network(p))), None)


# the checks ask the routers' CLIs: they run in a thread
until = partial(waiting.until, blocking=True, interval=0.1)


def ebgp_path(asn: int = LOCAL_AS) -> AsPath:
    return AsPath.of(asn)
