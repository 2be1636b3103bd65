"""How bgpd starts ExaBGP: ExaBGP's own ``main``, changed by the units of
:mod:`bgpd.speaker.patches` that the installed ExaBGP has every name for.

The units, each its own module with its theory of operation and the exact ExaBGP names it
relies on:

* ``listen``: the daemon's listening sockets taken as ExaBGP's own (without it, the daemon
  closes them and ExaBGP binds its own).
* ``scheduling`` (:mod:`~bgpd.speaker.patches.scheduling`): a peer gets a turn of its state
  machine when its socket is readable, a command gave it work or a timer is due, not every
  loop; ``epoll``; every waiting connection accepted at once; commands' neighbours found by
  address; a burst of commands served as one write per peer; API lines flushed once per
  loop; callbacks driven without a new asyncio loop each time.
* ``queued_changes``: a newer change to a prefix replaces the one queued for it, so the
  outgoing RIB never writes an older change after a newer one.
* ``shared_changes``: one route object shared by every neighbour a command names.
* ``update_groups``: one encoding of an UPDATE for every session alike, one write per turn.
* ``logging``: ExaBGP's disabled debug and info calls made no-ops.
* ``gc``: the cyclic collector as in the daemon (:func:`bgpd.runtime.tune_gc`).
* ``reload``: a reload is never dropped while routes are queued.
* ``notification``: a message that cannot be read gets its NOTIFICATION.
* ``attribute_errors``: path attribute errors ExaBGP lets through (a long ORIGIN, no AS_PATH,
  confederation segments from an eBGP peer) or answers with a reset (a bad ORIGINATOR_ID or
  CLUSTER_LIST, an unreadable AS4_PATH) handled as RFC 7606 and 6793 say; an OPEN on an
  established session ends it (5/3).

Everything else — what a turn does, timers, the API, the configuration — is ExaBGP's,
unchanged.

The launcher is written against one release (:data:`PINNED`, the version ``setup.cfg``
pins).  Before applying a unit it checks every name the unit declares against the installed
ExaBGP; a unit that does not match is left out (and the units that need it), another
release leaves them all out — ExaBGP then runs as shipped for those parts, correct and
slower — and the launcher says so, once: a line on stderr and the report the daemon reads
(``BGPD_ENGINE_REPORT``: a JSON file of the units applied and the ones left out, with
why), which ``bgpd status``, a metric and ``/readyz`` show.  A mismatch never stops
ExaBGP.  ``BGPD_EXABGP_PLAIN=1`` runs ExaBGP exactly as shipped; ``BGPD_EXABGP_SKIP=`` a
comma-separated list of units leaves those out (to measure each step alone).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bgpd.runtime import tune_gc
from bgpd.speaker import prestart
from bgpd.speaker.patches import Unit, problems
from bgpd.speaker.patches import attribute_errors as _attribute_errors
from bgpd.speaker.patches import listen_fds as _listen_fds
from bgpd.speaker.patches import notification as _notification
from bgpd.speaker.patches import queued_changes as _queued_changes
from bgpd.speaker.patches import quiet_logging as _quiet_logging
from bgpd.speaker.patches import reload as _reload
from bgpd.speaker.patches import scheduling as _scheduling
from bgpd.speaker.patches import shared_changes as _shared_changes
from bgpd.speaker.patches import update_groups as _update_groups

PINNED = "5.0.15"
PLAIN_ENV = "BGPD_EXABGP_PLAIN"  # "1": ExaBGP as shipped
SKIP_ENV = "BGPD_EXABGP_SKIP"  # units to leave out, comma-separated (measuring one alone)
REPORT_ENV = "BGPD_ENGINE_REPORT"  # where the launcher writes what it applied

GC = Unit(name="gc", contract=(), attributes=(), apply=tune_gc)
UNITS: tuple[Unit, ...] = (_listen_fds.UNIT, _scheduling.UNIT, _queued_changes.UNIT,
                           _shared_changes.UNIT, _update_groups.UNIT, _quiet_logging.UNIT, GC,
                           _reload.UNIT, _notification.UNIT, _attribute_errors.UNIT)


def installed_release() -> str | None:
    try:  # (not importlib.metadata: it costs the launcher more to import than to check)
        from exabgp.version import release
    except ImportError:
        return None
    return str(release)


def plan(units: Sequence[Unit] = UNITS, *, pinned: str = PINNED,
         environ: dict[str, str] | None = None,
         checked: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Which of ``units`` apply to the installed ExaBGP and which are left out, with why
    (``checked``: each unit's problems, found already); nothing is applied here."""
    env = os.environ if environ is None else environ
    release = installed_release()
    skip = {s for s in env.get(SKIP_ENV, "").split(",") if s}
    applied: list[str] = []
    left_out: dict[str, str] = {}
    for unit in units:
        if env.get(PLAIN_ENV) == "1":
            left_out[unit.name] = f"{PLAIN_ENV}=1"
        elif release != pinned:
            left_out[unit.name] = (f"ExaBGP {release or 'is not installed'}"
                                   f"{' is installed' if release else ''}; the units are "
                                   f"written against {pinned}")
        elif unit.name in skip:
            left_out[unit.name] = f"{SKIP_ENV}"
        elif missing := [r for r in unit.requires if r not in applied]:
            left_out[unit.name] = f"needs {', '.join(missing)}"
        elif found := (checked[unit.name] if checked is not None else problems(unit)):
            left_out[unit.name] = "; ".join(found)
        else:
            applied.append(unit.name)
    return {"release": release, "pinned": pinned, "applied": applied, "left_out": left_out}


def _report(report: dict[str, Any]) -> None:
    mismatched = {name: why for name, why in report["left_out"].items()
                  if why not in (f"{PLAIN_ENV}=1", SKIP_ENV)}
    if mismatched:
        print("bgpd's ExaBGP launcher: running ExaBGP's own code for "
              + "; ".join(f"{name} ({why})" for name, why in mismatched.items())
              + ". It works, slower with many peers; install the pinned release "
              f"({report['pinned']}) for the rest.", file=sys.stderr, flush=True)
    path = os.environ.get(REPORT_ENV)
    if path:
        tmp = Path(f"{path}.tmp")
        try:
            tmp.write_text(json.dumps(report))
            os.replace(tmp, path)
        except OSError as exc:
            print(f"bgpd's ExaBGP launcher: cannot write {path}: {exc}", file=sys.stderr)


def main() -> None:
    checked = None
    if sys.argv[1:] == [prestart.WAIT]:  # pre-started: import and check now, start when told
        import exabgp.application.main  # noqa: F401

        checked = {unit.name: problems(unit) for unit in UNITS}
        prestart.take_start(sys.stdin.buffer.readline())
    report = plan(checked=checked)
    by_name = {unit.name: unit for unit in UNITS}
    for name in report["applied"]:
        by_name[name].apply()
    _report(report)
    from exabgp.application.main import main as exabgp_main

    exabgp_main()


if __name__ == "__main__":
    main()
