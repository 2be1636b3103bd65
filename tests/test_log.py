"""Log lines: on the journal's stream each carries its syslog priority, elsewhere none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = ("from bgpd import log; log.configure('debug', json=True); import structlog; "
         "l = structlog.get_logger('t'); l.error('broken', x=1); l.warning('odd'); "
         "l.info('fine'); l.debug('detail')")


@pytest.mark.parametrize("journal", [True, False])
def test_journal_lines_carry_their_priority(tmp_path: Path, journal: bool) -> None:
    out = tmp_path / "stderr"
    with out.open("wb") as stderr:
        st = os.fstat(stderr.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}" if journal
               else f"{st.st_dev}:{st.st_ino + 1}"}  # another stream: a redirected child
        subprocess.run([sys.executable, "-c", CHILD], stderr=stderr, env=env, check=True)
    lines = out.read_text().splitlines()
    prefixes = [line[:3] for line in lines]
    if journal:
        assert prefixes == ["<3>", "<4>", "<6>", "<7>"], lines
        assert all(line[3:].startswith("{") for line in lines)
    else:
        assert all(line.startswith("{") for line in lines), lines
