"""Go's ``encoding/gob`` wire format: a decoder for any stream, an encoder for declared types
(pure; the codec of Typha's sync protocol).

Theory of operation.  A gob stream is a sequence of *messages*, each an unsigned count of
bytes and that many bytes.  A message holds either a type definition — a negative type id
and a ``wireType`` describing the type — or a value: a non-negative type id and the value
encoded by that type.  Type ids 1 to 23 are predefined (the basic types and the wire types
themselves); a stream defines every other type before its first value of it.  Values:

* an unsigned integer below 128 is one byte; a larger one is its byte count, negated, and
  its big-endian bytes; a signed integer is folded into an unsigned one (``i << 1``, or
  ``~i << 1 | 1`` for a negative one); a float is its IEEE-754 bits, byte-reversed, as an
  unsigned integer; a string or ``[]byte`` is its length and its bytes;
* a struct is its fields in order, each as (field number minus the previous field number, value),
  ending with 0; zero-valued fields (0, "", false, empty slices, maps and strings, nil
  interfaces, zero GobEncoder values) are not sent; a top-level value that is not a struct
  is prefixed by a 0;
* a slice, array or map: its element count, then its elements (a map: key, value pairs);
* an interface value: the name its concrete type was registered under (empty: nil), then —
  Go's encoder ending the current message at each new type definition so that the
  definitions can be read first — the definitions, then the concrete type id, a byte count,
  and the value encoded as a top-level value;
* a type with its own encoding (``GobEncoder``, ``BinaryMarshaler``, ``TextMarshaler``, such
  as ``time.Time``) is the bytes that encoding gives.

The decoder turns structs into dicts of the fields sent, interfaces into :class:`Interface`,
own encodings into :class:`Opaque` (:func:`decode_time` reads a ``time.Time``).  The encoder
needs the types declared (:class:`Struct`, :class:`Slice`, :class:`Array`, :class:`Map`,
:class:`Encoded` and the basic types) and numbers new types from 65, as a Go process that
registered nothing does.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FIRST_USER_ID = 65
# Go's decoder refuses messages of 1 GiB and more; Typha sends its state in batches of
# messages far smaller, so a message of this size and more is refused here
MAX_MESSAGE = 64 << 20
MAX_DEPTH = 100  # values nested deeper (a hostile recursive type) are refused


class GobError(ValueError):
    """The stream is not valid gob (or uses a type this codec cannot hold)."""


class _NeedMore(Exception):
    """The stream ends inside a value: wait for more bytes."""


# --- types ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Basic:
    name: str
    id: int


BOOL, INT, UINT, FLOAT = Basic("bool", 1), Basic("int", 2), Basic("uint", 3), Basic("float", 4)
BYTES, STRING, COMPLEX = Basic("[]byte", 5), Basic("string", 6), Basic("complex", 7)
INTERFACE = Basic("interface", 8)
BASICS = {t.id: t for t in (BOOL, INT, UINT, FLOAT, BYTES, STRING, COMPLEX, INTERFACE)}
# the predefined ids of the wire types that describe types
WIRE_TYPE, ARRAY_TYPE, COMMON_TYPE, SLICE_TYPE, STRUCT_TYPE = 16, 17, 18, 19, 20
FIELD_TYPE, FIELD_TYPE_SLICE, MAP_TYPE = 21, 22, 23


@dataclass(frozen=True)
class Struct:
    name: str
    fields: tuple[tuple[str, GobType], ...]


@dataclass(frozen=True)
class Slice:
    name: str
    elem: GobType


@dataclass(frozen=True)
class Array:
    name: str
    elem: GobType
    length: int


@dataclass(frozen=True)
class Map:
    name: str
    key: GobType
    elem: GobType


@dataclass(frozen=True)
class Encoded:
    """A type with its own encoding; ``kind``: the wireType field Go describes it with."""

    name: str
    kind: str = "GobEncoder"  # or BinaryMarshaler, TextMarshaler


GobType = Basic | Struct | Slice | Array | Map | Encoded
WIRE_FIELDS = ("ArrayT", "SliceT", "StructT", "MapT", "GobEncoderT", "BinaryMarshalerT",
               "TextMarshalerT")
ENCODED_KINDS = {"GobEncoderT": "GobEncoder", "BinaryMarshalerT": "BinaryMarshaler",
                 "TextMarshalerT": "TextMarshaler"}


# --- values that are not plain Python ------------------------------------------------------
@dataclass(frozen=True)
class Interface:
    """An interface value: the registered name of its concrete type and the value; for
    encoding, ``type`` too."""

    name: str
    value: Any
    type: GobType | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Opaque:
    """The bytes of a type's own encoding (``type_name``: the type's name in the stream)."""

    type_name: str
    data: bytes


# seconds from Go's zero time (January 1, year 1, UTC) to the Unix epoch
UNIX_FROM_GO = 62135596800


def decode_time(data: bytes) -> tuple[int, int]:
    """A ``time.Time``'s binary encoding: Unix seconds and nanoseconds (its zone dropped)."""
    if len(data) not in (15, 16) or data[0] not in (1, 2):
        raise GobError(f"not a time.Time encoding: {data.hex()}")
    seconds, nanos = struct.unpack(">qi", data[1:13])
    return seconds - UNIX_FROM_GO, nanos


