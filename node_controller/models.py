"""Calico resources as validated, immutable values.

Theory of operation: :func:`parse` takes one object as the Kubernetes API (or a YAML file)
gives it — a mapping with ``kind``, ``metadata`` and ``spec`` — and returns the model for its
kind, or raises :class:`~node_controller.errors.Invalid` naming the field and the problem.
Only the fields the daemon reads are kept, so two versions of an object that differ in
anything else (a Node's status heartbeat, a resourceVersion) parse to equal values and cause
no work downstream.

Kinds: ``BGPConfiguration``, ``BGPPeer``, ``BGPFilter``, ``IPPool``, ``BlockAffinity``,
``ClusterInformation`` (``crd.projectcalico.org/v1`` or ``projectcalico.org/v3``), ``Node``
and ``Secret`` (``v1``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any, TypeVar

from node_controller.errors import Invalid
from node_controller.selector import Selector, SelectorError
from node_controller.selector import parse as parse_selector
from ribs.context import EncapMode
from ribs.policy import Action, FilterRule, MatchOperator, Operation
from ribs.types import Address, Prefix, prefix

ANNOTATION = "projectcalico.org/"
BGPD_ANNOTATION = "bgpd/"
M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class AnnotationDoc:
    """An annotation the daemon reads: on which kind, its values and what it does."""

    kind: str
    key: str
    values: str
    meaning: str


#: Every annotation the daemon reads (the reference page is made from this; the parsers
#: read the keys from here).
ANNOTATIONS: tuple[AnnotationDoc, ...] = (
    AnnotationDoc("Node", ANNOTATION + "IPv4Address", "`10.0.0.5/24`",
                  "the node's IPv4 address and subnet (calico-node's start-up writes it): "
                  "router id, the IPv4 sessions' address, the subnet the import guard keeps"),
    AnnotationDoc("Node", ANNOTATION + "IPv6Address", "`fd00::5/64`",
                  "the node's IPv6 address and subnet: the IPv6 sessions' address"),
    AnnotationDoc("Node", ANNOTATION + "ASNumber", '`64513`, `"1.10"`',
                  "the node's own AS, over the default BGPConfiguration's"),
    AnnotationDoc("Node", ANNOTATION + "RouteReflectorClusterID", "`224.0.0.1`",
                  "the node is a route reflector of that cluster: it leaves the mesh and "
                  "reflects for iBGP peers of other clusters"),
    AnnotationDoc("Node", ANNOTATION + "IPv4IPIPTunnelAddr", "`172.17.5.1`",
                  "the node's tunnel address (read for host-local IPAM's blocks)"),
    AnnotationDoc("Node", BGPD_ANNOTATION + "drain", "`true` | `false`",
                  "the node drains (RFC 8326): every route it sends carries GRACEFUL_SHUTDOWN, "
                  "LOCAL_PREF 0 to iBGP peers, as when it is cordoned; for a maintenance that "
                  "keeps pods scheduled"),
    AnnotationDoc("BGPPeer", BGPD_ANNOTATION + "accept-node-block-routes", "`true` | `false`",
                  "routes more specific than another node's block or the pools' block size "
                  "are accepted from this peer (refused by default from non-Calico peers)"),
    AnnotationDoc("BGPPeer", BGPD_ANNOTATION + "max-prefixes", "`1`..`10000000`",
                  "the most routes taken from this peer (over the settings' "
                  "`max_prefixes_per_peer` / `max_prefixes_external`)"),
    AnnotationDoc("BGPPeer", BGPD_ANNOTATION + "max-prefixes-action", "`refuse` | `teardown`",
                  "at the limit: refuse the routes beyond it (default), or close the session "
                  "once (Cease, maximum number of prefixes reached)"),
    AnnotationDoc("BGPPeer", BGPD_ANNOTATION + "bfd-multihop", "`true` | `false`",
                  "with `failureDetectionMode: BFDIfDirectlyConnected`, a peer that is not "
                  "directly connected gets a multihop BFD session (RFC 5883, UDP 4784) "
                  "instead of none; `ttlSecurity` then sets the lowest TTL taken"),
)
DEFAULT_AS = 64512


# --- field readers -----------------------------------------------------------------------
def _get(obj: Mapping[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        if node is None:
            return None
        if not isinstance(node, Mapping):
            raise Invalid(path, "expected an object")
        node = node.get(part)
    return node


def _str(obj: Mapping[str, Any], path: str, *, choices: tuple[str, ...] = ()) -> str | None:
    value = _get(obj, path)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid(path, f"expected a string, got {value!r}")
    if choices and value not in choices:
        raise Invalid(path, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _bool(obj: Mapping[str, Any], path: str) -> bool | None:
    value = _get(obj, path)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise Invalid(path, f"expected true or false, got {value!r}")


def _int(obj: Mapping[str, Any], path: str, *, low: int, high: int) -> int | None:
    value = _get(obj, path)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(path, f"expected a whole number, got {value!r}")
    if not low <= value <= high:
        raise Invalid(path, f"{value} is outside {low}..{high}")
    return value


def _list(obj: Mapping[str, Any], path: str) -> list[Any]:
    value = _get(obj, path)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(path, f"expected a list, got {type(value).__name__}")
    return value


def parse_asn(value: object, path: str) -> int:
    """An AS number: 64512, "64512", or dotted "1.10" (= 1 << 16 | 10)."""
    if isinstance(value, bool):
        raise Invalid(path, f"{value!r} is not an AS number")
    if isinstance(value, int):
        asn = value
    elif isinstance(value, str) and re.fullmatch(r"\d+", value):
        asn = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value):
        high, low = (int(x) for x in value.split("."))
        if high > 0xFFFF or low > 0xFFFF:
            raise Invalid(path, f"{value!r}: each half of a dotted AS number is at most 65535")
        asn = high << 16 | low
    else:
        raise Invalid(path, f"{value!r} is not an AS number (64512, \"64512\" or \"1.10\")")
    if not 0 < asn < 1 << 32:
        raise Invalid(path, f"AS number {asn} is outside 1..4294967295")
    return asn


def _asn(obj: Mapping[str, Any], path: str) -> int | None:
    value = _get(obj, path)
    return None if value is None or value == "" else parse_asn(value, path)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, path: str) -> float:
    """A Go duration ("120s", "2m30s", "500ms") in seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        raise Invalid(path, f"{value!r} is not a duration")
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise Invalid(path, f"{value!r} is not a duration (like \"120s\", \"2m\" or \"1h30m\")")
    return total


