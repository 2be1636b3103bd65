"""The project's exception tree: adapters translate library errors into these."""

from __future__ import annotations

import errno as _errno
import os


class BgpdError(Exception):
    """Base of every error the daemon raises on purpose."""


class KernelError(BgpdError):
    """The kernel refused a route operation (or the adapter could not encode it)."""

    reason = "kernel_error"

    def __init__(self, message: str, *, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class ForeignRouteConflict(KernelError):
    """A route of another protocol holds the key (prefix, metric) the daemon wants: left alone."""

    reason = "foreign_route"


class NoSuchDevice(KernelError):
    """A next hop names a device the namespace does not have."""

    reason = "no_such_device"


class GatewayUnreachable(KernelError):
    """A gateway is not reachable on its device (and the route is not ``onlink``)."""

    reason = "gateway_unreachable"


class InvalidRoute(KernelError):
    """The route cannot be written as given (rejected before or by the kernel)."""

    reason = "invalid_route"


class NamespaceNotFound(KernelError):
    reason = "no_such_namespace"


def kernel_error(err: int, detail: str, *, adding: bool) -> KernelError:
    """Map a netlink errno (and the kernel's extended-ack text) to the exception tree."""
    text = os.strerror(err) + (f": {detail}" if detail else "")
    if err == _errno.EEXIST and adding:
        return ForeignRouteConflict(
            f"a route of another protocol already holds this prefix and metric ({text})",
            errno=err,
        )
    if err == _errno.ENODEV:
        return NoSuchDevice(text, errno=err)
    if err in (_errno.ENETUNREACH, _errno.EHOSTUNREACH) or "invalid gateway" in detail.lower():
        return GatewayUnreachable(text, errno=err)
    if err == _errno.EINVAL:
        return InvalidRoute(text, errno=err)
    return KernelError(text, errno=err)
