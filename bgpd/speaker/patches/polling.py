"""``epoll`` behind the interface of ``select.poll`` that ExaBGP's reactor uses: part of the
scheduling unit (:mod:`.scheduling`); its cost follows the sockets that are ready, not the
sockets registered."""

from __future__ import annotations

import contextlib
import select

_EVENTS = select.EPOLLIN | select.EPOLLPRI | select.EPOLLERR | select.EPOLLHUP


class EpollPoller:
    """``select.poll``'s interface (what ExaBGP's reactor uses of it) over ``epoll``."""

    def __init__(self) -> None:
        self._epoll = select.epoll()

    def register(self, fd: int, events: int = _EVENTS) -> None:
        # the reactor registers a peer's socket again after each of its turns: modify, the
        # common case, costs one system call and no exception
        try:
            self._epoll.modify(fd, events & _EVENTS)
        except FileNotFoundError:
            self._epoll.register(fd, events & _EVENTS)

    def unregister(self, fd: int) -> None:
        # closed already (epoll forgets closed sockets) or never registered
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)

    def poll(self, timeout_ms: float | None = None) -> list[tuple[int, int]]:
        if timeout_ms is None or timeout_ms < 0:
            return self._epoll.poll(-1)
        return self._epoll.poll(timeout_ms / 1000)