def _duration(obj: Mapping[str, Any], path: str) -> float | None:
    value = _get(obj, path)
    return None if value is None or value == "" else parse_duration(value, path)


def _cidr(value: object, path: str) -> Prefix:
    if not isinstance(value, str):
        raise Invalid(path, f"expected a CIDR string, got {value!r}")
    try:
        net = ip_network(value, strict=False)  # Calico masks host bits ("172.17.0.0/12")
    except ValueError:
        raise Invalid(path, f"{value!r} is not a CIDR") from None
    return prefix(str(net))


def _selector(obj: Mapping[str, Any], path: str) -> Selector | None:
    text = _str(obj, path)
    if text is None:
        return None
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise Invalid(path, str(exc)) from None


@dataclass(frozen=True, slots=True)
class SecretRef:
    name: str
    key: str


def _secret_ref(obj: Mapping[str, Any], path: str) -> SecretRef | None:
    ref = _get(obj, path)
    if ref is None:
        return None
    name, key = _str(obj, f"{path}.name"), _str(obj, f"{path}.key")
    if name is None or key is None:
        raise Invalid(path, "a secretKeyRef needs both name and key")
    return SecretRef(name, key)


def _name(obj: Mapping[str, Any]) -> str:
    name = _get(obj, "metadata.name")
    if not isinstance(name, str) or not name:
        raise Invalid("metadata.name", "missing")
    return name


# --- the resources -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Community:
    name: str
    value: tuple[int, ...]  # (aa, nn) standard or (aa, nn, mm) large


def parse_community(value: object, path: str) -> tuple[int, ...]:
    if isinstance(value, str) and re.fullmatch(r"\d+:\d+(:\d+)?", value):
        parts = tuple(int(x) for x in value.split(":"))
        limit = 0xFFFF if len(parts) == 2 else 0xFFFFFFFF
        if all(p <= limit for p in parts):
            return parts
    raise Invalid(path, f"{value!r} is not a community (\"aa:nn\" or \"aa:nn:mm\")")


@dataclass(frozen=True, slots=True)
class PrefixAdvertisement:
    cidr: Prefix
    communities: tuple[str, ...]  # names of `communities` or literal values


#: BGPConfiguration.programClusterRoutes (Calico v3.33): the pools whose routes to other nodes'
#: blocks ("cluster routes") BGP programs into the kernel; Felix programs the rest
CLUSTER_ROUTES = ("Enabled", "Disabled", "EnabledIPIPOnly", "EnabledNoEncapOnly")


@dataclass(frozen=True, slots=True)
class BGPConfiguration:
    name: str
    as_number: int | None = None
    node_to_node_mesh: bool | None = None
    log_severity: str | None = None
    listen_port: int | None = None
    mesh_password: SecretRef | None = None
    mesh_restart_time: float | None = None
    service_cluster_ips: tuple[Prefix, ...] = ()
    service_external_ips: tuple[Prefix, ...] = ()
    service_loadbalancer_ips: tuple[Prefix, ...] = ()
    communities: tuple[Community, ...] = ()
    prefix_advertisements: tuple[PrefixAdvertisement, ...] = ()
    bind_mode: str | None = None
    ignored_interfaces: tuple[str, ...] = ()
    program_cluster_routes: str | None = None  # Calico v3.33: which pools' routes BGP programs
    normal_priority_v4: int | None = None  # ipv4NormalRoutePriority (v3.33; default 1024)
    normal_priority_v6: int | None = None
    lb_aggregation: bool = True  # serviceLoadBalancerAggregation: Enabled (the CIDRs)
    local_workload_v4: Address | None = None  # localWorkloadPeeringIPV4 (an IPv4 address)
    local_workload_v6: Address | None = None

    @property
    def service_cidrs(self) -> tuple[Prefix, ...]:
        return (*self.service_cluster_ips, *self.service_external_ips,
                *self.service_loadbalancer_ips)


def _cidr_list(obj: Mapping[str, Any], path: str) -> tuple[Prefix, ...]:
    return tuple(_cidr(_get(item, "cidr") if isinstance(item, Mapping) else None,
                       f"{path}[{i}].cidr") for i, item in enumerate(_list(obj, path)))


