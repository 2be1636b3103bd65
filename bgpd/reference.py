"""The reference pages of ``docs/reference/``, made from the code — never written by hand.

    python -m bgpd.reference [--check] [FOLDER]

* ``settings.md``: every key of :class:`bgpd.settings.Settings` with its type and default,
  and its meaning from the comments of ``config/bgpd.yaml`` (the shipped file, which a test
  keeps equal to the defaults);
* ``annotations.md``: :data:`node_controller.models.ANNOTATIONS`, which the parsers read;
* ``metrics.md``: every family the metrics collector makes, asked from the collector itself
  over an idle daemon's parts;
* ``verdicts.md``: the import and export verdicts (:data:`ribs.policy.MEANINGS`) and the
  kernel's refusals (:mod:`bgpd.errors`).

``--check`` writes nothing and fails, naming the pages, when one differs from what the code
makes (the test suite runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "docs" / "reference"
HEADER = "<!-- made by `python -m bgpd.reference`: edit the code, not this page -->\n\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _setting_comments(path: Path) -> dict[str, str]:
    """Each key's comment in the shipped settings file (continuation lines joined)."""
    comments: dict[str, str] = {}
    key = None
    for line in path.read_text().splitlines():
        match = re.match(r"^(\w+):[^#]*(?:#\s?(.*))?$", line)
        if match:
            key = match.group(1)
            comments[key] = (match.group(2) or "").strip()
        elif key is not None and re.match(r"^\s+#", line):
            comments[key] += " " + line.split("#", 1)[1].strip()
        else:
            key = None
    return comments


def settings_page() -> str:
    from bgpd.settings import Settings

    comments = _setting_comments(ROOT / "config" / "bgpd.yaml")
    rows = []
    for f in dataclasses.fields(Settings):
        if not f.init or f.name == "source":
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = "null" if default is None else (str(default).lower()
                                               if isinstance(default, bool) else str(default))
        shown = shown or '""'
        rows.append(f"| `{f.name}` | `{_cell(str(f.type))}` | `{shown}` | "
                    f"`BGPD_{f.name.upper()}` | {_cell(comments.get(f.name, ''))} |")
    return (HEADER + "# Settings\n\nThe file (`--config`, `/etc/bgpd/bgpd.yaml`; "
            "`config/bgpd.yaml` ships every key with its default), then `BGPD_<KEY>` "
            "environment variables over it; `NODENAME` over `node_name`. A wrong key or value "
            "stops the start naming the file, line and key.\n\n"
            "| key | type | default | environment | meaning |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def annotations_page() -> str:
    from node_controller.models import ANNOTATIONS

    rows = [f"| {a.kind} | `{a.key}` | {a.values} | {_cell(a.meaning)} |" for a in ANNOTATIONS]
    return (HEADER + "# Annotations\n\nEvery annotation bgpd reads. A value it cannot take is an "
            "error naming the object and the annotation; the object's last valid version "
            "applies.\n\n| on | annotation | values | what it does |\n|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def _idle_parts() -> object:
    """An idle daemon's parts, nothing started (the collector reads them as they are)."""
    from bgpd.kernel import Kernel
    from bgpd.kernel_sync import KernelSync
    from bgpd.observability import Parts
    from bgpd.router import Router
    from bgpd.settings import Settings
    from bgpd.speaker.supervisor import Speaker
    from node_controller.controller import Controller

    controller = Controller("reference")
    speaker = Speaker(workdir=Path(tempfile.gettempdir()) / "bgpd-reference")
    sync = KernelSync(Kernel(protocol=12, table=254))
    router = Router(settings=Settings(node_name="reference"), speaker=speaker, kernel=sync,
                    desired=controller.desired, adopted=[])
    return Parts(router, speaker, sync, controller)


def metrics_page() -> str:
    from bgpd.metrics import DaemonCollector

    rows = []
    for family in DaemonCollector(_idle_parts()).collect():  # type: ignore[arg-type]
        labels = ", ".join(f"`{name}`" for name in getattr(family, "_labelnames", ()))
        suffix = "_total" if family.type == "counter" else ""
        rows.append(f"| `{family.name}{suffix}` | {family.type} | {labels or '-'} | "
                    f"{_cell(family.documentation)} |")
    return (HEADER + "# Metrics\n\nPrometheus text on `metrics_address` (default "
            "`127.0.0.1:9095`), `/metrics`; `/livez` and `/readyz` beside it.\n\n"
            "| metric | type | labels | meaning |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")


def verdicts_page() -> str:
    from bgpd import errors
    from ribs.policy import MEANINGS, Reason

    rows = [f"| `{r.value}` | {_cell(MEANINGS[r])} |" for r in Reason]
    kernel = [(cls.reason, inspect.getdoc(cls) or "")
              for cls in vars(errors).values()
              if inspect.isclass(cls) and issubclass(cls, errors.KernelError)]
    krows = [f"| `{reason}` | {_cell(doc)} |" for reason, doc in kernel]
    return (HEADER + "# Verdicts\n\n## Routes from peers\n\nWhy a route was taken or refused, "
            "as `bgpd routes` shows it and `bgpd_bgp_routes_rejected_total{reason}` counts "
            "it.\n\n| reason | meaning |\n|---|---|\n" + "\n".join(rows)
            + "\n\n## The kernel's refusals\n\nA route write the kernel refused "
            "(`bgpd status` → kernel errors, `bgpd routes` → KERNEL, "
            "`bgpd_kernel_write_failures_total`); it is retried.\n\n"
            "| reason | meaning |\n|---|---|\n" + "\n".join(krows) + "\n")


PAGES: dict[str, Callable[[], str]] = {
    "settings.md": settings_page, "annotations.md": annotations_page,
    "metrics.md": metrics_page, "verdicts.md": verdicts_page}


def stale(folder: Path = FOLDER) -> list[str]:
    """The pages of ``folder`` that differ from what the code makes."""
    out = []
    for name, make in PAGES.items():
        path = folder / name
        if not path.exists() or path.read_text() != make():
            out.append(str(path))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgpd.reference",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=FOLDER)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail when a page is not what the code makes")
    args = parser.parse_args(argv)
    if args.check:
        behind = stale(args.folder)
        for path in behind:
            print(f"{path}: not what the code makes: python -m bgpd.reference", file=sys.stderr)
        return 1 if behind else 0
    args.folder.mkdir(parents=True, exist_ok=True)
    for name, make in PAGES.items():
        (args.folder / name).write_text(make())
    return 0


if __name__ == "__main__":
    sys.exit(main())
