"""Informers against a real kube-apiserver and etcd: lists, watches, recovery, caching modes.

The only stand-ins are TCP-level: a silent server that accepts and never answers,
and a relay in front of the real API server that can stall (stop forwarding, as
a dead connection does) or cut every connection (a network partition).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from kcp.rest import (
    ACCEPT_METADATA,
    ACCEPT_METADATA_LIST,
    ApiError,
    Kube,
    Resource,
)
from kcp.runtime.controller import ObjectKey
from kcp.runtime.handlers import enqueue_by_label, enqueue_owner
from kcp.runtime.informer import Backoff, Informer
from kcp.runtime.store import label_index, label_index_value, owner_index, owner_index_value
from kcp.runtime.transforms import LAST_APPLIED_ANNOTATION

pytestmark = pytest.mark.integration

SECRETS = Resource("", "v1", "Secret", "secrets")
CONFIGMAPS = Resource("", "v1", "ConfigMap", "configmaps")
CLUSTER_LABEL = "cluster.x-k8s.io/cluster-name"
KCP_GROUP = "controlplane.cluster.x-k8s.io"

Event = tuple[str, str]


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def fast_backoff() -> Backoff:
    return Backoff(initial=0.1, maximum=1.0)


class Recorder:
    """Collects (event type, name) pairs and the requests an informer sent."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.requests: list[tuple[str, str, str]] = []  # (method, url, accept)
        self._lock = threading.Lock()

    def handler(self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        with self._lock:
            self.events.append((event_type, obj["metadata"]["name"]))

    def hook(self, method: str, url: str, headers: Any) -> None:
        with self._lock:
            self.requests.append((method, url, headers.get("Accept", "")))

    def has(self, event: Event) -> bool:
        with self._lock:
            return event in self.events


@contextlib.contextmanager
def running(informer: Informer, sync_timeout: float = 20.0) -> Iterator[Informer]:
    informer.start()
    try:
        assert informer.wait_for_sync(sync_timeout), "informer did not sync"
        yield informer
    finally:
        assert informer.stop(timeout=5.0), "informer thread did not stop"


def create_secret(
    core: Any,
    namespace: str,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    owners: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    data: str = "payload",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "labels": labels or {},
        "annotations": annotations or {},
    }
    if owners:
        metadata["ownerReferences"] = owners
    body = {"metadata": metadata, "stringData": {"value": data}}
    return core.create_namespaced_secret(namespace, body).to_dict()  # type: ignore[no-any-return]


# -- TCP-level stand-ins ---------------------------------------------------------------------


class SilentServer:
    """Accepts connections on 127.0.0.1 and never sends a byte (a hung peer)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._sock.accept()
                self.accepted.append(conn)

    def close(self) -> None:
        self._sock.close()
        for conn in self.accepted:
            conn.close()


class Relay:
    """A TCP relay to the API server that can stall (forward nothing) or cut all connections."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.stalled = False
        self.blocked = False
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._sock.accept()
                if self.blocked:
                    conn.close()
                    continue
                with self._lock:
                    self._conns.append(conn)
                if self.stalled:
                    continue  # hold it open, forward nothing
                try:
                    upstream = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    conn.close()
                    continue
                upstream.settimeout(None)
                with self._lock:
                    self._conns.append(upstream)
                for src, dst in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.stalled:
                    continue  # swallowed: the peer sees a connection that went quiet
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Close every relayed connection and refuse new ones until `restore`."""
        self.blocked = True
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def restore(self) -> None:
        self.blocked = False
        self.stalled = False

    def close(self) -> None:
        self.cut()
        self._sock.close()


def api_client_via(control_plane: Any, port: int, scheme: str = "https") -> Any:
    api = control_plane.api_client()
    api.configuration.host = f"{scheme}://127.0.0.1:{port}"
    return api


# -- metadata-only -----------------------------------------------------------------------------


def test_metadata_only_secret_cache_holds_no_data(
    control_plane: Any, api_client: Any, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    create_secret(
        core,
        namespace,
        "before",
        labels={CLUSTER_LABEL: "c1"},
        annotations={LAST_APPLIED_ANNOTATION: '{"data": "a copy"}', "keep": "me"},
        data="s3cr3t",
    )
    recorder = Recorder()
    informer = Informer(
        api_client, SECRETS, namespace=namespace, metadata_only=True, request_hook=recorder.hook
    )
    informer.add_handler(recorder.handler)
    with running(informer):
        create_secret(core, namespace, "after", data="m0re")
        wait_for(lambda: informer.get(namespace, "after") is not None, what="the new secret")

        for name in ("before", "after"):
            cached = informer.get(namespace, name)
            assert cached is not None
            assert set(cached) == {"apiVersion", "kind", "metadata"}, cached
            assert cached["kind"] == "Secret" and "data" not in cached
            assert cached["metadata"]["name"] == name
        before = informer.get(namespace, "before")
        assert before is not None
        assert before["metadata"]["labels"] == {CLUSTER_LABEL: "c1"}
        # the default transform dropped what the server sent but nobody reads
        assert before["metadata"]["annotations"] == {"keep": "me"}
        assert "managedFields" not in before["metadata"]
        assert "managedFields" in Kube(api_client).read(SECRETS, namespace, "before")["metadata"]

        assert recorder.requests, "no request recorded"
        for method, url, accept in recorder.requests:
            assert method == "GET"
            query = parse_qs(urlparse(url).query)
            expected = ACCEPT_METADATA if query.get("watch") == ["true"] else ACCEPT_METADATA_LIST
            assert accept == expected
        assert informer.last_accept_headers["watch"] == (
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
        )

        live = Kube(api_client).read(SECRETS, namespace, "before")
        assert live["data"] == {"value": "czNjcjN0"}  # base64 of "s3cr3t"
        assert live["kind"] == "Secret"
        with pytest.raises(ApiError) as missing:
            Kube(api_client).read(SECRETS, namespace, "nope")
        assert missing.value.not_found


# -- streaming list vs paginated list -------------------------------------------------------


def test_streaming_list_when_the_watchlist_gate_is_on(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    for i in range(12):
        create_secret(core, namespace, f"s{i:02d}")
    recorder = Recorder()
    informer = Informer(
        api_client, SECRETS, namespace=namespace, page_size=5, request_hook=recorder.hook
    )
    with running(informer):
        assert informer.initial_list_mode == "streaming"
        assert informer.streaming_list_supported is True
        assert len(informer.list()) == 12
        assert informer.get(namespace, "s03")["data"] == {"value": "cGF5bG9hZA=="}  # type: ignore[index]
        assert int(informer.last_resource_version) > 0
        first = parse_qs(urlparse(recorder.requests[0][1]).query)
        assert first["sendInitialEvents"] == ["true"]
        assert first["resourceVersionMatch"] == ["NotOlderThan"]
        assert first["allowWatchBookmarks"] == ["true"]
        assert 300 <= int(first["timeoutSeconds"][0]) <= 600
        assert not any("limit" in parse_qs(urlparse(url).query) for _, url, _ in recorder.requests)


def test_paginated_list_when_the_watchlist_gate_is_off(control_plane_watchlist_off: Any) -> None:
    api = control_plane_watchlist_off.api_client()
    core: Any = client.CoreV1Api(api)
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": namespace}})
    for i in range(12):
        create_secret(core, namespace, f"s{i:02d}")
    recorder = Recorder()
    informer = Informer(
        api,
        SECRETS,
        namespace=namespace,
        page_size=5,
        metadata_only=True,
        request_hook=recorder.hook,
    )
    informer.add_handler(recorder.handler)
    with running(informer):
        assert informer.initial_list_mode == "paginated"
        assert informer.streaming_list_supported is False
        assert len(informer.list()) == 12
        assert all("data" not in o for o in informer.list())

        list_rv = informer.last_resource_version
        wait_for(lambda: len(recorder.requests) >= 5, what="the watch after the list")
        queries = [(parse_qs(urlparse(url).query), accept) for _, url, accept in recorder.requests]
        lists = [(q, a) for q, a in queries if "watch" not in q]
        assert len(lists) == 3  # 5 + 5 + 2
        assert all(q["limit"] == ["5"] and a == ACCEPT_METADATA_LIST for q, a in lists)
        assert ["continue" in q for q, _ in lists] == [False, True, True]
        watches = [(q, a) for q, a in queries if q.get("watch") == ["true"]]
        assert watches[0][0]["sendInitialEvents"] == ["true"]  # tried first, rejected
        assert watches[1][0]["resourceVersion"] == [list_rv]  # then watched from the list
        assert "sendInitialEvents" not in watches[1][0]
        assert all(a == ACCEPT_METADATA for _, a in watches)

        create_secret(core, namespace, "late")
        wait_for(lambda: recorder.has(("ADDED", "late")), what="ADDED late via the watch")
    core.delete_namespace(namespace)


# -- events, indexes, selectors ---------------------------------------------------------------


def test_add_update_delete_events_and_indexes(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    owner_ref = {
        "apiVersion": f"{KCP_GROUP}/v1beta2",
        "kind": "KubeadmControlPlane",
        "name": "kcp1",
        "uid": str(uuid.uuid4()),
        "controller": True,
    }
    create_secret(core, namespace, "c1-ca", labels={CLUSTER_LABEL: "c1"}, owners=[owner_ref])
    recorder = Recorder()
    owners_enqueued: list[ObjectKey] = []
    clusters_enqueued: list[ObjectKey] = []
    informer = Informer(api_client, SECRETS, namespace=namespace, metadata_only=True)
    informer.add_indexer("cluster", label_index(CLUSTER_LABEL))
    informer.add_indexer("owner", owner_index)
    informer.add_handler(recorder.handler)
    informer.add_handler(
        enqueue_owner("KubeadmControlPlane", KCP_GROUP).bind(owners_enqueued.append)
    )
    informer.add_handler(enqueue_by_label(CLUSTER_LABEL).bind(clusters_enqueued.append))
    with running(informer):
        create_secret(core, namespace, "c1-etcd", labels={CLUSTER_LABEL: "c1"}, owners=[owner_ref])
        create_secret(core, namespace, "c2-ca", labels={CLUSTER_LABEL: "c2"})
        core.patch_namespaced_secret(
            "c1-ca", namespace, {"metadata": {"labels": {CLUSTER_LABEL: "c2"}}}
        )
        core.delete_namespaced_secret("c2-ca", namespace)
        wait_for(lambda: recorder.has(("DELETED", "c2-ca")), what="the delete event")

        assert recorder.events == [
            ("ADDED", "c1-ca"),
            ("ADDED", "c1-etcd"),
            ("ADDED", "c2-ca"),
            ("MODIFIED", "c1-ca"),
            ("DELETED", "c2-ca"),
        ]

        def names(index: str, value: str) -> list[str]:
            return [o["metadata"]["name"] for o in informer.by_index(index, value)]

        assert names("cluster", label_index_value(namespace, "c1")) == ["c1-etcd"]
        assert names("cluster", label_index_value(namespace, "c2")) == ["c1-ca"]
        owned = names("owner", owner_index_value("KubeadmControlPlane", namespace, "kcp1"))
        assert owned == ["c1-ca", "c1-etcd"]

        assert set(owners_enqueued) == {ObjectKey(namespace, "kcp1")}
        # the relabelled secret woke both its old and its new cluster
        assert set(clusters_enqueued) == {ObjectKey(namespace, "c1"), ObjectKey(namespace, "c2")}


def test_label_and_field_selectors(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    create_secret(core, namespace, "mine", labels={"app": "kcp"})
    create_secret(core, namespace, "other", labels={"app": "else"})
    by_label = Informer(api_client, SECRETS, namespace=namespace, label_selector="app=kcp")
    by_field = Informer(
        api_client, SECRETS, namespace=namespace, field_selector="metadata.name=other"
    )
    everywhere = Informer(api_client, SECRETS, label_selector="app=kcp", metadata_only=True)
    with running(by_label), running(by_field), running(everywhere):
        assert [o["metadata"]["name"] for o in by_label.list()] == ["mine"]
        assert [o["metadata"]["name"] for o in by_field.list()] == ["other"]
        assert everywhere.get(namespace, "mine") is not None  # all namespaces
        create_secret(core, namespace, "mine-too", labels={"app": "kcp"})
        wait_for(lambda: by_label.get(namespace, "mine-too") is not None, what="mine-too")
        assert by_field.get(namespace, "mine-too") is None


# -- recovery --------------------------------------------------------------------------------


def test_watch_recovers_after_the_apiserver_restarts(
    control_plane: Any, api_client: Any, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    create_secret(core, namespace, "before")
    recorder = Recorder()
    informer = Informer(
        control_plane.api_client(), SECRETS, namespace=namespace, backoff=fast_backoff()
    )
    informer.add_handler(recorder.handler)
    with running(informer):
        restarts = informer.watch_restarts
        control_plane.restart_apiserver()
        create_secret(core, namespace, "after-restart")
        wait_for(
            lambda: recorder.has(("ADDED", "after-restart")), timeout=30, what="event after restart"
        )
        assert informer.watch_restarts > restarts
        assert informer.get(namespace, "before") is not None
        core.delete_namespaced_secret("before", namespace)
        wait_for(lambda: recorder.has(("DELETED", "before")), what="delete after restart")


def test_relist_after_410_reports_what_changed_while_away(
    control_plane: Any, api_client: Any, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    for name in ("stays", "changes", "vanishes"):
        create_secret(core, namespace, name)
    relay = Relay(control_plane.apiserver_port)
    recorder = Recorder()
    informer = Informer(
        api_client_via(control_plane, relay.port),
        SECRETS,
        namespace=namespace,
        backoff=fast_backoff(),
    )
    informer.add_handler(recorder.handler)
    try:
        with running(informer):
            old_rv = informer.last_resource_version
            relay.cut()  # the informer is cut off, its watch can only resume from old_rv
            core.delete_namespaced_secret("vanishes", namespace)
            core.patch_namespaced_secret("changes", namespace, {"stringData": {"value": "new"}})
            create_secret(core, namespace, "appears")
            control_plane.compact_etcd()  # the history after old_rv is gone from etcd...
            control_plane.restart_apiserver()  # ...and from the API server's watch cache
            relay.restore()

            wait_for(lambda: informer.relists >= 1, timeout=30, what="a re-list after 410")
            wait_for(lambda: recorder.has(("DELETED", "vanishes")), what="synthetic DELETED")
            assert recorder.has(("ADDED", "appears"))
            assert recorder.has(("MODIFIED", "changes"))
            assert not recorder.has(("MODIFIED", "stays"))  # unchanged objects are no news
            assert sorted(o["metadata"]["name"] for o in informer.list()) == [
                "appears",
                "changes",
                "stays",
            ]
            assert int(informer.last_resource_version) > int(old_rv)
            # and the watch works again afterwards
            create_secret(core, namespace, "later")
            wait_for(lambda: recorder.has(("ADDED", "later")), what="event after the re-list")
    finally:
        relay.close()


def test_a_silent_server_is_abandoned_after_the_inactivity_timeout() -> None:
    silent = SilentServer()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{silent.port}"
    informer = Informer(
        client.ApiClient(configuration),
        SECRETS,
        inactivity_timeout=1.0,
        backoff=Backoff(initial=0.1, maximum=0.2),
    )
    try:
        informer.start()
        # each round: the streaming list times out, then the paginated fallback does
        wait_for(lambda: informer.watch_restarts >= 2, timeout=15, what="2 restarts")
        assert informer.inactivity_timeouts >= 3
        assert not informer.has_synced()
        assert len(silent.accepted) >= 3  # each attempt gave up its connection and made a new one
    finally:
        started = time.monotonic()
        assert informer.stop(timeout=3.0)
        assert time.monotonic() - started < 2.5
        silent.close()


def test_a_stalled_watch_is_abandoned_and_resumed_without_a_relist(
    control_plane: Any, api_client: Any, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    relay = Relay(control_plane.apiserver_port)
    recorder = Recorder()
    informer = Informer(
        api_client_via(control_plane, relay.port),
        SECRETS,
        namespace=namespace,
        inactivity_timeout=2.0,
        backoff=fast_backoff(),
    )
    informer.add_handler(recorder.handler)
    try:
        with running(informer):
            timeouts = informer.inactivity_timeouts
            relay.stalled = True  # the TCP stream stays open but nothing gets through
            create_secret(core, namespace, "during-stall")
            wait_for(lambda: informer.inactivity_timeouts > timeouts, timeout=10, what="a timeout")
            assert not recorder.has(("ADDED", "during-stall"))
            relay.restore()
            wait_for(lambda: recorder.has(("ADDED", "during-stall")), what="the missed event")
            assert informer.relists == 0  # resumed from the last resourceVersion
            started = time.monotonic()
        assert time.monotonic() - started < 2.0  # stop() closed the open stream at once
    finally:
        relay.close()
