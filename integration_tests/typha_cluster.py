"""A cluster served by the Typha stand-in: its manifests as the KVs Typha's "bgp" syncer
sends (each value made as libcalico-go makes it, the source named at each function),
certificates made with ``openssl``, and the stand-in as a process."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "typha_standin"
GO = shutil.which("go") or shutil.which("go", path="/usr/lib/go/bin")
V3 = "projectcalico.org/v3"
PLURALS = {"BGPConfiguration": "bgpconfigurations", "BGPPeer": "bgppeers",
           "BGPFilter": "bgpfilters"}
# libcalico-go/lib/backend/encap/ipip.go: Never is the empty mode
ENCAP = {"Always": "always", "CrossSubnet": "cross-subnet", "Never": "", None: ""}
# libcalico-go/lib/backend/k8s/resources/node.go: the annotations K8sNodeToCalico reads into
# the Calico Node's spec.bgp (internalapi.NodeBGPSpec's JSON names)
ANNOTATIONS = {"IPv4Address": "ipv4Address", "IPv6Address": "ipv6Address",
               "ASNumber": "asNumber", "RouteReflectorClusterID": "routeReflectorClusterID",
               "IPv4IPIPTunnelAddr": "ipv4IPIPTunnelAddr"}


def _cidr(version: int) -> Callable[[str], str | None]:
    """validator/v3 ValidateCIDRv4 / ValidateCIDRv6: an address, with or without a prefix
    length (not strictly masked), of that version."""
    def check(value: str) -> str | None:
        try:
            return value if ipaddress.ip_interface(value).version == version else None
        except ValueError:
            return None
    return check


def _ipv4_network(value: str) -> str | None:
    """validator/v3 ValidateIPv4Network: an IPv4 address, or a strictly masked network."""
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return None
    return value if iface.version == 4 and iface.ip == iface.network.network_address else None


def _asn(value: str) -> int | None:
    """numorstring.ASNumberFromString: a 32-bit number, plain or dotted (``1.10``)."""
    high, dot, low = value.partition(".")
    try:
        number = (int(high) << 16 | int(low)) if dot else int(value)
    except ValueError:
        return None
    return number if 0 <= number < 1 << 32 and (not dot or int(low) < 1 << 16) else None


# each annotation K8sNodeToCalico reads, checked by the validator it passes to getAnnotation
VALID: dict[str, Callable[[str], Any]] = {
    "IPv4Address": _cidr(4), "IPv6Address": _cidr(6),
    "RouteReflectorClusterID": _ipv4_network, "IPv4IPIPTunnelAddr": _ipv4_network,
    "ASNumber": _asn}
METADATA = "projectcalico.org/metadata"  # where Calico keeps a v3 object's own metadata
CREATED = "2026-11-01T00:00:00Z"


def build(out: Path) -> Path:
    """The stand-in, built with Go's standard library only (no network)."""
    env = {**os.environ, "GOCACHE": str(out.parent / "gocache"), "GOFLAGS": "-mod=mod",
           "GOPATH": str(out.parent / "gopath"), "CGO_ENABLED": "0"}
    assert GO is not None
    subprocess.run([GO, "build", "-o", str(out), "."], cwd=SOURCE, env=env, check=True,
                   capture_output=True, timeout=300)
    return out


def kv(key: str, value: dict[str, Any] | None, revision: int) -> dict[str, Any]:
    return {"key": key, "value": value, "revision": str(revision)}


def _uid(meta: dict[str, Any], name: str) -> str:
    """The object's UID (the API server's, else one made from its name)."""
    return str(meta.get("uid") or uuid.uuid5(uuid.NAMESPACE_URL, name))


def _v3_uid(uid: str) -> str:
    """The UID a v3 resource gets from its CRD's (conversion.ConvertUID: every byte's bits
    reversed, the version and variant bytes kept)."""
    raw = uuid.UUID(uid).bytes
    out = bytearray(int(f"{b:08b}"[::-1], 2) for b in raw)
    out[6], out[8] = raw[6], raw[8]
    return str(uuid.UUID(bytes=bytes(out)))


