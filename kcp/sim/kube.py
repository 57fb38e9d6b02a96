"""Plain-JSON calls to an API server (management or workload) for the simulator.

The objects the simulator reads and writes are dicts, as informers hold them;
going through the generated models would cost a conversion each way and lose
unknown fields. Requests reuse the `kubernetes.client.ApiClient`'s connection
pool and authentication (via `param_serialize`), with a timeout on every call.
Status written by the simulator goes through server-side apply with its own
field manager, so conditions it does not own (kcp's on a Machine) stay intact.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import urllib3

from kcp.api.groups import Resource
from kcp.runtime.listing import ApiError

__all__ = ["FIELD_MANAGER", "ApiError", "Kube", "Unreachable"]

FIELD_MANAGER = "kcp-sim"
_JSON = "application/json"
_MERGE_PATCH = "application/merge-patch+json"
_APPLY_PATCH = "application/apply-patch+yaml"


class Unreachable(OSError):
    """The API server could not be reached or the connection broke (no HTTP answer)."""


class Kube:
    """JSON requests through `api_client` with a per-call `timeout` in seconds."""

    def __init__(self, api_client: Any, *, timeout: float = 10.0) -> None:
        self.api_client = api_client
        self.timeout = timeout

    @classmethod
    def with_client_certificate(
        cls, url: str, *, ca_file: Path, cert_file: Path, key_file: Path, timeout: float
    ) -> Kube:
        """A client of `url` that trusts `ca_file` and presents the certificate in `cert_file`."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = url
        configuration.ssl_ca_cert = str(ca_file)
        configuration.cert_file = str(cert_file)
        configuration.key_file = str(key_file)
        return cls(client.ApiClient(configuration), timeout=timeout)

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self._request("GET", resource.path(namespace, name))
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
        query: builtins.list[tuple[str, str]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        body = self._request("GET", resource.path(namespace), query=query)
        items = body.get("items") or []
        for item in items:
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        return list(items)

    def create(
        self, resource: Resource, namespace: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Create the object; None if one of that name exists already."""
        try:
            return self._request("POST", resource.path(namespace), body=body)
        except ApiError as error:
            if error.status == 409:
                return None
            raise

    def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON merge patch; put `metadata.resourceVersion` in `patch` to make it conditional."""
        path = resource.path(namespace, name) + (f"/{subresource}" if subresource else "")
        return self._request("PATCH", path, body=patch, content_type=_MERGE_PATCH)

    def apply(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply `body` (fields this simulator owns) as field manager `kcp-sim`."""
        document = {"apiVersion": resource.api_version, "kind": resource.kind, **body}
        metadata = dict(document.get("metadata") or {})
        metadata["name"] = name
        if namespace is not None:
            metadata["namespace"] = namespace
        document["metadata"] = metadata
        path = resource.path(namespace, name) + (f"/{subresource}" if subresource else "")
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        return self._request("PATCH", path, body=document, query=query, content_type=_APPLY_PATCH)

    def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
    ) -> bool:
        """Ask for deletion; False when the object is already gone.

        `grace_period_seconds=0` deletes a pod at once, as the pod garbage
        collector does, instead of waiting for its kubelet to confirm.
        """
        body = (
            None
            if grace_period_seconds is None
            else {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": grace_period_seconds,
            }
        )
        try:
            self._request("DELETE", resource.path(namespace, name), body=body)
        except ApiError as error:
            if error.not_found:
                return False
            raise
        return True

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: builtins.list[tuple[str, str]] | None = None,
        content_type: str = _JSON,
    ) -> dict[str, Any]:
        headers_in = {"Accept": _JSON}
        if body is not None:
            headers_in["Content-Type"] = content_type
        _, url, headers, _, _ = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers_in,
            auth_settings=["BearerToken"],
        )
        payload = json.dumps(body).encode() if body is not None else None
        try:
            response = self.api_client.rest_client.pool_manager.request(
                method,
                url,
                body=payload,
                headers=headers,
                timeout=urllib3.Timeout(connect=min(5.0, self.timeout), read=self.timeout),
                preload_content=True,
                retries=False,
            )
        except urllib3.exceptions.HTTPError as failure:
            raise Unreachable(f"{method} {path}: {failure}") from None
        data = response.data or b"{}"
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = {}
        if not 200 <= response.status < 300:
            if isinstance(decoded, dict) and decoded.get("kind") == "Status":
                error = ApiError.from_status(decoded, default_code=response.status)
                error.status = response.status
                raise error
            raise ApiError(
                response.status, response.reason or "", data[:200].decode(errors="replace")
            )
        return decoded if isinstance(decoded, dict) else {}