def parse_bgp_configuration(obj: Mapping[str, Any]) -> BGPConfiguration:
    name = _name(obj)
    mesh = _bool(obj, "spec.nodeToNodeMeshEnabled")
    password = _secret_ref(obj, "spec.nodeMeshPassword.secretKeyRef")
    restart = _duration(obj, "spec.nodeMeshMaxRestartTime")
    if mesh is False and password is not None:
        raise Invalid("spec.nodeMeshPassword", "not allowed when nodeToNodeMeshEnabled is false")
    if mesh is False and restart is not None:
        raise Invalid("spec.nodeMeshMaxRestartTime",
                      "not allowed when nodeToNodeMeshEnabled is false")
    communities = tuple(
        Community(_str(c, "name") or "", parse_community(_get(c, "value"),
                                                          f"spec.communities[{i}].value"))
        for i, c in enumerate(_list(obj, "spec.communities")) if isinstance(c, Mapping))
    adverts = tuple(
        PrefixAdvertisement(
            _cidr(_get(a, "cidr"), f"spec.prefixAdvertisements[{i}].cidr"),
            tuple(str(x) for x in _list(a, "communities")))
        for i, a in enumerate(_list(obj, "spec.prefixAdvertisements")) if isinstance(a, Mapping))
    if communities and not adverts:
        raise Invalid("spec.communities",
                      "communities are set but no prefixAdvertisements use them")
    names = {c.name for c in communities}
    for i, advert in enumerate(adverts):
        for j, ref in enumerate(advert.communities):
            if ref not in names:
                parse_community(ref, f"spec.prefixAdvertisements[{i}].communities[{j}]")
    return BGPConfiguration(
        name=name,
        as_number=_asn(obj, "spec.asNumber"),
        node_to_node_mesh=mesh,
        log_severity=_str(obj, "spec.logSeverityScreen"),
        listen_port=_int(obj, "spec.listenPort", low=1, high=65535),
        mesh_password=password,
        mesh_restart_time=restart,
        service_cluster_ips=_cidr_list(obj, "spec.serviceClusterIPs"),
        service_external_ips=_cidr_list(obj, "spec.serviceExternalIPs"),
        service_loadbalancer_ips=_cidr_list(obj, "spec.serviceLoadBalancerIPs"),
        communities=communities,
        prefix_advertisements=adverts,
        bind_mode=_str(obj, "spec.bindMode", choices=("None", "NodeIP")),
        program_cluster_routes=_str(obj, "spec.programClusterRoutes",
                                    choices=CLUSTER_ROUTES),
        ignored_interfaces=tuple(str(x) for x in _list(obj, "spec.ignoredInterfaces")),
        normal_priority_v4=_priority(obj, "spec.ipv4NormalRoutePriority"),
        normal_priority_v6=_priority(obj, "spec.ipv6NormalRoutePriority"),
        lb_aggregation=_str(obj, "spec.serviceLoadBalancerAggregation",
                            choices=("Enabled", "Disabled")) != "Disabled",
        local_workload_v4=_address(obj, "spec.localWorkloadPeeringIPV4", 4),
        local_workload_v6=_address(obj, "spec.localWorkloadPeeringIPV6", 6),
    )


def _address(obj: Mapping[str, Any], path: str, version: int | None = None) -> Address | None:
    text = _str(obj, path)
    if text is None:
        return None
    try:
        address = ip_address(text)
    except ValueError:
        raise Invalid(path, f"{text!r} is not an IP address") from None
    if version is not None and address.version != version:
        raise Invalid(path, f"{text!r} is not an IPv{version} address")
    return address


@dataclass(frozen=True, slots=True)
class BGPPeer:
    name: str
    node: str | None = None
    node_selector: Selector | None = None
    peer_ip: Address | None = None
    peer_port: int | None = None
    peer_selector: Selector | None = None
    as_number: int | None = None
    password: SecretRef | None = None
    source_address: str = "UseNodeIP"
    max_restart_time: float | None = None
    keepalive_time: float | None = None
    ttl_security: int | None = None
    num_allowed_local_as: int | None = None
    keep_original_next_hop: bool = False
    next_hop_mode: str | None = None
    reachable_by: Address | None = None
    filters: tuple[str, ...] = ()
    local_as_number: int | None = None  # localASNumber: our AS (peerIP, local workloads)
    # localWorkloadSelector: this node's workloads Felix finds it selects (their status files)
    local_workloads: Selector | None = None
    reverse_peering: bool = True  # reversePeering: Auto (Manual: the other side's own BGPPeer)
    # failureDetectionMode (Calico Enterprise's field): None | BFDIfDirectlyConnected
    failure_detection: str = "None"
    # bgpd's own knobs, as annotations (Calico's BGPPeer has no field for them)
    accept_node_block_routes: bool = False
    max_prefixes: int | None = None
    max_prefixes_action: str = "refuse"
    bfd_multihop: bool = False

    @property
    def scoped(self) -> bool:
        return self.node is not None or self.node_selector is not None


def parse_peer_address(value: str, path: str) -> tuple[Address, int | None]:
    """``ip``, ``ip:port`` or ``[v6]:port``."""
    try:
        if value.startswith("["):
            host, _, port = value[1:].partition("]:")
            return ip_address(host), int(port)
        if value.count(":") == 1:
            host, port = value.split(":")
            return ip_address(host), int(port)
        return ip_address(value), None
    except ValueError:
        raise Invalid(
            path, f"{value!r} is not an IP address (ip, ip:port or [ipv6]:port)") from None


PEER_ANNOTATIONS = tuple(a.key[len(BGPD_ANNOTATION):] for a in ANNOTATIONS
                         if a.kind == "BGPPeer")


