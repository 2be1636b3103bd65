"""The benchmarks' py-spy summary: samples attributed to the process that ran them."""

from __future__ import annotations

from benchmarks.ingest import summarize

DAEMON = 'process 10:"python -m bgpd run --config bgpd.yaml"'
# the pre-started launcher, seen by py-spy between fork and exec: its parent's command line
LAUNCHER = 'process 11:"python -m bgpd run --config bgpd.yaml"'
BRIDGE = 'process 12:"python bgpd/speaker/bridge.py api.sock"'


def test_a_child_named_by_its_parents_command_line_is_told_by_what_it_runs() -> None:
    raw = "\n".join([
        f"{DAEMON};run (asyncio/runners.py:1);Rib._advertise (ribs/rib.py:460) 5",
        f"{DAEMON};{LAUNCHER};<module> (bgpd/speaker/engine.py:1);"
        "_find_and_load (<frozen importlib._bootstrap>:1) 2",
        f"{DAEMON};{LAUNCHER};<module> (bgpd/speaker/engine.py:1);"
        "main (bgpd/speaker/engine.py:900);Connection.writer (exabgp/x.py:194) 3",
        f"{DAEMON};{BRIDGE};relay (bgpd/speaker/bridge.py:68);select (selectors.py:468) 1",
        # the daemon imports the launcher's module when ExaBGP exits: still the daemon
        f"{DAEMON};<module> (bgpd/speaker/engine.py:1);compile (x.py:1) 1",
    ])
    summary = summarize(raw)
    assert {p: s["samples"] for p, s in summary.items()} == {"daemon": 6, "exabgp": 5,
                                                              "bridge": 1}
    assert summary["exabgp"]["self_pct"]["Connection.writer (exabgp/x.py:194)"] == 60.0
