"""A text progress bar on stderr, so stdout stays free for the table and piping.

On a terminal the bar redraws in place; elsewhere (CI logs, pytest) it prints a
line when a step starts and at every tenth of its total, never a flood.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress"]

_WIDTH = 30


class Progress:
    """`step(label, total)` starts a step; `advance()` moves it; `note()` prints a line."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self._label = ""
        self._total = 0
        self._done = 0
        self._last_decile = -1
        self._started = time.monotonic()
        self._step_started = self._started
        self._lock = threading.Lock()

    def step(self, label: str, total: int = 0) -> None:
        """Begin a step of `total` units (0: a step without a count)."""
        with self._lock:
            self._finish_line()
            self._label, self._total, self._done = label, max(0, total), 0
            self._last_decile = -1
            self._step_started = time.monotonic()
            self._draw(force=True)

    def advance(self, amount: int = 1) -> None:
        with self._lock:
            self._done = min(self._total, self._done + amount) if self._total else self._done
            self._draw()

    def set(self, done: int) -> None:
        with self._lock:
            self._done = min(self._total, max(0, done))
            self._draw()

    def note(self, message: str) -> None:
        """A line of its own (a result or a warning) that does not break the bar."""
        if not self.enabled:
            return
        with self._lock:
            self._finish_line()
            self.stream.write(f"  {message}\n")
            self.stream.flush()
            self._draw(force=True)

    def close(self) -> None:
        with self._lock:
            self._finish_line()
            self._label = ""

    def _finish_line(self) -> None:
        if self.enabled and self.tty and self._label:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled or not self._label:
            return
        elapsed = time.monotonic() - self._started
        if self._total:
            fraction = self._done / self._total
            filled = int(_WIDTH * fraction)
            bar = "#" * filled + "." * (_WIDTH - filled)
            text = f"[{bar}] {self._done}/{self._total} {self._label}"
            decile = int(fraction * 10)
        else:
            text = f"[{'~' * _WIDTH}] {self._label}"
            decile = 0
        text = f"{text}  ({elapsed:5.0f}s)"
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
        elif force or decile != self._last_decile:
            self._last_decile = decile
            self.stream.write(text + "\n")
            self.stream.flush()
