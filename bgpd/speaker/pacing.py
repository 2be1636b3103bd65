"""Pacing (pure): the RIB's Adj-RIB-Out changes → commands ExaBGP cannot mis-apply.

ExaBGP's outgoing RIB loses changes when one prefix changes several times inside one flush
window (announce, withdraw, announce can end *withdrawn*; two re-announces can leave the
older one on the wire).  So the pacer:

* keeps, per neighbor, what ExaBGP has been told (``wire``) and the latest wanted state
  (``pending``) — later changes to a prefix overwrite earlier ones before anything is sent;
* sends at most one change per (neighbor, prefix) per batch;
* where ExaBGP runs without the launcher's ``queued_changes`` unit (which makes its outgoing
  RIB keep one change per prefix queued, the newest: then ``cooldown`` is 0 and this rule
  is off), sends none to a prefix changed less than ``cooldown`` seconds ago (the change
  waits; :meth:`Pacer.take` returns when to come back) — counted from when ExaBGP
  acknowledged the previous change (:meth:`Pacer.acknowledged`), since its outgoing RIB
  holds a change until the peer's next turn to write, which the launcher defers up to
  ``BATCH_WINDOW`` (0.25 s) during a burst of commands: the cooldown must be longer than
  that;
* changes attributes by re-announcing, withdraws with exactly the announced attributes;
* groups announcements with identical attributes into ``announce attributes ... nlri``
  commands, and neighbors with identical changes into one command — never two address
  families in one command (ExaBGP refuses a whole command that names a family one of its
  neighbours lacks), and never a prefix to a neighbour of the other family (each session
  carries its address's family: :meth:`Pacer.desire` drops such a change, which the
  RIB's export never makes);
* after a session comes up, sends whatever differs and then End-of-RIB;
* hands out each command as a :class:`Batch` that remembers the changes it carries: a
  command ExaBGP refuses changed nothing there, so :meth:`Pacer.refused` puts its changes
  back (``wire`` as before, the wanted state pending again) to be retried after ``retry``
  seconds — never recorded as on the wire.

``wire`` is what ExaBGP's RIB for a neighbor holds; it survives session flaps (ExaBGP
re-sends it itself) and is forgotten when ExaBGP restarts or the neighbor is redefined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bgpd.speaker.codec import announce_command, eor_command, withdraw_command
from ribs.types import Address, Attributes, Prefix, address_key, prefix_bits

Change = tuple[Address, Prefix, Attributes | None, Attributes | None]  # peer, prefix, was, is


@dataclass(frozen=True, slots=True)
class Batch:
    """One command, and what it changes in ExaBGP's outgoing RIB: ``prefixes`` become
    ``wanted`` (None: withdrawn) for each of ``peers``; ``before`` holds what each peer had
    (its ``(prefix, attributes)`` pairs, shared by the batches of one computation)."""

    text: str
    peers: tuple[Address, ...] = ()
    prefixes: tuple[Prefix, ...] = ()
    wanted: Attributes | None = None
    before: Mapping[Address, Sequence[tuple[Prefix, Attributes | None]]] = field(
        default_factory=dict, compare=False, repr=False)
    eor: tuple[Address, ...] = ()

    @property
    def changes(self) -> tuple[Change, ...]:
        """Each (peer, prefix, was, is) this batch changes."""
        out: list[Change] = []
        for peer in self.peers:
            was = dict(self.before[peer])
            out += [(peer, p, was[p], self.wanted) for p in self.prefixes]
        return tuple(out)


#: longer than the launcher's BATCH_WINDOW (bgpd/speaker/patches/scheduling.py), plus a margin
COOLDOWN = 0.35

# attributes -> peer -> [(prefix, what the peer had before)]
Grouped = dict[Attributes, dict[Address, list[tuple[Prefix, Attributes | None]]]]


class Pacer:
    def __init__(self, *, cooldown: float = COOLDOWN, max_nlri: int = 400,
                 retry: float = 10.0) -> None:
        self.cooldown = cooldown
        self.retry = retry
        self.max_nlri = max_nlri
        self.wire: dict[Address, dict[Prefix, Attributes]] = {}
        self.pending: dict[Address, dict[Prefix, Attributes | None]] = {}
        self.sent_at: dict[Address, dict[Prefix, float]] = {}  # when each change was sent
        self.held: dict[tuple[Address, Prefix], float] = {}  # refused: not before then
        self.eor_due: set[Address] = set()
        self._expired_at = float("-inf")

    # --- input ---------------------------------------------------------------------------
    def desire(self, peer: Address, prefix: Prefix, attrs: Attributes | None) -> None:
        if prefix.version != peer.version:
            return  # no session of ours carries it (ribs.export leaves it out)
        self.pending.setdefault(peer, {})[prefix] = attrs

    def request_eor(self, peer: Address) -> None:
        self.eor_due.add(peer)

    def reset(self, peer: Address) -> None:
        """ExaBGP no longer holds anything for ``peer`` (restart, redefinition): re-send all
        that is wanted."""
        wire = self.wire.pop(peer, {})
        pending = self.pending.setdefault(peer, {})
        for prefix, attrs in wire.items():
            pending.setdefault(prefix, attrs)
        for prefix in [p for p, a in pending.items() if a is None]:
            del pending[prefix]  # nothing on the wire to withdraw
        self._drop_times(peer)

    def forget(self, peer: Address) -> None:
        self.wire.pop(peer, None)
        self.pending.pop(peer, None)
        self.eor_due.discard(peer)
        self._drop_times(peer)

    def _drop_times(self, peer: Address) -> None:
        self.sent_at.pop(peer, None)
        for key in [k for k in self.held if k[0] == peer]:
            del self.held[key]

    def advertised(self, peer: Address) -> int:
        return len(self.wire.get(peer, ()))

    # --- output --------------------------------------------------------------------------
    def take(self, now: float) -> tuple[list[Batch], float | None]:
        """Commands to send now, and when to call again for changes held back (or None)."""
        # (one pass over every pending (peer, prefix): a reflector's start is peers x prefixes
        # of them, so no tuple is made per change)
        announces: Grouped = {}
        withdraws: Grouped = {}
        later: float | None = None
        cooldown, held = self.cooldown, self.held
        # peers in address order: each command names its peers in the order they come
        for peer in sorted(self.pending, key=address_key):
            changes = self.pending[peer]
            wire = self.wire.setdefault(peer, {})
            stamps = self.sent_at.setdefault(peer, {}) if cooldown else None
            for prefix in list(changes):
                wanted = changes[prefix]
                current = wire.get(prefix)
                if wanted == current:
                    del changes[prefix]
                    continue
                sent = stamps.get(prefix) if stamps is not None else None
                due = sent + cooldown if sent is not None else now
                if held:
                    until = held.get((peer, prefix))
                    if until is not None:
                        due = max(due, until)
                if due > now:
                    later = due if later is None else min(later, due)
                    continue
                if held:
                    held.pop((peer, prefix), None)
                del changes[prefix]
                if stamps is not None:
                    stamps[prefix] = now
                if wanted is None:
                    assert current is not None
                    group, key = withdraws, current
                    del wire[prefix]
                else:
                    group, key = announces, wanted
                    wire[prefix] = wanted
                by_peer = group.get(key)  # (not setdefault: no dict and list made per change)
                if by_peer is None:
                    by_peer = group[key] = {}
                entries = by_peer.get(peer)
                if entries is None:
                    entries = by_peer[peer] = []
                entries.append((prefix, current))
        self.pending = {p: c for p, c in self.pending.items() if c}
        batches = self._batches(announces, announce_command, announce=True)
        batches += self._batches(withdraws, withdraw_command, announce=False)
        done = sorted((p for p in self.eor_due if p not in self.pending), key=address_key)
        for version in (4, 6):  # one command per family, however many peers
            peers = [p for p in done if p.version == version]
            for i in range(0, len(peers), self.max_nlri):
                chunk = tuple(peers[i:i + self.max_nlri])
                batches.append(Batch(eor_command(chunk), eor=chunk))
        self.eor_due &= set(self.pending)
        self._expire(now)
        return batches, later

    def _batches(self, grouped: Grouped,
                 build: Callable[[Sequence[Address], Attributes, Iterable[Prefix]], str], *,
                 announce: bool) -> list[Batch]:
        out: list[Batch] = []
        for attrs, by_peer in grouped.items():
            # peers with the same prefixes share commands (by_peer is in address order)
            by_prefixes: dict[tuple[Prefix, ...], list[Address]] = {}
            for peer, entries in by_peer.items():
                if len(entries) == 1:
                    nlri: tuple[Prefix, ...] = (entries[0][0],)
                else:
                    nlri = tuple(sorted((p for p, _ in entries), key=prefix_bits))
                members = by_prefixes.get(nlri)
                if members is None:
                    by_prefixes[nlri] = [peer]
                else:
                    members.append(peer)
            wanted = attrs if announce else None
            for nlri, members in by_prefixes.items():
                peers = tuple(members)
                for i in range(0, len(nlri), self.max_nlri):
                    chunk = nlri[i:i + self.max_nlri]
                    out.append(Batch(build(peers, attrs, chunk), peers, chunk, wanted, by_peer))
        return out

    def refused(self, batch: Batch, now: float) -> None:
        """ExaBGP refused ``batch``: it changed nothing there.  Its changes are wanted again
        (unless something newer is), not before ``now + retry``.  A refused End-of-RIB is
        not sent again (the peer's restart timer ends its wait)."""
        for peer, prefix, was, wanted in batch.changes:
            wire = self.wire.get(peer)
            if wire is None:
                continue  # forgotten or reset meanwhile: it will be sent whole anyway
            if wire.get(prefix) == wanted:
                if was is None:
                    wire.pop(prefix, None)
                else:
                    wire[prefix] = was
            self.pending.setdefault(peer, {}).setdefault(prefix, wanted)
            self.held[(peer, prefix)] = now + self.retry

    def acknowledged(self, batch: Batch, now: float) -> None:
        """ExaBGP has taken ``batch`` into its outgoing RIB: its prefixes' cooldown starts
        now (their next change must not join this one before it is written)."""
        if not self.cooldown:
            return
        prefixes = batch.prefixes
        for peer in batch.peers:
            stamps = self.sent_at.get(peer)
            if stamps is not None:
                for prefix in prefixes:
                    stamps[prefix] = now

    def _expire(self, now: float) -> None:
        # stamps older than the cooldown hold nothing back: dropped, in a walk at most once
        # per cooldown (a reflector's start stamps peers x prefixes; a walk per command made
        # the pacer quadratic)
        if not self.cooldown:
            self.sent_at.clear()
            return
        if now - self._expired_at < self.cooldown:
            return
        self._expired_at = now
        for peer in list(self.sent_at):
            stamps = self.sent_at[peer]
            old = [p for p, t in stamps.items() if now - t >= self.cooldown]
            if len(old) == len(stamps):
                del self.sent_at[peer]
            else:
                for p in old:
                    del stamps[p]

    def idle(self) -> bool:
        return not self.pending and not self.eor_due

