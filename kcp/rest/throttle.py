"""Client-side rate limiting of API requests (`--kube-api-qps`, `--kube-api-burst`).

The official Python client has none; client-go's token bucket is the model: up
to `burst` requests at once, then `qps` per second, callers waiting their turn.
As in controller-runtime, whose client builds a REST client (and with it a
bucket) per kind, each API resource gets a bucket of its own: writes of
KubeadmControlPlane status do not queue behind Secret reads. The buckets belong
to the ApiClient and are shared by its typed calls (through
`rest_client.request`) and by `kcp.rest.Kube`'s requests (which ask
`token_buckets` for them).
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast
from urllib.parse import urlsplit

__all__ = ["ResourceBuckets", "TokenBucket", "resource_key", "throttle_api_client", "token_buckets"]


def _check_limits(qps: float, burst: int) -> None:
    if qps <= 0 or burst < 1:
        raise ValueError("need qps > 0 and burst >= 1")


class TokenBucket:
    """A blocking token bucket shared by every thread of the process."""

    def __init__(self, qps: float, burst: int) -> None:
        _check_limits(qps, burst)
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token now; returns the seconds to wait before using it."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def acquire(self) -> float:
        """Wait for a token; returns how long this call waited."""
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)
        return delay


def resource_key(path: str) -> str:
    """`group/version/resource` of a request path (subresources share their resource's
    bucket, as in client-go); "" for paths that name no resource (`/version`, discovery)."""
    parts = [p for p in urlsplit(path).path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        version, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        return f"{version}/{rest[2]}"
    return f"{version}/{rest[0]}"


class ResourceBuckets:
    """A `TokenBucket` per API resource, made on first use with the same limits."""

    def __init__(self, qps: float, burst: int) -> None:
        _check_limits(qps, burst)
        self.qps = qps
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, path: str) -> TokenBucket:
        key = resource_key(path)
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = self._buckets[key] = TokenBucket(self.qps, self.burst)
            return found

    def acquire(self, path: str) -> float:
        """Wait for a token of the bucket of `path`'s resource; returns the wait."""
        return self.bucket(path).acquire()


def throttle_api_client(api_client: Any, qps: float, burst: int) -> Any:
    """Make every request of `api_client` (a `kubernetes.client.ApiClient`) wait for a token
    of its resource's bucket; qps <= 0 leaves it unlimited.

    Idempotent: a client already throttled keeps its first settings.
    """
    rest = cast(Any, api_client.rest_client)
    if qps <= 0 or getattr(rest, "_kcp_token_buckets", None) is not None:
        return api_client
    buckets = ResourceBuckets(qps, max(1, burst))
    unthrottled = rest.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        buckets.acquire(url)
        return unthrottled(method, url, *args, **kwargs)

    rest.request = request
    rest._kcp_token_buckets = buckets
    return api_client


def token_buckets(api_client: Any) -> ResourceBuckets | None:
    """The buckets `throttle_api_client` gave `api_client`, if any."""
    rest = getattr(api_client, "rest_client", None)
    buckets = getattr(rest, "_kcp_token_buckets", None)
    return buckets if isinstance(buckets, ResourceBuckets) else None
