"""Metric names, labels and buckets are controller-runtime's, so dashboards keep working."""

from __future__ import annotations

import time

from prometheus_client import generate_latest

from kcp.runtime.metrics import (
    RECONCILE_TIME_BUCKETS,
    REGISTRY,
    WORKQUEUE_BUCKETS,
    RuntimeMetrics,
    default_metrics,
    new_registry,
)
from kcp.runtime.workqueue import WorkQueue


def exposition(metrics: RuntimeMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_controller_runtime_names_and_labels_are_exposed() -> None:
    metrics = RuntimeMetrics(new_registry(process_collectors=False))
    recorder = metrics.for_controller("kcp")
    recorder.max_concurrent_reconciles.set(10)
    recorder.reconciled("success", 0.01)
    recorder.reconciled("error", 0.02)
    metrics.for_queue("kcp").add()
    text = exposition(metrics)
    for line in (
        'controller_runtime_reconcile_total{controller="kcp",result="success"} 1.0',
        'controller_runtime_reconcile_total{controller="kcp",result="error"} 1.0',
        'controller_runtime_reconcile_total{controller="kcp",result="requeue"} 0.0',
        'controller_runtime_reconcile_total{controller="kcp",result="requeue_after"} 0.0',
        'controller_runtime_reconcile_errors_total{controller="kcp"} 1.0',
        'controller_runtime_reconcile_time_seconds_count{controller="kcp"} 2.0',
        'controller_runtime_max_concurrent_reconciles{controller="kcp"} 10.0',
        'controller_runtime_active_workers{controller="kcp"} 0.0',
        'workqueue_adds_total{controller="kcp",name="kcp"} 1.0',
    ):
        assert line in text, line
    for family in (
        "workqueue_depth",
        "workqueue_queue_duration_seconds",
        "workqueue_work_duration_seconds",
        "workqueue_retries_total",
        "workqueue_unfinished_work_seconds",
        "workqueue_longest_running_processor_seconds",
        "leader_election_master_status",
    ):
        assert f"# TYPE {family.removesuffix('_total')}" in text, family


def test_buckets_match_controller_runtime() -> None:
    assert RECONCILE_TIME_BUCKETS[0] == 0.005 and RECONCILE_TIME_BUCKETS[-1] == 60.0
    assert len(RECONCILE_TIME_BUCKETS) == 40
    assert WORKQUEUE_BUCKETS == (
        1e-8,
        1e-7,
        1e-6,
        1e-5,
        1e-4,
        1e-3,
        0.01,
        0.1,
        1.0,
        10.0,
        100.0,
        1000.0,
    )


def test_queue_metrics_follow_the_queue() -> None:
    metrics = RuntimeMetrics(new_registry(process_collectors=False))
    queue: WorkQueue[str] = WorkQueue("q", metrics=metrics.for_queue("q"))
    labels = {"name": "q", "controller": "q"}
    queue.add("a")
    queue.add("b")
    assert metrics.registry.get_sample_value("workqueue_depth", labels) == 2
    assert queue.get(timeout=1) == "a"
    time.sleep(0.05)
    assert metrics.registry.get_sample_value("workqueue_depth", labels) == 1
    longest = metrics.registry.get_sample_value(
        "workqueue_longest_running_processor_seconds", labels
    )
    assert longest is not None and longest >= 0.05
    queue.done("a")
    assert metrics.registry.get_sample_value("workqueue_work_duration_seconds_count", labels) == 1
    assert metrics.registry.get_sample_value("workqueue_queue_duration_seconds_count", labels) == 1
    assert metrics.registry.get_sample_value("workqueue_unfinished_work_seconds", labels) == 0
    queue.add_rate_limited("c")
    assert metrics.registry.get_sample_value("workqueue_retries_total", labels) == 1


def test_process_registry_has_process_metrics_and_the_runtime_families() -> None:
    assert default_metrics() is default_metrics()
    assert default_metrics().registry is REGISTRY
    text = generate_latest(REGISTRY).decode()
    assert "process_resident_memory_bytes" in text
    assert "python_info" in text
    assert "controller_runtime_reconcile_total" in text
