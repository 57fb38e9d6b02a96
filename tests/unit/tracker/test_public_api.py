from __future__ import annotations

import kcp.tracker


def test_the_public_face_is_small_and_complete() -> None:
    assert sorted(kcp.tracker.__all__) == sorted(
        [
            "CAPI_ETCD_CLIENT_COMMON_NAME",
            "ApiSecretReader",
            "ClusterHealth",
            "ClusterKey",
            "ClusterSecretError",
            "ConnectionState",
            "EtcdAccess",
            "InMemorySecrets",
            "NotConnected",
            "SecretData",
            "SecretReader",
            "Tracker",
            "TrackerError",
            "TrackerOptions",
            "TrackerStats",
            "WorkloadClient",
        ]
    )
    for name in kcp.tracker.__all__:
        assert hasattr(kcp.tracker, name), name


def test_a_secret_error_is_a_not_connected_so_a_requeue_handler_catches_both() -> None:
    error = kcp.tracker.ClusterSecretError("bad", retry_after=3.0)
    assert isinstance(error, kcp.tracker.NotConnected)
    assert isinstance(error, kcp.tracker.TrackerError)
    assert (error.reason, error.retry_after) == ("secret", 3.0)


def test_cluster_keys_need_all_three_parts() -> None:
    import pytest

    with pytest.raises(ValueError, match="UID"):
        kcp.tracker.ClusterKey("ns", "c1", "")
    key = kcp.tracker.ClusterKey.from_object(
        {"metadata": {"namespace": "ns", "name": "c1", "uid": "u"}}
    )
    assert str(key) == "ns/c1"
