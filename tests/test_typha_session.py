"""One Typha connection's protocol, sans IO: a server's messages in, answers and events out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from node_controller.store import Store
from node_controller.syncproto import Codec, Message, time_field
from node_controller.typha import TyphaConfig, TyphaSource
from node_controller.typha_session import (
    Greeted,
    InSync,
    Refused,
    Restarted,
    Session,
    Unreadable,
    Update,
)

PEER = "/calico/resources/v3/projectcalico.org/bgppeers/tor"
HELLO = Message("MsgServerHello", {"Version": "v3.33.0", "SyncerType": "bgp",
                                   "SupportsNodeResourceUpdates": True, "ServerConnID": 9})


def peer(asn: int = 65000) -> bytes:
    return json.dumps({"spec": {"peerIP": "10.0.0.1", "asNumber": asn}}).encode()


def kvs(*items: dict[str, Any]) -> Message:
    return Message("MsgKVs", {"KVs": list(items)})


def session() -> tuple[Session, Codec]:
    client = Session("node-2", info="test", version="bgpd", connection_id=5)
    server = Codec()
    hello = server.feed(client.hello())
    assert hello[0].type == "MsgClientHello" and hello[0].get("SyncerType") == "bgp"
    assert hello[0].get("SupportedCompressionAlgorithms") == ["snappy"]
    return client, server


def test_hello_then_kvs_then_in_sync() -> None:
    client, server = session()
    data = b"".join(server.encode(m) for m in (
        HELLO, kvs({"Key": PEER, "Value": peer()}, {"Key": "/calico/felix/v1/x", "Value": b"1"}),
        Message("MsgSyncStatus", {"SyncStatus": 1}), Message("MsgSyncStatus", {"SyncStatus": 2})))
    answer, events = client.receive(data, 0.0)
    assert answer == b""
    assert events[0] == Greeted("v3.33.0", 9)
    assert isinstance(events[1], Update) and events[1].change.kind == "BGPPeer"
    assert events[2:] == [InSync()]  # the key bgpd does not read gave nothing


@pytest.mark.parametrize(("first", "problem"), [
    (Message("MsgKVs", {}), "first message"),
    (Message("MsgServerHello", {"SyncerType": "bgp"}), "too old"),
    (Message("MsgServerHello", {"SupportsNodeResourceUpdates": True}), "'felix'"),
])
def test_a_server_typhas_client_would_refuse(first: Message, problem: str) -> None:
    client, server = session()
    with pytest.raises(Refused, match=problem):
        client.receive(server.encode(first), 0.0)


def test_a_second_hello_is_refused() -> None:
    client, server = session()
    client.receive(server.encode(HELLO), 0.0)
    with pytest.raises(Refused, match="second"):
        client.receive(server.encode(HELLO), 0.0)


def test_a_ping_is_answered_with_its_own_timestamp() -> None:
    client, server = session()
    client.receive(server.encode(HELLO), 0.0)
    stamp = time_field(1_800_000_000, 123456789)
    answer, _ = client.receive(server.encode(Message("MsgPing", {"Timestamp": stamp})),
                               1_800_000_001.5)
    pong = server.feed(answer)[0]
    assert pong.type == "MsgPong" and pong.get("PingTimestamp") == stamp
    assert pong.time("PongTimestamp") == (1_800_000_001, 500000000)


def test_a_decoder_restart_is_acked_and_a_new_stream_read() -> None:
    client, server = session()
    client.receive(server.encode(HELLO), 0.0)
    answer, events = client.receive(server.encode(Message("MsgDecoderRestart", {
        "CompressionAlgorithm": ""})), 0.0)
    assert server.feed(answer)[0].type == "MsgACK" and events == [Restarted("")]
    fresh = Codec()  # the server's new encoder: types defined again
    _, events = client.receive(fresh.encode(kvs({"Key": PEER, "Value": peer()})), 0.0)
    assert [type(e) for e in events] == [Update]


def test_a_kv_that_cannot_be_read_is_an_error_not_a_deletion() -> None:
    client, server = session()
    client.receive(server.encode(HELLO), 0.0)
    bad = [{"Key": PEER, "Value": v} for v in ("text", 7)] + [{"Key": PEER, "Value": b"{x"}]
    _, events = client.receive(server.encode(kvs(*bad)), 0.0)
    assert [type(e) for e in events] == [Unreadable] * 3
    _, events = client.receive(server.encode(kvs({"Key": PEER})), 0.0)  # no value: deleted
    assert isinstance(events[0], Update) and events[0].change.manifest is None


def test_what_a_new_connection_does_not_send_again_is_deleted_at_in_sync() -> None:
    store, calls = Store(), []
    source = TyphaSource(TyphaConfig(addr="127.0.0.1:5473"), "node-2", store,
                         lambda: calls.append(1))
    client, server = session()
    other = "/calico/resources/v3/projectcalico.org/bgppeers/rr"
    _, events = client.receive(b"".join(server.encode(m) for m in (
        HELLO, kvs({"Key": PEER, "Value": peer()}, {"Key": other, "Value": peer(65001)}),
        Message("MsgSyncStatus", {"SyncStatus": 2}))), 0.0)
    source._handle(events, set())
    assert set(store.objects["BGPPeer"]) == {"tor", "rr"} and source.listed
    # a new connection: "rr" is not sent again; it stays until InSync, then goes
    client, server = session()
    seen: set[str] = set()
    _, events = client.receive(b"".join(server.encode(m) for m in (
        HELLO, kvs({"Key": PEER, "Value": peer()}))), 0.0)
    source._handle(events, seen)
    assert set(store.objects["BGPPeer"]) == {"tor", "rr"}
    _, events = client.receive(server.encode(Message("MsgSyncStatus", {"SyncStatus": 2})), 0.0)
    source._handle(events, seen)
    assert set(store.objects["BGPPeer"]) == {"tor"} and calls
