"""One long-lived thread from which every simulated process is started.

Children ask the kernel for SIGTERM when the *thread* that forked them ends
(`kcp.testing.processes`), so a process started from a short-lived or pooled
thread would die with it. Starting them all here ties their life to the
simulator's instead: the thread runs until `close()`, after the simulator has
stopped them itself.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["Launcher"]

T = TypeVar("T")

_START_TIMEOUT = 30.0


class Launcher:
    """Runs `call(fn)` on its own thread and returns the result (or raises its error)."""

    def __init__(self, name: str = "kcp-sim-launcher") -> None:
        self._jobs: queue.Queue[tuple[Callable[[], object], Future[object]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], T], timeout: float = _START_TIMEOUT) -> T:
        """Run `fn` on the launcher thread; meant for quick work such as `Popen`."""
        if threading.current_thread() is self._thread:
            return fn()
        if not self._thread.is_alive():
            raise RuntimeError("the simulator's process launcher is closed")
        future: Future[object] = Future()
        self._jobs.put((fn, future))
        return future.result(timeout)  # type: ignore[return-value]

    def close(self, timeout: float = 5.0) -> None:
        """End the thread (children it started get SIGTERM from the kernel if still alive)."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as error:
                future.set_exception(error)
