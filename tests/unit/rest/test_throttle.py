"""Client-side API rate limit (--kube-api-qps / --kube-api-burst)."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s

from kcp.rest.throttle import ResourceBuckets, TokenBucket, resource_key, throttle_api_client


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
        assert api.rest_client.request("GET", "http://x/api/v1/nodes") == "ok"
    assert calls[3] - calls[0] >= 0.09  # two waits of 50 ms


def test_qps_zero_leaves_the_client_alone() -> None:
    api = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))
    original = api.rest_client.request
    throttle_api_client(api, qps=0, burst=1)
    assert api.rest_client.request == original


def test_each_resource_has_a_bucket_of_its_own_as_controller_runtime_gives_each_kind() -> None:
    buckets = ResourceBuckets(qps=1, burst=1)
    started = time.monotonic()
    assert buckets.acquire("/api/v1/namespaces/a/secrets/x") == 0.0
    assert buckets.acquire("/apis/cluster.x-k8s.io/v1beta2/namespaces/a/machines") == 0.0
    assert buckets.acquire("/apis/cluster.x-k8s.io/v1beta2/namespaces/b/clusters/c") == 0.0
    assert time.monotonic() - started < 0.5  # three resources: no one waited
    assert buckets.bucket("/api/v1/namespaces/b/secrets").reserve() > 0.5  # Secrets' is spent


def test_resource_keys_of_request_paths() -> None:
    ns_status = "https://h:6443/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/n/"
    ns_status += "kubeadmcontrolplanes/cp/status?fieldManager=kcp"
    assert resource_key(ns_status) == "controlplane.cluster.x-k8s.io/v1beta2/kubeadmcontrolplanes"
    assert resource_key("/api/v1/namespaces/n/pods/p/portforward") == "v1/pods"
    assert resource_key("/api/v1/nodes/n1") == "v1/nodes"
    assert resource_key("/api/v1/namespaces/n") == "v1/namespaces"
    assert resource_key("/api/v1/namespaces") == "v1/namespaces"
    assert resource_key("/apis/apps/v1/daemonsets") == "apps/v1/daemonsets"
    for no_resource in ("/version", "/readyz", "/api", "/api/v1", "/apis/apps/v1", ""):
        assert resource_key(no_resource) == ""
