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
