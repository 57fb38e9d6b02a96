"""Kubernetes Events (`core/v1`) about a KubeadmControlPlane: what `kubectl describe` shows.

As client-go's recorder does, a repeat of the same event (same object, type,
reason and message) bumps `count` and `lastTimestamp` of the Event already
written instead of creating another, so a problem that persists across many
reconciles is one line with a count, not a flood. A repeat that comes within
`repeat_interval` of the last write of that Event is only counted, and goes out
with the next repeat after it: a control plane waiting on its preflight checks
is reconciled every few seconds, and its identical warning need not be written
each time (Cluster API's repeats every 15 s). Recording never raises: an Event
that cannot be written is logged and dropped.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kcp.api.conditions import rfc3339
from kcp.api.groups import EVENT
from kcp.rest import ApiError, Kube
from kcp.runtime.logging import get_logger

__all__ = ["COMPONENT", "NORMAL", "WARNING", "EventRecorder"]

NORMAL = "Normal"
WARNING = "Warning"
COMPONENT = "kubeadmcontrolplane-controller"
"""`source.component` of our Events: the name Cluster API's recorder uses."""

_MAX_TRACKED = 4096
_MAX_MESSAGE = 1024

_log = get_logger("kcp.controlplane.events")


class EventRecorder:
    """Writes Events about objects; thread-safe."""

    def __init__(
        self,
        kube: Kube,
        *,
        component: str = COMPONENT,
        host: str | None = None,
        repeat_window: float = 600.0,
        repeat_interval: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.component = component
        self.host = host or socket.gethostname()
        self.repeat_window = repeat_window
        """Seconds during which a repeat updates the existing Event rather than creating one."""
        self.repeat_interval = repeat_interval
        """Seconds after a write of an Event during which its repeats are counted, not written."""
        self._clock = clock
        self._seen: OrderedDict[tuple[str, ...], tuple[str, int, float]] = OrderedDict()
        """Per Event: its name, the count last written and when."""
        self._unsent: dict[tuple[str, ...], int] = {}
        """Repeats counted since the last write of an Event."""
        self._lock = threading.Lock()
        self.recorded = 0
        """Events written or bumped (for tests)."""

    def normal(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self.event(obj, NORMAL, reason, message)

    def warning(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self.event(obj, WARNING, reason, message)

    def event(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        """Record that `reason` happened to `obj`; never raises."""
        try:
            self._record(obj, event_type, reason, message[:_MAX_MESSAGE])
        except Exception as exc:
            _log.warning("Event not recorded", reason=reason, error=f"{type(exc).__name__}: {exc}")

    def _record(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        metadata = obj.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "default")
        name = str(metadata.get("name") or "")
        uid = str(metadata.get("uid") or "")
        key = (uid, namespace, name, event_type, reason, message)
        now = datetime.now(UTC)
        with self._lock:
            previous = self._seen.get(key)
            unsent = self._unsent.get(key, 0)
            if previous is not None and self._clock() - previous[2] < self.repeat_interval:
                self._unsent[key] = unsent + 1
                self.recorded += 1
                return
        if previous is not None and self._clock() - previous[2] < self.repeat_window:
            event_name, count, _ = previous
            total = count + unsent + 1
            try:
                self.kube.merge_patch(
                    EVENT,
                    namespace,
                    event_name,
                    {"count": total, "lastTimestamp": rfc3339(now)},
                )
            except ApiError as error:
                if not error.not_found:
                    raise
            else:
                self._remember(key, event_name, total)
                self.recorded += 1
                return
        event_name = f"{name}.{time.time_ns():x}"
        self.kube.create(
            EVENT,
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": event_name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion", ""),
                    "kind": obj.get("kind", ""),
                    "name": name,
                    "namespace": namespace,
                    "uid": uid,
                    "resourceVersion": str(metadata.get("resourceVersion") or ""),
                },
                "reason": reason,
                "message": message,
                "type": event_type,
                "count": 1,
                "firstTimestamp": rfc3339(now),
                "lastTimestamp": rfc3339(now),
                "source": {"component": self.component, "host": self.host},
                "reportingComponent": self.component,
                "reportingInstance": self.host,
            },
        )
        self._remember(key, event_name, 1)
        self.recorded += 1

    def _remember(self, key: tuple[str, ...], event_name: str, count: int) -> None:
        with self._lock:
            self._seen[key] = (event_name, count, self._clock())
            self._seen.move_to_end(key)
            self._unsent.pop(key, None)
            while len(self._seen) > _MAX_TRACKED:
                gone, _ = self._seen.popitem(last=False)
                self._unsent.pop(gone, None)
