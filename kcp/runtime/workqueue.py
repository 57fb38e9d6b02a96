"""A work queue with client-go's semantics, for reconcile keys.

What a caller may rely on:

- an item waits in the queue at most once, however often it is added;
- an item is never handed to two workers at once: added while being processed,
  it is queued again when the worker calls `done()`;
- `add_rate_limited` retries with per-item exponential backoff (5 ms -> 1000 s by
  default), `forget` resets it, `add_after` delays an add on one timer thread;
- `get()` blocks until an item is ready and returns None once the queue is shut
  down. Unlike client-go, items still waiting are not handed out after shutdown:
  a stopping controller finishes what is in flight and starts nothing new.

One lock guards all state; workers and the timer thread wait on two conditions
over that lock so a wake-up for one never lands on the other. The number of
threads (one timer, started on the first delayed add) never depends on the
number of items. `when_unclaimed` tells the owner of the workers when an item is
ready that no waiting `get()` will take, so it can start a worker on demand.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from kcp.runtime.ratelimit import RateLimiter, default_controller_rate_limiter

T = TypeVar("T", bound=Hashable)

UnfinishedWorkProbe = Callable[[], tuple[float, float]]


class QueueMetrics(Protocol):
    """Hooks the queue calls; `kcp.runtime.metrics` implements them for Prometheus."""

    def add(self) -> None:
        """An add was accepted (not a duplicate of a waiting item)."""
        ...

    def depth(self, value: int) -> None:
        """Items now waiting to be handed out."""
        ...

    def queue_latency(self, seconds: float) -> None:
        """How long the item just handed out had waited."""
        ...

    def work_duration(self, seconds: float) -> None:
        """How long the item just marked done had been processed."""
        ...

    def retry(self) -> None:
        """A delayed or rate-limited add was requested."""
        ...

    def track_unfinished(self, probe: UnfinishedWorkProbe) -> None:
        """Register a probe returning (seconds of unfinished work, longest processor)."""
        ...


class NoQueueMetrics:
    """Metrics hooks that record nothing."""

    def add(self) -> None:
        pass

    def depth(self, value: int) -> None:
        pass

    def queue_latency(self, seconds: float) -> None:
        pass

    def work_duration(self, seconds: float) -> None:
        pass

    def retry(self) -> None:
        pass

    def track_unfinished(self, probe: UnfinishedWorkProbe) -> None:
        pass


class WorkQueue(Generic[T]):
    """De-duplicating, rate-limited, delaying work queue (client-go's RateLimitingQueue)."""

    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: RateLimiter | None = None,
        metrics: QueueMetrics | None = None,
    ) -> None:
        self.name = name
        self._rate_limiter = (
            rate_limiter if rate_limiter is not None else default_controller_rate_limiter()
        )
        self._metrics: QueueMetrics = metrics if metrics is not None else NoQueueMetrics()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._timer_wakeup = threading.Condition(self._lock)
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._added_at: dict[T, float] = {}
        self._processing: dict[T, float] = {}
        self._waiting: list[tuple[float, int, T]] = []
        self._waiting_until: dict[T, float] = {}
        self._sequence = itertools.count()
        self._shutting_down = False
        self._timer: threading.Thread | None = None
        self._takers = 0
        """`get()` calls waiting for an item."""
        self._unclaimed: Callable[[], None] | None = None
        self._metrics.track_unfinished(self.unfinished_work)

    def when_unclaimed(self, callback: Callable[[], None] | None) -> None:
        """Call `callback()` each time an item becomes ready or is handed out while more items
        are ready than `get()` calls wait for one. It runs under the queue's lock: it must be quick
        and must not call the queue (starting a thread that will call `get()` is fine)."""
        with self._lock:
            self._unclaimed = callback

    # -- the basic queue -------------------------------------------------

    def add(self, item: T) -> None:
        """Queue `item` unless it is already waiting; ignored after shutdown."""
        with self._lock:
            if not self._shutting_down:
                self._add_locked(item)

    def get(self, timeout: float | None = None) -> T | None:
        """Block until an item is ready and mark it processing; None on shutdown or timeout."""
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            self._takers += 1
            try:
                while not self._queue and not self._shutting_down:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._ready.wait(remaining)
            finally:
                self._takers -= 1
            if self._shutting_down:
                return None
            item = self._queue.popleft()
            self._dirty.discard(item)
            now = time.monotonic()
            self._processing[item] = now
            self._metrics.queue_latency(now - self._added_at.pop(item, now))
            self._metrics.depth(len(self._queue))
            self._claim_check_locked()
            return item

    def done(self, item: T) -> None:
        """Mark `item` processed; if it was added meanwhile, queue it again now."""
        with self._lock:
            started = self._processing.pop(item, None)
            if started is not None:
                self._metrics.work_duration(time.monotonic() - started)
            if self._shutting_down:
                if not self._processing:
                    self._ready.notify_all()
                return
            if item in self._dirty:
                self._push_locked(item)

    def __len__(self) -> int:
        """Items waiting to be handed out (not those processing or delayed)."""
        with self._lock:
            return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        with self._lock:
            return self._shutting_down

    def shut_down(self) -> None:
        """Stop accepting adds, wake every blocked `get()` with None, drop delayed adds."""
        with self._lock:
            self._shutting_down = True
            self._waiting.clear()
            self._waiting_until.clear()
            self._ready.notify_all()
            self._timer_wakeup.notify_all()

    def shut_down_with_drain(self, timeout: float | None = None) -> bool:
        """Shut down, then wait until every item in flight is `done()`.

        Returns False if `timeout` seconds passed with items still processing.
        """
        self.shut_down()
        with self._lock:
            return self._ready.wait_for(lambda: not self._processing, timeout)

    def unfinished_work(self) -> tuple[float, float]:
        """(total seconds spent so far on items in flight, seconds of the longest one)."""
        with self._lock:
            now = time.monotonic()
            ages = [now - started for started in self._processing.values()]
        return (sum(ages), max(ages, default=0.0))

    # -- delays and rate limiting -----------------------------------------

    def add_after(self, item: T, delay: float) -> None:
        """Add `item` once `delay` seconds have passed; an earlier pending time wins."""
        with self._lock:
            if self._shutting_down:
                return
            self._metrics.retry()
            if delay <= 0:
                self._add_locked(item)
                return
            ready_at = time.monotonic() + delay
            pending = self._waiting_until.get(item)
            if pending is not None and pending <= ready_at:
                return
            self._waiting_until[item] = ready_at
            heapq.heappush(self._waiting, (ready_at, next(self._sequence), item))
            if self._timer is None:
                self._timer = threading.Thread(
                    target=self._run_timer, name=f"workqueue-timer-{self.name}", daemon=True
                )
                self._timer.start()
            elif self._waiting[0][0] == ready_at:
                self._timer_wakeup.notify()

    def add_rate_limited(self, item: T) -> None:
        """Add `item` after its rate limiter's backoff (one more failure recorded)."""
        self.add_after(item, self._rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """Reset `item`'s backoff; call when it succeeded or will not be retried."""
        self._rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        """Failures recorded for `item` since it was last forgotten."""
        return self._rate_limiter.num_requeues(item)

    # -- internals (caller holds the lock) --------------------------------

    def _add_locked(self, item: T) -> None:
        if item in self._dirty:
            return
        self._metrics.add()
        self._dirty.add(item)
        if item not in self._processing:
            self._push_locked(item)

    def _push_locked(self, item: T) -> None:
        self._queue.append(item)
        self._added_at[item] = time.monotonic()
        self._metrics.depth(len(self._queue))
        self._ready.notify()
        self._claim_check_locked()

    def _claim_check_locked(self) -> None:
        # A woken taker still counts until it pops: each waiting taker claims one item.
        if self._unclaimed is not None and len(self._queue) > self._takers:
            self._unclaimed()

    def _run_timer(self) -> None:
        with self._lock:
            while not self._shutting_down:
                now = time.monotonic()
                while self._waiting and self._waiting[0][0] <= now:
                    ready_at, _, item = heapq.heappop(self._waiting)
                    if self._waiting_until.get(item) != ready_at:
                        continue  # superseded by an earlier add_after
                    del self._waiting_until[item]
                    self._add_locked(item)
                timeout = self._waiting[0][0] - now if self._waiting else None
                self._timer_wakeup.wait(timeout)
