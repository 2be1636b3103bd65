"""The parts of bgpd's ExaBGP launcher that can be tried alone: peer lookup by address, the
epoll adapter, the timer-turn interval, shared changes and the API pipe's buffering.  (The
launcher as a whole runs under every speaker, daemon and lab test, against real peers.)"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.speaker import engine
from bgpd.speaker.patches import (
    api_writes,
    polling,
    queued_changes,
    scheduling,
    shared_changes,
)
from bgpd.speaker.patches import (
    commands as command_patches,
)


def exabgp_match_neighbors(peers: list[str], descriptions: list[list[str]]) -> list[str]:
    from exabgp.reactor.api.command import limit

    return limit.match_neighbors(peers, descriptions)


def indexed() -> object:
    from exabgp.reactor.api.command import limit

    return command_patches.indexed_match(limit.match_neighbors, limit.match_neighbor)


def name(address: str, local: str = "198.51.100.1", asn: int = 64512) -> str:
    return (f"neighbor {address} local-ip {local} local-as {asn} peer-as {asn} "
            f"router-id {local} family-allowed in-open")


ADDRESSES = [f"198.51.100.{i}" for i in range(1, 30)] + ["2001:db8::1", "2001:db8::10"]
PEERS = [name(a) for a in ADDRESSES] + ["peer-ip 198.51.100.7 listen 1790"]
descriptions = st.lists(st.lists(st.one_of(
    st.sampled_from([f"neighbor {a}" for a in ADDRESSES] + ["neighbor *", "neighbor 10.0.0.1",
                                                             "neighbor 198.51.100"]),
    st.sampled_from(["local-as 64512", "peer-as 65000", "local-ip 198.51.100.1",
                     "family-allowed in-open"])), min_size=1, max_size=3), max_size=3)


@settings(deadline=None)  # the first example imports ExaBGP's command modules
@given(descriptions, st.permutations(PEERS))
def test_indexed_match_is_exabgps_match(wanted: list[list[str]], peers: list[str]) -> None:
    fast: Any = indexed()
    assert fast(peers, wanted) == exabgp_match_neighbors(peers, wanted)


def test_one_command_for_many_neighbours() -> None:
    fast: Any = indexed()
    many = [name(f"198.18.{i // 250}.{i % 250 + 1}") for i in range(700)]
    wanted = [[f"neighbor 198.18.{i // 250}.{i % 250 + 1}"] for i in range(0, 700, 2)]
    assert fast(many, wanted) == many[::2]


def test_indexed_match_picks_by_address() -> None:
    fast: Any = indexed()
    assert fast(PEERS, [["neighbor 198.51.100.1"]]) == [name("198.51.100.1")]
    assert fast(PEERS, [["neighbor 198.51.100.1", "peer-as 65000"]]) == []
    assert fast(set(PEERS), []) == set(PEERS)


def exabgp_extract(command: str) -> Any:
    from exabgp.reactor.api.command import limit

    return limit.extract_neighbors(command)


WORDS = st.sampled_from(["neighbor", "198.51.100.1", "2001:db8::1", ",", "local-as", "64512",
                         "announce", "withdraw", "route", "eor", "ipv4", "unicast", "teardown",
                         "attributes", "nlri", "172.17.0.0/24", "", "*"])
SELECTOR_KEYS = ("neighbor", "local-ip", "local-as", "peer-as", "router-id", "family-allowed")
SEPARATORS = st.sampled_from([" ", " ", " ", "  ", " , "])


@st.composite
def commands(draw: Any) -> str:
    """Texts shaped like the daemon's commands (``neighbor A , neighbor B ... action``) and
    near misses: other words, one-word actions, doubled spaces, stray commas."""
    peers = draw(st.lists(st.sampled_from(["198.51.100.1", "198.51.100.2", "2001:db8::1",
                                           "*", ""]), min_size=0, max_size=4))
    text = " , ".join(f"neighbor {p}" for p in peers)
    for word in draw(st.lists(WORDS, max_size=6)):
        text += draw(SEPARATORS) + word
    text = text.lstrip() if draw(st.booleans()) else text
    # ExaBGP's own loops forever on a text ending "<selector key> <word>" ("neighbor A
    # local-as 1 local-as 2"): it goes back to a part it read already; not one to compare on
    while len(words := text.split(" ")) > 1 and words[-2] in SELECTOR_KEYS:
        text += " unicast"
    return text


@settings(deadline=None)
@given(commands())
def test_quick_extract_is_exabgps_extract(command: str) -> None:
    from exabgp.reactor.api.command import limit

    quick = command_patches.quick_extract(limit.extract_neighbors)
    assert quick(command) == exabgp_extract(command)


def test_quick_extract_reads_a_command_for_many_neighbours() -> None:
    from exabgp.reactor.api.command import limit

    peers = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(598)]
    command = " , ".join(f"neighbor {p}" for p in peers) + " announce eor ipv4 unicast"
    calls: list[str] = []

    def original(text: str) -> Any:
        calls.append(text)
        return limit.extract_neighbors(text)

    assert command_patches.quick_extract(original)(command) == (
        [[f"neighbor {p}"] for p in peers], "announce eor ipv4 unicast")
    assert calls == []  # the daemon's shape never takes ExaBGP's way
    assert command_patches.quick_extract(original)("neighbor 198.18.0.1 teardown") == \
        exabgp_extract("neighbor 198.18.0.1 teardown")
    assert len(calls) == 1


def test_epoll_poller_behaves_as_poll() -> None:
    poller = polling.EpollPoller()
    a, b = socket.socketpair()
    fd = a.fileno()
    try:
        poller.register(a.fileno(), select.POLLIN | select.POLLNVAL)
        poller.register(a.fileno(), select.POLLIN)  # again: a modify, as poll allows
        assert poller.poll(0) == []
        b.send(b"x")
        assert [fd for fd, _ in poller.poll(100)] == [a.fileno()]
        poller.unregister(a.fileno())
        poller.unregister(a.fileno())  # not registered any more: ignored
        assert poller.poll(0) == []
    finally:
        a.close()
        b.close()
    poller.unregister(fd)  # closed: ignored
    poller.unregister(-1)


def test_timer_turn_follows_the_hold_time() -> None:
    class Peer:
        def __init__(self, hold: object) -> None:
            self.neighbor = {"hold-time": hold}

    assert scheduling.timer_turn(Peer(3)) == 0.5
    assert scheduling.timer_turn(Peer(240)) == scheduling.TIMER_TURN
    assert scheduling.timer_turn(Peer(0)) == scheduling.TIMER_TURN
    assert scheduling.timer_turn(Peer(None)) == 1.0


def test_the_installed_exabgp_takes_every_unit() -> None:
    report = engine.plan(environ={})
    assert report["applied"] == [u.name for u in engine.UNITS] and not report["left_out"]


def test_a_unit_whose_names_are_not_there_is_left_out_with_each_named(monkeypatch: Any) -> None:
    from exabgp.reactor import listener, loop

    monkeypatch.delattr(loop.Reactor, "teardown_peer")
    monkeypatch.setattr(listener.Listener, "incoming", lambda self, extra: None)
    report = engine.plan(environ={})
    why = report["left_out"]["scheduling"]
    assert "exabgp.reactor.loop.Reactor.teardown_peer is missing" in why
    assert "exabgp.reactor.listener.Listener.incoming takes (self, extra), expected (self)" in why
    assert report["applied"] == [u.name for u in engine.UNITS if u.name != "scheduling"]
    other = engine.plan(environ={}, pinned="9.9.9")
    assert not other["applied"]
    assert all("is installed; the units are written against 9.9.9" in why
               for why in other["left_out"].values())
    plain = engine.plan(environ={"BGPD_EXABGP_PLAIN": "1"})
    assert not plain["applied"]


def exabgp_conf(local: str) -> str:
    return "".join(
        f"neighbor 198.51.100.{i} {{ router-id {local}; local-address {local}; "
        f"local-as 64512; peer-as 64512; group-updates true; family {{ {family} unicast; }} }}\n"
        for i, family in ((2, "ipv4"), (3, "ipv4"), (4, "ipv6"), (5, "ipv4")))


def exabgp_configuration(tmp_path: Any, local: str) -> Any:
    """Neighbours parsed by ExaBGP (their outgoing RIBs are ExaBGP's per neighbour name, so
    two configurations compared must differ in ``local``)."""
    from exabgp.configuration.configuration import Configuration
    from exabgp.environment import getenv
    from exabgp.logger import log

    log.init(getenv())
    path = tmp_path / f"exabgp-{len(list(tmp_path.iterdir()))}.conf"
    path.write_text(exabgp_conf(local))
    configuration = Configuration([str(path)])
    assert configuration.reload()
    return configuration


def outgoing(configuration: Any) -> list[Any]:
    """Everything each neighbour's outgoing RIB holds, by value, in the neighbours' order
    (the local address, which ``next-hop self`` becomes, as ``<local>``: a ``next-hop self``
    left unresolved shows as ``self``)."""
    out = []
    for neighbor in configuration.neighbors.values():
        rib = neighbor.rib.outgoing
        local = str(neighbor["local-address"])
        out.append((
            str(neighbor["peer-address"]),
            {k: (c.nlri.action, c.attributes.index().replace(local, "<local>"),
                 str(c.nlri.nexthop).replace(local, "<local>"))
             for k, c in rib._new_nlri.items()},
            {a.replace(local, "<local>"): {f: sorted(d) for f, d in fams.items()}
             for a, fams in rib._new_attr_af_nlri.items()},
            sorted(a.replace(local, "<local>") for a in rib._new_attribute),
            {f: sorted(d) for f, d in rib._seen.items()},
        ))
    return out


def test_shared_changes_fill_every_outgoing_rib_as_exabgp_does(tmp_path: Any,
                                                               monkeypatch: Any) -> None:
    """The same commands through ExaBGP's own ``inject_change`` and ``remove_self`` (a deep
    copy per neighbour) and through the launcher's: every neighbour's outgoing RIB ends the
    same after each (announces, the same again after a flush — ExaBGP's cache skips it —,
    next-hop self, a family a neighbour lacks, withdrawals, a neighbour left out, a name
    that is no neighbour's)."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.configuration.configuration import _Configuration
    from exabgp.reactor.api import API

    theirs = exabgp_configuration(tmp_path, "198.51.100.1")
    ours = exabgp_configuration(tmp_path, "198.51.100.101")
    original = _Configuration.inject_change
    for attr in ("remove_self", "inject_change", "inject_eor"):
        monkeypatch.setattr(Neighbor if attr == "remove_self" else _Configuration, attr,
                            getattr(Neighbor if attr == "remove_self" else _Configuration, attr))
    for neighbor in theirs.neighbors.values():  # ExaBGP's own copy per neighbour, kept
        neighbor.remove_self = types.MethodType(Neighbor.remove_self, neighbor)
    shared_changes.shared_changes(Neighbor, _Configuration)
    every = [0, 1, 2, 3]
    steps = [
        ("announce attributes next-hop 10.0.0.1 local-preference 100 nlri 172.17.1.0/24 "
         "172.17.2.0/24", every),
        ("flush", every),
        ("announce attributes next-hop 10.0.0.1 local-preference 100 nlri 172.17.1.0/24", every),
        ("announce attributes next-hop self nlri 172.17.3.0/24", [0, 1]),
        ("announce attributes next-hop 10.0.0.9 nlri 172.17.1.0/24", [1, 2, 3]),
        ("withdraw attributes next-hop 10.0.0.1 local-preference 100 nlri 172.17.2.0/24",
         [0, 1, 2]),
    ]
    for text, chosen in steps:
        for configuration, inject in ((theirs, original), (ours, _Configuration.inject_change)):
            # (and a name no neighbour has: skipped)
            peers = [list(configuration.neighbors)[i] for i in chosen] + ["neighbor 192.0.2.9"]
            if text == "flush":
                for neighbor in configuration.neighbors.values():
                    list(neighbor.rib.outgoing.updates(True))
                continue
            for change in API(configuration).api_attributes(text, peers):
                change.nlri.action = (Action.WITHDRAW if text.startswith("withdraw")
                                      else Action.ANNOUNCE)
                inject(configuration, peers, change)
        assert outgoing(ours) == outgoing(theirs), text
    assert all(rib[1] for rib in outgoing(ours)[:2])  # the comparison saw routes


def written(configuration: Any, texts: list[str], inject: Any) -> list[str]:
    """What ExaBGP writes to the first neighbour at its next turn after ``texts`` (route
    commands to it alone, each injected by ``inject``): each UPDATE as text, in order."""
    from exabgp.bgp.message import Action
    from exabgp.reactor.api import API

    peers = [next(iter(configuration.neighbors))]
    for text in texts:
        for change in API(configuration).api_attributes(text, peers):
            change.nlri.action = (Action.WITHDRAW if text.startswith("withdraw")
                                  else Action.ANNOUNCE)
            inject(configuration, peers, change)
    rib = configuration.neighbors[peers[0]].rib.outgoing
    return [str(update) for update in rib.updates(True)]


def test_a_newer_change_to_a_prefix_replaces_the_one_exabgp_queued(tmp_path: Any,
                                                                   monkeypatch: Any) -> None:
    """ExaBGP's outgoing RIB queues changes by attributes and writes the older bucket first:
    announce X, Y, X before the peer's turn ends with Y on the peer (the race the pacer's
    cooldown kept away).  With the ``queued_changes`` unit one change per prefix is queued,
    the newest — through ExaBGP's own ``inject_change`` and through ``shared_changes``."""
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.configuration.configuration import _Configuration
    from exabgp.rib.outgoing import OutgoingRIB

    def announce(lp: int) -> str:
        return (f"announce attributes next-hop 10.0.0.1 local-preference {lp} "
                "nlri 172.17.1.0/24")

    flapped = [announce(100), announce(200), announce(100)]
    moved = [announce(100), "withdraw attributes next-hop 10.0.0.1 local-preference 100 "
             "nlri 172.17.1.0/24", announce(200)]
    own = _Configuration.inject_change
    stock = written(exabgp_configuration(tmp_path, "198.51.100.1"), flapped, own)
    assert stock[-1].endswith("local-preference 200")  # ExaBGP as shipped: the older last

    monkeypatch.setattr(OutgoingRIB, "_update_rib", OutgoingRIB._update_rib)
    for cls, attr in ((Neighbor, "remove_self"), (_Configuration, "inject_change"),
                      (_Configuration, "inject_eor")):
        monkeypatch.setattr(cls, attr, getattr(cls, attr))
    queued_changes.queued_changes(OutgoingRIB)
    locals_ = iter(f"198.51.100.{i}" for i in range(110, 120))
    for inject in (own, None):  # ExaBGP's inject_change, then shared_changes'
        if inject is None:
            shared_changes.shared_changes(Neighbor, _Configuration)
            inject = _Configuration.inject_change
        assert written(exabgp_configuration(tmp_path, next(locals_)), flapped, inject) == [
            "172.17.1.0/24 next-hop 10.0.0.1 local-preference 100"]
        assert written(exabgp_configuration(tmp_path, next(locals_)), moved, inject) == [
            "172.17.1.0/24 next-hop 10.0.0.1 local-preference 200"]


def test_api_lines_reach_the_pipe_when_flushed_in_order_and_before_a_stop(
        monkeypatch: Any) -> None:
    """Lines ExaBGP writes to an API process stay in the pipe's buffer until the reactor
    flushes (before it waits for IO), arrive in the order written, are flushed before the
    process is stopped; a broken pipe is ExaBGP's ``ProcessError`` and marks it broken."""
    from exabgp.reactor.api.processes import ProcessError, Processes

    for attr in ("write", "_terminate"):
        monkeypatch.setattr(Processes, attr, getattr(Processes, attr))
    flush = api_writes.buffered_api_writes(Processes, ProcessError)
    processes = Processes()
    read_end, write_end = os.pipe()
    stopped: list[str] = []
    processes._process["api"] = types.SimpleNamespace(
        stdin=os.fdopen(write_end, "wb"), terminate=lambda: stopped.append("api"),
        wait=lambda timeout=None: 0)

    def in_pipe() -> bytes:
        return os.read(read_end, 65536) if select.select([read_end], [], [], 0)[0] else b""

    try:
        assert processes.write("api", "one") and processes.write("api", "two")
        assert processes.write("api", None)
        assert in_pipe() == b""
        flush()
        assert in_pipe() == b"one\ntwo\n"
        flush()
        processes.write("api", "last")
        processes._terminate("api").join(timeout=5)
        assert in_pipe() == b"last\n" and stopped == ["api"]

    finally:
        os.close(read_end)

    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "wb") as broken:
        processes._process["api"] = types.SimpleNamespace(stdin=broken)
        with pytest.raises(ProcessError):  # more than the buffer holds: it writes, and fails
            processes.write("api", "x" * 100_000)
        assert "api" in processes._broken


