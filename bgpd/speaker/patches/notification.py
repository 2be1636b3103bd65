"""A NOTIFICATION for a message that cannot be read is sent, not lost (the ``notification``
unit).

When a peer's message has a bad marker, length or type, ExaBGP reports the NOTIFICATION it
is about to send to its API processes (bgpd asks for notifications) through
``Processes.notification``, which is broken twice in ExaBGP 5.0.15: ``reactor/protocol.py``
calls it with one argument more than it takes, and it calls its encoders'
``notification(neighbor, direction, message, negotiated, header, body)`` with a code, a
subcode and a text instead of a message.  The ``TypeError`` ends the session without the
NOTIFICATION RFC 4271 6.1 requires (1/1 Connection Not Synchronized, 1/2 Bad Message
Length, 1/3 Bad Message Type) — a reset after the peer's bytes were acknowledged, logged by
ExaBGP as its own misbehaviour.  Here the report takes either call and hands the encoders
what they take; the NOTIFICATION then goes out as ExaBGP means it to.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from bgpd.speaker.patches import Unit, wrapped_parameters

REPORTED = ("self", "neighbor", "direction", "code", "subcode", "data", "header", "body")
ENCODED = ("self", "neighbor", "direction", "message", "negotiated", "header", "body")


def notification_report(processes_cls: Any) -> None:
    def notification(self: Any, neighbor: Any, direction: Any, code: Any, subcode: Any,
                     data: Any, *rest: Any) -> None:
        if self.silence:
            return
        header, body = rest[-2:] if len(rest) >= 2 else (b"", b"")
        text = data if isinstance(data, bytes) else str(data).encode("utf-8", "replace")
        message = SimpleNamespace(code=code, subcode=subcode, data=text)
        for process in self._notify(neighbor, "neighbor-changes"):
            self.write(process, self._encoder[process].notification(
                neighbor, direction, message, None, header or b"", body or b""), neighbor)

    processes_cls.notification = notification


def _apply() -> None:
    from exabgp.reactor.api.processes import Processes

    notification_report(Processes)


def _check() -> list[str]:
    import inspect

    from exabgp.reactor.api.processes import Processes
    from exabgp.reactor.api.response.json import JSON
    from exabgp.reactor.api.response.text import Text

    found = []
    reported = wrapped_parameters(Processes.notification)
    if reported != REPORTED:
        found.append(f"exabgp.reactor.api.processes.Processes.notification's function takes "
                     f"({', '.join(reported or ())}), expected ({', '.join(REPORTED)})")
    for encoder in (JSON, Text):
        encoded = tuple(inspect.signature(encoder.notification).parameters)
        if encoded != ENCODED:
            found.append(f"{encoder.__module__}.{encoder.__name__}.notification takes "
                         f"({', '.join(encoded)}), expected ({', '.join(ENCODED)})")
    return found


UNIT = Unit(
    name="notification",
    contract=(("exabgp.reactor.api.processes", "Processes.notification", None),
              ("exabgp.reactor.api.processes", "Processes._notify", ("self", "neighbor", "event")),
              ("exabgp.reactor.api.processes", "Processes.write",
               ("self", "process", "string", "neighbor"))),
    attributes=(("exabgp.reactor.api.processes", "Processes", ("silence",)),
                ("exabgp.reactor.api.processes", "Processes.clean", ("_encoder",))),
    apply=_apply,
    check=_check,
)
