"""Starting one ExaBGP: its files, arguments and environment, the daemon's listening sockets
handed down, the pre-started launcher's hand-off, and the launcher's report read back.

The supervisor (:mod:`bgpd.speaker.supervisor`) decides when; this module knows how.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bgpd.speaker import bridge, listen, prestart
from bgpd.speaker.config import SpeakerConfig, environment


@dataclass(frozen=True)
class Files:
    """Where one speaker keeps ExaBGP's files (its own folder, mode 0700)."""

    workdir: Path

    @property
    def socket(self) -> Path:
        return self.workdir / "api.sock"

    @property
    def report(self) -> Path:
        return self.workdir / "engine-report.json"

    @property
    def config(self) -> Path:
        return self.workdir / "exabgp.conf"

    @property
    def env(self) -> Path:
        return self.workdir / "exabgp.env"


def write_config(path: Path, text: str) -> None:
    """Written beside it, then renamed over it: ExaBGP reads the file after it answers a
    reload, and a file rewritten while it reads it was seen refused as a duplicate peer
    definition — and every later reload with it.  Mode 0600 from the start: it may hold MD5
    passwords."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def exabgp_release() -> str:
    try:  # the release ExaBGP says it is; reading its package metadata costs more
        from exabgp.version import release
    except ImportError:
        return "unknown"
    return str(release)


def read_report(path: Path) -> dict[str, str] | None:
    """The launcher's units left out, with why (:mod:`bgpd.speaker.engine` writes the report
    before ExaBGP starts); None when there is none (an ExaBGP started some other way)."""
    try:
        report = json.loads(path.read_text())
        return {str(k): str(v) for k, v in report["left_out"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


async def start(config: SpeakerConfig, files: Files, *, exabgp: Sequence[str],
                netns: str | None, listen_sockets: Sequence[socket.socket],
                prestarted: asyncio.subprocess.Process | None
                ) -> tuple[asyncio.subprocess.Process, list[socket.socket]]:
    """ExaBGP started on ``files.config`` (already written): the process, and the listening
    sockets it was handed (the others are closed: connections must not wait in a backlog
    nobody serves)."""
    env = {**os.environ, **environment(config)}
    binds = [str(a) for a in config.bind_addresses]
    inherit = listen.usable(listen_sockets, config.listen_port, binds)
    if env.get("BGPD_EXABGP_PLAIN") == "1":
        inherit = []  # ExaBGP as shipped binds its own
    for sock in set(listen_sockets) - set(inherit):
        sock.close()
    env[listen.ENV] = listen.describe(inherit)
    files.report.unlink(missing_ok=True)
    env["BGPD_ENGINE_REPORT"] = str(files.report)
    # ExaBGP's settings are all in ``env``; an empty settings file of its own stops it
    # advising, at every start, to generate one
    if not files.env.exists():
        files.env.write_text("# bgpd sets ExaBGP's settings in its environment\n")
    args = ["--env-file", str(files.env), "server", str(files.config)]
    if prestarted is not None:
        if await _hand_over(prestarted, args, env, exabgp=exabgp, netns=netns):
            return prestarted, inherit
        await kill(prestarted)
    argv = [*exabgp, *args]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=bridge.die_with_parent, start_new_session=True,
        pass_fds=[sock.fileno() for sock in inherit],
    )
    return process, inherit


async def _hand_over(process: asyncio.subprocess.Process, args: list[str],
                     env: dict[str, str], *, exabgp: Sequence[str], netns: str | None) -> bool:
    """Hand the pre-started launcher its start (False: it cannot take this one)."""
    if (process.returncode is not None or process.stdin is None or netns is not None
            or tuple(exabgp) != prestart.LAUNCHER):
        return False
    try:
        process.stdin.write(prestart.start_line(args, env))
        await process.stdin.drain()
        process.stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


async def kill(process: asyncio.subprocess.Process) -> None:
    """The process group killed (the bridge with ExaBGP), and waited for."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
