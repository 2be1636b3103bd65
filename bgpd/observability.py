"""The daemon's faces: the control socket, a BIRD-compatible socket, metrics and health.

* **Control socket** (Unix, mode 0600): one JSON request line (``{"command": "status"}``,
  ``{"command": "routes", "prefix": ..., "peer": ...}``), one JSON answer line.
* **BIRD socket**: :mod:`bgpd.birdctl`.
* **Metrics** (Prometheus text: :mod:`bgpd.metrics`) and ``/livez`` / ``/readyz`` on one
  small HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from bgpd.kernel_sync import KernelSync
from bgpd.router import Router
from bgpd.runtime import LoopLag
from bgpd.speaker.core import SessionState
from bgpd.speaker.supervisor import Speaker
from bgpd.status import routes, status
from node_controller.controller import Controller

log = structlog.get_logger("bgpd.observability")


class Parts:
    """The live objects the faces read (filled in by the daemon as it starts them)."""

    def __init__(self, router: Router, speaker: Speaker, kernel: KernelSync,
                 controller: Controller) -> None:
        self.router, self.speaker, self.kernel, self.controller = (
            router, speaker, kernel, controller)
        self.ready = False  # start-up done (READY=1 sent)
        self.started = time.time()
        self.last_reconfigure = time.time()
        self.grace = 60.0  # after start, not-yet-Established peers do not count
        self.loop_lag = LoopLag()

    def degraded(self) -> list[str]:
        """Why this node runs on less than its resources say: a resource in error (its last
        valid version applies, or it is left out), none of its blocks announced, or a watch
        that has gone silent."""
        reasons = [str(e) for e in self.router.errors]
        if self.router.blocks_unannounced():
            reasons.append("none of this node's blocks is announced")
        now = time.monotonic()
        reasons += [f"watch {w.resource}: no event or bookmark for {w.stale_after:g} s or more"
                    " (the API server may be down or frozen: the last state applies)"
                    for w in self.controller.watchers if w.listed and not w.up(now)]
        return reasons

    def not_ready(self) -> list[str]:
        """Why the node is not ready (empty: ready): starting, degraded, or after the grace
        a configured peer not Established."""
        reasons = ([] if self.ready else ["starting"]) + self.degraded()
        if self.ready and time.time() - self.started >= self.grace:
            reasons += [f"peer {st.neighbor.name} not Established"
                        for st in self.speaker.peers.values()
                        if st.state is not SessionState.ESTABLISHED]
        return reasons

    def is_ready(self) -> bool:
        return not self.not_ready()


# --- control socket ----------------------------------------------------------------------
async def serve_control(parts: Parts, path: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = json.loads(line or b"{}")
            command = request.get("command")
            if command == "status":
                answer: Any = status(parts.router, parts.speaker, parts.kernel)
                answer["degraded"] = parts.degraded()
                answer["ready"] = parts.is_ready()
                answer["draining"] = parts.router.draining()
                answer["event_loop_lag"] = {"recent_s": round(parts.loop_lag.recent, 3),
                                            "worst_s": round(parts.loop_lag.worst, 3)}
            elif command in ("drain", "undrain"):
                parts.router.request_drain(command == "drain")
                reason = parts.router.draining()
                answer = {"draining": reason is not None, "reason": reason}
            elif command == "routes":
                answer = routes(parts.router, parts.kernel, prefix=request.get("prefix"),
                                peer=request.get("peer"))
            else:
                answer = {"error": f"unknown command {command!r} "
                                   "(status, routes, drain, undrain)"}
        except (json.JSONDecodeError, TimeoutError, ValueError) as exc:
            answer = {"error": f"bad request: {exc}"}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    await serve_unix(handle, path)


async def serve_unix(handler: Callable[..., Any], path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(handler, path=str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    try:
        async with server:
            await server.serve_forever()
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def request(path: Path, payload: dict[str, Any], timeout: float = 10) -> Any:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    writer.write(json.dumps(payload).encode() + b"\n")
    await writer.drain()
    body = await asyncio.wait_for(reader.read(), timeout)  # the answer, whatever its size
    writer.close()
    return json.loads(body)


# --- metrics and health ------------------------------------------------------------------
async def serve_http(parts: Parts, address: str, *, live: Callable[[], bool]) -> None:
    from bgpd.metrics import scrape  # prometheus-client: only a daemon that serves metrics

    metrics = scrape(parts)
    host, _, port = address.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        target = head.split(b" ", 2)[1].decode(errors="replace") if b" " in head else "/"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            code, body, ctype = 200, metrics(), "text/plain; version=0.0.4"
        elif path == "/livez":
            ok = live()
            code, body = (200, b"ok\n") if ok else (503, b"not live\n")
            ctype = "text/plain"
        elif path == "/readyz":
            why = parts.not_ready()
            code = 503 if why else 200
            notes = "".join(f"note: ExaBGP runs its own code for {unit} ({reason})\n"
                            for unit, reason in sorted(parts.speaker.engine_left_out.items()))
            body = (("not ready:\n" + "".join(f"- {w}\n" for w in why) if why
                     else "ready\n") + notes).encode()
            ctype = "text/plain"
        else:
            code, body, ctype = 404, b"not found\n", "text/plain"
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[code]
        writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host.strip("[]"), int(port))
    log.info("metrics_listening", address=address)
    async with server:
        await server.serve_forever()
