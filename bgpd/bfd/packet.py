"""BFD Control packets (RFC 5880 §4.1): one immutable value, its encoder and its checks.

:func:`decode` applies every check of §6.8.6 that needs no session (version, length, detect
multiplier, the Multipoint bit, discriminators) and raises :class:`Malformed` naming the one
that failed; the caller counts it and drops the packet.  Authentication is not supported: a
packet with the A bit is dropped (§6.8.6: "If the A bit is set and no authentication is in
use … the packet MUST be discarded").
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

VERSION = 1
LENGTH = 24  # the mandatory section; no authentication section is ever sent
_FORMAT = struct.Struct("!BBBBIIIII")


class State(enum.IntEnum):
    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3

    @property
    def label(self) -> str:
        return {0: "AdminDown", 1: "Down", 2: "Init", 3: "Up"}[self.value]


class Diag(enum.IntEnum):
    """Diagnostic codes (RFC 5880 §4.1)."""
    NONE = 0
    DETECTION_TIME_EXPIRED = 1
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3
    FORWARDING_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMIN_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


class Malformed(ValueError):
    """A packet that §6.8.6 says to discard; the message is the reason (a metric label)."""


class Control(NamedTuple):  # (a tuple: a frozen dataclass costs 2 µs more per packet)
    state: State
    my_discriminator: int
    your_discriminator: int
    desired_min_tx: int  # microseconds
    required_min_rx: int  # microseconds
    detect_mult: int
    diag: Diag = Diag.NONE
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False
    required_min_echo_rx: int = 0


def encode(packet: Control) -> bytes:
    flags = ((packet.state << 6) | (packet.poll << 5) | (packet.final << 4)
             | (packet.control_plane_independent << 3) | (packet.demand << 1))
    return _FORMAT.pack((VERSION << 5) | packet.diag, flags, packet.detect_mult, LENGTH,
                        packet.my_discriminator, packet.your_discriminator,
                        packet.desired_min_tx, packet.required_min_rx,
                        packet.required_min_echo_rx)


def decode(data: bytes) -> Control:
    if len(data) < LENGTH:
        raise Malformed("short")
    first, flags, mult, length, mine, yours, tx, rx, echo = _FORMAT.unpack_from(data)
    if first >> 5 != VERSION:
        raise Malformed("version")
    if flags & 0x04:
        raise Malformed("authentication")
    if length < LENGTH or length > len(data):
        raise Malformed("length")
    if mult == 0:
        raise Malformed("detect_mult")
    if flags & 0x01:
        raise Malformed("multipoint")
    if flags & 0x30 == 0x30:  # §6.5: never both Poll and Final
        raise Malformed("poll_and_final")
    if mine == 0:
        raise Malformed("my_discriminator")
    state = _STATES[flags >> 6]
    if yours == 0 and state not in (State.DOWN, State.ADMIN_DOWN):
        raise Malformed("your_discriminator")
    diag = first & 0x1F
    return Control(state, mine, yours, tx, rx, mult,
                   _DIAGS[diag] if diag < len(_DIAGS) else Diag.NONE,
                   bool(flags & 0x20), bool(flags & 0x10), bool(flags & 0x08),
                   bool(flags & 0x02), echo)


_STATES = tuple(State)  # by value: looked up per packet, where State(n) is slow
_DIAGS = tuple(Diag)
