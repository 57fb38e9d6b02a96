"""Rate limiters that decide how long a failed work item waits before its retry.

The semantics and defaults are client-go's (`workqueue.DefaultTypedControllerRateLimiter`):
per-item exponential backoff from 5 ms to 1000 s, combined with an overall token
bucket of 10 retries per second with a burst of 100, the longer delay winning.
Each limiter is thread-safe on its own; a clock can be injected for tests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable
from typing import Protocol

Clock = Callable[[], float]

DEFAULT_BASE_DELAY = 0.005
"""First retry delay of the per-item exponential backoff, in seconds (client-go: 5 ms)."""

DEFAULT_MAX_DELAY = 1000.0
"""Longest per-item backoff, in seconds (client-go: 1000 s)."""

DEFAULT_BUCKET_QPS = 10.0
"""Overall retries per second allowed by the token bucket (client-go: 10)."""

DEFAULT_BUCKET_BURST = 100
"""Retries the token bucket lets through at once (client-go: 100)."""


class RateLimiter(Protocol):
    """Decides when a failed item may be retried; `forget` resets an item's history."""

    def when(self, item: Hashable) -> float:
        """Record one more failure of `item` and return how many seconds to wait."""
        ...

    def forget(self, item: Hashable) -> None:
        """Clear the failure history of `item` (it succeeded or was given up)."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many failures of `item` have been recorded since it was last forgotten."""
        ...


class ItemExponentialRateLimiter:
    """Per-item backoff: `base * 2**failures`, capped at `max_delay`."""

    def __init__(
        self, base_delay: float = DEFAULT_BASE_DELAY, max_delay: float = DEFAULT_MAX_DELAY
    ) -> None:
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        self._base = base_delay
        self._max = max_delay
        self._failures: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def when(self, item: Hashable) -> float:
        with self._lock:
            exponent = self._failures.get(item, 0)
            self._failures[item] = exponent + 1
        # Past 2**64 the cap has long applied; stop before the float overflows.
        return min(math.ldexp(self._base, min(exponent, 64)), self._max)

    def forget(self, item: Hashable) -> None:
        with self._lock:
            self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        with self._lock:
            return self._failures.get(item, 0)

    def with_delays(self, base_delay: float, max_delay: float) -> ItemExponentialRateLimiter:
        """Another curve over the same failures: each item keeps one history, which a failure
        or a `forget` through either limiter changes for both (a reconciler backs off the
        errors it reports itself more slowly than its queue retries exceptions)."""
        other = ItemExponentialRateLimiter(base_delay, max_delay)
        other._failures, other._lock = self._failures, self._lock
        return other


class BucketRateLimiter:
    """A token bucket shared by all items: bounds the overall retry rate, not one item's."""

    def __init__(
        self,
        qps: float = DEFAULT_BUCKET_QPS,
        burst: int = DEFAULT_BUCKET_BURST,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("need qps > 0 and burst >= 1")
        self._qps = qps
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def when(self, item: Hashable) -> float:
        """Reserve one token and return the wait until it is available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
            self._last = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self._qps

    def forget(self, item: Hashable) -> None:
        """Tokens are not per item: nothing to forget."""

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """Asks every limiter and waits for the longest answer."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("need at least one rate limiter")
        self._limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self._limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def default_controller_rate_limiter(
    per_item: ItemExponentialRateLimiter | None = None,
) -> RateLimiter:
    """client-go's default for controllers: 5 ms -> 1000 s per item, 10 qps / 100 burst overall.

    `per_item` is the per-item half, when the caller shares its failure history."""
    return MaxOfRateLimiter(per_item or ItemExponentialRateLimiter(), BucketRateLimiter())
