"""Operators' mistakes on a running node (issue: inputs, third round).

One bgpd node (node-1) beside a BIRD 2 node (node-0) configured as Calico's confd configures
it, both over a static folder the test edits in place, as an operator's ``kubectl edit``
would change an object.  Each case checks the session and the kernel routes on both nodes.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from integration_tests.cluster import Cluster
from integration_tests.netns import NetLab
from integration_tests.peers import available


@pytest.fixture
def bird2() -> None:
    why = available("bird2")
    if why:
        pytest.skip(why)


def established(c: Cluster, node: Any) -> bool:
    peers = c.status(node)["peers"]
    return bool(peers) and all(p["established"] for p in peers)


def test_own_address_moved_and_back(lab: NetLab, tmp_path: Path, bird2: None) -> None:
    """Address autodetection flapping: this node's address annotation moves to an address
    the node does not have, then back; the mesh session comes back within connect time."""
    c = Cluster(lab, tmp_path, nodes=2, bird_nodes=1, tor=False)
    me = c.nodes[1]
    c.start_all()
    try:
        c.wait(c.blocks_everywhere, 60, "blocks everywhere")
        manifests = c.node_manifests

        def moved(n: Any) -> list[dict[str, Any]]:
            docs = manifests(n)
            if n is me:
                docs[0]["metadata"]["annotations"][
                    "projectcalico.org/IPv4Address"] = "198.51.100.77/24"
            return docs

        c.node_manifests = moved  # type: ignore[method-assign]
        c.write_resources()
        me.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        c.wait(lambda: c.status(me)["router_id"] == "198.51.100.77", 20, "the address moved")
        c.node_manifests = manifests  # type: ignore[method-assign]
        c.write_resources()
        me.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        c.wait(lambda: established(c, me), 30, "the mesh session back")
        c.wait(c.blocks_everywhere, 30, "blocks everywhere again")
        # (and no advice from ExaBGP to write a settings file it does not need)
        assert "environment file missing" not in (me.workdir / "bgpd.log").read_text()
    finally:
        c.stop_all()


def test_a_50_mb_file_never_holds_status_up(lab: NetLab, tmp_path: Path) -> None:
    """A pod list of 50 MB left in the folder, read on SIGHUP: ``bgpd status`` answers
    within 0.5 s all along, the pods are one error on the file, routing is unchanged."""
    import json
    import time

    c = Cluster(lab, tmp_path, nodes=1, tor=False)
    me = c.nodes[0]
    c.start_all()
    try:
        c.wait(lambda: c.status(me)["ready"], 30, "ready")
        routes = me.routes()
        pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "namespace": "default", "labels": {"app": "x" * 20}, "annotations": {"a": "y" * 400}},
            "spec": {"containers": [{"name": "c", "image": "i" * 50}]}}
        items = [{**pod, "metadata": {**pod["metadata"], "name": f"p{i}"}} for i in range(80_000)]
        text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        assert len(text) > 50_000_000
        (c.resources / "pods.json").write_text(text)
        del items, text
        me.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        slowest = 0.0

        def read() -> bool:
            nonlocal slowest
            start = time.monotonic()
            status = c.status(me)
            slowest = max(slowest, time.monotonic() - start)
            return any(e["kind"] == "File" and "80000 Pod" in e["message"]
                       for e in status["errors"])

        c.wait(read, 120, "the pod list read and reported")
        assert slowest < 0.5, slowest
        assert c.status(me)["event_loop_lag"]["worst_s"] < 0.5
        assert me.routes() == routes
    finally:
        c.stop_all()


def listening(node: Any) -> set[int]:
    out = node.ns.run("ss", "-Hltn")
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


def test_a_nodes_listen_port_applies_live(lab: NetLab, tmp_path: Path) -> None:
    """``listenPort`` on ``node.<name>``: ExaBGP starts again on the new port (it reads the
    port at its start only), and again back on 179 when the setting goes."""
    c = Cluster(lab, tmp_path, nodes=1, tor=False)
    me = c.nodes[0]
    c.start_all()
    try:
        c.wait(lambda: 179 in listening(me), 30, "listening on 179")
        # a SIGHUP at once, while it starts (the resources as they are are the first load's)
        c.write_resources([c.calico("BGPConfiguration", f"node.{me.name}", {"listenPort": 1790})])
        me.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        c.wait(lambda: c.status(me)["ready"], 30, "ready")
        c.wait(lambda: {179, 1790} & listening(me) == {1790}, 30, "listening on 1790 only")
        c.write_resources()
        me.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        c.wait(lambda: {179, 1790} & listening(me) == {179}, 30, "back on 179")
        c.write_resources([c.calico("BGPConfiguration", f"node.{me.name}", {"listenPort": 1790})])
        me.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        c.wait(lambda: {179, 1790} & listening(me) == {1790}, 30, "listening on 1790 only")
        c.write_resources()
        me.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        c.wait(lambda: {179, 1790} & listening(me) == {179}, 30, "back on 179")
        assert c.status(me)["speaker"]["restarts"] == 0  # restarts asked for are no failures
    finally:
        c.stop_all()
