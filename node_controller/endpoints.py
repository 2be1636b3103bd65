"""Local workloads to peer with: Felix's endpoint status files.

Theory of operation: for a BGPPeer with ``localWorkloadSelector``, Felix decides which of this
node's workload endpoints the selector picks and says so in the endpoint's status file
(``/var/run/calico/endpoint-status/<endpoint>``, JSON: ``ifaceName``, ``mac``, ``ipv4Nets``,
``ipv6Nets``, ``bgpPeerName``; written when FelixConfiguration ``endpointStatusPathPrefix`` is
set) — confd reads the same files (``confd/pkg/backends/calico/local_bgp_peer_watcher.go``).
A file naming a BGPPeer makes one peer per family, towards the first address of each list.

:func:`read_file` is pure given the text; :class:`EndpointFolder` rescans the folder (a stat
per file, a read only of files whose size or mtime changed) and says whether anything
changed.  A file that is not valid is an error naming the file and field, read again at every scan,
and keeps its last valid version meanwhile (Felix rewrites a file in place: a read may see it
half written); a file removed takes its workload away.
"""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address, IPv6Address, ip_interface
from pathlib import Path

from node_controller.errors import Invalid, ResourceError
from node_controller.models import LocalWorkload

KIND = "WorkloadEndpointStatus"
MAX_FILE = 64 * 1024  # a status file is a few hundred bytes


def read_file(name: str, text: str) -> LocalWorkload | None:
    """The workload a status file describes; None when it is not selected for peering (or has
    no address yet); raises :class:`Invalid` for a file that is not what Felix writes."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # (nesting deeper than the parser goes)
        raise Invalid("(file)", f"not JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise Invalid("(file)", "expected a JSON object")
    peer = data.get("bgpPeerName")
    if peer in (None, ""):
        return None
    if not isinstance(peer, str):
        raise Invalid("bgpPeerName", f"expected a string, got {peer!r}")
    first: dict[int, IPv4Address | IPv6Address] = {}
    for version in (4, 6):
        key = f"ipv{version}Nets"
        nets = data.get(key) or []
        if not isinstance(nets, list):
            raise Invalid(key, f"expected a list, got {type(nets).__name__}")
        if nets:
            try:
                iface = ip_interface(nets[0])
            except (TypeError, ValueError):
                raise Invalid(f"{key}[0]", f"{nets[0]!r} is not an address with prefix length"
                              ) from None
            if iface.version != version:
                raise Invalid(f"{key}[0]", f"{nets[0]!r} is not an IPv{version} address")
            first[version] = iface.ip
    if not first:
        return None
    v4, v6 = first.get(4), first.get(6)
    return LocalWorkload(name=name, bgp_peer=peer,
                         ipv4=v4 if isinstance(v4, IPv4Address) else None,
                         ipv6=v6 if isinstance(v6, IPv6Address) else None)


class EndpointFolder:
    """The status files of one folder, rescanned on demand."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seen: dict[str, tuple[int, int]] = {}  # name → (mtime_ns, size) last read
        self._workloads: dict[str, LocalWorkload] = {}
        self._errors: dict[str, ResourceError] = {}

    @property
    def workloads(self) -> tuple[LocalWorkload, ...]:
        return tuple(sorted(self._workloads.values(), key=lambda w: w.name))

    @property
    def errors(self) -> tuple[ResourceError, ...]:
        return tuple(sorted(self._errors.values()))

    def scan(self) -> bool:
        """Read what changed since the last scan; whether the workloads or errors changed."""
        before = (dict(self._workloads), dict(self._errors))
        try:
            entries = {e.name: e for e in os.scandir(self.folder) if e.is_file()}
        except OSError:
            entries = {}  # no folder (Felix writes none): no local workloads
        for name in set(self._seen) - set(entries):
            del self._seen[name]
            self._workloads.pop(name, None)
            self._errors.pop(name, None)
        for name, entry in entries.items():
            try:
                stat = entry.stat()
            except OSError:
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            if self._seen.get(name) == stamp:
                continue
            if self._read(name, stat.st_size):
                self._seen[name] = stamp  # an invalid file is read again at the next scan
        return before != (self._workloads, self._errors)

    def _read(self, name: str, size: int) -> bool:
        """Read one file; False when it could not be used (its last valid version stays:
        Felix rewrites a file in place, so a read may see it half written)."""
        try:
            if size > MAX_FILE:
                raise Invalid("(file)", f"{size} bytes: larger than {MAX_FILE >> 10} KiB")
            with open(self.folder / name, "rb") as handle:
                text = handle.read(MAX_FILE).decode("utf-8", "replace")
            workload = read_file(name, text)
        except OSError:
            return False  # gone between the listing and the read: the next scan sees it
        except Invalid as exc:
            self._errors[name] = ResourceError(KIND, name, exc.field, exc.message)
            return False
        self._errors.pop(name, None)
        if workload is None:
            self._workloads.pop(name, None)
        else:
            self._workloads[name] = workload
        return True
