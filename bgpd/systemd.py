"""systemd's notification protocol: datagrams to ``$NOTIFY_SOCKET`` (READY, STATUS, WATCHDOG).

Does nothing when the daemon does not run under systemd (no ``NOTIFY_SOCKET``).  An abstract
socket is named with a leading ``@``.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.address = address or None
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]
        watchdog = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        self.watchdog_interval: float | None = None
        if watchdog and (pid is None or pid == str(os.getpid())):
            self.watchdog_interval = int(watchdog) / 1_000_000

    def notify(self, **fields: str) -> bool:
        """Send ``READY=1``-style fields; False when there is no one to tell."""
        if not self.address:
            return False
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(message, self.address)
            except OSError:
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(ready="1", status=status)

    def status(self, status: str) -> bool:
        return self.notify(status=status)

    def watchdog(self) -> bool:
        return self.notify(watchdog="1")

    def stopping(self) -> bool:
        return self.notify(stopping="1")
