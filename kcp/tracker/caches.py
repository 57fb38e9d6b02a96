"""``cachetools`` TTL caches that report what they drop, and why.

cachetools removes entries silently; these subclasses call ``on_drop(reason)``
with ``"capacity"`` when the cache was full (an LRU eviction) and ``"expired"``
when an entry's time was up, so both can be counted. Not thread-safe, like
their bases: callers hold a lock around every operation (and only around it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeVar

from cachetools import TLRUCache, TTLCache

__all__ = ["CountingTLRUCache", "CountingTTLCache", "DropReason"]

K = TypeVar("K")
V = TypeVar("V")

DropReason = Literal["capacity", "expired"]
DropHook = Callable[[DropReason], None]


class CountingTTLCache(TTLCache[K, V, float]):
    """A ``TTLCache`` (same TTL for every entry) that reports evictions and expirations."""

    def __init__(
        self,
        maxsize: int,
        ttl: float,
        on_drop: DropHook,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(maxsize, ttl, timer)
        self._on_drop = on_drop

    def popitem(self) -> tuple[K, V]:
        item = super().popitem()
        self._on_drop("capacity")
        return item

    def expire(self, time: float | None = None) -> list[tuple[K, V]]:
        expired = super().expire(time)
        for _ in expired:
            self._on_drop("expired")
        return expired


class CountingTLRUCache(TLRUCache[K, V, float]):
    """A ``TLRUCache`` (each entry's expiry from ``ttu``) that reports evictions and expirations."""

    def __init__(
        self,
        maxsize: int,
        ttu: Callable[[K, V, float], float],
        on_drop: DropHook,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(maxsize, ttu, timer)
        self._on_drop = on_drop

    def popitem(self) -> tuple[K, V]:
        item = super().popitem()
        self._on_drop("capacity")
        return item

    def expire(self, time: float | None = None) -> list[tuple[K, V]]:
        expired = super().expire(time)
        for _ in expired:
            self._on_drop("expired")
        return expired
