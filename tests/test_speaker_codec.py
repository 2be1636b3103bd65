"""The ExaBGP codec, pacer and configuration renderer (pure)."""

from __future__ import annotations

import json
import struct
from ipaddress import IPv4Address, ip_address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.speaker import codec
from bgpd.speaker.pacing import Pacer
from integration_tests.raw_speaker import as_path, attr, next_hop, origin, update
from ribs.types import AsPath, Attributes, Origin, Segment, SegmentType, prefix

HEAD = '"exabgp": "5.0.0", "time": 1.0, "host": "h", "pid": 1, "ppid": 1, "counter": 1'
NEIGHBOR = ('"neighbor": { "address": { "local": "198.51.100.1", "peer": "198.51.100.2" }, '
            '"asn": { "local": 64512, "peer": 64512 }')


def test_acks_and_text() -> None:
    assert codec.decode("done\n") == codec.Ack(True)
    assert codec.decode("error") == codec.Ack(False)
    assert codec.decode("exabgp 5.0.15") == codec.Text("exabgp 5.0.15")


def test_state() -> None:
    line = f'{{ {HEAD}, "type": "state", {NEIGHBOR}, "state": "down", "reason": "peer reset" }} }}'
    assert codec.decode(line) == codec.PeerState(ip_address("198.51.100.2"), "down", "peer reset")


def test_update_with_all_attributes_and_path_ids() -> None:
    update = {
        "attribute": {"origin": "incomplete",
                      "as-path": {"0": {"element": "as-sequence", "value": [65001, 65002]},
                                  "1": {"element": "as-set", "value": [65003, 65004]}},
                      "med": 5, "local-preference": 200, "community": [[64512, 1]],
                      "large-community": [[64512, 1, 2]], "originator-id": "10.0.0.9",
                      "cluster-list": ["1.0.0.1"]},
        "announce": {"ipv4 unicast": {"198.51.100.2": [
            {"nlri": "172.17.2.0/24", "path-information": "0.0.0.2"}]},
            "ipv6 unicast": {"2001:db8::2": [{"nlri": "fd00:17::/64"}]}},
        "withdraw": {"ipv4 unicast": [{"nlri": "172.17.3.0/24", "path-information": "0.0.0.1"}]},
    }
    line = json.dumps({"exabgp": "5.0.0", "type": "update", "neighbor": {
        "address": {"local": "198.51.100.1", "peer": "198.51.100.2"},
        "message": {"update": update}}})
    event = codec.decode(line)
    assert isinstance(event, codec.Update)
    a4, a6 = event.announce
    assert (str(a4.prefix), a4.path_id, str(a4.attrs.next_hop)) == ("172.17.2.0/24", 2,
                                                                     "198.51.100.2")
    assert a4.attrs.as_path == AsPath((Segment(SegmentType.SEQUENCE, (65001, 65002)),
                                       Segment(SegmentType.SET, (65003, 65004))))
    assert a4.attrs.as_path.length == 3
    assert (a4.attrs.origin, a4.attrs.med, a4.attrs.local_pref) == (Origin.INCOMPLETE, 5, 200)
    assert a4.attrs.communities == ((64512, 1),) and a4.attrs.large_communities == ((64512, 1, 2),)
    assert a4.attrs.originator_id == IPv4Address("10.0.0.9")
    assert a4.attrs.cluster_list == (IPv4Address("1.0.0.1"),)
    assert str(a6.prefix) == "fd00:17::/64" and a6.path_id == 0
    assert [(str(w.prefix), w.path_id) for w in event.withdraw] == [("172.17.3.0/24", 1)]


def _exabgp_decodes(message: bytes, family: str = "ipv4 unicast") -> codec.Update:
    """The event ExaBGP itself makes (``exabgp decode``, a 4-byte-AS session) of an UPDATE
    message, read by the codec."""
    import subprocess
    import sys
    from pathlib import Path

    exabgp = str(Path(sys.executable).with_name("exabgp"))
    done = subprocess.run([exabgp, "decode", "-f", family, message.hex()],
                          capture_output=True, text=True, check=True, timeout=60)
    line = next(x for x in done.stdout.splitlines() if '"type": "update"' in x)
    event = codec.decode(line)
    assert isinstance(event, codec.Update), event
    return event


