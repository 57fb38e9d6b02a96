from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import urllib3

from kcp import certs
from kcp.certs import KeyPair, Kubeconfig
from kcp.tracker.health import probe_api_server
from kcp.tracker.workload import WorkloadClient, ssl_context_for
from tests.unit.tracker.servers import https_server, silent_server


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return certs.new_certificate_authority("kubernetes", algorithm="ecdsa-p256")


def kubeconfig_for(ca: KeyPair, server: str, *, client_ca: KeyPair | None = None) -> Kubeconfig:
    admin = certs.issue_certificate(
        client_ca or ca,
        common_name="kubernetes-admin",
        organizations=("system:masters",),
        algorithm="ecdsa-p256",
    )
    return certs.parse_kubeconfig(
        certs.build_kubeconfig(
            cluster_name="w1",
            server=server,
            ca_pem=ca.cert_pem,
            client_cert_pem=admin.cert_pem,
            client_key_pem=admin.key_pem,
        )
    )


def memfds() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:kcp-tls"):
            found.append(target)
    return found


@pytest.fixture
def client_factory() -> Iterator[list[WorkloadClient]]:
    made: list[WorkloadClient] = []
    yield made
    for client in made:
        client.close()


def test_the_client_authenticates_with_the_kubeconfig_key_loaded_from_memory(
    ca: KeyPair, client_factory: list[WorkloadClient]
) -> None:
    with https_server(ca) as url:
        client = WorkloadClient(kubeconfig_for(ca, url), digest="d1", timeout=5.0)
        client_factory.append(client)
        result = probe_api_server(client, timeout=5.0)
    assert result.result == "success", result.error
    assert memfds() == []  # the anonymous file was closed right after loading


def test_the_server_is_verified_against_the_kubeconfig_ca(
    ca: KeyPair, client_factory: list[WorkloadClient]
) -> None:
    other = certs.new_certificate_authority("not-the-cluster-ca", algorithm="ecdsa-p256")
    with https_server(other) as url:
        # Trusts `ca` but the server's certificate comes from `other`.
        client = WorkloadClient(kubeconfig_for(ca, url, client_ca=other), digest="d", timeout=5.0)
        client_factory.append(client)
        result = probe_api_server(client, timeout=5.0)
    assert result.result == "failure"
    assert "CERTIFICATE_VERIFY_FAILED" in result.error or "certificate" in result.error.lower()


@pytest.mark.parametrize(("status", "expected"), [(401, "unauthorized"), (500, "failure")])
def test_answers_other_than_200_are_classified(
    ca: KeyPair, client_factory: list[WorkloadClient], status: int, expected: str
) -> None:
    with https_server(ca, status=status) as url:
        client = WorkloadClient(kubeconfig_for(ca, url), digest="d", timeout=5.0)
        client_factory.append(client)
        result = probe_api_server(client, timeout=5.0, kubeconfig_source="Secret ns/c1-kubeconfig")
    assert result.result == expected
    assert str(status) in result.error
    if status == 401:
        assert "check Secret ns/c1-kubeconfig" in result.error


def test_a_silent_server_is_a_timeout_within_the_probe_timeout(
    ca: KeyPair, client_factory: list[WorkloadClient]
) -> None:
    with silent_server() as (host, port):
        client = WorkloadClient(
            kubeconfig_for(ca, f"https://{host}:{port}"), digest="d", timeout=5.0
        )
        client_factory.append(client)
        started = time.monotonic()
        result = probe_api_server(client, timeout=0.3)
        elapsed = time.monotonic() - started
    assert result.result == "timeout"
    assert elapsed < 2.0


def test_kubernetes_calls_without_a_timeout_get_the_default_one(
    ca: KeyPair, client_factory: list[WorkloadClient]
) -> None:
    from kubernetes import client as k8s

    with silent_server() as (host, port):
        client = WorkloadClient(
            kubeconfig_for(ca, f"https://{host}:{port}"), digest="d", timeout=0.3
        )
        client_factory.append(client)
        started = time.monotonic()
        with pytest.raises((urllib3.exceptions.HTTPError, OSError)):
            k8s.VersionApi(client.api_client).get_code()  # no _request_timeout given
        assert time.monotonic() - started < 3.0


def test_ssl_context_refuses_a_key_that_does_not_match_the_certificate(ca: KeyPair) -> None:
    import ssl

    config = kubeconfig_for(ca, "https://127.0.0.1:1")
    stranger = certs.encode_private_key(certs.generate_private_key("ecdsa-p256"))
    broken = Kubeconfig(
        server=config.server,
        ca_pem=config.ca_pem,
        client_cert_pem=config.client_cert_pem,
        client_key_pem=stranger,
        token=None,
        cluster_name="w1",
    )
    with pytest.raises(ssl.SSLError):
        ssl_context_for(broken)
    assert memfds() == []


def test_close_drops_connections(ca: KeyPair) -> None:
    with https_server(ca) as url:
        client = WorkloadClient(kubeconfig_for(ca, url), digest="d", timeout=5.0)
        assert probe_api_server(client, timeout=5.0).ok
        client.close()
        assert client.closed
        assert "closed=True" in repr(client)
