"""``config/bgpd.service`` as shipped, under a booted systemd (``systemd-nspawn --boot``).

One node of a lab cluster runs bgpd as the unit, inside a Debian tree booted in the node's
network namespace; a BIRD 2 top-of-rack router outside peers with it.  Proven in order:
``systemctl start`` returns after READY=1 with the STATUS line set; the session comes up
and routes flow both ways; ``systemctl reload`` applies a changed static folder with the
same process; a hung daemon (SIGSTOP) is killed by the watchdog and restarted, a SIGKILL
too (``Restart=always``) — no ``proto bird`` route deleted meanwhile and the router keeping
ours; ``systemctl stop`` leaves the routes in place; the journal carries the structured
events; ``systemd-analyze security`` rates the unit.  Every hardening line of the unit is
in force: the unit file is installed unchanged (only the interpreter's location differs
from a node's, see :mod:`integration_tests.systemd_container`).

Skipped where ``systemd-nspawn`` or ``debootstrap`` is missing (``.ci/run`` installs both);
the container's tree is built once per machine (about 45 s) and reused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bgpd.log import PRIORITIES
from integration_tests.cluster import TOR_IP, Cluster
from integration_tests.monitor import RouteMonitor
from integration_tests.netns import NetLab
from integration_tests.peers import available
from integration_tests.systemd_container import (
    Container,
    _container_init,
    ensure_tree,
    install_project,
    unavailable,
)
from integration_tests.waiting import wait_for

pytestmark = pytest.mark.slow

TOR_BLOCK = "172.17.100.0/24"
EXTRA_BLOCK = "172.17.50.0/24"


class Watch:
    """While it runs: every time the router lacked any of ``blocks`` from the node."""

    def __init__(self, c: Cluster, blocks: set[str]) -> None:
        self.c, self.blocks, self.missing = c, blocks, []  # type: ignore[var-annotated]
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.c.tor is not None
        node = self.c.nodes[0]
        while not self.stop_event.wait(0.2):
            have = set(self.c.tor.routes_from(node.ip))
            if not self.blocks <= have:
                self.missing.append(sorted(self.blocks - have))

    def stop(self) -> list[list[str]]:
        self.stop_event.set()
        self.thread.join(10)
        return self.missing


@pytest.fixture
def booted(lab: NetLab, tmp_path: Path) -> Iterator[tuple[Cluster, Container]]:
    why = unavailable() or available("bird2")
    if why:
        pytest.skip(why)
    tree = ensure_tree()
    c = Cluster(lab, tmp_path, nodes=1, tor_originate=(TOR_BLOCK,))
    node = c.nodes[0]
    settings = {"node_name": node.name, "datastore": "static",
                "resources": "/etc/bgpd/resources", "bird_socket": None,
                "restart_establish_grace": 5.0, "ready_timeout": 30.0, "log_level": "info"}
    install_project(tree, settings=settings, resources=yaml.safe_dump_all(c.manifests()))
    assert c.tor is not None
    c.tor.start()
    container = Container(tree, node.ns, tmp_path / "container")
    try:
        container.boot()
        yield c, container
    finally:
        container.shutdown()
        c.stop_all()


def journal_tail(container: Container) -> str:
    lines = container.run("journalctl", "-u", "bgpd", "-n", "40", "--no-pager", check=False)
    return f"the unit's journal:\n{lines}"


def main_pid(container: Container) -> int:
    return int(container.show("bgpd", "MainPID")["MainPID"])


def test_the_shipped_unit_under_a_booted_systemd(booted: tuple[Cluster, Container]) -> None:
    c, box = booted
    node, tor = c.nodes[0], c.tor
    assert tor is not None
    installed = (box.tree / "etc/systemd/system/bgpd.service").read_text()
    assert installed == (Path(__file__).parent.parent / "config/bgpd.service").read_text()

    # start: Type=notify, so systemctl returns once bgpd said READY=1
    box.systemctl("start", "bgpd", timeout=90)
    shown = box.show("bgpd", "ActiveState", "SubState", "StatusText", "MainPID")
    assert shown["ActiveState"] == "active" and shown["SubState"] == "running", shown
    assert shown["StatusText"].startswith("ready in "), shown
    first = int(shown["MainPID"])
    learned = f"{TOR_BLOCK} via {TOR_IP} dev tunl0 proto bird onlink"
    wait_for(lambda: tor.established(node.ip) and learned in node.routes()
             and node.block in tor.routes_from(node.ip), 60, "the session and routes both ways",
             context=lambda: journal_tail(box))
    status = box.systemctl("status", "bgpd", "--no-pager", check=False)
    assert re.search(r"Status: \"\d+/\d+ sessions up, \d+ kernel routes", status) or \
        "ready in" in status, status
    wait_for(lambda: "1/1 sessions up" in box.show("bgpd", "StatusText")["StatusText"], 30,
             "STATUS to count the session up")
    # durable state where the unit lets it write, the control socket at run time
    assert list((box.tree / "var/lib/bgpd").rglob("*.json")), "nothing kept in /var/lib/bgpd"
    assert TOR_IP in box.run("/usr/local/bin/bgpd", "status")

    # reload: SIGHUP re-reads the static folder, same process
    extra = c.affinity(f"{node.name}-extra", node.name, EXTRA_BLOCK)
    (box.tree / "etc/bgpd/resources/cluster.yaml").write_text(
        yaml.safe_dump_all([*c.manifests(), extra]))
    box.systemctl("reload", "bgpd")
    wait_for(lambda: EXTRA_BLOCK in tor.routes_from(node.ip), 30, "the reloaded block at the ToR")
    assert main_pid(box) == first

    # a hung daemon, then a killed one: systemd restarts it, no route goes anywhere
    ours = {node.block, EXTRA_BLOCK}
    deletions = RouteMonitor(node.ns.name)
    watch = Watch(c, ours)
    try:
        restarts = int(box.show("bgpd", "NRestarts")["NRestarts"])
        box.run("kill", "-STOP", str(first))
        wait_for(lambda: main_pid(box) not in (0, first)
                 and box.show("bgpd", "ActiveState")["ActiveState"] == "active", 120,
                 "the watchdog to kill the hung daemon and systemd to start it again")
        second = main_pid(box)
        assert int(box.show("bgpd", "NRestarts")["NRestarts"]) == restarts + 1
        assert any("Watchdog timeout" in str(e.get("MESSAGE", ""))
                   for e in box.journal("bgpd")), "systemd did not say the watchdog fired"
        wait_for(lambda: tor.established(node.ip), 60, "the session after the watchdog restart")
        box.systemctl("kill", "--signal=KILL", "--kill-whom=main", "bgpd")
        wait_for(lambda: main_pid(box) not in (0, second)
                 and box.show("bgpd", "ActiveState")["ActiveState"] == "active", 60,
                 "systemd to start the killed daemon again")
        wait_for(lambda: tor.established(node.ip) and "1/1 sessions up"
                 in box.show("bgpd", "StatusText")["StatusText"], 60, "the session once more")
    finally:
        gaps = watch.stop()
        deletions.stop()
    assert gaps == [], f"the router lost our blocks: {gaps[:5]}\n{journal_tail(box)}"
    assert deletions.deleted_owned() == [], deletions.deleted_owned()
    assert learned in node.routes()

    # stop: the routes stay (the next start adopts them)
    box.systemctl("stop", "bgpd", timeout=60)
    assert box.show("bgpd", "ActiveState")["ActiveState"] == "inactive"
    routes = node.routes()
    assert learned in routes and f"blackhole {node.block} proto bird" in routes, routes

    # the journal: bgpd's structured events, one JSON object per message
    events = []
    for entry in box.journal("bgpd"):
        message = entry.get("MESSAGE")
        if isinstance(message, str) and message.startswith("{"):
            event = json.loads(message)
            events.append(event)  # at the priority of its level: `journalctl -p err` finds it
            assert entry.get("PRIORITY") == str(PRIORITIES[event["level"]]), entry
    names = {e.get("event") for e in events}
    assert {"ready", "reloading"} <= names, sorted(n for n in names if n)
    assert all("timestamp" in e and "level" in e for e in events)

    # what systemd-analyze thinks of the hardening (reported in README)
    security = box.run("systemd-analyze", "security", "bgpd", "--no-pager", check=False)
    exposure = re.search(r"Overall exposure level for bgpd\.service: (\d+\.\d+)", security)
    assert exposure is not None, security[-2000:]
    (box.workdir / "security.txt").write_text(security)
    assert float(exposure.group(1)) < 5.0, security[-2000:]


def test_the_container_leader_is_its_init_not_a_helper_of_nspawn(tmp_path: Path) -> None:
    """systemd-nspawn's own children carry "systemd" in their name too (``systemd-nspawn``, an
    outer child that exits once init is cloned); ``nsenter`` into one of them reaches no
    systemd ("offline", then nothing once it has gone).  Only PID 1 of a PID namespace of its
    own, named ``systemd``, is the container's init."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a PID namespace)")
    helper, init = tmp_path / "systemd-nspawn", tmp_path / "systemd"
    for copy in (helper, init):
        shutil.copy2("/bin/sleep", copy)
    unshare_argv = ["unshare", "--pid", "--fork", "--kill-child", str(init), "30"]
    with subprocess.Popen([str(helper), "30"]) as same_ns, \
            subprocess.Popen(unshare_argv) as unshare:
        try:
            assert not _container_init(same_ns.pid, os.getpid())

            found: list[int] = []

            def inner() -> bool:
                found[:] = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                            if _container_init(pid, unshare.pid)]
                return bool(found)

            wait_for(inner, 10, "the init of the new PID namespace")
            (pid,) = found
            assert Path(f"/proc/{pid}/comm").read_text().strip() == "systemd"
            assert not _container_init(pid, os.getpid())  # not below this nspawn
        finally:
            same_ns.kill()
            unshare.kill()
