"""Real crypto fixtures, generated once: RSA keys are slow (~30 ms each), so tests share them."""

from __future__ import annotations

import pytest

from kcp import certs
from kcp.certs import KeyPair, PrivateKey


@pytest.fixture(scope="session")
def rsa_key() -> PrivateKey:
    return certs.generate_private_key("rsa-2048")


@pytest.fixture(scope="session")
def rsa_key_2() -> PrivateKey:
    return certs.generate_private_key("rsa-2048")


@pytest.fixture(scope="session")
def rsa_ca(rsa_key: PrivateKey) -> KeyPair:
    return certs.new_certificate_authority("etcd-ca", private_key=rsa_key)


@pytest.fixture
def ec_key() -> PrivateKey:
    return certs.generate_private_key("ecdsa-p256")


@pytest.fixture
def ec_ca() -> KeyPair:
    return certs.new_certificate_authority("kubernetes", algorithm="ecdsa-p256")


def secret_fragments(pem: bytes) -> list[str]:
    """Pieces of a PEM's body (and of its base64) that must never show up in a message or repr."""
    import base64

    body = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    fragments = [line[8:40] for line in body if len(line) >= 40]
    fragments.append(base64.b64encode(pem).decode()[40:80])
    return fragments


def assert_no_key_material(text: str, *pems: bytes) -> None:
    for pem in pems:
        for fragment in secret_fragments(pem):
            assert fragment not in text, "key material leaked"


def pem_label(pem: bytes) -> str:
    """The label of the first PEM block (e.g. "RSA PRIVATE KEY"), for asserting formats."""
    first = pem.split(b"\n", 1)[0].decode()
    assert first.startswith("-----BEGIN ") and first.endswith("-----"), first
    return first.removeprefix("-----BEGIN ").removesuffix("-----")
