"""OwnWrites: which watch events only echo the reconciler's own writes."""

from __future__ import annotations

import threading
import time
from typing import Any

from kcp.controlplane.echoes import OwnWrites


def obj(version: str, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"uid": uid, "resourceVersion": version}}


def test_the_event_of_the_recorded_version_is_an_echo_once() -> None:
    own = OwnWrites()
    own.record(obj("5"))
    assert not own.is_echo("MODIFIED", obj("4"))
    assert own.is_echo("MODIFIED", obj("5"))
    assert not own.is_echo("MODIFIED", obj("5"))  # a relist of it later is not dropped again
    assert not own.is_echo("ADDED", obj("5"))
    assert own.echoes_dropped == 1


def test_other_objects_and_deletion_are_never_echoes() -> None:
    own = OwnWrites()
    own.record(obj("5"))
    assert not own.is_echo("MODIFIED", obj("5", uid="u2"))
    assert not own.is_echo("DELETED", obj("5"))
    assert not own.is_echo("MODIFIED", obj("5"))  # deletion forgot it


def test_an_event_that_overtakes_the_write_response_waits_for_it() -> None:
    own = OwnWrites(wait_timeout=5.0)
    verdict: list[bool] = []
    with own.writing(obj("4")):
        judge = threading.Thread(target=lambda: verdict.append(own.is_echo("MODIFIED", obj("5"))))
        judge.start()
        time.sleep(0.1)
        assert not verdict  # waiting for the response
        own.record(obj("5"))
    judge.join(5)
    assert verdict == [True]


def test_a_write_that_never_answers_does_not_hold_events_forever() -> None:
    own = OwnWrites(wait_timeout=0.1)
    with own.writing(obj("4")):
        started = time.monotonic()
        assert not own.is_echo("MODIFIED", obj("5"))
        assert time.monotonic() - started < 2.0


def test_latest_is_our_last_write_until_the_cache_shows_it() -> None:
    now = [0.0]
    own = OwnWrites(max_age=10.0, clock=lambda: now[0])
    cached = obj("4")
    assert own.latest(cached) is cached  # nothing written
    written = obj("5")
    own.record(written)
    assert own.latest(cached) is written  # the cache is behind our write
    assert own.latest(obj("5")) == obj("5")  # the cache caught up: its copy again
    assert own.latest(cached) is cached  # ... and the write is forgotten


def test_latest_forgets_the_write_once_its_echo_came_or_it_grew_old() -> None:
    now = [0.0]
    own = OwnWrites(max_age=10.0, clock=lambda: now[0])
    own.record(obj("5"))
    assert own.is_echo("MODIFIED", obj("5"))
    assert own.latest(obj("4"))["metadata"]["resourceVersion"] == "4"
    own.record(obj("7"))
    now[0] = 11.0  # an echo lost to a relist: the cache's copy is used again after a while
    assert own.latest(obj("6"))["metadata"]["resourceVersion"] == "6"
    own.record(obj("8"))
    own.is_echo("DELETED", obj("8"))
    assert own.latest(obj("6"))["metadata"]["resourceVersion"] == "6"