def _exabgp_reads(*hops: str) -> codec.Update:
    """An UPDATE announcing fd00:10::f0:0/120 with ``hops`` in its MP_REACH_NLRI next hop
    field, as ExaBGP reads it."""
    import ipaddress
    import struct

    nlri = bytes([120]) + ipaddress.IPv6Address("fd00:10::f0:0").packed[:15]
    field = b"".join(ipaddress.IPv6Address(h).packed for h in hops)
    mp = struct.pack("!HBB", 2, 1, len(field)) + field + b"\x00" + nlri
    return _exabgp_decodes(update(attrs=origin() + as_path() + attr(0x80, 0x0E, mp)),
                           "ipv6 unicast")


ORIGIN_IGP = origin()
NH = next_hop("192.0.2.1")
PATH = as_path([65100])
# (case, attributes, the reason the codec gives for treating the routes as withdrawn)
MALFORMED = [
    ("ORIGIN of value 5", origin(5) + PATH + NH, "ORIGIN 'invalid'"),
    ("ORIGIN missing", PATH + NH, "ORIGIN missing"),
    ("an AS_PATH segment of no AS", ORIGIN_IGP + as_path([], [65100]) + NH,
     "AS_PATH segment of no AS"),
    ("an AS_PATH segment longer than its attribute", ORIGIN_IGP + attr(
        0x40, 2, bytes([2, 3, 0, 0, 0xFE, 0x4C])) + NH,
     "malformed attribute (ExaBGP: treat-as-withdraw)"),
    ("an unrecognized well-known attribute", ORIGIN_IGP + PATH + NH + attr(0x40, 99, b"ab"),
     "unrecognized well-known attribute 99"),
    ("NEXT_HOP missing", ORIGIN_IGP + PATH, "unreadable attribute (ValueError: NEXT_HOP "
                                           "missing)"),
]


