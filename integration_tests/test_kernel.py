"""Kernel route sync against the real kernel, in namespaces made for each test."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from ipaddress import ip_address, ip_network

from bgpd.errors import ForeignRouteConflict, GatewayUnreachable, NoSuchDevice
from bgpd.kernel import Kernel
from bgpd.kernel_sync import KernelSync
from integration_tests.netns import Namespace, NetLab, tunl0
from integration_tests.waiting import until
from ribs.kernel_plan import KernelRoute, NextHop, Op, OpKind

NODE_IP = "198.51.100.1/24"


def make_node(lab: NetLab) -> Namespace:
    """A node namespace: eth0 on 198.51.100.0/24 (peer end in the same namespace), tunl0."""
    ns = lab.namespace("node")
    ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
    ns.ip("link", "set", "eth0-peer", "up")
    ns.ip("link", "set", "eth0", "up")
    lab.address(ns, "eth0", NODE_IP)
    lab.address(ns, "eth0", "2001:db8::1/64")
    print(f"tunl0 in {ns}: {tunl0(ns)}")
    return ns


def bird_routes(ns: Namespace, family: int = 4) -> set[str]:
    """Our routes as `ip route show` prints them (unfiltered, so `proto bird` shows)."""
    return {line for line in ns.routes(family=family) if "proto bird" in line}


def via(prefix: str, gw: str, dev: str, *, onlink: bool = False) -> KernelRoute:
    return KernelRoute.via(ip_network(prefix), ip_address(gw), dev, onlink=onlink)


def blackhole(prefix: str) -> KernelRoute:
    return KernelRoute.blackhole(ip_network(prefix))


def ecmp(prefix: str, *hops: tuple[str, str, bool]) -> KernelRoute:
    return KernelRoute(
        prefix=ip_network(prefix),
        nexthops=tuple(NextHop(ip_address(gw), dev, onlink) for gw, dev, onlink in hops),
    )


async def sync_once(ns: Namespace, desired: list[KernelRoute]) -> KernelSync:
    kernel = Kernel(netns=ns.name)
    sync = KernelSync(kernel)
    sync.set_desired(desired)
    await sync.sync()
    kernel.close()
    return sync


wait_for = partial(until, interval=0.01)


CALICO_SHAPES = [
    # (route, exact `ip route show` line)
    (via("172.17.216.0/24", "198.18.1.7", "tunl0", onlink=True),
     "172.17.216.0/24 via 198.18.1.7 dev tunl0 proto bird onlink"),
    (via("172.17.217.0/24", "198.51.100.7", "eth0"),
     "172.17.217.0/24 via 198.51.100.7 dev eth0 proto bird"),
    (blackhole("172.17.5.0/24"), "blackhole 172.17.5.0/24 proto bird"),
    (ecmp("172.17.218.0/24", ("198.18.1.8", "tunl0", True), ("198.51.100.9", "eth0", False)),
     "172.17.218.0/24 proto bird nexthop via 198.18.1.8 dev tunl0 weight 1 onlink "
     "nexthop via 198.51.100.9 dev eth0 weight 1"),
]
CALICO_SHAPES_V6 = [
    (via("fd00:17:1::/64", "2001:db8:ff::7", "tunl0", onlink=True),
     "fd00:17:1::/64 via 2001:db8:ff::7 dev tunl0 proto bird metric 1024 onlink pref medium"),
    (via("fd00:17:2::/64", "2001:db8::8", "eth0"),
     "fd00:17:2::/64 via 2001:db8::8 dev eth0 proto bird metric 1024 pref medium"),
    (blackhole("fd00:17:5::/64"),
     "blackhole fd00:17:5::/64 dev lo proto bird metric 1024 pref medium"),
]


def test_calico_route_shapes_read_back_exactly(lab: NetLab) -> None:
    ns = make_node(lab)
    desired = [r for r, _ in CALICO_SHAPES + CALICO_SHAPES_V6]
    sync = asyncio.run(sync_once(ns, desired))
    assert sync.errors == {}
    assert bird_routes(ns) == {line for _, line in CALICO_SHAPES}
    assert bird_routes(ns, 6) == {line for _, line in CALICO_SHAPES_V6}

    async def read_back() -> list[KernelRoute]:
        kernel = Kernel(netns=ns.name)
        try:
            return await kernel.snapshot()
        finally:
            kernel.close()

    snapshot = asyncio.run(read_back())
    assert sorted(map(str, snapshot)) == sorted(map(str, desired))
    assert set(snapshot) == set(desired)


def foreign_routes(ns: Namespace) -> set[str]:
    lines = set()
    for family in (4, 6):
        lines |= {line for line in ns.routes(family=family) if "proto bird" not in line}
    return lines


def test_foreign_routes_never_touched(lab: NetLab) -> None:
    ns = make_node(lab)
    # same prefix as a route we want, overlapping prefixes, several protocols, both families
    ns.ip("route", "add", "172.17.9.0/24", "via", "198.51.100.50", "proto", "static")
    ns.ip("route", "add", "172.17.0.0/16", "via", "198.51.100.51", "proto", "boot")
    ns.ip("route", "add", "172.17.10.5/32", "dev", "eth0", "proto", "kernel")
    ns.ip("route", "add", "172.17.11.0/24", "via", "198.51.100.52", "proto", "static",
          "metric", "5")
    ns.ip("-6", "route", "add", "fd00:17:9::/64", "via", "2001:db8::50", "proto", "static")
    before = foreign_routes(ns)

    desired = [
        via("172.17.9.0/24", "198.18.1.9", "tunl0", onlink=True),  # held by proto static
        via("172.17.10.0/24", "198.18.1.10", "tunl0", onlink=True),
        via("172.17.11.0/24", "198.18.1.11", "tunl0", onlink=True),  # same prefix, other metric
        via("fd00:17:9::/64", "2001:db8::9", "eth0"),  # held by proto static
        blackhole("172.17.5.0/24"),
    ]
    sync = asyncio.run(sync_once(ns, desired))
    assert isinstance(sync.errors[ip_network("172.17.9.0/24")], ForeignRouteConflict)
    assert isinstance(sync.errors[ip_network("fd00:17:9::/64")], ForeignRouteConflict)
    assert sync.stats.foreign_conflicts == 2
    assert len(sync.errors) == 2
    assert foreign_routes(ns) == before
    assert "172.17.11.0/24 via 198.18.1.11 dev tunl0 proto bird onlink" in ns.routes()

    sync = asyncio.run(sync_once(ns, []))  # remove everything we own
    assert sync.errors == {}
    assert ns.routes("proto", "bird") == [] and ns.routes("proto", "bird", family=6) == []
    assert foreign_routes(ns) == before


def test_owned_routes_left_by_a_previous_run_are_adopted_not_flushed(lab: NetLab) -> None:
    ns = make_node(lab)
    ns.ip("route", "add", "172.17.30.0/24", "via", "198.18.1.30", "dev", "tunl0", "onlink",
          "proto", "bird")
    ns.ip("route", "add", "blackhole", "172.17.5.0/24", "proto", "bird")

    async def scenario() -> list[KernelRoute]:
        kernel = Kernel(netns=ns.name)
        sync = KernelSync(kernel)
        adopted = await sync.adopt()
        task = asyncio.create_task(sync.run())
        await asyncio.sleep(0)  # the monitor is up; no desired set yet: nothing may change
        ns.ip("link", "set", "eth0-peer", "down")  # an event that would start a pass
        ns.ip("link", "set", "eth0-peer", "up")
        await asyncio.sleep(0.05)
        still = await kernel.snapshot()
        task.cancel()
        kernel.close()
        assert sorted(map(str, still)) == sorted(map(str, adopted))
        return adopted

    adopted = asyncio.run(scenario())
    assert sorted(map(str, adopted)) == [
        "172.17.30.0/24 via 198.18.1.30 dev tunl0 onlink", "blackhole 172.17.5.0/24"
    ]


def test_drift_is_repaired_and_unchanged_reapply_writes_nothing(lab: NetLab) -> None:
    ns = make_node(lab)
    desired = [via(f"172.17.{i}.0/24", f"198.18.1.{i}", "tunl0", onlink=True) for i in range(1, 21)]
    desired.append(blackhole("172.17.100.0/24"))

    async def scenario() -> dict[str, float]:
        kernel = Kernel(netns=ns.name)
        sync = KernelSync(kernel)
        task = asyncio.create_task(sync.run())
        sync.set_desired(desired)
        await asyncio.wait_for(sync.synced.wait(), 10)
        def routes() -> set[str]:
            return bird_routes(ns)

        good = routes()
        assert len(good) == 21
        figures = {}

        ns.ip("route", "del", "172.17.3.0/24")
        figures["deleted"] = await wait_for(lambda: routes() == good, 1.0, "deleted route back")
        ns.ip("route", "replace", "172.17.4.0/24", "via", "198.51.100.99", "dev", "eth0",
              "proto", "bird")
        figures["altered"] = await wait_for(lambda: routes() == good, 1.0, "altered route fixed")
        ns.ip("route", "add", "172.17.200.0/24", "via", "198.51.100.98", "proto", "bird")
        figures["stray"] = await wait_for(lambda: routes() == good, 1.0, "stray owned route gone")
        ns.ip("route", "del", "blackhole", "172.17.100.0/24")
        figures["blackhole"] = await wait_for(lambda: routes() == good, 1.0, "blackhole back")
        assert sync.stats.drift_repairs == 4

        writes = sync.stats.writes
        sync.set_desired(list(desired))  # the same set again: no pass at all
        report = await sync.sync()  # and a forced pass writes nothing either
        assert report.writes == 0 and sync.stats.writes == writes
        task.cancel()
        kernel.close()
        return figures

    figures = asyncio.run(scenario())
    print("repair seconds:", json.dumps(figures))


def test_desired_changes_plan_from_the_last_pass_and_drift_reads_the_kernel(lab: NetLab
                                                                            ) -> None:
    """A pass for a new desired set alone plans against what the last clean pass left (no
    dump per pass during a flood of changes); anything else the kernel does is an event that
    makes the next pass read it, even when it comes with a desired change."""
    ns = make_node(lab)
    routes = [via(f"172.17.{i}.0/24", f"198.18.1.{i}", "tunl0", onlink=True)
              for i in range(1, 41)]

    async def scenario() -> None:
        kernel = Kernel(netns=ns.name)
        sync = KernelSync(kernel)
        task = asyncio.create_task(sync.run())
        sync.set_desired(routes[:1])
        await asyncio.wait_for(sync.synced.wait(), 10)
        assert sync.stats.snapshots == 1
        for n in range(2, 41):  # one change at a time, each its own pass
            sync.set_desired(routes[:n])
            await asyncio.wait_for(sync.synced.wait(), 10)
        for n in range(39, 9, -1):
            sync.set_desired(routes[:n])
            await asyncio.wait_for(sync.synced.wait(), 10)
        expected = {f"{r.prefix} via {r.nexthops[0].gateway} dev tunl0 proto bird onlink"
                    for r in routes[:10]}
        assert bird_routes(ns) == expected
        assert sync.stats.passes > 30 and sync.stats.snapshots == 1
        # someone deletes one of ours while the desired set changes: read, repaired
        ns.ip("route", "del", "172.17.2.0/24")
        sync.set_desired(routes[:11])
        await wait_for(lambda: len(bird_routes(ns)) == 11, 2.0, "the deleted route back")
        assert sync.stats.snapshots >= 2
        task.cancel()
        kernel.close()

    asyncio.run(scenario())


def test_a_next_hop_without_a_device_is_installed_once(lab: NetLab) -> None:
    """``via NH`` (a gateway reached through another route; the kernel picks the device and
    reports it back): the route read back with its device is the one wanted — no rewrite on
    every pass, no echo taken for drift."""
    ns = make_node(lab)
    route = KernelRoute(prefix=ip_network("10.200.0.0/24"),
                        nexthops=(NextHop(ip_address("198.51.100.7"), None),))

    async def scenario() -> None:
        kernel = Kernel(netns=ns.name)
        sync = KernelSync(kernel)
        task = asyncio.create_task(sync.run())
        sync.set_desired([route])
        await asyncio.wait_for(sync.synced.wait(), 10)
        assert bird_routes(ns) == {"10.200.0.0/24 via 198.51.100.7 dev eth0 proto bird"}
        await asyncio.sleep(0)  # (the echo of the write is read by the watch task)
        report = await sync.sync()
        assert report.writes == 0 and sync.stats.writes == 1
        assert sync.stats.drift_repairs == 0
        task.cancel()
        kernel.close()

    asyncio.run(scenario())


def test_foreign_route_leaving_lets_ours_in(lab: NetLab) -> None:
    ns = make_node(lab)
    ns.ip("route", "add", "172.17.9.0/24", "via", "198.51.100.50", "proto", "static")

    async def scenario() -> None:
        kernel = Kernel(netns=ns.name)
        sync = KernelSync(kernel)
        task = asyncio.create_task(sync.run())
        sync.set_desired([via("172.17.9.0/24", "198.18.1.9", "tunl0", onlink=True)])
        await wait_for(lambda: ip_network("172.17.9.0/24") in sync.errors, 5, "conflict seen")
        ns.ip("route", "del", "172.17.9.0/24", "proto", "static")
        await wait_for(
            lambda: ns.routes("172.17.9.0/24")
            == ["172.17.9.0/24 via 198.18.1.9 dev tunl0 proto bird onlink"],
            1.0, "our route after the foreign one left",
        )
        task.cancel()
        kernel.close()

    asyncio.run(scenario())


def test_bad_routes_fail_alone(lab: NetLab) -> None:
    ns = make_node(lab)
    good = [via(f"172.17.{i}.0/24", "198.18.1.1", "tunl0", onlink=True) for i in range(10)]
    bad = [
        via("172.17.50.0/24", "198.18.1.50", "nosuch0", onlink=True),  # no such device
        via("172.17.51.0/24", "203.0.113.1", "eth0"),  # gateway not on eth0, no onlink
        via("172.17.52.0/24", "198.18.1.52", "tunl0", onlink=True),  # listed twice
        via("172.17.52.0/24", "198.18.1.53", "tunl0", onlink=True),
    ]
    sync = asyncio.run(sync_once(ns, bad[:2] + good[:5] + bad[2:] + good[5:]))
    assert isinstance(sync.errors[ip_network("172.17.50.0/24")], NoSuchDevice)
    assert "nosuch0" in str(sync.errors[ip_network("172.17.50.0/24")])
    assert isinstance(sync.errors[ip_network("172.17.51.0/24")], GatewayUnreachable)
    assert "more than once" in str(sync.errors[ip_network("172.17.52.0/24")])
    assert len(sync.errors) == 3
    assert len(ns.routes("proto", "bird")) == 10


def test_twenty_thousand_routes_install_replace_remove(lab: NetLab) -> None:
    ns = make_node(lab)
    prefixes = [ip_network(f"172.{16 + i // 65536 % 16}.{i // 256 % 256}.{i % 256}/32")
                for i in range(20_000)]
    first = [KernelRoute.via(p, ip_address("198.18.0.1"), "tunl0", onlink=True) for p in prefixes]
    second = [KernelRoute.via(p, ip_address("198.51.100.2"), "eth0") for p in prefixes]

    def kernel_state() -> dict[str, str]:
        rows = json.loads(ns.ip("-j", "-4", "route", "show", "proto", "bird"))
        return {row["dst"]: f"{row.get('gateway')} {row.get('dev')} {row.get('flags')}"
                for row in rows}

    async def step(desired: list[KernelRoute]) -> KernelSync:
        kernel = Kernel(netns=ns.name)
        sync = KernelSync(kernel)
        sync.set_desired(desired)
        report = await sync.sync()
        assert report.errors == {}
        kernel.close()
        return sync

    asyncio.run(step(first))
    state = kernel_state()
    assert len(state) == 20_000
    assert set(state.values()) == {"198.18.0.1 tunl0 ['onlink']"}

    sync = asyncio.run(step(second))
    assert sync.stats.writes == 20_000  # replaced in place: no delete, no add
    state = kernel_state()
    assert len(state) == 20_000
    assert set(state.values()) == {"198.51.100.2 eth0 []"}

    asyncio.run(step([]))
    assert kernel_state() == {}


def test_delete_of_a_missing_route_is_success(lab: NetLab) -> None:
    ns = make_node(lab)

    async def scenario() -> None:
        kernel = Kernel(netns=ns.name)
        results = await kernel.apply([Op(OpKind.DELETE, blackhole("172.17.77.0/24"))])
        kernel.close()
        assert [r.ok for r in results] == [True]

    asyncio.run(scenario())
