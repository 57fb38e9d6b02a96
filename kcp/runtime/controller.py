"""A controller: a work queue of object keys drained by up to N worker threads into one reconciler.

The reconciler is a single callable `reconcile(key: ObjectKey) -> Result`. What it
may rely on: one key is never reconciled by two workers at once; an exception is
logged with the reconcile's context, counted and retried with per-item
exponential backoff; `Result(requeue_after=s)` reconciles the key again after `s`
seconds with its backoff reset, or kept with `backed_off=True`; `Result(requeue=True)`
retries with backoff.

Workers are started on demand, as many as there are keys ready at once, up to the
controller's concurrency, and one idle for `WORKER_IDLE_SECONDS` stops (one is kept): a
burst of changes to many clusters is reconciled with as many in flight as Cluster API's
KCP runs (its goroutines cost nothing idle; a Python thread does), and a fleet at rest
keeps one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from kcp.rest import ApiError
from kcp.runtime.logging import get_logger, reconcile_context
from kcp.runtime.metrics import ControllerMetricsRecorder, RuntimeMetrics, default_metrics
from kcp.runtime.ratelimit import RateLimiter
from kcp.runtime.workqueue import WorkQueue

DEFAULT_SYNC_PERIOD = 600.0
"""Seconds between resyncs that re-enqueue every known key (`--sync-period`, 10 min)."""

DEFAULT_STOP_TIMEOUT = 30.0
"""Seconds `Controller.stop` waits for in-flight reconciles by default."""

WORKER_IDLE_SECONDS = 30.0
"""A worker that found no key for this long stops, unless it is the last one."""

_log = get_logger("kcp.runtime.controller")


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """What a reconcile is about: a namespaced object's name (namespace "" if cluster-scoped)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Result:
    """What the reconciler asks for next: `requeue_after` seconds wins over `requeue`."""

    requeue_after: float | None = None
    requeue: bool = False
    backed_off: bool = False
    """The reconcile failed without raising (an error the user must fix) and `requeue_after`
    already holds the key's backoff, from the failures the queue's rate limiter keeps: they
    are kept too, not forgotten, until a reconcile succeeds."""


class Reconciler(Protocol):
    def __call__(self, key: ObjectKey) -> Result: ...


KeyLister = Callable[[], Iterable[ObjectKey]]


