"""Static mode: the store loaded from a folder of YAML (or JSON) manifests.

Every ``*.yaml``, ``*.yml`` and ``*.json`` file of the folder (not its subfolders) is read in
name order; a file may hold several documents, and a document may be a ``List`` with
``items``.  A ``.json`` file is read as JSON (one document) where it is valid JSON, 50 times
faster than as YAML: 600 Nodes and their blocks take 2 ms, against 0.1 s with libyaml.  A
file that is not UTF-8, not valid YAML, nested too deep or holding a value Python refuses (an
integer of 5,000 digits) stops the load with an error naming the file (and the line where
YAML knows it); a resource that is invalid is recorded in the store's errors like any other.

What the folder holds is checked as a whole too:

* the same object (kind and name) in two places is an error naming every place; the first
  valid one applies, whatever comes after it;
* objects of kinds the daemon does not read (a pod list left in the folder) are skipped, one
  error per file counting them by kind — not one per object;
* a link that leads nowhere (a loop, a missing target) is named and skipped.

The controller runs :func:`load_folder` in a worker thread, so the daemon's event loop —
BGP keepalives, ``bgpd status`` — keeps running during a load.  Python lets the loop run
between the parser's calls back into Python code, and the readers are chosen so those calls
come often: JSON is decoded with an object hook (without one, ``json.loads`` of 50 MB holds
the interpreter for 1.5 s at once), and a file over :data:`IN_PROCESS_MAX` is read by a child
process, which hands back only the objects the daemon reads (libyaml composes a whole
document before any Python code runs: 0.9 s at once for a 7 MB one, and a 50 MB pod list
would otherwise also cost the daemon the memory of every pod).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from node_controller.errors import ResourceError
from node_controller.store import KINDS, Store, object_name

# libyaml's safe loader where PyYAML was built with it (10x faster on a 600-node folder)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
IN_PROCESS_MAX = 2 << 20  # bytes: a larger file is read by a child process
EXIT_UNREADABLE = 65  # the child's status when the file cannot be read (its message follows)
CHILD_TIMEOUT = 300.0  # seconds: a file that takes longer (a YAML alias bomb) is refused


class ResourceFolderError(ValueError):
    """The folder or one of its files cannot be read."""


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ResourceFolderError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ResourceFolderError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _parsed(path: Path, text: str) -> list[Any]:
    """The file's documents as parsed."""
    try:
        docs = _json_documents(text) if path.suffix == ".json" else None
        return docs if docs is not None else list(yaml.load_all(text, Loader=SAFE_LOADER))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ResourceFolderError(f"{where}: not valid YAML: {problem}") from None
    except (ValueError, RecursionError) as exc:  # a value YAML's types refuse (an integer
        # of 5,000 digits), or nesting deeper than Python's recursion limit
        raise ResourceFolderError(f"{path}: not valid YAML: {exc}") from None


