"""Go's gob format: Typha's own bytes decoded, and round trips of the encoder's output."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node_controller import gob, snappy
from node_controller.gob import (
    BOOL,
    BYTES,
    FLOAT,
    INT,
    STRING,
    UINT,
    Decoder,
    Encoder,
    GobError,
    Interface,
    Map,
    Opaque,
    Slice,
    Struct,
)
from node_controller.syncproto import MESSAGES, Codec, Message, ProtocolError, time_field

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "typha"


def go_time(text: str) -> tuple[int, int]:
    """Unix seconds and nanoseconds of Go's RFC 3339 text (with up to 9 decimals)."""
    match = re.fullmatch(r"(.{19})(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    assert match is not None, text
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    when = dt.datetime.fromisoformat(match.group(1) + zone)
    return int(when.timestamp()), int((match.group(2) or "0").ljust(9, "0"))


def go_view(message: Message) -> dict[str, Any]:
    """A message as the stand-in prints it: every field, zero ones too."""
    fields: dict[str, Any] = {}
    for name, ftype in MESSAGES[message.type].fields:
        value = message.get(name)
        if isinstance(value, Opaque):
            value = gob.decode_time(value.data)
        elif name == "KVs":
            value = [{"Key": kv.get("Key", ""), "Value": kv["Value"].decode()
                      if "Value" in kv else None, "Revision": kv.get("Revision"),
                      "V3ResourceVersion": kv.get("V3ResourceVersion", ""),
                      "TTL": kv.get("TTL", 0), "UpdateType": kv.get("UpdateType", 0)}
                     for kv in value or []]
        elif value is None:
            value = {STRING: "", BOOL: False, UINT: 0}.get(ftype)  # type: ignore
        fields[name] = value
    return {"type": message.type, "fields": fields}


def expected(name: str) -> list[dict[str, Any]]:
    out = json.loads((FIXTURES / f"{name}.json").read_text())
    for item in out:
        for key, value in item["fields"].items():
            if key.endswith("Timestamp"):
                item["fields"][key] = go_time(value)
    return out


@pytest.mark.parametrize("name", ["hello", "session"])
def test_typhas_bytes_decode_to_what_go_encoded(name: str) -> None:
    messages = Codec().feed((FIXTURES / f"{name}.gob").read_bytes())
    assert [go_view(m) for m in messages] == expected(name)


def test_a_stream_read_in_pieces_of_any_size() -> None:
    data = (FIXTURES / "session.gob").read_bytes()
    whole = Codec().feed(data)
    for size in (1, 2, 3, 7, 64, 500):
        codec = Codec()
        got: list[Message] = []
        for start in range(0, len(data), size):
            got += codec.feed(data[start:start + size])
        assert got == whole
        assert codec.decoder.feed(b"") == []


def test_a_pong_echoes_the_pings_timestamp_exactly() -> None:
    ping = next(m for m in Codec().feed((FIXTURES / "session.gob").read_bytes())
                if m.type == "MsgPing")
    pong = Message("MsgPong", {"PingTimestamp": ping.get("Timestamp"),
                               "PongTimestamp": time_field(1_800_000_000, 5)})
    echoed = Codec().feed(Codec().encode(pong))[0]
    assert echoed.get("PingTimestamp") == ping.get("Timestamp")  # nanoseconds kept
    when = dt.datetime(2026, 12, 2, 17, 28, 10, tzinfo=dt.UTC)
    assert ping.time("Timestamp") == (int(when.timestamp()), 123456789)
    assert echoed.time("PongTimestamp") == (1_800_000_000, 5)


def test_integers_as_go_writes_them() -> None:
    cases = {0: b"\x00", 127: b"\x7f", 128: b"\xff\x80", 256: b"\xfe\x01\x00",
             (1 << 64) - 1: b"\xf8" + b"\xff" * 8}
    for value, raw in cases.items():
        out = bytearray()
        gob.put_uint(out, value)
        assert bytes(out) == raw
    for value, raw in {0: b"\x00", -1: b"\x01", 1: b"\x02", -65: b"\xff\x81",
                       65: b"\xff\x82"}.items():
        out = bytearray()
        gob.put_int(out, value)
        assert bytes(out) == raw


# --- round trips of random types and values -----------------------------------------------
leaf = st.sampled_from([BOOL, INT, UINT, FLOAT, STRING, BYTES])


def types(depth: int = 2) -> st.SearchStrategy[Any]:
    if depth == 0:
        return leaf
    inner = types(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda t: Slice("[]x", t), inner),
        st.builds(lambda t: Map("map[string]x", STRING, t), inner),
        st.lists(inner, min_size=0, max_size=4).map(
            lambda ts: Struct("S", tuple((f"F{i}", t) for i, t in enumerate(ts)))),
    )


def values(typ: Any) -> st.SearchStrategy[Any]:
    if typ is BOOL:
        return st.booleans()
    if typ is INT:
        return st.integers(-(1 << 63), (1 << 63) - 1)
    if typ is UINT:
        return st.integers(0, (1 << 64) - 1)
    if typ is FLOAT:
        return st.floats(allow_nan=False)
    if typ is STRING:
        return st.text(max_size=20)
    if typ is BYTES:
        return st.binary(max_size=20)
    if isinstance(typ, Slice):
        return st.lists(values(typ.elem), max_size=4)
    if isinstance(typ, Map):
        return st.dictionaries(st.text(max_size=5), values(typ.elem), max_size=3)
    return st.fixed_dictionaries({name: values(t) for name, t in typ.fields})


