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
