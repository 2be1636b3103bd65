"""The launcher started before the daemon's configuration (bgpd.speaker.prestart), with real
processes, pipes and sockets."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import subprocess
import sys

from bgpd.speaker import listen, prestart

PROBE = """
import json, os, sys
from bgpd.speaker import prestart
inherited = [int(fd) for fd in sys.argv[1].split(",")]
prestart.take_start(sys.stdin.buffer.readline())
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print(json.dumps({"argv": sys.argv[1:], "open": [is_open(fd) for fd in inherited],
                  "marker": os.environ.get("BGPD_TEST_MARKER"),
                  "stdin_is_null": os.fstat(0).st_rdev == os.stat(os.devnull).st_rdev}))
sys.stdout.flush()
sys.stdin.read()  # /dev/null: returns at once
"""


def two_sockets() -> list[socket.socket]:
    sockets = []
    for _ in range(2):
        bound, problems = listen.bind(0, ["127.0.0.1"])
        assert problems == []
        sockets += bound
    return sockets


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError as exc:
        return exc.errno == errno.ECONNREFUSED
    return False


def test_a_start_replaces_arguments_environment_and_stdin_and_drops_unlisted_sockets() -> None:
    served, dropped = two_sockets()
    ports = [s.getsockname()[1] for s in (served, dropped)]
    env = {**os.environ, "BGPD_TEST_MARKER": "before",
           listen.ENV: listen.describe([served, dropped])}
    fds = f"{served.fileno()},{dropped.fileno()}"
    child = subprocess.Popen([sys.executable, "-c", PROBE, fds], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, pass_fds=[served.fileno(),
                                                               dropped.fileno()])
    try:
        start_env = {k: v for k, v in os.environ.items() if k != "BGPD_TEST_MARKER"}
        start_env[listen.ENV] = listen.describe([served])
        out, _ = child.communicate(prestart.start_line(["server", "x.conf"], start_env),
                                   timeout=30)
    finally:
        child.kill()
        served.close()
        dropped.close()
    seen = json.loads(out)
    assert seen["argv"] == ["server", "x.conf"]
    assert seen["open"] == [True, False]
    assert seen["marker"] is None  # the start's environment, not the one inherited
    assert seen["stdin_is_null"]
    assert refused(ports[1])  # nobody holds the dropped socket's backlog


def test_garbage_on_stdin_ends_the_launcher_with_a_message() -> None:
    child = subprocess.run([sys.executable, "-c", PROBE, "0"], input=b"not json\n",
                           capture_output=True, timeout=30)
    assert child.returncode == 2 and b"no start on stdin" in child.stderr


def test_the_real_launcher_imports_first_then_runs_exabgp_with_the_start() -> None:
    async def scenario() -> tuple[int, bytes]:
        served, dropped = two_sockets()
        process = await prestart.prestart([served, dropped])
        assert process is not None and process.stdin and process.stdout
        try:
            env = {**os.environ, "exabgp_tcp_port": "1791", listen.ENV: listen.describe([served])}
            process.stdin.write(prestart.start_line(["env", "--diff"], env))
            await process.stdin.drain()
            process.stdin.close()
            out = await asyncio.wait_for(process.stdout.read(), 30)
            return await asyncio.wait_for(process.wait(), 30), out
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            served.close()
            dropped.close()

    code, out = asyncio.run(scenario())
    # ExaBGP read its settings from the environment handed over after its imports
    assert code == 0 and b"port = 1791" in out, out
