"""Daemon settings: a YAML file plus environment, validated at start with clear errors.

Every setting has a default; a file overrides them, ``BGPD_<NAME>`` environment variables
override the file (``BGPD_METRICS_ADDRESS=0.0.0.0:9095``), and the node name comes from
``NODENAME`` (like calico-node), else the setting, else the hostname.  An unknown key, a
value of the wrong type or out of range stops the daemon with a message naming the file,
the line and the key.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from bgpd.log import LEVELS
from node_controller.models import CLUSTER_ROUTES


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    node_name: str = ""
    datastore: str = "kubernetes"  # kubernetes | static
    resources: str = "/etc/bgpd/resources"  # static mode: a folder of manifests
    kubeconfig: str | None = None  # kubernetes mode: None = in-cluster service account
    namespace: str = "calico-system"  # where password Secrets live
    node_objects: str = "metadata"  # other nodes: metadata | full (blocks from pod CIDRs)
    # BlockAffinities watched through the API: this node's own (by Calico >= 3.31's label) or
    # every node's (retention on the datastore's word needs them)
    block_affinities: str = "own"
    # programClusterRoutes where the default BGPConfiguration does not set it; None: Calico's
    # default for the cluster's version (ClusterInformation): "EnabledNoEncapOnly" from v3.33
    # (Felix programs IPIP routes), "Enabled" before (BGP programs every pool's routes)
    cluster_routes: str | None = None
    # Felix's endpoint status files (FelixConfiguration endpointStatusPathPrefix + the folder):
    # the workloads a BGPPeer's localWorkloadSelector picks; None: no local workload peering
    endpoint_status_dir: str | None = "/var/run/calico/endpoint-status"
    state_dir: str = "/run/bgpd"
    data_dir: str = "/var/lib/bgpd"  # survives reboots: the last valid resources
    control_socket: str = "/run/bgpd/bgpd.sock"
    bird_socket: str | None = "/var/run/calico/bird.ctl"  # used when its folder exists
    metrics_address: str | None = "127.0.0.1:9095"
    log_level: str = "info"
    kernel_protocol: int = 12
    kernel_table: int = 254
    tunnel_device: str = "tunl0"
    interface: str | None = None  # None: the device holding the node address
    import_guard: bool = True
    max_prefixes_per_peer: int | None = None
    max_prefixes_external: int | None = 10000  # peers that are not Calico nodes
    restart_establish_grace: float = 10.0
    restart_deadline: float = 120.0
    restart_peer_grace: float = 5.0
    stale_time: float = 120.0
    stale_retention: float = 3600.0
    ready_timeout: float = 60.0
    withdraw_on_exit: bool = False
    drain_seconds: float = 0.0  # with withdraw_on_exit: GRACEFUL_SHUTDOWN this long first
    # the node drains while it carries a taint of one of these keys (comma-separated): the
    # cluster autoscaler's and Karpenter's marks of a node about to go
    drain_taints: str = "ToBeDeletedByClusterAutoscaler,karpenter.sh/disrupted"
    # a session to a node the configuration no longer wants (the mesh off, a cluster ID set
    # or removed, a BGPPeer deleted) is held until its routes come from another session, or
    # this long; 0: ended at once, as confd does
    handover_seconds: float = 1800.0
    exabgp_reactor_speed: float = 5.0
    watch_stale_after: float = 90.0
    source: str = field(default="(defaults)", compare=False)


_CHOICES = {"datastore": ("kubernetes", "static"), "log_level": tuple(LEVELS),
            "node_objects": ("metadata", "full"), "block_affinities": ("own", "all"),
            "cluster_routes": CLUSTER_ROUTES}
_RANGES = {"kernel_protocol": (1, 255), "kernel_table": (1, 2**32 - 1),
           "max_prefixes_per_peer": (1, 10**7), "max_prefixes_external": (1, 10**7)}


def _check(name: str, value: Any, expected: Any, where: str) -> Any:
    kinds: dict[str, type | tuple[type, ...]] = {
        "str": str, "int": int, "float": (int, float), "bool": bool}
    text = str(expected)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise SettingsError(f"{where}: {name} cannot be empty")
    base = text.replace(" | None", "").strip()
    kind = kinds.get(base, str)
    if (base != "bool" and isinstance(value, bool)) or not isinstance(value, kind):
        raise SettingsError(f"{where}: {name} must be a {base}, got {value!r}")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise SettingsError(f"{where}: {name} must be one of {', '.join(_CHOICES[name])}, "
                            f"got {value!r}")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return value
    if name in _RANGES and not _RANGES[name][0] <= value <= _RANGES[name][1]:
        low, high = _RANGES[name]
        raise SettingsError(f"{where}: {name} must be between {low} and {high}, got {value}")
    if base == "float" and value < 0:
        raise SettingsError(f"{where}: {name} cannot be negative")
    return float(value) if base == "float" else value


def _from_env(name: str, expected: Any) -> Any:
    raw = os.environ.get(f"BGPD_{name.upper()}")
    if raw is None:
        return ...
    text = str(expected)
    if raw == "" and "None" in text:
        return None
    if "bool" in text:
        return raw.lower() in ("1", "true", "yes", "on")
    if "int" in text:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(
                f"environment: BGPD_{name.upper()} must be a whole number") from None
    if "float" in text:
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"environment: BGPD_{name.upper()} must be a number") from None
    return raw


def load(path: Path | None) -> Settings:
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    source = "(defaults)"
    if path is not None:
        source = str(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SettingsError(f"{path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise SettingsError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        try:
            node = yaml.compose(text)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise SettingsError(f"{where}: not valid YAML: "
                                f"{getattr(exc, 'problem', None) or exc}") from None
        except (ValueError, RecursionError) as exc:  # an integer of 5,000 digits, nesting
            raise SettingsError(f"{path}: not valid YAML: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SettingsError(f"{path}: expected a mapping of settings")
        if node is not None and isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                lines[str(key_node.value)] = key_node.start_mark.line + 1
        values = data
    known = {f.name: f for f in fields(Settings) if f.name != "source"}
    result: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{path}:{lines.get(str(key), '?')}"
        if key not in known:
            raise SettingsError(f"{where}: unknown setting {key!r} "
                                f"(known: {', '.join(sorted(known))})")
        result[key] = _check(key, value, known[key].type, where)
    for name, f in known.items():
        env = _from_env(name, f.type)
        if env is not ...:
            result[name] = _check(name, env, f.type, f"environment BGPD_{name.upper()}")
    settings = replace(Settings(), **result, source=source)
    node_name = os.environ.get("NODENAME") or settings.node_name or socket.gethostname()
    settings = replace(settings, node_name=node_name)
    if settings.datastore == "static" and not Path(settings.resources).is_dir():
        raise SettingsError(f"{source}: resources: {settings.resources} is not a folder "
                            "(datastore: static reads its manifests from there)")
    if settings.datastore == "kubernetes" and settings.kubeconfig is not None \
            and not Path(settings.kubeconfig).is_file():
        raise SettingsError(f"{source}: kubeconfig: {settings.kubeconfig}: no such file")
    folder = Path(settings.control_socket).parent
    if folder != Path(settings.state_dir) and not folder.is_dir():
        raise SettingsError(f"{source}: control_socket: the folder {folder} does not exist "
                            "(only state_dir is made by the daemon)")
    if settings.metrics_address:
        host, _, port = settings.metrics_address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"{source}: metrics_address must be HOST:PORT, "
                                f"got {settings.metrics_address!r}")
    return settings
