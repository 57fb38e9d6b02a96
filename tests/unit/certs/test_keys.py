from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kcp import certs
from kcp.certs import PrivateKey


def test_rsa_2048_is_the_default(rsa_key: PrivateKey) -> None:
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    assert rsa_key.key_size == 2048
    assert rsa_key.public_key().public_numbers().e == 65537


def test_ecdsa_p256(ec_key: PrivateKey) -> None:
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey)
    assert isinstance(ec_key.curve, ec.SECP256R1)


def test_each_call_generates_a_new_key() -> None:
    a = certs.generate_private_key("ecdsa-p256")
    b = certs.generate_private_key("ecdsa-p256")
    assert not certs.public_keys_equal(a.public_key(), b.public_key())


def test_unknown_algorithm_names_the_choices() -> None:
    with pytest.raises(certs.CertificateError, match=r"rsa-2048, ecdsa-p256"):
        certs.generate_private_key("dsa-1024")  # type: ignore[arg-type]


def test_key_algorithms_lists_every_literal() -> None:
    assert certs.KEY_ALGORITHMS == ("rsa-2048", "ecdsa-p256")


def test_public_keys_equal_across_types(rsa_key: PrivateKey, ec_key: PrivateKey) -> None:
    assert certs.public_keys_equal(rsa_key.public_key(), rsa_key.public_key())
    assert not certs.public_keys_equal(rsa_key.public_key(), ec_key.public_key())
    assert not certs.public_keys_equal(rsa_key.public_key(), object())
