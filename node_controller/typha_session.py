"""The client side of one Typha connection, sans IO: bytes in, the bytes to answer and what
the server said out (pure).

Theory of operation: :meth:`Session.hello` is the first thing sent (ClientHello: the "bgp"
syncer, decoder restart and snappy supported, modern policy keys).  Each read from the
connection goes to :meth:`Session.receive`, which returns the bytes to write back (a Pong per
Ping, with the Ping's own timestamp; an ACK per DecoderRestart, after which the server's
stream is a new gob stream, snappy-compressed if it says so) and the events in order:
:class:`Greeted` for the ServerHello — refused (:class:`Refused`) unless it is the first
message, supports node resource updates and serves the "bgp" syncer, as Typha's own client
refuses — :class:`Update` per KV of a key the daemon reads (a deletion has no manifest),
:class:`Unreadable` per KV that cannot be read (an error on that key, never a deletion), and
:class:`InSync`.  Anything that is not Typha's protocol is a
:class:`~node_controller.syncproto.ProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from node_controller.syncproto import (
    COMPRESSION_SNAPPY,
    IN_SYNC,
    SYNCER_BGP,
    Codec,
    Message,
    ProtocolError,
    time_field,
)
from node_controller.typha_model import Change, ModelError, change_of


class Refused(ProtocolError):
    """A server this client does not talk to (too old, another syncer, out of order)."""


@dataclass(frozen=True, slots=True)
class Greeted:
    version: str
    server_connection: int


@dataclass(frozen=True, slots=True)
class Update:
    key: str
    change: Change


@dataclass(frozen=True, slots=True)
class Unreadable:
    key: str
    field: str
    problem: str


@dataclass(frozen=True, slots=True)
class InSync:
    pass


@dataclass(frozen=True, slots=True)
class Restarted:
    compression: str  # "" or "snappy"


Event = Greeted | Update | Unreadable | InSync | Restarted


class Session:
    def __init__(self, node: str, *, info: str, version: str, connection_id: int) -> None:
        self.node, self.info, self.version = node, info, version
        self.connection_id = connection_id
        self.codec = Codec()
        self.greeted = False

    def hello(self) -> bytes:
        return self.codec.encode(Message("MsgClientHello", {
            "Hostname": self.node, "Info": self.info, "Version": self.version,
            "SyncerType": SYNCER_BGP, "SupportsDecoderRestart": True,
            "SupportedCompressionAlgorithms": [COMPRESSION_SNAPPY],
            "SupportsModernPolicyKeys": True, "ClientConnID": self.connection_id}))

    def receive(self, data: bytes, now: float) -> tuple[bytes, list[Event]]:
        """``data`` read from the server at Unix time ``now``: what to send back, and the
        events, in order."""
        out = bytearray()
        events: list[Event] = []
        for message in self.codec.feed(data):
            if not self.greeted:
                events.append(self._greeted(message))
            elif message.type == "MsgKVs":
                events += self._kvs(message)
            elif message.type == "MsgSyncStatus":
                if message.get("SyncStatus", 0) == IN_SYNC:
                    events.append(InSync())
            elif message.type == "MsgPing":
                out += self.codec.encode(Message("MsgPong", {
                    "PingTimestamp": message.get("Timestamp"),
                    "PongTimestamp": time_field(int(now), int(now % 1 * 1e9))}))
            elif message.type == "MsgDecoderRestart":
                self.codec.restart_decoder(str(message.get("CompressionAlgorithm") or ""))
                out += self.codec.encode(Message("MsgACK", {}))
                events.append(Restarted(self.codec.compression))
            elif message.type == "MsgServerHello":
                raise Refused("a second ServerHello")
        return bytes(out), events

    def _greeted(self, message: Message) -> Greeted:
        if message.type != "MsgServerHello":
            raise Refused(f"Typha's first message is {message.type}, not MsgServerHello")
        if not message.get("SupportsNodeResourceUpdates"):
            raise Refused("this Typha does not support node resource updates (too old)")
        syncer = message.get("SyncerType") or "felix"
        if syncer != SYNCER_BGP:
            raise Refused(f"Typha serves the {syncer!r} syncer, not {SYNCER_BGP!r}")
        self.greeted = True
        return Greeted(str(message.get("Version") or ""), int(message.get("ServerConnID") or 0))

    @staticmethod
    def _kvs(message: Message) -> list[Event]:
        events: list[Event] = []
        for kv in message.get("KVs", []):
            key, value = kv.get("Key"), kv.get("Value")
            if not isinstance(key, str) or not isinstance(value, bytes | None):
                events.append(Unreadable(str(key)[:200], "Value",
                                         "a KV whose key is not text or value not bytes"))
                continue
            try:
                change = change_of(key, value)
            except ModelError as exc:
                events.append(Unreadable(exc.key, exc.field, exc.message))
                continue
            if change is not None:
                events.append(Update(key, change))
        return events
