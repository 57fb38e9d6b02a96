"""A reconcile never acts on a cache that has not seen our own writes yet."""

from __future__ import annotations

from kcp.controlplane.expectations import Expectations


def test_creation_and_deletion_are_awaited_until_seen_or_timed_out() -> None:
    now = [0.0]
    expectations = Expectations(timeout=30.0, clock=lambda: now[0])
    expectations.expect_creation("kcp", "m1")
    expectations.expect_deletion("kcp", "m0")
    cached = {"m0": {"metadata": {}}}
    assert expectations.pending("kcp", cached) == [
        "creation of Machine m1",
        "deletion of Machine m0",
    ]
    cached = {"m0": {"metadata": {"deletionTimestamp": "x"}}, "m1": {"metadata": {}}}
    assert expectations.pending("kcp", cached) == []
    expectations.expect_creation("kcp", "m2")
    now[0] = 31.0
    assert expectations.pending("kcp", {}) == []
    assert expectations.pending("other", {}) == []
