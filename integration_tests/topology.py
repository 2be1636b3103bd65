"""Calico's documented move from the full mesh to route reflectors, and back, step by step
(calico docs, "Configure BGP route reflectors"): the cluster ID annotation on the reflectors,
their label, the BGPPeer with a ``peerSelector``, then the mesh turned off; back in the
reverse order.  Each step is written to the nodes' resources (the static folder) and each
node reloads them (SIGHUP); the caller waits for what the step leads to."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from typing import Any

from integration_tests.cluster import Cluster, Node

CLUSTER_ID = "244.0.0.1"  # the docs' example


class Topology:
    """The cluster's resources as the procedure has them at each step."""

    def __init__(self, c: Cluster, reflectors: Sequence[Node]) -> None:
        self.c = c
        self.reflectors = list(reflectors)
        self.cluster_id = self.labelled = self.peering = False
        self.mesh = True
        manifests, node_manifests = c.manifests, c.node_manifests

        def with_reflector(n: Node) -> list[dict[str, Any]]:
            docs = node_manifests(n)
            if n in self.reflectors and self.cluster_id:
                docs[0]["metadata"]["annotations"][
                    "projectcalico.org/RouteReflectorClusterID"] = CLUSTER_ID
            if n in self.reflectors and self.labelled:
                docs[0]["metadata"]["labels"]["route-reflector"] = "true"
            return docs

        def with_peering() -> list[dict[str, Any]]:
            docs = manifests()
            docs[0]["spec"]["nodeToNodeMeshEnabled"] = self.mesh
            if self.peering:
                docs.append(c.calico("BGPPeer", "peer-with-route-reflectors", {
                    "nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"}))
            return docs

        c.node_manifests = with_reflector  # type: ignore[method-assign]
        c.manifests = with_peering  # type: ignore[method-assign]

    def step(self, what: str, until: Callable[[], bool], timeout: float = 30,
             **change: bool) -> float:
        """Apply ``change``, have every node reload, wait for ``until``; the seconds taken."""
        for key, value in change.items():
            setattr(self, key, value)
        self.c.write_resources()
        for n in self.c.nodes:
            assert n.proc is not None
            n.proc.send_signal(signal.SIGHUP)
        return self.c.wait(until, timeout, what)


def sessions(c: Cluster, n: Node) -> dict[str, tuple[str, bool]]:
    """The node's sessions by peer node: (the peering's name prefix, held for a handover),
    established ones only."""
    by_ip = {m.ip: m.name for m in c.nodes}
    return {by_ip[p["address"]]: (p["name"].split("_")[0], p["held_for_handover"] is not None)
            for p in c.status(n)["peers"] if p["established"]}
