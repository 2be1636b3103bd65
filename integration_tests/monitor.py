"""Watching a lab while something happens to it: route events (``ip -ts monitor route``, with
the time ``ip`` received each from the kernel) and a continuous ping between pods."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable


class RouteMonitor:
    """``oneline``: ``ip -o``, a multipath route's next hops on its own line too."""

    def __init__(self, ns_name: str, *, oneline: bool = False) -> None:
        self.proc = subprocess.Popen(["ip", "-ts", *(["-o"] if oneline else []), "-n", ns_name,
                                      "monitor", "route"],
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.events: list[tuple[float, str]] = []  # (Unix time, the route line)
        self._changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            stamp, _, text = line.partition("] ")
            try:
                when = dt.datetime.fromisoformat(stamp.lstrip("[")).timestamp()
            except ValueError:
                continue
            with self._changed:
                self.events.append((when, " ".join(text.split())))
                self._changed.notify_all()

    def wait_for(self, match: Callable[[str], bool], timeout: float,
                 since: int = 0) -> tuple[float, str] | None:
        """The first event from index ``since`` on whose line ``match`` accepts."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events[since:]:
                    if match(event[1]):
                        return event
                since = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def deleted_owned(self) -> list[str]:
        return [line for _, line in self.events
                if line.startswith("Deleted") and "proto bird" in line]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        self.thread.join(5)


class Pinger:
    """``ping -i interval`` from a namespace; on stop, how many were sent and received."""

    def __init__(self, ns_name: str, dst_ip: str, *, interval: float = 0.05,
                 source: str | None = None) -> None:
        # -q: the summary alone (a line per reply would fill the pipe, 64 KiB, and stop the
        # sending after about a thousand packets); -I: a flow of its own for ECMP hashing
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns_name, "ping", "-q", "-i",
                                      str(interval), "-W", "1",
                                      *(["-I", source] if source else []), dst_ip],
                                     stdout=subprocess.PIPE, text=True)

    def stop(self) -> tuple[int, int]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        for line in out.splitlines():
            if "packets transmitted" in line:
                sent = int(line.split()[0])
                received = int(line.split(",")[1].split()[0])
                return sent, received
        raise AssertionError(f"no ping summary in {out[-300:]}")


def stop_all(pings: Iterable[Pinger]) -> tuple[int, int]:
    """Every pinger stopped: packets sent and received, summed."""
    sent = received = 0
    for ping in pings:
        s, r = ping.stop()
        sent, received = sent + s, received + r
    return sent, received
