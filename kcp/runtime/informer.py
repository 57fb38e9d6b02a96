"""Informers: a local, indexed, always-current copy of one kind, kept by list and watch.

One daemon thread per informer fetches the initial state — by streaming list
when the server supports it (`WatchList`), else by paginated list — and then
follows a watch, resuming from the last resourceVersion it saw. A 410 Gone
means the history it needs was compacted: it lists again and reports the
difference as events. Errors back off exponentially with jitter; a stream that
stays silent past the inactivity timeout is abandoned and re-opened.

Defaults, in one place:

- `page_size` 500 objects per list page (client-go's).
- `inactivity_timeout` 90 s: with `allowWatchBookmarks` the API server sends
  a BOOKMARK about every minute even when nothing changes, so a healthy quiet
  watch is never silent for 90 s, while a dead TCP stream is given up within
  90 s. Servers that never send bookmarks make a quiet watch reconnect every
  90 s — a cheap resume from the last resourceVersion, not a re-list.
- server-side `timeoutSeconds`: random in 5-10 minutes per watch.
- backoff 0.8 s doubling to 30 s, +/-25 % jitter, reset once a watch delivers.
"""

from __future__ import annotations

import builtins
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import urllib3

from kcp.rest import (
    ACCEPT_JSON,
    ACCEPT_METADATA,
    ACCEPT_METADATA_LIST,
    ApiError,
    Kube,
    RequestHook,
    Resource,
)
from kcp.runtime.handlers import (
    EventHandler,
    ObjectCallback,
    UpdateCallback,
    callbacks,
    safe_call,
)
from kcp.runtime.logging import get_logger
from kcp.runtime.store import (
    ADDED,
    DELETED,
    MODIFIED,
    IndexFunc,
    Store,
    StoreEvent,
    make_key,
    object_key,
)
from kcp.runtime.transforms import Transform, default_transform
from kcp.runtime.watching import (
    BOOKMARK,
    DEFAULT_INACTIVITY_TIMEOUT,
    InactivityTimeout,
    StreamClosed,
    WatchEvent,
    WatchStream,
)

DEFAULT_PAGE_SIZE = 500
DEFAULT_STOP_TIMEOUT = 5.0
QUICK_END = 1.0
"""A watch the server ends this fast without any event counts as a failure (no tight loop)."""

ListMode = Literal["streaming", "paginated"]

# Statuses with which a server rejects a streaming list it does not support
# (WatchList gate off: 422 Invalid "sendInitialEvents is forbidden...").
_UNSUPPORTED_STATUSES = frozenset({400, 422})


@dataclass
class Backoff:
    """Exponential backoff with jitter: `initial` doubling to `maximum`, reset on success."""

    initial: float = 0.8
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.25
    """Each delay is scaled by a random factor in [1 - jitter, 1 + jitter], then capped."""
    failures: int = field(default=0, init=False)

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self.failures)
        self.failures += 1
        spread = 1.0 + random.uniform(-self.jitter, self.jitter)
        return float(min(self.maximum, max(0.0, base * spread)))

    def reset(self) -> None:
        self.failures = 0


class _Relist(Exception):
    """The watch cannot continue from its resourceVersion: list again."""


class _StreamingUnsupported(Exception):
    """The server does not do streaming lists (remembered: later lists paginate)."""


class _StreamingFailed(Exception):
    """A streaming list failed before its end marker; this once, list by pages instead."""


