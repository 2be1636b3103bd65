"""The documentation cannot drift from the code: the reference pages are what the code
makes, every link leads somewhere, every warning and error the daemon can log is explained.
(The commands the pages show are run against the lab by integration_tests/test_docs.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from bgpd import reference

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_reference_pages_are_what_the_code_makes() -> None:
    assert reference.stale() == [], "run: python -m bgpd.reference"


def test_every_link_between_the_pages_leads_somewhere() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} → {target}")
    assert broken == []


def test_every_warning_and_error_the_daemon_logs_is_on_the_troubleshooting_page() -> None:
    events = set()
    for path in [*(ROOT / "bgpd").rglob("*.py"), *(ROOT / "node_controller").rglob("*.py")]:
        events |= set(re.findall(r"log\.(?:warning|error)\(\s*\"([a-z_]+)\"", path.read_text()))
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    assert events, "no events found: the pattern no longer matches the code"
    assert sorted(e for e in events if f"`{e}`" not in page) == []


def test_the_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 160
    assert "make lab" in "\n".join(lines) and "make test" in "\n".join(lines)


def test_the_malformed_message_page_shows_the_cases_the_suite_sends() -> None:
    from integration_tests.malformed_cases import page_table, table

    assert page_table() == table(), "run: python -m integration_tests.malformed_cases"
