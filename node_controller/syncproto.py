"""Typha's sync-protocol messages, declared for the gob codec (pure).

The names, fields and field types are Typha's (``typha/pkg/syncproto/sync_proto.go``, facts
of the wire format): every message travels as an ``Envelope`` whose one field is an
interface holding the message, registered under ``NAME_PREFIX`` + the message's type name.
Named Go types travel as their underlying kind (``SyncerType`` a string, ``SyncStatus`` and
``UpdateType`` unsigned integers, ``time.Duration`` a signed one); ``time.Time`` by its own
binary encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node_controller.gob import (
    BOOL,
    BYTES,
    INT,
    INTERFACE,
    STRING,
    UINT,
    Decoder,
    Encoded,
    Encoder,
    GobError,
    Interface,
    Opaque,
    Slice,
    Struct,
    decode_time,
    encode_time,
)
from node_controller.snappy import SnappyError, StreamDecoder

NAME_PREFIX = "github.com/projectcalico/typha/pkg/syncproto."
SYNCER_BGP = "bgp"
COMPRESSION_SNAPPY = "snappy"
IN_SYNC = 2  # api.SyncStatus (libcalico-go/lib/backend/api): WaitForDatastore, Resync, InSync

TIME = Encoded("Time")
MESSAGES: dict[str, Struct] = {s.name: s for s in (
    Struct("MsgClientHello", (
        ("Hostname", STRING), ("Info", STRING), ("Version", STRING), ("SyncerType", STRING),
        ("SupportsDecoderRestart", BOOL),
        ("SupportedCompressionAlgorithms", Slice("[]syncproto.CompressionAlgorithm", STRING)),
        ("SupportsModernPolicyKeys", BOOL), ("ClientConnID", UINT))),
    Struct("MsgServerHello", (
        ("Version", STRING), ("SyncerType", STRING), ("SupportsNodeResourceUpdates", BOOL),
        ("ServerConnID", UINT))),
    Struct("MsgDecoderRestart", (("Message", STRING), ("CompressionAlgorithm", STRING))),
    Struct("MsgACK", ()),
    Struct("MsgSyncStatus", (("SyncStatus", UINT),)),
    Struct("MsgPing", (("Timestamp", TIME),)),
    Struct("MsgPong", (("PingTimestamp", TIME), ("PongTimestamp", TIME))),
    Struct("MsgKVs", (("KVs", Slice("[]syncproto.SerializedUpdate", Struct(
        "SerializedUpdate", (
            ("Key", STRING), ("Value", BYTES), ("Revision", INTERFACE),
            ("V3ResourceVersion", STRING), ("TTL", INT), ("UpdateType", UINT))))),)),
)}
ENVELOPE = Struct("Envelope", (("Message", INTERFACE),))


class ProtocolError(ValueError):
    """A message that is not one of Typha's, or one that does not hold what it should."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message: its type (``MsgKVs``) and its fields as sent (zero fields absent)."""

    type: str
    fields: dict[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def time(self, name: str) -> tuple[int, int] | None:
        """A ``time.Time`` field as Unix seconds and nanoseconds (the field itself stays
        Go's encoding, so a Pong echoes a Ping's timestamp exactly)."""
        value = self.fields.get(name)
        return decode_time(value.data) if isinstance(value, Opaque) else None


def envelope(message: Message) -> tuple[Struct, dict[str, Any]]:
    """The ``Envelope`` type and value that carry ``message``."""
    struct = MESSAGES.get(message.type)
    if struct is None:
        raise ProtocolError(f"{message.type} is not a Typha message")
    fields = dict(message.fields)
    if message.type == "MsgKVs":
        fields["KVs"] = [_with_revision(kv) for kv in fields.get("KVs", [])]
    return ENVELOPE, {"Message": Interface(NAME_PREFIX + message.type, fields, struct)}


def _with_revision(kv: dict[str, Any]) -> dict[str, Any]:
    revision = kv.get("Revision")
    if revision is None or isinstance(revision, Interface):
        return kv
    if not isinstance(revision, str):
        raise ProtocolError(f"a revision must be a string here, not {revision!r}")
    return {**kv, "Revision": Interface("string", revision, STRING)}


def message_of(value: Any) -> Message:
    """The message an ``Envelope`` value carries; revisions as text."""
    if not isinstance(value, dict) or not isinstance(value.get("Message"), Interface):
        raise ProtocolError(f"not an Envelope with a message: {str(value)[:100]}")
    carried: Interface = value["Message"]
    if not carried.name.startswith(NAME_PREFIX):
        raise ProtocolError(f"a message registered as {carried.name!r}")
    kind = carried.name[len(NAME_PREFIX):]
    if kind not in MESSAGES or not isinstance(carried.value, dict):
        raise ProtocolError(f"{kind} is not a Typha message")
    fields = dict(carried.value)
    if kind == "MsgKVs":
        kvs = fields.get("KVs", [])
        if not isinstance(kvs, list):
            raise ProtocolError(f"MsgKVs.KVs is not a list: {str(kvs)[:100]}")
        fields["KVs"] = [_revision_text(kv) for kv in kvs]
    return Message(kind, fields)


def _revision_text(kv: Any) -> dict[str, Any]:
    if not isinstance(kv, dict):
        raise ProtocolError(f"a KV that is not a SerializedUpdate: {str(kv)[:100]}")
    revision = kv.get("Revision")
    if isinstance(revision, Interface):
        kv = {**kv, "Revision": revision.value if isinstance(revision.value, str | int)
              else None}
        if kv["Revision"] is not None:
            kv["Revision"] = str(kv["Revision"])
    return kv


class Codec:
    """Messages to and from one connection's gob streams (one encoder and one decoder per
    connection, as Typha keeps them; the server's stream snappy-compressed after a decoder
    restart that chose it)."""

    def __init__(self) -> None:
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.compression = ""
        self._snappy: StreamDecoder | None = None

    def encode(self, message: Message) -> bytes:
        typ, value = envelope(message)
        return self.encoder.encode(typ, value)

    def feed(self, data: bytes) -> list[Message]:
        try:
            if self._snappy is not None:
                data = self._snappy.feed(data)
            return [message_of(v) for v in self.decoder.feed(data)]
        except GobError as exc:
            raise ProtocolError(f"not a gob stream Typha would send: {exc}") from None
        except SnappyError as exc:
            raise ProtocolError(f"not a snappy stream Typha would send: {exc}") from None

    def restart_decoder(self, compression: str = "") -> None:
        """After a MsgDecoderRestart: the server starts a new gob stream, compressed as it
        says (it sends nothing in the new format before our ACK)."""
        if compression not in ("", COMPRESSION_SNAPPY):
            raise ProtocolError(f"compression {compression!r} was not offered")
        self.decoder = Decoder()
        self.compression = compression
        self._snappy = StreamDecoder() if compression == COMPRESSION_SNAPPY else None


def time_field(seconds: int, nanos: int = 0) -> Opaque:
    """A ``time.Time`` field's value for the encoder (Unix seconds and nanoseconds)."""
    return Opaque("Time", encode_time(seconds, nanos))
