"""One watch request: its query, its stream of decoded events, and how to abort it.

Two deadlines keep a watch honest. `timeoutSeconds` (random in 5-10 minutes,
as client-go does, so that many watches do not reconnect in step) asks the
server to end the watch cleanly; the client-side read timeout (the informer's
inactivity timeout) abandons a stream on which nothing at all arrives — a dead
TCP connection otherwise hangs a reader forever. `close()` may be called from
another thread and makes the reading thread return at once.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import urllib3

from kcp.rest import ApiError, Kube, RequestHook, Resource, selector_query

INITIAL_EVENTS_END_ANNOTATION = "k8s.io/initial-events-end"
"""Set to "true" on the BOOKMARK that ends the initial events of a streaming list."""

BOOKMARK = "BOOKMARK"
ERROR = "ERROR"

DEFAULT_INACTIVITY_TIMEOUT = 90.0
"""Seconds a watch may stay silent before it is abandoned (see ``kcp.runtime.informer``)."""
MIN_WATCH_TIMEOUT = 300
MAX_WATCH_TIMEOUT = 600


def server_watch_timeout() -> int:
    """A `timeoutSeconds` for one watch: random in [5, 10] minutes, like client-go."""
    return random.randint(MIN_WATCH_TIMEOUT, MAX_WATCH_TIMEOUT)


class InactivityTimeout(Exception):
    """Nothing arrived from the server within the inactivity timeout."""


class StreamClosed(Exception):
    """The stream was aborted by `close()` (the informer is stopping)."""


@dataclass(frozen=True)
class WatchEvent:
    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion") or "")

    @property
    def ends_initial_events(self) -> bool:
        """True for the BOOKMARK that marks the end of a streaming list's initial state."""
        if self.type != BOOKMARK:
            return False
        annotations = (self.object.get("metadata") or {}).get("annotations") or {}
        return annotations.get(INITIAL_EVENTS_END_ANNOTATION) == "true"


def watch_query(
    *,
    resource_version: str,
    label_selector: str | None,
    field_selector: str | None,
    streaming_list: bool,
    timeout_seconds: int,
) -> list[tuple[str, str]]:
    """The query of a watch; `streaming_list` asks for the initial state first.

    A streaming list is a watch with `sendInitialEvents=true`,
    `resourceVersionMatch=NotOlderThan` and no resourceVersion (the newest
    state): ADDED events for every object, then the BOOKMARK annotated
    `k8s.io/initial-events-end: "true"`, then ordinary watch events.
    """
    query = [("watch", "true"), ("allowWatchBookmarks", "true")]
    query.extend(selector_query(label_selector, field_selector))
    if streaming_list:
        query.append(("sendInitialEvents", "true"))
        query.append(("resourceVersionMatch", "NotOlderThan"))
        if resource_version:
            query.append(("resourceVersion", resource_version))
    else:
        query.append(("resourceVersion", resource_version))
    query.append(("timeoutSeconds", str(timeout_seconds)))
    return query


class WatchStream:
    """A watch in progress: iterate it for events; `close()` from any thread aborts it."""

    def __init__(
        self,
        kube: Kube,
        kind: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str = "",
        streaming_list: bool = False,
        metadata_only: bool = False,
        inactivity_timeout: float = DEFAULT_INACTIVITY_TIMEOUT,
        timeout_seconds: int | None = None,
        hook: RequestHook | None = None,
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.query = watch_query(
            resource_version=resource_version,
            label_selector=label_selector,
            field_selector=field_selector,
            streaming_list=streaming_list,
            timeout_seconds=timeout_seconds or server_watch_timeout(),
        )
        self.metadata_only = metadata_only
        self.inactivity_timeout = inactivity_timeout
        self.hook = hook
        self._lock = threading.Lock()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._closed = False

    def open(self) -> None:
        """Send the request: `ApiError` on an error status, `InactivityTimeout` if no answer."""
        try:
            response = self.kube.watch(
                self.kind,
                self.namespace,
                query=self.query,
                metadata_only=self.metadata_only,
                read_timeout=self.inactivity_timeout,
                hook=self.hook,
            )
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as error:
            raise InactivityTimeout(str(error)) from error
        with self._lock:
            if self._closed:
                _abort(response)
                raise StreamClosed()
            self._response = response

    def __iter__(self) -> Iterator[WatchEvent]:
        """Events until the server ends the watch; ERROR events raise `ApiError`."""
        if self._response is None:
            self.open()
        response = self._response
        assert response is not None
        buffer = bytearray()
        try:
            for chunk in response.stream(None, decode_content=True):
                buffer.extend(chunk)
                while (newline := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:newline])
                    del buffer[: newline + 1]
                    if line.strip():
                        yield self._decode(line)
            if buffer.strip():
                yield self._decode(bytes(buffer))
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as error:
            if self._closed:
                raise StreamClosed() from error
            raise InactivityTimeout(str(error)) from error
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            if self._closed:
                raise StreamClosed() from error
            raise
        finally:
            self.close()

    def _decode(self, line: bytes) -> WatchEvent:
        try:
            event = json.loads(line)
        except ValueError as error:
            if self._closed:
                raise StreamClosed() from error
            raise
        obj = event.get("object") if isinstance(event, dict) else None
        if not isinstance(obj, dict):
            raise ApiError(500, "InvalidWatchEvent", "watch event without an object")
        event_type = str(event.get("type", ""))
        if event_type == ERROR:
            raise ApiError.from_status(obj)
        return WatchEvent(event_type, obj)

    def close(self) -> None:
        """Abort the stream; a thread blocked reading it returns promptly. Idempotent."""
        with self._lock:
            self._closed = True
            response, self._response = self._response, None
        if response is not None:
            _abort(response)

    @property
    def closed(self) -> bool:
        return self._closed


def _abort(response: urllib3.BaseHTTPResponse) -> None:
    # shutdown() wakes a thread blocked in recv (close() alone may not); the
    # connection is dropped rather than returned to the pool half-read.
    # Best effort: urllib3 refuses (ValueError...) when the connection is already gone.
    shutdown = getattr(response, "shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()
    with contextlib.suppress(Exception):
        response.close()
