"""Work queue semantics as client-go's: de-duplication, exclusivity, delays, shutdown."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from kcp.runtime.ratelimit import ItemExponentialRateLimiter
from kcp.runtime.workqueue import WorkQueue


def test_an_item_waits_at_most_once() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert queue.get(timeout=1) == "a"
    assert queue.get(timeout=1) == "b"
    assert queue.get(timeout=0.05) is None


def test_added_while_processing_is_requeued_after_done_not_before() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    queue.add("a")
    assert queue.get(timeout=1) == "a"
    queue.add("a")
    queue.add("a")
    # Still processing: no second worker may get it.
    assert queue.get(timeout=0.05) is None
    queue.done("a")
    assert queue.get(timeout=1) == "a"
    queue.done("a")
    assert queue.get(timeout=0.05) is None


def test_done_without_new_add_does_not_requeue() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    queue.add("a")
    assert queue.get(timeout=1) == "a"
    queue.done("a")
    assert len(queue) == 0


def test_get_blocks_until_an_add() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=5)))
    worker.start()
    time.sleep(0.05)
    queue.add("x")
    worker.join(5)
    assert got == ["x"]


def test_shut_down_wakes_blocked_getters_with_none_and_ignores_adds() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    results: list[str | None] = []
    workers = [threading.Thread(target=lambda: results.append(queue.get())) for _ in range(3)]
    for worker in workers:
        worker.start()
    time.sleep(0.05)
    queue.shut_down()
    for worker in workers:
        worker.join(5)
        assert not worker.is_alive()
    assert results == [None, None, None]
    queue.add("late")
    assert len(queue) == 0
    assert queue.shutting_down


def test_waiting_items_are_not_handed_out_after_shutdown() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    queue.add("a")
    queue.add("b")
    queue.shut_down()
    assert queue.get(timeout=0.1) is None


def test_shut_down_with_drain_waits_for_items_in_flight() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    queue.add("a")
    assert queue.get(timeout=1) == "a"
    finished = threading.Event()

    def finish_later() -> None:
        time.sleep(0.2)
        finished.set()
        queue.done("a")

    threading.Thread(target=finish_later).start()
    started = time.monotonic()
    assert queue.shut_down_with_drain(timeout=5)
    assert finished.is_set()
    assert time.monotonic() - started >= 0.15


def test_shut_down_with_drain_gives_up_after_timeout() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    queue.add("stuck")
    assert queue.get(timeout=1) == "stuck"
    started = time.monotonic()
    assert queue.shut_down_with_drain(timeout=0.1) is False
    assert time.monotonic() - started < 1


def test_add_after_delays_the_item() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    started = time.monotonic()
    queue.add_after("later", 0.2)
    assert len(queue) == 0
    assert queue.get(timeout=2) == "later"
    assert time.monotonic() - started >= 0.19


def test_delayed_items_come_out_in_ready_order() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    queue.add_after("c", 0.3)
    queue.add_after("a", 0.1)
    queue.add_after("b", 0.2)
    got = [queue.get(timeout=2) for _ in range(3)]
    assert got == ["a", "b", "c"]


def test_an_earlier_add_after_wins_and_a_later_one_is_ignored() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    queue.add_after("x", 5.0)
    queue.add_after("x", 0.05)  # earlier: replaces
    queue.add_after("x", 10.0)  # later: ignored
    started = time.monotonic()
    assert queue.get(timeout=2) == "x"
    assert time.monotonic() - started < 1
    queue.done("x")
    # The superseded 5 s entry must not come back.
    assert queue.get(timeout=0.2) is None


def test_add_after_zero_adds_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    queue.add_after("now", 0)
    assert len(queue) == 1


def test_shut_down_drops_delayed_items_and_stops_the_timer() -> None:
    queue: WorkQueue[str] = WorkQueue("never")
    queue.add_after("x", 0.1)
    queue.shut_down()
    time.sleep(0.3)
    assert len(queue) == 0
    timers = [t for t in threading.enumerate() if t.name == "workqueue-timer-never"]
    for timer in timers:
        timer.join(1)
        assert not timer.is_alive()


def test_rate_limited_adds_back_off_per_item_and_forget_resets() -> None:
    limiter = ItemExponentialRateLimiter(base_delay=0.05, max_delay=10)
    queue: WorkQueue[str] = WorkQueue("q", rate_limiter=limiter)
    delays = []
    for _ in range(3):
        started = time.monotonic()
        queue.add_rate_limited("k")
        assert queue.get(timeout=5) == "k"
        delays.append(time.monotonic() - started)
        queue.done("k")
    assert queue.num_requeues("k") == 3
    # 50 ms, 100 ms, 200 ms (timer precision: allow generous upper bounds).
    assert delays[0] >= 0.045 and delays[1] >= 0.095 and delays[2] >= 0.19
    assert delays[2] < 2
    queue.forget("k")
    assert queue.num_requeues("k") == 0


def test_timer_thread_count_does_not_depend_on_items() -> None:
    before = threading.active_count()
    queue: WorkQueue[int] = WorkQueue("many")
    for item in range(2000):
        queue.add_after(item, 0.05 + (item % 10) * 0.01)
    assert threading.active_count() <= before + 1
    seen = set()
    while len(seen) < 2000:
        item = queue.get(timeout=5)
        assert item is not None
        seen.add(item)
        queue.done(item)
    queue.shut_down()


def test_unfinished_work_reports_items_in_flight() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    assert queue.unfinished_work() == (0.0, 0.0)
    queue.add("a")
    queue.add("b")
    queue.get(timeout=1)
    time.sleep(0.05)
    queue.get(timeout=1)
    total, longest = queue.unfinished_work()
    assert longest >= 0.05
    assert total >= longest


class RecordingMetrics:
    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.depths: list[int] = []
        self.latencies: list[float] = []
        self.durations: list[float] = []
        self.probe = None

    def add(self) -> None:
        self.events["add"] += 1

    def depth(self, value: int) -> None:
        self.depths.append(value)

    def queue_latency(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def work_duration(self, seconds: float) -> None:
        self.durations.append(seconds)

    def retry(self) -> None:
        self.events["retry"] += 1

    def track_unfinished(self, probe: object) -> None:
        self.probe = probe


def test_metrics_hooks_see_adds_depth_latency_duration_and_retries() -> None:
    metrics = RecordingMetrics()
    queue: WorkQueue[str] = WorkQueue("q", metrics=metrics)
    assert metrics.probe is not None
    queue.add("a")
    queue.add("a")  # duplicate: not an add
    queue.add("b")
    assert metrics.events["add"] == 2
    assert metrics.depths[-1] == 2
    time.sleep(0.02)
    item = queue.get(timeout=1)
    assert item == "a"
    assert metrics.latencies[-1] >= 0.015
    assert metrics.depths[-1] == 1
    queue.done("a")
    assert len(metrics.durations) == 1
    queue.add_rate_limited("c")
    queue.add_after("d", 0.01)
    assert metrics.events["retry"] == 2


@pytest.mark.timeout(60)
def test_stress_no_key_is_processed_by_two_workers_and_every_add_is_processed() -> None:
    """Thousands of adds from several threads, 8 workers.

    Invariants: a key is never in two workers at once, and every add is followed by
    a processing of that key that starts after the add (nothing is lost).
    """
    queue: WorkQueue[int] = WorkQueue("stress")
    keys = 200
    producers = 4
    adds_per_producer = 2500
    lock = threading.Lock()
    in_flight: set[int] = set()
    violations: list[int] = []
    last_added: dict[int, int] = {}  # key -> sequence of its latest add
    last_started: dict[int, int] = {}  # key -> highest add sequence seen when a run started
    sequence = [0]
    processed = Counter[int]()

    def worker() -> None:
        while True:
            key = queue.get()
            if key is None:
                return
            with lock:
                if key in in_flight:
                    violations.append(key)
                in_flight.add(key)
                last_started[key] = last_added.get(key, 0)
            time.sleep(random.random() * 0.0002)
            with lock:
                in_flight.discard(key)
                processed[key] += 1
            queue.done(key)

    def producer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(adds_per_producer):
            key = rng.randrange(keys)
            with lock:
                sequence[0] += 1
                last_added[key] = sequence[0]
                queue.add(key)  # under the lock: an add is ordered with its sequence number
            if rng.random() < 0.05:
                time.sleep(0.0005)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
    for thread in workers:
        thread.start()
    feeders = [threading.Thread(target=producer, args=(seed,)) for seed in range(producers)]
    for thread in feeders:
        thread.start()
    for thread in feeders:
        thread.join(30)

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with lock:
            caught_up = all(last_started.get(k) == seq for k, seq in last_added.items())
            idle = not in_flight
        if caught_up and idle and len(queue) == 0:
            break
        time.sleep(0.01)
    assert queue.shut_down_with_drain(timeout=5)
    for thread in workers:
        thread.join(5)

    assert violations == []
    assert set(processed) == set(last_added)
    # Every key's latest add was seen by a run that started after it.
    assert all(last_started[k] == seq for k, seq in last_added.items())
    # De-duplication did its job: far fewer runs than adds.
    assert sum(processed.values()) <= producers * adds_per_producer


def test_unclaimed_is_called_for_items_no_waiting_get_will_take() -> None:
    queue: WorkQueue[str] = WorkQueue("q")
    calls: list[int] = []
    queue.when_unclaimed(lambda: calls.append(len(calls)))
    queue.add("a")
    queue.add("b")
    assert len(calls) == 2  # nobody waits: each item asks for a worker
    assert queue.get(timeout=1) == "a"
    assert len(calls) == 3  # handed one out with another still unclaimed
    assert queue.get(timeout=1) == "b"
    assert len(calls) == 3
    queue.done("a")
    queue.done("b")

    got: list[str | None] = []
    waiting = threading.Thread(target=lambda: got.append(queue.get(timeout=5)))
    waiting.start()
    deadline = time.monotonic() + 5
    while queue._takers == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.add("c")  # a get() waits for it: no call
    waiting.join(5)
    assert got == ["c"] and len(calls) == 3
    queue.add("d")  # nobody waits again
    assert len(calls) == 4
    queue.when_unclaimed(None)
    queue.add("e")
    assert len(calls) == 4
