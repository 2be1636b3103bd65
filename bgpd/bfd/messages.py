"""What the daemon and the BFD engine process tell each other, as JSON lines.

The daemon sends the sessions wanted (:class:`Spec`); the engine sends each state change
(:class:`Transition`), what BGP is to hear (:class:`~bgpd.bfd.session.Signal`), and a copy of
every session (:class:`View`) after each change and every two seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from ipaddress import ip_address
from typing import Any

from bgpd.bfd.packet import Diag
from bgpd.bfd.session import Signal, SignalKind, Timers
from ribs.types import Address


@dataclass(frozen=True, slots=True)
class Spec:
    """A session wanted: the peer, our address towards it, the interface and timers; single
    hop (RFC 5881: UDP 3784, TTL 255 only) or multihop (RFC 5883: UDP 4784, no interface,
    a TTL of at least ``min_ttl``)."""
    peer: Address
    local: Address
    interface: str | None
    timers: Timers
    multihop: bool = False
    min_ttl: int = 255


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change, for the log and the counters (made by the engine)."""
    peer: Address
    before: str
    after: str
    diag: str
    remote_cpi: bool


@dataclass(frozen=True, slots=True)
class View:
    """One session as status shows it (a copy made by the engine)."""
    peer: Address
    local: Address
    interface: str | None
    state: str
    remote_state: str
    diag: str
    since: float  # wall clock
    tx_interval: float
    detection_time: float
    multiplier: int
    remote_multiplier: int
    local_discriminator: int
    remote_discriminator: int
    remote_cpi: bool
    held_for: float
    received: int
    sent: int
    detections: int
    failures: int
    damped: int
    latest: float  # the most a periodic packet went out after its time (seconds)
    multihop: bool = False


Event = Signal | Transition
_VIEW_FIELDS = tuple(f.name for f in fields(View))


def plain(value: Spec | Transition | View | Signal) -> dict[str, Any]:
    """A value as JSON-ready data (addresses and enums as their text)."""
    # (a view's fields are all flat: no deep copy, which asdict makes, of a hundred twice a
    # second)
    out = ({f: getattr(value, f) for f in _VIEW_FIELDS} if isinstance(value, View)
           else asdict(value))
    for key, item in out.items():
        if key in ("peer", "local"):
            out[key] = str(item)
        elif key in ("kind", "diag") and hasattr(item, "value"):
            out[key] = item.value
    return out


def spec_of(data: dict[str, Any]) -> Spec:
    return Spec(peer=ip_address(data["peer"]), local=ip_address(data["local"]),
                interface=data["interface"], timers=Timers(**data["timers"]),
                multihop=data["multihop"], min_ttl=data["min_ttl"])


def transition_of(data: dict[str, Any]) -> Transition:
    return Transition(**{**data, "peer": ip_address(data["peer"])})


def signal_of(data: dict[str, Any]) -> Signal:
    return Signal(peer=ip_address(data["peer"]), kind=SignalKind(data["kind"]),
                  diag=Diag(data["diag"]), admin=data["admin"])


def view_of(data: dict[str, Any]) -> View:
    return View(**{k: v for k, v in data.items() if k in _VIEW_FIELDS} | {
        "peer": ip_address(data["peer"]), "local": ip_address(data["local"])})