def _peer_annotations(obj: Mapping[str, Any]) -> dict[str, Any]:
    """bgpd's annotations on a BGPPeer: ``bgpd/accept-node-block-routes: "true"`` (routes more
    specific than another node's block accepted from this peer), ``bgpd/max-prefixes: "N"``,
    ``bgpd/max-prefixes-action: refuse | teardown``, ``bgpd/bfd-multihop: "true"``."""
    annotations = _get(obj, "metadata.annotations") or {}
    if not isinstance(annotations, Mapping):
        raise Invalid("metadata.annotations", "expected an object")
    out: dict[str, Any] = {}
    for key in [k for k in annotations if str(k).startswith(BGPD_ANNOTATION)]:
        path, value = f"metadata.annotations.{key}", str(annotations[key])
        short = str(key)[len(BGPD_ANNOTATION):]
        if short == "accept-node-block-routes":
            if value not in ("true", "false"):
                raise Invalid(path, f"expected \"true\" or \"false\", got {value!r}")
            out["accept_node_block_routes"] = value == "true"
        elif short == "max-prefixes":
            if not value.isdigit() or not 1 <= int(value) <= 10**7:
                raise Invalid(path, f"expected a number of prefixes 1..10000000, got {value!r}")
            out["max_prefixes"] = int(value)
        elif short == "max-prefixes-action":
            if value not in ("refuse", "teardown"):
                raise Invalid(path, f"expected refuse or teardown, got {value!r}")
            out["max_prefixes_action"] = value
        elif short == "bfd-multihop":
            if value not in ("true", "false"):
                raise Invalid(path, f"expected \"true\" or \"false\", got {value!r}")
            out["bfd_multihop"] = value == "true"
        else:
            raise Invalid(path, f"unknown bgpd annotation (known: {', '.join(PEER_ANNOTATIONS)})")
    return out


def parse_bgp_peer(obj: Mapping[str, Any]) -> BGPPeer:
    name = _name(obj)
    node, node_selector = _str(obj, "spec.node"), _selector(obj, "spec.nodeSelector")
    if node is not None and node_selector is not None:
        raise Invalid("spec.nodeSelector", "node and nodeSelector cannot both be set")
    peer_ip_text = _str(obj, "spec.peerIP")
    peer_selector = _selector(obj, "spec.peerSelector")
    workloads = _selector(obj, "spec.localWorkloadSelector")
    asn = _asn(obj, "spec.asNumber")
    if workloads is not None:
        if peer_ip_text is not None or peer_selector is not None:
            raise Invalid("spec.localWorkloadSelector",
                          "peerIP and peerSelector must be empty with localWorkloadSelector")
        if asn is None:
            raise Invalid("spec.asNumber", "required with localWorkloadSelector")
    elif peer_ip_text is not None and peer_selector is not None:
        raise Invalid("spec.peerSelector", "peerIP and peerSelector cannot both be set")
    elif peer_ip_text is None and peer_selector is None:
        raise Invalid("spec.peerIP",
                      "one of peerIP, peerSelector or localWorkloadSelector is required")
    if peer_selector is not None and asn is not None:
        raise Invalid("spec.asNumber",
                      "must be empty with peerSelector (the peers' own AS is used)")
    peer_ip = port = None
    if peer_ip_text is not None:
        peer_ip, port = parse_peer_address(peer_ip_text, "spec.peerIP")
        if port is not None and not 1 <= port <= 65535:
            raise Invalid("spec.peerIP", f"port {port} is outside 1..65535")
        if asn is None:
            raise Invalid("spec.asNumber", "required with peerIP")
    return BGPPeer(
        name=name, node=node, node_selector=node_selector, peer_ip=peer_ip, peer_port=port,
        peer_selector=peer_selector, as_number=asn,
        password=_secret_ref(obj, "spec.password.secretKeyRef"),
        source_address=_str(obj, "spec.sourceAddress",
                            choices=("UseNodeIP", "None")) or "UseNodeIP",
        max_restart_time=_duration(obj, "spec.maxRestartTime"),
        keepalive_time=_duration(obj, "spec.keepaliveTime"),
        ttl_security=_int(obj, "spec.ttlSecurity", low=0, high=255),
        num_allowed_local_as=_int(obj, "spec.numAllowedLocalASNumbers", low=0, high=10),
        keep_original_next_hop=bool(_bool(obj, "spec.keepOriginalNextHop")),
        next_hop_mode=_str(obj, "spec.nextHopMode", choices=("Auto", "Self", "Keep")),
        reachable_by=_address(obj, "spec.reachableBy"),
        filters=tuple(str(f) for f in _list(obj, "spec.filters")),
        local_as_number=_asn(obj, "spec.localASNumber"),
        local_workloads=workloads,
        reverse_peering=_str(obj, "spec.reversePeering", choices=("Auto", "Manual")) != "Manual",
        failure_detection=_str(obj, "spec.failureDetectionMode",
                               choices=FAILURE_DETECTION_MODES) or "None",
        **_peer_annotations(obj),
    )


FAILURE_DETECTION_MODES = ("None", "BFDIfDirectlyConnected")


@dataclass(frozen=True, slots=True)
class BFDInterface:
    """One entry of a BFDConfiguration's ``interfaces``: the timers of BFD sessions over the
    interfaces ``match_pattern`` names (an exact name, a prefix with ``*``, or ``*``).
    Defaults as Calico Enterprise's reference gives them."""
    match_pattern: str
    min_rx: float = 0.01  # minimumRecvInterval
    min_tx: float = 0.1  # minimumSendInterval
    idle_tx: float = 60.0  # idleSendInterval
    multiplier: int = 5

    def matches(self, interface: str) -> bool:
        pattern = self.match_pattern
        if pattern.endswith("*"):
            return interface.startswith(pattern[:-1])
        return interface == pattern


@dataclass(frozen=True, slots=True)
class BFDConfiguration:
    """Calico Enterprise's BFDConfiguration: BFD timers per interface for the nodes its
    ``nodeSelector`` selects (docs.tigera.io, reference/resources/bfdconfig)."""
    name: str
    node_selector: Selector | None = None
    interfaces: tuple[BFDInterface, ...] = ()


def _milliseconds(obj: Mapping[str, Any], path: str) -> float | None:
    """A BFD interval: a duration that is a whole number of milliseconds above 0."""
    value = _duration(obj, path)
    if value is None:
        return None
    if value <= 0 or abs(value * 1000 - round(value * 1000)) > 1e-9:
        raise Invalid(path, f"{_get(obj, path)!r} is not a whole number of milliseconds "
                            "greater than 0")
    return value


