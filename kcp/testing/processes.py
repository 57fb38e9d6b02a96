"""Child processes that are always stopped: on `stop()`, at interpreter exit, on SIGTERM.

Each child runs in its own process group so that stopping it reaches anything it
forked, and so that a Ctrl-C aimed at the terminal's foreground group is handled
by us (orderly shutdown) rather than killing children mid-write.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


class ProcessError(RuntimeError):
    """A child process failed to start or exited when it should be running."""


class ManagedProcess:
    """One long-running child process with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        env = {**os.environ, **self.env} if self.env is not None else None
        self._popen = subprocess.Popen(
            [*_DIE_WITH_PARENT, *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
        )
        with _live_lock:
            _live.add(self)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after `timeout`."""
        self._signal_group(signal.SIGTERM)
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._popen.wait(5)
        self._forget()

    def kill(self) -> None:
        """SIGKILL at once: a crash, as fault tests need it."""
        self._signal_group(signal.SIGKILL)
        if self._popen is not None:
            self._popen.wait(5)
        self._forget()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._popen is None or self._popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None


# The child gets SIGTERM if we die without cleaning up (e.g. SIGKILL). util-linux's
# setpriv sets that in the child before exec; doing it ourselves would need a
# `preexec_fn`, which runs Python (and gRPC's fork handlers) between fork and exec
# in a threaded process, and crashed children when gRPC was active. Linux ties
# the signal to the thread that forked, so start children from long-lived threads.
_SETPRIV = shutil.which("setpriv")
_DIE_WITH_PARENT: tuple[str, ...] = (_SETPRIV, "--pdeathsig", "TERM", "--") if _SETPRIV else ()


def stop_all() -> None:
    """Stop every child still running (newest first, so servers go before their storage)."""
    with _live_lock:
        children = sorted(_live, key=lambda p: p.pid or 0, reverse=True)
    for child in children:
        with contextlib.suppress(Exception):
            child.stop(timeout=5)


atexit.register(stop_all)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so `finally` blocks and atexit run.

    SIGINT already raises KeyboardInterrupt. Call from the main thread of a
    foreground program (`kcp envtest`, `kcp dev`), never from a library.
    """

    def _exit(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit)


_PORTS_FROM = 15000
"""Lowest port `free_port` hands out (above the well-known ports the simulator's machines
use on addresses of their own: 2379, 2380, 6443, 10250)."""
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now (the caller binds it soon after), taken below the kernel's
    ephemeral range when there is room: a port from that range can be taken in between by
    the local end of any outgoing connection (seen as EADDRINUSE with a benchmark's
    thousands of connections beside a test), one below it only by another listener. A port
    is not handed out twice by one process."""
    ephemeral_from = _ephemeral_range_start()
    if ephemeral_from - _PORTS_FROM >= 1000:
        for _ in range(200):
            port = random.randrange(_PORTS_FROM, ephemeral_from)
            with _handed_out_lock:
                if port in _handed_out:
                    continue
                if _bindable(host, port):
                    _handed_out.add(port)
                    return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_range_start() -> int:
    """The first port of the kernel's range for outgoing connections (Linux; else 32768)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    process: ManagedProcess | None = None,
) -> None:
    """Poll `condition` until true; fail with `what` (and the child's log) on timeout or exit."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return
        if process is not None and not process.running:
            raise ProcessError(
                f"{process.name} exited with {process.returncode} while waiting for {what}:\n"
                f"{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            tail = f":\n{process.log_tail()}" if process is not None else ""
            raise ProcessError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        time.sleep(interval)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
