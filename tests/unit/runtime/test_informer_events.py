"""How an informer turns watch events into store changes and handler calls (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from kcp.rest import ApiError, Resource
from kcp.runtime.informer import Informer
from kcp.runtime.watching import WatchEvent, WatchStream

SECRETS = Resource("", "v1", "Secret", "secrets")


def secret(name: str, rv: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "labels": labels},
    }


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []

    def __call__(self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        old_rv = old["metadata"]["resourceVersion"] if old else None
        self.seen.append((event_type, obj["metadata"]["name"], old_rv))


def test_watch_events_update_store_resource_version_and_handlers() -> None:
    informer = Informer(None, SECRETS)
    events = Events()
    informer.add_handler(events)
    informer._apply(WatchEvent("ADDED", secret("a", "5")))
    informer._apply(WatchEvent("MODIFIED", secret("a", "6")))
    informer._apply(WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "9"}}))
    assert informer.last_resource_version == "9"
    informer._apply(WatchEvent("DELETED", secret("a", "10")))
    assert events.seen == [("ADDED", "a", None), ("MODIFIED", "a", "5"), ("DELETED", "a", None)]
    assert informer.last_resource_version == "10"
    assert informer.get("ns", "a") is None


def test_an_added_event_for_a_known_object_is_an_update() -> None:
    informer = Informer(None, SECRETS)
    events = Events()
    informer.add_handler(events)
    informer._apply(WatchEvent("ADDED", secret("a", "1")))
    informer._apply(WatchEvent("ADDED", secret("a", "2")))  # e.g. replayed after a restart
    assert events.seen == [("ADDED", "a", None), ("MODIFIED", "a", "1")]


def test_relist_replaces_the_store_and_counts() -> None:
    informer = Informer(None, SECRETS)
    events = Events()
    informer.add_handler(events)
    informer._replace({"ns/a": secret("a", "1"), "ns/b": secret("b", "1")}, "3", "streaming")
    assert informer.has_synced() and informer.wait_for_sync(0)
    assert (informer.lists, informer.relists, informer.initial_list_mode) == (1, 0, "streaming")
    informer._replace({"ns/b": secret("b", "4"), "ns/c": secret("c", "4")}, "5", "paginated")
    assert (informer.lists, informer.relists, informer.initial_list_mode) == (2, 1, "paginated")
    assert informer.last_resource_version == "5"
    assert sorted(events.seen[2:]) == [
        ("ADDED", "c", None),
        ("DELETED", "a", None),
        ("MODIFIED", "b", "1"),
    ]
    assert sorted(informer.keys()) == ["ns/b", "ns/c"]


def test_a_late_handler_first_receives_the_cached_objects() -> None:
    informer = Informer(None, SECRETS)
    informer._replace({"ns/a": secret("a", "1")}, "1", "streaming")
    late = Events()
    informer.add_handler(late)
    assert late.seen == [("ADDED", "a", None)]


def test_callbacks_or_handler_not_both() -> None:
    informer = Informer(None, SECRETS)
    added: list[str] = []
    informer.add_handler(on_add=lambda o: added.append(o["metadata"]["name"]))
    informer._apply(WatchEvent("ADDED", secret("a", "1")))
    assert added == ["a"]
    with pytest.raises(TypeError):
        informer.add_handler(Events(), on_add=lambda o: None)


def test_a_failing_handler_does_not_stop_the_others() -> None:
    informer = Informer(None, SECRETS)

    def broken(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        raise RuntimeError("boom")

    events = Events()
    informer.add_handler(broken)
    informer.add_handler(events)
    informer._apply(WatchEvent("ADDED", secret("a", "1")))
    assert events.seen == [("ADDED", "a", None)]


def test_list_by_namespace() -> None:
    informer = Informer(None, SECRETS)
    other = secret("b", "1")
    other["metadata"]["namespace"] = "other"
    informer._replace({"ns/a": secret("a", "1"), "other/b": other}, "1", "paginated")
    assert [o["metadata"]["name"] for o in informer.list("other")] == ["b"]
    assert len(informer.list()) == 2


def test_error_events_become_api_errors() -> None:
    stream = WatchStream(None, SECRETS)
    line = b'{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}}'
    with pytest.raises(ApiError) as error:
        stream._decode(line)
    assert error.value.gone
    event = stream._decode(b'{"type":"ADDED","object":{"metadata":{"resourceVersion":"7"}}}')
    assert event.type == "ADDED" and event.resource_version == "7"
    with pytest.raises(ApiError):
        stream._decode(b'{"type":"ADDED"}')