def parse_bfd_configuration(obj: Mapping[str, Any]) -> BFDConfiguration:
    name = _name(obj)
    interfaces = []
    for i, entry in enumerate(_list(obj, "spec.interfaces")):
        path = f"spec.interfaces[{i}]"
        if not isinstance(entry, Mapping):
            raise Invalid(path, "expected an object")
        pattern = entry.get("matchPattern")
        if not isinstance(pattern, str) or not pattern or "*" in pattern[:-1]:
            raise Invalid(f"{path}.matchPattern", f"{pattern!r} is not an interface name, a "
                          "prefix ending in * or *")
        try:
            given = {
                "min_rx": _milliseconds(entry, "minimumRecvInterval"),
                "min_tx": _milliseconds(entry, "minimumSendInterval"),
                "idle_tx": _milliseconds(entry, "idleSendInterval"),
                "multiplier": _int(entry, "multiplier", low=1, high=255),
            }
        except Invalid as exc:
            raise Invalid(f"{path}.{exc.field}", exc.message) from None
        interfaces.append(BFDInterface(pattern, **{k: v for k, v in given.items()
                                                   if v is not None}))  # type: ignore[arg-type]
    return BFDConfiguration(name=name, node_selector=_selector(obj, "spec.nodeSelector"),
                            interfaces=tuple(interfaces))


@dataclass(frozen=True, slots=True)
class BGPFilter:
    name: str
    import_v4: tuple[FilterRule, ...] = ()
    export_v4: tuple[FilterRule, ...] = ()
    import_v6: tuple[FilterRule, ...] = ()
    export_v6: tuple[FilterRule, ...] = ()


PRIORITY_RANGE = (1, 2147483646)  # Calico's route priorities (kernel metrics)


def _priority(obj: Mapping[str, Any], path: str) -> int | None:
    return _int(obj, path, low=PRIORITY_RANGE[0], high=PRIORITY_RANGE[1])


def _operation(item: object, path: str) -> Operation:
    """One of a rule's ``operations``: exactly one of addCommunity, prependASPath,
    setPriority."""
    if not isinstance(item, Mapping):
        raise Invalid(path, "expected an object")
    known = ("addCommunity", "prependASPath", "setPriority")
    given = [k for k in item if item[k] is not None]
    if len(given) != 1 or given[0] not in known:
        raise Invalid(path, f"exactly one of {', '.join(known)} is needed, got "
                            f"{', '.join(map(str, given)) or 'none'}")
    key = given[0]
    if key == "addCommunity":
        value = _get(item, "addCommunity.value")
        if value is None:
            raise Invalid(f"{path}.addCommunity.value", "required")
        return Operation(add_community=parse_community(value, f"{path}.addCommunity.value"))
    if key == "prependASPath":
        asns = _list(item, "prependASPath.prefix")
        if not 1 <= len(asns) <= 10:
            raise Invalid(f"{path}.prependASPath.prefix", f"1 to 10 AS numbers, got {len(asns)}")
        return Operation(prepend_as_path=tuple(
            parse_asn(a, f"{path}.prependASPath.prefix[{i}]") for i, a in enumerate(asns)))
    value_ = _within(path, lambda: _priority(item, "setPriority.value"))
    if value_ is None:
        raise Invalid(f"{path}.setPriority.value", "required")
    return Operation(set_priority=value_)


def _within(path: str, read: Callable[[], M]) -> M:
    """``read()``, its errors named from ``path`` (the readers name fields relative to the
    object they are given)."""
    try:
        return read()
    except Invalid as exc:
        if exc.field.startswith(path):
            raise
        raise Invalid(f"{path}.{exc.field}", exc.message) from None


def _rule(item: object, path: str, version: int) -> FilterRule:
    return _within(path, lambda: _rule_at(item, path, version))


def _rule_at(item: object, path: str, version: int) -> FilterRule:
    if not isinstance(item, Mapping):
        raise Invalid(path, "expected an object")
    action = _str(item, "action", choices=("Accept", "Reject"))
    if action is None:
        raise Invalid(f"{path}.action", "required (Accept or Reject)")
    cidr_text, op = _get(item, "cidr"), _str(item, "matchOperator",
                                             choices=("Equal", "NotEqual", "In", "NotIn"))
    if (cidr_text is None) != (op is None):
        raise Invalid(f"{path}.matchOperator", "cidr and matchOperator go together")
    cidr = _cidr(cidr_text, f"{path}.cidr") if cidr_text is not None else None
    if cidr is not None and cidr.version != version:
        raise Invalid(f"{path}.cidr", f"{cidr} is not an IPv{version} CIDR")
    if _get(item, "prefixLength") is not None and cidr is None:
        raise Invalid(f"{path}.prefixLength", "needs cidr")
    width = 32 if version == 4 else 128
    low = _int(item, "prefixLength.min", low=0, high=width)
    high = _int(item, "prefixLength.max", low=0, high=width)
    if low is not None and high is not None and low > high:
        raise Invalid(f"{path}.prefixLength", f"min {low} is greater than max {high}")
    source = _str(item, "source", choices=("RemotePeers",))
    peer_type = _str(item, "peerType", choices=("eBGP", "iBGP"))
    community = None
    if _get(item, "communities") is not None:
        values = _list(item, "communities.values")
        if len(values) != 1:
            raise Invalid(f"{path}.communities.values",
                          f"exactly one community is needed, got {len(values)}")
        community = parse_community(values[0], f"{path}.communities.values[0]")
    as_path = tuple(parse_asn(a, f"{path}.asPathPrefix[{i}]")
                    for i, a in enumerate(_list(item, "asPathPrefix")))
    operations = _list(item, "operations")
    if operations and action != "Accept":
        raise Invalid(f"{path}.operations", "only an Accept rule may have operations")
    if len(operations) > 10:
        raise Invalid(f"{path}.operations", f"at most 10 operations, got {len(operations)}")
    return FilterRule(
        action=Action(action), cidr=cidr, match_operator=MatchOperator(op) if op else None,
        min_length=low, max_length=high, remote_peers_only=source == "RemotePeers",
        interface=_str(item, "interface"),
        ebgp=None if peer_type is None else peer_type == "eBGP",
        community=community, as_path_prefix=as_path, priority=_priority(item, "priority"),
        operations=tuple(_operation(o, f"{path}.operations[{i}]")
                         for i, o in enumerate(operations)),  # names its own fields
    )


