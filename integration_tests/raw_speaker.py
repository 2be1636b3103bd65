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


def open_message(asn: int, router_id: str, hold: int = 90, *, refresh: bool = False) -> bytes:
    """``refresh``: offering route refresh (RFC 2918) and enhanced route refresh (RFC 7313)."""
    caps = (bytes([1, 4, 0, 1, 0, 1])  # multiprotocol: IPv4 unicast
            + bytes([65, 4]) + struct.pack("!I", asn)  # 4-byte AS
            + (bytes([2, 0, 70, 0]) if refresh else b""))
    params = bytes([2, len(caps)]) + caps
    body = struct.pack("!BHH", 4, min(asn, 23456), hold) \
        + ipaddress.IPv4Address(router_id).packed + bytes([len(params)]) + params
    return message(1, body)


def attr(flags: int, code: int, body: bytes, *, length: int | None = None) -> bytes:
    """A path attribute; ``length``: the length field to write when it must lie (the body is
    written as it is).  The Extended Length bit in ``flags`` makes the length two octets."""
    size = len(body) if length is None else length
    head = struct.pack("!H", size) if flags & 0x10 else bytes([size])
    return bytes([flags, code]) + head + body


def prefix4(text: str) -> bytes:
    net = ipaddress.ip_network(text)
    return bytes([net.prefixlen]) + net.network_address.packed[:(net.prefixlen + 7) // 8]


def as_path(*segments: list[int], kind: int = 2) -> bytes:
    """AS_PATH of 4-octet ASes; ``kind``: the segments' type (2 AS_SEQUENCE, 1 AS_SET, 3 and
    4 the confederation ones)."""
    return attr(0x40, 2, b"".join(bytes([kind, len(s)]) + b"".join(struct.pack("!I", a)
                                                                   for a in s)
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


def read_updates(path: Path) -> list[tuple[dict[int, tuple[int, bytes]], list[str]]]:
    """The UPDATEs a speaker received (one per line of ``path``, in hex): each one's path
    attributes (type code -> (flags, value)) and the IPv4 prefixes it announces."""
    if not path.exists():
        return []
    return [parse_update(bytes.fromhex(line)) for line in path.read_text().split()]


SERVER = r'''
import socket, sys, threading, time
sock = socket.socket(); sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((sys.argv[1], 179)); sock.listen(1)
conn, _ = sock.accept()
conn.sendall(bytes.fromhex(sys.argv[2]))  # OPEN
conn.sendall(bytes.fromhex("ff" * 16 + "001304"))  # KEEPALIVE
def recv():
    try:
        return conn.recv(65536)
    except OSError:  # reset by the peer after its NOTIFICATION
        return b""
def drain():  # NOTIFICATIONs received go to the file named third, "code subcode" each
    buf = b""
    while chunk := recv():
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
        return read_updates(self.updates_file)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(data.hex() + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "sent"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(5)



# The active side: connects to the subject's port 179 (again after each reset), so a test
# can run many sessions in a row without waiting on a connect-retry timer.  Commands on
# stdin, one answer line each: "connect" -> "up" | "failed"; "send HEX" -> "sent" |
# "closed"; "state" -> "up" | "closed C S" (the NOTIFICATION received, "- -" for none);
# "close" -> "closed".
CLIENT = r'''
import socket, sys, threading, time
source, target, open_hex, updates_path = sys.argv[1:5]
KEEPALIVE = bytes.fromhex("ff" * 16 + "001304")
lock = threading.Lock()
now = {"sock": None, "up": False, "closed": None, "generation": 0}

def read(sock, generation):
    buf, note = b"", "- -"
    try:
        while chunk := sock.recv(65536):
            buf += chunk
            while len(buf) >= 19 and len(buf) >= int.from_bytes(buf[16:18], "big") >= 19:
                size, kind = int.from_bytes(buf[16:18], "big"), buf[18]
                if kind == 3:
                    note = f"{buf[19]} {buf[20]}"
                elif kind == 4:
                    with lock:
                        if now["generation"] == generation:
                            now["up"] = True
                elif kind == 2:
                    with open(updates_path, "a") as out:
                        out.write(buf[:size].hex() + "\n")
                if kind in (2, 5):  # UPDATEs and ROUTE-REFRESHes, in order: "kind subtype"
                    with open(updates_path + ".order", "a") as out:
                        out.write(f"{kind} {buf[21] if kind == 5 else 0}\n")
                buf = buf[size:]
    except OSError:
        pass
    with lock:
        if now["generation"] == generation:
            now["closed"] = note

def keepalive():
    while True:
        time.sleep(3)
        with lock:
            sock = now["sock"] if now["closed"] is None else None
        if sock is not None:
            try:
                sock.sendall(KEEPALIVE)
            except OSError:
                pass

def close():
    with lock:
        sock, now["sock"] = now["sock"], None
        now["generation"] += 1
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

def connect(deadline):
    while time.monotonic() < deadline:
        close()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((source, 0))
        sock.settimeout(2)
        try:
            sock.connect((target, 179))
            sock.settimeout(None)
            sock.sendall(bytes.fromhex(open_hex) + KEEPALIVE)
        except OSError:
            sock.close()
            time.sleep(0.1)  # refused while the subject is still tearing the last one down
            continue
        with lock:
            now.update(sock=sock, up=False, closed=None)
            generation = now["generation"]
        threading.Thread(target=read, args=(sock, generation), daemon=True).start()
        # the subject's KEEPALIVE answers our OPEN: the session is Established for it once
        # it has read our KEEPALIVE, which TCP delivers before anything sent next
        while time.monotonic() < deadline:
            with lock:
                up, closed = now["up"], now["closed"]
            if up or closed is not None:
                break
            time.sleep(0.01)
        if up and closed is None:
            return "up"
    return "failed"

threading.Thread(target=keepalive, daemon=True).start()
for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    if command == "connect":
        answer = connect(time.monotonic() + float(argument or 30))
    elif command == "send":
        with lock:
            sock = now["sock"]
        try:
            sock.sendall(bytes.fromhex(argument))
            answer = "sent"
        except (OSError, AttributeError):
            answer = "closed"
    elif command == "state":
        with lock:
            answer = "up" if now["closed"] is None and now["sock"] else f"closed {now['closed']}"
    else:
        close()
        answer = "closed"
    print(answer, flush=True)
'''


class RawSession:
    """The tests' speaker as the active side, in namespace ``ns_name`` at ``address``,
    towards ``target``'s port 179: :meth:`connect` (re)establishes, :meth:`send` writes one
    message, :meth:`state` says whether the session stands or how it ended."""

    def __init__(self, ns_name: str, address: str, target: str, *, asn: int,
                 workdir: Path, refresh: bool = False) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.updates_file = workdir / "updates"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns_name, sys.executable, "-c", CLIENT, address, target,
             open_message(asn, address, refresh=refresh).hex(), str(self.updates_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def updates(self) -> list[tuple[dict[int, tuple[int, bytes]], list[str]]]:
        return read_updates(self.updates_file)

    def received(self) -> list[tuple[int, int]]:
        """The UPDATEs (2, 0) and ROUTE-REFRESHes (5, subtype) received, in order."""
        order = self.updates_file.with_name("updates.order")
        if not order.exists():
            return []
        return [(int(k), int(t)) for k, t in
                (line.split() for line in order.read_text().splitlines())]

    def _ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def connect(self, timeout: float = 30) -> None:
        answer = self._ask(f"connect {timeout}")
        if answer != "up":
            raise AssertionError(f"no session with the subject within {timeout} s ({answer})")

    def send(self, data: bytes) -> bool:
        """Whether the message was written (False: the session had already ended)."""
        return self._ask(f"send {data.hex()}") == "sent"

    def state(self) -> str | tuple[int, int] | None:
        """"up"; None if it ended without a NOTIFICATION, else the NOTIFICATION's
        (code, subcode)."""
        answer = self._ask("state")
        if answer == "up":
            return "up"
        code, subcode = answer.split()[1:]
        return None if code == "-" else (int(code), int(subcode))

    def disconnect(self) -> None:
        self._ask("close")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
