"""A booted systemd in a container, for proving ``config/bgpd.service`` as shipped.

These machines run no systemd as PID 1, but a Debian tree booted by ``systemd-nspawn`` does
(see LAB.md).  :func:`ensure_tree` builds that tree once per machine (``debootstrap
--variant=minbase`` of bookworm with systemd, dbus and the libraries Python's extension
modules link to) and reuses it; :class:`Container` boots it with its network in a namespace
of the test's fabric and drives ``systemctl`` / ``journalctl`` inside through ``nsenter``.

The project runs inside as it is on the host, bind-mounted read-only under ``/opt`` (the
unit's ``ProtectHome=yes`` hides ``/root``, where this machine's interpreter lives, and
``PrivateTmp=yes`` a checkout under ``/tmp``): the checkout at ``/opt/bgpd-src``, the
virtualenv's packages at ``/opt/bgpd-site`` (both on the path of a small virtualenv in the
tree, by a ``.pth`` file) and the interpreter at ``/opt/bgpd-python``.
``/usr/local/bin/bgpd`` (the unit's ``ExecStart``) is a two-line launcher of that
interpreter; the unit file itself is installed unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from integration_tests.netns import HarnessError, Namespace, sh
from integration_tests.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
TREE = Path(os.environ.get("BGPD_SYSTEMD_TREE", "/var/cache/bgpd-test/systemd-bookworm"))
READY_MARK = ".bgpd-tree-complete-2"  # (a new name when PACKAGES change: rebuilt)
# procps: the unit's ExecReload runs /bin/kill (on every standard Debian system)
PACKAGES = ("systemd", "systemd-sysv", "dbus", "procps", "libffi8", "libssl3", "zlib1g",
            "libbz2-1.0", "liblzma5", "libuuid1", "libexpat1", "libsqlite3-0")
MIRROR = "http://deb.debian.org/debian"
PYTHON_AT = Path("/opt/bgpd-python")  # the interpreter, inside
VENV_AT = Path("/opt/bgpd-venv")  # a virtualenv made of the host's packages, inside
SOURCE_AT = Path("/opt/bgpd-src")  # the checkout, inside
SITE_AT = Path("/opt/bgpd-site")  # the host virtualenv's packages, inside


def unavailable() -> str | None:
    """Why a booted systemd cannot be had here, or None."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn, debootstrap)"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install systemd-container debootstrap)"
    return None


def ensure_tree(tree: Path = TREE) -> Path:
    """The container's root, built once per machine (about 1.5 min, ~250 MB) and reused."""
    if (tree / READY_MARK).exists():
        return tree
    partial = tree.with_name(tree.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                           "bookworm", str(partial), MIRROR],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode:
        raise HarnessError(f"debootstrap failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout)[-2000:]}")
    # the interpreter's shared library: its RUNPATH names the host's /root, hidden inside
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
    for lib in libdir.glob("libpython3*.so*"):
        shutil.copy2(lib, partial / "usr/lib/x86_64-linux-gnu" / lib.name)
    (partial / "etc/hostname").write_text("bgpd-node\n")
    (partial / READY_MARK).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    shutil.rmtree(tree, ignore_errors=True)
    partial.rename(tree)
    return tree


def install_project(tree: Path, *, settings: dict[str, Any], resources: str) -> None:
    """The unit as shipped, its launcher, the settings and the static resources."""
    unit = (REPO / "config/bgpd.service").read_text()
    (tree / "etc/systemd/system/bgpd.service").write_text(unit)
    venv = tree / VENV_AT.relative_to("/")
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    site = venv / "lib/python3.11/site-packages"
    site.mkdir(parents=True, exist_ok=True)
    (site / "bgpd-test.pth").write_text(f"{SOURCE_AT}\n{SITE_AT}\n")  # the source first
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (venv / "pyvenv.cfg").write_text(f"home = {PYTHON_AT}/bin\ninclude-system-site-packages = "
                                     f"false\nversion = {sys.version.split()[0]}\n")
    python = venv / "bin/python"
    if python.is_symlink() or python.exists():
        python.unlink()
    python.symlink_to(PYTHON_AT / f"bin/python{version}")
    launcher = tree / "usr/local/bin/bgpd"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(f"#!/bin/sh\nexec {VENV_AT}/bin/python -m bgpd \"$@\"\n")
    launcher.chmod(0o755)
    etc = tree / "etc/bgpd"
    shutil.rmtree(etc, ignore_errors=True)
    (etc / "resources").mkdir(parents=True)
    (etc / "bgpd.yaml").write_text(json.dumps(settings))
    (etc / "resources/cluster.yaml").write_text(resources)
    shutil.rmtree(tree / "var/lib/bgpd", ignore_errors=True)  # a first boot of the node


