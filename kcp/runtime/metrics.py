"""Prometheus metrics under controller-runtime's names, so existing dashboards work.

Names, labels, help texts and buckets follow controller-runtime
(`pkg/internal/controller/metrics`, `pkg/metrics/workqueue.go`): work queue series
carry both `name` and `controller` labels, set to the queue's name. `REGISTRY` is
the process-wide registry served on `/metrics` (with the process and platform
collectors); tests build a `RuntimeMetrics` on their own `new_registry()`.
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from kcp.runtime.workqueue import UnfinishedWorkProbe

RECONCILE_TIME_BUCKETS: tuple[float, ...] = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5),
    *(0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0),
    *(6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0),
)
"""controller-runtime's buckets for `controller_runtime_reconcile_time_seconds`."""

WORKQUEUE_BUCKETS: tuple[float, ...] = tuple(float(f"1e{exponent}") for exponent in range(-8, 4))
"""client-go's `ExponentialBuckets(10e-9, 10, 12)`: 10 ns to 1000 s."""

RECONCILE_RESULTS = ("success", "error", "requeue", "requeue_after")
"""Values of the `result` label of `controller_runtime_reconcile_total`."""


def new_registry(*, process_collectors: bool = True) -> CollectorRegistry:
    """A fresh registry, by default with the process (CPU, RSS, fds) and platform collectors."""
    registry = CollectorRegistry(auto_describe=True)
    if process_collectors:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


REGISTRY: CollectorRegistry = new_registry()
"""The process-wide registry that the metrics server exposes."""


class QueueMetricsRecorder:
    """The `kcp.runtime.workqueue.QueueMetrics` hooks of one named queue."""

    def __init__(self, families: RuntimeMetrics, name: str) -> None:
        labels = (name, name)
        self._depth = families.workqueue_depth.labels(*labels)
        self._adds = families.workqueue_adds.labels(*labels)
        self._latency = families.workqueue_queue_duration.labels(*labels)
        self._work = families.workqueue_work_duration.labels(*labels)
        self._retries = families.workqueue_retries.labels(*labels)
        self._unfinished = families.workqueue_unfinished_work.labels(*labels)
        self._longest = families.workqueue_longest_running_processor.labels(*labels)

    def add(self) -> None:
        self._adds.inc()

    def depth(self, value: int) -> None:
        self._depth.set(value)

    def queue_latency(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def work_duration(self, seconds: float) -> None:
        self._work.observe(seconds)

    def retry(self) -> None:
        self._retries.inc()

    def track_unfinished(self, probe: UnfinishedWorkProbe) -> None:
        # Computed when scraped: no thread ticking per queue.
        self._unfinished.set_function(lambda: probe()[0])
        self._longest.set_function(lambda: probe()[1])


class ControllerMetricsRecorder:
    """The reconcile metrics of one named controller."""

    def __init__(self, families: RuntimeMetrics, name: str) -> None:
        self._totals = {
            result: families.reconcile_total.labels(name, result) for result in RECONCILE_RESULTS
        }
        self._errors = families.reconcile_errors.labels(name)
        self._time = families.reconcile_time.labels(name)
        self.active_workers = families.active_workers.labels(name)
        self.max_concurrent_reconciles = families.max_concurrent_reconciles.labels(name)

    def reconciled(self, result: str, seconds: float) -> None:
        """Count one reconcile with its `result` (one of RECONCILE_RESULTS) and duration."""
        self._totals[result].inc()
        if result == "error":
            self._errors.inc()
        self._time.observe(seconds)


class RuntimeMetrics:
    """Every controller and work queue metric family, registered in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller",
            ["controller", "result"],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
            ["controller"],
            registry=registry,
        )
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            ["controller"],
            buckets=RECONCILE_TIME_BUCKETS,
            registry=registry,
        )
        self.max_concurrent_reconciles = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            ["controller"],
            registry=registry,
        )
        self.active_workers = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            ["controller"],
            registry=registry,
        )
        queue_labels = ["name", "controller"]
        self.workqueue_depth = Gauge(
            "workqueue_depth",
            "Current depth of workqueue",
            queue_labels,
            registry=registry,
        )
        self.workqueue_adds = Counter(
            "workqueue_adds_total",
            "Total number of adds handled by workqueue",
            queue_labels,
            registry=registry,
        )
        self.workqueue_queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            queue_labels,
            buckets=WORKQUEUE_BUCKETS,
            registry=registry,
        )
        self.workqueue_work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            queue_labels,
            buckets=WORKQUEUE_BUCKETS,
            registry=registry,
        )
        self.workqueue_unfinished_work = Gauge(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been "
            "observed by work_duration. Large values indicate stuck threads. One can deduce "
            "the number of stuck threads by observing the rate at which this increases.",
            queue_labels,
            registry=registry,
        )
        self.workqueue_longest_running_processor = Gauge(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            queue_labels,
            registry=registry,
        )
        self.workqueue_retries = Counter(
            "workqueue_retries_total",
            "Total number of retries handled by workqueue",
            queue_labels,
            registry=registry,
        )

        self.leader_election_status = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates "
            "backup, 1 indicates master. 'name' is the string used to identify the lease. "
            "Please make sure to group by name.",
            ["name"],
            registry=registry,
        )

    def for_queue(self, name: str) -> QueueMetricsRecorder:
        """Hooks to pass as `WorkQueue(name, metrics=...)`."""
        return QueueMetricsRecorder(self, name)

    def for_controller(self, name: str) -> ControllerMetricsRecorder:
        """Reconcile counters of one controller, all results initialised to zero."""
        return ControllerMetricsRecorder(self, name)


_default: list[RuntimeMetrics] = []
_default_lock = threading.Lock()


def default_metrics() -> RuntimeMetrics:
    """The families registered in `REGISTRY`, created on first use."""
    with _default_lock:
        if not _default:
            _default.append(RuntimeMetrics(REGISTRY))
        return _default[0]
