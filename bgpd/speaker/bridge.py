"""The ExaBGP API process: relays ExaBGP's pipes to the daemon's Unix socket and back.

ExaBGP starts this with its JSON events on our stdin and reads commands from our stdout.
We connect to the daemon's socket (path in argv[1]) and copy bytes both ways until either
side closes.  It imports nothing heavy (it starts in milliseconds, ~9 MB), never buffers
more than one read, and dies with ExaBGP: SIGKILL on the parent's death (prctl), and exit on
EOF of stdin or of the socket.
"""

from __future__ import annotations

import ctypes
import os
import selectors
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def relay(path: str) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ, "in")
    selector.register(sock, selectors.EVENT_READ, "sock")
    while True:
        for key, _ in selector.select():
            if key.data == "in":
                data = os.read(stdin, 1 << 16)
                if not data:
                    return 0
                sock.sendall(data)
            else:
                data = sock.recv(1 << 16)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(stdout, view):]


def main() -> int:
    die_with_parent()
    if len(sys.argv) != 2:
        print("usage: bridge SOCKET", file=sys.stderr)
        return 2
    try:
        return relay(sys.argv[1])
    except (BrokenPipeError, ConnectionError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
