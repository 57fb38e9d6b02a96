"""The one API client against a recording urllib3 pool: what it sends, what it raises."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3

from kcp.api import groups
from kcp.rest import ApiError, Kube, Resource, Unreachable, throttle_api_client


class _Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.reason = "Reason"
        self._body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.released = False

    def read(self) -> bytes:
        return self._body

    def release_conn(self) -> None:
        self.released = True


class _Pool:
    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        self.sent.append({"method": method, "url": url, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class _ApiClient:
    """What `Kube` uses of a `kubernetes.client.ApiClient`."""

    def __init__(self, *answers: Any) -> None:
        self.rest_client = type("Rest", (), {})()
        self.rest_client.pool_manager = _Pool(*answers)
        self.rest_client.request = lambda *a, **k: None

    def param_serialize(self, **kwargs: Any) -> tuple[Any, ...]:
        query = "&".join(f"{k}={v}" for k, v in kwargs["query_params"])
        url = f"https://api{kwargs['resource_path']}" + (f"?{query}" if query else "")
        headers = {**kwargs["header_params"], "authorization": "Bearer t"}
        return kwargs["method"], url, headers, kwargs["body"], []

    @property
    def sent(self) -> list[dict[str, Any]]:
        return self.rest_client.pool_manager.sent  # type: ignore[no-any-return]


def test_every_request_has_a_timeout_and_no_hidden_retries() -> None:
    api = _ApiClient(_Response(200, {"metadata": {"name": "a"}}))
    obj = Kube(api, timeout=(2.0, 7.0)).read(groups.SECRET, "ns", "a")
    assert obj["kind"] == "Secret" and obj["apiVersion"] == "v1"
    [sent] = api.sent
    assert sent["url"] == "https://api/api/v1/namespaces/ns/secrets/a"
    assert sent["retries"] is False
    assert (sent["timeout"].connect_timeout, sent["timeout"].read_timeout) == (2.0, 7.0)


def test_no_timeout_leaves_it_to_the_pool() -> None:
    api = _ApiClient(_Response(200, {}))
    Kube(api, timeout=None).list(groups.NODE)
    assert "timeout" not in api.sent[0]


def test_writes_carry_the_field_manager_and_apply_forces() -> None:
    api = _ApiClient(_Response(201, {}), _Response(200, {}), _Response(200, {}))
    kube = Kube(api, field_manager="me")
    kube.create(groups.MACHINE, "ns", {"metadata": {"name": "m"}})
    kube.merge_patch(groups.MACHINE, "ns", "m", {"status": {}}, subresource="status")
    kube.apply(groups.MACHINE, "ns", "m", {"spec": {}})
    create, patch, apply = api.sent
    assert create["url"].endswith("/namespaces/ns/machines?fieldManager=me")
    assert patch["url"].endswith("/machines/m/status?fieldManager=me")
    assert patch["headers"]["Content-Type"] == "application/merge-patch+json"
    assert apply["url"].endswith("/machines/m?fieldManager=me&force=true")
    assert apply["headers"]["Content-Type"] == "application/apply-patch+yaml"
    assert json.loads(apply["body"]) == {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Machine",
        "metadata": {"name": "m", "namespace": "ns"},
        "spec": {},
    }


def test_a_cluster_scoped_kind_ignores_the_namespace() -> None:
    api = _ApiClient(_Response(200, {"items": [{"metadata": {"name": "n"}}]}))
    [node] = Kube(api).list(groups.NODE, "ns")
    assert api.sent[0]["url"] == "https://api/api/v1/nodes"
    assert node["kind"] == "Node"


def test_error_status_and_no_answer() -> None:
    api = _ApiClient(
        _Response(404, {"kind": "Status", "reason": "NotFound", "message": "gone"}),
        _Response(409, {"kind": "Status", "reason": "AlreadyExists", "message": "taken"}),
        urllib3.exceptions.ProtocolError("reset"),
    )
    kube = Kube(api)
    assert kube.get(groups.SECRET, "ns", "a") is None
    with pytest.raises(ApiError) as taken:
        kube.create(groups.SECRET, "ns", {"metadata": {"name": "a"}})
    assert taken.value.conflict and taken.value.reason == "AlreadyExists"
    with pytest.raises(Unreachable, match="GET /api/v1/namespaces/ns/secrets/a: reset"):
        kube.get(groups.SECRET, "ns", "a")


def test_delete_options() -> None:
    api = _ApiClient(_Response(200, {}), _Response(404, {}))
    kube = Kube(api)
    assert kube.delete(groups.POD, "ns", "p", uid="u", grace_period_seconds=0)
    assert json.loads(api.sent[0]["body"]) == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
        "preconditions": {"uid": "u"},
        "gracePeriodSeconds": 0,
    }
    assert not kube.delete(groups.POD, "ns", "p")


def test_pages_follow_the_continue_token_with_metadata_only() -> None:
    api = _ApiClient(
        _Response(200, {"metadata": {"continue": "t", "resourceVersion": "5"}, "items": [{}]}),
        _Response(200, {"metadata": {"resourceVersion": "5"}, "items": [{}, {}]}),
    )
    pages = list(Kube(api).list_pages(groups.SECRET, "ns", page_size=1, metadata_only=True))
    assert [len(p.items) for p in pages] == [1, 2]
    assert "continue=t" in api.sent[1]["url"]
    assert all("PartialObjectMetadataList" in s["headers"]["Accept"] for s in api.sent)


def test_json_requests_wait_for_the_api_clients_token_bucket() -> None:
    api = _ApiClient(_Response(200, {}), _Response(200, {}))
    throttle_api_client(api, qps=1000, burst=1)
    bucket = api.rest_client._kcp_token_buckets.bucket("/api/v1/secrets")
    Kube(api).list(groups.SECRET)
    Kube(api).list(groups.SECRET)
    assert bucket._tokens < 0.5  # two tokens taken from the Secrets' bucket of one


def test_known_kinds_need_no_discovery() -> None:
    local = groups.LOCAL_MACHINE
    api = _ApiClient(
        _Response(200, {"preferredVersion": {"version": "v1"}}),
        _Response(200, {"resources": [{"kind": "Foo", "name": "foos", "namespaced": False}]}),
    )
    kube = Kube(api, known=groups.KNOWN_RESOURCES)
    assert kube.resource_for(local.group, local.kind) is local
    assert kube.resource_for("example.com", "Foo") == Resource(
        "example.com", "v1", "Foo", "foos", namespaced=False
    )
    assert kube.resource_for("example.com", "Foo").plural == "foos"  # cached
    assert len(api.sent) == 2
