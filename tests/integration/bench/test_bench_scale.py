"""`kcp bench scale`, small: a real controller process, real etcd, seen from outside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcp.bench import scale
from kcp.bench.environment import BenchEnvironment
from kcp.bench.plot import plot
from kcp.bench.progress import Progress
from kcp.testing.controlplane import LocalControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def bench_env(control_plane: LocalControlPlane, tmp_path: Path) -> BenchEnvironment:
    return BenchEnvironment(plane=control_plane, work_dir=tmp_path / "work")


def test_scale_measures_both_sizes_with_one_key_per_cluster(
    bench_env: BenchEnvironment, tmp_path: Path
) -> None:
    settings = scale.ScaleSettings(clusters=20, steady_seconds=2.0, changes=5, change_rate=20.0)
    result = scale.measure(bench_env, settings, Progress(enabled=False))
    json.dumps(result)

    assert result["controller"] in ("runtime+tracker", "kcp-run")
    assert result["etcd_access"] == (
        "port-forward" if result["controller"] == "kcp-run" else "direct"
    )
    assert [p["clusters"] for p in result["points"]] == [2, 20]
    for point in result["points"]:
        for key in ("startup_seconds", "resync_seconds", "peak_rss_mib", "rss_mib"):
            assert point[key] > 0, key
        for key in ("startup_cpu_cores", "resync_cpu_cores", "steady_cpu_cores"):
            assert 0 <= point[key] < 4, key  # cores of this machine, not a runaway number
        assert point["threads"] > 0
        assert point["threads_max"] >= point["threads"]
        # The controller's own threads are the bulk; gRPC core's are counted apart.
        assert point["own_threads"] > point["grpc_core_threads"] >= 0
        assert point["own_threads"] + point["grpc_core_threads"] == sum(
            point["thread_names"].values()
        )
        latency = point["change_latency_ms"]
        assert latency["samples"] == min(5, point["clusters"])
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
        assert point["resync_latency_ms"]["samples"] == point["clusters"]
        # The tracker in the controller generated exactly one etcd client key per cluster.
        assert point["controller_metrics"]["keys_generated"] == point["clusters"]
        if result["etcd_access"] == "port-forward":
            # etcd through the management API server and the Node's kubelet: the controller
            # holds no connection to etcd's client port, and keeps its tunnels (one per
            # cluster, plus a few replaced) rather than opening one per reconcile.
            assert point["etcd_client_connections"] == 0
            opened = point["controller_metrics"]["tunnels_opened"]
            assert point["clusters"] <= opened <= 3 * point["clusters"] + 5, opened

    small, large = result["points"]
    growth = result["growth_ratio_n_over_n10"]
    assert growth["peak_rss_mib"] == pytest.approx(
        large["peak_rss_mib"] / small["peak_rss_mib"], rel=0.01
    )
    assert growth["resync_seconds"] == pytest.approx(
        large["resync_seconds"] / small["resync_seconds"], rel=0.01
    )
    assert set(result["acceptance"]) >= {
        "resync_under_60s",
        "resync_under_one_core",
        "peak_rss_under_300mib",
        "threads_independent_of_clusters",
        "own_threads_independent_of_clusters",
    }
    assert "startup s" in scale.summary(result)

    png = plot({"scale": result}, tmp_path / "scale.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
