"""``bgpd takeover``: BIRD leaves this node without telling its peers, so that bgpd can take
its place and lose nothing.

Why: BIRD stopped by SIGTERM (what runit does to calico-node's BIRD) sends every peer a Cease
(6/2, administrative shutdown), and RFC 4724 has the peers drop its routes at once: the node's
block is gone from the cluster until bgpd is up.  Gone without a NOTIFICATION, BIRD is
restarting as far as its peers know: they keep its routes (graceful restart) until bgpd,
started next on the same address, sends them again.  BIRD's kernel routes stay too (confd's
kernel protocol has ``persist``), and bgpd adopts them.

How, for each BIRD control socket (``bird.ctl``, and ``bird6.ctl`` beside it): BIRD 2 is asked
for ``graceful restart`` (it exits without a Cease); BIRD 1.x has no such command and is
killed with SIGKILL (a kill sends nothing).  Then the socket's process must be gone, and stay
gone for ``settle`` seconds — a supervisor that starts BIRD again (calico-node's runit) would
have it running beside bgpd: that is refused with what to do (``sv once bird bird6`` in
calico-node first).  Refused before anything is done: a BIRD whose sessions did not negotiate
graceful restart (its peers would drop its routes whatever the exit), unless ``force``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path


class TakeoverError(RuntimeError):
    """The takeover cannot be done safely, or did not complete: the message says why."""


@dataclass(frozen=True)
class Bird:
    socket: Path
    pid: int
    version: str  # as its hello says: "2.0.12", "v0.3.3+birdv1.6.8"

    @property
    def major(self) -> int:
        found = re.search(r"(?:birdv)?(\d+)\.\d+", self.version.split("+")[-1])
        return int(found.group(1)) if found else 1


def ask(path: Path, command: str, timeout: float = 5.0) -> tuple[str, list[str]]:
    """BIRD's hello and its reply lines to ``command`` on the control socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        hello = reader.readline().decode(errors="replace").strip()
        sock.sendall(command.encode() + b"\n")
        lines = []
        while line := reader.readline():
            text = line.decode(errors="replace").rstrip("\n")
            lines.append(text)
            if re.match(r"^\d{4} ", text):  # a code and a space: the last line
                break
        return hello, lines


def owner(path: Path) -> int:
    """The process listening on the Unix socket ``path`` (from /proc/net/unix and the
    processes' file descriptors)."""
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7] == str(path):
            inodes.add(parts[6])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise TakeoverError(f"no process holds {path}")


def find(path: Path) -> Bird | None:
    """The BIRD answering on ``path``, or None when nothing answers there."""
    try:
        hello, _ = ask(path, "show status")
    except OSError:
        return None
    found = re.match(r"0001 BIRD (\S+) ready", hello)
    if found is None:
        raise TakeoverError(f"{path} answers, but not as BIRD: {hello!r}")
    if "bgpd" in found.group(1):
        raise TakeoverError(f"{path} is bgpd's own BIRD socket: bgpd already runs here")
    return Bird(path, owner(path), found.group(1))


def sessions_without_graceful_restart(bird: Bird) -> list[str]:
    """BIRD's established BGP sessions on which graceful restart was not negotiated both
    ways: BIRD 2 lists ``Local capabilities`` and ``Neighbor capabilities``, each with a
    ``Graceful restart`` entry when announced; BIRD 1 a ``Neighbor caps:`` line (``restart-able``
    or ``restart-aware``) and nothing of its own."""
    _, lines = ask(bird.socket, "show protocols all")
    out: list[str] = []
    name: str | None = None
    established, section = False, ""
    seen: set[str] = set()

    def close() -> None:
        local = "local" in seen or bird.major < 2
        if name is not None and established and not (local and "neighbor" in seen):
            out.append(name)

    for line in lines:
        row = re.match(r"^(?:1002-| )(\S+)\s+BGP\s", line)
        text = line[5:].strip() if re.match(r"^\d{4}-", line) else line.strip()
        if row:
            close()
            name, established, section, seen = row.group(1), False, "", set()
        elif text.startswith("BGP state:"):
            established = "Established" in text
        elif text in ("Local capabilities", "Neighbor capabilities"):
            section = text.split()[0].lower()
        elif text == "Graceful restart" and section:
            seen.add(section)
        elif text.startswith("Neighbor caps:") and "restart" in text:
            seen.add("neighbor")
        elif text.startswith("Session:"):
            section = ""
    close()
    return out


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie of ours is gone too
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def take_over(sockets: list[Path], *, force: bool = False, settle: float = 2.0,
              timeout: float = 10.0) -> list[str]:
    """Make every BIRD on ``sockets`` leave without a Cease; what was done, line by line."""
    birds = [b for b in (find(p) for p in sockets) if b is not None]
    if not birds:
        return [f"no BIRD answers on {', '.join(map(str, sockets))}: nothing to take over"]
    if not force:
        for bird in birds:
            plain = sessions_without_graceful_restart(bird)
            if plain:
                raise TakeoverError(
                    f"BIRD {bird.version} ({bird.socket}) has sessions without graceful "
                    f"restart: {', '.join(plain)}; their peers would drop this node's routes "
                    "whatever BIRD does (--force to go on)")
    done = []
    for bird in birds:
        if bird.major >= 2:
            ask(bird.socket, "graceful restart")
            how = "asked for graceful restart"
        else:
            os.kill(bird.pid, signal.SIGKILL)
            how = "killed (SIGKILL: BIRD 1 has no graceful restart command)"
        deadline = time.monotonic() + timeout
        while not _gone(bird.pid):
            if time.monotonic() > deadline:
                raise TakeoverError(f"BIRD {bird.pid} ({bird.socket}) {how} but still runs")
            time.sleep(0.02)
        done.append(f"BIRD {bird.version} (pid {bird.pid}, {bird.socket}): {how}; it left "
                    "without a NOTIFICATION, its peers keep its routes for their restart time")
    time.sleep(settle)
    back = [p for p in sockets if find(p) is not None]
    if back:
        raise TakeoverError(
            f"BIRD answers again on {', '.join(map(str, back))}: something started it again "
            "(calico-node's runit: run `sv once bird bird6` in calico-node before "
            "`bgpd takeover`), and it must not run beside bgpd")
    return [*done, "start bgpd now: it adopts BIRD's kernel routes and its peers' sessions"]
