"""The daemon's side of BFD: the engine process (:mod:`bgpd.bfd.engine`), started and watched.

Theory of operation: :meth:`BfdService.configure` sends the sessions wanted to the engine
(started on the first session); the engine's lines are read on the event loop — each state
change and each signal for BGP goes to ``on_event``, each copy of the sessions is kept for
:meth:`BfdService.snapshot` (status, metrics, the BIRD socket).  An engine that exits on its
own is started again with the sessions wanted (its sessions start from Down: to the peers,
the gap was a failure, as it was).  :meth:`BfdService.stop` asks the engine for AdminDown on
every session and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from bgpd.bfd.messages import (
    Event,
    Spec,
    Transition,
    View,
    plain,
    signal_of,
    transition_of,
    view_of,
)
from bgpd.bfd.session import Timers

log = structlog.get_logger("bgpd.bfd")

__all__ = ["BfdService", "Event", "Spec", "Timers", "Transition", "View"]
RESTART_AFTER = 1.0  # seconds before an engine that exited is started again


class BfdService:
    def __init__(self, *, on_event: Callable[[Event], None],
                 loop: asyncio.AbstractEventLoop | None = None, port: int | None = None) -> None:
        self.on_event = on_event
        self.loop = loop
        self.port = port
        self.dropped: Counter[str] = Counter()
        self.send_errors = 0
        self.restarts = 0
        self._wanted: list[Spec] = []
        self._views: list[View] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._stopping = False
        self._waiters: list[asyncio.Future[list[View]]] = []

    # --- the doors ------------------------------------------------------------------------------
    def configure(self, specs: Iterable[Spec]) -> None:
        self._wanted = list(specs)
        if self._process is None and self._wanted and not self._stopping:
            self._start()
        self._send({"configure": [plain(s) for s in self._wanted]})

    def snapshot(self) -> list[View]:
        """The sessions as the engine last sent them (states as they change, counters at most
        two seconds old)."""
        return list(self._views)

    async def fresh_snapshot(self) -> list[View]:
        """The sessions as they are now: asked of the engine, its answer awaited."""
        if self._process is None:
            return self.snapshot()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._send({"views": True})
        return list(await waiter)

    def stop(self) -> None:
        """AdminDown on every session, then the engine gone (waited for up to 2 s)."""
        self._stopping = True
        process = self._process
        if process is None:
            return
        self._send({"stop": True})
        try:
            process.wait(2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._detach()

    # --- the engine -----------------------------------------------------------------------------
    def _start(self) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        argv = [sys.executable, "-m", "bgpd.bfd.engine"]
        if self.port is not None:
            argv.append(str(self.port))
        self._process = process = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE)
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        self.loop.add_reader(process.stdout.fileno(), self._readable)

    def _send(self, message: dict[str, Any]) -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        with contextlib.suppress(OSError):  # it exited: _readable starts it again
            process.stdin.write(json.dumps(message).encode() + b"\n")
            process.stdin.flush()

    def _readable(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        try:
            data = os.read(process.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            return
        if not data:
            self._lost(process)
            return
        self._buffer += data
        lines = self._buffer.split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            self._message(json.loads(line))

    def _message(self, message: dict[str, Any]) -> None:
        if "views" in message:
            self._views = [view_of(v) for v in message["views"]]
            self.dropped = Counter(message["dropped"])
            self.send_errors = message["send_errors"]
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(self._views)
        elif "transition" in message:
            self.on_event(transition_of(message["transition"]))
        elif "signal" in message:
            self.on_event(signal_of(message["signal"]))
        elif "problem" in message:
            problem = message["problem"]
            log.error("bfd_listen_failed", family=problem["family"], port=problem["port"],
                      problem=f"BFD packets of this family cannot be received: "
                              f"{problem['error']}")

    def _lost(self, process: subprocess.Popen[bytes]) -> None:
        self._detach()
        if self._stopping:
            return
        code = process.wait()
        self.restarts += 1
        log.error("bfd_engine_exited", code=code, restart_in=RESTART_AFTER,
                  problem="the BFD engine process exited: its sessions start again from Down")
        assert self.loop is not None
        self.loop.call_later(RESTART_AFTER, self._restart)

    def _restart(self) -> None:
        if not self._stopping and self._process is None:
            self.configure(self._wanted)

    def _detach(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdout is not None
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(process.stdout.fileno())
        for pipe in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                pipe.close()  # type: ignore[union-attr]
        self._buffer = b""
        self._views = []