class Container:
    """``systemd-nspawn --boot`` of ``tree`` with its network in ``ns``."""

    def __init__(self, tree: Path, ns: Namespace, workdir: Path) -> None:
        self.tree, self.ns, self.workdir = tree, ns, workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None

    def boot(self, timeout: float = 120) -> None:
        site = Path(sysconfig.get_paths()["purelib"])
        base = Path(sys.base_prefix)
        argv = ["systemd-nspawn", "--quiet", "-D", str(self.tree), "--boot", "--register=no",
                # a node's root has it; nspawn drops it unless it makes the network itself
                "--keep-unit", "--capability=CAP_NET_ADMIN",
                f"--machine=bgpd-{os.getpid()}",
                f"--network-namespace-path=/run/netns/{self.ns.name}",
                f"--bind-ro={REPO}:{SOURCE_AT}", f"--bind-ro={base}:{PYTHON_AT}",
                f"--bind-ro={site}:{SITE_AT}"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "console.log", "wb")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._find_leader, 30, "the container's init")
        states: list[str] = []

        def booted() -> bool:
            states.append(self.systemctl("is-system-running", check=False).strip())
            return states[-1] in ("running", "degraded")

        wait_for(booted, timeout, "the container to reach multi-user.target", interval=0.5,
                 context=lambda: f"states seen: {sorted(set(states))}; console:\n"
                                 + self.console()[-3000:])
        if states[-1] == "degraded":  # say which units failed, for whoever reads the log
            (self.workdir / "failed-units.txt").write_text(
                self.systemctl("--failed", "--no-legend", check=False))

    def _find_leader(self) -> bool:
        """systemd inside: PID 1 of the container's PID namespace (kept as ``leader``).

        systemd-nspawn forks helpers of its own name (an outer child that exits once the
        container's init is cloned), so a name containing "systemd" is not enough: the leader
        is the process that is PID 1 in a namespace of its own and has become ``systemd``.
        """
        if self.proc is None or self.proc.poll() is not None:
            raise HarnessError(f"systemd-nspawn exited: {self.console()[-2000:]}")
        for entry in os.listdir("/proc"):
            if entry.isdigit() and _container_init(int(entry), self.proc.pid):
                self.leader = int(entry)
                return True
        return False

    def console(self) -> str:
        path = self.workdir / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> str:
        """A command inside the container (its mount, PID, network namespaces)."""
        assert self.leader is not None
        return sh("nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "--",
                  *argv, check=check, timeout=timeout)

    def systemctl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return self.run("systemctl", *args, check=check, timeout=timeout)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in properties))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> list[dict[str, Any]]:
        out = self.run("journalctl", "-u", unit, "-o", "json", "--no-pager", check=False)
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def shutdown(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None and self.leader is not None:
            # SIGRTMIN+4 asks systemd to power off
            subprocess.run(["kill", "-RTMIN+4", str(self.leader)], check=False,
                           capture_output=True)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self.proc = None


def _container_init(pid: int, nspawn: int) -> bool:
    """Whether ``pid`` is the container's systemd: below ``nspawn``, PID 1 inside, exec'd."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    name, rest = stat.split("(", 1)[1].rsplit(")", 1)
    nspid = next((line.split()[1:] for line in status.splitlines()
                  if line.startswith("NSpid:")), [])
    inside_own_namespace = len(nspid) > 1 and nspid[-1] == "1"
    return int(rest.split()[1]) == nspawn and name == "systemd" and inside_own_namespace
