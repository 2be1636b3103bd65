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
    pool = change_of("/calico/v1/ipam/v4/pool/172.17.0.0-12", raw({
        "cidr": "172.17.0.0/12", "ipip_mode": "cross-subnet", "vxlan_mode": "",
        "disabled": False, "disableBGPExport": True}))
    assert pool is not None and pool.manifest is not None
    assert pool.manifest["spec"] == {"cidr": "172.17.0.0/12", "ipipMode": "CrossSubnet",
                                     "vxlanMode": "Never", "disabled": False,
                                     "disableBGPExport": True}
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
    ("/calico/v1/ipam/v4/pool/10.0.0.0-8", b'{"cidr": "10.0.0.0/8", "ipip_mode": "x"}',
     "ipip_mode"),
])
def test_an_unreadable_value_names_its_key_and_field(key: str, value: bytes,
                                                     field: str) -> None:
    with pytest.raises(ModelError) as caught:
        change_of(key, value)
    assert (caught.value.key, caught.value.field) == (key, field)


def test_the_examples_through_typhas_model_give_the_apis_configuration() -> None:
    docs = [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())
            if d]
    direct, typha = Store(), Store()
    for doc in docs:
        direct.apply(doc)
    for doc in docs:  # what Typha does not send still comes from the API
        if doc["kind"] in ("Service", "EndpointSlice", "Secret", "ClusterInformation"):
            typha.apply(doc)
    for item in kvs_of(docs):
        change = change_of(item["key"], raw(item["value"]))
        assert change is not None and change.manifest is not None
        assert typha.apply(change.manifest), change
    for node in ("node-1", "node-2", "node-3"):
        assert desired_config(typha, node).as_dict() == desired_config(direct, node).as_dict()


def test_the_600_node_benchmark_cluster_through_typhas_model() -> None:
    from benchmarks.datastore import cluster

    docs = cluster(600)
    direct, typha = Store(), Store()
    for doc in docs:
        direct.apply(doc)
    for item in kvs_of(docs):
        change = change_of(item["key"], raw(item["value"]))
        assert change is not None and change.manifest is not None
        typha.apply(change.manifest)
    for node in ("node-0", "node-299", "node-599"):
        mine = desired_config(typha, node)
        assert len(mine.peers) == 599 and not mine.errors
        assert mine.as_dict() == desired_config(direct, node).as_dict()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["metadata", "spec", "bgp", "annotations", "labels", "name", "cidr",
                         "ipv4Address", "asNumber", "ipip_mode", "state", "deleted", "peerIP",
                         "apiVersion", "x"]), inner, max_size=4),
    max_leaves=12)
KEYS = ["/calico/resources/v3/projectcalico.org/nodes/n1",
        "/calico/resources/v3/projectcalico.org/bgppeers/p",
        "/calico/resources/v3/projectcalico.org/bgpconfigurations/default",
        "/calico/resources/v3/projectcalico.org/bgpfilters/f",
        "/calico/v1/ipam/v4/pool/10.0.0.0-8", "/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26"]


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
