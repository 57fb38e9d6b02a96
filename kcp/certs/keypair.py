"""A certificate with its private key, and the checks that make a pair usable.

``load_key_pair`` is how material from outside (a Secret) becomes a ``KeyPair``: it
refuses garbage, a key that belongs to another certificate, a certificate outside
its validity window, and (when asked) a certificate that is not a CA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from kcp.certs.errors import CertificateError
from kcp.certs.keys import PrivateKey, public_keys_equal
from kcp.certs.pem import (
    decode_certificate,
    decode_private_key,
    encode_certificate,
    encode_private_key,
    fingerprint,
)

__all__ = [
    "KeyPair",
    "check_validity",
    "is_ca",
    "load_key_pair",
    "utc_now",
    "verify_signed_by",
]


def utc_now(now: datetime | None = None) -> datetime:
    """``now`` as an aware UTC datetime (naive values are taken as UTC), or the current time."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


@dataclass(frozen=True, eq=False)
class KeyPair:
    """A certificate and its private key; compares equal when both are the same.

    The repr names only the subject and fingerprint, never the key.
    """

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)

    @property
    def cert_pem(self) -> bytes:
        """The certificate as PEM."""
        return encode_certificate(self.certificate)

    @property
    def key_pem(self) -> bytes:
        """The private key as PEM (PKCS#1 for RSA, SEC1 for EC); handle with care."""
        return encode_private_key(self.private_key)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate's DER, hex; changes whenever the certificate does."""
        return fingerprint(self.certificate)

    @property
    def not_after(self) -> datetime:
        """End of validity, aware UTC."""
        return self.certificate.not_valid_after_utc

    @property
    def not_before(self) -> datetime:
        """Start of validity, aware UTC."""
        return self.certificate.not_valid_before_utc

    def renewal_time(self, fraction: float) -> datetime:
        """The moment ``fraction`` of the validity period has elapsed.

        ``renewal_time(2 / 3)`` is when the tracker renews a client certificate;
        ``now >= renewal_time(0.5)`` means less than half its life remains.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
        return self.not_before + (self.not_after - self.not_before) * fraction

    @property
    def subject(self) -> str:
        """The certificate's subject, RFC 4514 (``CN=etcd-ca``, ``CN=x,O=system:masters``)."""
        return _subject(self.certificate)

    @property
    def is_ca(self) -> bool:
        """Whether the certificate carries BasicConstraints ``ca=True``."""
        return is_ca(self.certificate)

    def __repr__(self) -> str:
        return f"KeyPair(subject={self.subject!r}, fingerprint={self.fingerprint!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyPair):
            return NotImplemented
        return self.certificate == other.certificate and public_keys_equal(
            self.private_key.public_key(), other.private_key.public_key()
        )

    def __hash__(self) -> int:
        return hash(self.certificate)


def is_ca(cert: x509.Certificate) -> bool:
    """Whether ``cert`` carries BasicConstraints with ``ca=True``."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def check_validity(
    cert: x509.Certificate, *, now: datetime | None = None, what: str = "certificate"
) -> None:
    """Raise ``CertificateError`` unless ``now`` lies within the certificate's validity."""
    at = utc_now(now)
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    if at < not_before:
        raise CertificateError(
            f"{what} ({_subject(cert)}) is not valid before {not_before.isoformat()} "
            f"(now {at.isoformat()}); check this machine's clock or the issuer's, "
            "or wait until it becomes valid"
        )
    if at > not_after:
        raise CertificateError(
            f"{what} ({_subject(cert)}) expired at {not_after.isoformat()} "
            f"(now {at.isoformat()}); replace it with a renewed certificate"
        )


def verify_signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether ``cert`` was issued by ``ca_cert`` (issuer name matches and signature verifies)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _load(
    cert_pem: bytes,
    key_pem: bytes,
    *,
    cert_what: str,
    key_what: str,
    pair_what: str,
    key_fix: str,
    require_ca: bool,
    now: datetime | None,
    skip_rsa_validation: bool = False,
) -> KeyPair:
    """``load_key_pair`` with each half named separately, so Secret errors can name data keys."""
    cert = decode_certificate(cert_pem, what=cert_what)
    key = decode_private_key(key_pem, what=key_what, skip_rsa_validation=skip_rsa_validation)
    if not public_keys_equal(cert.public_key(), key.public_key()):
        raise CertificateError(
            f"{pair_what}: the private key does not belong to the certificate "
            f"({_subject(cert)}); {key_fix}"
        )
    check_validity(cert, now=now, what=cert_what)
    if require_ca and not is_ca(cert):
        raise CertificateError(
            f"{cert_what} ({_subject(cert)}) is not a CA certificate "
            "(BasicConstraints ca=true missing); provide the CA's certificate and key, "
            "not a certificate it issued"
        )
    return KeyPair(certificate=cert, private_key=key)


def load_key_pair(
    cert_pem: bytes,
    key_pem: bytes,
    *,
    require_ca: bool = False,
    now: datetime | None = None,
    what: str = "key pair",
    skip_rsa_validation: bool = False,
) -> KeyPair:
    """Parse and validate a certificate and its key (see the module docstring for the checks).

    Costs ~30 ms for an RSA key (see ``decode_private_key``): cache the result, keyed
    for instance by the Secret's resourceVersion or by a hash of the two PEMs.
    """
    return _load(
        cert_pem,
        key_pem,
        cert_what=f"{what} certificate",
        key_what=f"{what} private key",
        pair_what=what,
        key_fix="provide the private key that was generated with this certificate",
        require_ca=require_ca,
        now=now,
        skip_rsa_validation=skip_rsa_validation,
    )
