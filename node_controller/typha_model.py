"""Calico's model keys and values, as Typha's "bgp" syncer sends them, into the manifests the
store reads (pure).

What the syncer sends (``libcalico-go/lib/backend/syncersv1/bgpsyncer``, keys by
``model.KeyToDefaultPath``; facts of the wire format):

* ``/calico/resources/v3/projectcalico.org/<plural>/<name>``: BGPConfigurations, BGPPeers,
  BGPFilters as v3 resources (JSON), and Calico's own **Node** resources as
  ``libcalico-go/lib/backend/k8s/resources/node.go`` (``K8sNodeToCalico``) makes them of a
  Kubernetes Node — their BGP addresses, AS number and route-reflector cluster id in
  ``spec.bgp``, which this module turns into the ``projectcalico.org/`` annotations of a
  Kubernetes Node, where the API datastore keeps them, and the Kubernetes Node's pod CIDRs
  in ``status.podCIDRs``, which become its ``spec.podCIDRs`` again (host-local IPAM: the
  syncer then sends no block affinity, and confd makes blocks of these,
  ``updateprocessors/bgpnodeprocessor.go``);
* ``/calico/ipam/v2/host/<node>/ipv4/block/<cidr with ->``: block affinities
  (``{"state": ..., "deleted": ...}``), of every host (Typha serves every node);
* ``/calico/v1/ipam/v4/pool/<cidr with ->`` (and ``v6``): IP pools in Calico's v1 model
  (``model/ippool.go``), which has **no block size**.  They are not read: the import guard
  needs each pool's ``blockSize``, and no syncer carries it (Calico's IPAM reads pools from
  the API), so bgpd watches the IPPools of the API beside Typha — one owner for every pool
  field, the same pools as through the API alone.

A value of null deletes.  A key of any other shape is not read (``None``); a key or value
that cannot be read is a :class:`ModelError` naming the key and the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

RESOURCE = re.compile(r"^/calico/resources/v3/projectcalico\.org/([^/]+)/([^/]+)$")
AFFINITY = re.compile(r"^/calico/ipam/v2/host/([^/]+)/ipv([46])/block/([^/]+)$")
KINDS = {"bgpconfigurations": "BGPConfiguration", "bgppeers": "BGPPeer",
         "bgpfilters": "BGPFilter", "nodes": "Node"}
V3 = "projectcalico.org/v3"
CRD = "crd.projectcalico.org/v1"
ANNOTATION = "projectcalico.org/"
NODE_BGP = {"ipv4Address": "IPv4Address", "ipv6Address": "IPv6Address",
            "asNumber": "ASNumber", "routeReflectorClusterID": "RouteReflectorClusterID",
            "ipv4IPIPTunnelAddr": "IPv4IPIPTunnelAddr"}


class ModelError(ValueError):
    def __init__(self, key: str, field: str, message: str) -> None:
        super().__init__(f"{key}: {field}: {message}")
        self.key, self.field, self.message = key, field, message


@dataclass(frozen=True, slots=True)
class Change:
    """One object of the store: added or replaced (``manifest``), or deleted (None)."""

    kind: str
    name: str
    manifest: dict[str, Any] | None


def change_of(key: str, value: bytes | None) -> Change | None:
    """What the KV ``key``/``value`` does to the store (None: a key bgpd does not read)."""
    if m := RESOURCE.match(key):
        kind = KINDS.get(m.group(1))
        if kind is None:
            return None
        name = m.group(2)
        if value is None:
            return Change(kind, name, None)
        obj = _json(key, value)
        return Change(kind, name, _node(key, obj, name) if kind == "Node"
                      else _resource(obj, kind, name))
    if m := AFFINITY.match(key):
        node, cidr = m.group(1), m.group(3).replace("-", "/")
        name = f"{node}-{m.group(3)}"
        if value is None:
            return Change("BlockAffinity", name, None)
        obj = _json(key, value)
        return Change("BlockAffinity", name, {
            "apiVersion": CRD, "kind": "BlockAffinity", "metadata": {"name": name},
            "spec": {"node": node, "cidr": cidr, "state": obj.get("state") or "confirmed",
                     "deleted": "true" if obj.get("deleted") is True else "false"}})
    return None


def _json(key: str, value: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError) as exc:  # (nesting deeper than the parser goes)
        raise ModelError(key, "value", f"not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ModelError(key, "value", f"expected an object, got {type(obj).__name__}")
    return obj


def _metadata(obj: dict[str, Any], name: str) -> dict[str, Any]:
    meta = obj.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["name"] = name  # the key's name is the object's
    return meta


def _resource(obj: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    return {**obj, "apiVersion": obj.get("apiVersion") or V3, "kind": kind,
            "metadata": _metadata(obj, name)}


def _node(key: str, obj: dict[str, Any], name: str) -> dict[str, Any]:
    """A Calico Node as the Kubernetes Node the store reads: its BGP spec as annotations."""
    meta = _metadata(obj, name)
    spec = obj.get("spec") or {}
    bgp = spec.get("bgp") if isinstance(spec, dict) else None
    if bgp is not None and not isinstance(bgp, dict):
        raise ModelError(key, "spec.bgp", "expected an object")
    given = meta.get("annotations") or {}
    if not isinstance(given, dict):
        raise ModelError(key, "metadata.annotations", "expected an object")
    annotations = {k: v for k, v in given.items() if not str(k).startswith(ANNOTATION)}
    for field, annotation in NODE_BGP.items():
        value = (bgp or {}).get(field)
        if value not in (None, ""):
            annotations[ANNOTATION + annotation] = str(value)
    meta["annotations"] = annotations
    node: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": meta}
    status = obj.get("status")
    cidrs = status.get("podCIDRs") if isinstance(status, dict) else None
    if cidrs is not None:
        if not isinstance(cidrs, list):
            raise ModelError(key, "status.podCIDRs", "expected a list")
        node["spec"] = {"podCIDRs": cidrs}
    return node

