from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kcp import certs
from kcp.certs import CertificateError, KeyPair, PrivateKey

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


@pytest.fixture
def ca_at_t0() -> KeyPair:
    return certs.new_certificate_authority(
        "etcd-ca", algorithm="ecdsa-p256", now=T0, validity=timedelta(days=30)
    )


def test_ca_is_self_signed_with_ca_constraints(rsa_ca: KeyPair) -> None:
    cert = rsa_ca.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "etcd-ca"
    constraints = _ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca  # type: ignore[attr-defined]
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign  # type: ignore[attr-defined]
    assert usage.value.digital_signature  # type: ignore[attr-defined]
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(rsa_ca.private_key.public_key())
    assert certs.verify_signed_by(cert, cert)
    assert rsa_ca.is_ca and certs.is_ca(cert)


def test_ca_validity_is_ten_years_backdated_for_clock_skew() -> None:
    ca = certs.new_certificate_authority("kubernetes", algorithm="ecdsa-p256", now=T0)
    assert ca.not_before == T0 - timedelta(minutes=5)
    assert ca.not_after == T0 + timedelta(days=3650)
    assert ca.not_after.tzinfo is not None
    assert isinstance(ca.private_key, ec.EllipticCurvePrivateKey)


def test_ca_uses_a_given_key(rsa_key: PrivateKey) -> None:
    ca = certs.new_certificate_authority("front-proxy-ca", private_key=rsa_key)
    assert certs.public_keys_equal(ca.certificate.public_key(), rsa_key.public_key())
    assert isinstance(ca.private_key, rsa.RSAPrivateKey)


def test_naive_now_is_taken_as_utc() -> None:
    ca = certs.new_certificate_authority(
        "c", algorithm="ecdsa-p256", now=T0.replace(tzinfo=None), validity=timedelta(days=1)
    )
    assert ca.not_after == T0 + timedelta(days=1)


