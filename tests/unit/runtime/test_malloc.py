"""`limit_malloc_arenas`: glibc hands threads at most the arenas asked for."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from kcp.runtime.malloc import limit_malloc_arenas

# A child process: optionally cap arenas, let eight threads allocate, then count the
# arenas glibc reports in malloc_info's XML (one <heap> element per arena).
_CHILD = textwrap.dedent(
    """
    import ctypes, ctypes.util, sys, threading
    from kcp.runtime.malloc import limit_malloc_arenas

    if sys.argv[1] == "limit":
        assert limit_malloc_arenas(2)
    barrier = threading.Barrier(8)

    def allocate():
        barrier.wait()  # all eight allocate at once, so glibc would spread them
        blocks = [bytearray(256) for _ in range(20000)]
        barrier.wait()
        del blocks

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.open_memstream.restype = ctypes.c_void_p
    pointer = ctypes.POINTER
    libc.open_memstream.argtypes = (pointer(ctypes.c_char_p), pointer(ctypes.c_size_t))
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(buffer.value.decode().count("<heap nr="))
    """
)


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_threads_share_at_most_the_arenas_asked_for() -> None:
    assert _arenas("limit") <= 2
    assert _arenas("free") > 2  # the test can tell: without the cap they spread


def test_an_explicit_environment_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


def test_at_least_one_arena() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        limit_malloc_arenas(0)
