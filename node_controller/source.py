"""What the controller needs of a source of resources: a watcher of one resource type, or
Typha (the interface, no IO)."""

from __future__ import annotations

from typing import Protocol


class Source(Protocol):
    listed: bool  # has delivered a complete state once
    last_event: float | None  # monotonic time it was last heard from
    stale_after: float
    errors: int

    @property
    def resource(self) -> object:  # what logs and metrics call it (its str)
        ...

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds it delivers whole (their last valid objects stand in until it has)."""
        ...

    def up(self, now: float) -> bool: ...

    async def run(self) -> None: ...
