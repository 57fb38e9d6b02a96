"""A simulated machine's process: its environment, and going down with its machine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcp.sim.launcher import Launcher
from kcp.sim.process import SimProcess


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    started = Launcher()
    yield started
    started.close()


def _wait_for(path: Path, text: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = path.read_text() if path.exists() else ""
        if text in found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never reached {path}")


def test_the_process_env_is_added_to_the_environment(launcher: Launcher, tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    process = SimProcess("p", launcher, log, {"GOGC": "400"})
    process.start(["sh", "-c", 'echo "gogc=$GOGC home=${HOME:+set}"; exec sleep 30'])
    try:
        assert "gogc=400 home=set" in _wait_for(log, "gogc=")
    finally:
        process.stop(timeout=1)


def test_a_machine_s_processes_are_told_to_stop_together(
    launcher: Launcher, tmp_path: Path
) -> None:
    slow = [SimProcess(f"p{i}", launcher, tmp_path / f"p{i}.log") for i in range(3)]
    for i, process in enumerate(slow):
        # Each takes 1 s to exit after SIGTERM: one after the other would take 3 s.
        process.start(["sh", "-c", f"trap 'sleep 1; exit 0' TERM; echo up{i}; sleep 30 & wait"])
        _wait_for(tmp_path / f"p{i}.log", f"up{i}")
    started = time.monotonic()
    for process in slow:
        process.terminate()
    for process in slow:
        process.stop(timeout=5)
    assert not any(p.running for p in slow)
    assert time.monotonic() - started < 2.5
