"""bgpd reading Calico's datastore through Typha: the stand-in (a Go program of this project
speaking Typha's protocol with Go's own gob and TLS; no Typha binary can be built here)
against the API test server holding the same cluster."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from ipaddress import IPv4Network, ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.translate import node_context
from integration_tests.kube_server import KubeServer, kubeconfig
from integration_tests.typha_cluster import GO, StandIn, build, certificates, kv, kvs_of
from integration_tests.waiting import until
from node_controller.controller import Controller
from node_controller.desired import DesiredConfig, desired_config
from node_controller.static import load_folder
from node_controller.typha import TyphaConfig, TyphaSource
from ribs.policy import guard
from ribs.types import Prefix

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples"
FILES = ("00-bgpconfiguration.yaml", "10-ippool.yaml", "20-nodes.yaml",
         "30-blockaffinities.yaml", "40-tor-peer.yaml")
pytestmark = pytest.mark.skipif(GO is None, reason="go not installed (scripts/install-system-"
                                                   "deps installs golang-go)")


def manifests() -> list[dict[str, Any]]:
    return [d for name in FILES for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("standin") / "typha-standin")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def server() -> Iterator[KubeServer]:
    srv = KubeServer(bookmark_interval=0.2).start()
    for doc in manifests():
        srv.put(doc)
    try:
        yield srv
    finally:
        srv.stop()


def typha_config(standin: StandIn, certs: Path, *, client: str = "client",
                 cn: str = "typha-server", uri_san: str | None = None) -> TyphaConfig:
    return TyphaConfig(addr=standin.address, ca_file=str(certs / "ca.crt"),
                       cert_file=str(certs / f"{client}.crt"),
                       key_file=str(certs / f"{client}.key"), cn=cn, uri_san=uri_san)


def run(server: KubeServer, tmp_path: Path, config: TyphaConfig,
        scenario: Callable[[Controller, Controller], Awaitable[None]]) -> None:
    """A controller on the API alone and one reading the Calico resources from Typha."""
    path = kubeconfig(server, tmp_path / "kubeconfig")

    async def main() -> None:
        direct, typha = Controller("node-2"), Controller("node-2", sync_timeout=600)
        tasks = [asyncio.create_task(direct.run_kubernetes(kubeconfig=str(path),
                                                           namespace="calico-system")),
                 asyncio.create_task(typha.run_kubernetes(kubeconfig=str(path),
                                                          namespace="calico-system",
                                                          typha=config))]
        try:
            await scenario(direct, typha)
            for task in tasks:
                if task.done():
                    raise AssertionError(f"a controller stopped: {task.exception()!r}")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def view(c: Controller) -> dict[str, Any] | None:
    return c.desired.value.as_dict() if c.desired.value is not None else None


def peers(c: Controller) -> set[str]:
    config = view(c)
    return {p["name"] for p in config["peers"]} if config else set()


def source(c: Controller) -> TyphaSource:
    return next(w for w in c.watchers if isinstance(w, TyphaSource))


def test_typha_gives_the_configuration_the_api_gives(server: KubeServer, tmp_path: Path,
                                                     binary: Path, certs: Path) -> None:
    standin = StandIn(binary, tmp_path / "standin", kvs_of(manifests()), certs=certs,
                      ping="200ms")

    async def scenario(direct: Controller, typha: Controller) -> None:
        await until(lambda: view(direct) is not None and view(direct) == view(typha), 10,
                    "the same configuration through Typha")
        assert peers(typha) == {"Mesh_198_51_100_11", "Mesh_198_51_100_13",
                                "Global_198_51_100_1"}
        assert any("typha" in str(w.resource) for w in typha.watchers)
        # a delta: a new BGPPeer, through each source
        peer = {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
                "metadata": {"name": "rr"}, "spec": {"peerIP": "198.51.100.40",
                                                     "asNumber": 64512}}
        server.put(peer)
        standin.append(*kvs_of([peer]))
        await until(lambda: "Global_198_51_100_40" in peers(typha), 10, "the delta")
        await until(lambda: view(direct) == view(typha), 10, "the same after the delta")
        # pings answered: the connection stays up across several
        first = source(typha).connections
        await asyncio.sleep(1.0)
        assert source(typha).connections == first and source(typha).up(time.monotonic())
        # Typha restarts mid-stream, with a BGPPeer deleted meanwhile: nothing is lost on
        # the way, and the deletion is seen once it is back in sync
        published = typha.desired.version
        standin.stop()
        standin.append(kv("/calico/resources/v3/projectcalico.org/bgppeers/rr", None, 900))
        server.remove("BGPPeer", "rr")
        await asyncio.sleep(1.0)
        assert typha.desired.version == published  # nothing published while Typha is away
        standin.start()
        await until(lambda: view(direct) == view(typha)
                    and "Global_198_51_100_40" not in peers(typha), 20, "resynced")
        assert source(typha).connections >= first + 1

    with standin.running():
        run(server, tmp_path, typha_config(standin, certs), scenario)
    assert "hello from node-2" in standin.log()


@pytest.mark.parametrize(("client", "cn", "problem"), [
    ("client", "someone-else", "CN 'typha-server'"),  # Typha's certificate is not the one
    ("rogue-client", "typha-server", "SSL"),  # ours is of another CA: Typha refuses it
])
def test_a_wrong_certificate_is_refused_with_a_clear_error(
        server: KubeServer, tmp_path: Path, binary: Path, certs: Path,
        client: str, cn: str, problem: str) -> None:
    standin = StandIn(binary, tmp_path / "standin", kvs_of(manifests()), certs=certs)

    async def scenario(direct: Controller, typha: Controller) -> None:
        await until(lambda: source(typha).errors >= 2, 15, "refused, and retried")
        error = source(typha).last_error or ""
        assert problem in error, error
        assert not source(typha).listed and typha.desired.value is None
        assert typha.store.objects["BGPPeer"] == {}  # nothing read from an unchecked peer
        await until(lambda: view(direct) is not None, 10, "the API side is unaffected")

    with standin.running():
        run(server, tmp_path, typha_config(standin, certs, client=client, cn=cn), scenario)
    if client == "rogue-client":
        assert "TLS handshake" in standin.log()


def test_the_uri_san_is_enough_when_asked_for(server: KubeServer, tmp_path: Path,
                                              binary: Path, certs: Path) -> None:
    standin = StandIn(binary, tmp_path / "standin", kvs_of(manifests()), certs=certs)
    config = typha_config(standin, certs, cn="",
                          uri_san="spiffe://cluster.local/ns/calico-system/sa/calico-typha")

    async def scenario(direct: Controller, typha: Controller) -> None:
        await until(lambda: view(typha) is not None and view(direct) == view(typha), 10,
                    "in sync by URI SAN")

    with standin.running():
        run(server, tmp_path, config, scenario)


def test_the_configuration_is_read_as_calico_node_reads_it() -> None:
    env = {"FELIX_TYPHAK8SSERVICENAME": "calico-typha", "CALICO_TYPHAK8SNAMESPACE":
           "calico-system", "FELIX_TYPHACAFILE": "/ca", "FELIX_TYPHACERTFILE": "/c",
           "FELIX_TYPHAKEYFILE": "/k", "FELIX_TYPHACN": "typha-server",
           "CONFD_TYPHACN": "confd-wins", "FELIX_TYPHAREADTIMEOUT": "30",
           "FELIX_TYPHAURISAN": "none"}
    config = TyphaConfig.from_environ(env)
    assert config.k8s_service_name == "calico-typha" and config.enabled and config.tls
    assert config.k8s_namespace == "calico-system" and config.cn == "confd-wins"
    assert config.read_timeout == 30.0 and config.uri_san is None
    assert config.problems() == []
    assert TyphaConfig.from_environ({}).k8s_namespace == "kube-system"
    half = TyphaConfig(addr="10.0.0.1:5473", ca_file="/ca")
    assert half.problems() == ["TLS to Typha needs TYPHAKEYFILE, TYPHACERTFILE, TYPHACN or "
                               "TYPHAURISAN (FELIX_, CONFD_ or CALICO_)"]


def test_typha_found_by_its_service(server: KubeServer, tmp_path: Path, binary: Path,
                                    certs: Path) -> None:
    """TYPHAK8SSERVICENAME: the ready endpoints of the service's ``calico-typha`` port,
    this node's first; one not ready is skipped."""
    standin = StandIn(binary, tmp_path / "standin", kvs_of(manifests()), certs=certs)

    async def scenario(direct: Controller, typha: Controller) -> None:
        await until(lambda: view(typha) is not None and view(direct) == view(typha), 15,
                    "in sync through the discovered address")
        assert source(typha).server == standin.address

    with standin.running():
        server.put({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "calico-typha-x", "namespace": "calico-system",
                                 "labels": {"kubernetes.io/service-name": "calico-typha"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "metrics", "port": 9093},
                              {"name": "calico-typha", "port": standin.port}],
                    "endpoints": [
                        {"addresses": ["127.0.0.2"], "nodeName": "node-2",
                         "conditions": {"ready": False}},
                        {"addresses": ["127.0.0.1"], "nodeName": "node-2",
                         "conditions": {"ready": True}}]})
        config = typha_config(standin, certs)
        config = TyphaConfig(k8s_service_name="calico-typha", k8s_namespace="calico-system",
                             ca_file=config.ca_file, cert_file=config.cert_file,
                             key_file=config.key_file, cn=config.cn)
        run(server, tmp_path, config, scenario)


