"""Reads the reconciles of one cluster share for a few seconds, and nothing kept longer."""

from __future__ import annotations

import pytest

from kcp.tracker.recent import ClientReads, RecentReads


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_read_younger_than_max_age_is_shared_and_an_older_one_is_read_again() -> None:
    clock = Clock()
    reads = ClientReads(RecentReads(clock))
    made: list[int] = []

    def read() -> list[int]:
        made.append(len(made))
        return [len(made)]

    assert reads.get("nodes", 2.0, read) == ([1], True)
    clock.now += 1.9
    assert reads.get("nodes", 2.0, read) == ([1], False)
    clock.now += 0.1  # aged from when it was asked: 2.0 s now
    assert reads.get("nodes", 2.0, read) == ([2], True)
    assert reads.get("pods", 2.0, read) == ([3], True), "each read has its own answer"
    assert len(made) == 3


def test_clients_share_one_store_but_never_each_others_answers() -> None:
    clock = Clock()
    store = RecentReads(clock)
    first, second = ClientReads(store), ClientReads(store)
    assert first.get("nodes", 2.0, lambda: ["a"]) == (["a"], True)
    assert second.get("nodes", 2.0, lambda: ["b"]) == (["b"], True)
    assert first.get("nodes", 2.0, lambda: ["x"]) == (["a"], False)
    first.clear()
    assert len(store) == 1
    assert first.get("nodes", 2.0, lambda: ["c"]) == (["c"], True)


def test_answers_past_their_age_are_dropped_as_other_reads_go_on() -> None:
    clock = Clock()
    store = RecentReads(clock)
    for _cluster in range(100):
        ClientReads(store).get("nodes", 2.0, lambda: [0] * 1000)
    assert len(store) == 100
    clock.now += 2.5
    ClientReads(store).get("nodes", 2.0, lambda: [1])
    assert len(store) == 1, "a hundred clusters' old lists were kept"


def test_a_failed_read_keeps_nothing() -> None:
    clock = Clock()
    reads = ClientReads(RecentReads(clock))

    def broken() -> list[int]:
        raise OSError("connection refused")

    with pytest.raises(OSError):
        reads.get("nodes", 2.0, broken)
    assert reads.get("nodes", 2.0, lambda: [7]) == ([7], True)
    assert reads.get("nodes", 2.0, broken) == ([7], False)
