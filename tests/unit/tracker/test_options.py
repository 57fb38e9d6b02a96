from __future__ import annotations

from datetime import timedelta

import pytest

from kcp.tracker import CAPI_ETCD_CLIENT_COMMON_NAME, TrackerOptions


def test_defaults_are_the_documented_ones() -> None:
    options = TrackerOptions()
    assert options.capacity == 1000
    assert options.key_cache_maxsize == 10_000
    assert options.certificate_cache_maxsize == 10_000
    assert options.key_algorithm == "rsa-2048"
    assert options.certificate_validity == timedelta(hours=24)
    assert options.renew_fraction == pytest.approx(2 / 3)
    assert options.probe_interval == 10.0
    assert options.etcd_probe_interval == 60.0
    assert options.secret_refresh_interval == 600.0
    assert options.probe_timeout == 5.0
    assert options.failure_threshold == 5
    assert (options.connecting_backoff, options.connecting_backoff_max) == (2.0, 10.0)
    assert 4 <= options.probe_workers <= 8
    assert options.client_common_name == CAPI_ETCD_CLIENT_COMMON_NAME == "cluster-api.x-k8s.io"
    assert (options.etcd_dial_timeout, options.etcd_call_timeout) == (10.0, 15.0)
    assert (options.etcd_channels, options.tunnels_max) == (None, None)  # follow the fleet
    assert options.etcd_connections_max == 4096


def test_cache_sizes_follow_capacity_unless_given() -> None:
    assert TrackerOptions(capacity=50).key_cache_maxsize == 500
    assert TrackerOptions(capacity=50, key_cache_size=7).key_cache_maxsize == 7


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"capacity": 0}, "capacity"),
        ({"key_algorithm": "dsa-1024"}, "key_algorithm"),
        ({"certificate_validity": timedelta(0)}, "certificate_validity"),
        ({"renew_fraction": 1.0}, "renew_fraction"),
        ({"probe_interval": 0.0}, "probe_interval"),
        ({"etcd_probe_interval": -1.0}, "etcd_probe_interval"),
        ({"probe_timeout": -1.0}, "probe_timeout"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"probe_workers": 0}, "probe_workers"),
        ({"key_ttl": 0.0}, "key_ttl"),
        ({"connecting_backoff": 0.0}, "connecting_backoff"),
        ({"connecting_backoff": 5.0, "connecting_backoff_max": 1.0}, "connecting_backoff_max"),
        ({"etcd_channels": 0}, "etcd_channels"),
        ({"tunnels_max": 0}, "tunnels_max"),
        ({"etcd_connections_max": 0}, "etcd_connections_max"),
    ],
)
def test_invalid_options_are_refused_with_the_field_named(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TrackerOptions(**changes)  # type: ignore[arg-type]
