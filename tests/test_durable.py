"""The last valid resources: kept in the store, saved to disk, used at the next start; a
static folder that cannot be read keeps what runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from node_controller import durable
from node_controller.controller import Controller
from node_controller.models import IPPool
from node_controller.store import Store

POOL = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "pool", "managedFields": [{"x": 1}]},
        "spec": {"cidr": "172.17.0.0/12", "blockSize": 24, "ipipMode": "Always"},
        "status": {"big": "x" * 100}}
BANANA = {**POOL, "spec": {"cidr": "banana"}}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {
    "name": "n1", "annotations": {"projectcalico.org/IPv4Address": "198.51.100.11/24"}}}
AFFINITY = {"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
            "metadata": {"name": "n1-block"},
            "spec": {"node": "n1", "cidr": "172.17.1.0/24", "state": "confirmed",
                     "deleted": "false"}}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
          "stringData": {"k": "password"}}


def test_an_invalid_object_at_start_takes_its_last_valid_version(tmp_path: Path) -> None:
    store = Store()
    for obj in (POOL, NODE, SECRET):
        store.apply(obj)
    assert "status" not in store.valid[("IPPool", "pool")]
    assert "managedFields" not in store.valid[("IPPool", "pool")]["metadata"]
    assert durable.save(tmp_path, store.valid)
    saved = durable.load(tmp_path)
    assert set(saved) == {("IPPool", "pool"), ("Node", "n1")}  # never a Secret
    restarted = Store(fallback=saved)
    assert restarted.apply(BANANA)
    pool = restarted.get(IPPool, "pool")
    assert pool is not None and str(pool.cidr) == "172.16.0.0/12"  # (172.17.0.0/12 strict)
    (error,) = restarted.error_list()
    assert error.field == "spec.cidr" and "kept from before the restart, applies" in (
        error.message)
    assert restarted.apply(POOL) and not restarted.error_list()  # fixed: the error goes
    restarted.delete("IPPool", "pool")
    assert ("IPPool", "pool") not in restarted.valid


@pytest.mark.parametrize("text", ["{not json", "[" * 100_000 + "]" * 100_000])
def test_an_unreadable_state_file_is_an_empty_fallback(tmp_path: Path, text: str) -> None:
    (tmp_path / durable.FILE).write_text(text)
    assert durable.load(tmp_path) == {}
    assert not durable.save(tmp_path / durable.FILE, {})  # a file where the folder should be


def write(folder: Path, text: str) -> None:
    (folder / "cluster.yaml").write_text(text)


def manifests(*objs: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump_all(list(objs))


def test_a_broken_folder_keeps_the_running_configuration_and_names_file_and_line(
        tmp_path: Path) -> None:
    folder, data = tmp_path / "resources", tmp_path / "data"
    folder.mkdir()
    write(folder, manifests(POOL, NODE, AFFINITY))

    async def scenario() -> None:
        c = Controller("n1", data_dir=data)
        await c.run_static(folder)
        good = c.desired.value
        assert good is not None and [str(p) for p in good.blackholes] == ["172.17.1.0/24"]
        write(folder, "kind: IPPool\nmetadata: {name: x\nspec: {}\n")
        await c.run_static(folder)  # SIGHUP
        now = c.desired.value
        assert now is not None and now.blackholes == good.blackholes and now.pools == good.pools
        (error,) = [e for e in now.errors if e.kind == "File"]
        assert f"{folder / 'cluster.yaml'}:3:" in error.message
        # a restart with the file still broken starts from the last valid resources
        again = Controller("n1", data_dir=data)
        await again.run_static(folder)
        assert again.desired.value is not None
        assert again.desired.value.blackholes == good.blackholes
        assert any(e.kind == "File" for e in again.desired.value.errors)

    asyncio.run(scenario())


ME = {"apiVersion": "v1", "kind": "Node", "metadata": {
    "name": "n1", "annotations": {"projectcalico.org/IPv4Address": "198.51.100.11/24",
                                  "projectcalico.org/IPv4IPIPTunnelAddr": "172.17.1.1"}}}
OTHER = {"apiVersion": "v1", "kind": "Node", "metadata": {
    "name": "n2", "annotations": {"projectcalico.org/IPv4Address": "198.51.100.12/24"}}}


def edited(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``obj`` with the field at the dotted ``path`` set to ``value`` (a deep copy)."""
    import copy

    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    at = out
    for part in parents:
        at = at[part.replace("\x00", ".")]
    at[last.replace("\x00", ".")] = value
    return out


