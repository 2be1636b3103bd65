"""Commands' neighbours found fast: part of the scheduling unit (:mod:`.scheduling`).

* A command for ``neighbor <address>`` finds its peers by address: ExaBGP tries a regular
  expression per (peer, neighbour named) pair, which for one command to 599 neighbours is
  358,801 of them.  Every candidate is still confirmed by ExaBGP's own matcher.
* A command's neighbours are read in one pass over its text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


@functools.lru_cache(maxsize=65536)
def neighbor_head(name: str) -> str | None:
    """``neighbor <address>`` from a peer's key (its name), if the key starts with it."""
    words = name.split(" ", 2)
    return " ".join(words[:2]) if words[0] == "neighbor" and len(words) > 1 else None


_SELECTOR_KEYS = frozenset(("neighbor", "local-ip", "local-as", "peer-as", "router-id",
                            "family-allowed", ","))


def quick_extract(original: Any) -> Any:
    """ExaBGP's ``extract_neighbors`` (``original``) for the commands the daemon writes,
    ``neighbor A , neighbor B ... <action>``, in one pass over the text: ExaBGP's splits
    the rest of the command again at each word, which for a command naming 598 neighbours
    copies it about 1,800 times.  Anything else — a description with more than the address,
    a one-word action — goes to ExaBGP's own."""

    def extract_neighbors(command: str) -> Any:
        descriptions: list[list[str]] = []
        start = 0
        while command.startswith("neighbor ", start):
            end = command.find(" ", start + 9)
            if end <= start + 9:  # an empty address, or nothing after it
                break
            descriptions.append([command[start:end]])
            if command.startswith(" , ", end):
                start = end + 3
                continue
            action = end + 1
            word = command.find(" ", action)
            if word <= action or command[action:word] in _SELECTOR_KEYS:
                break
            return descriptions, command[action:]
        return original(command)

    return extract_neighbors


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


def indexed_match(original: Any, match_one: Any,
                  on_found: Callable[[list[Any]], None] | None = None) -> Any:
    """ExaBGP's ``match_neighbors`` (``original``), looking at a peer only for the
    descriptions that name its address: a peer's key starts with ``neighbor <address>`` when
    made from its name, and no other key can hold that phrase, as ExaBGP builds them.  Each
    remaining pair is still decided by ExaBGP's ``match_neighbor`` (``match_one``).  One
    command for 599 neighbours is 599 checks instead of 358,801 regular expressions (more
    patterns than ``re`` caches: each was compiled anew, 15 s per command).  ``on_found``
    is told the peers each command gives work (the scheduling unit batches their turns)."""

    # the peers list last indexed (kept: its id names the index) -> head -> [(position, name)]
    indexed: list[Any] = [None, {}]

    def match_neighbors(peers: Any, descriptions: Any) -> Any:
        found = find(peers, descriptions)
        if on_found is not None:
            on_found(found)  # the command gives these peers work
        return found

    def heads(peers: Any) -> dict[str, list[tuple[int, Any]]]:
        """The peers by head; the reactor hands the same list until its peers change."""
        if indexed[0] is not peers:
            index: dict[str, list[tuple[int, Any]]] = {}
            for position, name in enumerate(peers):
                index.setdefault(neighbor_head(name) or "", []).append((position, name))
            indexed[:] = [peers, index]
        return indexed[1]

    def find(peers: Any, descriptions: Any) -> Any:
        if not descriptions:
            return peers
        alone: set[str] = set()  # heads named by a description of the address alone
        by_head: dict[str, list[Any]] = {}
        for description in descriptions:
            if len(description) == 1:
                wanted = description
            else:
                wanted = [s for s in description if s.startswith("neighbor ")]
            head = wanted[0] if len(wanted) == 1 else ""
            if (not head.startswith("neighbor ") or head.strip() == "neighbor *"
                    or " " in head[9:]):
                return original(peers, descriptions)
            if len(description) == 1:
                alone.add(head)
            else:
                by_head.setdefault(head, []).append(description)
        if not isinstance(peers, list):
            peers = list(peers)
        # a description that is its address alone matches every peer with that head (what
        # ExaBGP's matcher would find, without a regular expression per peer); the peers
        # come out in the order they were given
        index = heads(peers)
        found: list[tuple[int, Any]] = []
        for head in alone:
            found += index.get(head, ())
        for head, ds in by_head.items():
            if head not in alone:
                found += [(position, name) for position, name in index.get(head, ())
                          if any(match_one(d, name) for d in ds)]
        found.sort(key=_first)
        return [name for _, name in found]

    return match_neighbors
