"""Topology changes under traffic: Calico's documented move from the full mesh to route
reflectors, and back, made before broken.

Three bgpd nodes, a pod on each, routes without encapsulation; every pod pings every other pod
every 20 ms and every node's ``proto bird`` routes are watched.  node-0 becomes the reflector
in the documented order (calico docs, "Configure BGP route reflectors": the cluster ID
annotation, the label, the BGPPeer with a ``peerSelector``, then the mesh turned off) and goes
back in the reverse order (the mesh on, the BGPPeer deleted, the label and the cluster ID
removed).  Each step is written to the nodes' resources and each node reloads them (SIGHUP);
the next step comes once every node shows the sessions the step leads to.

With ``handover_seconds: 0`` (ended at once, as confd does) the first step cuts node-0 off
until the third: the control run shows that loss, so the held run is known to measure
something.
"""

from __future__ import annotations

from pathlib import Path

from integration_tests.cluster import Cluster, Node
from integration_tests.monitor import Pinger, stop_all
from integration_tests.netns import NetLab
from integration_tests.test_daemon import RouteDeletions
from integration_tests.topology import Topology, sessions


def run(lab: NetLab, tmp_path: Path, *, handover: float, reverse: bool
        ) -> tuple[int, int, list[list[str]]]:
    """(sent, received, proto bird routes deleted on each node) over the procedure."""
    c = Cluster(lab, tmp_path, nodes=3, mode="Never", pods=1, tor=False)
    rr, c1, c2 = c.nodes
    topology = Topology(c, [rr])
    c.write_resources()
    for n in c.nodes:
        c.start(n, handover_seconds=handover)
    try:
        c.wait(c.blocks_everywhere, 60, "the mesh's routes everywhere")
        monitors = [RouteDeletions(n) for n in c.nodes]
        pings = [Pinger(a.pods[0].name, b.pod_ips[0], interval=0.02)
                 for a in c.nodes for b in c.nodes if a is not b]

        def state(n: Node) -> dict[str, tuple[str, bool]]:
            return sessions(c, n)

        if handover:
            topology.step("node-0's sessions held", lambda: state(rr) == {
                c1.name: ("Mesh", True), c2.name: ("Mesh", True)}
                and state(c1)[rr.name] == ("Mesh", True), cluster_id=True)
        else:
            topology.step("node-0 cut off", lambda: state(rr) == {} and rr.name not in state(c1),
                          cluster_id=True)
            c.wait(lambda: not c.blocks_everywhere(), 10, "node-0's block gone elsewhere")
        topology.step("node-0 labelled", lambda: True, labelled=True)
        topology.step("the reflector's sessions", lambda: state(rr) == {
            c1.name: ("Node", False), c2.name: ("Node", False)}
            and state(c1) == {rr.name: ("Node", False), c2.name: ("Mesh", False)}
            and c.blocks_everywhere(), peering=True)
        if reverse:
            topology.step("the clients on the reflector alone", lambda: state(c1) == {
                rr.name: ("Node", False)} and state(c2) == {rr.name: ("Node", False)},
                mesh=False)
            topology.step("the mesh back between the clients", lambda: state(c1) == {
                rr.name: ("Node", False), c2.name: ("Mesh", False)}, mesh=True)
            topology.step("the reflector's sessions held", lambda: state(rr) == {
                c1.name: ("Node", True), c2.name: ("Node", True)}, peering=False)
            topology.step("node-0 unlabelled", lambda: True, labelled=False)
            topology.step("node-0 in the mesh again", lambda: all(
                set(state(n).values()) == {("Mesh", False)} and len(state(n)) == 2
                for n in c.nodes), cluster_id=False)
        c.wait(c.blocks_everywhere, 30, "every block everywhere")
        sent, received = stop_all(pings)
        return sent, received, [m.stop() for m in monitors]
    finally:
        c.stop_all()


def test_mesh_to_reflectors_and_back_loses_nothing(lab: NetLab, tmp_path: Path) -> None:
    sent, received, deleted = run(lab, tmp_path / "at-once", handover=0, reverse=False)
    print(f"sessions ended at once: {sent - received} of {sent} lost, deleted {deleted}")
    assert received < sent, "ending the sessions at once lost nothing: the test sees nothing"
    lab.close()
    sent, received, deleted = run(lab, tmp_path / "held", handover=1800, reverse=True)
    print(f"made before broken: {sent - received} of {sent} lost, deleted {deleted}")
    assert sent > 500 and received == sent
    assert deleted == [[], [], []]
