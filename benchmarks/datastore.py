"""The datastore's cost to the API server: one node's controller watching a large cluster.

    python -m benchmarks.datastore --nodes 600[,5000] [--compare] [--typha] [--seconds 5]

The API test server (:mod:`integration_tests.kube_server`) holds ``--nodes`` Node objects sized
like real ones (labels, Calico and kubeadm annotations, managedFields of kubeadm, kubelet,
the controller manager and calico-node, a status with conditions, addresses and 30 images:
about 10 KB each as JSON), one BlockAffinity per node (labelled as Calico >= 3.31 labels them:
the controller lists only its own), an IPPool and the BGPConfiguration.
One node's controller (``node-0``, the daemon's datastore side and nothing else) runs as a
child process; the server counts what it sends to it.  Reported per mode:

* initial sync: requests, bytes (as sent: lists over 128 KiB are gzipped, as the API server
  does; and before compression), seconds from the controller's start to a complete
  DesiredConfig (a mesh peer per other node; the client library's import is timed apart,
  the daemon does it before it starts), and the child's RSS;
* steady state: kubelet status updates of the other nodes at 2, 17 and 60 per second (a
  600-node cluster reporting every 5 min, 35 s, 10 s) for ``--seconds`` each: bytes per
  event, bytes per second, the child's CPU; extrapolated to the cluster (every node's
  daemon receives the same);
* a reset: every connection cut (the server restarted, its history kept): the bytes sent
  until every watch is streaming again, against the initial sync's;
* the RSS of the same child reading the same objects from a static folder (no client).

``--compare`` runs the other nodes as whole objects (``node_objects: full``, the behaviour
before metadata-only watches) as the baseline in the same run.  ``--typha`` runs the Calico
resources through Typha (the stand-in of ``integration_tests/typha_standin``, TCP without
TLS, snappy-compressed as Typha compresses for a client that offers it, serving the same
cluster as Calico's model; the ClusterInformation still from the API):
bytes are then what the API and Typha together send the node; Typha sends nothing for a
status update (it drops updates that change no Calico resource), and after a reset it sends
its whole state again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import report
from benchmarks.dut import cpu_seconds, rss_mb
from integration_tests.kube_server import KubeServer, kubeconfig
from integration_tests.typha_cluster import StandIn, build, kvs_of
from integration_tests.waiting import wait_for

RATES = (2, 17, 60)
WATCHERS = 7  # this node, the other nodes, five Calico kinds
CALICO = "crd.projectcalico.org/v1"


def _address(i: int) -> str:
    return f"10.{(i >> 8) & 255}.{i & 255}.10"


def _pod_cidr(i: int) -> str:
    return f"10.{244 + (i >> 8)}.{i & 255}.0/24"  # kube-controller-manager's, one per node


def node_doc(i: int) -> dict[str, Any]:
    """Node ``node-i`` as the API shows it on a kubeadm cluster running Calico."""
    name, address = f"node-{i}", _address(i)
    images = [{"names": [f"registry.example.com/team/app-{j}@sha256:{j:064x}",
                         f"registry.example.com/team/app-{j}:v1.{j}.0"],
               "sizeBytes": 10_000_000 + j} for j in range(30)]
    conditions = [{"type": kind, "status": "False", "reason": f"Kubelet{reason}",
                   "message": f"kubelet {text}", "lastHeartbeatTime": "2026-12-01T00:00:00Z",
                   "lastTransitionTime": "2026-11-01T00:00:00Z"}
                  for kind, reason, text in (
                      ("MemoryPressure", "HasSufficientMemory", "has sufficient memory"),
                      ("DiskPressure", "HasNoDiskPressure", "has no disk pressure"),
                      ("PIDPressure", "HasSufficientPID", "has sufficient PID available"))]
    conditions += [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": "2026-12-01T00:00:00Z",
                    "lastTransitionTime": "2026-11-01T00:00:00Z"},
                   {"type": "NetworkUnavailable", "status": "False",
                    "reason": "CalicoIsUp", "message": "Calico is running on this node",
                    "lastHeartbeatTime": "2026-11-01T00:00:00Z",
                    "lastTransitionTime": "2026-11-01T00:00:00Z"}]

    def fields(*keys: str) -> dict[str, Any]:
        return {k: {} for k in keys}

    managed = [
        {"manager": "kubeadm", "operation": "Update", "apiVersion": "v1",
         "time": "2026-11-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {
             "f:metadata": {"f:annotations": fields(
                 "f:kubeadm.alpha.kubernetes.io/cri-socket"), "f:labels": fields(
                 "f:node-role.kubernetes.io/worker")}}},
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
         "time": "2026-11-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {
             "f:metadata": {"f:annotations": fields("f:node.alpha.kubernetes.io/ttl")},
             "f:spec": fields("f:podCIDR", "f:podCIDRs")}},
        {"manager": "calico-node", "operation": "Update", "apiVersion": "v1",
         "time": "2026-11-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {
             "f:metadata": {"f:annotations": fields(
                 "f:projectcalico.org/IPv4Address", "f:projectcalico.org/IPv4IPIPTunnelAddr")},
             "f:status": {"f:conditions": {'k:{"type":"NetworkUnavailable"}': fields(
                 ".", "f:lastHeartbeatTime", "f:lastTransitionTime", "f:message",
                 "f:reason", "f:status", "f:type")}}}, "subresource": "status"},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
         "time": "2026-11-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {
             "f:metadata": {"f:annotations": fields(
                 ".", "f:volumes.kubernetes.io/controller-managed-attach-detach"),
                 "f:labels": fields(".", "f:beta.kubernetes.io/arch", "f:beta.kubernetes.io/os",
                                    "f:kubernetes.io/arch", "f:kubernetes.io/hostname",
                                    "f:kubernetes.io/os")}}},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
         "time": "2026-12-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {
             "f:status": {"f:allocatable": fields("f:cpu", "f:ephemeral-storage", "f:memory",
                                                  "f:pods"),
                          "f:capacity": fields("f:cpu", "f:ephemeral-storage", "f:memory",
                                               "f:pods"),
                          "f:conditions": {f'k:{{"type":"{c["type"]}"}}': fields(
                              "f:lastHeartbeatTime", "f:lastTransitionTime", "f:message",
                              "f:reason", "f:status") for c in conditions[:4]},
                          "f:images": {}, "f:nodeInfo": fields("f:bootID", "f:kernelVersion")}},
         "subresource": "status"},
    ]
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": f"{i:08x}-0000-4000-8000-{i:012x}",
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "labels": {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
                       "kubernetes.io/os": "linux", "node-role.kubernetes.io/worker": "",
                       "topology.kubernetes.io/zone": f"rack-{i // 40}"},
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "projectcalico.org/IPv4Address": f"{address}/16",
                "projectcalico.org/IPv4IPIPTunnelAddr": f"172.{16 + (i >> 8)}.{i & 255}.1",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
            "managedFields": managed,
        },
        "spec": {"podCIDR": _pod_cidr(i), "podCIDRs": [_pod_cidr(i)]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": address},
                          {"type": "Hostname", "address": name}],
            "allocatable": {"cpu": "64", "ephemeral-storage": "900000000000",
                            "memory": "263000000Ki", "pods": "110"},
            "capacity": {"cpu": "64", "ephemeral-storage": "960000000Ki",
                         "memory": "264000000Ki", "pods": "110"},
            "conditions": conditions,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "images": images,
            "nodeInfo": {"architecture": "amd64", "bootID": f"{i:032x}",
                         "containerRuntimeVersion": "containerd://1.7.22",
                         "kernelVersion": "6.8.0-45-generic", "kubeProxyVersion": "v1.30.5",
                         "kubeletVersion": "v1.30.5", "machineID": f"{i:032x}",
                         "operatingSystem": "linux", "osImage": "Ubuntu 24.04.1 LTS",
                         "systemUUID": f"{i:08x}-0000-0000-0000-000000000000"}},
    }


def cluster(nodes: int, *, ipam: str = "calico", block_size: int = 26) -> list[dict[str, Any]]:
    """The cluster's resources: Calico IPAM (``ipam="calico"``: a pool of 172.16.0.0/12 cut
    into ``block_size`` blocks, one affine to each node), or host-local IPAM
    (``"host-local"``: each node's block is its pod CIDR, the pool the cluster CIDR, no
    BlockAffinity)."""
    # here, not at the top: the child times the client library's import itself
    from node_controller.kube import HOSTNAME_HASH, hostname_hash

    pool = ({"cidr": "172.16.0.0/12", "blockSize": block_size, "ipipMode": "Always"}
            if ipam == "calico" else {"cidr": "10.244.0.0/14", "ipipMode": "Always"})
    docs: list[dict[str, Any]] = [
        {"apiVersion": CALICO, "kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": True}},
        {"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": "pool"}, "spec": pool}]
    for i in range(nodes):
        docs.append(node_doc(i))
        if ipam != "calico":
            continue
        block = f"172.{16 + (i >> 8)}.{i & 255}.0/{block_size}"
        docs.append({"apiVersion": CALICO, "kind": "BlockAffinity",
                     "metadata": {"name": f"node-{i}-{block.replace('.', '-').replace('/', '-')}",
                                  "labels": {HOSTNAME_HASH: hostname_hash(f"node-{i}"),
                                             "projectcalico.org/affinity-type": "host",
                                             "projectcalico.org/ip-version": "4"}},
                     "spec": {"node": f"node-{i}", "cidr": block, "state": "confirmed",
                              "deleted": "false"}})
    return docs


# --- the child: one node's controller -----------------------------------------------------
async def _child(args: argparse.Namespace) -> None:
    import structlog

    from node_controller.controller import Controller

    # stdout carries this child's reports; its log goes to stderr, warnings and above
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr),
                        wrapper_class=structlog.make_filtering_bound_logger(30))
    began = time.monotonic()
    if not args.static:
        import node_controller.kube  # noqa: F401  (the client library: timed apart)
    imported = time.monotonic()
    controller = Controller("node-0")
    start = time.monotonic()
    if args.static:
        task = asyncio.create_task(controller.run_static(Path(args.static)))
    else:
        typha = None
        if os.environ.get("FELIX_TYPHAADDR"):
            from node_controller.typha import TyphaConfig

            typha = TyphaConfig.from_environ(os.environ)
        task = asyncio.create_task(controller.run_kubernetes(
            kubeconfig=args.kubeconfig, namespace="calico-system",
            node_objects=args.node_objects, typha=typha))
    while True:
        config = controller.desired.value
        if config is not None and len(config.peers) >= args.expect:
            break
        await asyncio.sleep(0.005)
    print(json.dumps({"desired_s": round(time.monotonic() - start, 3),
                      "import_s": round(imported - began, 3)}), flush=True)
    if args.static:
        await task
    watchers = controller.watchers
    report = Path(args.report) if args.report else None
    while True:  # say when every watch streams (after a reset), and what Typha sent so far
        up = all(w.up(time.monotonic()) for w in watchers) if watchers else True
        print(json.dumps({"up": up}), flush=True)
        if report is not None:
            report.with_suffix(".tmp").write_text(str(sum(
                getattr(w, "bytes_received", 0) for w in watchers)))
            report.with_suffix(".tmp").replace(report)
        await asyncio.sleep(0.1)


class Child:
    def __init__(self, *extra: str, env: dict[str, str] | None = None,
                 report: Path | None = None) -> None:
        self.report = report
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.datastore", "--child", *extra,
             *(["--report", str(report)] if report else [])],
            stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.started = time.monotonic()

    def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            raise SystemExit(f"the controller exited ({self.proc.wait()})")
        data: dict[str, Any] = json.loads(text)
        return data

    def wait_up(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.line().get("up"):
                return True
        return False

    def typha_bytes(self) -> int:
        """What Typha has sent so far (the child's report, at most 0.1 s old)."""
        if self.report is None:
            return 0
        time.sleep(0.25)
        try:
            return int(self.report.read_text() or 0)
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _heartbeat(server: KubeServer, i: int, beat: int) -> None:
    """A kubelet status update of node ``i``: heartbeat times and the manager's time."""
    obj = server.get("Node", f"node-{i}")
    stamp = f"2026-12-01T{beat // 3600 % 24:02d}:{beat // 60 % 60:02d}:{beat % 60:02d}Z"
    for condition in obj["status"]["conditions"][:4]:
        condition["lastHeartbeatTime"] = stamp
    obj["metadata"]["managedFields"][-1]["time"] = stamp
    server.put(obj)


def run(nodes: int, mode: str, *, seconds: float, workdir: Path) -> dict[str, Any]:
    docs = cluster(nodes)
    server = KubeServer(bookmark_interval=1.0).start()
    standin: StandIn | None = None
    env = {}
    if mode == "typha":  # the Calico resources from Typha (the stand-in: TCP, snappy)
        standin = StandIn(build(workdir / "typha-standin"), workdir / "typha", kvs_of(docs))
        standin.start()
        env = {"FELIX_TYPHAADDR": standin.address}
    try:
        for doc in docs:
            server.put(doc)
        config = kubeconfig(server, workdir / "kubeconfig")
        child = Child("--kubeconfig", str(config), "--node-objects",
                      "metadata" if mode == "typha" else mode, "--expect", str(nodes - 1),
                      env=env, report=workdir / "typha-bytes" if standin else None)
        try:
            first = child.line()
            synced_wall = time.monotonic() - child.started
            traffic = server.traffic.setdefault("127.0.0.1", [0, 0, 0])
            typha_initial = child.typha_bytes()
            initial = {"requests": traffic[0], "bytes": traffic[1] + typha_initial,
                       "typha_bytes": typha_initial,
                       "bytes_uncompressed": traffic[2] + typha_initial,
                       "desired_s": first["desired_s"], "client_import_s": first["import_s"],
                       "process_start_to_desired_s":
                       round(synced_wall, 3), "rss_mb": round(rss_mb([child.proc.pid]), 1),
                       "cache_lists": server.cache_lists, "quorum_lists": server.quorum_lists}
            child.wait_up(30)
            steady = []
            beat = 0
            for rate in RATES:
                typha_sent = child.typha_bytes()
                sent, cpu, start = traffic[1], cpu_seconds([child.proc.pid]), time.monotonic()
                events = 0
                while (elapsed := time.monotonic() - start) < seconds:
                    while events < elapsed * rate:
                        _heartbeat(server, 1 + beat % (nodes - 1), beat)
                        beat += 1
                        events += 1
                    time.sleep(0.005)
                time.sleep(0.3)  # the last events delivered
                took = time.monotonic() - start
                got = traffic[1] - sent + child.typha_bytes() - typha_sent
                steady.append({"updates_per_s": rate, "events": events,
                               "bytes_per_event": round(got / max(events, 1)),
                               "bytes_per_s": round(got / took),
                               "cluster_egress_mb_per_s": round(got / took * nodes / 1e6, 2),
                               "cpu_pct": round(100 * (cpu_seconds([child.proc.pid]) - cpu)
                                                / took, 1)})
            typha_before = child.typha_bytes()
            before, requests = traffic[1] + typha_before, traffic[0]
            lists_before = server.cache_lists + server.quorum_lists
            watchers = 1 if standin is not None else WATCHERS  # Typha: ClusterInformation
            server.stop()
            server.start()
            if standin is not None:  # Typha restarted too: it sends its whole state again
                standin.stop()
                standin.start()
            wait_for(lambda: traffic[0] >= requests + watchers, 30, "every watcher back")
            if standin is not None:
                wait_for(lambda: standin is not None and standin.log().count("hello from") >= 2,
                         30, "the node back on Typha")
            reconnected = child.wait_up(30)
            time.sleep(1.5)  # a bookmark each
            if standin is not None:  # until the snapshot is in
                wait_for(lambda: child.typha_bytes() - typha_before >= typha_initial, 30,
                         "Typha's snapshot again")
            after = traffic[1] + child.typha_bytes()
            reset = {"bytes": after - before, "pct_of_initial": round(
                100 * (after - before) / max(initial["bytes"], 1), 2),
                "requests": traffic[0] - requests,
                "lists": server.cache_lists + server.quorum_lists - lists_before,
                "watches_up": reconnected and traffic[0] >= requests + watchers}
        finally:
            child.stop()
    finally:
        server.stop()
        if standin is not None:
            standin.stop()
    return {"nodes": nodes, "node_objects": mode, "initial": initial, "steady": steady,
            "reset": reset}


def static_rss(nodes: int, workdir: Path) -> float:
    folder = workdir / "static"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cluster.yaml").write_text(yaml.safe_dump_all(cluster(nodes)))
    child = Child("--static", str(folder), "--expect", str(nodes - 1))
    try:
        child.line()
        child.line()
        return round(rss_mb([child.proc.pid]), 1)
    finally:
        child.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="600")
    parser.add_argument("--compare", action="store_true",
                        help="also run with the other nodes as whole objects (the baseline)")
    parser.add_argument("--typha", action="store_true",
                        help="also run with the Calico resources from Typha (the stand-in)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="how long each steady-state rate runs")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    parser.add_argument("--static", help=argparse.SUPPRESS)
    parser.add_argument("--node-objects", default="metadata", help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args))
        return
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for nodes in (int(n) for n in args.nodes.split(",")):
            modes = ["metadata", *(["full"] if args.compare else []),
                     *(["typha"] if args.typha else [])]
            for mode in modes:
                result = run(nodes, mode, seconds=args.seconds, workdir=Path(tmp))
                result["static_rss_mb"] = static_rss(nodes, Path(tmp))
                print(json.dumps(result), flush=True)
                runs.append(result)
    report("datastore", {"runs": runs}, save=not args.no_save)


if __name__ == "__main__":
    main()
