"""Client-side rate limiting of API requests (`--kube-api-qps`, `--kube-api-burst`).

The official Python client has none; client-go's token bucket is the model: up
to `burst` requests at once, then `qps` per second, callers waiting their turn.
One bucket per ApiClient, shared by its typed calls (through `rest_client.request`)
and by `kcp.rest.Kube`'s requests (which ask `token_bucket` for it).
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast


class TokenBucket:
    """A blocking token bucket shared by every thread of the process."""

    def __init__(self, qps: float, burst: int) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("need qps > 0 and burst >= 1")
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


def throttle_api_client(api_client: Any, qps: float, burst: int) -> Any:
    """Make every request of `api_client` (a `kubernetes.client.ApiClient`) wait for a token;
    qps <= 0 leaves it unlimited.

    Idempotent: a client already throttled keeps its first bucket's settings.
    """
    rest = cast(Any, api_client.rest_client)
    if qps <= 0 or getattr(rest, "_kcp_token_bucket", None) is not None:
        return api_client
    bucket = TokenBucket(qps, max(1, burst))
    unthrottled = rest.request

    def request(*args: Any, **kwargs: Any) -> Any:
        bucket.acquire()
        return unthrottled(*args, **kwargs)

    rest.request = request
    rest._kcp_token_bucket = bucket
    return api_client


def token_bucket(api_client: Any) -> TokenBucket | None:
    """The bucket `throttle_api_client` gave `api_client`, if any."""
    rest = getattr(api_client, "rest_client", None)
    bucket = getattr(rest, "_kcp_token_bucket", None)
    return bucket if isinstance(bucket, TokenBucket) else None
