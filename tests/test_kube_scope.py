"""A watcher keeps to its own objects, whatever the server sends (one that ignored the field
selector would otherwise let the other nodes' metadata-only watch overwrite this node)."""

from __future__ import annotations

from typing import Any

from node_controller.kube import Resource, Watcher
from node_controller.store import Store


def node(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "resourceVersion": "7",
        "annotations": {"projectcalico.org/IPv4Address": "198.51.100.2/24"}}, "spec": spec}


def test_the_other_nodes_watch_never_touches_this_node() -> None:
    store = Store()
    store.apply(node("node-2", podCIDRs=["10.9.2.0/24"]))
    others = Watcher(None, Resource("Node", "nodes", exclude="node-2", metadata_only=True),  # type: ignore[arg-type]
                     store, lambda: None)
    partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
               "metadata": node("node-2")["metadata"]}
    # ignored, but the stream's position moves on (a resumed watch starts after it)
    assert others._handle({"type": "MODIFIED", "object": partial}, "6") == "7"
    others._handle({"type": "DELETED", "object": partial}, "6")
    assert store.valid[("Node", "node-2")]["spec"] == {"podCIDRs": ["10.9.2.0/24"]}
    others._handle({"type": "ADDED", "object": {**partial, "metadata": {
        **partial["metadata"], "name": "node-1"}}}, "6")
    assert ("Node", "node-1") in store.valid
