from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from kcp import certs
from kcp.certs import CertificateError, KeyPair, PrivateKey

from .conftest import assert_no_key_material

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def leaf(ec_ca: KeyPair, ec_key: PrivateKey) -> KeyPair:
    return certs.issue_certificate(ec_ca, common_name="etcd-client", private_key=ec_key)


def test_properties(leaf: KeyPair) -> None:
    assert leaf.cert_pem == certs.encode_certificate(leaf.certificate)
    assert leaf.key_pem == certs.encode_private_key(leaf.private_key)
    assert leaf.fingerprint == certs.fingerprint(leaf.certificate)
    assert leaf.not_after == leaf.certificate.not_valid_after_utc
    assert leaf.not_before == leaf.certificate.not_valid_before_utc
    assert leaf.not_after.utcoffset() == timedelta(0)
    assert leaf.subject == "CN=etcd-client"


def test_repr_shows_subject_and_fingerprint_only(leaf: KeyPair, rsa_ca: KeyPair) -> None:
    for kp in (leaf, rsa_ca):
        text = repr(kp)
        assert text == f"KeyPair(subject={kp.subject!r}, fingerprint={kp.fingerprint!r})"
        assert str(kp) == text
        assert_no_key_material(text, kp.key_pem)
        assert_no_key_material(f"{kp}", kp.key_pem)


def test_frozen(leaf: KeyPair) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        leaf.private_key = leaf.private_key  # type: ignore[misc]


def test_equality_by_content(leaf: KeyPair, ec_ca: KeyPair) -> None:
    again = certs.load_key_pair(leaf.cert_pem, leaf.key_pem)
    assert again == leaf and hash(again) == hash(leaf)
    assert leaf != ec_ca
    assert leaf != "not a key pair"
    assert len({leaf, again, ec_ca}) == 2


def test_load_round_trip(rsa_ca: KeyPair) -> None:
    kp = certs.load_key_pair(rsa_ca.cert_pem, rsa_ca.key_pem, require_ca=True)
    assert kp == rsa_ca
    assert kp.fingerprint == rsa_ca.fingerprint


def test_load_accepts_pkcs8_keys(leaf: KeyPair) -> None:
    from cryptography.hazmat.primitives import serialization

    pkcs8 = leaf.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert certs.load_key_pair(leaf.cert_pem, pkcs8) == leaf


def test_load_names_the_garbage_half(leaf: KeyPair) -> None:
    with pytest.raises(CertificateError, match=r"^etcd CA certificate is not PEM") as e:
        certs.load_key_pair(b"garbage", leaf.key_pem, what="etcd CA")
    assert_no_key_material(str(e.value), leaf.key_pem)
    with pytest.raises(CertificateError, match=r"^etcd CA private key is not PEM"):
        certs.load_key_pair(leaf.cert_pem, b"garbage", what="etcd CA")
    with pytest.raises(CertificateError, match=r"^key pair private key is empty"):
        certs.load_key_pair(leaf.cert_pem, b"")


def test_load_refuses_a_key_of_another_certificate(
    leaf: KeyPair, ec_ca: KeyPair, rsa_ca: KeyPair
) -> None:
    for wrong in (ec_ca.key_pem, rsa_ca.key_pem):
        with pytest.raises(
            CertificateError, match=r"^etcd CA: the private key does not belong to the certificate"
        ) as e:
            certs.load_key_pair(leaf.cert_pem, wrong, what="etcd CA")
        assert "provide the private key that was generated with this certificate" in str(e.value)
        assert_no_key_material(str(e.value), wrong, leaf.key_pem)


def test_load_refuses_expired_and_not_yet_valid(ec_key: PrivateKey) -> None:
    ca = certs.new_certificate_authority(
        "old-ca", private_key=ec_key, now=T0, validity=timedelta(days=1)
    )
    with pytest.raises(CertificateError) as e:
        certs.load_key_pair(ca.cert_pem, ca.key_pem, now=T0 + timedelta(days=2))
    message = str(e.value)
    assert "key pair certificate (CN=old-ca) expired at 2030-01-02T12:00:00+00:00" in message
    assert "(now 2030-01-03T12:00:00+00:00)" in message
    assert "replace it" in message

    with pytest.raises(CertificateError) as e:
        certs.load_key_pair(ca.cert_pem, ca.key_pem, now=T0 - timedelta(hours=1))
    message = str(e.value)
    assert "is not valid before 2030-01-01T11:55:00+00:00" in message
    assert "check this machine's clock" in message

    assert certs.load_key_pair(ca.cert_pem, ca.key_pem, now=T0) == ca


def test_load_with_require_ca(leaf: KeyPair) -> None:
    assert certs.load_key_pair(leaf.cert_pem, leaf.key_pem) == leaf
    with pytest.raises(CertificateError, match=r"\(CN=etcd-client\) is not a CA certificate") as e:
        certs.load_key_pair(leaf.cert_pem, leaf.key_pem, require_ca=True)
    assert "provide the CA's certificate and key" in str(e.value)


def test_check_validity_boundaries(ec_key: PrivateKey) -> None:
    ca = certs.new_certificate_authority(
        "c", private_key=ec_key, now=T0, validity=timedelta(days=1)
    )
    certs.check_validity(ca.certificate, now=ca.not_before)
    certs.check_validity(ca.certificate, now=ca.not_after)
    with pytest.raises(CertificateError, match=r"^client cert \(CN=c\) expired"):
        certs.check_validity(
            ca.certificate, now=ca.not_after + timedelta(seconds=1), what="client cert"
        )
    with pytest.raises(CertificateError, match=r"not valid before"):
        certs.check_validity(ca.certificate, now=ca.not_before - timedelta(seconds=1))
    certs.check_validity(ca.certificate, now=T0.replace(tzinfo=None))


def test_check_validity_defaults_to_the_current_time(ec_ca: KeyPair) -> None:
    certs.check_validity(ec_ca.certificate)


def test_renewal_time(ec_ca: KeyPair, ec_key: PrivateKey) -> None:
    kp = certs.issue_certificate(
        ec_ca, common_name="x", validity=timedelta(hours=24), private_key=ec_key
    )
    life = kp.not_after - kp.not_before
    assert kp.renewal_time(0) == kp.not_before
    assert kp.renewal_time(1) == kp.not_after
    assert kp.renewal_time(2 / 3) == kp.not_before + life * 2 / 3
    with pytest.raises(ValueError, match="between 0 and 1"):
        kp.renewal_time(1.5)
