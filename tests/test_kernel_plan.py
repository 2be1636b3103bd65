"""The kernel planner: table-driven cases and properties."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from hypothesis import given
from hypothesis import strategies as st

from ribs.kernel_plan import KernelRoute, NextHop, Op, OpKind, RouteKind, plan, validate

P1, P2, P3 = ip_network("172.17.1.0/24"), ip_network("172.17.2.0/24"), ip_network("fd00::/64")
P4 = ip_network("172.17.3.0/24")


def tun(prefix, gw="198.18.0.1", **kw):
    return KernelRoute.via(prefix, ip_address(gw), "tunl0", onlink=True, **kw)


def ops(p):
    return [(op.kind, str(op.route)) for op in p.ops]


def test_nothing_to_do_when_equal():
    routes = [tun(P1), KernelRoute.blackhole(P2)]
    assert plan(routes, list(reversed(routes))).ops == ()


def test_a_hop_wanted_without_a_device_takes_the_one_the_kernel_chose():
    gateway = ip_address("198.51.100.7")
    wanted = KernelRoute(P1, nexthops=(NextHop(gateway, None),))
    assert plan([wanted], [KernelRoute.via(P1, gateway, "eth0")]).ops == ()
    assert wanted.satisfied_by(KernelRoute.via(P1, gateway, "eth1"))
    assert not wanted.satisfied_by(KernelRoute.via(P1, ip_address("198.51.100.8"), "eth0"))
    assert not wanted.satisfied_by(KernelRoute.via(P1, gateway, "eth0", onlink=True))
    assert not KernelRoute.via(P1, gateway, "eth0").satisfied_by(wanted)  # only that way


def test_default_metric_spelled_out_is_the_same_route():
    assert tun(P1) == tun(P1, metric=0)
    v6 = KernelRoute.via(P3, ip_address("fd00::1"), "eth0")
    assert v6 == KernelRoute.via(P3, ip_address("fd00::1"), "eth0", metric=1024)
    assert plan([v6], [KernelRoute.via(P3, ip_address("fd00::1"), "eth0", metric=1024)]).ops == ()


def test_next_hop_order_does_not_matter():
    a = NextHop(ip_address("198.18.0.1"), "tunl0", True)
    b = NextHop(ip_address("198.18.0.2"), "eth0", False)
    assert KernelRoute(prefix=P1, nexthops=(a, b)) == KernelRoute(prefix=P1, nexthops=(b, a))


def test_add_replace_delete_in_make_before_break_order():
    actual = [tun(P1), tun(P2), KernelRoute.blackhole(ip_network("172.17.9.0/24"))]
    desired = [tun(P1, gw="198.18.0.7"), tun(P4)]
    p = plan(desired, actual)
    assert [op.kind for op in p.ops] == [OpKind.REPLACE, OpKind.ADD, OpKind.DELETE, OpKind.DELETE]
    assert {str(op.route.prefix) for op in p.ops if op.kind is OpKind.DELETE} == {
        "172.17.2.0/24", "172.17.9.0/24"}


def test_metric_change_adds_new_then_deletes_old():
    p = plan([tun(P1, metric=20)], [tun(P1)])
    assert [(op.kind, op.route.metric) for op in p.ops] == [(OpKind.ADD, 20), (OpKind.DELETE, None)]


def test_extra_owned_copies_of_a_prefix_are_removed():
    p = plan([tun(P1)], [tun(P1), tun(P1, metric=5)])
    assert ops(p) == [(OpKind.DELETE, str(tun(P1, metric=5)))]


def test_duplicate_and_invalid_desired_routes_are_errors_and_left_alone():
    installed = tun(P1)
    bad = KernelRoute(prefix=P2, nexthops=(NextHop(ip_address("fd00::1"), "eth0"),))
    p = plan([tun(P1, gw="198.18.0.5"), tun(P1, gw="198.18.0.6"), bad, tun(P4)],
             [installed, tun(P2)])
    assert {e.route.prefix: e.message for e in p.errors} == {
        P1: "prefix 172.17.1.0/24 is desired more than once",
        P2: "next hop fd00::1 is not of the prefix's address family",
    }
    assert ops(p) == [(OpKind.ADD, "172.17.3.0/24 via 198.18.0.1 dev tunl0 onlink")]


def test_validate():
    assert validate(KernelRoute(prefix=P1)) == "unicast route without a next hop"
    no_dev = NextHop(ip_address("198.18.0.1"), None, True)
    assert "needs a device" in str(validate(KernelRoute(prefix=P1, nexthops=(no_dev,))))
    dev_only = NextHop(None, "eth0")
    assert validate(KernelRoute(prefix=P1, kind=RouteKind.BLACKHOLE, nexthops=(dev_only,)))
    assert validate(tun(P1)) is None


def test_str_reads_like_ip_route():
    assert str(tun(P1)) == "172.17.1.0/24 via 198.18.0.1 dev tunl0 onlink"
    assert str(KernelRoute.blackhole(P2)) == "blackhole 172.17.2.0/24"


# --- properties: applying the plan to a model kernel yields exactly the desired set ---------

prefixes = st.sampled_from([ip_network(f"172.17.{i}.0/24") for i in range(6)] + [P3])
gateways = st.sampled_from(["198.18.0.1", "198.18.0.2"])


@st.composite
def routes(draw):
    prefix = draw(prefixes)
    metric = draw(st.sampled_from([None, 5]))
    if draw(st.booleans()):
        return KernelRoute.blackhole(prefix, metric=metric)
    gw = draw(gateways) if prefix.version == 4 else "fd00::1"
    return KernelRoute.via(prefix, ip_address(gw), draw(st.sampled_from(["tunl0", "eth0"])),
                           onlink=True, metric=metric)


def apply_model(kernel: dict, op: Op) -> None:
    """A kernel keyed as Linux keys routes: (prefix, metric)."""
    key = (op.route.prefix, op.route.metric)
    if op.kind is OpKind.ADD:
        assert key not in kernel, "ADD over an existing route would fail in the kernel"
        kernel[key] = op.route
    elif op.kind is OpKind.REPLACE:
        assert key in kernel, "REPLACE is only planned over an owned route"
        kernel[key] = op.route
    else:
        kernel.pop(key, None)


@given(st.lists(routes(), max_size=10), st.lists(routes(), max_size=10))
def test_plan_converges(desired, actual):
    kernel = {(r.prefix, r.metric): r for r in actual}
    p = plan(desired, kernel.values())
    for op in p.ops:
        apply_model(kernel, op)
    bad = {e.route.prefix for e in p.errors}
    wanted = {r for r in desired if r.prefix not in bad}
    assert {r for r in kernel.values() if r.prefix not in bad} == wanted
    # and a second plan has nothing left to do
    assert plan(desired, kernel.values()).ops == ()
