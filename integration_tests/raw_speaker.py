"""A BGP speaker of the tests' own that sends exactly the bytes it is given.

It listens on port 179 in a namespace, takes one session (OPEN with the 4-byte AS and
IPv4 unicast capabilities, KEEPALIVEs every few seconds), and sends the UPDATEs a test
builds — malformed ones included — byte for byte.  What it receives is read and dropped.
Built with :mod:`struct` after RFC 4271; no other BGP implementation is involved.
"""

from __future__ import annotations

import ipaddress
import struct
import subprocess
import sys
from pathlib import Path

MARKER = b"\xff" * 16


def message(kind: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def open_message(asn: int, router_id: str, hold: int = 90) -> bytes:
    caps = (bytes([1, 4, 0, 1, 0, 1])  # multiprotocol: IPv4 unicast
            + bytes([65, 4]) + struct.pack("!I", asn))  # 4-byte AS
    params = bytes([2, len(caps)]) + caps
    body = struct.pack("!BHH", 4, min(asn, 23456), hold) \
        + ipaddress.IPv4Address(router_id).packed + bytes([len(params)]) + params
    return message(1, body)


def attr(flags: int, code: int, body: bytes) -> bytes:
    return bytes([flags, code, len(body)]) + body


def prefix4(text: str) -> bytes:
    net = ipaddress.ip_network(text)
    return bytes([net.prefixlen]) + net.network_address.packed[:(net.prefixlen + 7) // 8]


def as_path(*segments: list[int]) -> bytes:
    return attr(0x40, 2, b"".join(bytes([2, len(s)]) + b"".join(struct.pack("!I", a) for a in s)
                                  for s in segments))


def origin(value: int = 0) -> bytes:
    return attr(0x40, 1, bytes([value]))


def next_hop(address: str) -> bytes:
    return attr(0x40, 3, ipaddress.IPv4Address(address).packed)


def update(*, withdrawn: tuple[str, ...] = (), attrs: bytes = b"",
           nlri: tuple[str, ...] = ()) -> bytes:
    w = b"".join(prefix4(p) for p in withdrawn)
    n = b"".join(prefix4(p) for p in nlri)
    return message(2, struct.pack("!H", len(w)) + w + struct.pack("!H", len(attrs)) + attrs + n)


def parse_update(data: bytes) -> tuple[dict[int, tuple[int, bytes]], list[str]]:
    body = data[19:]
    withdrawn = int.from_bytes(body[:2], "big")
    size = int.from_bytes(body[2 + withdrawn:4 + withdrawn], "big")
    attrs, nlri = body[4 + withdrawn:4 + withdrawn + size], body[4 + withdrawn + size:]
    found, at = {}, 0
    while at < len(attrs):
        flags, code = attrs[at], attrs[at + 1]
        wide = flags & 0x10
        length = int.from_bytes(attrs[at + 2:at + 4 if wide else at + 3], "big")
        start = at + (4 if wide else 3)
        found[code] = (flags, attrs[start:start + length])
        at = start + length
    prefixes, at = [], 0
    while at < len(nlri):
        bits = nlri[at]
        octets = (bits + 7) // 8
        address = bytes(nlri[at + 1:at + 1 + octets]) + bytes(4 - octets)
        prefixes.append(f"{'.'.join(map(str, address))}/{bits}")
        at += 1 + octets
    return found, prefixes


SERVER = r'''
import socket, sys, threading, time
sock = socket.socket(); sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((sys.argv[1], 179)); sock.listen(1)
conn, _ = sock.accept()
conn.sendall(bytes.fromhex(sys.argv[2]))  # OPEN
conn.sendall(bytes.fromhex("ff" * 16 + "001304"))  # KEEPALIVE
def drain():  # NOTIFICATIONs received go to the file named third, "code subcode" each
    buf = b""
    while chunk := conn.recv(65536):
        buf += chunk
        while len(buf) >= 19 and len(buf) >= int.from_bytes(buf[16:18], "big") >= 19:
            size = int.from_bytes(buf[16:18], "big")
            if buf[18] == 3:
                with open(sys.argv[3], "a") as out:
                    out.write(f"{buf[19]} {buf[20]}\n")
            elif buf[18] == 2:  # UPDATEs received go to the file named fourth, hex each
                with open(sys.argv[4], "a") as out:
                    out.write(buf[:size].hex() + "\n")
            buf = buf[size:]
threading.Thread(target=drain, daemon=True).start()
def keepalive():
    while True:
        time.sleep(3)
        conn.sendall(bytes.fromhex("ff" * 16 + "001304"))
threading.Thread(target=keepalive, daemon=True).start()
for line in sys.stdin:  # one message per line, in hex
    conn.sendall(bytes.fromhex(line.strip()))
    print("sent", flush=True)
'''


class RawSpeaker:
    """The speaker in namespace ``ns`` at ``address``: :meth:`send` writes one message,
    :meth:`notifications` are the (code, subcode) of the NOTIFICATIONs received."""

    def __init__(self, ns_name: str, address: str, *, asn: int, workdir: Path) -> None:
        self.received = workdir / "notifications"
        self.updates_file = workdir / "updates"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns_name, sys.executable, "-c", SERVER, address,
             open_message(asn, address).hex(), str(self.received), str(self.updates_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def notifications(self) -> list[tuple[int, int]]:
        if not self.received.exists():
            return []
        return [(int(c), int(s)) for c, s in
                (line.split() for line in self.received.read_text().splitlines())]

    def updates(self) -> list[tuple[dict[int, tuple[int, bytes]], list[str]]]:
        """The UPDATEs received: each one's path attributes (type code -> (flags, value))
        and the IPv4 prefixes it announces."""
        if not self.updates_file.exists():
            return []
        return [parse_update(bytes.fromhex(line))
                for line in self.updates_file.read_text().split()]

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(data.hex() + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "sent"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(5)

