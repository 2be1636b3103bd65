"""Smoke runs of the benchmarks at their smallest sizes: they still run end to end, against
real parts, and their results say what they should.  No timing is asserted (figures on a
shared 2-core machine are noise); the sizes the README quotes are run with ``make bench``."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import ingest, mesh, propagation
from integration_tests.peers import available


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
    result = ingest.run(500, "bgpd", tmp_path)
    assert result["ingest_s"] is not None and result["withdraw_s"] is not None
    assert result["peak_rss_mb"] >= result["rss_mb_idle"] > 0


def test_propagation_samples(tmp_path: Path) -> None:
    result = propagation.run("bgpd", 5, tmp_path, gap=0.1)
    assert result["samples"] == 5 and 0 < result["p50_ms"] <= result["max_ms"]