@pytest.mark.parametrize(("case", "attrs", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_attributes_withdraw_the_updates_routes_and_keep_its_withdrawals(
        case: str, attrs: bytes, reason: str) -> None:
    event = _exabgp_decodes(update(withdrawn=("172.20.2.0/24",), attrs=attrs,
                                   nlri=("172.20.1.0/24",)))
    assert event.announce == ()
    assert sorted(str(w.prefix) for w in event.withdraw) == ["172.20.1.0/24", "172.20.2.0/24"]
    assert event.errors == (("treat-as-withdraw", reason),)


def test_well_formed_attributes_and_an_unknown_optional_one_announce() -> None:
    for extra in (b"", attr(0xC0, 99, b"ab")):
        event = _exabgp_decodes(update(attrs=ORIGIN_IGP + PATH + NH + extra,
                                       nlri=("172.20.1.0/24",)))
        assert [str(a.prefix) for a in event.announce] == ["172.20.1.0/24"]
        assert not event.errors and not event.withdraw


def test_unknown_optional_transitive_attributes_are_kept_with_the_partial_bit() -> None:
    """RFC 4271 §9: kept and passed on with Partial set (a long one too: ExaBGP's
    extended-length bit is its own business); an unknown non-transitive one dropped."""
    long = bytes(range(256)) * 2
    event = _exabgp_decodes(update(
        attrs=ORIGIN_IGP + PATH + NH + attr(0xC0, 99, b"ab") + attr(0x80, 100, b"x")
        + bytes([0xD0, 101]) + struct.pack("!H", len(long)) + long,  # extended length
        nlri=("172.20.1.0/24",)))
    attrs = event.announce[0].attrs
    assert attrs.unknown == ((99, 0xE0, b"ab"), (101, 0xE0, long))
    text = codec.attribute_text(attrs)
    assert text.endswith(f"attribute [ 0x63 0xe0 0x6162 ] attribute [ 0x65 0xe0 0x{long.hex()} ]")


def test_a_global_ipv6_next_hop_wins_over_the_link_local_one_sent_with_it() -> None:
    """ExaBGP reads a next hop field holding a global and a link-local address as the same
    routes under each; BIRD6 uses the global one.  A link-local one alone is kept."""
    both = _exabgp_reads("fd00:198:51:100::1", "fe80::1")
    assert [(str(a.prefix), str(a.attrs.next_hop)) for a in both.announce] == [
        ("fd00:10::f0:0/120", "fd00:198:51:100::1")]
    alone = _exabgp_reads("fe80::1")
    assert [str(a.attrs.next_hop) for a in alone.announce] == ["fe80::1"]


def test_graceful_restart_flags_read_despite_swapped_labels() -> None:
    # ExaBGP 5.0.15 writes "restart" for the F bit and "forwarding" for the R bit
    opened = {"version": 4, "asn": 64512, "hold_time": 90, "router_id": "198.51.100.2",
              "capabilities": {"64": {"name": "graceful restart", "time": 120,
                                      "address-family-flags": {"ipv4/unicast": ["restart"],
                                                               "ipv6/unicast": []},
                                      "restart-flags": ["forwarding"]},
                               "1": {"name": "multiprotocol", "families": ["ipv4/unicast"]}}}
    line = json.dumps({"exabgp": "5.0.0", "type": "open", "neighbor": {
        "address": {"local": "198.51.100.1", "peer": "198.51.100.2"}, "direction": "receive",
        "open": opened}})
    event = codec.decode(line)
    assert isinstance(event, codec.Open)
    gr = event.graceful_restart
    assert gr is not None and gr.restarting and gr.forwarding == frozenset({"ipv4/unicast"})
    assert gr.restart_time == 120 and event.hold_time == 90


def test_end_of_rib() -> None:
    line = json.dumps({"exabgp": "5.0.0", "type": "update", "neighbor": {
        "address": {"local": "a", "peer": "198.51.100.2"},
        "message": {"eor": {"afi": "ipv4", "safi": "unicast"}}}})
    assert codec.decode(line) == codec.EndOfRib(ip_address("198.51.100.2"), "ipv4 unicast")


def test_withdrawn_prefixes_as_the_kernel_spells_them() -> None:
    def withdraw(*nlri: str) -> codec.Event:
        return codec.decode(json.dumps({"exabgp": "5.0.0", "type": "update", "neighbor": {
            "address": {"local": "a", "peer": "198.51.100.2"}, "message": {"update": {
                "withdraw": {"ipv4 unicast": [{"nlri": n} for n in nlri if ":" not in n],
                             "ipv6 unicast": [{"nlri": n} for n in nlri if ":" in n]}}}}}))

    event = withdraw("172.16.0.33/27", "10.0.0.0/8", "fd00::1/64", "192.0.2.1")
    assert isinstance(event, codec.Update)
    assert [str(w.prefix) for w in event.withdraw] == ["172.16.0.32/27", "10.0.0.0/8",
                                                        "192.0.2.1/32", "fd00::/64"]
    assert [w.prefix.version for w in event.withdraw] == [4, 4, 4, 6]
    for bad in ("172.16.0.0/33", "172.16/12", "fd00::/129", "nope/24"):
        # an unreadable prefix is an error on that prefix; the rest of the UPDATE applies
        event = withdraw(bad, "10.0.0.0/8")
        assert isinstance(event, codec.Update), bad
        assert [str(w.prefix) for w in event.withdraw] == ["10.0.0.0/8"]
        assert [action for action, _ in event.errors] == ["ignored"]


@settings(max_examples=300)
@given(st.one_of(
    st.text(),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda children: st.lists(children, max_size=4)
                 | st.dictionaries(st.sampled_from(
                     ["exabgp", "type", "neighbor", "address", "peer", "message", "update",
                      "announce", "withdraw", "attribute", "eor", "state", "open", "nlri",
                      "as-path", "ipv4 unicast", "capabilities", "64"]), children, max_size=5),
                 max_leaves=30).map(json.dumps)))
def test_fuzz_never_raises(line: str) -> None:
    event = codec.decode(line)
    assert isinstance(event, codec.Ack | codec.Text | codec.Malformed | codec.PeerState
                      | codec.Open | codec.Update | codec.EndOfRib | codec.Notification)


def test_commands() -> None:
    attrs = Attributes(next_hop=None, local_pref=100, communities=((64512, 1),),
                       as_path=AsPath.of(64512, 65000))
    peers = [ip_address("198.51.100.2"), ip_address("198.51.100.3")]
    assert codec.announce_command(peers, attrs, [prefix("172.17.1.0/24")]) == (
        "neighbor 198.51.100.2 , neighbor 198.51.100.3 announce attributes next-hop self "
        "origin igp as-path [ 64512 65000 ] local-preference 100 community [ 64512:1 ] "
        "nlri 172.17.1.0/24")
    assert codec.withdraw_command(peers[:1], attrs, [prefix("172.17.1.0/24")]).startswith(
        "neighbor 198.51.100.2 withdraw attributes next-hop self")
    assert codec.eor_command([ip_address("2001:db8::2")]) == (
        "neighbor 2001:db8::2 announce eor ipv6 unicast")
    assert codec.eor_command(peers) == (
        "neighbor 198.51.100.2 , neighbor 198.51.100.3 announce eor ipv4 unicast")
    assert codec.teardown_command(peers[0]) == "neighbor 198.51.100.2 teardown 2"
    assert codec.refresh_command(peers[0]) == (
        "neighbor 198.51.100.2 announce route-refresh ipv4 unicast")


P1, P2 = prefix("172.17.1.0/24"), prefix("172.17.2.0/24")
N1, N2 = ip_address("198.51.100.2"), ip_address("198.51.100.3")
A, B = Attributes(local_pref=100), Attributes(local_pref=100, med=5)


def take(pacer: Pacer, now: float) -> tuple[list[str], float | None]:
    batches, later = pacer.take(now)
    return [b.text for b in batches], later


def test_the_cooldown_counts_from_exabgps_acknowledgement() -> None:
    """ExaBGP holds a change in its outgoing RIB until the peer's next turn, which the
    launcher defers up to BATCH_WINDOW during a burst: a second change to the prefix must
    come later than that after ExaBGP took the first (else it can be lost)."""
    from bgpd.speaker.pacing import COOLDOWN
    from bgpd.speaker.patches.scheduling import BATCH_WINDOW
    assert COOLDOWN > BATCH_WINDOW
    pacer = Pacer(cooldown=0.3)
    pacer.desire(N1, P1, A)
    batches, _ = pacer.take(0.0)
    pacer.acknowledged(batches[0], 0.2)  # ExaBGP answered late (a loaded machine)
    pacer.desire(N1, P1, B)
    assert take(pacer, 0.31) == ([], 0.5)  # 0.3 s from the acknowledgement, not the send
    assert take(pacer, 0.5)[0] == [codec.announce_command([N1], B, [P1])]


def test_with_queued_changes_a_prefixs_next_change_goes_at_once() -> None:
    """The launcher's ``queued_changes`` unit keeps one change per prefix in ExaBGP's queue,
    the newest: with it applied (the report leaves it out of nothing) the cooldown is off;
    before a report, or with the unit left out, the timing rule holds."""
    from bgpd.speaker.core import SpeakerCore
    from bgpd.speaker.pacing import COOLDOWN
    core = SpeakerCore()
    assert core.pacer.cooldown == COOLDOWN
    core.engine_units({"scheduling": "a name changed"})
    pacer = core.pacer
    assert pacer.cooldown == 0.0
    pacer.desire(N1, P1, A)
    batches, _ = pacer.take(0.0)
    pacer.acknowledged(batches[0], 0.0)
    pacer.desire(N1, P1, B)
    assert take(pacer, 0.001) == ([codec.announce_command([N1], B, [P1])], None)
    assert not pacer.sent_at  # (nothing stamped, nothing to expire)
    core.engine_units({"queued_changes": "BGPD_EXABGP_SKIP"})
    assert core.pacer.cooldown == COOLDOWN


def test_pacer_coalesces_and_never_sends_two_changes_for_one_prefix() -> None:
    pacer = Pacer(cooldown=0.1)
    pacer.desire(N1, P1, A)
    pacer.desire(N1, P1, None)
    pacer.desire(N1, P1, B)  # only the last counts
    commands, later = take(pacer, 0.0)
    assert commands == [codec.announce_command([N1], B, [P1])] and later is None
    pacer.desire(N1, P1, A)  # inside the cooldown: held back
    commands, later = take(pacer, 0.05)
    assert commands == [] and later == 0.1
    commands, _ = take(pacer, 0.1)
    assert commands == [codec.announce_command([N1], A, [P1])]
    pacer.desire(N1, P1, None)  # withdrawn with exactly what was announced
    commands, _ = take(pacer, 0.3)
    assert commands == [codec.withdraw_command([N1], A, [P1])]


def test_pacer_groups_attributes_and_neighbors_then_eor() -> None:
    pacer = Pacer()
    for n in (N1, N2):
        for p in (P1, P2):
            pacer.desire(n, p, A)
        pacer.request_eor(n)
    commands, _ = take(pacer, 0.0)
    assert commands == [codec.announce_command([N1, N2], A, [P1, P2]),
                        codec.eor_command([N1, N2])]
    pacer.desire(N1, P1, A)  # unchanged: nothing
    assert take(pacer, 1.0) == ([], None)


def test_pacer_reset_resends_what_is_wanted() -> None:
    pacer = Pacer()
    pacer.desire(N1, P1, A)
    pacer.take(0.0)
    pacer.reset(N1)
    commands, _ = take(pacer, 0.0)
    assert commands == [codec.announce_command([N1], A, [P1])]


def test_pacer_puts_a_refused_batch_back_and_retries_it_later() -> None:
    pacer = Pacer(cooldown=0.1, retry=5.0)
    pacer.desire(N1, P1, A)
    pacer.take(0.0)
    pacer.desire(N1, P1, B)  # a re-announce with new attributes, refused by ExaBGP
    (batch,), _ = pacer.take(1.0)
    assert pacer.wire[N1][P1] == B
    pacer.refused(batch, 1.0)
    assert pacer.wire[N1][P1] == A  # not on the wire: what was there before still is
    assert take(pacer, 2.0) == ([], 6.0)  # held back until the retry is due
    assert take(pacer, 6.0)[0] == [codec.announce_command([N1], B, [P1])]
    pacer.desire(N2, P2, A)
    (batch,), _ = pacer.take(7.0)
    pacer.refused(batch, 7.0)  # a refused first announcement: nothing on the wire
    assert P2 not in pacer.wire[N2] and pacer.pending[N2] == {P2: A}
    pacer.desire(N2, P2, None)  # and wanted no longer: nothing to send at all
    assert take(pacer, 20.0) == ([], None)


def test_graceful_restart_flags_as_the_installed_exabgp_writes_them() -> None:
    """The labelling of the installed release, from its own encoder: a release that labels
    R and F differently from what :func:`codec.dialect_for` says for it fails here."""
    from importlib.metadata import version

    from exabgp.bgp.message.open.capability.graceful import Graceful
    from exabgp.protocol.family import AFI, SAFI

    for r_bit, f_ipv4 in ((True, True), (True, False), (False, True), (False, False)):
        cap = Graceful().set(0x8 if r_bit else 0, 120, [
            (AFI.ipv4, SAFI.unicast, 0x80 if f_ipv4 else 0), (AFI.ipv6, SAFI.unicast, 0)])
        opened = {"version": 4, "asn": 64512, "hold_time": 90, "router_id": "198.51.100.2",
                  "capabilities": {"64": json.loads(cap.json())}}
        line = json.dumps({"exabgp": "5.0.0", "type": "open", "neighbor": {
            "address": {"local": "198.51.100.1", "peer": "198.51.100.2"}, "open": opened}})
        dialect, _ = codec.dialect_for(version("exabgp"))
        event = codec.decode(line, dialect)
        assert isinstance(event, codec.Open) and event.graceful_restart is not None
        assert event.graceful_restart.restarting is r_bit
        assert event.graceful_restart.forwarding == (
            frozenset({"ipv4/unicast"}) if f_ipv4 else frozenset())
    assert codec.dialect_for("5.0.99")[1] is not None  # an unchecked release says so


N3, P3 = ip_address("198.51.100.4"), prefix("172.17.3.0/24")


@given(st.lists(st.tuples(st.sampled_from([N1, N2, N3]), st.sampled_from([P1, P2, P3]),
                          st.sampled_from([A, B, None]), st.sampled_from([0.0, 0.03, 0.2]),
                          st.booleans()), max_size=40))
def test_pacer_ends_where_wanted_and_never_changes_a_prefix_twice_in_a_cooldown(
        ops: list[tuple[Any, Any, Attributes | None, float, bool]]) -> None:
    """Any interleaving of wishes, takes and refusals: every command carries exactly what it
    says, no (peer, prefix) changes twice within the cooldown, and once the pacer is left
    to run ExaBGP holds exactly what is wanted."""
    pacer = Pacer(cooldown=0.1, retry=0.5)
    wanted: dict[tuple[Any, Any], Attributes | None] = {}
    last: dict[tuple[Any, Any], float] = {}
    now = 0.0

    def step(refuse: bool) -> None:
        batches, _ = pacer.take(now)
        for batch in batches:
            for peer, pfx, _was, _attrs in batch.changes:
                assert now - last.get((peer, pfx), -1.0) >= 0.1 - 1e-9, (peer, pfx, now)
                last[(peer, pfx)] = now
            peers = sorted({c[0] for c in batch.changes}, key=int)
            prefixes = sorted({c[1] for c in batch.changes}, key=lambda p: int(p.network_address))
            if batch.changes:
                attrs = batch.changes[0][3]
                build = codec.announce_command if attrs is not None else codec.withdraw_command
                shown = attrs if attrs is not None else batch.changes[0][2]
                assert shown is not None
                assert batch.text == build(peers, shown, prefixes)
                assert len(batch.changes) == len(peers) * len(prefixes)
            if refuse:
                pacer.refused(batch, now)
            else:
                pacer.acknowledged(batch, now)

    for peer, pfx, attrs, dt, refuse in ops:
        pacer.desire(peer, pfx, attrs)
        wanted[(peer, pfx)] = attrs
        now += dt
        step(refuse)
    for _ in range(30):
        now += 0.1
        step(False)
    assert pacer.idle()
    for (peer, pfx), attrs in wanted.items():
        assert pacer.wire.get(peer, {}).get(pfx) == attrs


V6_PEERS = [ip_address("fd00:1::2"), ip_address("fd00:1::3")]
V6_PREFIXES = [prefix("fd00:10::1:0/122"), prefix("fd00:10::2:0/122")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([N1, N2, *V6_PEERS]),
                          st.sampled_from([P1, P2, *V6_PREFIXES]),
                          st.sampled_from([A, B, None])), max_size=30))
