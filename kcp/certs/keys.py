"""Private key generation and key/certificate matching.

RSA-2048 generation costs ~30 ms (with a long tail), ECDSA P-256 tens of
microseconds: callers that need a key repeatedly should generate it once and keep
it, which is what the rest of this package lets them do.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kcp.certs.errors import CertificateError

__all__ = [
    "DEFAULT_KEY_ALGORITHM",
    "KEY_ALGORITHMS",
    "KeyAlgorithm",
    "PrivateKey",
    "PublicKey",
    "generate_private_key",
    "key_algorithm",
    "public_keys_equal",
]

KeyAlgorithm: TypeAlias = Literal["rsa-2048", "ecdsa-p256"]
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

KEY_ALGORITHMS: tuple[KeyAlgorithm, ...] = get_args(KeyAlgorithm)
"""Every accepted algorithm name, e.g. for a command-line flag's choices."""
DEFAULT_KEY_ALGORITHM: KeyAlgorithm = "rsa-2048"
"""What kubeadm and Cluster API use; every key kcp makes is this unless told otherwise."""

_RSA_PUBLIC_EXPONENT = 65537
_RSA_KEY_SIZE = 2048


def generate_private_key(algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM) -> PrivateKey:
    """Generate a fresh private key; RSA-2048 matches what kubeadm and Cluster API use."""
    if algorithm == "rsa-2048":
        return rsa.generate_private_key(
            public_exponent=_RSA_PUBLIC_EXPONENT, key_size=_RSA_KEY_SIZE
        )
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise CertificateError(
        f"unknown key algorithm {algorithm!r}; use one of {', '.join(KEY_ALGORITHMS)}"
    )


def key_algorithm(key: PrivateKey | PublicKey) -> str:
    """A short human name for the key type, for messages (``RSA-2048``, ``ECDSA-secp256r1``)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    return f"ECDSA-{key.curve.name}"


def public_keys_equal(a: object, b: object) -> bool:
    """Whether two public keys are the same key (keys of different types are simply unequal)."""
    if isinstance(a, rsa.RSAPublicKey) and isinstance(b, rsa.RSAPublicKey):
        return a == b
    if isinstance(a, ec.EllipticCurvePublicKey) and isinstance(b, ec.EllipticCurvePublicKey):
        return a == b
    return False