@pytest.mark.parametrize(("start", "unwanted"), [
    # the daemon's start: prometheus-client comes with the metrics server, the launcher's
    # module only when ExaBGP has exited
    ("import bgpd.cli, bgpd.daemon", ["prometheus_client", "importlib.metadata",
                                      "bgpd.speaker.engine", "ctypes.util"]),
    # the launcher, ready to start ExaBGP
    ("import bgpd.speaker.engine as e; [u.apply() for u in e.UNITS if u.name in "
     "e.plan()['applied']]; import exabgp.application.main",
     ["importlib.metadata", "email", "ctypes.util"]),
])
def test_a_start_imports_only_what_it_uses(start: str, unwanted: list[str]) -> None:
    probe = f"{start}; import sys; print(sorted(set({unwanted!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("env", "tuned"), [
    ({}, True), ({"BGPD_EXABGP_SKIP": "gc"}, False), ({"BGPD_EXABGP_PLAIN": "1"}, False)])
def test_exabgp_runs_with_the_daemons_collector_thresholds(env: dict[str, str],
                                                           tuned: bool) -> None:
    # ExaBGP's own main replaced by one that reports what the launcher set before calling it
    probe = ("import gc; import exabgp.application.main as m; "
             "m.main = lambda: print(gc.get_threshold(), gc.get_freeze_count() > 0); "
             "from bgpd.speaker import engine; engine.main()")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60, env={**os.environ, **env}).stdout
    assert out.strip() == ("(50000, 50, 100) True" if tuned else "(700, 10, 10) False")