def _same(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _json_documents(text: str) -> list[Any] | None:
    """The file's document, or None where it is not JSON alone (several documents, YAML's
    own syntax, or nested deeper than Python's recursion limit): YAML reads it then, as it
    always did, and names any error.  (The hook only gives other threads their turns.)"""
    try:
        return [json.loads(text, object_hook=_same)]
    except (ValueError, RecursionError):
        return None


def _objects(path: Path, docs: list[Any]) -> Iterator[Mapping[str, Any]]:
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise ResourceFolderError(f"{path}: document {index + 1} is not an object")
        if doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List"):
            for item in doc.get("items") or []:
                if isinstance(item, Mapping):
                    yield _with_kind(item, doc)
        else:
            yield doc


def _with_kind(item: Mapping[str, Any], parent: Mapping[str, Any]) -> Mapping[str, Any]:
    if "kind" in item:
        return item
    kind = str(parent.get("kind", ""))[: -len("List")]
    return {**item, "kind": kind, "apiVersion": parent.get("apiVersion")}


def read_file(path: Path, *, in_process: bool = False) -> tuple[list[Mapping[str, Any]],
                                                                 dict[str, int]]:
    """The objects of ``path`` the daemon reads, and how many of each other kind it holds."""
    try:
        large = path.stat().st_size > IN_PROCESS_MAX
    except OSError as exc:
        raise ResourceFolderError(f"{path}: {exc.strerror}") from None
    if large and not in_process:
        return _read_in_child(path)
    kept: list[Mapping[str, Any]] = []
    others: Counter[str] = Counter()
    for obj in _objects(path, _parsed(path, _text(path))):
        if obj.get("kind") in KINDS:
            kept.append(obj)
        else:
            others[str(obj.get("kind"))] += 1
    return kept, dict(others)


def _read_in_child(path: Path) -> tuple[list[Mapping[str, Any]], dict[str, int]]:
    try:
        done = subprocess.run([sys.executable, "-m", __name__, str(path)],
                              capture_output=True, check=False, timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ResourceFolderError(f"{path}: not read within {CHILD_TIMEOUT:g} s "
                                  "(the child reading it was stopped)") from None
    if done.returncode == EXIT_UNREADABLE:
        raise ResourceFolderError(done.stderr.decode(errors="replace").strip())
    try:
        if done.returncode != 0:
            raise ValueError(f"status {done.returncode}")
        answer = json.loads(done.stdout, object_hook=_same)
        return list(answer["objects"]), dict(answer["others"])
    except (ValueError, KeyError, TypeError) as exc:
        tail = done.stderr.decode(errors="replace").strip()[-300:]
        raise ResourceFolderError(f"{path}: its reader failed ({exc}): {tail}") from None


def manifest_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """The manifests of ``folder`` in name order, and the links among them that lead
    nowhere."""
    if not folder.is_dir():
        raise ResourceFolderError(f"{folder}: not a folder")
    named = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    broken = [p for p in named if p.is_symlink() and not p.exists()]
    return [p for p in named if p.is_file()], broken


def load_folder(folder: Path, store: Store | None = None) -> Store:
    """Read every manifest of ``folder`` into ``store`` (a new one by default)."""
    store = store if store is not None else Store()
    files, broken = manifest_files(folder)
    applied: dict[tuple[str, str], str] = {}  # where each object's version comes from
    places: dict[tuple[str, str], list[str]] = {}  # every place of an object seen twice
    for path in files:
        objects, others = read_file(path)
        for index, obj in enumerate(objects, 1):
            key = (str(obj["kind"]), object_name(obj))
            where = f"{path.name} (object {index})"
            first = applied.get(key)
            if first is not None:
                places.setdefault(key, [first]).append(where)
                if key not in store.errors:
                    continue  # the first valid one stays
            store.apply(obj)
            if first is None or key not in store.errors:
                applied[key] = where
        if others:
            counts = ", ".join(f"{n} {kind}" for kind, n in sorted(others.items()))
            store.report(ResourceError("File", str(path), "kind", (
                f"{counts}: not resources the daemon reads; skipped")))
    for key, seen in places.items():
        problem = f"defined {len(seen)} times in {folder}: {', '.join(seen)}"
        earlier = store.errors.get(key)  # none of them is valid
        store.report(ResourceError(*key, "metadata.name", (
            f"{problem}; the one in {applied[key]} applies" if earlier is None
            else f"{earlier.message}; {problem}")))
    for path in broken:
        store.report(ResourceError("File", str(path), "", (
            "a link that leads nowhere (a loop, or a target that does not exist): skipped")))
    return store


def _main(path: str) -> int:
    """The child of :func:`_read_in_child`: the file's objects as JSON on stdout."""
    try:
        objects, others = read_file(Path(path), in_process=True)
    except ResourceFolderError as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNREADABLE
    json.dump({"objects": objects, "others": others}, sys.stdout, default=str,
              separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
