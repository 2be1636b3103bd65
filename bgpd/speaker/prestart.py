"""ExaBGP started before the daemon knows how to configure it.

A start is on the critical path of every peer: the daemon imports its own code, reads the
datastore and computes its configuration (~0.4 s), then ExaBGP imports its own (~0.15 s)
before it reads the configuration and accepts the peers waiting in the early-bound sockets'
backlog.  ``bgpd run`` therefore starts the launcher first, right after binding BGP's port
(:mod:`bgpd.speaker.listen`), with every socket it bound; the launcher imports ExaBGP and the
patches' modules, which read nothing of the environment, and waits for one JSON line on its
stdin: the arguments and the whole environment of the start the supervisor would make.  It
takes both as its own, closes the inherited sockets that environment does not list, and runs
as a launcher started then would.  The two import phases overlap; nothing else changes.

The supervisor uses the pre-started process for its first start only, when it would run the
default launcher outside a network namespace; otherwise (or if the process has died) it is
killed and a new one started as usual.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence

from bgpd.speaker import listen
from bgpd.speaker.bridge import die_with_parent

LAUNCHER = (sys.executable, "-m", "bgpd.speaker.engine")
WAIT = "--wait-for-start"


async def prestart(sockets: Sequence[socket.socket]) -> asyncio.subprocess.Process | None:
    """The launcher, waiting for its start with ``sockets`` inherited (None: it could not be
    started, and the supervisor will start one itself)."""
    env = {**os.environ, listen.ENV: listen.describe(sockets)}
    try:
        return await asyncio.create_subprocess_exec(
            *LAUNCHER, WAIT, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent, start_new_session=True,
            pass_fds=[sock.fileno() for sock in sockets])
    except OSError:
        return None


def start_line(args: Sequence[str], env: Mapping[str, str]) -> bytes:
    """What the supervisor writes to a pre-started launcher: ExaBGP's arguments (after the
    program) and its environment."""
    return json.dumps({"args": list(args), "env": dict(env)}).encode() + b"\n"


def take_start(line: bytes) -> None:
    """In the launcher: make ``line`` (see :func:`start_line`) this process's arguments and
    environment; stdin becomes ``/dev/null`` as for a launcher started with them."""
    try:
        start = json.loads(line)
        args = [str(a) for a in start["args"]]
        env = {str(k): str(v) for k, v in start["env"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        print(f"bgpd's ExaBGP launcher: no start on stdin, got {line[:200]!r}", file=sys.stderr)
        sys.exit(2)
    kept = {fd for fd, _, _ in listen.inherited(env.get(listen.ENV, ""))}
    for fd, _, _ in listen.inherited(os.environ.get(listen.ENV, "")):
        if fd not in kept:  # a socket this start does not serve must not hold connections
            os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [sys.argv[0], *args]
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
