"""What `kcp bench` prints beside its figures: how the fleet differs from real clusters,
and the tracker's CPU ratio both in steady state and with the warm-up."""

from __future__ import annotations

from typing import Any

import pytest

from kcp.bench import combined, scale
from kcp.bench.tracker import ModeResult, TrackerBenchmark

CACHED = ModeResult(
    keys_generated=100, cpu_ms_per_reconcile=1.0, wall_ms_per_reconcile=2.0, warmup_cpu_ms=4000
)
NAIVE = ModeResult(keys_generated=500, cpu_ms_per_reconcile=50.0, wall_ms_per_reconcile=100.0)


def test_tracker_table_gives_the_ratio_with_and_without_the_warm_up() -> None:
    result = TrackerBenchmark(100, 5, "rsa-2048", 1, CACHED, NAIVE)
    # 4000 ms of warm-up over 500 reconciles: 9 ms per reconcile instead of 1.
    assert result.cpu_ratio_including_warmup == pytest.approx(50 / 9)
    text = result.table()
    assert "steady state 50.0" in text
    assert "including the cached warm-up (4000 ms CPU" in text and ": 5.6" in text
    assert "all share one etcd" in text


def test_bench_all_tracker_table_gives_both_ratios_per_size() -> None:
    run = TrackerBenchmark(100, 5, "rsa-2048", 1, CACHED, NAIVE).as_dict()["tracker"]
    acceptance = {
        "clusters": 100,
        "one_key_per_cluster_cached": True,
        "cpu_ratio_at_least_20": True,
    }
    text = combined.tracker_summary({**run, "sweep": [run], "acceptance": acceptance})
    header, _rule, row = text.splitlines()[1:4]
    assert "ratio steady" in header and "incl. warm-up" in header
    assert "50.0" in row.split() and "5.6" in row.split()
    assert "all share one etcd" in text


def _scale_result(controller: str) -> dict[str, Any]:
    point: dict[str, Any] = {
        "clusters": 1000,
        "startup_seconds": 120.0,
        "resync_seconds": 20.0,
        "resync_cpu_cores": 0.5,
        "steady_cpu_cores": 0.3,
        "steady_reconciles_per_second": 27.0,
        "steady_cpu_ms_per_reconcile": 13.0,
        "peak_rss_mib": 248.0,
        "threads": 28,
        "change_latency_ms": {"p50": 80.0, "p99": 150.0},
        "controller_metrics": {},
    }
    return {
        "controller": controller,
        "etcd_access": "direct",
        "controller_flags": {"concurrency": 10, "kube_api_qps": 200.0, "kube_api_burst": 300},
        "points": [point],
        "growth_ratio_n_over_n10": {"threads": 1.0},
        "acceptance": {"clusters": 1000},
    }


def test_scale_table_says_what_the_fleet_shares_and_what_a_resync_is() -> None:
    text = scale.summary(_scale_result("kcp-run"))
    assert "every cluster shares one etcd" in text
    assert "the management API server stands in for every workload API server" in text
    assert "resync: a metadata bump of every KubeadmControlPlane" in text
    other = scale.summary(_scale_result("runtime+tracker"))
    assert "no workload API server" in other and "stands in" not in other
