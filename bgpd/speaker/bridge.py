"""The ExaBGP API process: relays ExaBGP's pipes to the daemon's Unix socket and back.

ExaBGP starts this with its JSON events on our stdin and reads commands from our stdout.
We connect to the daemon's socket (path in argv[1]) and copy bytes both ways until either
side closes, never blocking on either (:func:`relay`).  It imports nothing heavy (it starts
in milliseconds, ~9 MB), and dies with ExaBGP: SIGKILL on the parent's death (prctl), and
exit on EOF of stdin or of the socket.
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


def command(socket_path: str) -> list[str]:
    """How ExaBGP starts the bridge for the daemon's socket at ``socket_path``.  Without the
    site module (``-S``): the bridge needs the standard library only, and site's work (the
    .pth files of the environment, an editable install's import finder) cost each start
    about 10 ms of CPU, a third of the bridge's."""
    return [sys.executable, "-S", os.path.abspath(__file__), socket_path]


HOLD = 1 << 20  # commands buffered for ExaBGP beyond which the socket is not read


def relay(path: str) -> int:
    """Copy ExaBGP's stdin to the socket and the socket to ExaBGP's stdout, never blocking on
    either: ExaBGP blocks when its events pipe is full, and a bridge blocked writing it a
    command while ExaBGP writes an event waits for ever (the daemon pipelines its commands,
    more than a pipe holds).  ExaBGP's events are always read; commands wait in a buffer
    while ExaBGP's stdin is full, and the socket is not read while that buffer holds
    ``HOLD`` bytes (the daemon then waits on its socket, not ExaBGP on us)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    for fd in (stdin, stdout, sock.fileno()):
        os.set_blocking(fd, False)
    to_exabgp, to_daemon = bytearray(), bytearray()
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ, "in")
    wanted: dict[int, int] = {}

    def want(fileobj: int | socket.socket, events: int, name: str) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if wanted.get(fd, 0) == events:
            return
        if not events:
            selector.unregister(fileobj)
        elif wanted.get(fd):
            selector.modify(fileobj, events, name)
        else:
            selector.register(fileobj, events, name)
        wanted[fd] = events

    while True:
        want(sock, (selectors.EVENT_READ if len(to_exabgp) < HOLD else 0)
             | (selectors.EVENT_WRITE if to_daemon else 0), "sock")
        want(stdout, selectors.EVENT_WRITE if to_exabgp else 0, "out")
        for key, events in selector.select():
            if key.data == "in":
                data = _read(stdin)
                if data is None:
                    continue
                if not data:
                    return 0
                to_daemon += data
            elif key.data == "out":
                del to_exabgp[:_write(stdout, to_exabgp)]
            else:
                if events & selectors.EVENT_WRITE and to_daemon:
                    del to_daemon[:_send(sock, to_daemon)]
                if events & selectors.EVENT_READ and len(to_exabgp) < HOLD:
                    try:
                        data = sock.recv(1 << 16)
                    except BlockingIOError:
                        continue
                    if not data:
                        return 0
                    to_exabgp += data
        if to_exabgp:  # most of the time the pipe has room: no wait for the next select
            del to_exabgp[:_write(stdout, to_exabgp)]
        if to_daemon:
            del to_daemon[:_send(sock, to_daemon)]


def _read(fd: int) -> bytes | None:
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None


def _write(fd: int, data: bytearray) -> int:
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


def _send(sock: socket.socket, data: bytearray) -> int:
    try:
        return sock.send(data)
    except BlockingIOError:
        return 0


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
