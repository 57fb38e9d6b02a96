"""A simulated node's long-running process: started through the launcher, stoppable, freezable.

Wraps `kcp.testing.processes.ManagedProcess` (always stopped at exit or on a
signal) with what the simulator's kubelet and fault hooks need: a restart
count, suspend/resume, and a start that fails fast when the binary exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from kcp.sim.launcher import Launcher
from kcp.testing.processes import ManagedProcess

__all__ = ["SimProcess"]


class SimProcess:
    """One process of one machine (etcd or kube-apiserver)."""

    def __init__(
        self, name: str, launcher: Launcher, log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.env = dict(env) if env else None
        """Set in its environment on top of the simulator's (None: nothing added)."""
        self.restarts = 0
        """Times it was started again after the first start (by the kubelet or a restore)."""
        self._launcher = launcher
        self._process: ManagedProcess | None = None
        self._frozen = False

    def __repr__(self) -> str:
        return f"SimProcess({self.name!r}, pid={self.pid}, running={self.running})"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.running else None

    @property
    def running(self) -> bool:
        """Whether the process exists (a frozen process is still running)."""
        return self._process is not None and self._process.running

    @property
    def started(self) -> bool:
        """Whether it was ever started."""
        return self._process is not None

    @property
    def frozen(self) -> bool:
        return self._frozen and self.running

    @property
    def exit_code(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    def start(self, argv: Sequence[str]) -> None:
        """Start (or start again) with `argv`; returns once the child is forked."""
        if self.running:
            return
        if self._process is not None:
            self.restarts += 1
        process = ManagedProcess(self.name, list(argv), log_path=self.log_path, env=self.env)
        self._launcher.call(process.start)
        self._process = process
        self._frozen = False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; a frozen process is resumed first."""
        if self._process is None:
            return
        self.thaw()
        self._process.stop(timeout)

    def terminate(self) -> None:
        """SIGTERM without waiting: several processes of a machine going down at once, as a
        powered-off VM's do, instead of one after the other (`stop` then reaps each)."""
        self.thaw()
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self._process is None:
            return
        self._process.kill()
        self._frozen = False

    def freeze(self) -> None:
        """Suspend the process group (SIGSTOP): it holds its sockets and answers nothing."""
        if self._signal(signal.SIGSTOP):
            self._frozen = True

    def thaw(self) -> None:
        """Resume a frozen process (SIGCONT)."""
        if self._frozen:
            self._signal(signal.SIGCONT)
            self._frozen = False

    def log_tail(self, lines: int = 20) -> str:
        return self._process.log_tail(lines) if self._process is not None else ""

    def _signal(self, sig: signal.Signals) -> bool:
        pid = self.pid
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
            return True
        return False
