"""Felix's endpoint status files: which workloads are local BGP peers."""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from node_controller.endpoints import EndpointFolder, read_file
from node_controller.errors import Invalid
from node_controller.models import LocalWorkload


def status(**fields: object) -> str:
    base: dict[str, object] = {"ifaceName": "cali1234", "mac": "ee:ee:ee:ee:ee:ee"}
    return json.dumps({**base, **fields})


def test_a_file_naming_a_bgppeer_is_a_workload_to_peer_with() -> None:
    text = status(ipv4Nets=["172.17.9.10/32", "172.17.9.11/32"], ipv6Nets=["fd00::a/128"],
                  bgpPeerName="vms")
    assert read_file("f", text) == LocalWorkload("f", "vms", IPv4Address("172.17.9.10"),
                                                 IPv6Address("fd00::a"))
    assert read_file("f", status(ipv4Nets=["172.17.9.10/32"])) is None  # not selected
    assert read_file("f", status(bgpPeerName="vms")) is None  # no address yet


@pytest.mark.parametrize(("text", "field", "words"), [
    ("{", "(file)", "not JSON"),
    ("[" * 100_000, "(file)", "RecursionError"),
    ("[]", "(file)", "JSON object"),
    (status(bgpPeerName=7, ipv4Nets=["10.0.0.1/32"]), "bgpPeerName", "string"),
    (status(bgpPeerName="p", ipv4Nets="10.0.0.1/32"), "ipv4Nets", "list"),
    (status(bgpPeerName="p", ipv4Nets=["10.0.0.300/32"]), "ipv4Nets[0]", "not an address"),
    (status(bgpPeerName="p", ipv6Nets=["10.0.0.1/32"]), "ipv6Nets[0]", "not an IPv6"),
])
def test_a_bad_file_names_its_field(text: str, field: str, words: str) -> None:
    with pytest.raises(Invalid) as caught:
        read_file("f", text)
    assert caught.value.field == field and words in caught.value.message


def test_the_folder_follows_files_and_keeps_the_last_valid_version(tmp_path: Path) -> None:
    folder = EndpointFolder(tmp_path / "endpoint-status")
    assert not folder.scan() and folder.workloads == ()  # no folder: nothing, no error
    (tmp_path / "endpoint-status").mkdir()
    vm = tmp_path / "endpoint-status" / "vm1"
    vm.write_text(status(ipv4Nets=["172.17.9.10/32"], bgpPeerName="vms"))
    assert folder.scan()
    assert [w.ipv4 for w in folder.workloads] == [IPv4Address("172.17.9.10")]
    assert not folder.scan()  # nothing changed: nothing read, no change
    vm.write_text('{"ifaceName": "cali')  # half written
    os.utime(vm, ns=(1, 1))
    assert folder.scan()  # the error is new; the workload stays
    assert [w.name for w in folder.workloads] == ["vm1"]
    assert [(e.kind, e.name, e.field) for e in folder.errors] == [
        ("WorkloadEndpointStatus", "vm1", "(file)")]
    vm.write_text(status(ipv4Nets=["172.17.9.12/32"], bgpPeerName="vms"))
    assert folder.scan() and folder.errors == ()
    assert [w.ipv4 for w in folder.workloads] == [IPv4Address("172.17.9.12")]
    vm.write_text(status(ipv4Nets=["172.17.9.12/32"]))  # Felix: no longer selected
    assert folder.scan() and folder.workloads == ()
    vm.write_text(status(ipv4Nets=["172.17.9.12/32"], bgpPeerName="vms"))
    assert folder.scan() and len(folder.workloads) == 1
    vm.unlink()
    assert folder.scan() and folder.workloads == ()
