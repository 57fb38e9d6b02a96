"""Raw-JSON requests to the API server: resource kinds, paginated lists, live reads.

The generated models of the `kubernetes` client cost a Python object per
field and overwrite the `Accept` header, so informers talk JSON themselves:
`ApiClient.param_serialize` builds the URL and authentication (tokens, exec
plugins and client certificates keep working), and the request goes through
the client's own urllib3 pool with urllib3's hidden retries turned off — they
would silently repeat a request that hit the inactivity timeout three more times.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import urllib3

ACCEPT_JSON = "application/json"
ACCEPT_METADATA_LIST = (
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
)
"""Lists of metadata only (the server drops spec, status, data...)."""
ACCEPT_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
"""Watch events and single reads carrying metadata only."""

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0

RequestHook = Callable[[str, str, Mapping[str, str]], None]
"""Called with (method, url, headers) before each request; headers exclude credentials."""

Query = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class ResourceKind:
    """One resource of the API: where it lives and what its objects are called."""

    group: str
    """API group; "" for the core group (Secrets, Pods...)."""
    version: str
    plural: str
    """The resource name in URLs, e.g. "secrets", "kubeadmcontrolplanes"."""
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """The `apiVersion` of objects of this kind: "v1" or "group/version"."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def base_path(self) -> str:
        """ "/api/v1" for the core group, else "/apis/<group>/<version>"."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None = None) -> str:
        """Path of the collection, across all namespaces when `namespace` is None."""
        if self.namespaced and namespace:
            return f"{self.base_path}/namespaces/{namespace}/{self.plural}"
        return f"{self.base_path}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        if self.namespaced and not namespace:
            raise ValueError(f"{self.kind} is namespaced: a namespace is required")
        return f"{self.collection_path(namespace if self.namespaced else None)}/{name}"


class ApiError(Exception):
    """The API server answered with an error status (HTTP, or an ERROR watch event)."""

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".rstrip(": "))
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_status(cls, status_obj: Mapping[str, Any], default_code: int = 500) -> ApiError:
        """From a `Status` object (the body of an error response or ERROR event)."""
        code = status_obj.get("code")
        return cls(
            int(code) if isinstance(code, int) else default_code,
            str(status_obj.get("reason") or ""),
            str(status_obj.get("message") or ""),
        )

    @property
    def gone(self) -> bool:
        """410: the resource version asked for is compacted away; a re-list is needed."""
        return self.status == 410

    @property
    def not_found(self) -> bool:
        return self.status == 404


def timeouts(read_timeout: float) -> tuple[float, float]:
    """(connect, read) timeouts for urllib3; the read timeout bounds every silent wait."""
    return (min(DEFAULT_CONNECT_TIMEOUT, read_timeout), read_timeout)


def send(
    api_client: Any,
    method: str,
    path: str,
    *,
    query: Query = (),
    accept: str = ACCEPT_JSON,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    hook: RequestHook | None = None,
) -> urllib3.BaseHTTPResponse:
    """Send one request and return the unread response (the caller closes it).

    Raises `ApiError` for a non-2xx answer; urllib3's errors (timeouts,
    refused or reset connections) pass through.
    """
    _, url, headers, _, _ = api_client.param_serialize(
        method=method,
        resource_path=path,
        query_params=list(query),
        header_params={"Accept": accept},
        auth_settings=["BearerToken"],
    )
    if hook is not None:
        hook(method, url, {k: v for k, v in headers.items() if k.lower() != "authorization"})
    connect, read = timeouts(read_timeout)
    response = api_client.rest_client.pool_manager.request(
        method,
        url,
        headers=headers,
        timeout=urllib3.Timeout(connect=connect, read=read),
        preload_content=False,
        retries=False,
    )
    if not 200 <= response.status < 300:
        try:
            body = response.read()
        finally:
            response.release_conn()
        raise _error_from_body(response.status, response.reason or "", body)
    return response  # type: ignore[no-any-return]


def _error_from_body(status: int, reason: str, body: bytes) -> ApiError:
    try:
        status_obj = json.loads(body)
    except ValueError:
        return ApiError(status, reason, body[:200].decode("utf-8", "replace"))
    if isinstance(status_obj, dict):
        error = ApiError.from_status(status_obj, default_code=status)
        error.status = status
        return error
    return ApiError(status, reason)


def get_json(
    api_client: Any,
    path: str,
    *,
    query: Query = (),
    accept: str = ACCEPT_JSON,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    hook: RequestHook | None = None,
) -> dict[str, Any]:
    """GET `path` and decode the JSON body."""
    response = send(
        api_client, "GET", path, query=query, accept=accept, read_timeout=read_timeout, hook=hook
    )
    try:
        body = response.read()
    finally:
        response.release_conn()
    decoded = json.loads(body)
    if not isinstance(decoded, dict):
        raise ApiError(500, "InvalidResponse", f"expected a JSON object from {path}")
    return decoded


def selector_query(label_selector: str | None, field_selector: str | None) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    return query


@dataclass
class ListPage:
    """One page of a paginated list."""

    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = field(default=None)


def paginated_list(
    api_client: Any,
    kind: ResourceKind,
    *,
    namespace: str | None = None,
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
    the caller starts over.
    """
    path = kind.collection_path(namespace)
    accept = ACCEPT_METADATA_LIST if metadata_only else ACCEPT_JSON
    token = ""
    while True:
        query = selector_query(label_selector, field_selector)
        query.append(("limit", str(page_size)))
        if token:
            query.append(("continue", token))
        body = get_json(
            api_client, path, query=query, accept=accept, read_timeout=read_timeout, hook=hook
        )
        metadata = body.get("metadata") or {}
        token = str(metadata.get("continue") or "")
        remaining = metadata.get("remainingItemCount")
        yield ListPage(
            items=list(body.get("items") or ()),
            resource_version=str(metadata.get("resourceVersion") or ""),
            continue_token=token,
            remaining=remaining if isinstance(remaining, int) else None,
        )
        if not token:
            return


def read_live(
    api_client: Any,
    kind: ResourceKind,
    namespace: str | None,
    name: str,
    *,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> dict[str, Any]:
    """Read one whole object straight from the API server (e.g. a Secret's `data`).

    Metadata-only caches never hold contents; a reconciler that needs them
    reads the one object it needs. Raises `ApiError` (`.not_found` when absent).
    """
    obj = get_json(api_client, kind.object_path(namespace, name), read_timeout=read_timeout)
    obj.setdefault("apiVersion", kind.api_version)
    obj.setdefault("kind", kind.kind)
    return obj
