"""``benchmarks.report``: stored results into tables, plots and the README's section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import report

MACHINE = {"cpu": "Test CPU", "cores": 2, "kernel": "6.1", "python": "3.11.7",
           "iproute2": "ip", "date": "2026-11-26T09:00:00+00:00"}


def store(folder: Path, name: str, stamp: str, result: dict[str, Any]) -> None:
    record = {"benchmark": name, "machine": MACHINE, "result": result}
    (folder / f"{name}-{stamp}.json").write_text(json.dumps(record))


def mesh(peers: int, engine: str, converged: float, **extra: Any) -> dict[str, Any]:
    return {"peers": peers, "engine": engine, "role": "passive", "established_s": 1.0,
            "converged_s": converged, "cpu_s": 2.0, "rss_mb": 100.0, "idle_cpu_pct": 0.5,
            "flaps": 0, **extra}


def test_tables_and_plot_from_the_latest_results(tmp_path: Path) -> None:
    store(tmp_path, "mesh", "20261126T080000Z", mesh(100, "bgpd", 9.99))  # superseded
    store(tmp_path, "mesh", "20261126T090000Z", {"runs": [
        mesh(100, "bgpd", 1.23, storm_converged_s=2.5), mesh(100, "bird", 1.04),
        mesh(300, "bgpd", 2.34), mesh(300, "bird", 1.05)], "bgpd_vs_bird": []})
    store(tmp_path, "propagation", "20261126T090100Z", {"runs": [
        {"engine": "bgpd", "samples": 200, "p50_ms": 13.1, "p99_ms": 20.4, "max_ms": 25.0},
        {"engine": "bird", "samples": 200, "p50_ms": 3.4, "p99_ms": 4.1, "max_ms": 5.0}]})
    store(tmp_path, "restart", "20261126T090200Z", {
        "engine": "bgpd", "graceful": {"sent": 300, "lost": 0, "owned_routes_deleted": 0},
        "crash": {"sent": 290, "lost": 1, "owned_routes_deleted": 0}})
    store(tmp_path, "rib", "20261126T090300Z", {
        "routes": 100000, "peers": 4, "candidates_per_prefix": 1, "updates_per_s": 141922,
        "bytes_per_route": 1321})
    (tmp_path / "broken-x.json").write_text("{not json")
    text = report.render(tmp_path)
    assert "Test CPU, 2 cores" in text
    assert "| 100 | bgpd | 1 s | 1.23 s |" in text and "9.99" not in text
    assert "| 300 | BIRD 1.6 |" in text
    assert "| 100 | bgpd | 1.23 s | n/a | n/a | 2.5 s |" in text  # roles and storm
    assert "| bgpd | 200 | 13.1 ms | 20.4 ms |" in text
    assert "| bgpd | 0 / 300 | 0 | 1 / 290 | 0 |" in text
    assert "141,922 updates/s, 1,321 bytes/route" in text
    png = tmp_path / "mesh.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_steady_figures_come_from_the_longest_idle_period(tmp_path: Path) -> None:
    store(tmp_path, "mesh", "20261126T080000Z", mesh(100, "bgpd", 1.0, idle_s=60.0,
                                                     idle_cpu_pct=0.61))
    store(tmp_path, "mesh", "20261126T090000Z", mesh(100, "bgpd", 1.1, idle_s=10.0,
                                                     idle_cpu_pct=3.0))
    text = report.render(tmp_path)
    assert "0.61 % (60 s)" in text and "3 % (10 s)" not in text
    assert "| 100 | bgpd | 1.1 s | n/a | n/a | n/a |" in text  # convergence: the latest


def test_readme_section_is_replaced(tmp_path: Path) -> None:
    store(tmp_path, "mesh", "20261126T090000Z", mesh(100, "bgpd", 1.5))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{report.BEGIN}\nold table\n{report.END}\nafter\n")
    subprocess.run([sys.executable, "-m", "benchmarks.report", "--results", str(tmp_path),
                    "--readme", str(readme)], check=True, capture_output=True,
                   cwd=Path(__file__).resolve().parents[1])
    text = readme.read_text()
    assert "old table" not in text and "1.5 s" in text
    assert text.startswith("# x\nbefore\n") and text.endswith(f"{report.END}\nafter\n")
    assert (tmp_path / "report.md").exists()


def test_reflector_table(tmp_path: Path) -> None:
    run = {"clients": 300, "engine": "bgpd", "established_s": 1.7, "full_s": 30.4,
           "cpu_s": 27.2, "cpu_s_by_process": {"daemon": 5.8, "exabgp": 21.2},
           "rss_mb": 159.6, "rss_mb_by_process": {"daemon": 103.0, "exabgp": 44.0}}
    store(tmp_path, "reflector", "20261201T090000Z", {"runs": [
        run, {**run, "engine": "bird", "full_s": 3.8, "cpu_s": 1.3, "rss_mb": 7.5,
              "cpu_s_by_process": {"bird": 1.3}}]})
    text = report.render(tmp_path)
    assert "| 300 | bgpd | 30.4 s | 27.2 s | 160 MB | daemon 5.8 s, exabgp 21.2 s |" in text
    assert "| 300 | BIRD 1.6 | 3.8 s | 1.3 s | 8 MB | bird 1.3 s |" in text
