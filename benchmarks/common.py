"""What every benchmark shares: a description of the machine and where results are kept."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ip_version = subprocess.run(["ip", "-V"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "iproute2": ip_version,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def report(name: str, result: dict[str, Any], *, save: bool = True) -> None:
    """Print ``result`` as the last line and keep a copy with the machine description."""
    if save:
        RESULTS.mkdir(exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        record = {"benchmark": name, "machine": machine(), "result": result}
        (RESULTS / f"{name}-{stamp}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(result))


def arguments(doc: str, name: str) -> argparse.ArgumentParser:
    """A benchmark's command line (described by the first line of ``doc``) with the options
    each has: ``--workdir`` (``/tmp/bgpd-bench-NAME``) and ``--no-save``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--workdir", default=f"/tmp/bgpd-bench-{name}")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    return parser
