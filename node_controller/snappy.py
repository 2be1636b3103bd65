"""Snappy's framing format, decompressed as it arrives (pure): the stream Typha compresses
its messages with after a ``MsgDecoderRestart`` choosing ``snappy``.

A stream is chunks of a type byte, a 3-byte little-endian length and the data: ``0xff`` the
stream identifier (``sNaPpY``), ``0x00`` a compressed block and ``0x01`` uncompressed data
(each after the masked CRC-32C of the uncompressed bytes, checked), ``0x80`` to ``0xfe``
skipped, ``0x02`` to ``0x7f`` refused.  A block is its uncompressed length (varint) and
elements: a literal (its length in the tag or in 1 to 4 bytes after it) or a copy of earlier
output (offset in 1, 2 or 4 bytes; the copy may overlap what it produces).
"""

from __future__ import annotations

STREAM_ID = b"sNaPpY"
MAX_BLOCK = 1 << 16  # uncompressed bytes in one chunk (the framing format's limit)


class SnappyError(ValueError):
    """Not a snappy stream, or a chunk that fails its checksum."""


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def decompress_block(block: bytes) -> bytes:
    """One snappy block (raw format)."""
    length, shift, pos = 0, 0, 0
    while True:
        if pos >= len(block) or shift > 28:
            raise SnappyError("a block without its length")
        byte = block[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if length > MAX_BLOCK:
        raise SnappyError(f"a block of {length} bytes (at most {MAX_BLOCK})")
    out = bytearray()
    while pos < len(block):
        tag = block[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            n = tag >> 2
            if n >= 60:
                extra = n - 59
                n = int.from_bytes(block[pos:pos + extra], "little")
                pos += extra
            n += 1
            if pos + n > len(block):
                raise SnappyError("a literal past the end of its block")
            out += block[pos:pos + n]
            pos += n
            continue
        if kind == 1:
            n = ((tag >> 2) & 7) + 4
            if pos + 1 > len(block):
                raise SnappyError("a copy past the end of its block")
            offset = ((tag >> 5) << 8) | block[pos]
            pos += 1
        else:
            size = 2 if kind == 2 else 4
            if pos + size > len(block):
                raise SnappyError("a copy past the end of its block")
            n = (tag >> 2) + 1
            offset = int.from_bytes(block[pos:pos + size], "little")
            pos += size
        if offset == 0 or offset > len(out):
            raise SnappyError(f"a copy from {offset} bytes back, in {len(out)} bytes")
        if len(out) + n > length:
            raise SnappyError("a block longer than it says")
        start = len(out) - offset
        if offset >= n:
            out += out[start:start + n]
        else:  # overlapping: the copy repeats what it has just written
            for i in range(n):
                out.append(out[start + i])
    if len(out) != length:
        raise SnappyError(f"a block of {len(out)} bytes that says {length}")
    return bytes(out)


class StreamDecoder:
    """Snappy-framed bytes in, in pieces of any size; the data out as it completes."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._started = False

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while len(self._buf) >= 4:
            kind = self._buf[0]
            size = int.from_bytes(self._buf[1:4], "little")
            if len(self._buf) < 4 + size:
                break
            body = bytes(self._buf[4:4 + size])
            del self._buf[:4 + size]
            if kind == 0xFF:
                if body != STREAM_ID:
                    raise SnappyError(f"a stream identifier {body!r}")
                self._started = True
                continue
            if not self._started:
                raise SnappyError("data before the stream identifier")
            if kind in (0x00, 0x01):
                if size < 4:
                    raise SnappyError("a chunk too short for its checksum")
                expected = int.from_bytes(body[:4], "little")
                chunk = decompress_block(body[4:]) if kind == 0x00 else body[4:]
                if len(chunk) > MAX_BLOCK:
                    raise SnappyError(f"a chunk of {len(chunk)} bytes")
                if masked_crc(chunk) != expected:
                    raise SnappyError("a chunk that fails its checksum")
                out += chunk
            elif kind < 0x80:
                raise SnappyError(f"a reserved chunk type {kind:#x}")
            # 0x80-0xfe: skippable
        return bytes(out)
