"""Ops servers: /healthz, /readyz and /metrics on 127.0.0.1:0."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import Counter

from kcp.runtime.metrics import new_registry
from kcp.runtime.ops import OpsServer, health_server, metrics_server, parse_address


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode(), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers["Content-Type"]


def test_parse_address() -> None:
    assert parse_address(":9440") == ("", 9440)
    assert parse_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_address("[::1]:8080") == ("::1", 8080)
    assert parse_address("0") is None
    assert parse_address("") is None
    with pytest.raises(ValueError):
        parse_address("localhost")


def test_health_endpoints_report_each_failing_check_by_name() -> None:
    synced = [False]
    server = health_server(
        "127.0.0.1:0",
        healthz={"ping": lambda: None},
        readyz={
            "informers": lambda: None if synced[0] else "informers not synced: Secret",
            "manager": lambda: None,
        },
    )
    assert server is not None
    server.start()
    try:
        assert get(server.url + "/healthz")[:2] == (200, "ok")
        status, text, _ = get(server.url + "/readyz")
        assert status == 500
        assert "[-]informers failed: informers not synced: Secret" in text
        assert "[+]manager ok" in text
        assert get(server.url + "/readyz/manager")[0] == 200
        assert get(server.url + "/readyz/informers")[0] == 500
        synced[0] = True
        assert get(server.url + "/readyz")[:2] == (200, "ok")
        status, text, _ = get(server.url + "/readyz?verbose")
        assert status == 200 and "[+]informers ok" in text
        assert get(server.url + "/nope")[0] == 404
    finally:
        server.stop()


def test_a_check_that_raises_fails_the_probe_instead_of_crashing() -> None:
    def broken() -> str | None:
        raise RuntimeError("kaput")

    server = health_server("127.0.0.1:0", healthz={"broken": broken}, readyz={})
    assert server is not None
    server.start()
    try:
        status, text, _ = get(server.url + "/healthz")
        assert status == 500 and "RuntimeError: kaput" in text
    finally:
        server.stop()


def test_metrics_endpoint_serves_the_registry() -> None:
    registry = new_registry()
    Counter("kcp_test_things", "things", registry=registry).inc(3)
    server = metrics_server("127.0.0.1:0", registry)
    assert server is not None
    server.start()
    try:
        status, text, content_type = get(server.url + "/metrics")
        assert status == 200
        assert "kcp_test_things_total 3.0" in text
        assert "process_resident_memory_bytes" in text
        assert content_type.startswith("text/plain")
        status, text, content_type = get(
            server.url + "/metrics", {"Accept": "application/openmetrics-text"}
        )
        assert content_type.startswith("application/openmetrics-text")
        assert text.rstrip().endswith("# EOF")
    finally:
        server.stop()


def test_disabled_addresses_make_no_server() -> None:
    assert metrics_server("0", new_registry()) is None
    assert health_server("", healthz={}, readyz={}) is None
    with pytest.raises(ValueError):
        OpsServer("0", {})
