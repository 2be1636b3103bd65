import json
from pathlib import Path

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
