"""Answers of workload reads, shared by the reconciles of one cluster for a few seconds.

A control plane is reconciled again and again while its Machines change: core, the
bootstrap provider and the infrastructure provider each write status, and each write
wakes it. Cluster API's KCP reads Nodes and control-plane Pods from a watch cache, so
those reconciles cost its workload API server nothing; kcp lists them. Reconciles less
than a couple of seconds apart share one list instead: no fresher than a watch cache
under load, and the next reconcile after that reads again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["RecentReads"]

T = TypeVar("T")


class RecentReads:
    """The last answer of each named read, with when it was asked."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._answers: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, what: str, max_age: float, read: Callable[[], T]) -> tuple[T, bool]:
        """`read()`'s answer from less than `max_age` seconds ago, else a new one; and whether
        it was read now. A read that raises leaves the last answer as it was."""
        asked = self._clock()
        with self._lock:
            found = self._answers.get(what)
        if found is not None and asked - found[0] < max_age:
            answer: T = found[1]
            return answer, False
        fresh = read()
        with self._lock:
            # Aged from when it was asked: what it says is at least that recent.
            self._answers[what] = (asked, fresh)
        return fresh, True

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()
