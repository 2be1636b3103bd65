import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_controller.static import ResourceFolderError, load_folder

NODE = {"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "annotations": {"projectcalico.org/IPv4Address":
                                                   "10.0.0.1/24"}}}
POOL = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "p"},
        "spec": {"cidr": "172.16.0.0/12", "blockSize": 24, "ipipMode": "Always"}}
CONFIG = {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPConfiguration",
          "metadata": {"name": "default"}, "spec": {"asNumber": 64512,
                                                    "nodeToNodeMeshEnabled": False}}


def _loaded(folder: Path) -> dict[str, object]:
    store = load_folder(folder)
    assert not store.errors
    return store.objects


def test_a_json_file_reads_as_the_same_resources_in_yaml(tmp_path: Path) -> None:
    as_json, as_yaml = tmp_path / "j", tmp_path / "y"
    as_json.mkdir()
    as_yaml.mkdir()
    (as_json / "cluster.json").write_text(json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [NODE, POOL, CONFIG]}))
    (as_yaml / "cluster.yaml").write_text(yaml.safe_dump_all([NODE, POOL, CONFIG]))
    loaded = _loaded(as_json)
    assert loaded == _loaded(as_yaml)
    assert {kind: list(names) for kind, names in loaded.items() if names} == {
        "Node": ["n1"], "IPPool": ["p"], "BGPConfiguration": ["default"]}


def test_a_json_file_in_yaml_syntax_is_still_read(tmp_path: Path) -> None:
    # several documents, or YAML's own syntax, under a .json name: read as YAML, as before
    (tmp_path / "cluster.json").write_text(yaml.safe_dump_all([NODE, POOL]))
    loaded = _loaded(tmp_path)
    assert list(loaded["Node"]) == ["n1"] and list(loaded["IPPool"]) == ["p"]


def test_a_broken_json_file_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text('{"kind": "Node",\n "metadata": [}\n')
    with pytest.raises(ResourceFolderError, match=r"cluster\.json:2:\d+: not valid YAML"):
        load_folder(tmp_path)


def test_a_json_file_nested_too_deep_is_named(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ResourceFolderError, match=r"cluster\.json:1:\d+: .*nesting depth"):
        load_folder(tmp_path)


@pytest.mark.parametrize("name", ["cluster.json", "cluster.yaml"])
@pytest.mark.parametrize(("content", "problem"), [
    (b'{"kind": "Node", "metadata": {"name": "n1"}, "spec": {"asn": ' + b"1" * 5000 + b"}}",
     "integer string conversion"),
    (b"kind: Node\nmetadata: {name: \xff}\n", r"not UTF-8 text \(byte 28\)")],
    ids=["integer-of-5000-digits", "not-utf8"])
def test_a_file_python_cannot_take_is_named(tmp_path: Path, name: str, content: bytes,
                                            problem: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ResourceFolderError, match=rf"{name}: .*{problem}"):
        load_folder(tmp_path)


def test_a_json_file_is_not_handed_to_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("read as YAML")

    (tmp_path / "cluster.json").write_text(json.dumps(NODE))
    monkeypatch.setattr(yaml, "load_all", refuse)
    assert list(_loaded(tmp_path)["Node"]) == ["n1"]


def test_the_same_object_in_two_files_is_an_error_naming_both_and_the_first_applies(
        tmp_path: Path) -> None:
    other = {**CONFIG, "spec": {"asNumber": 64513, "nodeToNodeMeshEnabled": False}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump_all([NODE, CONFIG]))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump_all([POOL, other]))
    store = load_folder(tmp_path)
    from node_controller.models import BGPConfiguration

    config = store.get(BGPConfiguration, "default")
    assert config is not None and config.as_number == 64512
    (error,) = store.error_list()
    assert (error.kind, error.name, error.field) == ("BGPConfiguration", "default",
                                                     "metadata.name")
    assert "a.yaml (object 2), b.yaml (object 2)" in error.message
    assert "the one in a.yaml (object 2) applies" in error.message


def test_a_later_copy_applies_where_the_first_is_invalid(tmp_path: Path) -> None:
    broken = {**POOL, "spec": {"cidr": "banana"}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump_all([broken]))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump_all([POOL]))
    store = load_folder(tmp_path)
    assert list(store.objects["IPPool"]) == ["p"]
    (error,) = store.error_list()
    assert "the one in b.yaml (object 1) applies" in error.message


def test_other_kinds_are_counted_per_file_and_a_link_to_nowhere_is_named(
        tmp_path: Path) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}
    (tmp_path / "pods.json").write_text(json.dumps({"kind": "List", "items": [pod] * 500}))
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump_all([NODE]))
    store = load_folder(tmp_path)
    assert list(store.objects["Node"]) == ["n1"]
    errors = {(e.kind, Path(e.name).name): e.message for e in store.error_list()}
    assert errors == {
        ("File", "pods.json"): "500 Pod: not resources the daemon reads; skipped",
        ("File", "loop.yaml"): "a link that leads nowhere (a loop, or a target that does not "
                               "exist): skipped"}


@pytest.mark.parametrize("name", ["big.json", "big.yaml"])
def test_a_large_file_is_read_by_a_child_and_only_what_the_daemon_reads_comes_back(
        tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import node_controller.static as static

    monkeypatch.setattr(static, "IN_PROCESS_MAX", 1000)
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}"}}
            for i in range(100)]
    docs = {"kind": "List", "items": [*pods, NODE, POOL]}
    (tmp_path / name).write_text(json.dumps(docs) if name.endswith("json")
                                 else yaml.safe_dump(docs))
    children = []
    real_run = static.subprocess.run

    def run(*args: Any, **kwargs: Any) -> Any:
        children.append(args[0])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(static.subprocess, "run", run)
    store = load_folder(tmp_path)
    assert len(children) == 1
    assert list(store.objects["Node"]) == ["n1"] and list(store.objects["IPPool"]) == ["p"]
    assert [e.message for e in store.error_list()] == [
        "100 Pod: not resources the daemon reads; skipped"]
    (tmp_path / name).write_text("kind: Node\nmetadata: {name: x\n" + "#" * 2000 + "\n")
    with pytest.raises(ResourceFolderError, match=rf"{name}:4:1: not valid YAML"):
        load_folder(tmp_path)


def test_a_file_whose_reader_never_finishes_is_named(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import node_controller.static as static

    monkeypatch.setattr(static, "IN_PROCESS_MAX", 10)
    monkeypatch.setattr(static, "CHILD_TIMEOUT", 0.01)  # (no child starts that fast)
    (tmp_path / "big.yaml").write_text(yaml.safe_dump_all([NODE]))
    with pytest.raises(ResourceFolderError, match=r"big\.yaml: not read within 0.01 s"):
        load_folder(tmp_path)
