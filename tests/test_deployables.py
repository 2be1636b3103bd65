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


def test_the_calico_node_patch_leaves_bgp_to_bgpd_and_keeps_the_probes(tmp_path: Path) -> None:
    """``config/kubernetes/patches/calico-node.yaml`` on a DaemonSet shaped like calico-node's
    in a BIRD install (written here): the backend becomes vxlan (no BIRD, no confd; the
    addresses still detected), everything else stays — the BIRD probes included, bgpd answers
    them — and the result is still a valid DaemonSet."""
    probe = {"exec": {"command": ["/bin/calico-node", "-felix-live", "-bird-live"]},
             "periodSeconds": 10}
    ready = {"exec": {"command": ["/bin/calico-node", "-felix-ready", "-bird-ready"]},
             "periodSeconds": 10}
    original = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "calico-node", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "calico-node"}}, "template": {
            "metadata": {"labels": {"k8s-app": "calico-node"}},
            "spec": {"hostNetwork": True, "containers": [{
                "name": "calico-node", "image": "calico/node:v3.30.0",
                "env": [{"name": "DATASTORE_TYPE", "value": "kubernetes"},
                        {"name": "CALICO_NETWORKING_BACKEND", "value": "bird"},
                        {"name": "IP", "value": "autodetect"}],
                "livenessProbe": probe, "readinessProbe": ready,
                "volumeMounts": [{"name": "var-run-calico", "mountPath": "/var/run/calico"}]}],
                "volumes": [{"name": "var-run-calico",
                             "hostPath": {"path": "/var/run/calico"}}]}}}}
    ds = tmp_path / "calico-node.yaml"
    ds.write_text(yaml.safe_dump(original))
    proc = subprocess.run([tool("kubectl"), "patch", "--local", "-f", str(ds), "--type",
                           "strategic", "--patch-file",
                           str(ROOT / "config/kubernetes/patches/calico-node.yaml"), "-o", "yaml"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    patched = yaml.safe_load(proc.stdout)
    container = patched["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "DATASTORE_TYPE", "value": "kubernetes"},
                                {"name": "CALICO_NETWORKING_BACKEND", "value": "vxlan"},
                                {"name": "IP", "value": "autodetect"}]
    assert container["livenessProbe"] == probe and container["readinessProbe"] == ready
    # bgpd's DaemonSet mounts the same host folder: the probes reach its BIRD socket
    docs = yaml.safe_load_all((ROOT / "config/kubernetes/bgpd.yaml").read_text())
    ours = next(d for d in docs if d and d["kind"] == "DaemonSet")["spec"]["template"][
        "spec"]["volumes"]
    assert {"path": "/var/run/calico", "type": "DirectoryOrCreate"} in [
        v.get("hostPath") for v in ours]
    out = tmp_path / "patched.yaml"
    out.write_text(proc.stdout)
    check = subprocess.run([tool("kubernetes-validate"), "--strict", str(out)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
