"""The key scan of the security tests (`tests/keyscan.py`) reports a key's copies, and only them.

It once matched the first 48 base64 characters of each PEM line, which every RSA-2048
PKCS#8 key shares: a Go build's package archives under /tmp, holding unrelated test
keys, were reported as leaks of 80 of kcp's keys.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import textwrap
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests import keyscan

PKCS8 = serialization.PrivateFormat.PKCS8
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, fmt: object = PKCS8) -> bytes:
    assert isinstance(fmt, serialization.PrivateFormat)
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _der(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, PKCS8, serialization.NoEncryption())


def _kubeconfig(key_pem: bytes) -> bytes:
    """A kubeconfig's user, the key as kcp's kubeconfig Secrets embed it."""
    data = base64.b64encode(key_pem).decode()
    return f"users:\n- name: admin\n  user:\n    client-key-data: {data}\n".encode()


def _forms(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, bytes]:
    """The ways a key ends up in a file."""
    pkcs8 = _pem(key)
    return {
        "PKCS#8 PEM": pkcs8,
        "traditional PEM": _pem(key, TRADITIONAL),
        "base64 of the PEM (kubeconfig client-key-data)": _kubeconfig(pkcs8),
        "base64 of the traditional PEM (a Secret's tls.key)": json.dumps(
            {"data": {"tls.key": base64.b64encode(_pem(key, TRADITIONAL)).decode()}}
        ).encode(),
        "PEM in a JSON log line": json.dumps({"event": "x", "key": pkcs8.decode()}).encode(),
        "base64 of the PEM wrapped at 76 columns": "\n".join(
            textwrap.wrap(base64.b64encode(pkcs8).decode(), 76)
        ).encode(),
    }


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return _rsa()


@pytest.fixture(scope="module")
def unrelated() -> list[rsa.RSAPrivateKey]:
    return [_rsa() for _ in range(4)]


def test_an_unrelated_rsa_key_is_not_reported(
    key: rsa.RSAPrivateKey, unrelated: list[rsa.RSAPrivateKey]
) -> None:
    index = keyscan.KeyIndex([keyscan.key_needles(_der(key))])
    # The first line of every RSA-2048 PKCS#8 body is nearly the same: what was matched.
    assert _pem(key).splitlines()[1][6:34] == _pem(unrelated[0]).splitlines()[1][6:34]
    for other in unrelated:
        for form, content in _forms(other).items():
            assert index.find(content) == [], form
    # A package archive holding many keys, as a Go build writes under /tmp.
    archive = b"!<arch>\n" + b"\0".join(
        content for other in unrelated for content in _forms(other).values()
    )
    needles = keyscan.key_needles(_der(key))
    assert keyscan.KeyIndex([needles]).find(archive, raw=[needles]) == []


@pytest.mark.parametrize("algorithm", ["rsa-2048", "ecdsa-p256"])
def test_the_key_is_reported_in_pem_and_base64_of_pem(
    algorithm: str, key: rsa.RSAPrivateKey
) -> None:
    searched = key if algorithm == "rsa-2048" else ec.generate_private_key(ec.SECP256R1())
    needles = keyscan.key_needles(_der(searched), by="kcp/tracker/keys.py:generate")
    index = keyscan.KeyIndex([needles])
    for form, content in _forms(searched).items():
        assert index.find(b"prefix\n" + content + b"\nsuffix") == [needles], form


def test_the_key_is_reported_among_other_keys(
    key: rsa.RSAPrivateKey, unrelated: list[rsa.RSAPrivateKey]
) -> None:
    needles = [keyscan.key_needles(_der(k)) for k in (key, *unrelated)]
    index = keyscan.KeyIndex(needles)
    found = index.find(b"\n".join([_pem(unrelated[1]), _pem(key, TRADITIONAL)]))
    assert found == [needles[0], needles[2]] or found == [needles[2], needles[0]]


def test_the_public_half_is_not_reported(key: rsa.RSAPrivateKey) -> None:
    """The modulus is in the key's certificate, which may be anywhere."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-api.x-k8s.io")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    public = [
        certificate.public_bytes(serialization.Encoding.PEM),
        certificate.public_bytes(serialization.Encoding.DER),
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ]
    needles = keyscan.key_needles(_der(key))
    index = keyscan.KeyIndex([needles])
    for content in public:
        assert index.find(content, raw=[needles]) == []


def test_raw_bytes_are_found_only_when_asked(key: rsa.RSAPrivateKey) -> None:
    needles = keyscan.key_needles(_der(key))
    index = keyscan.KeyIndex([needles])
    blob = os.urandom(1000) + _der(key) + os.urandom(1000)
    assert index.find(blob) == []
    assert index.find(blob, raw=[needles]) == [needles]


def test_a_single_window_is_not_enough(key: rsa.RSAPrivateKey) -> None:
    needles = keyscan.key_needles(_der(key))
    one = sorted(needles.windows)[0]
    assert keyscan.KeyIndex([needles]).find(b" " + one + b" ") == []


def test_tool_caches_are_skipped_by_name_and_prefix(
    tmp_path: Path, key: rsa.RSAPrivateKey, unrelated: list[rsa.RSAPrivateKey]
) -> None:
    since = time.time() - 5
    planted = {
        "go-build3179530/b1912/_pkg_.a": _pem(key),
        ".mypy_cache/3.11/x.json": _pem(key),
        "pip-install-k2j3/setup.py": _pem(key),
        "kcp-run/leaked.pem": _pem(key),
        "kcp-run/kubeconfig": _kubeconfig(_pem(key)),
        "kcp-run/unrelated.pem": _pem(unrelated[0]),
        "kcp-run/old.pem": _pem(key),
    }
    for relative, content in planted.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    os.utime(tmp_path / "kcp-run/old.pem", (since - 60, since - 60))
    files = sorted(keyscan.written_files([tmp_path], since=since))
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "kcp-run/kubeconfig",
        "kcp-run/leaked.pem",
        "kcp-run/unrelated.pem",
    ]
    index = keyscan.KeyIndex([keyscan.key_needles(_der(key))])
    holding = [f.name for f in files if index.find(f.read_bytes())]
    assert holding == ["kubeconfig", "leaked.pem"]


def test_the_scan_covers_shared_memory_and_var_tmp(tmp_path: Path) -> None:
    roots = keyscan.scan_roots(tmp_path)
    for expected in ("/tmp", "/var/tmp", "/dev/shm", str(tmp_path)):
        assert Path(expected) in roots
