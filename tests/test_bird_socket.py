"""The BIRD-compatible replies, against the rules of calico-node's probes
(``node/pkg/health/bird/bird.go``): ``show status`` lines are 0001, 1000, 1011, 0024 (a
graceful restart in progress), rows starting with a space, and the final 0013."""

from __future__ import annotations

import time
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

from bgpd.observability import bird_status


def calico_gr_in_progress(lines: list[str]) -> bool:
    """calico-node's reading of ``show status``, rule for rule."""
    for line in lines:
        if line.startswith("0013"):
            return False
        if line.startswith("0024"):
            return True
        if not line.startswith(("0001", "1000", "1011", " ")):
            raise ValueError(f"unexpected output line from BIRD: {line!r}")
    return False


def parts(restarting: bool | None) -> Any:
    rib = None if restarting is None else SimpleNamespace(restarting=restarting)
    return SimpleNamespace(router=SimpleNamespace(
        config=SimpleNamespace(router_id=IPv4Address("198.51.100.11")), rib=rib),
        started=time.time(), last_reconfigure=time.time())


def test_status_says_graceful_restart_while_the_kept_routes_wait() -> None:
    during = bird_status(parts(True))
    assert calico_gr_in_progress(during) and during[-1].startswith("0013")
    assert not calico_gr_in_progress(bird_status(parts(False)))
    assert not calico_gr_in_progress(bird_status(parts(None)))  # no configuration yet
    assert bird_status(parts(False))[0].startswith("1000-BIRD ")  # what liveness looks for