# bad edits in place, as an operator makes them: (what, the object, the field, the bad value)
BAD_EDITS = [
    ("an IPPool's ipipMode in lower case", POOL, "spec.ipipMode", "always"),
    ("the own BlockAffinity's state capitalised", AFFINITY, "spec.state", "Confirmed"),
    ("this node's address made a name", ME,
     "metadata.annotations.projectcalico\x00org/IPv4Address", "node-1.example"),
    ("another node's tunnel address with a prefix length", OTHER,
     "metadata.annotations.projectcalico\x00org/IPv4IPIPTunnelAddr", "172.17.2.1/32"),
]


def _with(objs: list[dict[str, Any]], bad: dict[str, Any]) -> list[dict[str, Any]]:
    return [bad if o["metadata"]["name"] == bad["metadata"]["name"] and o["kind"] == bad["kind"]
            else o for o in objs]


@pytest.mark.parametrize(("what", "obj", "path", "value"), BAD_EDITS,
                         ids=[e[0] for e in BAD_EDITS])
def test_a_bad_edit_in_place_keeps_the_last_valid_version_on_reload_and_restart(
        tmp_path: Path, what: str, obj: dict[str, Any], path: str, value: Any) -> None:
    folder, data = tmp_path / "resources", tmp_path / "data"
    folder.mkdir()
    good = [POOL, ME, OTHER, AFFINITY]
    write(folder, manifests(*good))
    bad = edited(obj, path, value)
    bad_yaml = manifests(*_with(good, bad))
    assert bad_yaml != manifests(*good)

    def routing(c: Controller) -> tuple[object, ...]:
        d = c.desired.value
        assert d is not None
        return d.router_id, d.blackholes, d.pools, d.peers, d.other_blocks

    async def scenario() -> None:
        c = Controller("n1", data_dir=data)
        await c.run_static(folder)
        before = routing(c)
        assert c.desired.value is not None and not c.desired.value.errors
        write(folder, bad_yaml)  # edited in place, then SIGHUP
        await c.run_static(folder)
        assert routing(c) == before, what
        assert any(e.kind == obj["kind"] and "last valid version applies" in e.message
                   for e in c.desired.value.errors), c.desired.value.errors  # type: ignore
        again = Controller("n1", data_dir=data)  # a restart with the bad edit in place
        await again.run_static(folder)
        assert routing(again) == before, what

    asyncio.run(scenario())


def test_after_a_valid_edit_then_a_bad_one_a_restart_applies_the_valid_edit(
        tmp_path: Path) -> None:
    folder, data = tmp_path / "resources", tmp_path / "data"
    folder.mkdir()
    write(folder, manifests(POOL, ME, AFFINITY))
    moved = edited(AFFINITY, "spec.cidr", "172.17.9.0/24")

    async def scenario() -> None:
        c = Controller("n1", data_dir=data)
        await c.run_static(folder)
        write(folder, manifests(POOL, ME, moved))
        await c.run_static(folder)
        write(folder, manifests(POOL, ME, edited(moved, "spec.state", "Confirmed")))
        await c.run_static(folder)
        assert c.desired.value is not None
        assert [str(b) for b in c.desired.value.blackholes] == ["172.17.9.0/24"]
        again = Controller("n1", data_dir=data)
        await again.run_static(folder)
        assert again.desired.value is not None
        assert [str(b) for b in again.desired.value.blackholes] == ["172.17.9.0/24"]

    asyncio.run(scenario())
