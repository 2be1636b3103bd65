from __future__ import annotations

import subprocess
import sys

import pytest

from bgpd import __version__
from bgpd.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"bgpd {__version__}"


def test_console_script_is_installed() -> None:
    out = subprocess.run([sys.executable, "-m", "bgpd", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"bgpd {__version__}"


def test_missing_namespace_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kernel", "show", "--netns", "bgpd-no-such-namespace"]) == 1
    assert "network namespace 'bgpd-no-such-namespace' does not exist" in capsys.readouterr().err
