from pathlib import Path

import pytest

from bgpd.settings import SettingsError, load


@pytest.mark.parametrize(("content", "problem"), [
    (b"node_name: n1\nhold_time: " + b"1" * 5000 + b"\n", "integer string conversion"),
    (b"node_name: \xff\n", r"not UTF-8 text \(byte 11\)"),
    (b"node_name: " + b"[" * 200_000 + b"]" * 200_000 + b"\n", "not valid YAML")],
    ids=["integer-of-5000-digits", "not-utf8", "nested-too-deep"])
def test_a_settings_file_python_cannot_take_is_named(tmp_path: Path, content: bytes,
                                                     problem: str) -> None:
    path = tmp_path / "bgpd.yaml"
    path.write_bytes(content)
    with pytest.raises(SettingsError, match=rf"bgpd\.yaml(:\d+)?: .*{problem}"):
        load(path)