def encode_time(seconds: int, nanos: int = 0) -> bytes:
    """``time.Time``'s binary encoding (version 1, UTC) of Unix ``seconds`` and ``nanos``."""
    return bytes([1]) + struct.pack(">qih", seconds + UNIX_FROM_GO, nanos, -1)


# --- integers ------------------------------------------------------------------------------
def put_uint(out: bytearray, value: int) -> None:
    if value < 0 or value >= 1 << 64:
        raise GobError(f"{value} does not fit an unsigned 64-bit integer")
    if value < 0x80:
        out.append(value)
        return
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    out.append(256 - len(raw))
    out += raw


def put_int(out: bytearray, value: int) -> None:
    if not -(1 << 63) <= value < 1 << 63:
        raise GobError(f"{value} does not fit a signed 64-bit integer")
    put_uint(out, (~value << 1) | 1 if value < 0 else value << 1)


def _fold(u: int) -> int:
    return ~(u >> 1) if u & 1 else u >> 1


def _float_bits(value: float) -> int:
    return int.from_bytes(struct.pack(">d", value)[::-1], "big")


def _bits_float(bits: int) -> float:
    return float(struct.unpack(">d", bits.to_bytes(8, "big")[::-1])[0])


class _Reader:
    def __init__(self, data: bytes | memoryview) -> None:
        self.data, self.pos = data, 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise _NeedMore
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, n: int) -> bytes:
        if self.left() < n:
            raise _NeedMore
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def uint(self) -> int:
        first = self.byte()
        if first < 0x80:
            return first
        n = 256 - first
        if n > 8:
            raise GobError(f"an unsigned integer of {n} bytes")
        return int.from_bytes(self.take(n), "big")

    def int(self) -> int:
        return _fold(self.uint())


