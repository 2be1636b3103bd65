"""The system calls alone: what any program pays to carry BFD's packets on this machine.

    python -m benchmarks.bfd_floor LOCAL PEER SESSIONS SECONDS

The cost benchmark (``python -m benchmarks.bfd --only cost``) runs two of these, one in each of
two namespaces joined by a veth, after it has measured bgpd's engine and BIRD: each sends
``SESSIONS`` sessions' packets at 100 ms less 0-25 % jitter from a socket of its own
(connected, TTL 255), and reads every packet that arrives on UDP 3784 with its TTL — the
engine's system calls at the engine's rates, turning every 5 ms as the engine's loop does,
and nothing else: no session, no state, no copies.  Its CPU (the scheduler's count, as for the
others) is the floor under any implementation that uses these calls on this machine; the
benchmark reports bgpd's and BIRD's CPU beside it.  Prints ``{"percent": ...,
"refused": ...}`` (packets sent before the other side listened).
"""

from __future__ import annotations

import json
import random
import selectors
import socket
import sys
import time
from pathlib import Path

PORT = 3784
INTERVAL = 0.1
TURN = 0.005  # the engine's QUANTUM
_IP_RECVTTL = 12


def run_seconds(pid: int | str = "self") -> float:
    """CPU seconds ``pid``'s threads have run so far, as the scheduler counts them to the
    nanosecond (``/proc/PID/task/*/schedstat``; ``stat``'s user and kernel ticks are samples
    taken at the timer tick, coarse for a process that runs briefly hundreds of times a
    second)."""
    return sum(int((task / "schedstat").read_text().split()[0])
               for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9


def run(local: str, peer: str, sessions: int, seconds: float) -> tuple[float, int]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
    receiver.bind(("0.0.0.0", PORT))
    receiver.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(receiver, selectors.EVENT_READ)
    senders = []
    for _ in range(sessions):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        sock.bind((local, 0))
        sock.connect((peer, PORT))
        sock.setblocking(False)
        senders.append(sock)
    packet = bytes(24)
    start = time.monotonic()
    due = [start + INTERVAL * random.random() for _ in senders]
    settled, end = start + 2.0, start + 2.0 + seconds  # (both sides running)
    ran = 0.0
    refused = 0
    while (now := time.monotonic()) < end:
        if not ran and now >= settled:
            ran = run_seconds()
        time.sleep(TURN)
        selector.select(0)
        while True:
            try:
                receiver.recvmsg(512, 64)
            except BlockingIOError:
                break
        now = time.monotonic()
        for i, sock in enumerate(senders):
            if due[i] <= now:
                try:
                    sock.send(packet)
                except ConnectionRefusedError:  # (the other side not listening yet)
                    refused += 1
                due[i] = now + INTERVAL * (0.75 + 0.25 * random.random())
    return 100 * (run_seconds() - ran) / seconds, refused


def main() -> None:
    local, peer, sessions, seconds = sys.argv[1:5]
    percent, refused = run(local, peer, int(sessions), float(seconds))
    print(json.dumps({"percent": round(percent, 2), "refused": refused}))


if __name__ == "__main__":
    main()