@pytest.mark.parametrize(("level", "skip", "debug_asked", "info_asked"), [
    ("WARNING", "", False, False), ("INFO", "", False, True), ("DEBUG", "", True, True),
    # ExaBGP's own methods ask for the message's text only once they know it is logged;
    # left unpatched they are still called (and answer the same)
    ("WARNING", "logging", False, False)])
def test_exabgp_logs_what_its_level_lets_through(level: str, skip: str, debug_asked: bool,
                                                 info_asked: bool) -> None:
    # the launcher's start with ExaBGP's main replaced by one that reads the environment
    # as ExaBGP's does, then logs; what is printed is which messages were made
    probe = (
        "import exabgp.application.main as m\n"
        "def main():\n"
        "    from exabgp.environment import getenv\n"
        "    from exabgp.logger import log, _log\n"
        "    log.init(getenv())\n"
        "    asked = []\n"
        "    log.debug(lambda: asked.append('debug') or 'd', 'reactor')\n"
        "    log.info(lambda: asked.append('info') or 'i', 'reactor')\n"
        "    print(','.join(asked) or '-', _log.__dict__['debug'].__func__.__module__)\n"
        "m.main = main\n"
        "from bgpd.speaker import engine; engine.main()\n")
    env = {**os.environ, "exabgp_log_level": level, "exabgp_log_all": "true",
           "exabgp_log_destination": "stderr", "BGPD_EXABGP_SKIP": skip}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60, env=env).stdout.split(maxsplit=1)
    asked = [name for name, on in (("debug", debug_asked), ("info", info_asked)) if on]
    assert out[0] == (",".join(asked) or "-")
    patched = not skip and not debug_asked
    assert (out[1].strip() == "bgpd.speaker.patches.quiet_logging") == patched


