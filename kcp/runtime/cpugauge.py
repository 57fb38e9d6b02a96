"""How much of a core this process has been using lately: what an elastic worker pool
looks at before it starts one more thread.

Python code runs one thread at a time. While the process is already using about a
core, another worker thread adds no throughput, only another contender for the
interpreter lock: each hand-over costs CPU time and every thread's wait grows (at
1000 clusters, 100 workers settled in 1.2x the time and CPU of 10).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["BUSY_CORES", "WINDOW_SECONDS", "CpuGauge"]

WINDOW_SECONDS = 0.25
"""The shortest stretch a reading covers."""

BUSY_CORES = 0.75
"""At or above this share of one core the process counts as busy."""


class CpuGauge:
    """CPU seconds the process used per second over its last finished window.

    Readings come from `update()`, called by whoever is about to decide; a window longer
    than four times `WINDOW_SECONDS` (nobody asked meanwhile) is dropped rather than
    averaged over, so the first look after a quiet spell reads as unknown.
    """

    def __init__(
        self,
        *,
        busy_cores: float = BUSY_CORES,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self.busy_cores = busy_cores
        self.window = window
        self._clock = clock
        self._cpu = cpu
        self._lock = threading.Lock()
        self._mark = (clock(), cpu())
        self._cores: float | None = None

    def update(self) -> None:
        """Close the current window if it is long enough."""
        now = self._clock()
        with self._lock:
            at, used = self._mark
            elapsed = now - at
            if elapsed < self.window:
                return
            cpu = self._cpu()
            self._cores = (cpu - used) / elapsed if elapsed <= 4 * self.window else None
            self._mark = (now, cpu)

    @property
    def cores(self) -> float | None:
        """The last reading; None when there is none from the last windows."""
        with self._lock:
            return self._cores

    def has_headroom(self) -> bool:
        """Whether the last reading is known and below `busy_cores`."""
        self.update()
        cores = self.cores
        return cores is not None and cores < self.busy_cores
