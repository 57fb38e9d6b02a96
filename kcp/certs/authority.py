"""Self-signed certificate authorities and certificates they issue.

``issue_certificate`` takes an existing private key so that a caller can keep one
key per cluster and only re-sign (~0.25 ms) instead of generating a key (~30 ms
for RSA) each time: that is the point of the tracker built on top of it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal, TypeAlias, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kcp.certs.errors import CertificateError
from kcp.certs.keypair import KeyPair, check_validity, is_ca, utc_now
from kcp.certs.keys import DEFAULT_KEY_ALGORITHM, KeyAlgorithm, PrivateKey, generate_private_key

__all__ = [
    "CA_VALIDITY",
    "CLOCK_SKEW",
    "USAGES",
    "Usage",
    "issue_certificate",
    "new_certificate_authority",
]

Usage: TypeAlias = Literal["client", "server", "peer"]
"""``peer`` certificates carry both server and client auth, as etcd peers need."""

USAGES: tuple[Usage, ...] = get_args(Usage)
CA_VALIDITY = timedelta(days=3650)
"""Cluster API's CA validity: ten years."""
CLOCK_SKEW = timedelta(minutes=5)
"""How far ``not_before`` is back-dated so a peer with a slightly slow clock accepts it."""

_EKUS: dict[str, tuple[x509.ObjectIdentifier, ...]] = {
    "server": (ExtendedKeyUsageOID.SERVER_AUTH,),
    "client": (ExtendedKeyUsageOID.CLIENT_AUTH,),
    "peer": (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
}

_CLIENT_ONLY: tuple[Usage, ...] = ("client",)


def _seq(values: Iterable[str], name: str) -> tuple[str, ...]:
    """Tuple of ``values``; a bare string is refused rather than split into characters."""
    if isinstance(values, str | bytes):
        raise TypeError(f"{name} must be a sequence of strings, not a single string")
    return tuple(values)


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    if not common_name:
        raise CertificateError("certificate common name is empty; give the certificate a name")
    try:
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    except ValueError as exc:
        raise CertificateError(
            f"invalid certificate subject (CN={common_name!r}, O={list(organizations)!r}): {exc}; "
            "use a common name of 1 to 64 characters"
        ) from None
    return x509.Name(attributes)


def _check_validity_period(validity: timedelta) -> None:
    if validity <= timedelta(0):
        raise CertificateError(f"certificate validity must be positive, got {validity}")


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    """A builder for ``key``'s certificate, serial number random, with what CAs and leaves share.

    First come BasicConstraints ``ca`` and KeyUsage (both critical): digital
    signature, key encipherment for an RSA key, and certificate and CRL signing
    for a CA only. The caller adds the rest and signs.
    """
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def new_certificate_authority(
    common_name: str,
    *,
    algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
    validity: timedelta = CA_VALIDITY,
    now: datetime | None = None,
    private_key: PrivateKey | None = None,
) -> KeyPair:
    """A self-signed CA valid for ``validity`` from now, back-dated by ``CLOCK_SKEW``.

    It carries BasicConstraints ``ca=True`` (critical), KeyUsage
    certSign/cRLSign/digitalSignature (critical) and a subject key identifier.
    A new key of ``algorithm`` is generated unless ``private_key`` is given.
    """
    _check_validity_period(validity)
    at = utc_now(now)
    key = private_key if private_key is not None else generate_private_key(algorithm)
    name = _name(common_name)
    cert = (
        _builder(name, name, key, at - CLOCK_SKEW, at + validity, ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(certificate=cert, private_key=key)


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _subject_alt_names(
    dns_names: Sequence[str], ip_addresses: Sequence[str]
) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    for ip in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(str(ip))))
        except ValueError:
            raise CertificateError(
                f"{ip!r} is not an IP address; put host names in dns_names and "
                "IPv4/IPv6 addresses in ip_addresses"
            ) from None
    return names


def issue_certificate(
    ca: KeyPair,
    *,
    common_name: str,
    organizations: Sequence[str] = (),
    usages: Collection[Usage] = _CLIENT_ONLY,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    validity: timedelta = timedelta(days=365),
    private_key: PrivateKey | None = None,
    algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
    now: datetime | None = None,
) -> KeyPair:
    """A certificate for ``private_key`` (or a new key of ``algorithm``) signed by ``ca``.

    ``usages`` picks the extended key usages (``peer`` = server and client auth).
    ``not_after`` never exceeds the CA's; ``not_before`` is back-dated by
    ``CLOCK_SKEW`` but never before the CA's. The serial number is random. Raises
    ``CertificateError`` if ``ca`` is not a valid CA at ``now``.
    """
    organizations = _seq(organizations, "organizations")
    wanted = _seq(usages, "usages")
    dns_names = _seq(dns_names, "dns_names")
    ip_addresses = _seq(ip_addresses, "ip_addresses")
    unknown = [u for u in wanted if u not in _EKUS]
    if unknown or not wanted:
        raise CertificateError(
            f"certificate usages {list(wanted)!r} are invalid; "
            f"use one or more of {', '.join(USAGES)}"
        )
    _check_validity_period(validity)
    at = utc_now(now)
    ca_cert = ca.certificate
    if not is_ca(ca_cert):
        raise CertificateError(
            f"cannot issue a certificate with {ca.subject}: it is not a CA certificate "
            "(BasicConstraints ca=true missing); sign with the cluster's CA key pair"
        )
    check_validity(ca_cert, now=at, what="CA certificate")
    subject = _name(common_name, organizations)
    sans = _subject_alt_names(dns_names, ip_addresses)

    ekus: dict[x509.ObjectIdentifier, None] = {}
    for usage in ("server", "client", "peer"):
        if usage in wanted:
            ekus.update(dict.fromkeys(_EKUS[usage]))

    key = private_key if private_key is not None else generate_private_key(algorithm)
    not_before = max(at - CLOCK_SKEW, ca.not_before)
    not_after = min(at + validity, ca.not_after)
    builder = (
        _builder(subject, ca_cert.subject, key, not_before, not_after, ca=False)
        .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
        .add_extension(_authority_key_identifier(ca_cert), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.private_key, hashes.SHA256())
    return KeyPair(certificate=cert, private_key=key)
