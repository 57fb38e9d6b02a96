"""Client-side API rate limit (--kube-api-qps / --kube-api-burst)."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s

from kcp.rest.throttle import TokenBucket, throttle_api_client


def test_bucket_allows_a_burst_then_the_sustained_rate() -> None:
    bucket = TokenBucket(qps=50, burst=5)
    started = time.monotonic()
    waits = [bucket.acquire() for _ in range(10)]
    elapsed = time.monotonic() - started
    assert waits[:5] == [0.0] * 5
    assert all(w > 0 for w in waits[5:])
    assert 0.08 <= elapsed < 1.0  # 5 extra requests at 50/s ~ 0.1 s


def test_api_client_requests_wait_for_tokens() -> None:
    api = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))
    calls: list[float] = []

    def fake_request(*args: Any, **kwargs: Any) -> str:
        calls.append(time.monotonic())
        return "ok"

    api.rest_client.request = fake_request
    throttle_api_client(api, qps=20, burst=2)
    throttle_api_client(api, qps=1000, burst=1000)  # idempotent: first settings stay
    for _ in range(4):
        assert api.rest_client.request("GET", "http://x") == "ok"
    assert calls[3] - calls[0] >= 0.09  # two waits of 50 ms


def test_qps_zero_leaves_the_client_alone() -> None:
    api = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))
    original = api.rest_client.request
    throttle_api_client(api, qps=0, burst=1)
    assert api.rest_client.request == original
