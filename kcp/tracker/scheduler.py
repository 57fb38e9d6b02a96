"""A bounded probe scheduler: one thread, a heap of due times, a small worker pool.

Threads are sized by options, never by the number of clusters (Cluster API was
criticised for a goroutine per cluster). The scheduler thread only pops due
clusters and hands them to the pool; a cluster whose previous check is still
running is not handed out again until it finishes, so a silent cluster holds at
most one worker and never delays the others' checks.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

import structlog

__all__ = ["ProbeScheduler"]

K = TypeVar("K")

_HOUSEKEEPING_PERIOD = 1.0
_WORKER_START_TIMEOUT = 10.0
"""Seconds the probe threads wait for each other to start (never reached in practice)."""
_JITTER = 0.1
"""Each interval is stretched or shrunk by up to 10 % so checks of many clusters spread out."""

_log = structlog.get_logger("kcp.tracker")


class ProbeScheduler(Generic[K]):
    """Runs ``check(key)`` for every scheduled key, again every ``interval`` seconds.

    ``interval=None`` runs a key only when ``schedule`` is called for it. A check that
    returns a number of seconds is run again that long after it finished instead (a
    backoff, applied even without an interval); one that returns None follows the interval.
    ``housekeeping()`` runs on the scheduler thread about once a second.
    """

    def __init__(
        self,
        check: Callable[[K], float | None],
        *,
        interval: float | None,
        workers: int,
        housekeeping: Callable[[], None] | None = None,
        name: str = "kcp-tracker",
    ) -> None:
        self._check = check
        self.interval = interval
        self._housekeeping = housekeeping
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, K]] = []
        self._planned: dict[K, tuple[int, float]] = {}
        """Token and due time of each waiting key's live heap entry (others are stale)."""
        self._tracked: set[K] = set()
        self._running: set[K] = set()
        self._again: set[K] = set()
        """Keys asked for while running: checked again as soon as they finish."""
        self._sequence = itertools.count()
        self._stopped = False
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-probe")
        self._start_every_worker(workers)
        self._thread = threading.Thread(target=self._loop, name=f"{name}-scheduler", daemon=True)
        self._thread.start()

    def _start_every_worker(self, workers: int) -> None:
        """Start all probe threads now (the executor would add them as load grows): the
        thread count is the flag's from the start, whatever the number of clusters."""
        all_started = threading.Barrier(workers)
        for _ in range(workers):
            # Each task holds its thread until every other task has one of its own.
            self._executor.submit(all_started.wait, _WORKER_START_TIMEOUT)

    # -- what the tracker calls ------------------------------------------------------------

    def schedule(self, key: K, delay: float = 0.0) -> None:
        """Check ``key`` after ``delay`` (sooner than already planned), then periodically."""
        with self._cond:
            if self._stopped:
                return
            self._tracked.add(key)
            if key in self._running:
                if delay <= 0:
                    self._again.add(key)
                return
            self._push(key, time.monotonic() + delay)

    def unschedule(self, key: K) -> None:
        """Stop checking ``key``; a check already running finishes but is not repeated."""
        with self._cond:
            self._tracked.discard(key)
            self._planned.pop(key, None)
            self._again.discard(key)

    def is_pending(self, key: K) -> bool:
        """Whether a check of ``key`` is running or due within the housekeeping period."""
        with self._cond:
            if key in self._running:
                return True
            planned = self._planned.get(key)
            return planned is not None and planned[1] <= time.monotonic() + _HOUSEKEEPING_PERIOD

    def running(self) -> int:
        with self._cond:
            return len(self._running)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the scheduler thread and the pool (running checks are not waited for)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals -------------------------------------------------------------------------

    def _push(self, key: K, due: float) -> None:
        current = self._planned.get(key)
        if current is not None and current[1] <= due:
            return  # already planned sooner
        token = next(self._sequence)
        self._planned[key] = (token, due)
        heapq.heappush(self._heap, (due, token, key))
        self._cond.notify()

    def _next_interval(self) -> float | None:
        if self.interval is None:
            return None
        return self.interval * (1.0 + random.uniform(-_JITTER, _JITTER))

    def _loop(self) -> None:
        next_housekeeping = time.monotonic() + _HOUSEKEEPING_PERIOD
        while True:
            ready: list[K] = []
            with self._cond:
                if self._stopped:
                    return
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, token, key = heapq.heappop(self._heap)
                    planned = self._planned.get(key)
                    if planned is None or planned[0] != token:
                        continue  # stale: re-planned or unscheduled
                    del self._planned[key]
                    self._running.add(key)
                    ready.append(key)
                if not ready:
                    wait = next_housekeeping - now
                    if self._heap:
                        wait = min(wait, self._heap[0][0] - now)
                    self._cond.wait(max(wait, 0.0))
            for key in ready:
                try:
                    self._executor.submit(self._run, key)
                except RuntimeError:  # shut down meanwhile
                    return
            if self._housekeeping is not None and time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + _HOUSEKEEPING_PERIOD
                try:
                    self._housekeeping()
                except Exception:
                    _log.exception("tracker housekeeping failed")

    def _run(self, key: K) -> None:
        started = time.monotonic()
        delay: float | None = None
        try:
            delay = self._check(key)
        except Exception:
            _log.exception("tracker check failed", cluster=str(key))
        finally:
            with self._cond:
                self._running.discard(key)
                if key in self._tracked and not self._stopped:
                    if key in self._again:
                        self._again.discard(key)
                        self._push(key, time.monotonic())
                    elif delay is not None:
                        self._push(key, time.monotonic() + delay)
                    else:
                        interval = self._next_interval()
                        if interval is not None:
                            self._push(key, max(started + interval, time.monotonic()))