def _v3_metadata(meta: dict[str, Any], name: str, rev: int) -> dict[str, Any]:
    """A CRD's metadata as the v3 resource shows it (resources.go
    ConvertK8sResourceToCalicoResource): the Calico metadata annotation's labels and
    annotations merged over the CRD's, its resourceVersion, a UID of its own, the creation
    time."""
    annotations = dict(meta.get("annotations") or {})
    labels = dict(meta.get("labels") or {})
    stored = json.loads(annotations.pop(METADATA, "{}"))
    labels.update(stored.get("labels") or {})
    annotations.update(stored.get("annotations") or {})
    out: dict[str, Any] = {"name": name, "uid": _v3_uid(_uid(meta, name)),
                           "resourceVersion": str(meta.get("resourceVersion") or rev),
                           "creationTimestamp": meta.get("creationTimestamp") or CREATED}
    if labels:
        out["labels"] = labels
    if annotations:
        out["annotations"] = annotations
    return out


def calico_node(doc: dict[str, Any], rev: int, *, use_pod_cidr: bool) -> dict[str, Any]:
    """A Kubernetes Node as Calico's Node resource (node.go K8sNodeToCalico): the K8s
    metadata's resourceVersion, UID and creation time, its labels; ``spec.bgp`` from the
    annotations (with host-local IPAM the IPIP tunnel address is the pod CIDR's first
    address, getStaticTunnelAddress), the orchestrator reference, the addresses
    (fillAllAddresses), and the pod CIDRs in ``status.podCIDRs``."""
    meta, spec = doc["metadata"], doc.get("spec") or {}
    name = meta["name"]
    annotations = meta.get("annotations") or {}
    bgp: dict[str, Any] = {}
    for a, field in ANNOTATIONS.items():
        given = annotations.get(f"projectcalico.org/{a}")
        valid = VALID[a](given) if given else None  # getAnnotation: an invalid one is ignored
        if valid is not None:
            bgp[field] = valid
    if use_pod_cidr and spec.get("podCIDR"):
        bgp.pop("ipv4IPIPTunnelAddr", None)
        if ":" not in spec["podCIDR"]:
            first = ipaddress.ip_network(spec["podCIDR"], strict=False).network_address + 1
            bgp["ipv4IPIPTunnelAddr"] = str(first)
    node_meta = {"name": name, "uid": _uid(meta, name),
                 "resourceVersion": str(meta.get("resourceVersion") or rev),
                 "creationTimestamp": meta.get("creationTimestamp") or CREATED}
    if meta.get("labels"):
        node_meta["labels"] = dict(meta["labels"])
    addresses = [{"address": bgp[f], "type": "CalicoNodeIP"}
                 for f in ("ipv4Address", "ipv6Address") if f in bgp]
    addresses += [{"address": a["address"], "type": a["type"]}
                  for a in (doc.get("status") or {}).get("addresses") or []
                  if a.get("type") in ("InternalIP", "ExternalIP")]
    value: dict[str, Any] = {"kind": "Node", "apiVersion": V3, "metadata": node_meta,
                             "spec": {**({"bgp": bgp} if bgp else {}),
                                      "orchRefs": [{"nodeName": name, "orchestrator": "k8s"}],
                                      **({"addresses": addresses} if addresses else {})}}
    if spec.get("podCIDRs"):
        value["status"] = {"podCIDRs": list(spec["podCIDRs"])}
    return value


def v1_pool(spec: dict[str, Any]) -> dict[str, Any]:
    """An IPPool in Calico's v1 model (k8s/resources/ippool.go IPPoolV3ToV1)."""
    ipip = ENCAP[spec.get("ipipMode")]
    return {"cidr": str(ipaddress.ip_network(spec["cidr"], strict=False)),
            "ipip": "tunl0" if ipip else "", "ipip_mode": ipip,
            "vxlan_mode": ENCAP[spec.get("vxlanMode")],
            "masquerade": bool(spec.get("natOutgoing")), "ipam": not spec.get("disabled"),
            "disabled": bool(spec.get("disabled")),
            "disableBGPExport": bool(spec.get("disableBGPExport")),
            "assignment_mode": spec.get("assignmentMode") or "Automatic"}