def test_typhas_snappy_stream_after_a_decoder_restart(server: KubeServer, tmp_path: Path,
                                                      binary: Path, certs: Path) -> None:
    standin = StandIn(binary, tmp_path / "standin", kvs_of(manifests()), certs=certs)

    async def scenario(direct: Controller, typha: Controller) -> None:
        await until(lambda: view(typha) is not None and view(direct) == view(typha), 10,
                    "in sync over snappy")
        peer = {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
                "metadata": {"name": "rr"}, "spec": {"peerIP": "198.51.100.40",
                                                     "asNumber": 64512}}
        standin.append(*kvs_of([peer]))
        await until(lambda: "Global_198_51_100_40" in peers(typha), 10, "a delta over snappy")

    with standin.running():
        run(server, tmp_path, typha_config(standin, certs), scenario)
    assert 'compression "snappy"' in standin.log()


def verdicts(config: DesiredConfig, cluster: DesiredConfig) -> dict[str, str]:
    """What ``config``'s import guard says of a ToR's (not a Calico node's) routes: of ten
    other nodes' blocks (``cluster``'s), each block, its halves and a /32 in it; the pools,
    the node's own blocks, the default route, a foreign prefix."""
    ctx = node_context(config)
    candidates: list[Prefix] = [IPv4Network("0.0.0.0/0"), IPv4Network("192.0.2.0/24"),
                                *[p.cidr for p in cluster.pools], *cluster.blackholes]
    for block in cluster.other_blocks[::60]:
        candidates.append(block)
        candidates.extend(block.subnets(1))
        candidates.append(ip_network((block.network_address, block.max_prefixlen)))
    return {str(p): guard(p, ctx).value for p in candidates}