def test_each_command_carries_one_family_to_peers_of_that_family(
        wishes: list[tuple[Any, Any, Attributes | None]]) -> None:
    """Any mix of families, peers and prefixes: every command names prefixes of one family
    and only peers of that family; a prefix of the other family never reaches a peer."""
    pacer = Pacer(cooldown=0.0)
    for peer, pfx, attrs in wishes:
        pacer.desire(peer, pfx, attrs)
    now = 0.0
    while True:
        batches, _ = pacer.take(now)
        if not batches:
            break
        for batch in batches:
            families = {p.version for p in batch.peers} | {p.version for p in batch.prefixes}
            assert len(families) <= 1, batch.text
            words = batch.text.split()
            named = [w for w in words[words.index("nlri") + 1:]] if "nlri" in words else []
            assert all(prefix(w).version in families for w in named), batch.text
            pacer.acknowledged(batch, now)
        now += 1.0
    for peer, table in pacer.wire.items():
        assert all(p.version == peer.version for p in table)


def test_a_route_refresh_from_the_peer_is_an_event_not_a_malformed_line() -> None:
    line = (f'{{ {HEAD}, "type": "refresh", {NEIGHBOR}, "direction": "receive", '
            '"route-refresh": { "afi": "ipv4", "safi": "unicast", "subtype": "query" } } }')
    assert codec.decode(line) == codec.Refresh(ip_address("198.51.100.2"), "ipv4 unicast",
                                               "query")
