"""ExaBGP as bgpd runs it: small units that change it, each checked before it is applied.

Theory of operation: each unit is a module holding a :class:`Unit` — what it changes and
why (its module's docstring), every ExaBGP name it relies on (:attr:`Unit.contract`: the
module, the attribute path and, for a callable, its parameters; :attr:`Unit.attributes`:
instance attributes a method must assign), the units it needs applied first, and the
function that applies it.  The launcher (:mod:`bgpd.speaker.engine`) checks a unit against
the installed ExaBGP before applying it; a unit whose names are not all there as declared
is left out — ExaBGP keeps its own behaviour for that part, correct and slower — and the
launcher's report says which and why.  Nothing is half applied, and a mismatch never stops
ExaBGP from running.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: (module, attribute path, the parameters it must take — or None for a value)
Names = tuple[tuple[str, str, tuple[str, ...] | None], ...]
#: (module, class or class.method, instance attributes its body assigns)
Attributes = tuple[tuple[str, str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Unit:
    name: str  # as BGPD_EXABGP_SKIP names it
    contract: Names
    attributes: Attributes
    apply: Callable[[], None]
    requires: tuple[str, ...] = ()  # units that must be applied for this one to work
    check: Callable[[], list[str]] | None = None  # what the declarations cannot say


def resolve(module: str, path: str) -> Any:
    value: Any = importlib.import_module(module)
    for part in path.split("."):
        value = getattr(value, part)
    return value


def problems(unit: Unit) -> list[str]:
    """Every way the installed ExaBGP differs from what ``unit`` relies on (empty: none)."""
    found: list[str] = []
    for module, path, params in unit.contract:
        try:
            value = resolve(module, path)
        except (ImportError, AttributeError):
            found.append(f"{module}.{path} is missing")
            continue
        if params is not None:
            try:
                taken = tuple(inspect.signature(value).parameters)
            except (TypeError, ValueError):
                taken = ()
            if taken != params:
                found.append(f"{module}.{path} takes ({', '.join(taken)}), "
                             f"expected ({', '.join(params)})")
    for module, owner, names in unit.attributes:
        method = owner if "." in owner else f"{owner}.__init__"
        try:
            source = inspect.getsource(resolve(module, method))
        except (ImportError, AttributeError, OSError, TypeError):
            found.append(f"{module}.{method} cannot be read")
            continue
        found += [f"{module}.{method} no longer sets self.{name}" for name in names
                  if f"self.{name} =" not in source and f"self.{name}:" not in source]
    if unit.check is not None and not found:
        found += unit.check()
    return found


def wrapped_parameters(function: Any) -> tuple[str, ...] | None:
    """The parameters of the function a decorator without ``functools.wraps`` closes over
    (ExaBGP's ``silenced``), or None."""
    for cell in getattr(function, "__closure__", None) or ():
        inner = cell.cell_contents
        if inspect.isfunction(inner):
            return tuple(inspect.signature(inner).parameters)
    return None