class Controller:
    """Runs `reconciler` on keys from its queue with up to `concurrency` worker threads."""

    def __init__(
        self,
        name: str,
        reconciler: Reconciler | Callable[[ObjectKey], Result],
        *,
        concurrency: int = 1,
        queue: WorkQueue[ObjectKey] | None = None,
        rate_limiter: RateLimiter | None = None,
        keys: KeyLister | None = None,
        sync_period: float = DEFAULT_SYNC_PERIOD,
        metrics: RuntimeMetrics | None = None,
        worker_idle_seconds: float = WORKER_IDLE_SECONDS,
    ) -> None:
        """`rate_limiter` is for the queue built when `queue` is None (client-go's default)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        families = metrics if metrics is not None else default_metrics()
        self.name = name
        self.concurrency = concurrency
        # `is None`, not `or`: an empty queue is falsy.
        self.queue: WorkQueue[ObjectKey] = (
            queue
            if queue is not None
            else WorkQueue(name, rate_limiter=rate_limiter, metrics=families.for_queue(name))
        )
        self._reconciler = reconciler
        self._keys = keys
        self._sync_period = sync_period
        self._metrics: ControllerMetricsRecorder = families.for_controller(name)
        self._metrics.max_concurrent_reconciles.set(concurrency)
        self._worker_idle_seconds = worker_idle_seconds
        self._workers: set[threading.Thread] = set()
        self._workers_started = 0
        self._resync_stop = threading.Event()
        self._resync_thread: threading.Thread | None = None
        self._started = False
        self._lock = threading.Lock()

    def enqueue(self, key: ObjectKey) -> None:
        """Ask for `key` to be reconciled (de-duplicated while it waits)."""
        self.queue.add(key)

    def start(self) -> None:
        """Start the workers and, when `keys` was given, the periodic resync."""
        with self._lock:
            if self._started:
                return
            self._started = True
            if self._keys is not None and self._sync_period > 0:
                self._resync_thread = threading.Thread(
                    target=self._resync, name=f"{self.name}-resync", daemon=True
                )
                self._resync_thread.start()
        # Keys ready and not taken start the workers they need; each worker that takes a
        # key with more waiting starts the next. Not under our lock: the queue calls back
        # under its own, and `_grow` takes ours inside it.
        self.queue.when_unclaimed(self._grow)
        with self._lock:
            self._start_worker_locked()
        _log.info("Starting workers", controller=self.name, worker_count=self.concurrency)

    @property
    def worker_count(self) -> int:
        """Worker threads running now (at most `concurrency`)."""
        with self._lock:
            return len(self._workers)

    def _grow(self) -> None:
        """A key is ready that no idle worker will take: start one more, up to the limit."""
        with self._lock:
            stopping = self._resync_stop.is_set()
            if self._started and not stopping and len(self._workers) < self.concurrency:
                self._start_worker_locked()

    def _start_worker_locked(self) -> None:
        worker = threading.Thread(
            target=self._work, name=f"{self.name}-worker-{self._workers_started}", daemon=True
        )
        self._workers_started += 1
        self._workers.add(worker)
        worker.start()

    def _retire(self) -> bool:
        """Whether the calling worker, idle, should stop (it is removed if so)."""
        with self._lock:
            if len(self._workers) <= 1:
                return False
            self._workers.discard(threading.current_thread())
            return True

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> bool:
        """Start no new reconcile and wait up to `timeout` s for those in flight.

        Returns False if some reconcile was still running when the time was up
        (its thread is a daemon and does not block the process from exiting).
        """
        deadline = time.monotonic() + timeout
        self._resync_stop.set()
        drained = self.queue.shut_down_with_drain(timeout)
        with self._lock:
            workers = list(self._workers)
        for thread in [*workers, self._resync_thread]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if not drained:
            _log.warning("Reconciles still running at shutdown", controller=self.name)
        else:
            _log.info("All workers finished", controller=self.name)
        return drained

    def resync(self) -> int:
        """Enqueue every key `keys()` returns now; returns how many."""
        if self._keys is None:
            return 0
        count = 0
        for key in self._keys():
            self.queue.add(key)
            count += 1
        return count

    def _resync(self) -> None:
        while not self._resync_stop.wait(self._sync_period):
            try:
                count = self.resync()
            except Exception as exc:
                _log.error("Resync failed", controller=self.name, error=repr(exc))
            else:
                _log.debug("Resynced", controller=self.name, keys=count)

    def _work(self) -> None:
        while True:
            key = self.queue.get(timeout=self._worker_idle_seconds)
            if key is None:
                if self.queue.shutting_down or self._retire():
                    return
                continue
            try:
                self._reconcile(key)
            except Exception as exc:  # a worker thread must outlive any bug
                _log.error("Worker error", controller=self.name, key=str(key), error=repr(exc))
            finally:
                self.queue.done(key)

    def _reconcile(self, key: ObjectKey) -> None:
        with reconcile_context(self.name, key.namespace, key.name):
            self._metrics.active_workers.inc()
            started = time.monotonic()
            try:
                result = self._reconciler(key)
                if not isinstance(result, Result):
                    raise TypeError(f"reconciler returned {type(result).__name__}, not Result")
            except Exception as exc:
                elapsed = time.monotonic() - started
                if isinstance(exc, ApiError) and exc.conflict:
                    # Another writer got there first: an expected race that the retry on
                    # fresh data settles, so no traceback and no error line to alarm anyone.
                    _log.info(
                        "Reconcile conflict, retrying",
                        error=str(exc),
                        retries=self.queue.num_requeues(key),
                    )
                else:
                    # A full traceback the first time a key fails, one line per retry after.
                    first = self.queue.num_requeues(key) == 0
                    _log.error(
                        "Reconciler error",
                        error=f"{type(exc).__name__}: {exc}",
                        retries=self.queue.num_requeues(key),
                        exc_info=first,
                    )
                self.queue.add_rate_limited(key)
                self._metrics.reconciled("error", elapsed)
                return
            finally:
                self._metrics.active_workers.dec()
            elapsed = time.monotonic() - started
            if result.requeue_after is not None and result.requeue_after > 0:
                if not result.backed_off:
                    self.queue.forget(key)
                self.queue.add_after(key, result.requeue_after)
                self._metrics.reconciled("requeue_after", elapsed)
            elif result.requeue:
                self.queue.add_rate_limited(key)
                self._metrics.reconciled("requeue", elapsed)
            else:
                self.queue.forget(key)
                self._metrics.reconciled("success", elapsed)
