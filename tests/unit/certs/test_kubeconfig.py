from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from kcp import certs
from kcp.certs import KeyPair, KubeconfigError, PrivateKey

from .conftest import assert_no_key_material


@pytest.fixture
def admin(ec_ca: KeyPair, ec_key: PrivateKey) -> KeyPair:
    return certs.issue_certificate(
        ec_ca, common_name="kubernetes-admin", organizations=["system:masters"], private_key=ec_key
    )


@pytest.fixture
def document(ec_ca: KeyPair, admin: KeyPair) -> bytes:
    return certs.build_kubeconfig(
        cluster_name="c1",
        server="https://127.0.0.2:6443",
        ca_pem=ec_ca.cert_pem,
        client_cert_pem=admin.cert_pem,
        client_key_pem=admin.key_pem,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _dump(doc: dict[str, Any]) -> bytes:
    return yaml.safe_dump(doc).encode()


def test_built_like_cluster_api(document: bytes, ec_ca: KeyPair, admin: KeyPair) -> None:
    doc = yaml.safe_load(document)
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Config"
    assert doc["clusters"] == [
        {
            "name": "c1",
            "cluster": {
                "server": "https://127.0.0.2:6443",
                "certificate-authority-data": _b64(ec_ca.cert_pem),
            },
        }
    ]
    assert doc["users"] == [
        {
            "name": "c1-admin",
            "user": {
                "client-certificate-data": _b64(admin.cert_pem),
                "client-key-data": _b64(admin.key_pem),
            },
        }
    ]
    assert doc["contexts"] == [
        {"name": "c1-admin@c1", "context": {"cluster": "c1", "user": "c1-admin"}}
    ]
    assert doc["current-context"] == "c1-admin@c1"


def test_custom_user_name(ec_ca: KeyPair, admin: KeyPair) -> None:
    doc = yaml.safe_load(
        certs.build_kubeconfig(
            cluster_name="c1",
            server="https://h:6443",
            ca_pem=ec_ca.cert_pem,
            client_cert_pem=admin.cert_pem,
            client_key_pem=admin.key_pem,
            user_name="kcp",
        )
    )
    assert doc["current-context"] == "kcp@c1"
    assert doc["users"][0]["name"] == "kcp"


def test_build_refuses_non_pem(ec_ca: KeyPair, admin: KeyPair) -> None:
    good = {
        "cluster_name": "c1",
        "server": "https://h:6443",
        "ca_pem": ec_ca.cert_pem,
        "client_cert_pem": admin.cert_pem,
        "client_key_pem": admin.key_pem,
    }
    for field, bad, message in [
        ("ca_pem", b"x", "CA data is not PEM"),
        ("client_cert_pem", admin.key_pem, "client certificate is not PEM"),
        ("client_key_pem", admin.cert_pem, "client key is not PEM"),
        ("server", "", "needs a server URL"),
        ("cluster_name", "", "needs a cluster name"),
    ]:
        with pytest.raises(KubeconfigError, match=message) as e:
            certs.build_kubeconfig(**{**good, field: bad})  # type: ignore[arg-type]
        assert_no_key_material(str(e.value), admin.key_pem)


def test_round_trip(document: bytes, ec_ca: KeyPair, admin: KeyPair) -> None:
    kc = certs.parse_kubeconfig(document)
    assert kc.server == "https://127.0.0.2:6443"
    assert kc.ca_pem == ec_ca.cert_pem
    assert kc.client_cert_pem == admin.cert_pem
    assert kc.client_key_pem == admin.key_pem
    assert kc.token is None
    assert kc.cluster_name == "c1"
    assert kc.user_name == "c1-admin" and kc.context_name == "c1-admin@c1"
    assert kc.uses_client_certificate
    # What it holds is usable as is.
    assert certs.load_key_pair(kc.client_cert_pem, kc.client_key_pem or b"") == admin


def test_repr_hides_credentials(document: bytes, admin: KeyPair) -> None:
    kc = certs.parse_kubeconfig(document)
    assert_no_key_material(repr(kc), admin.key_pem)
    assert "key" not in repr(kc).lower()
    token_kc = certs.parse_kubeconfig(_token_doc("sekrit-token-value"))
    assert "sekrit" not in repr(token_kc)


def _token_doc(token: str, ca_pem: bytes = b"-----BEGIN CERTIFICATE-----\n") -> bytes:
    return _dump(
        {
            "clusters": [
                {
                    "name": "c",
                    "cluster": {"server": "https://s", "certificate-authority-data": _b64(ca_pem)},
                }
            ],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "ctx",
        }
    )


def test_token_user() -> None:
    kc = certs.parse_kubeconfig(_token_doc("abc"))
    assert kc.token == "abc"
    assert kc.client_cert_pem is None and kc.client_key_pem is None
    assert not kc.uses_client_certificate


def test_follows_the_current_context(document: bytes) -> None:
    doc = yaml.safe_load(document)
    doc["clusters"].insert(0, {"name": "other", "cluster": {"server": "https://other"}})
    doc["contexts"].insert(0, {"name": "other", "context": {"cluster": "other", "user": "x"}})
    kc = certs.parse_kubeconfig(_dump(doc))
    assert kc.server == "https://127.0.0.2:6443"


def _broken(document: bytes, change: Any) -> bytes:
    doc = yaml.safe_load(document)
    change(doc)
    return _dump(doc)


def _user(doc: dict[str, Any]) -> dict[str, Any]:
    user: dict[str, Any] = doc["users"][0]["user"]
    return user


def _cluster(doc: dict[str, Any]) -> dict[str, Any]:
    cluster: dict[str, Any] = doc["clusters"][0]["cluster"]
    return cluster


CASES: list[tuple[str, Any, str]] = [
    ("no current context", lambda d: d.pop("current-context"), r"no current-context; set it"),
    (
        "no contexts",
        lambda d: d.pop("contexts"),
        r"has no contexts; add a context entry named 'c1-admin@c1'",
    ),
    ("unknown context", lambda d: d.update({"current-context": "x"}), r"no context named 'x'"),
    (
        "no clusters",
        lambda d: d.update({"clusters": []}),
        r"has no clusters; add a cluster entry named 'c1'",
    ),
    ("clusters not a list", lambda d: d.update({"clusters": {"a": 1}}), r"clusters is not a list"),
    ("no users", lambda d: d.pop("users"), r"has no users; add a user entry named 'c1-admin'"),
    ("wrong user", lambda d: d["users"][0].update({"name": "z"}), r"no user named 'c1-admin'"),
    ("no server", lambda d: _cluster(d).pop("server"), r"cluster 'c1' has no server; set it"),
    (
        "context without cluster",
        lambda d: d["contexts"][0]["context"].pop("cluster"),
        r"names no cluster",
    ),
    ("context without user", lambda d: d["contexts"][0]["context"].pop("user"), r"names no user"),
    (
        "context not a mapping",
        lambda d: d["contexts"][0].update({"context": "x"}),
        r"not a mapping",
    ),
    (
        "no CA",
        lambda d: _cluster(d).pop("certificate-authority-data"),
        r"no certificate-authority-data; embed",
    ),
    (
        "CA file",
        lambda d: _cluster(d).update({"certificate-authority": "/etc/ca.crt"}),
        r"refers to a file \(certificate-authority\); embed the content as "
        r"certificate-authority-data",
    ),
    (
        "bad CA base64",
        lambda d: _cluster(d).update({"certificate-authority-data": "!!!"}),
        r"certificate-authority-data is not valid base64",
    ),
    (
        "CA not PEM",
        lambda d: _cluster(d).update({"certificate-authority-data": _b64(b"nope")}),
        r"certificate-authority-data is not PEM",
    ),
    (
        "bad key base64",
        lambda d: _user(d).update({"client-key-data": "abc"}),
        r"user 'c1-admin' client-key-data is not valid base64",
    ),
    (
        "key not a string",
        lambda d: _user(d).update({"client-key-data": 5}),
        r"client-key-data is not a base64 string",
    ),
    (
        "key not PEM",
        lambda d: _user(d).update({"client-key-data": _b64(b"nope")}),
        r"client-key-data is not PEM",
    ),
    (
        "cert not PEM",
        lambda d: _user(d).update({"client-certificate-data": _b64(b"x")}),
        r"client-certificate-data is not PEM",
    ),
    (
        "cert without key",
        lambda d: _user(d).pop("client-key-data"),
        r"no client-key-data; embed both",
    ),
    (
        "key without cert",
        lambda d: _user(d).pop("client-certificate-data"),
        r"no client-certificate-data; embed both",
    ),
    ("no credentials", lambda d: d["users"][0].update({"user": {}}), r"has no credentials"),
    (
        "key file",
        lambda d: _user(d).update({"client-key": "/k"}),
        r"refers to a file \(client-key\)",
    ),
    (
        "exec plugin",
        lambda d: _user(d).update({"exec": {"command": "aws"}}),
        r"authenticates with exec",
    ),
    (
        "token not a string",
        lambda d: d["users"][0].update({"user": {"token": 5}}),
        r"token is not a string",
    ),
]


@pytest.mark.parametrize(("case", "change", "message"), CASES, ids=[c[0] for c in CASES])
def test_parse_errors(
    document: bytes, admin: KeyPair, case: str, change: Any, message: str
) -> None:
    with pytest.raises(KubeconfigError, match=message) as e:
        certs.parse_kubeconfig(_broken(document, change))
    assert_no_key_material(str(e.value), admin.key_pem)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"kubeconfig is empty"),
        (b"  \n", r"kubeconfig is empty"),
        (b"- a\n- b\n", r"not a YAML mapping"),
        (b"just a string", r"not a YAML mapping"),
        (b"a: [unclosed\n", r"not valid YAML at line 2, column 1"),
    ],
)
def test_not_a_kubeconfig(data: bytes, message: str) -> None:
    with pytest.raises(KubeconfigError, match=message):
        certs.parse_kubeconfig(data)


def test_yaml_errors_do_not_quote_the_document(document: bytes, admin: KeyPair) -> None:
    broken = document.replace(b"client-key-data: ", b"client-key-data: [")
    with pytest.raises(KubeconfigError, match=r"not valid YAML") as e:
        certs.parse_kubeconfig(broken)
    assert_no_key_material(str(e.value), admin.key_pem)
    assert e.value.__cause__ is None and e.value.__suppress_context__
