"""The lab: a Calico-like cluster on one machine, in network namespaces.

    python -m integration_tests.lab up [--nodes 3] [--mode ipip|crosssubnet|never]
                                       [--bird-nodes K] [--tor bird|frr|gobgp|none]
                                       [--ipv6] [--state-dir DIR]
    python -m integration_tests.lab exec NODE [--pod I] -- CMD...
    python -m integration_tests.lab switch NODE --to bgpd|bird
    python -m integration_tests.lab down [--state-dir DIR]

``up`` builds nodes (``eth0`` on a shared fabric, ``tunl0``, two pods each with Felix's ``/32``
route), starts the Kubernetes API test server loaded with the cluster's Calico resources (IPPool
172.17.0.0/12 with /24 blocks, Nodes, BlockAffinities, the default BGPConfiguration), runs bgpd
on each node — or BIRD 2 configured as Calico's confd does on the first K, started as
calico-node starts it (``bird -R``) — and a top-of-rack router, waits for the routes, prints each
node's routes, ``bgpd status`` and a pod-to-pod ping matrix, and leaves everything running.
``--ipv6`` makes it dual stack as Calico runs it (see :mod:`integration_tests.cluster`): an IPv6
pool of /122 blocks beside the IPv4 one, nodes, pods and the ToR with both families, the BIRD
nodes configured as confd configures bird and bird6, and a ping6 matrix too. ``switch`` turns a
BIRD node into a bgpd node as docs/switching.md does it (``bgpd takeover``, then bgpd started at
once), or a bgpd node into a BIRD node (bgpd stopped by SIGTERM, which withdraws nothing, then
BIRD 2 started with ``-R`` from the configuration confd would give it). It writes
``DIR/kubeconfig`` (for ``kubectl``) and ``DIR/lab.json``. ``down`` removes all of it, also
after a crash (it finds its namespaces by their ``bgpdlab-`` names).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from integration_tests.cluster import BGPD, TOR_IP, Cluster
from integration_tests.netns import Namespace, NetLab, list_namespaces, sh
from integration_tests.waiting import WaitTimeout, wait_for

PREFIX = "bgpdlab"
API_IP, API_PORT = "198.51.100.250", 6443
MODES = {"ipip": "Always", "crosssubnet": "CrossSubnet", "never": "Never"}


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": server}}],
        "users": [{"name": "lab", "user": {}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab",
                                                 "namespace": "calico-system"}}]}))
    return path


def start_api(state: Path, cluster: Cluster, api_ns: Namespace) -> tuple[int, int]:
    port_file = state / "api.port"
    port_file.unlink(missing_ok=True)
    log = open(state / "api.log", "ab")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "integration_tests.kube_server", "--load",
         str(cluster.resources / "cluster.yaml"), "--port-file", str(port_file),
         "--netns-listen", api_ns.name, API_IP, str(API_PORT)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        cwd=Path(__file__).resolve().parents[2])
    with contextlib.suppress(WaitTimeout):
        wait_for(lambda: port_file.exists() or proc.poll() is not None, 30,
                 "the test API server", interval=0.1)
    if not port_file.exists():
        raise SystemExit(f"the test API server did not start (see {state / 'api.log'})")
    return proc.pid, int(port_file.read_text())


def up(args: argparse.Namespace) -> int:
    state = Path(args.state_dir).resolve()
    down_quietly(state)
    state.mkdir(parents=True, exist_ok=True)
    lab = NetLab(stable_prefix=PREFIX)
    mode = MODES[args.mode]
    tor = None if args.tor == "none" else {"bird": "bird2"}.get(args.tor, args.tor)
    cluster = Cluster(lab, state, nodes=args.nodes, mode=mode, pods=2, tor=tor or False,
                      tor_originate=(), bird_nodes=args.bird_nodes, datastore="kubernetes",
                      kubeconfig=state / "kubeconfig-nodes", ipv6=args.ipv6,
                      bird_restarting=True)
    api_ns = lab.namespace("api")
    port = f"v{len(lab.namespaces)}"
    lab.veth(api_ns, "eth0", cluster.fabric, port)
    lab.attach(cluster.fabric, port, "br0")
    lab.address(api_ns, "eth0", f"{API_IP}/24")
    api_pid, api_port = start_api(state, cluster, api_ns)
    write_kubeconfig(state / "kubeconfig", f"http://127.0.0.1:{api_port}")
    write_kubeconfig(state / "kubeconfig-nodes", f"http://{API_IP}:{API_PORT}")
    if cluster.router_ns is not None:  # nodes on the second subnet reach the API server
        api_ns.ip("route", "add", "198.51.101.0/24", "via", "198.51.100.254")
    cluster.start_all()
    for n in cluster.nodes:  # what `switch` starts: bgpd's settings, BIRD's configuration
        if n.speaker == "bird":
            cluster.settings(n)
        else:
            (n.workdir / "bird").mkdir(parents=True, exist_ok=True)
            (n.workdir / "bird" / "bird.conf").write_text(cluster.bird_config(n))
    print(f"lab: {args.nodes} nodes ({args.bird_nodes} running BIRD), mode {mode}, "
          f"tunl0: {cluster.nodes[0].tunl0}, ToR: {args.tor}"
          + (", dual stack" if args.ipv6 else ""))
    converge(cluster)
    record(state, cluster, api_pid, api_port)
    summary(cluster, state)
    return 0


def converge(cluster: Cluster, timeout: float = 90) -> None:
    try:
        took = cluster.wait(cluster.blocks_everywhere, timeout, "every node to learn every block")
        print(f"converged in {took:.1f}s")
    except AssertionError as exc:
        print(f"not converged: {str(exc).splitlines()[0]}")


def record(state: Path, cluster: Cluster, api_pid: int, api_port: int) -> None:
    data: dict[str, Any] = {
        "nodes": [{"name": n.name, "namespace": n.ns.name, "node_ip": n.ip, "block": n.block,
                   "pod_ips": n.pod_ips, "pod_namespaces": [p.name for p in n.pods],
                   "node_ip6": n.ip6 or None, "block6": n.block6 if n.ip6 else None,
                   "pod_ips6": n.pod_ips6,
                   "speaker": n.speaker, "tunl0": n.tunl0,
                   "pid": n.proc.pid if n.proc else None,
                   "bird_pidfile": str(n.bird.workdir / "pid") if n.bird else None,
                   "bird_socket": n.bird.sock if n.bird else None,
                   "settings": str(n.workdir / "bgpd.yaml"),
                   "socket": str(n.socket)} for n in cluster.nodes],
        "tor": ({"kind": cluster.tor.kind, "address": TOR_IP, "namespace": cluster.tor.ns.name,
                 "pidfile": str(cluster.tor.workdir / "pid")} if cluster.tor else None),
        "fabric": {"namespace": cluster.fabric.name, "mode": cluster.mode,
                   "subnets": ["198.51.100.0/24"]
                   + (["198.51.101.0/24"] if cluster.router_ns else [])},
        "api": {"pid": api_pid, "url": f"http://127.0.0.1:{api_port}",
                "kubeconfig": str(state / "kubeconfig")},
    }
    (state / "lab.json").write_text(json.dumps(data, indent=2) + "\n")


def summary(cluster: Cluster, state: Path) -> None:
    for n in cluster.nodes:
        print(f"\n=== {n.name} ({n.speaker}, {n.ip}) — ip route ===")
        for line in n.ns.routes():
            print("  " + line)
        if n.ip6:
            print(f"=== {n.name} ({n.ip6}) — ip -6 route ===")
            for line in n.ns.routes(family=6):
                print("  " + line)
        if n.speaker == "bgpd":
            with contextlib.suppress(Exception):
                print(cluster.bgpd(n, "status"))
    matrix(cluster, "ping", [(n, i, ip) for n in cluster.nodes for i, ip in enumerate(n.pod_ips)])
    if cluster.ipv6:
        matrix(cluster, "ping6", [(n, i, ip) for n in cluster.nodes
                                  for i, ip in enumerate(n.pod_ips6)])
    if cluster.mode != "Never":
        kind = cluster.nodes[0].tunl0
        why = {"ipip": "Linux's IPIP device",
               "userspace-ipip": "a TUN device and python -m integration_tests.ipip per node, "
                                 "as this kernel has no ipip module; the fabric carries real "
                                 "IP-in-IP (tcpdump -n proto 4)"}.get(kind, kind)
        print(f"\n(tunl0 here is {why}.)")
    print(f"\nkubectl --kubeconfig {state / 'kubeconfig'} get bgppeers,nodes")
    print(f"kubectl --kubeconfig {state / 'kubeconfig'} apply -f config/examples/40-tor-peer.yaml")
    print("python -m integration_tests.lab exec node-0 -- ip route")
    print(f"python -m integration_tests.lab down --state-dir {state}")


def matrix(cluster: Cluster, what: str, pods: list[tuple[Any, int, str]]) -> None:
    width = max(len(ip) for _, _, ip in pods) + 2
    print(f"\n=== pod-to-pod {what} matrix (1 packet each) ===")
    print("from \\ to".ljust(width) + " ".join(ip.ljust(width) for _, _, ip in pods))
    for src_node, i, src_ip in pods:
        cells = []
        for dst_node, _, dst_ip in pods:
            if dst_node is src_node:
                cells.append("-".ljust(width))
            else:
                ok = cluster.ping(src_node.pods[i], dst_ip)
                cells.append(("ok" if ok else "LOST").ljust(width))
        print(src_ip.ljust(width) + " ".join(cells))


def _kill(pid: int | None, *, group: bool = False) -> None:
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def _pidfile(path: str | None) -> int | None:
    try:
        return int(Path(path).read_text().strip()) if path else None
    except (OSError, ValueError):
        return None


def down_quietly(state: Path) -> list[str]:
    lab_json = state / "lab.json"
    if lab_json.exists():
        with contextlib.suppress(json.JSONDecodeError, KeyError):
            data = json.loads(lab_json.read_text())
            for n in data["nodes"]:
                _kill(n.get("pid"), group=True)
                _kill(_pidfile(n.get("bird_pidfile")))
            if data.get("tor"):
                _kill(_pidfile(data["tor"].get("pidfile")))
            _kill(data["api"].get("pid"), group=True)
    removed = []
    for name in list_namespaces():
        if name.startswith(f"{PREFIX}-"):
            for pid in sh("ip", "netns", "pids", name, check=False).split():
                _kill(int(pid))
            sh("ip", "netns", "del", name, check=False)
            removed.append(name)
    return removed


def down(args: argparse.Namespace) -> int:
    state = Path(args.state_dir).resolve()
    removed = down_quietly(state)
    if state.exists() and (state / "lab.json").exists():
        shutil.rmtree(state)
    print(f"lab down: removed {len(removed)} namespaces")
    return 0


def read_lab(state: Path) -> dict[str, Any]:
    """The running lab's description, or one line saying there is none."""
    try:
        data: dict[str, Any] = json.loads((state / "lab.json").read_text())
    except FileNotFoundError:
        raise SystemExit(f"no lab in {state}: start one with "
                         "`python -m integration_tests.lab up`") from None
    except ValueError as exc:
        raise SystemExit(f"{state / 'lab.json'} is not readable ({exc}): "
                         "`python -m integration_tests.lab down` clears it") from None
    return data


