"""Answers of workload reads, shared by the reconciles of one cluster for a few seconds.

A control plane is reconciled again and again while its Machines change: core, the
bootstrap provider and the infrastructure provider each write status, and each write
wakes it. Cluster API's KCP reads Nodes and control-plane Pods from a watch cache, so
those reconciles cost its workload API server nothing; kcp lists them. Reconciles less
than a couple of seconds apart share one list instead: no fresher than a watch cache
under load, and the next reconcile after that reads again.

One store serves every cluster of a tracker, so answers past their age are dropped as
reads go on: a thousand clusters' last lists are not kept between their reconciles.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["ClientReads", "RecentReads"]

T = TypeVar("T")


class RecentReads:
    """The last answer of each keyed read, with when it was asked."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._answers: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._kept_for = 0.0
        """The longest `max_age` asked for: older answers serve nobody."""
        self._pruned = clock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers)

    def get(self, key: Hashable, max_age: float, read: Callable[[], T]) -> tuple[T, bool]:
        """`read()`'s answer from less than `max_age` seconds ago, else a new one; and whether
        it was read now. A read that raises leaves the last answer as it was."""
        asked = self._clock()
        with self._lock:
            self._kept_for = max(self._kept_for, max_age)
            self._prune(asked)
            found = self._answers.get(key)
        if found is not None and asked - found[0] < max_age:
            answer: T = found[1]
            return answer, False
        fresh = read()
        with self._lock:
            # Aged from when it was asked: what it says is at least that recent.
            self._answers[key] = (asked, fresh)
        return fresh, True

    def forget(self, owner: Hashable) -> None:
        """Drop every answer keyed `(owner, …)`."""
        with self._lock:
            for key in [k for k in self._answers if isinstance(k, tuple) and k[0] == owner]:
                del self._answers[key]

    def _prune(self, now: float) -> None:
        """Drop answers too old for any caller, at most once per `_kept_for` (under the lock)."""
        if now - self._pruned < self._kept_for:
            return
        self._pruned = now
        stale = [k for k, (asked, _) in self._answers.items() if now - asked >= self._kept_for]
        for key in stale:
            del self._answers[key]


class ClientReads:
    """One workload client's share of a `RecentReads` store."""

    def __init__(self, store: RecentReads | None = None) -> None:
        self._store = store if store is not None else RecentReads()
        self._owner = object()

    def get(self, what: str, max_age: float, read: Callable[[], T]) -> tuple[T, bool]:
        return self._store.get((self._owner, what), max_age, read)

    def clear(self) -> None:
        self._store.forget(self._owner)
