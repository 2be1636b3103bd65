"""How calico-node reads BIRD's socket, rule for rule, in Python: its node-status reporter
(``node/pkg/status/populators/*.go`` in Calico's source), which fills CalicoNodeStatus from
``show status``, ``show protocols``, ``show protocols all <name>`` and ``show route``.  Used by
the tests of bgpd's BIRD-compatible socket, unit and in the lab."""

from __future__ import annotations

import re

PEER_NAME = re.compile(r"^(Global|Node|Mesh)_(.+)$")
TYPES = {"Global": "GlobalPeer", "Mesh": "NodeMesh", "Node": "NodePeer"}
HEADINGS = ["name", "proto", "table", "state", "since", "info"]


def reporter_status(lines: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines:
        if line.startswith("0013"):
            break
        if line.startswith(("0001", "1000", "1011")):
            text = line[5:]
        elif line.startswith(" "):
            text = line[1:]
        else:
            break  # e.g. 0024: logged, the rest unread
        for key, prefix in (("routerID", "Router ID is "), ("lastBootTime", "Last reboot on "),
                            ("lastReconfigurationTime", "Last reconfiguration on ")):
            if text.startswith(prefix):
                found[key] = text[len(prefix):]
        if text.startswith("BIRD v"):
            found["version"] = text[len("BIRD "):]
    return found


def reporter_peers(lines: list[str], sep: str) -> list[dict[str, str]]:
    peers = []
    for line in lines:
        if line.startswith("0000"):
            break
        if line.startswith("0001"):
            continue
        if line.startswith("2002"):
            assert line[5:].split() == HEADINGS, "unknown BIRD table output format"
            continue
        if line.startswith("1002"):
            text = line[5:]
        elif line.startswith(" "):
            text = line[1:]
        else:
            raise ValueError(f"unexpected output line from BIRD: {line!r}")
        columns = text.split()
        if len(columns) < 6 or columns[1] != "BGP":
            continue
        m = PEER_NAME.match(columns[0])
        if m is None:
            continue
        peers.append({"session": columns[0], "type": TYPES[m.group(1)], "since": columns[4],
                      "name_ip": m.group(2).replace("_", sep)})
    return peers


def reporter_complete(lines: list[str]) -> dict[str, str]:
    """``show protocols all <name>``: only the BGP state and the neighbour address are read."""
    found = {}
    for line in lines:
        if line.startswith("0000"):
            break
        for key, label in (("state", "BGP state:"), ("peerIP", "Neighbor address:")):
            if label in line:
                found[key] = line.replace(label, " ").strip()
    return found


VIA = re.compile(r"(?P<dest>\S*)\s*via\s(?P<gateway>\S*)\s*on\s(?P<iface>.*)"
                 r"\s\[(?P<from>\S*)\s.*\].*")
BLACKHOLE = re.compile(r"(?P<dest>\S*)\s*blackhole\s\[(?P<from>\S*)\s.*\].*")


def reporter_routes(lines: list[str], sep: str) -> list[dict[str, str]]:
    routes, previous = [], ""
    for line in lines:
        if line.startswith("0000"):
            break
        if line.startswith("0001"):
            continue
        if line.startswith("1007"):
            text = line[5:]
        elif line.startswith(" "):
            text = line[1:]
        else:
            raise ValueError(f"unexpected output line from BIRD: {line!r}")
        if " via " in text:
            m = VIA.search(text)
            assert m is not None, text
            r = {"dest": m["dest"], "gateway": m["gateway"], "iface": m["iface"],
                 "from": m["from"]}
        elif " blackhole " in text:
            m = BLACKHOLE.search(text)
            assert m is not None, text
            r = {"dest": m["dest"], "gateway": "N/A", "iface": "blackhole", "from": m["from"]}
        else:
            raise AssertionError(f"no route shape in {text!r}")
        r["dest"] = r["dest"] or previous
        assert r["dest"], "no destination"
        previous = r["dest"]
        r["type"] = "FIB" if "] *" in text else "RIB"
        if r["from"].startswith(("kernel", "static", "direct")):
            r["sourceType"] = r["from"].rstrip("0123456789").capitalize()
        else:
            m = PEER_NAME.match(r["from"])
            assert m is not None, r["from"]
            r["sourceType"] = "NodeMesh" if m.group(1) == "Mesh" else "BGPPeer"
            r["peerIP"] = m.group(2).replace("_", sep)
        routes.append(r)
    return routes
