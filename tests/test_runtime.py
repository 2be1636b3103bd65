import platform
import subprocess
import sys

import pytest

from bgpd import runtime


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_c_librarys_trim_is_found_among_the_process_symbols() -> None:
    trim = runtime._malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was handed back
    assert runtime._TRIM is not None


@pytest.mark.parametrize("modules", [
    "bgpd.cli, bgpd.daemon, bgpd.log, bgpd.settings, pyroute2",  # the daemon's start
    "bgpd.speaker.engine, exabgp.application.main, exabgp.reactor.loop",  # the launcher's
])
def test_what_start_up_leaves_frozen_holds_no_garbage(modules: str) -> None:
    """tune_gc collects only the young generations before it freezes what the imports
    allocated: garbage in the old generation would stay for the process's life."""
    code = (f"import gc\nimport {modules}\nfrom bgpd.runtime import tune_gc\n"
            "tune_gc()\ngc.unfreeze()\nprint(gc.collect())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "0"
