"""Typha's model keys and values into the store's manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from integration_tests.typha_cluster import kvs_of
from node_controller.desired import desired_config
from node_controller.store import Store
from node_controller.typha_model import ModelError, change_of

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples"


def raw(value: dict[str, Any] | None) -> bytes | None:
    return None if value is None else json.dumps(value).encode()


def test_each_key_the_bgp_syncer_sends() -> None:
    node = change_of("/calico/resources/v3/projectcalico.org/nodes/node-7", raw({
        "kind": "Node", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "node-7", "labels": {"rack": "r1"},
                     "annotations": {"projectcalico.org/IPv4Address": "stale"}},
        "spec": {"bgp": {"ipv4Address": "10.0.0.7/24", "asNumber": 65001,
                         "routeReflectorClusterID": "1.0.0.1"}}}))
    assert node is not None and node.kind == "Node" and node.manifest is not None
    assert node.manifest["metadata"]["annotations"] == {
        "projectcalico.org/IPv4Address": "10.0.0.7/24", "projectcalico.org/ASNumber": "65001",
        "projectcalico.org/RouteReflectorClusterID": "1.0.0.1"}
    # v1 pools have no block size: the pools come from the API (typha_model's docstring)
    assert change_of("/calico/v1/ipam/v4/pool/172.17.0.0-12", raw({
        "cidr": "172.17.0.0/12", "ipip_mode": "cross-subnet", "vxlan_mode": "",
        "disabled": False, "disableBGPExport": True})) is None
    hostlocal = change_of("/calico/resources/v3/projectcalico.org/nodes/node-8", raw({
        "kind": "Node", "metadata": {"name": "node-8"},
        "spec": {"bgp": {"ipv4Address": "10.0.0.8/24"}},
        "status": {"podCIDRs": ["172.17.8.0/24", "fd00:10::8:0/122"]}}))
    assert hostlocal is not None and hostlocal.manifest is not None
    assert hostlocal.manifest["spec"] == {"podCIDRs": ["172.17.8.0/24", "fd00:10::8:0/122"]}
    affinity = change_of("/calico/ipam/v2/host/node-7/ipv4/block/172.17.7.0-24",
                         raw({"state": "confirmed", "deleted": False}))
    assert affinity is not None and affinity.manifest is not None
    assert affinity.manifest["spec"] == {"node": "node-7", "cidr": "172.17.7.0/24",
                                         "state": "confirmed", "deleted": "false"}
    peer = change_of("/calico/resources/v3/projectcalico.org/bgppeers/tor",
                     raw({"spec": {"peerIP": "10.0.0.1", "asNumber": 65000}}))
    assert peer is not None and peer.manifest is not None
    assert (peer.kind, peer.manifest["apiVersion"]) == ("BGPPeer", "projectcalico.org/v3")
    gone = change_of("/calico/resources/v3/projectcalico.org/bgppeers/tor", None)
    assert gone is not None and gone.manifest is None
    assert change_of("/calico/resources/v3/projectcalico.org/ipamconfigs/default", b"{}") is None
    assert change_of("/calico/felix/v1/host/x/config/y", b"1") is None


@pytest.mark.parametrize(("key", "value", "field"), [
    ("/calico/resources/v3/projectcalico.org/bgppeers/tor", b"{not json", "value"),
    ("/calico/resources/v3/projectcalico.org/bgppeers/tor", b"[1]", "value"),
    ("/calico/resources/v3/projectcalico.org/bgppeers/tor", b"[" * 100_000 + b"]" * 100_000,
     "value"),
    ("/calico/resources/v3/projectcalico.org/nodes/n", b'{"spec": {"bgp": 7}}', "spec.bgp"),
    ("/calico/resources/v3/projectcalico.org/nodes/n", b'{"status": {"podCIDRs": "x"}}',
     "status.podCIDRs"),
])
def test_an_unreadable_value_names_its_key_and_field(key: str, value: bytes,
                                                     field: str) -> None:
    with pytest.raises(ModelError) as caught:
        change_of(key, value)
    assert (caught.value.key, caught.value.field) == (key, field)


API_KINDS = ("Service", "EndpointSlice", "Secret", "ClusterInformation", "IPPool")


def typha_store(docs: list[dict[str, Any]], *, use_pod_cidr: bool = False) -> Store:
    """The store a Typha-fed daemon holds: the KVs Typha sends for ``docs`` through the
    model, and what comes from the API beside it (IPPools, ClusterInformation, ...)."""
    store = Store()
    for doc in docs:
        if doc["kind"] in API_KINDS:
            store.apply(doc)
    for item in kvs_of(docs, use_pod_cidr=use_pod_cidr):
        change = change_of(item["key"], raw(item["value"]))
        if change is None:
            assert item["key"].startswith("/calico/v1/ipam/"), item["key"]  # pools: not read
            continue
        assert change.manifest is not None
        assert store.apply(change.manifest), change
    return store


def test_the_examples_through_typhas_model_give_the_apis_configuration() -> None:
    docs = [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())
            if d]
    direct, typha = Store(), typha_store(docs)
    for doc in docs:
        direct.apply(doc)
    for node in ("node-1", "node-2", "node-3"):
        assert desired_config(typha, node) == desired_config(direct, node)


@pytest.mark.parametrize(("ipam", "block_size"), [
    ("calico", 24), ("calico", 26), ("host-local", 26)])
def test_the_600_node_benchmark_cluster_through_typhas_model(ipam: str,
                                                             block_size: int) -> None:
    """Nodes across the cluster derive the same whole DesiredConfig (every field, block
    sizes and the import guard's inputs included) from Typha's KVs as from the manifests
    (every node, through the stand-in and the API: integration_tests/test_typha.py)."""
    from benchmarks.datastore import cluster

    docs = cluster(600, ipam=ipam, block_size=block_size)
    direct, typha = Store(), typha_store(docs, use_pod_cidr=ipam == "host-local")
    for doc in docs:
        direct.apply(doc)
    for i in (*range(0, 600, 50), 599):
        mine = desired_config(typha, f"node-{i}")
        assert mine == desired_config(direct, f"node-{i}"), f"node-{i}"
        assert len(mine.peers) == 599 and not mine.errors and len(mine.blackholes) == 1
        assert len(mine.other_blocks) == 599
        assert mine.pools[0].block_size == block_size


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["metadata", "spec", "bgp", "annotations", "labels", "name", "cidr",
                         "ipv4Address", "asNumber", "status", "podCIDRs", "state", "deleted",
                         "peerIP", "apiVersion", "x"]), inner, max_size=4),
    max_leaves=12)
KEYS = ["/calico/resources/v3/projectcalico.org/nodes/n1",
        "/calico/resources/v3/projectcalico.org/bgppeers/p",
        "/calico/resources/v3/projectcalico.org/bgpconfigurations/default",
        "/calico/resources/v3/projectcalico.org/bgpfilters/f",
        "/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(KEYS), json_values)
def test_any_value_typha_sends_is_a_change_or_an_error_on_its_key(key: str, value: Any) -> None:
    """A hostile or broken Typha cannot raise anything else out of the model or the store."""
    try:
        change = change_of(key, json.dumps(value).encode())
    except ModelError as exc:
        assert exc.key == key
        return
    assert change is not None and change.manifest is not None
    store = Store()
    store.apply(change.manifest)  # a bad object becomes an error of the store, named
    assert desired_config(store, "n1") is not None


def test_the_stand_ins_calico_node_ignores_invalid_annotations_as_calico_does() -> None:
    """K8sNodeToCalico passes each annotation through getAnnotation's validator and drops
    an invalid one; with host-local IPAM the tunnel address is the pod CIDR's first, unless
    the node has no pod CIDR."""
    from integration_tests.typha_cluster import calico_node

    doc = {"kind": "Node", "metadata": {"name": "n", "annotations": {
        "projectcalico.org/IPv4Address": "10.0.0.5/24",
        "projectcalico.org/RouteReflectorClusterID": "1.0.0.1/24",  # not strictly masked
        "projectcalico.org/ASNumber": "1.10",
        "projectcalico.org/IPv4IPIPTunnelAddr": "172.17.5.1"}},
        "spec": {"podCIDR": "172.17.5.0/24", "podCIDRs": ["172.17.5.0/24"]}}
    node = calico_node(doc, 1, use_pod_cidr=False)
    assert node["spec"]["bgp"] == {"ipv4Address": "10.0.0.5/24", "asNumber": 65546,
                                   "ipv4IPIPTunnelAddr": "172.17.5.1"}
    assert node["status"] == {"podCIDRs": ["172.17.5.0/24"]}
    doc["metadata"]["annotations"]["projectcalico.org/IPv4IPIPTunnelAddr"] = "172.17.9.1"
    assert calico_node(doc, 1, use_pod_cidr=True)["spec"]["bgp"]["ipv4IPIPTunnelAddr"] == (
        "172.17.5.1")
    doc["spec"] = {}
    assert calico_node(doc, 1, use_pod_cidr=True)["spec"]["bgp"]["ipv4IPIPTunnelAddr"] == (
        "172.17.9.1")
