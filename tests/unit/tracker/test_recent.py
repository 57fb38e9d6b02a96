"""Reads the reconciles of one cluster share for a few seconds."""

from __future__ import annotations

import pytest

from kcp.tracker.recent import RecentReads


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_read_younger_than_max_age_is_shared_and_an_older_one_is_read_again() -> None:
    clock = Clock()
    recent = RecentReads(clock)
    reads: list[int] = []

    def read() -> list[int]:
        reads.append(len(reads))
        return [len(reads)]

    assert recent.get("nodes", 2.0, read) == ([1], True)
    clock.now += 1.9
    assert recent.get("nodes", 2.0, read) == ([1], False)
    clock.now += 0.1  # aged from when it was asked: 2.0 s now
    assert recent.get("nodes", 2.0, read) == ([2], True)
    assert recent.get("pods", 2.0, read) == ([3], True), "each read has its own answer"
    assert len(reads) == 3


def test_a_failed_read_keeps_nothing_and_clear_forgets() -> None:
    clock = Clock()
    recent = RecentReads(clock)

    def broken() -> list[int]:
        raise OSError("connection refused")

    with pytest.raises(OSError):
        recent.get("nodes", 2.0, broken)
    assert recent.get("nodes", 2.0, lambda: [7]) == ([7], True)
    assert recent.get("nodes", 2.0, broken) == ([7], False)
    recent.clear()
    assert recent.get("nodes", 2.0, lambda: [8]) == ([8], True)
