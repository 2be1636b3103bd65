"""A Calico-like cluster in namespaces: nodes running bgpd (or BIRD), pods, a ToR peer.

Each node is a namespace with ``eth0`` on a shared bridge (the fabric), a ``tunl0`` (real
IPIP where the kernel has it, else the userspace IPIP of :mod:`integration_tests.ipip`)
and optionally pods: namespaces behind a ``cali…`` veth, with the ``/32`` route Felix would
set (proto boot).  The Calico resources describing the cluster are written to a folder, and
each bgpd runs in its node's namespace in static mode over that folder (the closest honest
substitute for the API server when a test does not need the API itself).

Addresses: nodes 198.51.100.11.. /24, the ToR 198.51.100.1, blocks 172.17.<i>.0/24.  With
``ipv6``, dual stack as Calico runs it: nodes also fd00:198:51:100::11.. /64 (annotated
``IPv6Address``), the ToR fd00:198:51:100::1, an IPv6 pool fd00:10::/48 of /122 blocks
(``fd00:10::<i>:0/122``, never encapsulated: IPIP carries IPv4 only), pods with an IPv6
address whose default route is Calico's (``via fe80::ecee:eeff:feee:eeee``: Calico's CNI
plugin gives the host side of a ``cali`` veth the MAC ee:ee:ee:ee:ee:ee and routes the pod
through that MAC's link-local address — ``hostSideMAC`` and ``hostSideMACAsIPv6LL`` in
``cni-plugin/pkg/dataplane/linux/dataplane_linux.go``).  A BIRD node's IPv6 half is what
confd renders into bird6.cfg: the sessions, names, source address and passive rule of
``processMeshPeers`` and ``buildPeerFromData`` (``confd/pkg/backends/calico/
bgp_processor.go``) between the nodes' IPv6 addresses, in the same BIRD 2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from integration_tests.netns import Namespace, NetLab, sh, tunl0
from integration_tests.peers import ROUTERS, Bird1, Bird2, Neighbor, Router
from integration_tests.waiting import wait_for
from node_controller.kube import HOSTNAME_HASH, hostname_hash

NODE_AS, TOR_AS = 64512, 65000
TOR_IP = "198.51.100.1"
TOR_IP6 = "fd00:198:51:100::1"
POOL6 = "fd00:10::/48"
CALI_GATEWAY6 = "fe80::ecee:eeff:feee:eeee"  # Calico's pods' IPv6 default gateway
BGPD = [sys.executable, "-m", "bgpd"]


def node_ip(i: int, mode: str = "Always") -> str:
    """Nodes sit on 198.51.100.0/24; with CrossSubnet the odd ones on 198.51.101.0/24."""
    if mode == "CrossSubnet" and i % 2:
        return f"198.51.101.{11 + i}"
    return f"198.51.100.{11 + i}"


def block(i: int) -> str:
    return f"172.17.{i + 1}.0/24"


def node_ip6(i: int, mode: str = "Always") -> str:
    """The IPv6 address beside :func:`node_ip`'s, on the same subnet."""
    subnet = 101 if node_ip(i, mode).startswith("198.51.101.") else 100
    return f"fd00:198:51:{subnet}::{11 + i}"


def block6(i: int) -> str:
    return f"fd00:10::{i + 1}:0/122"


@dataclass
class Node:
    index: int
    name: str
    ns: Namespace
    workdir: Path
    tunl0: str
    pods: list[Namespace] = field(default_factory=list)
    pod_ips: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    speaker: str = "bgpd"  # or "bird": BIRD 2 configured as Calico's confd configures it
    ip: str = ""
    bird: Bird2 | None = None
    extra_blocks: list[str] = field(default_factory=list)  # more blocks for a BIRD node
    # a BIRD node's static routes (the Service addresses confd hands it): announced, never
    # programmed into the kernel
    static_routes: list[str] = field(default_factory=list)
    ip6: str = ""  # dual stack: the node's IPv6 address
    pod_ips6: list[str] = field(default_factory=list)

    @property
    def block(self) -> str:
        return block(self.index)

    @property
    def block6(self) -> str:
        return block6(self.index)

    @property
    def socket(self) -> Path:
        return self.workdir / "bgpd.sock"

    def routes(self) -> set[str]:
        """This node's ``proto bird`` routes as ``ip route`` prints them (``linkdown`` left
        out: the IPIP stand-in has no carrier on some kernels)."""
        return {" ".join(line.split()) for line in self.ns.routes() if "proto bird" in line}

    def routes6(self) -> set[str]:
        """The same for IPv6."""
        return {" ".join(line.split()) for line in self.ns.routes(family=6)
                if "proto bird" in line}