def sent(typ: Any, value: Any) -> Any:
    """What a decoder gives back: a struct without its zero-valued fields."""
    if isinstance(typ, Struct):
        return {name: sent(t, value[name]) for name, t in typ.fields
                if not gob._zero(t, value[name])}
    if isinstance(typ, Slice):
        return [sent(typ.elem, v) for v in value]
    if isinstance(typ, Map):
        return {k: sent(typ.elem, v) for k, v in value.items()}
    return value


typed_values = types().flatmap(lambda t: st.tuples(st.just(t), values(t)))


@settings(max_examples=300, deadline=None)
@given(st.lists(typed_values, min_size=1, max_size=4))
def test_round_trip_of_any_declared_value(items: list[tuple[Any, Any]]) -> None:
    encoder, decoder = Encoder(), Decoder()
    stream = b"".join(encoder.encode(t, v) for t, v in items)
    assert decoder.feed(stream) == [sent(t, v) for t, v in items]


@settings(max_examples=200, deadline=None)
@given(typed_values)
def test_round_trip_inside_an_interface(item: tuple[Any, Any]) -> None:
    typ, value = item
    holder = Struct("Envelope", (("Message", gob.INTERFACE),))
    data = Encoder().encode(holder, {"Message": Interface("x.T", value, typ)})
    assert Decoder().feed(data) == [{"Message": Interface("x.T", sent(typ, value))}]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_only_ever_give_a_gob_error(data: bytes) -> None:
    decoder = Decoder()
    with contextlib.suppress(GobError):
        decoder.feed(data)


def test_a_type_nested_in_itself_is_refused_not_a_crash() -> None:
    # type 65: a slice whose element is type 65, and a value nested 1,000 deep
    definition = bytearray()
    gob.put_int(definition, -65)
    definition += bytes([2, 1, 2, 0xff, 0x82, 0, 1, 0xff, 0x82, 0, 0])  # SliceT{Elem: 65}
    value = bytearray()
    gob.put_int(value, 65)
    value += b"\x00" + b"\x01" * 1000 + b"\x00"
    stream = bytearray()
    for message in (definition, value):
        gob.put_uint(stream, len(message))
        stream += message
    with pytest.raises(GobError, match="nested"):
        Decoder().feed(bytes(stream))


def test_a_message_that_is_not_typhas_is_a_protocol_error() -> None:
    holder = Struct("Envelope", (("Message", gob.INTERFACE),))
    data = Encoder().encode(holder, {"Message": Interface("main.Other", {}, Struct("X", ()))})
    with pytest.raises(ProtocolError, match=r"main\.Other"):
        Codec().feed(data)
    with pytest.raises(ProtocolError, match="not a Typha message"):
        Codec().encode(Message("MsgNope", {}))


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_a_corrupted_typha_stream_only_ever_gives_a_protocol_error(data: st.DataObject) -> None:
    raw = bytearray((FIXTURES / "session.gob").read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ProtocolError):
        Codec().feed(bytes(raw))


# --- snappy, as Typha compresses its stream ------------------------------------------------
@pytest.mark.parametrize("name", ["hello", "session"])
def test_typhas_snappy_stream_gives_the_same_messages(name: str) -> None:
    plain = Codec().feed((FIXTURES / f"{name}.gob").read_bytes())
    packed = (FIXTURES / f"{name}.snappy").read_bytes()
    for size in (1, 5, 64, len(packed)):
        codec = Codec()
        codec.restart_decoder("snappy")
        got: list[Message] = []
        for start in range(0, len(packed), size):
            got += codec.feed(packed[start:start + size])
        assert got == plain


def test_snappy_copies_that_overlap_what_they_write() -> None:
    # "ab", then a copy of 6 from 2 back (1-byte offset form), then 5 from 8 back (2-byte)
    block = bytes([13, 1 << 2, ord("a"), ord("b"), (0 << 5) | (2 << 2) | 1, 2,
                   (4 << 2) | 2, 8, 0])
    assert snappy.decompress_block(block) == b"abababab" + b"ababa"
    with pytest.raises(snappy.SnappyError, match="longer than it says"):
        snappy.decompress_block(bytes([12]) + block[1:])
    with pytest.raises(snappy.SnappyError, match="back"):
        snappy.decompress_block(bytes([8, (2 << 2) | 1, 1]))  # a copy before any output


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_corrupted_snappy_stream_only_ever_gives_a_protocol_error(data: st.DataObject) -> None:
    raw = bytearray((FIXTURES / "session.snappy").read_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    codec = Codec()
    codec.restart_decoder("snappy")
    with contextlib.suppress(ProtocolError):
        codec.feed(bytes(raw))


def test_a_compression_not_offered_is_refused() -> None:
    with pytest.raises(ProtocolError, match="zstd"):
        Codec().restart_decoder("zstd")