def _exec_options(args: argparse.Namespace) -> list[str]:
    """``exec NODE [--pod I] [--state-dir D] [--] CMD...``: the options may follow the node
    name (as README shows them); the command is what follows ``--``, or the first word that
    is no option."""
    rest = list(args.command)
    options = argparse.ArgumentParser(prog="python -m integration_tests.lab exec NODE")
    options.add_argument("--pod", type=int)
    options.add_argument("--state-dir")
    split = rest.index("--") if "--" in rest else next(
        (i for i, word in enumerate(rest) if not word.startswith("-")
         and (i == 0 or rest[i - 1] not in ("--pod", "--state-dir"))), len(rest))
    parsed = options.parse_args(rest[:split])
    if parsed.pod is not None:
        args.pod = parsed.pod
    if parsed.state_dir:
        args.state_dir = parsed.state_dir
    command = rest[split + 1:] if rest[split:split + 1] == ["--"] else rest[split:]
    if not command:
        raise SystemExit("no command to run: exec NODE [--pod I] -- CMD...")
    return command


def lab_exec(args: argparse.Namespace) -> int:
    command = _exec_options(args)
    data = read_lab(Path(args.state_dir))
    node = next((n for n in data["nodes"] if n["name"] == args.node), None)
    if node is None:
        raise SystemExit(f"no node {args.node!r} (nodes: "
                         f"{', '.join(n['name'] for n in data['nodes'])})")
    pods = node["pod_namespaces"]
    if args.pod is not None and not 0 <= args.pod < len(pods):
        raise SystemExit(f"{args.node} has no pod {args.pod} (pods: 0..{len(pods) - 1})")
    ns = pods[args.pod] if args.pod is not None else node["namespace"]
    return subprocess.call(["ip", "netns", "exec", ns, *command])