def parse_bgp_filter(obj: Mapping[str, Any]) -> BGPFilter:
    name = _name(obj)

    def rules(key: str, version: int) -> tuple[FilterRule, ...]:
        return tuple(_rule(item, f"spec.{key}[{i}]", version)
                     for i, item in enumerate(_list(obj, f"spec.{key}")))

    return BGPFilter(name=name, import_v4=rules("importV4", 4), export_v4=rules("exportV4", 4),
                     import_v6=rules("importV6", 6), export_v6=rules("exportV6", 6))


@dataclass(frozen=True, slots=True)
class IPPool:
    name: str
    cidr: Prefix
    block_size: int
    ipip_mode: EncapMode = EncapMode.NEVER
    vxlan_mode: EncapMode = EncapMode.NEVER
    nat_outgoing: bool = False
    disabled: bool = False
    disable_bgp_export: bool = False
    node_selector: Selector | None = None


def parse_ip_pool(obj: Mapping[str, Any]) -> IPPool:
    name = _name(obj)
    cidr_text = _get(obj, "spec.cidr")
    if cidr_text is None:
        raise Invalid("spec.cidr", "required")
    cidr = _cidr(cidr_text, "spec.cidr")
    v4 = cidr.version == 4
    block = _int(obj, "spec.blockSize", low=20 if v4 else 116, high=32 if v4 else 128)
    modes = ("Never", "Always", "CrossSubnet")
    ipip = EncapMode(_str(obj, "spec.ipipMode", choices=modes) or "Never")
    vxlan = EncapMode(_str(obj, "spec.vxlanMode", choices=modes) or "Never")
    if ipip is not EncapMode.NEVER and vxlan is not EncapMode.NEVER:
        raise Invalid("spec.vxlanMode", "ipipMode and vxlanMode cannot both be enabled")
    if ipip is not EncapMode.NEVER and not v4:
        raise Invalid("spec.ipipMode", "IPIP carries IPv4 only")
    return IPPool(
        name=name, cidr=cidr, block_size=block or (26 if v4 else 122), ipip_mode=ipip,
        vxlan_mode=vxlan, nat_outgoing=bool(_bool(obj, "spec.natOutgoing")),
        disabled=bool(_bool(obj, "spec.disabled")),
        disable_bgp_export=bool(_bool(obj, "spec.disableBGPExport")),
        node_selector=_selector(obj, "spec.nodeSelector"),
    )


@dataclass(frozen=True, slots=True)
class BlockAffinity:
    name: str
    node: str
    cidr: Prefix
    state: str | None = None
    deleted: bool = False

    @property
    def active(self) -> bool:
        return not self.deleted and self.state in (None, "confirmed")


def parse_block_affinity(obj: Mapping[str, Any]) -> BlockAffinity:
    name = _name(obj)
    node = _str(obj, "spec.node")
    if node is None:
        raise Invalid("spec.node", "required")
    cidr_text = _get(obj, "spec.cidr")
    if cidr_text is None:
        raise Invalid("spec.cidr", "required")
    deleted = _get(obj, "spec.deleted")
    if deleted not in (None, "", "true", "false", True, False):
        raise Invalid("spec.deleted", f"expected \"true\" or \"false\", got {deleted!r}")
    return BlockAffinity(
        name=name, node=node, cidr=_cidr(cidr_text, "spec.cidr"),
        state=_str(obj, "spec.state", choices=("confirmed", "pending", "pendingDeletion")),
        deleted=deleted in ("true", True),
    )