def test_client_certificate(rsa_ca: KeyPair, rsa_key_2: PrivateKey) -> None:
    kp = certs.issue_certificate(
        rsa_ca,
        common_name="kubernetes-admin",
        organizations=["system:masters"],
        private_key=rsa_key_2,
    )
    cert = kp.certificate
    assert kp.subject == "CN=kubernetes-admin,O=system:masters"
    assert cert.issuer == rsa_ca.certificate.subject
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # type: ignore[call-overload]
    assert not _ext(cert, x509.BasicConstraints).value.ca  # type: ignore[attr-defined]
    usage = _ext(cert, x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment  # type: ignore[attr-defined]
    assert not usage.key_cert_sign  # type: ignore[attr-defined]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert certs.verify_signed_by(cert, rsa_ca.certificate)
    assert not kp.is_ca


def test_reuses_the_given_private_key(rsa_ca: KeyPair, rsa_key_2: PrivateKey) -> None:
    a = certs.issue_certificate(rsa_ca, common_name="etcd-client", private_key=rsa_key_2)
    b = certs.issue_certificate(rsa_ca, common_name="etcd-client", private_key=rsa_key_2)
    assert a.private_key is rsa_key_2 and b.private_key is rsa_key_2
    assert certs.public_keys_equal(a.certificate.public_key(), rsa_key_2.public_key())
    assert a.fingerprint != b.fingerprint
    assert a.certificate.serial_number != b.certificate.serial_number


def test_generates_a_key_of_the_requested_algorithm(ec_ca: KeyPair) -> None:
    kp = certs.issue_certificate(ec_ca, common_name="x", algorithm="ecdsa-p256")
    assert isinstance(kp.private_key, ec.EllipticCurvePrivateKey)
    assert certs.public_keys_equal(kp.certificate.public_key(), kp.private_key.public_key())
    usage = _ext(kp.certificate, x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment  # type: ignore[attr-defined]


def _key_usages(cert: x509.Certificate) -> set[str]:
    usage = _ext(cert, x509.KeyUsage).value
    flags = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
    flags += ("key_agreement", "key_cert_sign", "crl_sign")
    return {flag for flag in flags if getattr(usage, flag)}


def test_extensions_of_a_ca_and_a_leaf_in_order(rsa_ca: KeyPair, ec_ca: KeyPair) -> None:
    leaf = certs.issue_certificate(rsa_ca, common_name="x", dns_names=["x"]).certificate
    ec_leaf = certs.issue_certificate(ec_ca, common_name="y", algorithm="ecdsa-p256").certificate
    constraints = [x509.BasicConstraints, x509.KeyUsage]  # first, both critical
    rest = {
        rsa_ca.certificate: [x509.SubjectKeyIdentifier],
        leaf: [x509.ExtendedKeyUsage, x509.AuthorityKeyIdentifier, x509.SubjectAlternativeName],
    }
    for cert, expected in rest.items():
        assert [type(e.value) for e in cert.extensions] == [*constraints, *expected]
        assert [e.critical for e in cert.extensions] == [True, True] + [False] * len(expected)
    signing = {"digital_signature", "key_cert_sign", "crl_sign"}
    assert _key_usages(rsa_ca.certificate) == signing | {"key_encipherment"}
    assert _key_usages(ec_ca.certificate) == signing
    assert _key_usages(leaf) == {"digital_signature", "key_encipherment"}
    assert _key_usages(ec_leaf) == {"digital_signature"}
    assert not _ext(ec_leaf, x509.BasicConstraints).value.ca  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("usages", "expected"),
    [
        (("server",), [ExtendedKeyUsageOID.SERVER_AUTH]),
        (("client",), [ExtendedKeyUsageOID.CLIENT_AUTH]),
        (("peer",), [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        (("client", "server"), [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        ({"peer", "server"}, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
    ],
)
def test_extended_key_usages(
    ec_ca: KeyPair, ec_key: PrivateKey, usages: tuple[certs.Usage, ...], expected: list[object]
) -> None:
    kp = certs.issue_certificate(ec_ca, common_name="m1", usages=usages, private_key=ec_key)
    assert list(_ext(kp.certificate, x509.ExtendedKeyUsage).value) == expected  # type: ignore[call-overload]


def test_subject_alternative_names(ec_ca: KeyPair, ec_key: PrivateKey) -> None:
    kp = certs.issue_certificate(
        ec_ca,
        common_name="m1",
        usages=["peer"],
        dns_names=["m1", "localhost"],
        ip_addresses=["127.0.0.2", "::1"],
        private_key=ec_key,
    )
    san = _ext(kp.certificate, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["m1", "localhost"]  # type: ignore[attr-defined]
    assert san.get_values_for_type(x509.IPAddress) == [  # type: ignore[attr-defined]
        ipaddress.ip_address("127.0.0.2"),
        ipaddress.ip_address("::1"),
    ]


def test_authority_key_identifier_matches_the_ca(ec_ca: KeyPair, ec_key: PrivateKey) -> None:
    kp = certs.issue_certificate(ec_ca, common_name="x", private_key=ec_key)
    aki = _ext(kp.certificate, x509.AuthorityKeyIdentifier).value
    ski = _ext(ec_ca.certificate, x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest  # type: ignore[attr-defined]


def test_validity_and_clock_skew(ca_at_t0: KeyPair, ec_key: PrivateKey) -> None:
    now = T0 + timedelta(days=1)
    kp = certs.issue_certificate(
        ca_at_t0, common_name="x", validity=timedelta(hours=24), private_key=ec_key, now=now
    )
    assert kp.not_before == now - timedelta(minutes=5)
    assert kp.not_after == now + timedelta(hours=24)


def test_not_before_is_never_before_the_cas(ca_at_t0: KeyPair, ec_key: PrivateKey) -> None:
    kp = certs.issue_certificate(ca_at_t0, common_name="x", private_key=ec_key, now=T0)
    assert kp.not_before == ca_at_t0.not_before


def test_not_after_is_clamped_to_the_cas(ca_at_t0: KeyPair, ec_key: PrivateKey) -> None:
    kp = certs.issue_certificate(
        ca_at_t0,
        common_name="x",
        validity=timedelta(days=365),
        private_key=ec_key,
        now=T0 + timedelta(days=1),
    )
    assert kp.not_after == ca_at_t0.not_after


def test_an_expired_ca_cannot_issue(ca_at_t0: KeyPair, ec_key: PrivateKey) -> None:
    with pytest.raises(CertificateError, match=r"CA certificate \(CN=etcd-ca\) expired at"):
        certs.issue_certificate(
            ca_at_t0, common_name="x", private_key=ec_key, now=T0 + timedelta(days=31)
        )


def test_a_leaf_cannot_issue(ec_ca: KeyPair, ec_key: PrivateKey) -> None:
    leaf = certs.issue_certificate(ec_ca, common_name="leaf", private_key=ec_key)
    with pytest.raises(CertificateError, match=r"CN=leaf: it is not a CA certificate"):
        certs.issue_certificate(leaf, common_name="x", private_key=ec_key)


@pytest.mark.parametrize("usages", [(), ("admin",), ("client", "bogus")])
def test_invalid_usages(ec_ca: KeyPair, ec_key: PrivateKey, usages: tuple[str, ...]) -> None:
    with pytest.raises(CertificateError, match=r"use one or more of client, server, peer"):
        certs.issue_certificate(ec_ca, common_name="x", usages=usages, private_key=ec_key)  # type: ignore[arg-type]


def test_bad_ip_address(ec_ca: KeyPair, ec_key: PrivateKey) -> None:
    with pytest.raises(CertificateError, match=r"'m1\.local' is not an IP address; put host names"):
        certs.issue_certificate(
            ec_ca, common_name="x", ip_addresses=["m1.local"], private_key=ec_key
        )


def test_bad_common_names(ec_ca: KeyPair, ec_key: PrivateKey) -> None:
    with pytest.raises(CertificateError, match=r"common name is empty"):
        certs.issue_certificate(ec_ca, common_name="", private_key=ec_key)
    with pytest.raises(CertificateError, match=r"1 to 64 characters"):
        certs.issue_certificate(ec_ca, common_name="x" * 65, private_key=ec_key)
    with pytest.raises(CertificateError, match=r"1 to 64 characters"):
        certs.new_certificate_authority("x" * 65, algorithm="ecdsa-p256")


def test_a_single_string_is_not_split_into_characters(ec_ca: KeyPair, ec_key: PrivateKey) -> None:
    with pytest.raises(TypeError, match=r"organizations must be a sequence"):
        certs.issue_certificate(
            ec_ca, common_name="x", organizations="system:masters", private_key=ec_key
        )
    with pytest.raises(TypeError, match=r"usages must be a sequence"):
        certs.issue_certificate(ec_ca, common_name="x", usages="peer", private_key=ec_key)  # type: ignore[arg-type]


def test_validity_must_be_positive(ec_ca: KeyPair, ec_key: PrivateKey) -> None:
    with pytest.raises(CertificateError, match=r"validity must be positive"):
        certs.issue_certificate(ec_ca, common_name="x", validity=timedelta(0), private_key=ec_key)
    with pytest.raises(CertificateError, match=r"validity must be positive"):
        certs.new_certificate_authority("x", validity=-timedelta(days=1), private_key=ec_key)


def test_verify_signed_by_refuses_other_cas(
    ec_ca: KeyPair, rsa_ca: KeyPair, ec_key: PrivateKey
) -> None:
    leaf = certs.issue_certificate(ec_ca, common_name="x", private_key=ec_key)
    assert certs.verify_signed_by(leaf.certificate, ec_ca.certificate)
    assert not certs.verify_signed_by(leaf.certificate, rsa_ca.certificate)
    # Same subject, different key: the name matches but the signature does not.
    impostor = certs.new_certificate_authority("kubernetes", algorithm="ecdsa-p256")
    assert not certs.verify_signed_by(leaf.certificate, impostor.certificate)


def test_issuing_does_not_generate_a_key_when_one_is_given(
    ec_ca: KeyPair, ec_key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kcp.certs.authority as authority

    def fail(*_: object) -> None:
        raise AssertionError("generated a key")

    monkeypatch.setattr(authority, "generate_private_key", fail)
    certs.issue_certificate(ec_ca, common_name="x", private_key=ec_key)
