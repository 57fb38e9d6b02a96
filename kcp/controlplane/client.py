"""Raw-JSON reads and writes against an API server, for the reconciler.

The generated models of the `kubernetes` client cost an object per field and
drop fields they do not know; the reconciler handles objects as the dicts the
API server sends. Requests go through the ApiClient's own `rest_client`, so the
manager's `--kube-api-qps`/`--kube-api-burst` throttle applies to them too.
Every request has a read timeout: a silent API server never hangs a worker.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import urllib3

from kcp.api.groups import Resource
from kcp.api.groups import find as find_known_resource
from kcp.runtime.listing import ApiError, ResourceKind

__all__ = ["ApiError", "Kube", "ResourceLike", "resource_kind"]

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
DEFAULT_TIMEOUT = (10.0, 30.0)
"""(connect, read) seconds for every request."""


class ResourceLike(Protocol):
    """What `Kube` needs to know of a kind (both `Resource` and `ResourceKind` fit)."""

    @property
    def group(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def plural(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def namespaced(self) -> bool: ...


def resource_kind(resource: ResourceLike) -> ResourceKind:
    """The runtime's `ResourceKind` (what informers take) of a kind."""
    return ResourceKind(
        group=resource.group,
        version=resource.version,
        plural=resource.plural,
        kind=resource.kind,
        namespaced=resource.namespaced,
    )


def _path(resource: ResourceLike, namespace: str | None, name: str | None = None) -> str:
    base = f"/apis/{resource.group}/{resource.version}" if resource.group else "/api/v1"
    if resource.namespaced and namespace:
        base = f"{base}/namespaces/{namespace}"
    path = f"{base}/{resource.plural}"
    return path if name is None else f"{path}/{name}"


class Kube:
    """Get, list, create, merge-patch and delete objects of any kind as dicts.

    Errors are `ApiError` (status, reason, message); network failures are
    urllib3's exceptions. Thread-safe: one instance serves every worker.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        field_manager: str = "kcp",
        timeout: tuple[float, float] | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self.timeout = timeout
        """(connect, read) seconds per request; None leaves it to the ApiClient's pool."""
        self._kinds: dict[tuple[str, str], Resource] = {}
        self._kinds_lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """Send one request; returns the decoded JSON body ({} when empty)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, body, _ = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.rest_client.request(
            method, url, headers=headers, body=body, _request_timeout=self.timeout
        )
        try:
            raw = response.read()
        finally:
            release = getattr(response.response, "release_conn", None)
            if release is not None:
                release()
        if not 200 <= response.status < 300:
            raise _error(response.status, response.reason or "", raw)
        if not raw:
            return {}
        decoded = json.loads(raw)
        return decoded if isinstance(decoded, dict) else {}

    # -- verbs --------------------------------------------------------------------------

    def get(
        self, resource: ResourceLike, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            obj = self.request("GET", _path(resource, namespace, name))
        except ApiError as error:
            if error.not_found:
                return None
            raise
        obj.setdefault("apiVersion", _api_version(resource))
        obj.setdefault("kind", resource.kind)
        return obj

    def list(
        self,
        resource: ResourceLike,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        query: list[tuple[str, str]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        body = self.request("GET", _path(resource, namespace), query=query)
        items = body.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def create(
        self, resource: ResourceLike, namespace: str | None, obj: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self.request(
            "POST",
            _path(resource, namespace),
            query=[("fieldManager", self.field_manager)],
            body=dict(obj),
        )

    def merge_patch(
        self,
        resource: ResourceLike,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch; a `metadata.resourceVersion` in it fails it on a concurrent write."""
        path = _path(resource, namespace, name)
        if subresource:
            path = f"{path}/{subresource}"
        return self.request(
            "PATCH",
            path,
            query=[("fieldManager", self.field_manager)],
            body=dict(patch),
            content_type=MERGE_PATCH,
        )

    def apply(
        self,
        resource: ResourceLike,
        namespace: str | None,
        name: str,
        obj: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Server-side apply `obj` as this client's field manager, taking over conflicting fields.

        The fields kcp applied before and leaves out now are removed unless another
        manager owns them too. A `metadata.uid` in `obj` makes it fail (404 or 409)
        instead of creating the object when that incarnation is gone.
        """
        return self.request(
            "PATCH",
            _path(resource, namespace, name),
            query=[("fieldManager", self.field_manager), ("force", "true")],
            body=dict(obj),
            content_type=APPLY_PATCH,
        )

    def delete(
        self,
        resource: ResourceLike,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        """Delete (only that incarnation when `uid` is given); False when it was already gone."""
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": propagation,
        }
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", _path(resource, namespace, name), body=options)
        except ApiError as error:
            if error.not_found:
                return False
            raise
        return True

    # -- kinds found by discovery -------------------------------------------------------

    def resource_for(self, api_group: str, kind: str) -> Resource:
        """The served version and plural of `kind` in `api_group` (cached; discovery once).

        Raises `LookupError` with a message naming the group and kind when the
        API server serves no such kind.
        """
        known = find_known_resource(api_group, kind)
        if known is not None:
            return known
        cache_key = (api_group, kind)
        with self._kinds_lock:
            cached = self._kinds.get(cache_key)
        if cached is not None:
            return cached
        found = self._discover(api_group, kind)
        with self._kinds_lock:
            self._kinds[cache_key] = found
        return found

    def _discover(self, api_group: str, kind: str) -> Resource:
        try:
            group = self.request("GET", f"/apis/{api_group}")
        except ApiError as error:
            if error.not_found:
                raise LookupError(
                    f"the API server serves no API group {api_group!r} (is the provider's CRD "
                    "installed?)"
                ) from None
            raise
        preferred = str((group.get("preferredVersion") or {}).get("version") or "")
        versions = [str(v.get("version")) for v in group.get("versions") or [] if v.get("version")]
        ordered = [preferred, *[v for v in versions if v != preferred]] if preferred else versions
        for version in ordered:
            listing = self.request("GET", f"/apis/{api_group}/{version}")
            for entry in listing.get("resources") or []:
                if entry.get("kind") == kind and "/" not in str(entry.get("name", "")):
                    return Resource(
                        api_group,
                        version,
                        kind,
                        str(entry["name"]),
                        namespaced=bool(entry.get("namespaced", True)),
                    )
        raise LookupError(f"the API server serves no kind {kind} in API group {api_group}")


def _api_version(resource: ResourceLike) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else resource.version


def _error(status: int, reason: str, body: bytes) -> ApiError:
    try:
        decoded = json.loads(body) if body else {}
    except ValueError:
        return ApiError(status, reason, body[:200].decode("utf-8", "replace"))
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        return ApiError(
            status, str(decoded.get("reason") or reason), str(decoded.get("message") or "")
        )
    return ApiError(status, reason)


def is_conflict(error: BaseException) -> bool:
    """A write lost a race (409): re-read and retry."""
    return isinstance(error, ApiError) and error.status == 409


NETWORK_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)
"""What a request raises when the API server cannot be reached or times out."""
