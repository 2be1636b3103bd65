"""The launcher's units against an ExaBGP that is not the one they were written for.

One node, a BIRD 2 ToR, real ExaBGP; the ExaBGP the launcher meets has one name the
scheduling unit relies on changed (by a ``sitecustomize`` on the launcher's path, as a
release that changed it would): the unit is left out, BGP comes up on ExaBGP's own code,
and the node says so — in ``bgpd status``, a metric and ``/readyz`` — instead of the engine
restarting in a loop.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from integration_tests.cluster import TOR_IP, Cluster
from integration_tests.netns import NetLab
from integration_tests.peers import available

# (a change ExaBGP's own code takes, the unit's check does not; what the check says)
TEARDOWN = ('''
from exabgp.reactor.loop import Reactor

_original = Reactor.teardown_peer


def teardown_peer(self, name, code, reason=None):  # one parameter more
    return _original(self, name, code)


Reactor.teardown_peer = teardown_peer
''', {"scheduling": "exabgp.reactor.loop.Reactor.teardown_peer takes (self, name, code, "
                    "reason), expected (self, name, code)"})
LISTENER = ('''
from exabgp.reactor.listener import Listener

_original = Listener.__init__


def __init__(self, *args, **kwargs):  # its attributes set where the check does not look
    _original(self, *args, **kwargs)


Listener.__init__ = __init__
''', {"listen": "exabgp.reactor.listener.Listener.__init__ no longer sets self._sockets",
      "scheduling": "exabgp.reactor.listener.Listener.__init__ no longer sets self._sockets"})


@pytest.fixture
def bird2() -> None:
    why = available("bird2")
    if why:
        pytest.skip(why)


def started_against(changed: str, lab: NetLab, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """One node and a ToR, started with ``changed`` run by every Python of the node at its
    start (a ``sitecustomize`` on its path): ExaBGP as another release would have it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(changed)
    monkeypatch.setenv("PYTHONPATH", str(site))
    c = Cluster(lab, tmp_path, nodes=1)
    c.start_all()
    return c


@pytest.mark.parametrize(("changed", "said"), [TEARDOWN, LISTENER], ids=["teardown", "listener"])
def test_a_changed_exabgp_name_leaves_its_unit_out_and_bgp_up(
        lab: NetLab, tmp_path: Path, bird2: None, monkeypatch: pytest.MonkeyPatch,
        changed: str, said: dict[str, str]) -> None:
    """Without ``listen`` ExaBGP cannot take the daemon's sockets: its first start fails to
    bind, the daemon closes them, the next start binds its own — once, not in a loop."""
    c = started_against(changed, lab, tmp_path, monkeypatch)
    node = c.nodes[0]
    try:
        tor = c.tor
        assert tor is not None
        c.wait(lambda: tor.established(node.ip) and node.block in tor.routes_from(node.ip),
               60, "the ToR session and our block on ExaBGP's own scheduling")
        speaker = c.status(node)["speaker"]
        left_out = speaker["engine_units_left_out"]
        assert sorted(left_out) == sorted(said), left_out
        assert all(said[unit] in why for unit, why in left_out.items()), left_out
        assert speaker["restarts"] == (1 if "listen" in said else 0) and speaker["healthy"]
        code, metrics = c.http(node, "/metrics")
        assert 'bgpd_exabgp_unit_left_out{unit="scheduling"} 1.0' in metrics
        code, ready = c.http(node, "/readyz")
        assert code == 200 and "note: ExaBGP runs its own code for scheduling" in ready, ready
        text = c.bgpd(node, "status")
        assert TOR_IP in text and "NOTE: ExaBGP runs its own code for scheduling" in text
        log = (node.workdir / "bgpd.log").read_text()
        assert log.count("exabgp_units_left_out") == 1
    finally:
        c.stop_all()


FAILING_RELOAD = '''
from exabgp.configuration.configuration import Configuration

_original = Configuration.reload
_calls = [0]


def reload(self):  # the process's second reading of its configuration fails, as a file
    _calls[0] += 1  # read while it was being rewritten did
    return False if _calls[0] == 2 else _original(self)


Configuration.reload = reload
'''


def test_a_reload_exabgp_cannot_read_is_counted_and_applied_by_a_fresh_start(
        lab: NetLab, tmp_path: Path, bird2: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """ExaBGP answers ``reload`` before it reads the file, and a failed read left it on the
    old configuration, refusing every later one: the failure is seen in its log, counted,
    and ExaBGP started again on the new configuration."""
    import signal

    c = started_against(FAILING_RELOAD, lab, tmp_path, monkeypatch)
    node = c.nodes[0]
    try:
        tor = c.tor
        assert tor is not None
        c.wait(lambda: tor.established(node.ip), 60, "the ToR session")
        engine = c.status(node)["speaker"]["exabgp_pid"]
        c.write_resources([c.calico("BGPPeer", "extra", {"peerIP": "198.51.100.99",
                                                          "asNumber": 65099})])
        assert node.proc is not None
        node.proc.send_signal(signal.SIGHUP)

        def applied() -> bool:
            status = c.status(node)
            return (any(p["name"] == "Global_198_51_100_99" for p in status["peers"])
                    and status["speaker"]["exabgp_pid"] not in (None, engine))

        c.wait(applied, 30, "the new peer, on a fresh ExaBGP")
        c.wait(lambda: tor.established(node.ip), 60, "the ToR session again")
        code, metrics = c.http(node, "/metrics")
        assert code == 200 and "bgpd_exabgp_reloads_refused_total 1.0" in metrics
        assert (node.workdir / "bgpd.log").read_text().count("exabgp_reload_failed") == 1
    finally:
        c.stop_all()
