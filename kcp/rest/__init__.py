"""The one raw-JSON client of the Kubernetes API that informers, the reconciler and the
simulator share: resources and their REST paths, errors, requests, paginated lists,
watches, discovery and the client-side rate limit. Imports nothing of kcp."""

from kcp.rest.client import (
    ACCEPT_JSON,
    ACCEPT_METADATA,
    ACCEPT_METADATA_LIST,
    DEFAULT_TIMEOUT,
    Kube,
    ListPage,
    RequestHook,
    Timeout,
    selector_query,
    timeouts,
)
from kcp.rest.errors import ApiError, Unreachable
from kcp.rest.resource import Resource
from kcp.rest.throttle import TokenBucket, throttle_api_client

__all__ = [
    "ACCEPT_JSON",
    "ACCEPT_METADATA",
    "ACCEPT_METADATA_LIST",
    "DEFAULT_TIMEOUT",
    "ApiError",
    "Kube",
    "ListPage",
    "RequestHook",
    "Resource",
    "Timeout",
    "TokenBucket",
    "Unreachable",
    "selector_query",
    "throttle_api_client",
    "timeouts",
]