@pytest.mark.slow
@pytest.mark.parametrize(("ipam", "block_size"), [
    ("calico", 24), ("calico", 26), ("host-local", 26)])
def test_the_600_node_cluster_through_typha_the_api_and_a_folder(
        tmp_path: Path, binary: Path, certs: Path, ipam: str, block_size: int) -> None:
    """Every node of the benchmark cluster derives the same whole DesiredConfig through
    Typha (the stand-in, TLS, its binary snapshot) as from a static folder, and the same as
    through the API alone (three nodes: each needs its own controller there); the import
    guard accepts and refuses the same routes of a ToR from each."""
    from benchmarks.datastore import cluster

    docs = cluster(600, ipam=ipam, block_size=block_size)
    host_local = ipam == "host-local"
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "cluster.json").write_text(json.dumps({"kind": "List", "items": docs}))
    static = load_folder(folder)
    srv = KubeServer(bookmark_interval=1.0).start()
    standin = StandIn(binary, tmp_path / "standin", kvs_of(docs, use_pod_cidr=host_local),
                      certs=certs)
    path = kubeconfig(srv, tmp_path / "kubeconfig")
    api_nodes = ("node-0", "node-299", "node-599")

    async def main() -> None:
        typha = Controller("node-0", sync_timeout=600)
        # host-local: the other nodes' pod CIDRs are their blocks, so their specs are read
        direct = {n: Controller(n, sync_timeout=600) for n in api_nodes}
        tasks = [asyncio.create_task(typha.run_kubernetes(
            kubeconfig=str(path), namespace="calico-system",
            typha=typha_config(standin, certs)))]
        tasks += [asyncio.create_task(c.run_kubernetes(
            kubeconfig=str(path), namespace="calico-system",
            node_objects="full" if host_local else "metadata")) for c in direct.values()]
        try:
            await until(lambda: typha.desired.value is not None and all(
                c.desired.value is not None for c in direct.values()), 60, "every controller")
            for task in tasks:
                assert not task.done(), task
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Typha serves every node the same KVs, and the API's pools and ClusterInformation
        # are not scoped: node-0's store is what every node's daemon holds
        # every node for Calico's default block size; a sample (and the API's three) for
        # the other shapes, whose difference is in the pools and affinities every node reads
        step = 1 if (ipam, block_size) == ("calico", 26) else 13
        for name in sorted({f"node-{i}" for i in range(0, 600, step)} | set(api_nodes)):
            through_typha = desired_config(typha.store, name)
            from_folder = desired_config(static, name)
            assert through_typha == from_folder, name
            assert len(from_folder.peers) == 599 and not from_folder.errors, name
            assert [p.block_size for p in from_folder.pools] == [block_size], name
            if name in api_nodes:
                said = verdicts(through_typha, from_folder)
                assert said == verdicts(from_folder, from_folder)
                halves = {said[str(next(b.subnets(1)))] for b in from_folder.other_blocks[::60]}
                assert halves == {"more_specific_of_another_nodes_block"}
        for name, controller in direct.items():
            seen = api = controller.desired.value
            assert seen is not None and api is not None and api.node == name
            want = desired_config(static, name)
            if not host_local:  # the API source watches this node's BlockAffinities only
                assert api.other_blocks == () and api.block_owners == ()
                api = replace(api, other_blocks=want.other_blocks,
                              block_owners=want.block_owners)
            assert api == want, name
            # the same routes accepted (a block's halves refused by its pool's block size
            # where the API source does not see the block itself)
            assert {p: v == "accepted" for p, v in verdicts(seen, want).items()} == {
                p: v == "accepted" for p, v in verdicts(want, want).items()}

    try:
        for doc in docs:
            srv.put(doc)
        with standin.running():
            asyncio.run(main())
        assert "binary snapshot of" in standin.log()
    finally:
        srv.stop()


