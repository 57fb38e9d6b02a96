from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from kcp import certs
from kcp.certs import CertificateError, KeyPair, PrivateKey

from .conftest import assert_no_key_material, pem_label


def _pkcs8(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_rsa_key_is_written_as_pkcs1_like_kubeadm(rsa_key: PrivateKey) -> None:
    pem = certs.encode_private_key(rsa_key)
    assert pem_label(pem) == "RSA PRIVATE KEY"
    decoded = certs.decode_private_key(pem)
    assert certs.public_keys_equal(decoded.public_key(), rsa_key.public_key())


def test_ec_key_is_written_as_sec1(ec_key: PrivateKey) -> None:
    pem = certs.encode_private_key(ec_key)
    assert pem_label(pem) == "EC PRIVATE KEY"
    decoded = certs.decode_private_key(pem)
    assert certs.public_keys_equal(decoded.public_key(), ec_key.public_key())


@pytest.mark.parametrize("which", ["rsa", "ec"])
def test_pkcs8_is_accepted(which: str, rsa_key: PrivateKey, ec_key: PrivateKey) -> None:
    key = rsa_key if which == "rsa" else ec_key
    pem = _pkcs8(key)
    assert pem_label(pem) == "PRIVATE KEY"
    assert certs.public_keys_equal(certs.decode_private_key(pem).public_key(), key.public_key())


def test_skip_rsa_validation_still_parses(rsa_key: PrivateKey) -> None:
    pem = certs.encode_private_key(rsa_key)
    key = certs.decode_private_key(pem, skip_rsa_validation=True)
    assert certs.public_keys_equal(key.public_key(), rsa_key.public_key())


def test_str_input_is_accepted(ec_key: PrivateKey, ec_ca: KeyPair) -> None:
    key = certs.decode_private_key(certs.encode_private_key(ec_key).decode())  # type: ignore[arg-type]
    assert certs.public_keys_equal(key.public_key(), ec_key.public_key())
    cert = certs.decode_certificate(ec_ca.cert_pem.decode())  # type: ignore[arg-type]
    assert cert == ec_ca.certificate


def test_key_after_a_certificate_in_one_pem(ec_ca: KeyPair) -> None:
    key = certs.decode_private_key(ec_ca.cert_pem + ec_ca.key_pem)
    assert certs.public_keys_equal(key.public_key(), ec_ca.private_key.public_key())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"my key is empty; provide an unencrypted PEM private key"),
        (b"   \n", r"my key is empty"),
        (b"hello world", r"my key is not PEM \(no -+BEGIN PRIVATE\sKEY-+ line\)"),
        (b"\x00\xff\xfe binary", r"my key is not PEM"),
    ],
)
def test_private_key_garbage(data: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        certs.decode_private_key(data, what="my key")


def test_private_key_truncated(ec_key: PrivateKey) -> None:
    pem = certs.encode_private_key(ec_key)
    lines = pem.splitlines(keepends=True)
    truncated = b"".join(lines[:2] + lines[-1:])
    with pytest.raises(CertificateError, match=r"cannot be parsed \(truncated or corrupted\)") as e:
        certs.decode_private_key(truncated)
    assert_no_key_material(str(e.value), pem)


def test_private_key_given_a_certificate(ec_ca: KeyPair) -> None:
    with pytest.raises(
        CertificateError, match=r"holds PEM block\(s\) CERTIFICATE but no PRIVATE KEY"
    ):
        certs.decode_private_key(ec_ca.cert_pem)


def test_private_key_base64_encoded_twice(ec_key: PrivateKey) -> None:
    pem = certs.encode_private_key(ec_key)
    with pytest.raises(CertificateError, match=r"base64 of PEM rather than PEM") as e:
        certs.decode_private_key(base64.b64encode(pem))
    assert_no_key_material(str(e.value), pem)


def test_encrypted_private_key_is_refused(ec_key: PrivateKey) -> None:
    encrypted = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(CertificateError, match=r"is encrypted; store the private key unencrypted"):
        certs.decode_private_key(encrypted)
    traditional = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(CertificateError, match=r"is encrypted"):
        certs.decode_private_key(traditional)


def test_swap_hint_only_when_the_other_half_is_there(ec_ca: KeyPair) -> None:
    with pytest.raises(CertificateError, match=r"swapped\?"):
        certs.decode_private_key(ec_ca.cert_pem)
    csr = b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(CertificateError, match=r"CERTIFICATE REQUEST but no CERTIFICATE") as e:
        certs.decode_certificate(csr)
    assert "swapped" not in str(e.value)


def test_unsupported_key_type_is_refused() -> None:
    pem = _pkcs8(ed25519.Ed25519PrivateKey.generate())  # type: ignore[arg-type]
    with pytest.raises(CertificateError, match=r"is a Ed25519 key; only RSA and ECDSA"):
        certs.decode_private_key(pem)


def test_certificate_round_trip(ec_ca: KeyPair) -> None:
    pem = certs.encode_certificate(ec_ca.certificate)
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert certs.decode_certificate(pem) == ec_ca.certificate


def test_decode_certificate_takes_the_first_of_a_bundle(ec_ca: KeyPair) -> None:
    leaf = certs.issue_certificate(ec_ca, common_name="leaf", algorithm="ecdsa-p256")
    bundle = leaf.cert_pem + ec_ca.cert_pem
    assert certs.decode_certificate(bundle) == leaf.certificate
    assert certs.decode_certificates(bundle) == [leaf.certificate, ec_ca.certificate]


def test_decode_certificate_skips_a_leading_key(ec_ca: KeyPair) -> None:
    assert certs.decode_certificate(ec_ca.key_pem + ec_ca.cert_pem) == ec_ca.certificate


@pytest.mark.parametrize("decode", [certs.decode_certificate, certs.decode_certificates])
def test_certificate_garbage(decode: Callable[..., object]) -> None:
    with pytest.raises(CertificateError, match=r"ca\.crt is empty; provide a PEM-encoded"):
        decode(b"", what="ca.crt")
    with pytest.raises(CertificateError, match=r"ca\.crt is not PEM \(no -----BEGIN CERTIFICATE"):
        decode(b"not a certificate", what="ca.crt")


def test_certificate_truncated(ec_ca: KeyPair) -> None:
    lines = ec_ca.cert_pem.splitlines(keepends=True)
    truncated = b"".join(lines[:3] + lines[-1:])
    with pytest.raises(CertificateError, match=r"cannot be parsed \(truncated or corrupted\)"):
        certs.decode_certificate(truncated)
    with pytest.raises(CertificateError, match=r"cannot be parsed"):
        certs.decode_certificates(ec_ca.cert_pem + truncated)


def test_certificate_given_a_private_key(ec_ca: KeyPair) -> None:
    with pytest.raises(CertificateError, match=r"swapped") as e:
        certs.decode_certificate(ec_ca.key_pem, what="tls.crt")
    assert "EC PRIVATE KEY but no CERTIFICATE" in str(e.value)
    assert_no_key_material(str(e.value), ec_ca.key_pem)


def test_public_key_round_trip(rsa_key: PrivateKey, ec_key: PrivateKey) -> None:
    for key in (rsa_key, ec_key):
        pem = certs.encode_public_key(key)
        assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
        assert certs.public_keys_equal(certs.decode_public_key(pem), key.public_key())
        assert certs.encode_public_key(key.public_key()) == pem


def test_public_key_errors(ec_ca: KeyPair) -> None:
    with pytest.raises(CertificateError, match=r"sa\.pub is not PEM"):
        certs.decode_public_key(b"nope", what="sa.pub")
    with pytest.raises(
        CertificateError, match=r"holds PEM block\(s\) CERTIFICATE but no PUBLIC KEY"
    ):
        certs.decode_public_key(ec_ca.cert_pem)
    broken = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    with pytest.raises(CertificateError, match=r"cannot be parsed"):
        certs.decode_public_key(broken)


def test_fingerprint_is_sha256_of_der(ec_ca: KeyPair) -> None:
    der = ec_ca.certificate.public_bytes(serialization.Encoding.DER)
    assert certs.fingerprint(ec_ca.certificate) == hashlib.sha256(der).hexdigest()
    assert ec_ca.fingerprint == certs.fingerprint(ec_ca.certificate)
