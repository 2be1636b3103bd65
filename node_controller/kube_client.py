"""The parts of kubernetes-asyncio the daemon uses, imported without the rest.

The package's ``__init__`` modules import every generated API class and model — about 850
modules, ~37 MB of resident memory on every node — while the daemon uses four things: the
kubeconfig and in-cluster loaders (``kubernetes_asyncio.config``), ``Configuration``,
``ApiClient.call_api`` (with unparsed responses: no model is ever built) and
``ApiException``.  Importing this module registers ``kubernetes_asyncio``,
``kubernetes_asyncio.client`` and ``kubernetes_asyncio.client.models`` as *deferred*
packages — found on the path as usual, their ``__init__`` not run — then imports those
submodules for real.  A deferred package runs its own ``__init__`` the first time anyone asks
it for a name it does not have (``client.CoreV1Api``, ``kubernetes_asyncio.watch``), so other
code in the same process still sees the whole library.

Where the package was imported before this module, nothing is deferred; where its layout
is not the one expected, it is imported whole.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

DEFERRED = ("kubernetes_asyncio", "kubernetes_asyncio.client",
            "kubernetes_asyncio.client.models")

# names tools look for without needing them (a package has __path__ and __file__ already)
_PROBED = frozenset({"__path__", "__file__", "__wrapped__"})


def _deferred(name: str, directory: Path) -> ModuleType:
    """A package module whose ``__init__`` runs on the first name it lacks (PEP 562)."""
    spec = importlib.util.spec_from_file_location(
        name, directory / "__init__.py", submodule_search_locations=[str(directory)])
    if spec is None or spec.loader is None:
        raise ImportError(f"{name}: no package in {directory}")
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(attribute: str) -> Any:
        if attribute in _PROBED:
            raise AttributeError(attribute)
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        return getattr(module, attribute)

    module.__dict__["__getattr__"] = complete
    sys.modules[name] = module
    return module


def _install() -> None:
    if "kubernetes_asyncio" in sys.modules:
        return
    try:
        _defer()
    except (ImportError, AttributeError):  # another layout of the library: import it whole
        for name in [n for n in sys.modules if n.split(".")[0] == "kubernetes_asyncio"]:
            del sys.modules[name]


def _defer() -> None:
    spec = importlib.util.find_spec("kubernetes_asyncio")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("kubernetes_asyncio is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    parent: ModuleType | None = None
    for name in DEFERRED:
        module = _deferred(name, root.joinpath(*name.split(".")[1:]))
        if parent is not None:
            setattr(parent, name.rpartition(".")[2], module)
        parent = module
    client = sys.modules["kubernetes_asyncio.client"]
    # in the order the submodules import each other: each name a later one asks the
    # package for is there before it asks
    for submodule, names in (("exceptions", ("ApiException", "ApiValueError")),
                             ("configuration", ("Configuration",)),
                             ("rest", ()),
                             ("api_client", ("ApiClient",))):
        loaded = importlib.import_module(f"kubernetes_asyncio.client.{submodule}")
        for attribute in names:
            setattr(client, attribute, getattr(loaded, attribute))


_install()

# the names the daemon uses (after the line above: these imports load only their modules)
import kubernetes_asyncio.config as config  # noqa: E402
from kubernetes_asyncio.client.api_client import ApiClient  # noqa: E402
from kubernetes_asyncio.client.configuration import Configuration  # noqa: E402
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: E402

__all__ = ["ApiClient", "ApiException", "Configuration", "config"]
