"""A reload is never lost (the ``reload`` unit).

ExaBGP's loop takes the reload signal, then, while any peer still has routes queued, goes
round *without* reloading — and the signal is already cleared: the reload is dropped,
though ``reload`` was answered ``done``.  A peer that cannot connect (this node's address
moved to one it does not hold) keeps its routes queued for ever, so every later reload was
dropped and the node's address coming back never reached ExaBGP.  The gate paces ExaBGP's
own configured routes, of which the daemon has none.
"""

from __future__ import annotations

from typing import Any

from bgpd.speaker.patches import Unit


def reload_not_gated(reactor_cls: Any) -> None:
    """Reload whatever the peers have queued: ``Reactor.run`` clears the reload signal, then
    skips the reload while ``_pending_adjribout`` is true, and a peer that cannot connect
    has routes queued for as long as it cannot — every reload in that time was lost."""
    reactor_cls._pending_adjribout = _nothing_pending


def _nothing_pending(self: Any) -> bool:
    return False


def _apply() -> None:
    from exabgp.reactor.loop import Reactor

    reload_not_gated(Reactor)


UNIT = Unit(
    name="reload",
    contract=(("exabgp.reactor.loop", "Reactor._pending_adjribout", ("self",)),),
    attributes=(),
    apply=_apply,
)
