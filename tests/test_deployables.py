"""The deployable files are checked by the tools their targets use."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bgpd.settings import Settings, load
from integration_tests.kube_server import load_kinds, validate

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed")
    return found


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    unit = tmp_path / "bgpd.service"
    bgpd = shutil.which("bgpd", path=str(BIN)) or "/usr/local/bin/bgpd"
    unit.write_text((ROOT / "config/bgpd.service").read_text()
                    .replace("/usr/local/bin/bgpd", bgpd))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = unit.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=always", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE"):
        assert line in text


def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run([tool("hadolint"), str(ROOT / "docker/Dockerfile")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "config/kubernetes").glob("*.yaml"))
                         + sorted((ROOT / "config/crds").glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_validate_against_kubernetes_schemas(path: Path) -> None:
    proc = subprocess.run([tool("kubernetes-validate"), "--strict", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_examples_validate_against_our_crd_schemas() -> None:
    schemas = {k.kind: k.schema for k in load_kinds() if k.schema}
    checked = 0
    for path in sorted((ROOT / "config/examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in schemas:
                validate(doc, schemas[doc["kind"]])
                checked += 1
    assert checked >= 7


def test_example_settings_name_every_setting_with_its_default() -> None:
    data = yaml.safe_load((ROOT / "config/bgpd.yaml").read_text())
    names = {f for f in Settings.__dataclass_fields__ if f != "source"}
    assert set(data) == names
    loaded = load(ROOT / "config/bgpd.yaml")
    defaults = Settings()
    for name in names - {"node_name"}:
        assert getattr(loaded, name) == getattr(defaults, name), name
