"""The store of Calico resources: parsed models by kind and name, and the errors of bad ones.

Theory of operation: every object from the API (or a file) goes through
:func:`node_controller.models.parse`.  A valid one replaces the previous version of that
object; an invalid one is recorded as an error *and the previous valid version stays* — a
bad edit never takes a working peer or pool away.  :meth:`Store.apply` says whether anything
the daemon reads changed, so an object that changed only where the daemon does not look
(a Node's status, a resourceVersion) causes no recomputation at all.

The manifest of each valid object is kept too (:attr:`Store.valid`, trimmed of ``status``
and ``managedFields``), to be saved as the last valid resources
(:mod:`node_controller.durable`); given back as :attr:`Store.fallback` at the next start, an
object that is invalid then, and has no valid version in memory yet, takes its last valid
one — a bad edit keeps its last good version across a restart too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from node_controller.errors import Invalid, ResourceError
from node_controller.models import (
    BFDConfiguration,
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    ClusterInformation,
    EndpointSlice,
    FelixConfiguration,
    IPPool,
    Model,
    Node,
    Secret,
    Service,
    parse,
)

KINDS: dict[str, type] = {
    "BGPConfiguration": BGPConfiguration, "BGPPeer": BGPPeer, "BGPFilter": BGPFilter,
    "BFDConfiguration": BFDConfiguration,
    "IPPool": IPPool, "BlockAffinity": BlockAffinity, "Node": Node, "Secret": Secret,
    "ClusterInformation": ClusterInformation, "FelixConfiguration": FelixConfiguration,
    "Service": Service,
    "EndpointSlice": EndpointSlice,
}
# named namespace/name in the store; not configuration, so never kept as a last valid version
# (a Service's endpoints from before a restart say nothing about now)
NAMESPACED = frozenset({"Service", "EndpointSlice"})


def object_name(obj: Mapping[str, Any]) -> str:
    """The store's name of a manifest: ``metadata.name``, ``namespace/name`` for a Service
    or an EndpointSlice."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return "?"
    name = str(meta.get("name", "?"))
    if obj.get("kind") in NAMESPACED:
        return f"{meta.get('namespace') or 'default'}/{name}"
    return name
M = TypeVar("M")


@dataclass
class Store:
    objects: dict[str, dict[str, Model]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS})
    errors: dict[tuple[str, str], ResourceError] = field(default_factory=dict)
    generation: int = 0
    valid: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    valid_generation: int = 0  # moves when ``valid`` changes
    fallback: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    fallback_note: str = ", kept from before the restart,"  # where the fallback comes from
    # results a pure computation keeps between runs, checked against its inputs' identity
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def apply(self, obj: Mapping[str, Any]) -> bool:
        """Add or update one object; True when what the daemon reads changed."""
        kind = str(obj.get("kind", "?"))
        name = object_name(obj)
        try:
            model = parse(obj)
        except Invalid as exc:
            return self._invalid(kind, name, ResourceError(kind, name, exc.field, exc.message))
        cleared = self.errors.pop((kind, name), None) is not None
        bucket = self.objects[kind]
        if bucket.get(name) == model and not cleared:
            return False
        bucket[name] = model
        if kind not in NAMESPACED:
            self.valid[(kind, name)] = trimmed(obj)
            self.valid_generation += 1
        self.generation += 1
        return True

    def _invalid(self, kind: str, name: str, error: ResourceError) -> bool:
        bucket = self.objects.get(kind)
        last = self.fallback.get((kind, name))
        if bucket is not None and name not in bucket and last is not None:
            try:
                bucket[name] = parse(last)
                self.valid[(kind, name)] = last
            except Invalid:
                pass
            else:
                error = ResourceError(kind, name, error.field, error.message + (
                    f"; its last valid version{self.fallback_note} applies"))
        elif bucket is not None and name in bucket:
            error = ResourceError(kind, name, error.field,
                                  error.message + "; its last valid version applies")
        changed = self.errors.get((kind, name)) != error
        self.errors[(kind, name)] = error
        if changed:
            self.generation += 1
        return changed

    def report(self, error: ResourceError) -> bool:
        """Record a problem found around an object (a duplicate, a file), not in it; the
        object stays as it is."""
        key = (error.kind, error.name)
        if self.errors.get(key) == error:
            return False
        self.errors[key] = error
        self.generation += 1
        return True

    def delete(self, kind: str, name: str) -> bool:
        removed = self.objects.get(kind, {}).pop(name, None) is not None
        removed |= self.errors.pop((kind, name), None) is not None
        if self.valid.pop((kind, name), None) is not None:
            self.valid_generation += 1
        if removed:
            self.generation += 1
        return removed

    def replace_kind(self, kind: str, objs: Iterable[Mapping[str, Any]], *,
                     scope: Callable[[str], bool] | None = None) -> bool:
        """Make ``kind`` hold exactly ``objs`` (a relist) among the names ``scope`` covers
        (all by default); True when anything changed."""
        seen: set[str] = set()
        changed = False
        for obj in objs:
            seen.add(object_name(obj))
            changed |= self.apply(obj)
        def gone(name: str) -> bool:
            return name not in seen and (scope is None or scope(name))

        for name in [n for n in self.objects[kind] if gone(n)]:
            changed |= self.delete(kind, name)
        for key in [k for k in self.errors if k[0] == kind and gone(k[1])]:
            changed |= self.delete(*key)
        return changed

    def all(self, kind: type[M]) -> list[M]:
        bucket = self.objects[kind.__name__]
        return [bucket[name] for name in sorted(bucket)]  # type: ignore[misc]

    def get(self, kind: type[M], name: str) -> M | None:
        return self.objects[kind.__name__].get(name)  # type: ignore[return-value]

    def error_list(self) -> list[ResourceError]:
        return sorted(self.errors.values())


def trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without what no parser reads (a Node's status is most of its size)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = out.get("metadata")
    if isinstance(meta, Mapping):
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out
