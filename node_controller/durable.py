"""The last valid version of every resource, kept on disk across restarts and reboots (IO).

Theory of operation: the store remembers, for each object it holds as valid, the manifest it
was parsed from (:attr:`~node_controller.store.Store.valid`, trimmed of what the daemon never
reads: ``status``, ``managedFields``).  After the controller publishes a configuration, the
whole set is written to one JSON file in the data folder (``/var/lib/bgpd``), atomically
(written beside it, then renamed), if it changed.  At start the file is read back as the
store's *fallback*: an object that is invalid when the daemon starts is replaced by its last
valid version instead of vanishing, so a bad edit never changes routing, not even after a
restart.  Secrets are never written (they hold passwords).  A missing or unreadable file is
an empty fallback, logged, never an exit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("bgpd.durable")

FILE = "last-valid-resources.json"
Key = tuple[str, str]


def load(folder: Path) -> dict[Key, Mapping[str, Any]]:
    path = folder / FILE
    try:
        data = json.loads(path.read_text())
        objects = {(str(o["kind"]), str(o["metadata"]["name"])): o for o in data["objects"]}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        log.warning("durable_state_unreadable", path=str(path), error=str(exc),
                    problem="starting without the last valid resources")
        return {}
    log.info("durable_state_loaded", path=str(path), objects=len(objects))
    return objects


def save(folder: Path, objects: Mapping[Key, Mapping[str, Any]]) -> bool:
    """Write ``objects`` (False, logged, when the folder cannot be written)."""
    path = folder / FILE
    tmp = path.with_suffix(".tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = {"objects": [objects[k] for k in sorted(objects) if k[0] != "Secret"]}
        tmp.write_text(json.dumps(body, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError as exc:
        log.error("durable_state_not_written", path=str(path), error=str(exc))
        return False
    return True