def switch(args: argparse.Namespace) -> int:
    """``switch NODE --to bgpd``: a BIRD node becomes a bgpd node as README's switch does it
    — ``bgpd takeover`` (BIRD leaves without a Cease), then bgpd started at once.
    ``--to bird``: bgpd stopped by SIGTERM (it withdraws nothing; its peers keep its routes
    for their restart time), then BIRD 2 started as calico-node starts it (``bird -R``)."""
    state = Path(args.state_dir)
    data = read_lab(state)
    source = "bird" if args.to == "bgpd" else "bgpd"
    node = next((n for n in data["nodes"] if n["name"] == args.node), None)
    if node is None or node["speaker"] != source:
        raise SystemExit(f"{args.node} is not a {source} node of the lab ({source} nodes: "
                         + ", ".join(n["name"] for n in data["nodes"] if n["speaker"] == source)
                         + ")")
    ns, workdir = node["namespace"], Path(node["settings"]).parent
    if args.to == "bird":
        return _to_bird(state, data, node, ns, workdir)
    took = subprocess.run(["ip", "netns", "exec", ns, *BGPD, "takeover", "--bird-socket",
                           node["bird_socket"]], capture_output=True, text=True)
    print((took.stdout + took.stderr).strip())
    if took.returncode:
        return took.returncode
    with open(workdir / "bgpd.log", "ab") as log:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *BGPD, "run", "--config",
                                 node["settings"]], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True)
    node.update(speaker="bgpd", pid=proc.pid, bird_pidfile=None, bird_socket=None)
    (state / "lab.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"{args.node}: bgpd started (pid {proc.pid}, log {workdir / 'bgpd.log'}); "
          f"`.venv/bin/bgpd status --socket {node['socket']}` shows its sessions")
    return 0


