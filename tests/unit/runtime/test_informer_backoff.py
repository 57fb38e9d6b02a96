"""Informer building blocks that need no server: backoff, paths, queries, events, objects."""

from __future__ import annotations

from typing import Any

import pytest

from kcp.rest import ApiError, Resource, timeouts
from kcp.runtime.informer import Backoff, Informer
from kcp.runtime.watching import (
    INITIAL_EVENTS_END_ANNOTATION,
    MAX_WATCH_TIMEOUT,
    MIN_WATCH_TIMEOUT,
    WatchEvent,
    server_watch_timeout,
    watch_query,
)

SECRETS = Resource("", "v1", "Secret", "secrets")
KCPS = Resource(
    "controlplane.cluster.x-k8s.io", "v1beta2", "KubeadmControlPlane", "kubeadmcontrolplanes"
)
NODES = Resource("", "v1", "Node", "nodes", namespaced=False)


def test_backoff_grows_from_0_8_to_30_seconds_with_jitter_and_resets() -> None:
    backoff = Backoff()
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.6 <= delays[0] <= 1.0
    assert 1.2 <= delays[1] <= 2.0
    assert all(0 < d <= 30.0 for d in delays)
    assert delays[-1] >= 22.5  # capped near the maximum, never beyond
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_backoff_jitter_spreads_delays() -> None:
    delays = {round(Backoff().next_delay(), 6) for _ in range(20)}
    assert len(delays) > 1


def test_resource_paths() -> None:
    assert SECRETS.path(None) == "/api/v1/secrets"
    assert SECRETS.path("ns") == "/api/v1/namespaces/ns/secrets"
    assert SECRETS.path("ns", "s") == "/api/v1/namespaces/ns/secrets/s"
    assert KCPS.api_version == "controlplane.cluster.x-k8s.io/v1beta2"
    assert KCPS.path("ns") == (
        "/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/ns/kubeadmcontrolplanes"
    )
    assert NODES.path() == "/api/v1/nodes"  # an informer scoped to a namespace drops it
    assert NODES.path(None, "n1") == "/api/v1/nodes/n1"
    with pytest.raises(ValueError, match="namespaced"):
        SECRETS.path(None, "s")


def test_streaming_list_query() -> None:
    query = dict(
        watch_query(
            resource_version="",
            label_selector="a=b",
            field_selector=None,
            streaming_list=True,
            timeout_seconds=400,
        )
    )
    assert query == {
        "watch": "true",
        "allowWatchBookmarks": "true",
        "labelSelector": "a=b",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "timeoutSeconds": "400",
    }
    resumed = dict(
        watch_query(
            resource_version="42",
            label_selector=None,
            field_selector="metadata.name=x",
            streaming_list=False,
            timeout_seconds=300,
        )
    )
    assert resumed["resourceVersion"] == "42"
    assert resumed["fieldSelector"] == "metadata.name=x"
    assert "sendInitialEvents" not in resumed


def test_server_side_watch_timeout_is_randomised_between_5_and_10_minutes() -> None:
    values = {server_watch_timeout() for _ in range(50)}
    assert all(MIN_WATCH_TIMEOUT <= v <= MAX_WATCH_TIMEOUT for v in values)
    assert (MIN_WATCH_TIMEOUT, MAX_WATCH_TIMEOUT) == (300, 600)
    assert len(values) > 1


def test_read_timeout_bounds_every_wait() -> None:
    assert timeouts(1.0) == (1.0, 1.0)
    assert timeouts(90.0) == (10.0, 90.0)


def test_initial_events_end_marker() -> None:
    marker = WatchEvent(
        "BOOKMARK",
        {
            "metadata": {
                "resourceVersion": "9",
                "annotations": {INITIAL_EVENTS_END_ANNOTATION: "true"},
            }
        },
    )
    assert marker.ends_initial_events and marker.resource_version == "9"
    assert not WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "10"}}).ends_initial_events
    assert not WatchEvent("ADDED", marker.object).ends_initial_events


def test_api_error_from_status() -> None:
    error = ApiError.from_status({"code": 410, "reason": "Expired", "message": "too old"})
    assert error.gone and not error.not_found
    assert "410 Expired" in str(error)
    assert ApiError.from_status({}).status == 500


def full_secret() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "s",
            "namespace": "ns",
            "managedFields": [{"manager": "m"}],
            "resourceVersion": "3",
        },
        "data": {"tls.key": "c2VjcmV0"},
        "type": "cluster.x-k8s.io/secret",
    }


def test_metadata_only_objects_keep_metadata_typed_as_their_kind() -> None:
    informer = Informer(None, SECRETS, metadata_only=True)
    obj = informer._prepare(full_secret())
    assert obj == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "ns", "resourceVersion": "3"},
    }


def test_full_objects_get_type_meta_and_the_transform() -> None:
    informer = Informer(None, SECRETS)
    obj = informer._prepare(full_secret())
    assert obj["kind"] == "Secret" and obj["apiVersion"] == "v1"
    assert obj["data"] == {"tls.key": "c2VjcmV0"}
    assert "managedFields" not in obj["metadata"]
    untouched = Informer(None, SECRETS, transform=None)._prepare(full_secret())
    assert untouched["metadata"]["managedFields"] == [{"manager": "m"}]


def test_informer_names_and_cluster_scope() -> None:
    assert Informer(None, SECRETS).name == "secrets"
    assert Informer(None, KCPS).name == "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io"
    assert Informer(None, NODES, namespace="x").namespace is None
    assert not Informer(None, SECRETS).has_synced()
    assert Informer(None, SECRETS).stop() is True  # never started: nothing to wait for
