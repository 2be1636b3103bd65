"""A :class:`~integration_tests.cluster.Cluster` whose nodes read the Kubernetes API test
server (no real API server can run here), reachable from the node namespaces as the lab's
``198.51.100.250:6443``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from integration_tests.cluster import Cluster
from integration_tests.kube_server import KubeServer
from integration_tests.lab.__main__ import API_IP, API_PORT, write_kubeconfig
from integration_tests.netns import NetLab


@contextlib.contextmanager
def k8s_cluster(lab: NetLab, workdir: Path, **kwargs: Any) -> Iterator[
        tuple[Cluster, KubeServer]]:
    """Build the cluster, load its resources into a test API server, start every node; stop
    them all on the way out."""
    c = Cluster(lab, workdir, datastore="kubernetes", kubeconfig=workdir / "kc-nodes", **kwargs)
    api_ns = lab.namespace("api")
    lab.veth(api_ns, "eth0", c.fabric, "vapi")
    lab.attach(c.fabric, "vapi", "br0")
    lab.address(api_ns, "eth0", f"{API_IP}/24")
    if c.router_ns is not None:
        api_ns.ip("route", "add", "198.51.101.0/24", "via", "198.51.100.254")
    server = KubeServer(extra_listen=((api_ns.name, API_IP, API_PORT),)).start()
    for doc in c.manifests():
        server.put(doc)
    write_kubeconfig(workdir / "kc-nodes", f"http://{API_IP}:{API_PORT}")
    c.start_all()
    try:
        yield c, server
    finally:
        c.stop_all()
        server.stop()