class Cluster:
    def __init__(self, lab: NetLab, workdir: Path, *, nodes: int = 2, mode: str = "Always",
                 pods: int = 0, tor: bool | str = True, tor_originate: tuple[str, ...] = (),
                 bird_nodes: int = 0, datastore: str = "static",
                 kubeconfig: Path | None = None, tor_peer: bool = True,
                 bird_graceful: bool = True, ipv6: bool = False, bird1_nodes: int = 0,
                 bird_restarting: bool = False) -> None:
        self.lab, self.workdir, self.mode = lab, workdir, mode
        # the first ``bird1_nodes`` BIRD nodes run BIRD 1.6 (the lineage calico-node runs;
        # IPv4, plain routes: stock 1.6 cannot write ``dev tunl0 onlink``), the others BIRD 2
        self.bird1_nodes = bird1_nodes
        # BIRD nodes started as calico-node's runit starts BIRD: ``bird -R`` (restarting)
        self.bird_restarting = bird_restarting
        self.ipv6 = ipv6
        self.bird_graceful = bird_graceful  # BIRD nodes: graceful restart on (Calico's) or off
        self.tor_peer = tor_peer
        self.datastore, self.kubeconfig = datastore, kubeconfig
        self.resources = workdir / "resources"
        self.resources.mkdir(parents=True, exist_ok=True)
        self.fabric = lab.namespace("fabric")
        lab.bridge(self.fabric, "br0")
        self.router_ns: Namespace | None = None
        if mode == "CrossSubnet":  # a second subnet behind a router namespace
            lab.bridge(self.fabric, "br1")
            self.router_ns = lab.namespace("router")
            for i, (bridge, cidr) in enumerate((("br0", "198.51.100.254/24"),
                                                ("br1", "198.51.101.254/24"))):
                port = f"r{i}"
                lab.veth(self.router_ns, f"eth{i}", self.fabric, port)
                lab.attach(self.fabric, port, bridge)
                lab.address(self.router_ns, f"eth{i}", cidr)
                if ipv6:
                    lab.address(self.router_ns, f"eth{i}", f"fd00:198:51:{100 + i}::254/64")
            sh("ip", "netns", "exec", self.router_ns.name, "sysctl", "-qw",
               "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        self.nodes = [self._node(i, pods, "bird" if i < bird_nodes else "bgpd")
                      for i in range(nodes)]
        self.tor: Router | None = None
        kind = "bird2" if tor is True else (tor or None)
        if kind:
            ns = self._attach("tor", f"{TOR_IP}/24", "br0")
            if ipv6:
                lab.address(ns, "eth0", f"{TOR_IP6}/64")
            if self.router_ns is not None:
                ns.ip("route", "add", "198.51.101.0/24", "via", "198.51.100.254")
                if ipv6:
                    ns.ip("-6", "route", "add", "fd00:198:51:101::/64", "via",
                          "fd00:198:51:100::254")
            neighbors = [Neighbor(n.ip, NODE_AS, multihop=not n.ip.startswith("198.51.100."))
                         for n in self.nodes]
            neighbors += [Neighbor(n.ip6, NODE_AS, multihop=not n.ip.startswith("198.51.100."))
                          for n in self.nodes if n.ip6]
            self.tor = ROUTERS[str(kind)](
                ns, workdir / "tor", router_id=TOR_IP, asn=TOR_AS,
                neighbors=neighbors, originate=tor_originate)
        self.write_resources()

    def _attach(self, role: str, cidr: str, bridge: str) -> Namespace:
        ns = self.lab.namespace(role)
        port = f"v{len(self.lab.namespaces)}"
        self.lab.veth(ns, "eth0", self.fabric, port)
        self.lab.attach(self.fabric, port, bridge)
        self.lab.address(ns, "eth0", cidr)
        return ns

    def _node(self, i: int, pods: int, speaker: str) -> Node:
        ip = node_ip(i, self.mode)
        ns = self._attach(f"node{i}", f"{ip}/24", "br1" if ip.startswith("198.51.101.") else "br0")
        if self.router_ns is not None:
            gateway = "198.51.101.254" if ip.startswith("198.51.101.") else "198.51.100.254"
            other = "198.51.100.0/24" if ip.startswith("198.51.101.") else "198.51.101.0/24"
            ns.ip("route", "add", other, "via", gateway)
        workdir = self.workdir / f"node-{i}"
        workdir.mkdir(parents=True, exist_ok=True)
        node = Node(i, f"node-{i}", ns, workdir, tunl0(ns, local=ip, workdir=workdir),
                    speaker=speaker, ip=ip)
        if self.ipv6:
            node.ip6 = node_ip6(i, self.mode)
            self.lab.address(ns, "eth0", f"{node.ip6}/64")
            sh("ip", "netns", "exec", ns.name, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            if self.router_ns is not None:
                other = "101" if ":100::" in node.ip6 else "100"
                own = "100" if other == "101" else "101"
                ns.ip("-6", "route", "add", f"fd00:198:51:{other}::/64", "via",
                      f"fd00:198:51:{own}::254")
        for p in range(pods):
            pod = self.lab.namespace(f"pod{i}{p}")
            ip = f"172.17.{i + 1}.{10 + p}"
            host_if = f"cali{i:02d}{p:02d}"
            self.lab.veth(ns, host_if, pod, "eth0")
            if self.ipv6:  # Calico's MAC for the host side (its link-local: the gateway)
                ns.ip("link", "set", host_if, "address", "ee:ee:ee:ee:ee:ee")
            self.lab.address(pod, "eth0", f"{ip}/32")
            pod.ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
            pod.ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
            # Calico's pods reach 169.254.1.1 by proxy ARP through the node's default route;
            # these nodes have none, so the pod learns the gateway's MAC directly
            mac = json.loads(ns.ip("-j", "link", "show", host_if))[0]["address"]
            pod.ip("neigh", "add", "169.254.1.1", "lladdr", mac, "dev", "eth0", "nud",
                   "permanent")
            ns.ip("route", "add", f"{ip}/32", "dev", host_if, "proto", "boot", "scope", "link")
            sh("ip", "netns", "exec", ns.name, "sysctl", "-qw",
               f"net.ipv4.conf.{host_if}.proxy_arp=1")
            if self.ipv6:
                ip6 = f"fd00:10::{i + 1}:{10 + p:x}"
                self._pod6(ns, host_if, pod, ip6)
                node.pod_ips6.append(ip6)
            node.pods.append(pod)
            node.pod_ips.append(ip)
        sh("ip", "netns", "exec", ns.name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        return node

    def _pod6(self, ns: Namespace, host_if: str, pod: Namespace, ip6: str) -> None:
        """A pod's IPv6 as Calico sets it: the host side of the veth answers as
        fe80::ecee:eeff:feee:eeee, the pod's default route goes there, the node routes the
        pod's /128 to the veth (Felix's route)."""
        self.lab.address(ns, host_if, f"{CALI_GATEWAY6}/64")
        self.lab.address(pod, "eth0", f"{ip6}/128")
        pod.ip("-6", "route", "add", "default", "via", CALI_GATEWAY6, "dev", "eth0")
        pod.ip("-6", "neigh", "add", CALI_GATEWAY6, "lladdr", "ee:ee:ee:ee:ee:ee", "dev",
               "eth0", "nud", "permanent")
        ns.ip("-6", "route", "add", f"{ip6}/128", "dev", host_if, "proto", "boot")

    def add_node(self, pods: int = 0) -> Node:
        """A node joining: namespace, devices and pods (its resources and daemon are the
        caller's: the API or the folder, then :meth:`start`)."""
        node = self._node(len(self.nodes), pods, "bgpd")
        self.nodes.append(node)
        return node

    def node_manifests(self, n: Node) -> list[dict[str, Any]]:
        docs = [
            {"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": n.name, "labels": {"kubernetes.io/hostname": n.name},
                "annotations": {"projectcalico.org/IPv4Address": f"{n.ip}/24",
                                "projectcalico.org/IPv4IPIPTunnelAddr":
                                    f"172.17.{n.index + 1}.1"}}},
            self.affinity(f"{n.name}-block", n.name, n.block),
        ]
        if n.ip6:
            docs[0]["metadata"]["annotations"]["projectcalico.org/IPv6Address"] = f"{n.ip6}/64"
            docs.append(self.affinity(f"{n.name}-block6", n.name, n.block6))
        return docs

    # --- resources -----------------------------------------------------------------------
    def calico(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "crd.projectcalico.org/v1", "kind": kind,
                "metadata": {"name": name}, "spec": spec}

    def affinity(self, name: str, node: str, cidr: str) -> dict[str, Any]:
        """A BlockAffinity as Calico >= 3.31 writes it: labelled, so that each node's daemon
        watches only its own (through the API)."""
        doc = self.calico("BlockAffinity", name, {"node": node, "cidr": cidr,
                                                  "state": "confirmed", "deleted": "false"})
        doc["metadata"]["labels"] = {HOSTNAME_HASH: hostname_hash(node),
                                     "projectcalico.org/affinity-type": "host",
                                     "projectcalico.org/ip-version": "6" if ":" in cidr else "4"}
        return doc

    def manifests(self) -> list[dict[str, Any]]:
        docs = [self.calico("BGPConfiguration", "default",
                            {"asNumber": NODE_AS, "nodeToNodeMeshEnabled": True}),
                self.calico("IPPool", "pool", {"cidr": "172.17.0.0/12", "blockSize": 24,
                                               "ipipMode": self.mode})]
        if self.ipv6:
            docs.append(self.calico("IPPool", "pool6", {"cidr": POOL6, "blockSize": 122}))
        for n in self.nodes:
            docs += self.node_manifests(n)
        if self.tor is not None and self.tor_peer:
            docs.append(self.calico("BGPPeer", "tor", {"peerIP": TOR_IP, "asNumber": TOR_AS}))
            if self.ipv6:
                docs.append(self.calico("BGPPeer", "tor6", {"peerIP": TOR_IP6,
                                                            "asNumber": TOR_AS}))
        return docs

    def write_resources(self, extra: list[dict[str, Any]] | None = None) -> None:
        text = yaml.safe_dump_all(self.manifests() + (extra or []))
        (self.resources / "cluster.yaml").write_text(text)

    # --- processes -----------------------------------------------------------------------
    def settings(self, node: Node, **overrides: Any) -> Path:
        values = {"node_name": node.name, "datastore": self.datastore,
                  "kubeconfig": str(self.kubeconfig) if self.kubeconfig else None,
                  "resources": str(self.resources), "state_dir": str(node.workdir / "state"),
                  "data_dir": str(node.workdir / "data"),
                  "control_socket": str(node.socket), "bird_socket": None,
                  "endpoint_status_dir": str(node.workdir / "endpoint-status"),
                  "metrics_address": "127.0.0.1:9095", "log_level": "info",
                  "restart_establish_grace": 5.0, "ready_timeout": 30.0, **overrides}
        path = node.workdir / "bgpd.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def start(self, node: Node, *args: str, **settings: Any) -> None:
        log = open(node.workdir / "bgpd.log", "ab")  # noqa: SIM115 - lives with the process
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        node.proc = subprocess.Popen(
            ["ip", "netns", "exec", node.ns.name, *BGPD, "run", "--config",
             str(self.settings(node, **settings)), *args],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        (node.workdir / "bgpd.pid").write_text(str(node.proc.pid))

    def signal(self, node: Node, sig: int, *, wait: float = 20) -> int | None:
        if node.proc is None:
            return None
        node.proc.send_signal(sig)
        try:
            return node.proc.wait(wait)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            return node.proc.wait(5)

    def restart(self, node: Node, sig: int | None = None) -> None:
        """Stop ``node``'s bgpd with ``sig`` (SIGTERM), start it again, wait for its
        sessions."""
        self.signal(node, sig if sig is not None else signal.SIGTERM)
        self.start(node)
        def back() -> bool:  # (no peers yet: the configuration is not applied yet)
            peers = self.status(node)["peers"]
            return bool(peers) and all(p["established"] for p in peers)

        self.wait(back, 60, f"{node.name}'s sessions back")

    def kill(self, node: Node) -> None:
        self.signal(node, signal.SIGKILL)

    def start_all(self) -> None:
        if self.tor is not None:
            self.tor.start()
        for n in self.nodes:
            if n.speaker == "bird":
                self.start_bird(n, graceful=self.bird_restarting)
            else:
                self.start(n)

    def stop_all(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                self.signal(n, signal.SIGTERM, wait=10)
            if n.bird is not None:
                n.bird.kill()
        if self.tor is not None:
            self.tor.kill()

    # --- a node running BIRD the way Calico's confd configures it --------------------------
    def bird_config(self, node: Node) -> str:
        """BIRD 2 as a Calico node: mesh with the string passive rule, own block as a
        blackhole, learned blocks to the kernel via tunl0 onlink (IPIP) or directly."""
        if self.mode == "Always":
            kernel = 'ifname = "tunl0"; onlink = true; gw = bgp_next_hop;'
        else:
            kernel = "gw = bgp_next_hop;"
        peers = [n for n in self.nodes if n is not node]
        lines = [
            f"router id {node.ip};",
            "protocol device { scan time 10; }",
            "protocol direct { ipv4; interface \"eth0\"; }",
            "protocol static blocks { ipv4; "
            + "".join(f"route {b} blackhole; " for b in [node.block, *node.extra_blocks]) + "}",
            # confd's static routes (Service addresses): blackholes in BIRD, exported to the
            # peers, kept out of the kernel (confd/tests/compiled_templates/mesh/static-routes:
            # bird_aggr.cfg's static_template, bird_ipam.cfg's calico_kernel_programming)
            "protocol static statics { ipv4; "
            + "".join(f"route {r} blackhole; " for r in node.static_routes) + "}",
            "protocol kernel k4 { learn no; persist; merge paths on; graceful restart on; "
            "metric 0; ipv4 { import none; export filter { "
            "if proto = \"blocks\" then accept; "
            f"if source = RTS_BGP then {{ {kernel} accept; }} reject; }}; }}; }}",
        ]
        for peer in peers:
            passive = "passive on; " if peer.ip > node.ip else ""
            name = "Mesh_" + peer.ip.replace(".", "_")
            lines.append(
                f"protocol bgp {name} {{ local {node.ip} as {NODE_AS}; "
                f"neighbor {peer.ip} as {NODE_AS}; {passive}graceful restart on; "
                "connect delay time 2; connect retry time 5; error wait time 5, 30; "
                "ipv4 { import all; export filter { if proto = \"blocks\" then accept; "
                "if proto = \"statics\" then accept; reject; }; add paths on; "
                "next hop self; }; }")
        if self.tor is not None:
            lines.append(
                f"protocol bgp Global_{TOR_IP.replace('.', '_')} {{ local {node.ip} as {NODE_AS}; "
                f"neighbor {TOR_IP} as {TOR_AS}; graceful restart on; "
                "ipv4 { import all; export filter { if proto = \"blocks\" then accept; "
                "if proto = \"statics\" then accept; reject; }; }; }")
        if node.ip6:
            lines += self.bird6_config(node, peers)
        text = "\n".join(lines) + "\n"
        return text if self.bird_graceful else text.replace("graceful restart on",
                                                            "graceful restart off")

    def bird6_config(self, node: Node, peers: list[Node]) -> list[str]:
        """What confd's bird6.cfg adds, in the same BIRD 2: the IPv6 block as a blackhole,
        learned IPv6 blocks to the kernel as plain routes (IPv6 has no IPIP), the mesh and
        the ToR between IPv6 addresses, named and passive by the same rules."""
        lines = [
            "protocol direct d6 { ipv6; interface \"eth0\"; }",
            f"protocol static blocks6 {{ ipv6; route {node.block6} blackhole; }}",
            "protocol kernel k6 { learn no; persist; merge paths on; graceful restart on; "
            "metric 0; ipv6 { import none; export filter { if proto = \"blocks6\" then "
            "accept; if source = RTS_BGP then accept; reject; }; }; }",
        ]
        bgp = ("graceful restart on; connect delay time 2; connect retry time 5; "
               "error wait time 5, 30; ipv6 { import all; export filter { if proto = "
               "\"blocks6\" then accept; reject; }; ")
        for peer in peers:
            if peer.ip6:
                passive = "passive on; " if peer.ip6 > node.ip6 else ""
                lines.append(
                    f"protocol bgp Mesh_{peer.ip6.replace(':', '_')} {{ local {node.ip6} as "
                    f"{NODE_AS}; neighbor {peer.ip6} as {NODE_AS}; {passive}{bgp}"
                    "add paths on; next hop self; }; }")
        if self.tor is not None:
            lines.append(
                f"protocol bgp Global_{TOR_IP6.replace(':', '_')} {{ local {node.ip6} as "
                f"{NODE_AS}; neighbor {TOR_IP6} as {TOR_AS}; {bgp}}}; }}")
        return lines

    def bird1_config(self, node: Node) -> str:
        """BIRD 1.6 as confd's templates render it for a mesh node
        (confd/tests/compiled_templates/mesh/ipip-off/bird.cfg and bird_ipam.cfg): the
        node's block a blackhole, exported to the kernel and the peers; learned blocks to the
        kernel; the kernel protocol with ``persist`` and ``graceful restart``; each mesh
        session from confd's ``bgp_template`` (graceful restart, connect delay 2, retry 5,
        error wait 5,30, add paths), passive towards a higher address; IPv4 only (bird6 is
        another process there).  What confd adds for features the lab does not use
        (communities, filters, metrics from LOCAL_PREF) is left out."""
        peers = [n for n in self.nodes if n is not node]
        lines = [
            f"router id {node.ip};",
            "protocol device { scan time 2; }",
            'protocol direct { interface "eth0"; }',
            "protocol static blocks { "
            + "".join(f"route {b} blackhole; " for b in [node.block, *node.extra_blocks]) + "}",
            "protocol kernel { persist; scan time 2; import none; graceful restart; "
            "merge paths on; export filter { if proto = \"blocks\" then accept; "
            "if source = RTS_BGP then accept; reject; }; }",
            f"template bgp bgp_template {{ local as {NODE_AS}; gateway recursive; "
            "add paths on; graceful restart; connect delay time 2; connect retry time 5; "
            "error wait time 5,30; }",
        ]
        for peer in peers:
            passive = " passive on;" if peer.ip > node.ip else ""
            lines.append(
                f"protocol bgp Mesh_{peer.ip.replace('.', '_')} from bgp_template {{ "
                f"neighbor {peer.ip} as {NODE_AS}; source address {node.ip}; "
                "ttl security off; multihop; import all; export filter { "
                "if proto = \"blocks\" then accept; reject; };" + passive + " }")
        text = "\n".join(lines) + "\n"
        return text if self.bird_graceful else text.replace("graceful restart;",
                                                            "graceful restart off;")

    def start_bird(self, node: Node, *, graceful: bool = False) -> None:
        """BIRD on ``node`` as confd configures it (BIRD 1.6 on the first ``bird1_nodes``,
        else BIRD 2); ``graceful``: as calico-node starts it (``bird -R``, a restarting
        speaker)."""
        bird1 = node.index < self.bird1_nodes
        bird = (Bird1 if bird1 else Bird2)(node.ns, node.workdir / "bird", router_id=node.ip,
                                           asn=NODE_AS, neighbors=[])
        make = self.bird1_config if bird1 else self.bird_config
        bird.config = lambda: make(node)  # type: ignore[method-assign]
        bird.start(graceful=graceful)
        node.bird = bird

    def bgpd(self, node: Node, *args: str) -> str:
        return node.ns.run(*BGPD, *args, "--socket", str(node.socket))

    def status(self, node: Node) -> dict[str, Any]:
        """``bgpd status --output json``, asked on the control socket from here (a Unix
        socket is a file, reachable from any namespace): what the CLI prints, without
        starting a Python for each question."""
        import asyncio

        from bgpd.observability import request

        data: dict[str, Any] = asyncio.run(request(node.socket, {"command": "status"}))
        return data

    def http(self, node: Node, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:9095{path}"
        code = ("import urllib.request, urllib.error, sys\n"
                f"try:\n r = urllib.request.urlopen({url!r}, timeout=5)\n"
                " print(r.status); print(r.read().decode())\n"
                "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n")
        out = node.ns.run(sys.executable, "-c", code)
        status_line, _, body = out.partition("\n")
        return int(status_line), body

    def ping(self, src: Namespace, dst_ip: str, *, count: int = 1) -> bool:
        """One ping (ping6 for an IPv6 address: iputils' ping takes either)."""
        result = subprocess.run(["ip", "netns", "exec", src.name, "ping", "-c", str(count),
                                 "-W", "1", "-q", dst_ip], capture_output=True, timeout=30)
        return result.returncode == 0

    def blocks_everywhere(self) -> bool:
        """Every node has a route to every other node's block (each of its blocks, with
        ``ipv6``)."""
        return all(all(o.block in " ".join(n.routes()) for o in self.nodes if o is not n)
                   and all(o.block6 in " ".join(n.routes6()) for o in self.nodes
                           if o is not n and o.ip6)
                   for n in self.nodes)

    def wait(self, check: Any, timeout: float, what: str) -> float:
        """:func:`~integration_tests.waiting.wait_for`, with the nodes' logs on timeout."""
        def logs() -> str:
            return "\n".join(
                f"--- {n.name} ---\n" + (n.workdir / "bgpd.log").read_text()[-3000:]
                for n in self.nodes if (n.workdir / "bgpd.log").exists())
        return wait_for(check, timeout, what, interval=0.1, context=logs)
