"""ExaBGP's writes to its API process, flushed once per reactor loop: part of the scheduling
unit (:mod:`.scheduling`), which flushes them before it waits for IO.

ExaBGP flushes its pipe to the API process after every line it writes: a ``write(2)`` per
event and a wake-up of the bridge and the daemon for each (a 599-peer start is ~3,000
events).  Lines go into the pipe's buffer and the reactor flushes them before it waits for
IO, in the order written: no line waits longer than the rest of the loop that wrote it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any


def buffered_api_writes(processes_cls: Any, process_error: Any) -> Callable[[], None]:
    """ExaBGP's ``Processes.write`` without its flush per line; the function returned flushes
    every pipe written since it last ran, and a process stopped is flushed first.  A write
    fails as ExaBGP's does: a broken pipe marks the process broken and raises
    ``ProcessError``."""
    unflushed: dict[str, Any] = {}  # process name -> its pipe (insertion order: first written)
    original_terminate = processes_cls._terminate

    def write(self: Any, process: Any, string: Any, neighbor: Any = None) -> bool:
        if string is None:
            return True
        pipe = self._process[process].stdin
        try:
            pipe.write(f"{string}\n".encode("ascii"))  # (Python retries it if interrupted)
        except OSError as exc:
            self._broken.append(process)
            raise process_error from exc
        unflushed[process] = pipe
        return True

    def flush(names: Iterable[str] | None = None) -> None:
        for name in list(unflushed) if names is None else [n for n in names if n in unflushed]:
            pipe = unflushed.pop(name)
            with contextlib.suppress(OSError, ValueError):  # as ExaBGP's: the next write's
                pipe.flush()                               # flush tries again (or closed)

    def terminate(self: Any, process_name: Any) -> Any:
        flush([process_name])  # what it was told before it is stopped
        return original_terminate(self, process_name)

    processes_cls.write = write
    processes_cls._terminate = terminate
    return flush