@dataclass(frozen=True, slots=True)
class Node:
    """The Calico view of a Kubernetes Node: annotations, labels, pod CIDRs."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None
    as_number: int | None = None
    rr_cluster_id: IPv4Address | None = None
    ipip_tunnel_addr: IPv4Address | None = None
    pod_cidrs: tuple[Prefix, ...] = ()
    unschedulable: bool = False  # cordoned (spec.unschedulable): the node drains
    drain: bool = False  # annotated bgpd/drain: "true": the node drains
    taints: tuple[str, ...] = ()  # spec.taints' keys (the settings' drain_taints drain it)
    label_map: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_map", dict(self.labels))


def _interface(obj: Mapping[str, Any], key: str, version: int) -> Any:
    path = f"metadata.annotations.{ANNOTATION}{key}"
    annotations = _get(obj, "metadata.annotations") or {}
    value = annotations.get(ANNOTATION + key)
    if value in (None, ""):
        return None
    try:
        iface = ip_interface(value)
    except ValueError:
        raise Invalid(path, f"{value!r} is not an address with prefix length") from None
    if iface.version != version:
        raise Invalid(path, f"{value!r} is not an IPv{version} address")
    return iface


def parse_node(obj: Mapping[str, Any]) -> Node:
    name = _name(obj)
    annotations = _get(obj, "metadata.annotations") or {}
    labels = _get(obj, "metadata.labels") or {}
    if not isinstance(annotations, Mapping) or not isinstance(labels, Mapping):
        raise Invalid("metadata", "annotations and labels must be objects")
    asn_text = annotations.get(ANNOTATION + "ASNumber")
    rr = annotations.get(ANNOTATION + "RouteReflectorClusterID")
    tunnel = annotations.get(ANNOTATION + "IPv4IPIPTunnelAddr")
    try:
        rr_id = IPv4Address(rr) if rr else None
    except ValueError:
        raise Invalid(f"metadata.annotations.{ANNOTATION}RouteReflectorClusterID",
                      f"{rr!r} is not an IPv4 address") from None
    try:
        tunnel_addr = IPv4Address(tunnel) if tunnel else None
    except ValueError:
        raise Invalid(f"metadata.annotations.{ANNOTATION}IPv4IPIPTunnelAddr",
                      f"{tunnel!r} is not an IPv4 address") from None
    pod_cidrs = [*_list(obj, "spec.podCIDRs")] or (
        [_get(obj, "spec.podCIDR")] if _get(obj, "spec.podCIDR") else [])
    drain = annotations.get(BGPD_ANNOTATION + "drain")
    if drain is not None and drain not in ("true", "false"):
        raise Invalid(f"metadata.annotations.{BGPD_ANNOTATION}drain",
                      f"expected \"true\" or \"false\", got {drain!r}")
    taints = []
    for i, taint in enumerate(_list(obj, "spec.taints")):
        key = taint.get("key") if isinstance(taint, Mapping) else None
        if not isinstance(key, str) or not key:
            raise Invalid(f"spec.taints[{i}].key", "a taint needs a key")
        taints.append(key)
    return Node(
        name=name,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        ipv4=_interface(obj, "IPv4Address", 4),
        ipv6=_interface(obj, "IPv6Address", 6),
        as_number=parse_asn(asn_text, f"metadata.annotations.{ANNOTATION}ASNumber")
        if asn_text else None,
        rr_cluster_id=rr_id,
        ipip_tunnel_addr=tunnel_addr,
        pod_cidrs=tuple(_cidr(c, f"spec.podCIDRs[{i}]") for i, c in enumerate(pod_cidrs)),
        unschedulable=bool(_bool(obj, "spec.unschedulable")),
        drain=drain == "true",
        taints=tuple(taints),
    )


@dataclass(frozen=True, slots=True)
class Secret:
    name: str
    data: tuple[tuple[str, str], ...] = field(repr=False, default=())

    def get(self, key: str) -> str | None:
        return dict(self.data).get(key)


def parse_secret(obj: Mapping[str, Any]) -> Secret:
    name = _name(obj)
    values: dict[str, str] = {}
    for key, encoded in (_get(obj, "data") or {}).items():
        try:
            values[str(key)] = base64.b64decode(str(encoded), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Invalid(f"data.{key}", "not valid base64 text") from None
    for key, text in (_get(obj, "stringData") or {}).items():
        values[str(key)] = str(text)
    return Secret(name=name, data=tuple(sorted(values.items())))


@dataclass(frozen=True, slots=True)
class FelixConfiguration:
    """Felix's half of Calico's cluster-route split (``spec.programClusterRoutes``, Calico
    v3.33): which pools' routes to other nodes' blocks Felix programs.  Felix reads the
    ``default`` object and this node's ``node.<name>``, the latter first; so does bgpd.
    tigera-operator writes it (with BGPConfiguration's) from the Installation's
    ``clusterRoutingMode``.  Its other fields are Felix's own and are not read."""

    name: str
    program_cluster_routes: str | None = None


def parse_felix_configuration(obj: Mapping[str, Any]) -> FelixConfiguration:
    return FelixConfiguration(_name(obj), _str(obj, "spec.programClusterRoutes",
                                                choices=CLUSTER_ROUTES))


@dataclass(frozen=True, slots=True)
class ClusterInformation:
    """The cluster's Calico version (``ClusterInformation`` ``default``, ``spec.calicoVersion``,
    written by calico-node and kube-controllers): what the other nodes' confd renders depends
    on it."""

    name: str
    version: tuple[int, int] | None = None  # (major, minor); None: not set yet

    @property
    def v3_33(self) -> bool:
        """Calico v3.33 or later: its route priorities (kernel metrics, LOCAL_PREF on the
        wire) and its programClusterRoutes default."""
        return self.version is not None and self.version >= (3, 33)


def parse_cluster_information(obj: Mapping[str, Any]) -> ClusterInformation:
    name = _name(obj)
    text = _str(obj, "spec.calicoVersion")
    if text is None:
        return ClusterInformation(name)
    match = re.match(r"v?(\d+)\.(\d+)", text)
    if match is None:
        raise Invalid("spec.calicoVersion", f"{text!r} is not a version (like \"v3.33.0\")")
    return ClusterInformation(name, (int(match.group(1)), int(match.group(2))))


SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
FAMILIES = {"IPv4": 4, "IPv6": 6}


def namespaced_name(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` (the store's name of a namespaced object; ``default`` when the
    manifest has no namespace, as kubectl takes it)."""
    namespace = _str(obj, "metadata.namespace") or "default"
    return f"{namespace}/{_name(obj)}"


@dataclass(frozen=True, slots=True)
class Service:
    """A Kubernetes Service, as far as service advertisement reads it: its addresses, type
    and external traffic policy (status: the load balancer's ingress addresses)."""

    name: str  # namespace/name
    type: str = "ClusterIP"
    cluster_ips: tuple[Address, ...] = ()  # none: headless (clusterIP None) or not assigned
    external_ips: tuple[Address, ...] = ()
    lb_ips: tuple[Address, ...] = ()  # status.loadBalancer.ingress[].ip
    lb_spec_ip: Address | None = None  # spec.loadBalancerIP (deprecated, still read)
    external_policy: str | None = None  # spec.externalTrafficPolicy: Cluster | Local
    families: tuple[int, ...] = ()  # spec.ipFamilies (else those of its cluster IPs)


def _addresses(obj: Mapping[str, Any], path: str, *, key: str | None = None
               ) -> tuple[Address, ...]:
    out = []
    for i, item in enumerate(_list(obj, path)):
        where = f"{path}[{i}]"
        if key is not None:
            if not isinstance(item, Mapping):
                raise Invalid(where, "expected an object")
            where, item = f"{where}.{key}", item.get(key)
            if item in (None, ""):  # an ingress by hostname only
                continue
        if not isinstance(item, str):
            raise Invalid(where, f"expected an IP address, got {item!r}")
        try:
            out.append(ip_address(item))
        except ValueError:
            raise Invalid(where, f"{item!r} is not an IP address") from None
    return tuple(out)


def parse_service(obj: Mapping[str, Any]) -> Service:
    name = namespaced_name(obj)
    cluster_ip = _str(obj, "spec.clusterIP")
    cluster_ips: tuple[Address, ...] = ()
    if cluster_ip is not None and cluster_ip != "None":
        first = _address(obj, "spec.clusterIP")
        cluster_ips = _addresses(obj, "spec.clusterIPs") or ((first,) if first else ())
    families = []
    for i, family in enumerate(_list(obj, "spec.ipFamilies")):
        if not isinstance(family, str) or family not in FAMILIES:
            raise Invalid(f"spec.ipFamilies[{i}]", f"{family!r} is not IPv4 or IPv6")
        families.append(FAMILIES[family])
    return Service(
        name=name,
        type=_str(obj, "spec.type", choices=SERVICE_TYPES) or "ClusterIP",
        cluster_ips=cluster_ips,
        external_ips=_addresses(obj, "spec.externalIPs"),
        lb_ips=_addresses(obj, "status.loadBalancer.ingress", key="ip"),
        lb_spec_ip=_address(obj, "spec.loadBalancerIP"),
        external_policy=_str(obj, "spec.externalTrafficPolicy", choices=("Cluster", "Local")),
        families=tuple(families) or tuple(sorted({a.version for a in cluster_ips})),
    )


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    """One EndpointSlice, reduced to what decides an advertisement: its Service, its address
    family and the nodes of its ready endpoints (an endpoint's address or port changing is no
    change here)."""

    name: str  # namespace/name
    service: str | None  # namespace/name of its Service (label kubernetes.io/service-name)
    family: int | None  # addressType IPv4 / IPv6 (FQDN: None)
    ready_nodes: frozenset[str] = frozenset()  # "": a ready endpoint without nodeName


def parse_endpoint_slice(obj: Mapping[str, Any]) -> EndpointSlice:
    name = namespaced_name(obj)
    labels = _get(obj, "metadata.labels") or {}
    if not isinstance(labels, Mapping):
        raise Invalid("metadata.labels", "expected an object")
    service = labels.get(SERVICE_NAME_LABEL)
    address_type = _str(obj, "addressType", choices=("IPv4", "IPv6", "FQDN"))
    ready = set()
    for i, endpoint in enumerate(_list(obj, "endpoints")):
        if not isinstance(endpoint, Mapping):
            raise Invalid(f"endpoints[{i}]", "expected an object")
        try:
            # unset means ready (the EndpointSlice API); only ready endpoints receive traffic
            if _bool(endpoint, "conditions.ready") is False:
                continue
            node = _str(endpoint, "nodeName")
        except Invalid as exc:
            raise Invalid(f"endpoints[{i}].{exc.field}", exc.message) from None
        ready.add(node or "")
    return EndpointSlice(
        name=name,
        service=f"{name.split('/')[0]}/{service}" if isinstance(service, str) and service
        else None,
        family=FAMILIES.get(address_type or ""),
        ready_nodes=frozenset(ready),
    )


@dataclass(frozen=True, slots=True)
class LocalWorkload:
    """One workload endpoint of this node selected for local BGP peering (from Felix's
    endpoint status files: :mod:`node_controller.endpoints`)."""

    name: str  # the status file's name
    bgp_peer: str  # the BGPPeer whose localWorkloadSelector picked it
    ipv4: IPv4Address | None = None
    ipv6: IPv6Address | None = None


PARSERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "BGPConfiguration": parse_bgp_configuration,
    "BGPPeer": parse_bgp_peer,
    "BGPFilter": parse_bgp_filter,
    "BFDConfiguration": parse_bfd_configuration,
    "IPPool": parse_ip_pool,
    "BlockAffinity": parse_block_affinity,
    "Node": parse_node,
    "Secret": parse_secret,
    "ClusterInformation": parse_cluster_information,
    "FelixConfiguration": parse_felix_configuration,
    "Service": parse_service,
    "EndpointSlice": parse_endpoint_slice,
}
CALICO_GROUPS = ("crd.projectcalico.org/v1", "projectcalico.org/v3")

Model = (BGPConfiguration | BGPPeer | BGPFilter | BFDConfiguration | IPPool | BlockAffinity
         | Node | Secret | ClusterInformation | FelixConfiguration | Service | EndpointSlice)
KUBERNETES_VERSIONS = {"Node": ("v1",), "Secret": ("v1",), "Service": ("v1",),
                       "EndpointSlice": ("discovery.k8s.io/v1",)}


def parse(obj: Mapping[str, Any]) -> Model:
    """The model of one resource; raises :class:`Invalid` for a bad one."""
    kind = obj.get("kind")
    if kind not in PARSERS:
        raise Invalid("kind", f"{kind!r} is not a resource the daemon reads")
    version = obj.get("apiVersion")
    expected = KUBERNETES_VERSIONS.get(kind, CALICO_GROUPS)
    if version not in expected:
        raise Invalid("apiVersion", f"{version!r} for {kind} (expected {' or '.join(expected)})")
    model: Model = PARSERS[kind](obj)
    return model

