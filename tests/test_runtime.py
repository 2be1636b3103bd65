import platform

import pytest

from bgpd import runtime


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_c_librarys_trim_is_found_among_the_process_symbols() -> None:
    trim = runtime._malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was handed back
    assert runtime._TRIM is not None
