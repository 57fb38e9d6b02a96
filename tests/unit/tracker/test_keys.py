from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client import CollectorRegistry

from kcp.tracker.identity import ClusterKey
from kcp.tracker.keys import KeyCache
from kcp.tracker.metrics import TrackerMetrics


class FakeTimer:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(maxsize: int = 10, ttl: float | None = None, timer: FakeTimer | None = None) -> KeyCache:
    return KeyCache(
        maxsize=maxsize,
        ttl=ttl,
        algorithm="ecdsa-p256",
        metrics=TrackerMetrics(CollectorRegistry()),
        timer=timer or FakeTimer(),
    )


def key(name: str) -> ClusterKey:
    return ClusterKey("ns", name, f"uid-{name}")


def test_a_stored_key_is_returned_again_and_lookups_are_counted() -> None:
    keys = cache()
    assert keys.get(key("a")) is None
    generated = keys.generate()
    keys.store(key("a"), generated)
    assert keys.get(key("a")) is generated
    assert keys.get(key("a")) is generated
    stats = keys._metrics.stats()
    assert stats.keys_generated == 1
    assert stats.cache_hits == {"key": 2}
    assert stats.cache_misses == {"key": 1}


def test_generations_have_distinct_serials_and_the_configured_algorithm() -> None:
    keys = cache()
    first, second = keys.generate(), keys.generate()
    assert first.serial != second.serial
    assert isinstance(first.private_key, ec.EllipticCurvePrivateKey)
    assert "PrivateKey" not in repr(first) or "private_key" not in repr(first)


def test_rsa_2048_is_the_default_algorithm_of_the_tracker_options() -> None:
    keys = KeyCache(
        maxsize=1, ttl=None, algorithm="rsa-2048", metrics=TrackerMetrics(CollectorRegistry())
    )
    generated = keys.generate()
    assert isinstance(generated.private_key, rsa.RSAPrivateKey)
    assert generated.private_key.key_size == 2048


def test_a_full_cache_evicts_the_least_recently_used_key_and_counts_it() -> None:
    keys = cache(maxsize=2)
    for name in ("a", "b"):
        keys.store(key(name), keys.generate())
    keys.get(key("a"))  # b becomes the least recently used
    keys.store(key("c"), keys.generate())
    assert keys.peek(key("b")) is None
    assert keys.peek(key("a")) is not None
    assert keys._metrics.stats().cache_evictions == {"key": 1}


def test_keys_expire_after_their_ttl_and_expiry_is_counted_apart_from_evictions() -> None:
    timer = FakeTimer()
    keys = cache(ttl=60.0, timer=timer)
    keys.store(key("a"), keys.generate())
    timer.now += 59
    assert keys.peek(key("a")) is not None
    timer.now += 2
    assert keys.peek(key("a")) is None
    keys.expire()
    assert len(keys) == 0
    stats = keys._metrics.stats()
    assert stats.cache_expirations == {"key": 1}
    assert stats.cache_evictions == {}


def test_drop_forgets_the_key() -> None:
    keys = cache()
    keys.store(key("a"), keys.generate())
    assert keys.drop(key("a")) is True
    assert keys.drop(key("a")) is False
    assert keys.peek(key("a")) is None
