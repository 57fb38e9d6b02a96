"""PEM encoding and decoding with errors that say what to fix.

Encodings follow what kubeadm and Cluster API write: RSA keys as PKCS#1
(``RSA PRIVATE KEY``), EC keys as SEC1 (``EC PRIVATE KEY``), public keys as
``PUBLIC KEY``. Decoding accepts PKCS#1, SEC1 and PKCS#8. No message ever quotes
the input, because the input may be a private key.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kcp.certs.errors import CertificateError
from kcp.certs.keys import PrivateKey, PublicKey

__all__ = [
    "decode_certificate",
    "decode_certificates",
    "decode_private_key",
    "decode_public_key",
    "encode_certificate",
    "encode_private_key",
    "encode_public_key",
    "fingerprint",
    "pem_labels",
]

_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
# base64 of "-----BEGIN": the PEM was base64-encoded once more than it should be.
_DOUBLE_ENCODED_PREFIX = b"LS0tLS1CRUdJTi"
_PRIVATE_KEY_LABELS = ("RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY")


def pem_labels(data: bytes) -> list[str]:
    """The labels of the PEM blocks in ``data`` (``["CERTIFICATE", ...]``), in order."""
    return [m.group(1).decode("ascii") for m in _BEGIN.finditer(data)]


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)


def _not_pem(what: str, data: bytes, expected: str, fix: str) -> CertificateError:
    """The error for input holding no block of the expected type, with a hint at why."""
    stripped = data.strip()
    if not stripped:
        return CertificateError(f"{what} is empty; {fix}")
    labels = pem_labels(data)
    if labels:
        found = ", ".join(dict.fromkeys(labels))
        swapped = (
            expected == "CERTIFICATE" and any(label in _PRIVATE_KEY_LABELS for label in labels)
        ) or (expected != "CERTIFICATE" and "CERTIFICATE" in labels)
        hint = " (were the certificate and the key swapped?)" if swapped else ""
        return CertificateError(f"{what} holds PEM block(s) {found} but no {expected}; {fix}{hint}")
    if stripped.startswith(_DOUBLE_ENCODED_PREFIX):
        return CertificateError(
            f"{what} is base64 of PEM rather than PEM (encoded twice); store the PEM text itself"
        )
    return CertificateError(f"{what} is not PEM (no -----BEGIN {expected}----- line); {fix}")


def encode_private_key(key: PrivateKey) -> bytes:
    """PEM of ``key``, unencrypted: ``RSA PRIVATE KEY`` (PKCS#1) or ``EC PRIVATE KEY`` (SEC1)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def decode_private_key(
    pem: bytes, *, what: str = "private key", skip_rsa_validation: bool = False
) -> PrivateKey:
    """Parse the first private key in ``pem`` (PKCS#1, SEC1 or PKCS#8; RSA or ECDSA).

    ``what`` names the input in error messages, e.g. ``"Secret ns/c1-etcd: data key tls.key"``.
    Checking an RSA key's internal consistency costs ~30 ms, as much as generating one:
    parse a key once and keep it. ``skip_rsa_validation`` skips that check and is only
    for keys known to be valid (for instance ones this process generated).
    """
    data = _as_bytes(pem)
    fix = "provide an unencrypted PEM private key (RSA or ECDSA)"
    labels = pem_labels(data)
    if "ENCRYPTED PRIVATE KEY" in labels or b"Proc-Type: 4,ENCRYPTED" in data:
        raise CertificateError(f"{what} is encrypted; store the private key unencrypted")
    if not any(label in _PRIVATE_KEY_LABELS for label in labels):
        raise _not_pem(what, data, "PRIVATE KEY", fix)
    try:
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=skip_rsa_validation
        )
    except TypeError:
        raise CertificateError(f"{what} is encrypted; store the private key unencrypted") from None
    except UnsupportedAlgorithm:
        raise CertificateError(f"{what} uses an unsupported key algorithm; {fix}") from None
    except ValueError:
        raise CertificateError(
            f"{what} holds a PRIVATE KEY block that cannot be parsed "
            f"(truncated or corrupted); {fix}"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateError(
            f"{what} is a {type(key).__name__.removesuffix('PrivateKey')} key; "
            "only RSA and ECDSA keys are supported, replace it with one of those"
        )
    return key


def encode_certificate(cert: x509.Certificate) -> bytes:
    """PEM (``CERTIFICATE``) of ``cert``."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _check_has_certificate(data: bytes, what: str, expected: str) -> None:
    if "CERTIFICATE" not in pem_labels(data):
        raise _not_pem(what, data, "CERTIFICATE", f"provide a PEM-encoded {expected}")


def decode_certificate(pem: bytes, *, what: str = "certificate") -> x509.Certificate:
    """Parse the first certificate in ``pem`` (a bundle's leaf, or a CA's own certificate)."""
    data = _as_bytes(pem)
    _check_has_certificate(data, what, "certificate")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateError(
            f"{what} holds a CERTIFICATE block that cannot be parsed (truncated or corrupted); "
            "replace it with a complete PEM certificate"
        ) from None


def decode_certificates(pem: bytes, *, what: str = "certificate bundle") -> list[x509.Certificate]:
    """Parse every certificate in ``pem``, in order; at least one must be present."""
    data = _as_bytes(pem)
    _check_has_certificate(data, what, "certificate bundle")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateError(
            f"{what} holds a CERTIFICATE block that cannot be parsed (truncated or corrupted); "
            "replace it with complete PEM certificates"
        ) from None


def encode_public_key(key: PrivateKey | PublicKey) -> bytes:
    """``PUBLIC KEY`` (SubjectPublicKeyInfo) PEM, as Cluster API stores in the ``-sa`` Secret."""
    public = (
        key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    )
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def decode_public_key(pem: bytes, *, what: str = "public key") -> PublicKey:
    """Parse a ``PUBLIC KEY`` (or PKCS#1 ``RSA PUBLIC KEY``) PEM block."""
    data = _as_bytes(pem)
    fix = "provide a PEM public key (-----BEGIN PUBLIC KEY-----)"
    if not any(label in ("PUBLIC KEY", "RSA PUBLIC KEY") for label in pem_labels(data)):
        raise _not_pem(what, data, "PUBLIC KEY", fix)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(
            f"{what} holds a PUBLIC KEY block that cannot be parsed (truncated or corrupted); {fix}"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CertificateError(f"{what} is neither an RSA nor an ECDSA public key; {fix}")
    return key


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, lowercase hex: a stable identity for caches and logs."""
    return cert.fingerprint(hashes.SHA256()).hex()
