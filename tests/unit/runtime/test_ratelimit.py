"""Backoff math: client-go's 5 ms -> 1000 s per item, 10 qps / 100 burst overall."""

from __future__ import annotations

import pytest

from kcp.runtime.ratelimit import (
    BucketRateLimiter,
    ItemExponentialRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)


def test_exponential_backoff_doubles_from_5ms_and_caps_at_1000s() -> None:
    limiter = ItemExponentialRateLimiter()
    delays = [limiter.when("k") for _ in range(30)]
    assert delays[:4] == pytest.approx([0.005, 0.010, 0.020, 0.040])
    assert delays[10] == pytest.approx(0.005 * 1024)
    # 5 ms * 2**18 = 1310 s > 1000 s: capped from the 19th failure on.
    assert delays[17] == pytest.approx(0.005 * 2**17)
    assert delays[18:] == [1000.0] * 12
    assert limiter.num_requeues("k") == 30


def test_backoff_is_per_item_and_forget_resets_it() -> None:
    limiter = ItemExponentialRateLimiter()
    for _ in range(5):
        limiter.when("a")
    assert limiter.when("b") == pytest.approx(0.005)
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.005)


def test_backoff_never_overflows() -> None:
    limiter = ItemExponentialRateLimiter()
    for _ in range(5000):
        delay = limiter.when("k")
    assert delay == 1000.0


def test_token_bucket_lets_a_burst_through_then_spaces_retries() -> None:
    now = [100.0]
    bucket = BucketRateLimiter(qps=10, burst=3, clock=lambda: now[0])
    assert [bucket.when(i) for i in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.when("x") == pytest.approx(0.1)
    assert bucket.when("y") == pytest.approx(0.2)
    now[0] += 1.0  # refills 10 tokens, capped at burst after the debt of 2
    assert bucket.when("z") == 0.0


def test_max_of_takes_the_longest_delay() -> None:
    now = [0.0]
    limiter = MaxOfRateLimiter(
        ItemExponentialRateLimiter(0.005, 1000), BucketRateLimiter(10, 1, clock=lambda: now[0])
    )
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.when("b") == pytest.approx(0.1)  # bucket empty
    assert limiter.num_requeues("a") == 1
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


def test_default_controller_limiter_starts_at_5ms() -> None:
    limiter = default_controller_rate_limiter()
    assert limiter.when("k") == pytest.approx(0.005)
    assert limiter.when("k") == pytest.approx(0.010)


def test_a_second_curve_shares_the_failure_history() -> None:
    quick = ItemExponentialRateLimiter()
    slow = quick.with_delays(5.0, 300.0)
    assert slow.when("k") == 5.0
    assert slow.when("k") == 10.0
    assert quick.when("k") == pytest.approx(0.020)  # the third failure of the same item
    assert slow.num_requeues("k") == 3
    queue_limiter = default_controller_rate_limiter(quick)
    queue_limiter.forget("k")  # a success forgets it for both
    assert slow.when("k") == 5.0


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ItemExponentialRateLimiter(0, 1)
    with pytest.raises(ValueError):
        ItemExponentialRateLimiter(2, 1)
    with pytest.raises(ValueError):
        BucketRateLimiter(0, 1)
