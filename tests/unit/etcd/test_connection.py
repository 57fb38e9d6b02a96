"""TLS material checks and endpoint forms, before any network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kcp.certs import KeyPair, issue_certificate, new_certificate_authority
from kcp.etcd import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_DIAL_TIMEOUT,
    EtcdClient,
    EtcdTimeouts,
    EtcdTLS,
    EtcdTLSError,
    normalize_endpoint,
)


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_certificate_authority("etcd-ca", algorithm="ecdsa-p256")


@pytest.fixture(scope="module")
def client_pair(ca: KeyPair) -> KeyPair:
    return issue_certificate(ca, common_name="kcp", usages=("client",), algorithm="ecdsa-p256")


@pytest.mark.parametrize(
    ("given", "target"),
    [
        ("https://127.0.0.1:2379", "127.0.0.1:2379"),
        ("127.0.0.1:2379", "127.0.0.1:2379"),
        ("https://etcd-0.example:2379/", "etcd-0.example:2379"),
        ("https://[::1]:2379", "[::1]:2379"),
    ],
)
def test_endpoints_are_normalised_to_host_port(given: str, target: str) -> None:
    assert normalize_endpoint(given) == target


def test_an_endpoint_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="no port"):
        normalize_endpoint("https://etcd")


def test_timeout_defaults_match_the_cluster_api_flags() -> None:
    assert (DEFAULT_DIAL_TIMEOUT, DEFAULT_CALL_TIMEOUT) == (10.0, 15.0)
    assert EtcdTimeouts() == EtcdTimeouts(dial=10.0, call=15.0)
    with pytest.raises(ValueError, match="positive"):
        EtcdTimeouts(dial=0)


def test_the_tls_repr_names_fingerprints_never_the_key(client_pair: KeyPair, ca: KeyPair) -> None:
    tls = EtcdTLS(ca.cert_pem, client_pair.cert_pem, client_pair.key_pem)
    text = repr(tls) + str(tls)
    assert "PRIVATE KEY" not in text
    assert tls.cert_fingerprint[:12] in text


def test_garbage_material_is_refused_before_dialling(client_pair: KeyPair, ca: KeyPair) -> None:
    with pytest.raises(EtcdTLSError, match="etcd CA certificate"):
        EtcdClient.open(
            "127.0.0.1:2379", EtcdTLS(b"nope", client_pair.cert_pem, client_pair.key_pem)
        )
    with pytest.raises(EtcdTLSError, match="private key") as raised:
        EtcdClient.open("127.0.0.1:2379", EtcdTLS(ca.cert_pem, client_pair.cert_pem, b"garbage"))
    assert "garbage" not in str(raised.value)


def test_a_key_of_another_certificate_is_refused(client_pair: KeyPair, ca: KeyPair) -> None:
    other = issue_certificate(ca, common_name="other", usages=("client",), algorithm="ecdsa-p256")
    tls = EtcdTLS(ca.cert_pem, client_pair.cert_pem, other.key_pem)
    with pytest.raises(EtcdTLSError, match="does not belong") as raised:
        EtcdClient.open("127.0.0.1:2379", tls)
    assert other.key_pem.decode() not in str(raised.value)


def test_an_expired_client_certificate_is_refused() -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    ca = new_certificate_authority("etcd-ca", algorithm="ecdsa-p256", now=past)
    old = issue_certificate(
        ca,
        common_name="old",
        usages=("client",),
        algorithm="ecdsa-p256",
        validity=timedelta(hours=1),
        now=past,
    )
    with pytest.raises(EtcdTLSError, match="expired"):
        EtcdClient.open("127.0.0.1:2379", EtcdTLS(ca.cert_pem, old.cert_pem, old.key_pem))
