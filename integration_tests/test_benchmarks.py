"""Smoke runs of the benchmarks at their smallest sizes: they still run end to end, against
real parts, and their results say what they should.  No timing is asserted (figures on a
shared 2-core machine are noise); the sizes the README quotes are run with ``make bench``."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import (
    bfd,
    datastore,
    drain,
    ingest,
    mesh,
    outage,
    propagation,
    reflector,
    services,
)
from bgpd.router import RELEASE_AFTER
from integration_tests.peers import available
from integration_tests.typha_cluster import GO


@pytest.fixture(autouse=True)
def _needs_bird() -> None:
    for kind in ("bird1", "bird2"):
        if available(kind):
            pytest.skip(str(available(kind)))


def test_mesh_every_role_storm_and_comparison(tmp_path: Path) -> None:
    runs = []
    for engine in ("bgpd", "bird"):
        result = mesh.run(3, engine, 1.0, tmp_path / engine, role="mesh", storm=True)
        assert result["converged_s"] is not None and result["storm_converged_s"] is not None
        assert result["peers_learned_dut_block"] == 3 and result["flaps"] == 0
        runs.append(result)
    active = mesh.run(2, "bgpd", 1.0, tmp_path / "active", role="active")
    assert active["converged_s"] is not None and active["peers_learned_dut_block"] == 2
    ratios = mesh.compare(runs)
    assert len(ratios) == 1 and ratios[0]["peers"] == 3 and ratios[0]["converged"] > 0


def test_ingest_both_ways(tmp_path: Path) -> None:
    """Past 1,000 withdrawn routes the daemon hands the freed memory back once quiet."""
    result = ingest.run(RELEASE_AFTER + 200, "bgpd", tmp_path)
    assert result["ingest_s"] is not None and result["withdraw_s"] is not None
    assert result["peak_rss_mb"] >= result["rss_mb_idle"] > 0
    assert result["memory_released"] is True


def test_bfd_detects_each_failure_and_takes_the_route_out() -> None:
    detect = bfd.detect(1)
    assert {mode: k["trials"] for mode, k in detect.items()} == {"kill": 1, "link": 1,
                                                                  "drop": 1}
    assert all(0 < k["min_ms"] <= k["max_ms"] for k in detect.values())
    routes = bfd.routes(1)
    assert routes["trials"] == 1 and routes["min_ms"] > 0


def test_drain_a_drained_node_that_dies_loses_nothing(tmp_path: Path) -> None:
    """The drain's point: drained first, a node killed without a word loses no packet; a
    BIRD node killed the same way leaves the ToR sending to it (graceful restart keeps its
    route) — the benchmark tells the two apart."""
    drained = drain.run("bgpd", "kill", tmp_path / "bgpd", 500)
    assert drained["sent"] > 500 and drained["lost"] == 0 and drained["to_dead_node_s"] == 0.0
    bird = drain.run("bird", "kill", tmp_path / "bird", 500)
    assert bird["lost"] > 0 and bird["to_dead_node_s"] == f">{drain.WINDOW}"


@pytest.mark.slow
def test_outage_bgpd_nodes_keep_their_routes_past_the_reflectors_restart_time(
        tmp_path: Path) -> None:
    """Both reflectors killed for 10 s, their graceful-restart time 3 s: the bgpd nodes route
    to every other block throughout and lose no packet between them; the BIRD nodes drop
    every block; a node deleted from the datastore has its block dropped then."""
    result = outage.run(10, 3, tmp_path)
    assert result["lost"]["bgpd-bgpd"]["lost"] == 0 and result["lost"]["bgpd-bgpd"]["sent"] > 0
    assert result["lost"]["with a BIRD node"]["lost"] > 0
    assert result["other_blocks_held_at_end"] == {"node-0": 0, "node-1": 0, "node-2": 3,
                                                  "node-3": 3}
    assert result["deleted_node_route_gone_s"] > 0


def test_propagation_samples(tmp_path: Path) -> None:
    result = propagation.run("bgpd", 5, tmp_path, gap=0.1)
    assert result["samples"] == 5 and 0 < result["p50_ms"] <= result["max_ms"]


def test_reflector_every_client_full_with_next_hops_kept(tmp_path: Path) -> None:
    """Four clients of a bgpd reflector: each learns every other client's block with that
    client as next hop (reflected routes are shared by every client in ExaBGP, not copied)
    and the reflector's own block with the reflector as next hop (next-hop self: a copy per
    client); BIRD 1.6, FRR and GoBGP as the references fill them too."""
    from integration_tests.netns import sh

    tables: list[dict[str, str]] = []

    def check(socks: list[Path]) -> None:
        for sock in socks:
            table, prefix = {}, ""
            for line in sh("birdc", "-s", str(sock), "show", "route", "all").splitlines():
                if line[:1].isdigit():
                    prefix = line.split()[0]
                elif "BGP.next_hop:" in line:
                    table[prefix] = line.split()[-1]
            tables.append(table)

    result = reflector.run(4, "bgpd", tmp_path / "bgpd", inspect=check)
    assert result["full_s"] is not None and result["established_s"] is not None
    for i, table in enumerate(tables):
        assert table == {
            reflector.DUT_BLOCK: reflector.DUT_IP,
            **{reflector.block(j): reflector.peer_ip(j) for j in range(4) if j != i}}, table
    references = [reflector.run(4, engine, tmp_path / engine)
                  for engine in ("bird", "frr", "gobgp")]
    assert all(r["full_s"] is not None for r in references), references
    ratios = reflector.compare([result, *references])
    assert {r["against"].split(":")[0] for r in ratios} == {"bird", "frr", "gobgp", "fastest"}


def test_datastore_metadata_only_against_whole_objects(tmp_path: Path) -> None:
    """Ten realistic nodes: the metadata-only watch sends a fraction of the whole objects'
    bytes, at the start and per status update; a reset lists nothing."""
    runs = {mode: datastore.run(10, mode, seconds=0.5, workdir=tmp_path)
            for mode in ("metadata", "full")}
    for r in runs.values():
        assert r["initial"]["quorum_lists"] == 0 and r["reset"]["lists"] == 0
        assert r["reset"]["watches_up"] and r["steady"][0]["events"] > 0
    meta, full = runs["metadata"], runs["full"]
    assert meta["initial"]["bytes_uncompressed"] < full["initial"]["bytes_uncompressed"] / 2
    assert meta["steady"][0]["bytes_per_event"] < full["steady"][0]["bytes_per_event"] / 2


@pytest.mark.skipif(GO is None, reason="go not installed (scripts/install-system-deps)")
def test_datastore_through_typha(tmp_path: Path) -> None:
    """Through Typha a status update costs the node nothing (Typha sends no change of a
    Calico resource); a reset of Typha sends its whole state again."""
    r = datastore.run(10, "typha", seconds=0.5, workdir=tmp_path)
    assert r["initial"]["typha_bytes"] > 0 and r["reset"]["watches_up"]
    assert r["steady"][0]["events"] > 0 and r["steady"][-1]["bytes_per_event"] < 100
    assert r["reset"]["bytes"] >= r["initial"]["typha_bytes"]


def test_services_churn_is_exact_at_the_tor(tmp_path: Path) -> None:
    result = services.run(40, 3, 10, 2, 2, tmp_path)
    assert result["exact_after_churn"] and result["changes"] == 20
    assert result["sampled"] + result["overtaken"] > 0  # some change moved a Service
    assert result["churn_cpu_pct_per_node_by_process"]["daemon"] > 0
