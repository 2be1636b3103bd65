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


#: What tigera-operator writes and accepts, from its source (tigera/operator, 2026-08):
#: the enums of api/v1/installation_types.go; core_controller.go's
#: felixProgramClusterRoutesValue / birdProgramClusterRoutesValue (what clusterRoutingMode
#: writes into FelixConfiguration and BGPConfiguration default); validation.go's rule that an
#: IPIP or unencapsulated pool needs BGP unless Felix owns its cluster routes.
OPERATOR_MODES = {"BIRD": ("Disabled", "Enabled"), "Felix": ("Enabled", "Disabled"),
                  "FelixIPIPOnly": ("EnabledIPIPOnly", "EnabledNoEncapOnly")}
OPERATOR_ENCAPSULATIONS = ("IPIPCrossSubnet", "IPIP", "VXLAN", "VXLANCrossSubnet", "None")


def test_the_operator_installation_is_accepted_and_leaves_bgpd_announcing() -> None:
    """``config/kubernetes/operator/installation.yaml``: an Installation the operator accepts
    with BGP disabled; what it then writes (FelixConfiguration and BGPConfiguration
    ``programClusterRoutes``) given to bgpd: no cluster route programmed by bgpd, its block
    still announced.  (No cluster, no operator here: the rules are the operator's, restated
    from its source; the DaemonSet beside it is config/kubernetes/bgpd.yaml, validated above.)"""
    from bgpd.translate import node_context
    from node_controller.desired import desired_config
    from node_controller.store import Store

    doc = yaml.safe_load((ROOT / "config/kubernetes/operator/installation.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]) == (
        "operator.tigera.io/v1", "Installation", "default")
    network = doc["spec"]["calicoNetwork"]
    assert network["bgp"] == "Disabled"
    mode = network.get("clusterRoutingMode", "FelixIPIPOnly")  # the operator's default
    felix, bgp = OPERATOR_MODES[mode]
    for pool in network["ipPools"]:
        encapsulation = pool.get("encapsulation", "IPIP")
        assert encapsulation in OPERATOR_ENCAPSULATIONS
        if encapsulation in ("IPIP", "IPIPCrossSubnet"):
            assert mode != "BIRD", "the operator refuses: IPIP needs BGP in BIRD mode"
        if encapsulation == "None":
            assert mode == "Felix", "the operator refuses: no-encap needs BGP unless Felix"
    store = Store()
    pool = network["ipPools"][0]
    for obj in (
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "annotations": {
            "projectcalico.org/IPv4Address": "10.0.0.1/24"}}},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
         "metadata": {"name": pool["name"]},
         "spec": {"cidr": pool["cidr"], "blockSize": pool["blockSize"], "ipipMode": "Always"}},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
         "metadata": {"name": "n1-172-17-1-0-24"},
         "spec": {"node": "n1", "cidr": "172.17.1.0/24", "state": "confirmed"}},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "FelixConfiguration",
         "metadata": {"name": "default"}, "spec": {"programClusterRoutes": felix}},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPConfiguration",
         "metadata": {"name": "default"}, "spec": {"programClusterRoutes": bgp}},
    ):
        store.apply(obj)
    config = desired_config(store, "n1")
    assert not config.errors and not config.notices
    routes = node_context(config).cluster_routes
    assert (routes.ipip, routes.no_encap) == (False, mode == "FelixIPIPOnly")
    assert [str(p) for p in config.announce] == ["172.17.1.0/24"]
