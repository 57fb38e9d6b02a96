"""The tracker keeps as many etcd connections and tunnels as its fleet has members in use."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from kcp.etcd import ChannelPool
from kcp.tracker import ClusterKey, InMemorySecrets, Tracker, TrackerOptions
from kcp.tracker.sizing import ConnectionBounds, connection_bounds, open_files_limit

PLENTY = 1_048_576
"""An open-file limit that bounds nothing here."""


@pytest.mark.parametrize(
    ("clusters", "members"),
    [(1, 1), (100, 1), (1000, 1), (1000, 3), (1300, 3)],
)
def test_a_steady_fleet_fits_in_the_bounds(clusters: int, members: int) -> None:
    """Every member in use keeps its connection and tunnel: none is dropped and re-opened."""
    bounds = connection_bounds(clusters * members, TrackerOptions(), open_files=PLENTY)
    assert bounds.channels >= clusters * members
    assert bounds.tunnels > bounds.channels


def test_the_bounds_follow_the_members_with_headroom() -> None:
    options = TrackerOptions()
    assert connection_bounds(0, options) == ConnectionBounds(channels=16, tunnels=32)
    assert connection_bounds(1000, options) == ConnectionBounds(channels=1141, tunnels=1157)
    small, large = connection_bounds(100, options), connection_bounds(1000, options)
    assert small.channels < large.channels


def test_grpc_may_hold_two_tunnels_per_connection() -> None:
    bounds = connection_bounds(1000, TrackerOptions(etcd_transport="grpc"))
    assert bounds == ConnectionBounds(channels=1141, tunnels=2 * 1141 + 16)


def test_the_ceiling_caps_a_fleet_larger_than_expected() -> None:
    options = TrackerOptions(etcd_connections_max=500)
    assert connection_bounds(10_000, options).channels == 500
    assert connection_bounds(100, options).channels == 128


def test_connections_fit_half_the_open_file_limit() -> None:
    """Three descriptors per tunnel: with 1024 open files, 170 tunnelled connections."""
    assert connection_bounds(1000, TrackerOptions(), open_files=1024).channels == 170
    grpc = TrackerOptions(etcd_transport="grpc")
    assert connection_bounds(1000, grpc, open_files=1024).channels == 85
    assert connection_bounds(1000, TrackerOptions(), open_files=20).channels == 16


def test_pinned_bounds_win() -> None:
    options = TrackerOptions(etcd_channels=256, tunnels_max=512)
    assert connection_bounds(1000, options) == ConnectionBounds(channels=256, tunnels=512)
    assert connection_bounds(1000, TrackerOptions(etcd_channels=256)).tunnels == 272


def test_the_open_file_limit_is_read() -> None:
    limit = open_files_limit()
    assert limit is None or limit > 0


def _tracker(pool: ChannelPool | None = None, registry: CollectorRegistry | None = None) -> Tracker:
    options = TrackerOptions(probe_interval=None, key_algorithm="ecdsa-p256")
    return Tracker(
        InMemorySecrets(), options, registry=registry or CollectorRegistry(), etcd_pool=pool
    )


def _keys(count: int) -> list[ClusterKey]:
    return [ClusterKey("ns", f"c{i}", f"uid-{i}") for i in range(count)]


def test_the_tracker_sizes_its_pool_and_tunnels_by_the_clusters_it_holds() -> None:
    registry = CollectorRegistry()
    with _tracker(registry=registry) as tracker:
        open_files = open_files_limit()

        def expect(members: int) -> ConnectionBounds:
            return connection_bounds(members, tracker.options, open_files=open_files)

        assert tracker.etcd_pool.max_size == expect(0).channels
        keys = _keys(200)
        for key in keys:
            tracker.track(key)  # endpoints not known yet: one member each
        assert tracker.etcd_pool.max_size == expect(200).channels
        assert tracker.tunnel_stats().max_open == expect(200).tunnels
        assert registry.get_sample_value("kcp_tracker_etcd_connections_max") == (
            expect(200).channels
        )
        assert registry.get_sample_value("kcp_tracker_tunnels_max") == expect(200).tunnels

        three = [f"kube-system/etcd-n{i}:2379" for i in range(3)]
        for key in keys[:100]:
            tracker.track(key, etcd_endpoints=three)
        assert tracker.etcd_pool.max_size == expect(300 + 100).channels

        for key in keys[:150]:
            tracker.evict(key)
        assert tracker.etcd_pool.max_size == expect(50).channels
        tracker.evict(keys[0])  # evicted already: counted once
        assert tracker.etcd_pool.max_size == expect(50).channels


def test_a_pool_handed_to_the_tracker_keeps_its_size() -> None:
    pool = ChannelPool(3)
    with _tracker(pool) as tracker:
        for key in _keys(50):
            tracker.track(key)
        assert pool.max_size == 3
        assert tracker.tunnel_stats().max_open >= 50