ATTRIBUTE_PROBE = r'''
import json, sys
from types import SimpleNamespace
from bgpd.speaker.patches import attribute_errors
from integration_tests.malformed_cases import segment
from integration_tests.raw_speaker import as_path, attr, next_hop, origin
if sys.argv[1] == "applied":
    attribute_errors.UNIT.apply()
from exabgp.bgp.message.direction import Direction
from exabgp.bgp.message.update.attribute.attributes import Attributes
from exabgp.environment import getenv
from exabgp.logger import log
log.silence()
log.init(getenv())

def parsed(data, ebgp):
    negotiated = SimpleNamespace(  # what Attributes.unpack and the decoders read of a session
        asn4=True, local_as=64512, peer_as=65100 if ebgp else 64512, cached_wire=b"",
        cached_attributes=None, aigp=False, families=[(1, 1)],
        addpath=SimpleNamespace(receive=lambda afi, safi: False))
    try:
        found = Attributes.unpack(data, Direction.IN, negotiated)
    except Exception as exc:
        return f"reset {exc.code}/{exc.subcode}"
    return "withdraw" if 0xFFFF in found else "kept" + ("" if 9 in found else " (no 9)")

hop = next_hop("198.51.100.1")
good = origin() + as_path([65100]) + hop
cases = {
    "origin-length": attr(0x40, 1, b"\0\0") + as_path([65100]) + hop,
    "no-as-path": origin() + hop,
    "empty-as-path": origin() + attr(0x40, 2, b"") + hop,
    "confed": origin() + attr(0x40, 2, segment(3, 1) + segment(2, 65100)) + hop,
    "cluster-list-length": good + attr(0x80, 10, b"\0\1\2"),
    "originator-id": good + attr(0x80, 9, b"\1\2\3\4"),
    "mp-unreach-only": attr(0x80, 15, b"\0\1\1"),
    "as4-path-overrun": good + attr(0xC0, 17, bytes([2, 4]) + bytes(4)),
}
print(json.dumps({f"{name} {kind}": parsed(data, kind == "ebgp")
                  for name, data in cases.items() for kind in ("ebgp", "ibgp")}))
'''