def _to_bird(state: Path, data: dict[str, Any], node: dict[str, Any], ns: str,
             workdir: Path) -> int:
    bird = workdir / "bird"
    if not (bird / "bird.conf").exists():
        raise SystemExit(f"{node['name']} has no BIRD configuration ({bird / 'bird.conf'}; "
                         "`up` writes one for every node): bring the lab up again")
    pid = node["pid"]
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid):
            if time.monotonic() > deadline:
                raise SystemExit(f"bgpd (pid {pid}) on {node['name']} did not stop in 30 s")
            time.sleep(0.05)
    sock, pidfile = bird / "bird.ctl", bird / "pid"
    subprocess.run(["ip", "netns", "exec", ns, "bird", "-R", "-c", str(bird / "bird.conf"),
                    "-s", str(sock), "-P", str(pidfile)], check=True)
    node.update(speaker="bird", pid=None, bird_pidfile=str(pidfile), bird_socket=str(sock))
    (state / "lab.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"{node['name']}: bgpd stopped, BIRD 2 started with -R (socket {sock}); "
          f"`ip netns exec {ns} birdc -s {sock} show protocols` shows its sessions")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie (the lab's own child) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m integration_tests.lab",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", default="/tmp/bgpd-lab")
    sub = parser.add_subparsers(dest="action", required=True)
    p_up = sub.add_parser("up", help="build the lab and leave it running")
    p_up.add_argument("--nodes", type=int, default=3)
    p_up.add_argument("--mode", choices=list(MODES), default="ipip")
    p_up.add_argument("--bird-nodes", type=int, default=0)
    p_up.add_argument("--tor", choices=["bird", "frr", "gobgp", "none"], default="bird")
    p_up.add_argument("--ipv6", action="store_true",
                      help="dual stack: an IPv6 pool, addresses and sessions beside IPv4's")
    p_up.add_argument("--state-dir", dest="state_dir_up")
    p_up.set_defaults(func=up)
    p_down = sub.add_parser("down", help="remove everything the lab made")
    p_down.add_argument("--state-dir", dest="state_dir_down")
    p_down.set_defaults(func=down)
    p_exec = sub.add_parser("exec", help="run a command in a node (or one of its pods)")
    p_exec.add_argument("node")
    p_exec.add_argument("--pod", type=int)
    p_exec.add_argument("command", nargs=argparse.REMAINDER,
                        help="[--pod I] [--state-dir D] -- CMD...")
    p_exec.set_defaults(func=lab_exec)
    p_switch = sub.add_parser("switch", help="a BIRD node to bgpd (bgpd takeover, then bgpd "
                                             "started) or back (bgpd stopped, bird -R), "
                                             "losing nothing")
    p_switch.add_argument("node")
    p_switch.add_argument("--to", choices=["bgpd", "bird"], default="bgpd")
    p_switch.set_defaults(func=switch)
    args = parser.parse_args()
    for key in ("state_dir_up", "state_dir_down"):
        if getattr(args, key, None):
            args.state_dir = getattr(args, key)
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root (network namespaces)")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