class Informer:
    """Keeps a store of the objects of `kind` current and tells handlers what changed.

    Objects handed out (by `get`, `list`, `by_index` and to handlers) are the
    cached dicts themselves: read-only for callers. In `metadata_only` mode
    they hold `apiVersion`, `kind` and `metadata` only; use `kcp.rest.Kube.read`
    for an object's contents.
    """

    def __init__(
        self,
        api_client: Any,
        kind: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metadata_only: bool = False,
        transform: Transform | None = default_transform,
        page_size: int = DEFAULT_PAGE_SIZE,
        inactivity_timeout: float = DEFAULT_INACTIVITY_TIMEOUT,
        streaming_list: bool = True,
        backoff: Backoff | None = None,
        request_hook: RequestHook | None = None,
        name: str | None = None,
    ) -> None:
        self.api_client = api_client
        self.kube = Kube(api_client)
        self.kind = kind
        self.namespace = namespace if kind.namespaced else None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.metadata_only = metadata_only
        self.transform = transform
        self.page_size = page_size
        self.inactivity_timeout = inactivity_timeout
        self.backoff = backoff or Backoff()
        self.request_hook = request_hook
        self.name = name or (f"{kind.plural}.{kind.group}" if kind.group else kind.plural)

        self.store = Store()
        self._handlers: list[EventHandler] = []
        self._handlers_lock = threading.Lock()

        self.streaming_list_supported: bool | None = None if streaming_list else False
        """None until tried; False once the server rejected it (or when turned off)."""
        self.initial_list_mode: ListMode | None = None
        """How the last initial state was fetched: "streaming" or "paginated"."""
        self.last_accept_headers: dict[str, str] = {}
        """The Accept header last sent, by request type ("list", "watch")."""
        self.lists = 0
        """Initial states fetched (streaming or paginated), the first one included."""
        self.relists = 0
        """Initial states fetched again after the first sync (after 410 Gone)."""
        self.watch_restarts = 0
        """Times the list/watch loop started over after an end, error or timeout."""
        self.inactivity_timeouts = 0
        self.errors = 0

        self._resource_version = ""
        self._need_list = True
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active: WatchStream | None = None
        self._active_lock = threading.Lock()
        self._log = get_logger(__name__, informer=self.name, namespace=self.namespace or "*")

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the informer's daemon thread (once)."""
        if self._thread is not None:
            raise RuntimeError(f"informer {self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> bool:
        """Stop watching, closing the open stream; True if the thread ended within `timeout`.

        A request still waiting for its response headers cannot be interrupted:
        the thread then ends within the inactivity timeout (it is a daemon).
        """
        self._stop.set()
        with self._active_lock:
            active = self._active
        if active is not None:
            active.close()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def has_synced(self) -> bool:
        """True once the first initial state is in the store (stays true afterwards)."""
        return self._synced.is_set()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    @property
    def last_resource_version(self) -> str:
        """The newest resourceVersion seen (list, event or bookmark); watches resume here."""
        return self._resource_version

    # -- reads ------------------------------------------------------------------------

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.store.get(make_key(namespace, name))

    def list(self, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every cached object, or those of one namespace."""
        objects = self.store.list()
        if namespace is None:
            return objects
        return [o for o in objects if (o.get("metadata") or {}).get("namespace") == namespace]

    def keys(self) -> builtins.list[str]:
        return self.store.keys()

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        self.store.add_indexer(name, fn)

    def by_index(self, name: str, value: str) -> builtins.list[dict[str, Any]]:
        return self.store.by_index(name, value)

    def add_handler(
        self,
        handler: EventHandler | None = None,
        *,
        on_add: ObjectCallback | None = None,
        on_update: UpdateCallback | None = None,
        on_delete: ObjectCallback | None = None,
    ) -> None:
        """Register `handler(event_type, obj, old)` or client-go style callbacks.

        A handler added after the sync gets an ADDED event for each cached
        object first, so it misses nothing.
        """
        if handler is None:
            handler = callbacks(on_add, on_update, on_delete)
        elif on_add or on_update or on_delete:
            raise TypeError("pass either a handler or callbacks, not both")
        with self._handlers_lock:
            self._handlers.append(handler)
            for obj in self.store.list():
                safe_call(handler, ADDED, obj, None)

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if self._need_list:
                    delivered = self._initial_state()
                else:
                    delivered = self._watch(streaming=False)
                if not delivered and time.monotonic() - started < QUICK_END:
                    self._sleep(self.backoff.next_delay())
            except StreamClosed:
                break
            except _Relist as reason:
                self._need_list = True
                self._log.info("watch expired, listing again", reason=str(reason))
                self._sleep(self.backoff.next_delay())
            except InactivityTimeout:
                if self._stop.is_set():
                    break
                self.inactivity_timeouts += 1
                self._log.warning(
                    "no data from the API server, reconnecting",
                    inactivity_timeout=self.inactivity_timeout,
                )
                self._sleep(self.backoff.next_delay())
            except Exception as error:
                if self._stop.is_set():
                    break
                self.errors += 1
                self._log.warning("list/watch failed", error=str(error) or repr(error))
                self._sleep(self.backoff.next_delay())
            if not self._stop.is_set():
                self.watch_restarts += 1
        self._log.debug("informer stopped")

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _initial_state(self) -> bool:
        """Fetch the whole state (streaming if possible), then keep watching until the end.

        Returns whether the watch after the list delivered anything.
        """
        if self.streaming_list_supported is not False:
            try:
                return self._watch(streaming=True)
            except _StreamingUnsupported as reason:
                self.streaming_list_supported = False
                self._log.info(
                    "streaming list not supported, using paginated lists", reason=str(reason)
                )
            except _StreamingFailed as failure:
                if self._stop.is_set():
                    raise StreamClosed() from failure
                if isinstance(failure.__cause__, InactivityTimeout):
                    self.inactivity_timeouts += 1
                self._log.info(
                    "streaming list failed, falling back to a paginated list", error=str(failure)
                )
        self._paginated()
        return self._watch(streaming=False) or True

    def _paginated(self) -> None:
        pending: dict[str, dict[str, Any]] = {}
        resource_version = ""
        pages = self.kube.list_pages(
            self.kind,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            page_size=self.page_size,
            metadata_only=self.metadata_only,
            read_timeout=self.inactivity_timeout,
            hook=self._hook("list", ACCEPT_METADATA_LIST if self.metadata_only else ACCEPT_JSON),
        )
        try:
            for page in pages:
                if self._stop.is_set():
                    raise StreamClosed()
                for item in page.items:
                    obj = self._prepare(item)
                    pending[object_key(obj)] = obj
                resource_version = page.resource_version
        except ApiError as error:
            if error.gone:
                raise _Relist(str(error)) from error
            raise
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as error:
            raise InactivityTimeout(str(error)) from error
        finally:
            pages.close()
        self._replace(pending, resource_version, "paginated")

    def _watch(self, *, streaming: bool) -> bool:
        """Run one watch to its end; returns whether it delivered any event.

        With `streaming`, the watch starts with the initial state, collected
        aside and swapped in at the end marker (so a re-list reports
        deletions); a failure before the marker raises `_StreamingFailed` or
        `_StreamingUnsupported`.
        """
        stream = WatchStream(
            self.kube,
            self.kind,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            resource_version="" if streaming else self._resource_version,
            streaming_list=streaming,
            metadata_only=self.metadata_only,
            inactivity_timeout=self.inactivity_timeout,
            hook=self._hook("watch", ACCEPT_METADATA if self.metadata_only else ACCEPT_JSON),
        )
        with self._active_lock:
            if self._stop.is_set():
                raise StreamClosed()
            self._active = stream
        initial: dict[str, dict[str, Any]] | None = {} if streaming else None
        delivered = False
        try:
            for event in stream:
                if self._stop.is_set():
                    raise StreamClosed()
                if not delivered:
                    self.backoff.reset()  # the server answers again: start backoff afresh
                if initial is None:
                    self._apply(event)
                    delivered = True
                elif event.ends_initial_events:
                    self._replace(initial, event.resource_version, "streaming")
                    self.streaming_list_supported = True
                    initial = None
                    delivered = True
                elif event.type == BOOKMARK:
                    raise _StreamingUnsupported("a bookmark came before the initial-events-end one")
                else:
                    self._collect(initial, event)
            if self._stop.is_set():
                raise StreamClosed()
            if initial is not None:
                raise _StreamingFailed("the watch ended before the initial-events-end bookmark")
        except (StreamClosed, _StreamingUnsupported, _StreamingFailed):
            raise
        except ApiError as error:
            if error.gone:
                raise _Relist(str(error)) from error
            if initial is not None:
                if error.status in _UNSUPPORTED_STATUSES:
                    raise _StreamingUnsupported(str(error)) from error
                raise _StreamingFailed(str(error)) from error
            raise
        except Exception as error:
            if self._stop.is_set():
                raise StreamClosed() from error
            if initial is not None:
                raise _StreamingFailed(str(error) or repr(error)) from error
            raise
        finally:
            with self._active_lock:
                self._active = None
            stream.close()
        return delivered

    def _hook(self, request_type: str, accept: str) -> RequestHook:
        def hook(method: str, url: str, headers: Any) -> None:
            self.last_accept_headers[request_type] = str(headers.get("Accept", accept))
            if self.request_hook is not None:
                self.request_hook(method, url, headers)

        return hook

    # -- applying changes -------------------------------------------------------------

    def _prepare(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Normalise a decoded object (metadata only if asked) and apply the transform."""
        if self.metadata_only:
            # Whatever the server sent (PartialObjectMetadata, or a whole object if it
            # ignored the Accept header), keep metadata only, typed as what it is of.
            obj = {
                "apiVersion": self.kind.api_version,
                "kind": self.kind.kind,
                "metadata": obj.get("metadata") or {},
            }
        else:
            # List items come without apiVersion and kind; watch events carry them.
            obj.setdefault("apiVersion", self.kind.api_version)
            obj.setdefault("kind", self.kind.kind)
        if self.transform is not None:
            obj = self.transform(obj)
        return obj

    def _collect(self, pending: dict[str, dict[str, Any]], event: WatchEvent) -> None:
        obj = self._prepare(event.object)
        if event.type == DELETED:
            pending.pop(object_key(obj), None)
        else:
            pending[object_key(obj)] = obj

    def _replace(
        self, objects: dict[str, dict[str, Any]], resource_version: str, mode: ListMode
    ) -> None:
        events = self.store.replace(objects)
        self._resource_version = resource_version
        self._need_list = False
        self.backoff.reset()
        self.initial_list_mode = mode
        self.lists += 1
        if self._synced.is_set():
            self.relists += 1
        self._dispatch(events)
        if not self._synced.is_set():
            self._log.info(
                "synced", mode=mode, objects=len(objects), resource_version=resource_version
            )
        self._synced.set()

    def _apply(self, event: WatchEvent) -> None:
        if event.resource_version:
            self._resource_version = event.resource_version
        if event.type == BOOKMARK:
            return
        obj = self._prepare(event.object)
        if event.type in (ADDED, MODIFIED):
            old = self.store.upsert(obj)
            self._dispatch([(ADDED if old is None else MODIFIED, obj, old)])
        elif event.type == DELETED:
            old = self.store.delete(object_key(obj))
            self._dispatch([(DELETED, old if old is not None else obj, None)])
        else:
            self._log.warning("unknown watch event type", type=event.type)

    def _dispatch(self, events: builtins.list[StoreEvent]) -> None:
        if not events:
            return
        with self._handlers_lock:
            handlers = list(self._handlers)
        for event_type, obj, old in events:
            for handler in handlers:
                safe_call(handler, event_type, obj, old)
