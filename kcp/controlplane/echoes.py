"""The watch events that only echo the reconciler's own status writes.

Every status patch comes back as a MODIFIED event of the KubeadmControlPlane,
which would enqueue one more reconcile of a state that was just reconciled.
After a change to a thousand control planes that doubles the work, and delays
everything queued behind it. The patch's response carries the resource version
the write created; the event with exactly that version is its echo and is
dropped. Any other writer's change has a version of its own and still enqueues,
so nothing a user or another controller does is missed.

Until that echo arrives, the informer cache still holds the object as it was
before the write. A reconcile that starts in that gap (woken by the Machine
events of the same reconcile's writes, say) would compute the status against
the old one, see a change that is already written, and send a patch whose
resource version fails (409), then read the object live and find nothing left
to write. `latest` hands such a reconcile the object the write returned
instead; at worst (the cache had in fact moved on) the patch fails as before.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
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

    def __init__(
        self,
        wait_timeout: float = 2.0,
        *,
        max_age: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._versions: dict[str, str] = {}
        self._written: dict[str, tuple[Mapping[str, Any], float]] = {}
        self._max_age = max_age
        self._clock = clock
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
                self._written[uid] = (written, self._clock())

    def latest(self, cached: Mapping[str, Any]) -> Mapping[str, Any]:
        """`cached`, or the object our last write of it returned while the cache has not
        shown that write yet (its echo not seen, at most `max_age` seconds after it)."""
        uid, version = _identity(cached)
        with self._changed:
            found = self._written.get(uid)
            if found is None:
                return cached
            written, at = found
            if _identity(written)[1] == version or self._clock() - at > self._max_age:
                del self._written[uid]
                return cached
            return written

    def is_echo(self, event_type: str, obj: Mapping[str, Any]) -> bool:
        """Whether this event shows nothing but our own last write (then forget it)."""
        uid, version = _identity(obj)
        with self._changed:
            if event_type == "DELETED":
                self._versions.pop(uid, None)
                self._written.pop(uid, None)
                return False
            if event_type != _MODIFIED or not version:
                return False
            self._changed.wait_for(lambda: uid not in self._in_flight, self._wait_timeout)
            if self._versions.get(uid) != version:
                return False
            del self._versions[uid]
            self._written.pop(uid, None)
            self.echoes_dropped += 1
            return True