def test_the_attribute_errors_unit_answers_as_rfc_7606_where_exabgp_does_not() -> None:
    """ExaBGP's own attribute parser, as shipped and with the ``attribute_errors`` unit, on
    the attribute sections where they differ (the unit's on-the-wire cases are in
    ``integration_tests/test_malformed.py``)."""
    def run(mode: str) -> dict[str, str]:
        out = subprocess.run([sys.executable, "-c", ATTRIBUTE_PROBE, mode], capture_output=True,
                             text=True, check=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
        result: dict[str, str] = json.loads(out.stdout)
        return result

    stock, applied = run("stock"), run("applied")
    changed = {case: (stock[case], applied[case]) for case in stock
               if stock[case] != applied[case]}
    assert changed == {
        "origin-length ebgp": ("kept (no 9)", "withdraw"),
        "origin-length ibgp": ("kept (no 9)", "withdraw"),
        "no-as-path ebgp": ("kept (no 9)", "withdraw"),
        "no-as-path ibgp": ("kept (no 9)", "withdraw"),
        "confed ebgp": ("kept (no 9)", "withdraw"),  # (from iBGP: a confederation member)
        "cluster-list-length ebgp": ("reset 3/5", "kept (no 9)"),  # discarded from eBGP
        "cluster-list-length ibgp": ("reset 3/5", "withdraw"),
        "originator-id ebgp": ("kept", "kept (no 9)"),  # discarded from eBGP
        "as4-path-overrun ebgp": ("reset 3/11", "kept (no 9)"),  # a 4-octet speaker's:
        "as4-path-overrun ibgp": ("reset 3/11", "kept (no 9)"),  # discarded unread
    }
    assert applied["empty-as-path ibgp"] == "kept (no 9)"
    assert applied["mp-unreach-only ebgp"] == "kept (no 9)"
