"""Raw-JSON requests to an API server, for informers, the reconciler and the simulator.

The generated models of the `kubernetes` client cost a Python object per field,
drop fields they do not know and overwrite the `Accept` header, so kcp handles
objects as the dicts the API server sends. `ApiClient.param_serialize` builds the
URL and authentication (tokens, exec plugins and client certificates keep
working); the request goes through the ApiClient's own urllib3 pool with
urllib3's hidden retries off (they would repeat a request that hit its read
timeout three more times) and a timeout on every request, so a silent API server
never hangs a worker.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3

from kcp.rest.discovery import discover
from kcp.rest.errors import ApiError, Unreachable, error_from_body
from kcp.rest.resource import Resource
from kcp.rest.throttle import token_buckets

__all__ = [
    "ACCEPT_JSON",
    "ACCEPT_METADATA",
    "ACCEPT_METADATA_LIST",
    "DEFAULT_TIMEOUT",
    "Kube",
    "ListPage",
    "RequestHook",
    "Timeout",
    "selector_query",
    "timeouts",
]

ACCEPT_JSON = "application/json"
ACCEPT_METADATA_LIST = (
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
)
"""Lists of metadata only (the server drops spec, status, data...)."""
ACCEPT_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
"""Watch events and single reads carrying metadata only."""
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0

Timeout = tuple[float, float]
"""(connect, read) seconds."""

RequestHook = Callable[[str, str, Mapping[str, str]], None]
"""Called with (method, url, headers) before each request; headers exclude credentials."""

Query = Sequence[tuple[str, str]]


def timeouts(read_timeout: float) -> Timeout:
    """(connect, read) timeouts for urllib3; the read timeout bounds every silent wait."""
    return (min(DEFAULT_CONNECT_TIMEOUT, read_timeout), read_timeout)


DEFAULT_TIMEOUT = timeouts(DEFAULT_READ_TIMEOUT)


def selector_query(label_selector: str | None, field_selector: str | None) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    return query


def _path(resource: Resource, namespace: str | None, name: str | None = None) -> str:
    # A cluster-scoped kind ignores the namespace its caller is scoped to.
    return resource.path(namespace if resource.namespaced else None, name)


@dataclass
class ListPage:
    """One page of a paginated list."""

    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


class Kube:
    """Get, list, create, patch, apply and delete objects of any kind as dicts.

    Errors are `ApiError` (status, reason, message); a request that got no answer
    raises `Unreachable` (an `OSError`). Writes carry `field_manager`. Requests
    decoded as JSON wait for the ApiClient's `--kube-api-qps`/`--kube-api-burst`
    token bucket of their resource, as its typed calls do; list pages and watches do
    not. Thread-safe: one instance serves every worker.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        field_manager: str = "kcp",
        timeout: Timeout | None = DEFAULT_TIMEOUT,
        known: Iterable[Resource] = (),
    ) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self.timeout = timeout
        """(connect, read) seconds per request; None leaves it to the ApiClient's pool."""
        self._kinds = {(r.group, r.kind): r for r in known}
        """Kinds `resource_for` answers without discovery; found ones are added."""
        self._kinds_lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        timeout: Timeout | None,
        query: Query = (),
        body: Any = None,
        content_type: str = ACCEPT_JSON,
        accept: str = ACCEPT_JSON,
        hook: RequestHook | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request and return the unread response (the caller releases it).

        Raises `ApiError` for a non-2xx answer; urllib3's errors (timeouts, refused
        or reset connections) pass through.
        """
        header_params = {"Accept": accept}
        if body is not None:
            header_params["Content-Type"] = content_type
        _, url, headers, body, _ = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params=header_params,
            body=body,
            auth_settings=["BearerToken"],
        )
        if hook is not None:
            hook(method, url, {k: v for k, v in headers.items() if k.lower() != "authorization"})
        options: dict[str, Any] = {}
        if timeout is not None:
            options["timeout"] = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        response = self.api_client.rest_client.pool_manager.request(
            method,
            url,
            body=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            preload_content=False,
            retries=False,
            **options,
        )
        if not 200 <= response.status < 300:
            try:
                raw = response.read()
            finally:
                response.release_conn()
            raise error_from_body(response.status, response.reason or "", raw)
        return response  # type: ignore[no-any-return]

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query = (),
        body: Any = None,
        content_type: str = ACCEPT_JSON,
    ) -> dict[str, Any]:
        """Send one request (after a token of the rate limit); the decoded body, {} if empty."""
        buckets = token_buckets(self.api_client)
        if buckets is not None:
            buckets.acquire(path)
        try:
            response = self.send(
                method,
                path,
                query=query,
                body=body,
                content_type=content_type,
                timeout=self.timeout,
            )
            try:
                raw = response.read()
            finally:
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as failure:
            raise Unreachable(f"{method} {path}: {failure}") from None
        return _decode(raw, path)

    # -- verbs --------------------------------------------------------------------------

    def read(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """The whole object (e.g. a Secret's `data`, which metadata-only caches never hold).

        Raises `ApiError` (`.not_found` when absent).
        """
        obj = self.request("GET", _path(resource, namespace, name))
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        return obj

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.read(resource, namespace, name)
        except ApiError as error:
            if error.not_found:
                return None
            raise

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Every object in one request (all namespaces when `namespace` is None)."""
        query = selector_query(label_selector, field_selector)
        body = self.request("GET", _path(resource, namespace), query=query)
        items = [item for item in body.get("items") or () if isinstance(item, dict)]
        for item in items:  # list items come without apiVersion and kind
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        return items

    def create(
        self, resource: Resource, namespace: str | None, obj: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self.request(
            "POST",
            _path(resource, namespace),
            query=[("fieldManager", self.field_manager)],
            body=dict(obj),
        )

    def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch; a `metadata.resourceVersion` in it fails it on a concurrent write."""
        path = _path(resource, namespace, name) + (f"/{subresource}" if subresource else "")
        return self.request(
            "PATCH",
            path,
            query=[("fieldManager", self.field_manager)],
            body=dict(patch),
            content_type=MERGE_PATCH,
        )

    def apply(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        obj: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply `obj` as this client's field manager, taking over conflicting fields.

        The fields applied before and left out now are removed unless another manager
        owns them too. A `metadata.uid` in `obj` makes it fail (404 or 409) instead of
        creating the object when that incarnation is gone.
        """
        document = {"apiVersion": resource.api_version, "kind": resource.kind, **obj}
        metadata = dict(document.get("metadata") or {})
        metadata["name"] = name
        if namespace and resource.namespaced:
            metadata["namespace"] = namespace
        document["metadata"] = metadata
        path = _path(resource, namespace, name) + (f"/{subresource}" if subresource else "")
        return self.request(
            "PATCH",
            path,
            query=[("fieldManager", self.field_manager), ("force", "true")],
            body=document,
            content_type=APPLY_PATCH,
        )

    def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        propagation: str = "Background",
        grace_period_seconds: int | None = None,
    ) -> bool:
        """Delete (only that incarnation when `uid` is given); False when it was already gone.

        `grace_period_seconds=0` deletes a Pod at once, as the Pod garbage collector
        does, instead of waiting for its kubelet to confirm.
        """
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": propagation,
        }
        if uid:
            options["preconditions"] = {"uid": uid}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        try:
            self.request("DELETE", _path(resource, namespace, name), body=options)
        except ApiError as error:
            if error.not_found:
                return False
            raise
        return True

    # -- lists and watches for informers --------------------------------------------------

    def list_pages(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        metadata_only: bool = False,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        hook: RequestHook | None = None,
    ) -> Generator[ListPage, None, None]:
        """Yield the pages of a consistent list (`limit`/`continue`), one request per page.

        All pages come from one snapshot; its resourceVersion is the one to watch
        from. A 410 in the middle (the continue token expired) raises `ApiError`:
        the caller starts over. urllib3's errors pass through, as from `send`.
        """
        path = _path(resource, namespace)
        accept = ACCEPT_METADATA_LIST if metadata_only else ACCEPT_JSON
        token = ""
        while True:
            query = selector_query(label_selector, field_selector)
            query.append(("limit", str(page_size)))
            if token:
                query.append(("continue", token))
            response = self.send(
                "GET", path, query=query, accept=accept, timeout=timeouts(read_timeout), hook=hook
            )
            try:
                body = _decode(response.read(), path)
            finally:
                response.release_conn()
            metadata = body.get("metadata") or {}
            token = str(metadata.get("continue") or "")
            remaining = metadata.get("remainingItemCount")
            yield ListPage(
                items=[item for item in body.get("items") or () if isinstance(item, dict)],
                resource_version=str(metadata.get("resourceVersion") or ""),
                continue_token=token,
                remaining=remaining if isinstance(remaining, int) else None,
            )
            if not token:
                return

    def watch(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        query: Query,
        metadata_only: bool = False,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        hook: RequestHook | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Open a watch (`query` holds `watch=true`); the unread stream of events."""
        return self.send(
            "GET",
            _path(resource, namespace),
            query=query,
            accept=ACCEPT_METADATA if metadata_only else ACCEPT_JSON,
            timeout=timeouts(read_timeout),
            hook=hook,
        )

    # -- kinds found by discovery -------------------------------------------------------

    def resource_for(self, api_group: str, kind: str) -> Resource:
        """The served version and plural of `kind` in `api_group` (cached; discovery once).

        Raises `LookupError` with a message naming the group and kind when the
        API server serves no such kind.
        """
        with self._kinds_lock:
            cached = self._kinds.get((api_group, kind))
        if cached is not None:
            return cached
        found = discover(self, api_group, kind)
        with self._kinds_lock:
            self._kinds[(api_group, kind)] = found
        return found


def _decode(raw: bytes, path: str) -> dict[str, Any]:
    """A JSON object body; {} when empty or not an object."""
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError:
        raise ApiError(500, "InvalidResponse", f"the answer from {path} is not JSON") from None
    return decoded if isinstance(decoded, dict) else {}