# --- decoding ------------------------------------------------------------------------------
class Decoder:
    """Values from a gob stream, fed in pieces of any size (a TCP stream's reads)."""

    def __init__(self, *, max_message: int = MAX_MESSAGE, max_depth: int = MAX_DEPTH) -> None:
        self.types: dict[int, GobType] = dict(BASICS)
        self.max_message = max_message
        self.max_depth = max_depth
        self._depth = 0
        self._stream = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; every top-level value now complete, in order."""
        self._stream += data
        values: list[Any] = []
        while self._stream:
            view = memoryview(self._stream)
            types = dict(self.types)
            try:
                stream = _Reader(view)
                value = self._value(stream)
                used = stream.pos
            except _NeedMore:
                self.types = types  # definitions of an incomplete value: read them again
                self._depth = 0
                break
            except GobError:
                self._depth = 0
                raise
            finally:
                view.release()
            del self._stream[:used]
            values.append(value)
        return values

    def _message(self, stream: _Reader) -> _Reader:
        size = stream.uint()
        if size >= self.max_message:
            raise GobError(f"a message of {size} bytes (at most {self.max_message - 1})")
        if size == 0:
            raise GobError("an empty message")
        return _Reader(stream.take(size))

    def _type_sequence(self, stream: _Reader, buf: _Reader | None,
                       interface: bool) -> tuple[int, _Reader]:
        """Definitions up to a value's type id (Go's decodeTypeSequence)."""
        while True:
            if buf is None or buf.left() == 0:
                buf = self._message(stream)
            type_id = buf.int()
            if type_id >= 0:
                return type_id, buf
            self._define(-type_id, buf)
            if buf.left() > 0:
                if not interface:
                    raise GobError("extra data after a type definition")
                buf.uint()  # the count of what follows in this message

    def _value(self, stream: _Reader) -> Any:
        type_id, buf = self._type_sequence(stream, None, False)
        value = self._top(type_id, buf, stream)
        if buf.left():
            raise GobError(f"{buf.left()} bytes left after a value")
        return value

    def _top(self, type_id: int, buf: _Reader, stream: _Reader) -> Any:
        typ = self._type(type_id)
        if isinstance(typ, Struct):
            return self._struct(typ, buf, stream)
        if buf.uint() != 0:
            raise GobError("a top-level value that is not a struct must start with 0")
        return self._decode(typ, buf, stream)

    def _type(self, type_id: int) -> GobType:
        typ = self.types.get(type_id)
        if typ is None:
            raise GobError(f"type id {type_id} used before its definition")
        return typ

    def _decode(self, typ: GobType, buf: _Reader, stream: _Reader) -> Any:
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise GobError(f"values nested more than {self.max_depth} deep")
            return self._decode_one(typ, buf, stream)
        finally:
            self._depth -= 1

    def _decode_one(self, typ: GobType, buf: _Reader, stream: _Reader) -> Any:
        if isinstance(typ, _Later):
            typ = typ.resolve()
        if isinstance(typ, Basic):
            if typ is BOOL:
                value = buf.uint()
                if value > 1:
                    raise GobError(f"bool {value}")
                return value == 1
            if typ is INT:
                return buf.int()
            if typ is UINT:
                return buf.uint()
            if typ is FLOAT:
                return _bits_float(buf.uint())
            if typ is COMPLEX:
                return complex(_bits_float(buf.uint()), _bits_float(buf.uint()))
            if typ is BYTES:
                return buf.take(buf.uint())
            if typ is STRING:
                return buf.take(buf.uint()).decode("utf-8", errors="replace")
            return self._interface(buf, stream)
        if isinstance(typ, Struct):
            return self._struct(typ, buf, stream)
        if isinstance(typ, Slice | Array):
            count = buf.uint()
            if isinstance(typ, Array) and count != typ.length:
                raise GobError(f"{typ.name}: {count} elements for an array of {typ.length}")
            if count > buf.left():  # each element takes a byte at least
                raise GobError(f"{typ.name}: {count} elements in {buf.left()} bytes")
            return [self._decode(typ.elem, buf, stream) for _ in range(count)]
        if isinstance(typ, Map):
            count = buf.uint()
            if count > buf.left():
                raise GobError(f"{typ.name}: {count} entries in {buf.left()} bytes")
            out = {}
            for _ in range(count):
                key = self._decode(typ.key, buf, stream)
                out[_hashable(key)] = self._decode(typ.elem, buf, stream)
            return out
        return Opaque(typ.name, buf.take(buf.uint()))

    def _struct(self, typ: Struct, buf: _Reader, stream: _Reader) -> dict[str, Any]:
        out: dict[str, Any] = {}
        number = -1
        while True:
            delta = buf.uint()
            if delta == 0:
                return out
            number += delta
            if number >= len(typ.fields):
                raise GobError(f"{typ.name}: field {number} of {len(typ.fields)}")
            name, ftype = typ.fields[number]
            out[name] = self._decode(ftype, buf, stream)

    def _interface(self, buf: _Reader, stream: _Reader) -> Interface | None:
        size = buf.uint()
        if size == 0:
            return None
        if size > 1024:
            raise GobError(f"an interface type name of {size} bytes")
        name = buf.take(size).decode("utf-8", errors="replace")
        type_id, buf2 = self._type_sequence(stream, buf, True)
        if buf2 is not buf:  # the value went on in a later message: read from there
            buf.data, buf.pos = buf2.data, buf2.pos
        buf.uint()  # the value's byte count
        return Interface(name, self._top(type_id, buf, stream))

    # type definitions: a wireType value, decoded by its fixed layout
    def _define(self, type_id: int, buf: _Reader) -> None:
        if type_id < FIRST_USER_ID and type_id in self.types:
            raise GobError(f"a definition of predefined type id {type_id}")
        delta = buf.uint()
        if delta == 0 or delta > len(WIRE_FIELDS):
            raise GobError(f"a wireType with field {delta - 1}")
        kind = WIRE_FIELDS[delta - 1]
        spec = self._wire_struct(buf, kind)
        if buf.uint() != 0:
            raise GobError("a wireType with more than one field set")
        name = str(spec.get("Name", ""))
        if kind == "StructT":
            fields = tuple((str(f.get("Name", "")), self._ref(int(f.get("Id", 0)), type_id))
                           for f in spec.get("Field", []))
            self.types[type_id] = Struct(name, fields)
        elif kind == "SliceT":
            self.types[type_id] = Slice(name, self._ref(spec.get("Elem", 0), type_id))
        elif kind == "ArrayT":
            self.types[type_id] = Array(name, self._ref(spec.get("Elem", 0), type_id),
                                        int(spec.get("Len", 0)))
        elif kind == "MapT":
            self.types[type_id] = Map(name, self._ref(spec.get("Key", 0), type_id),
                                      self._ref(spec.get("Elem", 0), type_id))
        else:
            self.types[type_id] = Encoded(name, ENCODED_KINDS[kind])

    def _ref(self, type_id: int, defining: int) -> GobType:
        if type_id == defining or type_id not in self.types:
            # recursive or forward references: Go sends the outer type first; hold a
            # placeholder resolved when the value is decoded
            return _Later(self, type_id)  # type: ignore[return-value]
        return self.types[type_id]

    def _wire_struct(self, buf: _Reader, kind: str) -> dict[str, Any]:
        """One of the wire types (arrayType, sliceType, structType, mapType,
        gobEncoderType): CommonType first, then its own fields."""
        out: dict[str, Any] = {}
        own = {"ArrayT": ("Elem", "Len"), "SliceT": ("Elem",), "StructT": ("Field",),
               "MapT": ("Key", "Elem")}.get(kind, ())
        number = -1
        while (delta := buf.uint()) != 0:
            number += delta
            if number == 0:  # CommonType{Name string, Id typeId}
                n = -1
                while (d := buf.uint()) != 0:
                    n += d
                    if n == 0:
                        out["Name"] = buf.take(buf.uint()).decode("utf-8", errors="replace")
                    elif n == 1:
                        out["Id"] = buf.int()
                    else:
                        raise GobError(f"CommonType field {n}")
            elif number - 1 < len(own):
                name = own[number - 1]
                if name == "Field":
                    fields = []
                    count = buf.uint()
                    if count > buf.left():
                        raise GobError(f"{count} struct fields in {buf.left()} bytes")
                    for _ in range(count):
                        f: dict[str, Any] = {}
                        n = -1
                        while (d := buf.uint()) != 0:
                            n += d
                            if n == 0:
                                f["Name"] = buf.take(buf.uint()).decode("utf-8",
                                                                        errors="replace")
                            elif n == 1:
                                f["Id"] = buf.int()
                            else:
                                raise GobError(f"fieldType field {n}")
                        fields.append(f)
                    out["Field"] = fields
                else:
                    out[name] = buf.int()
            else:
                raise GobError(f"{kind} field {number}")
        return out


class _Later:
    """A type referred to before (or while) it is defined: looked up when used."""

    def __init__(self, decoder: Decoder, type_id: int) -> None:
        self.decoder, self.type_id = decoder, type_id

    def resolve(self) -> GobType:
        return self.decoder._type(self.type_id)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


# --- encoding ------------------------------------------------------------------------------
class Encoder:
    """Top-level values of declared types as a gob stream; types are defined before their
    first value, once per encoder (one encoder per connection, as in Go).  Messages are cut
    where Go's encoder cuts them, so a Go decoder reads them the same way."""

    def __init__(self) -> None:
        self.ids: dict[GobType, int] = {}
        self._next = FIRST_USER_ID
        self._sent: set[GobType] = set()
        self._writers: list[bytearray] = []

    def encode(self, typ: GobType, value: Any) -> bytes:
        """The bytes of one top-level value (with the definitions it needs first)."""
        out = bytearray()
        self._writers = [out]
        buf = bytearray()
        self._send_type(typ, buf)
        put_int(buf, self._id(typ))
        self._top(typ, value, buf)
        self._message(buf)
        return bytes(out)

    def _message(self, buf: bytearray) -> None:
        """``buf`` as one message of the writer in use (Go's writeMessage); ``buf`` empties."""
        writer = self._writers[-1]
        put_uint(writer, len(buf))
        writer += buf
        del buf[:]

    def _id(self, typ: GobType) -> int:
        if isinstance(typ, Basic):
            return typ.id
        if typ not in self.ids:
            self.ids[typ] = self._next
            self._next += 1
        return self.ids[typ]

    def _send_type(self, typ: GobType, buf: bytearray) -> None:
        """The definition of ``typ``, then of the types inside it, if not sent yet: each
        appended to ``buf`` and ending the message ``buf`` holds."""
        if isinstance(typ, Basic) or typ in self._sent:
            return
        self._sent.add(typ)
        put_int(buf, -self._id(typ))
        self._wire(typ, buf)
        self._message(buf)
        inner: Sequence[GobType] = ()
        if isinstance(typ, Struct):
            inner = [t for _, t in typ.fields]
        elif isinstance(typ, Slice | Array):
            inner = [typ.elem]
        elif isinstance(typ, Map):
            inner = [typ.key, typ.elem]
        for t in inner:
            self._send_type(t, buf)

    def _wire(self, typ: GobType, out: bytearray) -> None:
        """``typ`` as a wireType value."""
        if isinstance(typ, Struct):
            kind = "StructT"
        elif isinstance(typ, Slice):
            kind = "SliceT"
        elif isinstance(typ, Array):
            kind = "ArrayT"
        elif isinstance(typ, Map):
            kind = "MapT"
        else:
            assert isinstance(typ, Encoded)
            kind = typ.kind + "T"
        put_uint(out, WIRE_FIELDS.index(kind) + 1)
        put_uint(out, 1)  # CommonType{Name, Id}
        if typ.name:
            put_uint(out, 1)
            _put_string(out, typ.name)
            put_uint(out, 1)
        else:
            put_uint(out, 2)
        put_int(out, self._id(typ))
        put_uint(out, 0)
        if isinstance(typ, Struct):
            put_uint(out, 1)
            put_uint(out, len(typ.fields))
            for name, ftype in typ.fields:
                put_uint(out, 1)
                _put_string(out, name)
                put_uint(out, 1)
                put_int(out, self._id(ftype))
                put_uint(out, 0)
        elif isinstance(typ, Slice | Array):
            put_uint(out, 1)
            put_int(out, self._id(typ.elem))
            if isinstance(typ, Array):
                put_uint(out, 1)
                put_int(out, typ.length)
        elif isinstance(typ, Map):
            put_uint(out, 1)
            put_int(out, self._id(typ.key))
            put_uint(out, 1)
            put_int(out, self._id(typ.elem))
        put_uint(out, 0)  # end of the wire type's own struct
        put_uint(out, 0)  # end of wireType

    def _top(self, typ: GobType, value: Any, out: bytearray) -> None:
        if isinstance(typ, Struct):
            self._struct(typ, value, out)
        else:
            put_uint(out, 0)  # a singleton: no struct frames it
            self._value(typ, value, out)

    def _struct(self, typ: Struct, value: Mapping[str, Any], out: bytearray) -> None:
        unknown = set(value) - {name for name, _ in typ.fields}
        if unknown:
            raise GobError(f"{typ.name} has no field {sorted(unknown)[0]}")
        last = -1
        for number, (name, ftype) in enumerate(typ.fields):
            item = value.get(name)
            if _zero(ftype, item):
                continue
            put_uint(out, number - last)
            last = number
            self._value(ftype, item, out)
        put_uint(out, 0)

    def _value(self, typ: GobType, value: Any, out: bytearray) -> None:
        if isinstance(typ, Basic):
            writer = _BASIC_WRITERS.get(typ.id)
            if writer is not None:
                writer(out, value)
            else:
                self._interface(value, out)
        elif isinstance(typ, Struct):
            self._struct(typ, value, out)
        elif isinstance(typ, Slice | Array):
            items = list(value)
            if isinstance(typ, Array) and len(items) != typ.length:
                raise GobError(f"{typ.name}: {len(items)} elements for {typ.length}")
            put_uint(out, len(items))
            for item in items:
                self._value(typ.elem, item, out)
        elif isinstance(typ, Map):
            put_uint(out, len(value))
            for key, item in value.items():
                self._value(typ.key, key, out)
                self._value(typ.elem, item, out)
        else:
            data = value.data if isinstance(value, Opaque) else bytes(value)
            put_uint(out, len(data))
            out += data

    def _interface(self, value: Interface | None, out: bytearray) -> None:
        """Go's encodeInterface: the name, the definitions (ending the message so far),
        the type id, then the value as a counted top-level value."""
        if value is None:
            put_uint(out, 0)
            return
        if value.type is None:
            raise GobError(f"interface value {value.name}: its type is needed to encode it")
        _put_string(out, value.name)
        self._send_type(value.type, out)
        put_int(out, self._id(value.type))
        self._writers.append(out)  # definitions inside the value go before it, in ``out``
        data = bytearray()
        try:
            self._top(value.type, value.value, data)
        finally:
            self._writers.pop()
        put_uint(out, len(data))
        out += data


def _put_string(out: bytearray, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else bytes(text)
    put_uint(out, len(data))
    out += data


def _put_bool(out: bytearray, value: bool) -> None:
    put_uint(out, 1 if value else 0)


def _put_float(out: bytearray, value: float) -> None:
    put_uint(out, _float_bits(value))


def _put_complex(out: bytearray, value: complex) -> None:
    put_uint(out, _float_bits(value.real))
    put_uint(out, _float_bits(value.imag))


_BASIC_WRITERS: dict[int, Callable[[bytearray, Any], None]] = {
    BOOL.id: _put_bool, INT.id: put_int, UINT.id: put_uint, FLOAT.id: _put_float,
    BYTES.id: _put_string, STRING.id: _put_string, COMPLEX.id: _put_complex,
}


def _zero(typ: GobType, value: Any) -> bool:
    """Whether a struct field holds its zero value (not sent).  Struct and array fields
    are always sent, as Go sends them."""
    if isinstance(typ, Struct | Array):
        return False
    if value is None:
        return True
    if isinstance(typ, Basic):
        if typ is INTERFACE:
            return False
        return not value
    if isinstance(typ, Slice | Map):
        return len(value) == 0
    return False  # an own encoding: None (the zero value) is the caller's way to say zero
