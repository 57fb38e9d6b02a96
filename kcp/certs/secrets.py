"""The data of Cluster API's certificate and kubeconfig Secrets.

Names are ``<cluster>-<suffix>``; CA Secrets hold ``tls.crt``/``tls.key``, the
``-sa`` Secret holds the service-account public key in ``tls.crt`` and its
private key in ``tls.key``, the kubeconfig Secret holds the document in
``value``. Building the Secret object (labels, owner references) is the caller's
job; errors here name the Secret and the data key and say what to put there.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from kcp.certs.errors import CertificateError, KubeconfigError
from kcp.certs.keypair import KeyPair, _load
from kcp.certs.keys import (
    DEFAULT_KEY_ALGORITHM,
    KeyAlgorithm,
    PrivateKey,
    generate_private_key,
    public_keys_equal,
)
from kcp.certs.kubeconfig import Kubeconfig, parse_kubeconfig
from kcp.certs.pem import (
    decode_private_key,
    decode_public_key,
    encode_private_key,
    encode_public_key,
)

__all__ = [
    "CLUSTER_SECRET_TYPE",
    "KUBECONFIG_KEY",
    "TLS_CERT_KEY",
    "TLS_KEY_KEY",
    "SecretPurpose",
    "decode_secret_data",
    "key_pair_from_secret_data",
    "key_pair_to_secret_data",
    "kubeconfig_from_secret_data",
    "kubeconfig_secret_data",
    "new_service_account_key",
    "secret_name",
    "service_account_key_from_secret_data",
    "service_account_key_to_secret_data",
]

TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
KUBECONFIG_KEY = "value"
CLUSTER_SECRET_TYPE = "cluster.x-k8s.io/secret"


class SecretPurpose(StrEnum):
    """The suffix Cluster API appends to the cluster name for each Secret."""

    CLUSTER_CA = "ca"
    ETCD = "etcd"
    FRONT_PROXY = "proxy"
    SERVICE_ACCOUNT = "sa"
    KUBECONFIG = "kubeconfig"
    USER_KUBECONFIG = "user-kubeconfig"
    APISERVER_ETCD_CLIENT = "apiserver-etcd-client"


def secret_name(cluster_name: str, purpose: SecretPurpose | str) -> str:
    """``<cluster>-<suffix>``, e.g. ``c1-etcd``."""
    return f"{cluster_name}-{SecretPurpose(purpose).value}"


def decode_secret_data(
    data: Mapping[str, str | None] | None, *, secret_name: str
) -> dict[str, bytes]:
    """Base64-decode a Secret's ``data`` as the API returns it (``None`` values become empty).

    ``secret_name`` (``namespace/name``) is only used in error messages.
    """
    decoded: dict[str, bytes] = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise CertificateError(
                f"Secret {secret_name}: data key {key} is not valid base64; Secret data values "
                "must be base64-encoded (use stringData to store plain text)"
            ) from None
    return decoded


def _value(data: Mapping[str, bytes], key: str, secret: str, what: str) -> bytes:
    value = data.get(key)
    if not value:
        state = "is empty" if key in data else "is missing"
        raise CertificateError(f"Secret {secret}: data key {key} {state}; put {what} there")
    return value


def key_pair_to_secret_data(kp: KeyPair) -> dict[str, bytes]:
    """``{"tls.crt": cert PEM, "tls.key": key PEM}``."""
    return {TLS_CERT_KEY: kp.cert_pem, TLS_KEY_KEY: kp.key_pem}


def key_pair_from_secret_data(
    data: Mapping[str, bytes],
    *,
    secret_name: str,
    require_ca: bool = True,
    now: datetime | None = None,
    skip_rsa_validation: bool = False,
) -> KeyPair:
    """Load and validate the key pair of a CA Secret (``<cluster>-ca``, ``-etcd``, ``-proxy``).

    Takes decoded bytes (see ``decode_secret_data``); ``secret_name`` is ``namespace/name``.
    An RSA key costs ~30 ms to validate: cache the result per Secret resourceVersion.
    """
    owner = "the CA's" if require_ca else "the"
    cert_pem = _value(data, TLS_CERT_KEY, secret_name, f"{owner} PEM certificate")
    key_pem = _value(data, TLS_KEY_KEY, secret_name, f"{owner} PEM private key")
    return _load(
        cert_pem,
        key_pem,
        cert_what=f"Secret {secret_name}: data key {TLS_CERT_KEY}",
        key_what=f"Secret {secret_name}: data key {TLS_KEY_KEY}",
        pair_what=f"Secret {secret_name}",
        key_fix=f"put the private key of the certificate in {TLS_CERT_KEY} into {TLS_KEY_KEY}",
        require_ca=require_ca,
        now=now,
        skip_rsa_validation=skip_rsa_validation,
    )


def new_service_account_key(
    algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
) -> tuple[bytes, bytes]:
    """A fresh service-account signing key as ``(public PEM, private PEM)``.

    The public ``PUBLIC KEY`` PEM goes in ``tls.crt`` and the private key in ``tls.key``,
    as Cluster API's ``-sa`` Secret holds them.
    """
    key = generate_private_key(algorithm)
    return encode_public_key(key), encode_private_key(key)


def service_account_key_to_secret_data(key: PrivateKey) -> dict[str, bytes]:
    """``{"tls.crt": public PEM, "tls.key": private PEM}`` for an existing key."""
    return {TLS_CERT_KEY: encode_public_key(key), TLS_KEY_KEY: encode_private_key(key)}


def service_account_key_from_secret_data(
    data: Mapping[str, bytes], *, secret_name: str, skip_rsa_validation: bool = False
) -> PrivateKey:
    """The private key of a ``-sa`` Secret; when ``tls.crt`` is present it must match."""
    key_pem = _value(data, TLS_KEY_KEY, secret_name, "the service-account PEM private key")
    key = decode_private_key(
        key_pem,
        what=f"Secret {secret_name}: data key {TLS_KEY_KEY}",
        skip_rsa_validation=skip_rsa_validation,
    )
    public_pem = data.get(TLS_CERT_KEY)
    if public_pem:
        public = decode_public_key(
            public_pem, what=f"Secret {secret_name}: data key {TLS_CERT_KEY}"
        )
        if not public_keys_equal(public, key.public_key()):
            raise CertificateError(
                f"Secret {secret_name}: the public key in {TLS_CERT_KEY} does not belong to the "
                f"private key in {TLS_KEY_KEY}; put the matching PUBLIC KEY PEM in {TLS_CERT_KEY}"
            )
    return key


def kubeconfig_secret_data(kubeconfig: bytes) -> dict[str, bytes]:
    """``{"value": kubeconfig}``."""
    return {KUBECONFIG_KEY: kubeconfig}


def kubeconfig_from_secret_data(data: Mapping[str, bytes], *, secret_name: str) -> Kubeconfig:
    """Parse the kubeconfig in a ``<cluster>-kubeconfig`` Secret; errors name the Secret."""
    value = data.get(KUBECONFIG_KEY)
    if not value:
        state = "is empty" if KUBECONFIG_KEY in data else "is missing"
        raise KubeconfigError(
            f"Secret {secret_name}: data key {KUBECONFIG_KEY} {state}; put the kubeconfig there"
        )
    try:
        return parse_kubeconfig(value)
    except KubeconfigError as exc:
        raise KubeconfigError(f"Secret {secret_name}: data key {KUBECONFIG_KEY}: {exc}") from None