def test_bgpd_config_reads_every_datastore(server: KubeServer, tmp_path: Path, binary: Path,
                                           certs: Path) -> None:
    """``bgpd config`` through Typha (``--typha``, TLS from the FELIX_TYPHA… variables as
    the daemon reads them), the API, a folder and a settings file: the same configuration,
    the pools' block sizes and the import guard's inputs printed."""
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "cluster.yaml").write_text(yaml.safe_dump_all(manifests()))
    path = kubeconfig(server, tmp_path / "kubeconfig")
    settings = tmp_path / "bgpd.yaml"
    settings.write_text(yaml.safe_dump({"datastore": "kubernetes", "kubeconfig": str(path),
                                        "node_name": "node-2"}))
    standin = StandIn(binary, tmp_path / "standin", kvs_of(manifests()), certs=certs)
    env = {**os.environ, "FELIX_TYPHACAFILE": str(certs / "ca.crt"),
           "FELIX_TYPHACERTFILE": str(certs / "client.crt"),
           "FELIX_TYPHAKEYFILE": str(certs / "client.key"), "FELIX_TYPHACN": "typha-server"}

    def config(*args: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "bgpd", "config", *args, "--output",
                              "json"], capture_output=True, text=True, timeout=60,
                             env=environ or os.environ)
        assert out.returncode == 0, out.stderr
        data: dict[str, Any] = json.loads(out.stdout)
        return data

    with standin.running():
        typha = config("--kubeconfig", str(path), "--typha", standin.address,
                       "--node", "node-2", environ=env)
        from_settings = config("--config", str(settings), environ={
            **env, "FELIX_TYPHAADDR": standin.address})
    assert "binary snapshot of" in standin.log()
    direct = config("--kubeconfig", str(path), "--node", "node-2")
    static = config("--resources", str(folder), "--node", "node-2")
    assert typha == static == from_settings
    assert {k: v for k, v in direct.items() if k != "other_blocks"} == {
        k: v for k, v in static.items() if k != "other_blocks"}  # API: own affinities only
    assert [(p["cidr"], p["block_size"]) for p in static["pools"]] == [("172.16.0.0/12", 24)]
    assert static["other_blocks"] == ["172.17.1.0/24", "172.17.3.0/24"]
    text = subprocess.run([sys.executable, "-m", "bgpd", "config", "--resources", str(folder),
                           "--node", "node-2"], capture_output=True, text=True, timeout=60,
                          check=True).stdout
    assert "172.16.0.0/12 /24 blocks" in text and "of other nodes: 172.17.1.0/24" in text
    bad = subprocess.run([sys.executable, "-m", "bgpd", "config", "--resources", str(folder),
                          "--typha", "127.0.0.1:1", "--node", "node-2"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and "--typha" in bad.stderr
