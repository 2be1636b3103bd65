"""A cluster served by the Typha stand-in: its manifests as the KVs Typha's "bgp" syncer
sends, certificates made with ``openssl``, and the stand-in as a process."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "typha_standin"
GO = shutil.which("go") or shutil.which("go", path="/usr/lib/go/bin")
V3 = "projectcalico.org/v3"
PLURALS = {"BGPConfiguration": "bgpconfigurations", "BGPPeer": "bgppeers",
           "BGPFilter": "bgpfilters"}
ENCAP = {"Always": "always", "CrossSubnet": "cross-subnet", "Never": "", None: ""}
ANNOTATIONS = {"IPv4Address": "ipv4Address", "IPv6Address": "ipv6Address",
               "ASNumber": "asNumber", "RouteReflectorClusterID": "routeReflectorClusterID",
               "IPv4IPIPTunnelAddr": "ipv4IPIPTunnelAddr"}


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


def kvs_of(manifests: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The KVs Typha sends for a cluster the API server holds as ``manifests``
    (``libcalico-go``'s model: v3 resources, Calico Nodes, v1 pools, affinity keys)."""
    out = []
    for rev, doc in enumerate(manifests, start=100):
        kind, meta = doc["kind"], doc["metadata"]
        name = meta["name"]
        if kind in PLURALS:
            value = {"kind": kind, "apiVersion": V3,
                     "metadata": {"name": name, "labels": meta.get("labels") or {}},
                     "spec": doc.get("spec") or {}}
            out.append(kv(f"/calico/resources/v3/projectcalico.org/{PLURALS[kind]}/{name}",
                          value, rev))
        elif kind == "Node":
            annotations = meta.get("annotations") or {}
            bgp = {field: annotations[f"projectcalico.org/{a}"]
                   for a, field in ANNOTATIONS.items() if f"projectcalico.org/{a}" in annotations}
            if "asNumber" in bgp:
                bgp["asNumber"] = int(bgp["asNumber"])
            value = {"kind": "Node", "apiVersion": V3,
                     "metadata": {"name": name, "labels": meta.get("labels") or {}},
                     "spec": {"bgp": bgp} if bgp else {}}
            out.append(kv(f"/calico/resources/v3/projectcalico.org/nodes/{name}", value, rev))
        elif kind == "IPPool":
            spec = doc["spec"]
            cidr = spec["cidr"]
            version = 6 if ":" in cidr else 4
            value = {"cidr": cidr, "ipip": "tunl0" if ENCAP[spec.get("ipipMode")] else "",
                     "ipip_mode": ENCAP[spec.get("ipipMode")],
                     "vxlan_mode": ENCAP[spec.get("vxlanMode")], "masquerade": True,
                     "ipam": not spec.get("disabled", False),
                     "disabled": spec.get("disabled", False),
                     "disableBGPExport": spec.get("disableBGPExport", False),
                     "assignment_mode": "Automatic"}
            out.append(kv(f"/calico/v1/ipam/v{version}/pool/{cidr.replace('/', '-')}", value,
                          rev))
        elif kind == "BlockAffinity":
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
                 ping: str = "10s", compress: bool = False) -> None:
        self.binary, self.workdir, self.certs = binary, workdir, certs
        self.client_cn, self.ping, self.compress = client_cn, ping, compress
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
                "--ping", self.ping, *(["--compress"] if self.compress else [])]
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
