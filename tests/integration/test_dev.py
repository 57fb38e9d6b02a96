"""`kcp dev` (what `make run` runs): samples reach Available; Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.interrupts import sigint_reaches_children

pytestmark = pytest.mark.timeout(420)


def _descendants(root: int) -> dict[int, str]:
    """Every live process below `root`, with its command name."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        head, _, tail = stat.rpartition(")")
        fields = tail.split()
        if fields[0] == "Z":
            continue
        parents[int(entry.name)] = int(fields[1])
        names[int(entry.name)] = head.split("(", 1)[1]
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        current = frontier.pop()
        for pid, parent in parents.items():
            if parent == current and pid not in found:
                found[pid] = names[pid]
                frontier.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_dev_reaches_available_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    work_dir = tmp_path / "dev"
    with sigint_reaches_children():
        command = subprocess.Popen(
            [sys.executable, "-m", "kcp", "dev", "--work-dir", str(work_dir), "--refresh", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    seen: list[str] = []
    children: dict[int, str] = {}
    try:
        assert command.stdout is not None
        deadline = time.monotonic() + 360
        while time.monotonic() < deadline:
            line = command.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip())
            if not children or len(children) < 10:
                children = _descendants(command.pid) or children
            if line.startswith("all sample clusters Available"):
                break
        assert any(s.startswith("all sample clusters Available") for s in seen), "\n".join(
            seen[-60:]
        )
        children = _descendants(command.pid)
        names = set(children.values())
        # management etcd + apiserver, the controller, and 4 simulated machines' processes
        assert {"etcd", "kube-apiserver"} <= names
        assert sum(1 for n in children.values() if n == "kube-apiserver") >= 5
        # Keep reading: a child blocked on a full pipe could not finish shutting down.
        drain = threading.Thread(target=command.stdout.read, daemon=True)
        drain.start()
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(command.pid, signal.SIGINT)
        assert command.wait(timeout=120) == 0
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {pid: name for pid, name in children.items() if _alive(pid)}
        assert not left, f"left behind: {left}"
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
            command.wait()