def kvs_of(manifests: Iterable[dict[str, Any]], *,
           use_pod_cidr: bool = False) -> list[dict[str, Any]]:
    """The KVs Typha's "bgp" syncer sends for a cluster the API server holds as
    ``manifests`` (libcalico-go/lib/backend/syncersv1/bgpsyncer/bgpsyncer.go): v3
    BGPConfigurations, BGPPeers and BGPFilters, Calico Nodes, v1 pools (model/ippool.go),
    and every host's block affinities (``/calico/ipam/v2/host/...``, model.BlockAffinity) —
    none with ``use_pod_cidr`` (Typha's USE_POD_CIDR: K8sUsePodCIDR)."""
    out = []
    for rev, doc in enumerate(manifests, start=100):
        kind, meta = doc["kind"], doc["metadata"]
        name = meta["name"]
        if kind in PLURALS:
            value = {"kind": kind, "apiVersion": V3, "metadata": _v3_metadata(meta, name, rev),
                     "spec": doc.get("spec") or {}}
            out.append(kv(f"/calico/resources/v3/projectcalico.org/{PLURALS[kind]}/{name}",
                          value, rev))
        elif kind == "Node":
            out.append(kv(f"/calico/resources/v3/projectcalico.org/nodes/{name}",
                          calico_node(doc, rev, use_pod_cidr=use_pod_cidr), rev))
        elif kind == "IPPool":
            pool = v1_pool(doc["spec"])
            version = 6 if ":" in pool["cidr"] else 4
            out.append(kv(f"/calico/v1/ipam/v{version}/pool/{pool['cidr'].replace('/', '-')}",
                          pool, rev))
        elif kind == "BlockAffinity" and not use_pod_cidr:
            spec = doc["spec"]
            version = 6 if ":" in spec["cidr"] else 4
            out.append(kv(f"/calico/ipam/v2/host/{spec['node']}/ipv{version}/block/"
                          f"{spec['cidr'].replace('/', '-')}",
                          {"state": spec.get("state", "confirmed"),
                           "deleted": spec.get("deleted") in ("true", True)}, rev))
    return out


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def certificates(folder: Path) -> Path:
    """A CA, Typha's server certificate (CN typha-server, URI SAN
    spiffe://cluster.local/ns/calico-system/sa/calico-typha), a client certificate (CN
    typha-client), and a client certificate of another CA (``rogue-client``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", f"/CN={ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=folder)
    leaves = (("server", "ca", "typha-server",
               "URI:spiffe://cluster.local/ns/calico-system/sa/calico-typha"),
              ("client", "ca", "typha-client", "URI:spiffe://cluster.local/ns/x/sa/bgpd"),
              ("rogue-client", "rogue-ca", "typha-client", None))
    for name, ca, cn, san in leaves:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)
        ext = folder / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-days", "2", "-extfile", ext.name, "-out", f"{name}.crt",
                cwd=folder)
    return folder


class StandIn:
    """The stand-in serving ``snapshot`` (and the lines appended to ``deltas``)."""

    def __init__(self, binary: Path, workdir: Path, kvs: list[dict[str, Any]], *,
                 certs: Path | None = None, client_cn: str = "typha-client",
                 ping: str = "10s") -> None:
        self.binary, self.workdir, self.certs = binary, workdir, certs
        self.client_cn, self.ping = client_cn, ping
        workdir.mkdir(parents=True, exist_ok=True)
        self.snapshot = workdir / "snapshot.json"
        self.snapshot.write_text(json.dumps(kvs))
        self.deltas = workdir / "deltas.jsonl"
        self.deltas.touch()
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.port = 0

    def start(self) -> StandIn:
        port_file = self.workdir / "port"
        port_file.unlink(missing_ok=True)
        listen = f"127.0.0.1:{self.port}"
        args = [str(self.binary), "serve", "--listen", listen, "--snapshot", str(self.snapshot),
                "--deltas", str(self.deltas), "--port-file", str(port_file),
                "--ping", self.ping]
        if self.certs is not None:
            c = self.certs
            args += ["--cert", str(c / "server.crt"), "--key", str(c / "server.key"),
                     "--ca", str(c / "ca.crt"), "--client-cn", self.client_cn]
        log = open(self.workdir / "standin.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the stand-in did not start: "
                                   + (self.workdir / "standin.log").read_text()[-2000:])
            time.sleep(0.02)
        self.address = port_file.read_text()
        self.port = int(self.address.rpartition(":")[2])
        return self

    def append(self, *kvs: dict[str, Any]) -> None:
        with self.deltas.open("a") as f:
            for item in kvs:
                f.write(json.dumps(item) + "\n")

    def log(self) -> str:
        return (self.workdir / "standin.log").read_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @contextlib.contextmanager
    def running(self) -> Iterator[StandIn]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
