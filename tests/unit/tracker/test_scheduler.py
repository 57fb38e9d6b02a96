from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from kcp.tracker.scheduler import ProbeScheduler


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


class Checks:
    """Records checks; keys in ``hang`` block until released."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.max_running: Counter[str] = Counter()
        self.hang: set[str] = set()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1
            self.running[key] += 1
            self.max_running[key] = max(self.max_running[key], self.running[key])
        try:
            if key in self.hang:
                self.release.wait(10)
        finally:
            with self.lock:
                self.running[key] -= 1


@pytest.fixture
def checks() -> Iterator[Checks]:
    found = Checks()
    yield found
    found.release.set()


def test_every_scheduled_key_is_checked_periodically(checks: Checks) -> None:
    scheduler = ProbeScheduler(checks, interval=0.05, workers=2)
    try:
        for key in ("a", "b", "c"):
            scheduler.schedule(key)
        wait_for(lambda: all(checks.counts[k] >= 4 for k in ("a", "b", "c")))
    finally:
        scheduler.stop()


def test_a_hanging_check_neither_runs_twice_nor_delays_the_others(checks: Checks) -> None:
    checks.hang.add("sick")
    scheduler = ProbeScheduler(checks, interval=0.05, workers=2)
    try:
        scheduler.schedule("sick")
        wait_for(lambda: checks.running["sick"] == 1)
        healthy = [f"ok{i}" for i in range(10)]
        for key in healthy:
            scheduler.schedule(key)
        started = time.monotonic()
        wait_for(lambda: all(checks.counts[k] >= 5 for k in healthy))
        assert time.monotonic() - started < 3.0
        scheduler.schedule("sick")  # asked again while running: not started twice
        time.sleep(0.2)
        assert checks.counts["sick"] == 1
        assert checks.max_running["sick"] == 1
        checks.release.set()
        wait_for(lambda: checks.counts["sick"] >= 2)  # the request made meanwhile runs next
    finally:
        scheduler.stop()


def test_threads_are_bounded_by_workers_not_by_keys(checks: Checks) -> None:
    before = threading.active_count()
    scheduler = ProbeScheduler(checks, interval=0.05, workers=3)
    try:
        for i in range(200):
            scheduler.schedule(f"k{i}")
        wait_for(lambda: all(checks.counts[f"k{i}"] >= 1 for i in range(200)))
        assert threading.active_count() - before <= 3 + 1
    finally:
        scheduler.stop()


def test_unscheduled_keys_are_not_checked_again(checks: Checks) -> None:
    scheduler = ProbeScheduler(checks, interval=0.05, workers=1)
    try:
        scheduler.schedule("a")
        wait_for(lambda: checks.counts["a"] >= 2)
        scheduler.unschedule("a")
        time.sleep(0.1)
        seen = checks.counts["a"]
        time.sleep(0.3)
        assert checks.counts["a"] == seen
    finally:
        scheduler.stop()


def test_without_an_interval_a_key_runs_only_when_scheduled(checks: Checks) -> None:
    scheduler = ProbeScheduler(checks, interval=None, workers=1)
    try:
        scheduler.schedule("a")
        wait_for(lambda: checks.counts["a"] == 1)
        time.sleep(0.2)
        assert checks.counts["a"] == 1
        scheduler.schedule("a")
        wait_for(lambda: checks.counts["a"] == 2)
    finally:
        scheduler.stop()


def test_housekeeping_runs_about_once_a_second() -> None:
    calls: list[float] = []
    scheduler = ProbeScheduler(
        lambda key: None,
        interval=None,
        workers=1,
        housekeeping=lambda: calls.append(time.monotonic()),
    )
    try:
        wait_for(lambda: len(calls) >= 2, timeout=4.0)
    finally:
        scheduler.stop()


def test_a_check_returning_a_delay_is_run_again_after_it_not_the_interval() -> None:
    runs: list[float] = []

    def backing_off(key: str) -> float | None:
        runs.append(time.monotonic())
        return 0.3 if len(runs) < 3 else None

    scheduler = ProbeScheduler(backing_off, interval=0.02, workers=1)
    try:
        scheduler.schedule("a")
        wait_for(lambda: len(runs) >= 5)
    finally:
        scheduler.stop()
    gaps = [later - earlier for earlier, later in itertools.pairwise(runs)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.3  # backed off
    assert gaps[2] < 0.2 and gaps[3] < 0.2  # back to the interval


def test_a_delay_reschedules_a_key_even_without_an_interval() -> None:
    runs: list[float] = []

    def backing_off(key: str) -> float | None:
        runs.append(time.monotonic())
        return 0.05 if len(runs) < 3 else None

    scheduler = ProbeScheduler(backing_off, interval=None, workers=1)
    try:
        scheduler.schedule("a")
        wait_for(lambda: len(runs) == 3)
        time.sleep(0.2)
        assert len(runs) == 3
    finally:
        scheduler.stop()


def test_every_probe_thread_starts_with_the_scheduler(checks: Checks) -> None:
    """The thread count is the flag's from the start, not one that grows with the load."""

    def probe_threads() -> int:
        return sum(t.name.startswith("sized-probe") for t in threading.enumerate())

    scheduler: ProbeScheduler[str] = ProbeScheduler(checks, interval=60, workers=5, name="sized")
    try:
        wait_for(lambda: probe_threads() == 5)
        scheduler.schedule("only-one")
        wait_for(lambda: checks.counts["only-one"] >= 1)
        assert probe_threads() == 5
    finally:
        scheduler.stop()
