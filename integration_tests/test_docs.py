"""Every command the README and the docs show in an ``sh`` block runs, against the lab.

The lab comes up as ``make lab`` brings it up (the ``make`` lines themselves are CI's own
two commands), in a folder of the test's instead of ``/tmp/bgpd-lab``; then each command of
each page runs in order, from the checkout, and must succeed — a ``lab up`` must converge
with every ping answered.  The lab's namespaces have fixed names (``bgpdlab-…``): with a lab
of someone's already running, the test is skipped rather than tearing it down.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from integration_tests.lab.__main__ import PREFIX
from integration_tests.netns import list_namespaces

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def shown_commands() -> list[tuple[str, str]]:
    """(page, command) for every line of every ``sh`` block but CI's ``make`` lines."""
    out = []
    for page in PAGES:
        for block in re.findall(r"```sh\n(.*?)```", page.read_text(), re.S):
            for line in block.splitlines():
                if line.strip() and not line.startswith("make "):
                    out.append((str(page.relative_to(ROOT)), line))
    return out


def run(command: str, state: Path) -> str:
    command = command.replace("/tmp/bgpd-lab", str(state)).replace(
        "integration_tests.lab ", f"integration_tests.lab --state-dir {state} ")
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    if " up" in command and "integration_tests.lab" in command:
        assert "converged in" in done.stdout and "LOST" not in done.stdout, done.stdout[-3000:]
    return done.stdout


@pytest.mark.slow
def test_every_command_the_pages_show_runs(tmp_path: Path) -> None:
    if any(name.startswith(f"{PREFIX}-") for name in list_namespaces()):
        pytest.skip("a lab is running on this machine: its namespaces would be removed")
    commands = shown_commands()
    assert len(commands) >= 8, commands
    state = tmp_path / "lab"
    try:
        run(f"{sys.executable} -m integration_tests.lab up --nodes 3", state)  # make lab
        for page, command in commands:
            out = run(command, state)
            assert out is not None, page
    finally:
        subprocess.run([sys.executable, "-m", "integration_tests.lab", "--state-dir",
                        str(state), "down"], cwd=ROOT, capture_output=True, timeout=120)
