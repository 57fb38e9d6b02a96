"""hack/tilt/supervisor.py: Tilt's live update restarts `kcp run` by touching a file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .dockerfile import ROOT

SUPERVISOR = ROOT / "hack" / "tilt" / "supervisor.py"

# A stand-in for `kcp run`: appends its pid to a file, exits 7 on SIGTERM.
CHILD = """
import os, signal, sys, time
with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()}\\n")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
while True:
    time.sleep(0.05)
"""


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    pids = tmp_path / "pids"
    trigger = tmp_path / "restart"
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    process = subprocess.Popen(
        [
            sys.executable,
            str(SUPERVISOR),
            f"--trigger={trigger}",
            "--poll=0.05",
            "--grace=5",
            "--backoff=0.2",
            "--",
            sys.executable,
            str(child),
            str(pids),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: len(_pids(pids)) == 1)
        yield process, trigger, pids
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in _pids(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_touching_the_trigger_restarts_the_child(
    supervised: tuple[subprocess.Popen[bytes], Path, Path],
) -> None:
    process, trigger, pids = supervised
    first = _pids(pids)[0]
    trigger.touch()
    _wait(lambda: len(_pids(pids)) == 2)
    _wait(lambda: not _alive(first))
    second = _pids(pids)[1]
    assert _alive(second)
    # A second sync restarts again (the trigger's mtime changed again).
    time.sleep(0.02)
    os.utime(trigger, ns=(time.time_ns(), time.time_ns()))
    _wait(lambda: len(_pids(pids)) == 3)
    assert process.poll() is None


def test_a_crashed_child_is_started_again(
    supervised: tuple[subprocess.Popen[bytes], Path, Path],
) -> None:
    process, _trigger, pids = supervised
    os.kill(_pids(pids)[0], signal.SIGKILL)
    _wait(lambda: len(_pids(pids)) == 2)
    assert process.poll() is None


def test_sigterm_stops_child_and_supervisor_with_the_childs_code(
    supervised: tuple[subprocess.Popen[bytes], Path, Path],
) -> None:
    process, _trigger, pids = supervised
    child = _pids(pids)[0]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 7
    assert not _alive(child)
    assert len(_pids(pids)) == 1


def test_no_command_is_a_usage_error() -> None:
    completed = subprocess.run(
        [sys.executable, str(SUPERVISOR)], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 2
    assert "no command" in completed.stderr
