"""Writes the informer cache has not seen yet, so a reconcile does not act on a stale picture.

After creating or deleting a Machine, the next reconcile may run before the
Machine informer has the change; acting then would create a second Machine or
delete another one. The reconciler records what it did here and waits (a short
requeue) until the cache shows it, or until `timeout` passes (a missed event
must not wedge a control plane forever).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Expectations"]


class Expectations:
    """Per owner (KubeadmControlPlane UID): Machines expected to appear or to start deleting."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        """``timeout``: seconds an expectation holds (``ReconcilerOptions.expectation_timeout``)."""
        self.timeout = timeout
        self._clock = clock
        self._creations: dict[str, dict[str, float]] = {}
        self._deletions: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def expect_creation(self, owner: str, name: str) -> None:
        with self._lock:
            self._creations.setdefault(owner, {})[name] = self._clock()

    def expect_deletion(self, owner: str, name: str) -> None:
        with self._lock:
            self._deletions.setdefault(owner, {})[name] = self._clock()

    def forget(self, owner: str) -> None:
        with self._lock:
            self._creations.pop(owner, None)
            self._deletions.pop(owner, None)

    def pending(self, owner: str, cached: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """What the cache (`cached`: Machines by name) does not show yet; settles what it does."""
        now = self._clock()
        waiting: list[str] = []
        with self._lock:
            creations = self._creations.get(owner, {})
            for name, since in list(creations.items()):
                if name in cached or now - since > self.timeout:
                    del creations[name]
                else:
                    waiting.append(f"creation of Machine {name}")
            deletions = self._deletions.get(owner, {})
            for name, since in list(deletions.items()):
                obj = cached.get(name)
                gone = obj is None or bool((obj.get("metadata") or {}).get("deletionTimestamp"))
                if gone or now - since > self.timeout:
                    del deletions[name]
                else:
                    waiting.append(f"deletion of Machine {name}")
            if not creations:
                self._creations.pop(owner, None)
            if not deletions:
                self._deletions.pop(owner, None)
        return waiting
