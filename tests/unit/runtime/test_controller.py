"""Controller: reconcile results, error counting and backoff, resync, graceful stop."""

from __future__ import annotations

import io
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from kcp.runtime.controller import Controller, ObjectKey, Result
from kcp.runtime.logging import configure_logging
from kcp.runtime.metrics import RuntimeMetrics, new_registry
from kcp.runtime.ratelimit import ItemExponentialRateLimiter
from kcp.runtime.workqueue import WorkQueue

KEY = ObjectKey("ns", "cp")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(**config)


def sample(metrics: RuntimeMetrics, metric: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(metric, labels)
    return 0.0 if value is None else value


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def reconciles(metrics: RuntimeMetrics, result: str) -> float:
    """How many reconciles of the test controller ended with `result`."""
    return sample(metrics, "controller_runtime_reconcile_total", controller="test", result=result)


def reconcile_errors(metrics: RuntimeMetrics) -> float:
    return sample(metrics, "controller_runtime_reconcile_errors_total", controller="test")


def start_with_key(controller: Controller) -> None:
    """Start the controller and enqueue KEY, as most tests begin."""
    controller.start()
    controller.enqueue(KEY)


def run_until_one_success(controller: Controller, metrics: RuntimeMetrics) -> None:
    """Start with KEY and wait until one reconcile of it has succeeded."""
    start_with_key(controller)
    wait_for(lambda: reconciles(metrics, "success") == 1)


def make(
    reconcile: Callable[[ObjectKey], Result],
    *,
    concurrency: int = 2,
    base_delay: float = 0.01,
    **kwargs: object,
) -> tuple[Controller, RuntimeMetrics]:
    metrics = RuntimeMetrics(new_registry(process_collectors=False))
    queue: WorkQueue[ObjectKey] = WorkQueue(
        "test",
        rate_limiter=ItemExponentialRateLimiter(base_delay, 10),
        metrics=metrics.for_queue("test"),
    )
    controller = Controller(
        "test", reconcile, concurrency=concurrency, queue=queue, metrics=metrics, **kwargs
    )
    return controller, metrics


def test_object_key_is_frozen_hashable_and_prints_as_namespace_slash_name() -> None:
    assert str(KEY) == "ns/cp"
    assert str(ObjectKey("", "cluster-scoped")) == "cluster-scoped"
    assert {KEY, ObjectKey("ns", "cp")} == {KEY}
    with pytest.raises(AttributeError):
        KEY.name = "x"  # type: ignore[misc]


def test_success_counts_and_forgets_backoff() -> None:
    calls: list[ObjectKey] = []
    controller, metrics = make(lambda key: calls.append(key) or Result())
    run_until_one_success(controller, metrics)
    assert calls == [KEY]
    assert controller.queue.num_requeues(KEY) == 0
    assert (
        sample(metrics, "controller_runtime_reconcile_time_seconds_count", controller="test") == 1
    )
    assert sample(metrics, "controller_runtime_max_concurrent_reconciles", controller="test") == 2
    assert controller.stop(timeout=5)


def test_errors_are_counted_and_retried_with_growing_backoff() -> None:
    times: list[float] = []

    def failing(key: ObjectKey) -> Result:
        times.append(time.monotonic())
        if len(times) < 4:
            raise RuntimeError("boom")
        return Result()

    controller, metrics = make(failing, base_delay=0.04)
    run_until_one_success(controller, metrics)
    assert reconcile_errors(metrics) == 3
    assert reconciles(metrics, "error") == 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 40 ms, 80 ms, 160 ms
    assert gaps[0] >= 0.035 and gaps[1] >= 0.075 and gaps[2] >= 0.15
    assert controller.queue.num_requeues(KEY) == 0  # forgotten after the success
    assert sample(metrics, "workqueue_retries_total", name="test", controller="test") == 3
    assert controller.stop(timeout=5)


def test_requeue_after_reconciles_again_after_the_delay_with_backoff_reset() -> None:
    times: list[float] = []

    def later(key: ObjectKey) -> Result:
        times.append(time.monotonic())
        return Result(requeue_after=0.2) if len(times) == 1 else Result()

    controller, metrics = make(later)
    start_with_key(controller)
    wait_for(lambda: len(times) == 2)
    assert times[1] - times[0] >= 0.19
    assert reconciles(metrics, "requeue_after") == 1
    assert controller.queue.num_requeues(KEY) == 0
    assert controller.stop(timeout=5)


def test_a_backed_off_requeue_after_keeps_the_failures_until_a_success() -> None:
    limiter = ItemExponentialRateLimiter(0.01, 10)
    seen: list[int] = []

    def user_error(key: ObjectKey) -> Result:
        seen.append(limiter.num_requeues(key))
        if len(seen) < 3:
            limiter.when(key)  # as a reconciler sharing the queue's failure history does
            return Result(requeue_after=0.01, backed_off=True)
        return Result(requeue_after=0.01) if len(seen) == 3 else Result()

    metrics = RuntimeMetrics(new_registry(process_collectors=False))
    queue: WorkQueue[ObjectKey] = WorkQueue("test", rate_limiter=limiter)
    controller = Controller("test", user_error, queue=queue, metrics=metrics)
    start_with_key(controller)
    wait_for(lambda: len(seen) == 4)
    assert seen == [0, 1, 2, 0]  # kept by the backed-off requeues, forgotten by the plain one
    assert reconciles(metrics, "requeue_after") == 3
    assert controller.stop(timeout=5)


def test_requeue_true_retries_with_backoff() -> None:
    count = [0]

    def again(key: ObjectKey) -> Result:
        count[0] += 1
        return Result(requeue=count[0] < 3)

    controller, metrics = make(again)
    start_with_key(controller)
    wait_for(lambda: count[0] == 3)
    wait_for(lambda: reconciles(metrics, "success") == 1)
    assert reconciles(metrics, "requeue") == 2
    assert reconcile_errors(metrics) == 0
    assert controller.stop(timeout=5)


def test_a_reconciler_returning_something_else_is_an_error_not_a_dead_worker() -> None:
    count = [0]

    def broken(key: ObjectKey) -> Result:
        count[0] += 1
        return None if count[0] == 1 else Result()  # type: ignore[return-value]

    controller, metrics = make(broken, concurrency=1)
    run_until_one_success(controller, metrics)
    assert reconcile_errors(metrics) == 1
    assert controller.stop(timeout=5)


def test_one_key_is_never_reconciled_twice_at_once() -> None:
    active: set[ObjectKey] = set()
    overlaps: list[ObjectKey] = []
    lock = threading.Lock()
    done = [0]

    def slow(key: ObjectKey) -> Result:
        with lock:
            if key in active:
                overlaps.append(key)
            active.add(key)
        time.sleep(0.01)
        with lock:
            active.discard(key)
            done[0] += 1
        return Result()

    controller, _ = make(slow, concurrency=4)
    controller.start()
    for _ in range(50):
        for index in range(3):
            controller.enqueue(ObjectKey("ns", f"k{index}"))
        time.sleep(0.002)
    time.sleep(0.1)
    assert controller.stop(timeout=5)
    assert overlaps == []
    assert done[0] >= 3


def test_resync_enqueues_every_key_each_period() -> None:
    seen: list[ObjectKey] = []
    keys = [ObjectKey("a", "1"), ObjectKey("b", "2")]
    controller, _ = make(
        lambda key: seen.append(key) or Result(), keys=lambda: keys, sync_period=0.1
    )
    controller.start()
    wait_for(lambda: seen.count(keys[0]) >= 2 and seen.count(keys[1]) >= 2)
    assert controller.stop(timeout=5)
    assert controller.resync() == 2


def test_stop_waits_for_in_flight_reconciles_and_starts_no_new_ones() -> None:
    started = threading.Event()
    finished = threading.Event()
    calls: list[ObjectKey] = []

    def slow(key: ObjectKey) -> Result:
        calls.append(key)
        started.set()
        time.sleep(0.3)
        finished.set()
        return Result()

    controller, _ = make(slow, concurrency=1)
    controller.start()
    controller.enqueue(ObjectKey("ns", "first"))
    assert started.wait(5)
    controller.enqueue(ObjectKey("ns", "second"))
    assert controller.stop(timeout=5)
    assert finished.is_set()
    assert calls == [ObjectKey("ns", "first")]


def test_stop_is_bounded_when_a_reconcile_hangs() -> None:
    release = threading.Event()
    started = threading.Event()

    def hang(key: ObjectKey) -> Result:
        started.set()
        release.wait(10)
        return Result()

    controller, _ = make(hang, concurrency=1)
    start_with_key(controller)
    assert started.wait(5)
    began = time.monotonic()
    assert controller.stop(timeout=0.2) is False
    assert time.monotonic() - began < 1.5
    release.set()


def failing_then_succeeding(
    error: Exception, failures: int
) -> tuple[list[dict[str, Any]], RuntimeMetrics]:
    """Reconcile KEY until it succeeds, raising `error` the first `failures` times; the JSON
    log lines written meanwhile and the controller's metrics."""
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    attempts = [0]

    def reconcile(key: ObjectKey) -> Result:
        attempts[0] += 1
        if attempts[0] <= failures:
            raise error
        return Result()

    controller, metrics = make(reconcile, concurrency=1)
    start_with_key(controller)
    wait_for(lambda: attempts[0] == failures + 1)
    assert controller.stop(timeout=5)
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    return lines, metrics


def test_errors_are_logged_with_reconcile_context_and_traceback_only_once() -> None:
    lines, _ = failing_then_succeeding(ValueError("bad spec"), 2)
    errors = [line for line in lines if line["event"] == "Reconciler error"]
    assert len(errors) == 2
    for line in errors:
        assert line["controller"] == "test"
        assert line["namespace"] == "ns"
        assert line["name"] == "cp"
        assert line["reconcile_id"]
        assert line["error"] == "ValueError: bad spec"
    assert errors[0]["reconcile_id"] != errors[1]["reconcile_id"]
    assert "Traceback" in errors[0]["exception"]
    assert "exception" not in errors[1]


def test_a_conflict_is_retried_and_logged_as_info_without_a_traceback() -> None:
    from kcp.rest import ApiError

    conflict_error = ApiError(409, "Conflict", "the object has been modified")
    lines, metrics = failing_then_succeeding(conflict_error, 1)
    assert not [line for line in lines if line["event"] == "Reconciler error"]
    (conflict,) = [line for line in lines if line["event"] == "Reconcile conflict, retrying"]
    assert conflict["level"] == "info"
    assert "the object has been modified" in conflict["error"]
    assert "exception" not in conflict
    assert (
        sample(metrics, "controller_runtime_reconcile_total", controller="test", result="error")
        == 1
    )


def test_log_lines_inside_the_reconciler_carry_its_context() -> None:
    from kcp.runtime.logging import get_logger

    out = io.StringIO()
    configure_logging(json=True, stream=out)
    log = get_logger("reconciler")

    def talk(key: ObjectKey) -> Result:
        log.info("reconciling")
        return Result()

    controller, metrics = make(talk, concurrency=1)
    run_until_one_success(controller, metrics)
    assert controller.stop(timeout=5)
    lines = [json.loads(line) for line in out.getvalue().splitlines() if '"reconciling"' in line]
    assert len(lines) == 1
    assert lines[0]["controller"] == "test" and lines[0]["name"] == "cp"
    # After the reconcile the context is gone from this worker's thread.
    log.info("outside")
    outside = [json.loads(line) for line in out.getvalue().splitlines() if '"outside"' in line]
    assert "reconcile_id" not in outside[0]


def blocking_reconciler() -> tuple[Callable[[ObjectKey], Result], threading.Event, list[int]]:
    """A reconciler that waits for the returned event; the list holds how many run at once
    (index 0) and the most that ever did (index 1)."""
    release = threading.Event()
    running = [0, 0]
    lock = threading.Lock()

    def reconcile(key: ObjectKey) -> Result:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1
        return Result()

    return reconcile, release, running


def test_workers_start_as_keys_wait_up_to_the_concurrency_and_idle_ones_stop() -> None:
    reconcile, release, running = blocking_reconciler()
    controller, metrics = make(reconcile, concurrency=5, worker_idle_seconds=0.2)
    controller.start()
    assert controller.worker_count == 1
    for index in range(8):
        controller.enqueue(ObjectKey("ns", f"cp-{index}"))
    wait_for(lambda: running[0] == 5)
    assert controller.worker_count == 5
    release.set()
    wait_for(lambda: reconciles(metrics, "success") == 8)
    assert running[1] == 5
    wait_for(lambda: controller.worker_count == 1)
    # The one kept worker still takes keys, and a burst grows the pool again.
    release.clear()
    for index in range(3):
        controller.enqueue(ObjectKey("ns", f"again-{index}"))
    wait_for(lambda: running[0] == 3)
    release.set()
    assert controller.stop(timeout=5)


def test_keys_queued_before_start_are_reconciled_at_once_each_by_its_own_worker() -> None:
    reconcile, release, running = blocking_reconciler()
    controller, _ = make(reconcile, concurrency=4)
    for index in range(6):
        controller.enqueue(ObjectKey("ns", f"cp-{index}"))
    controller.start()
    wait_for(lambda: running[0] == 4)
    release.set()
    assert controller.stop(timeout=5)
    assert running[1] == 4
