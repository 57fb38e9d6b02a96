"""The watch events that only echo the reconciler's own status writes.

Every status patch comes back as a MODIFIED event of the KubeadmControlPlane,
which would enqueue one more reconcile of a state that was just reconciled.
After a change to a thousand control planes that doubles the work, and delays
everything queued behind it. The patch's response carries the resource version
the write created; the event with exactly that version is its echo and is
dropped. Any other writer's change has a version of its own and still enqueues,
so nothing a user or another controller does is missed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["OwnWrites"]

_MODIFIED = "MODIFIED"


def _identity(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("uid") or ""), str(metadata.get("resourceVersion") or "")


class OwnWrites:
    """Resource versions the reconciler wrote last, per object UID; thread-safe.

    The event of a write can reach the informer before the write's response
    reaches the writer, so a write is announced first (``writing``) and an event
    for an object with a write in flight waits for it (``wait_timeout`` at most)
    before it is judged.
    """

    def __init__(self, wait_timeout: float = 2.0) -> None:
        self._versions: dict[str, str] = {}
        self._in_flight: dict[str, int] = {}
        self._changed = threading.Condition()
        self._wait_timeout = wait_timeout
        self.echoes_dropped = 0

    @contextlib.contextmanager
    def writing(self, obj: Mapping[str, Any]) -> Iterator[None]:
        """Around a write of ``obj`` (whose response goes to ``record``)."""
        uid, _ = _identity(obj)
        with self._changed:
            self._in_flight[uid] = self._in_flight.get(uid, 0) + 1
        try:
            yield
        finally:
            with self._changed:
                left = self._in_flight[uid] - 1
                if left:
                    self._in_flight[uid] = left
                else:
                    del self._in_flight[uid]
                self._changed.notify_all()

    def record(self, written: Mapping[str, Any]) -> None:
        """Remember the object a write returned (its UID and new resource version)."""
        uid, version = _identity(written)
        if uid and version:
            with self._changed:
                self._versions[uid] = version

    def is_echo(self, event_type: str, obj: Mapping[str, Any]) -> bool:
        """Whether this event shows nothing but our own last write (then forget it)."""
        uid, version = _identity(obj)
        with self._changed:
            if event_type == "DELETED":
                self._versions.pop(uid, None)
                return False
            if event_type != _MODIFIED or not version:
                return False
            self._changed.wait_for(lambda: uid not in self._in_flight, self._wait_timeout)
            if self._versions.get(uid) != version:
                return False
            del self._versions[uid]
            self.echoes_dropped += 1
            return True
